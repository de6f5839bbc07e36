//! `/books`: list, get, create, replace, delete.

use reqwest::Method;

use super::{json, segment, Book, BookInput, BookPage, BookQuery, Call, Client, Error};

/// The books API of a [`Client`], from [`Client::books`].
pub struct Books<'a> {
    client: &'a Client,
}

impl<'a> Books<'a> {
    pub(super) fn new(client: &'a Client) -> Self {
        Books { client }
    }

    /// `GET /books`: one page, in creation order.
    pub async fn list(&self, query: &BookQuery) -> Result<BookPage, Error> {
        let mut url = self.client.url(&["books"]);
        let pairs = query.pairs();
        if !pairs.is_empty() {
            url.query_pairs_mut().extend_pairs(pairs);
        }
        json(self.client.authed(Call::new(Method::GET, url)).await?).await
    }

    /// Every book matching `query`, following `next_cursor` page after page.
    pub async fn list_all(&self, query: &BookQuery) -> Result<Vec<Book>, Error> {
        let mut query = query.clone();
        let mut books = Vec::new();
        loop {
            let page = self.list(&query).await?;
            books.extend(page.items);
            match page.next_cursor {
                // A server repeating a cursor would otherwise keep us here forever.
                Some(next) if query.cursor.as_ref() != Some(&next) => query.cursor = Some(next),
                _ => return Ok(books),
            }
        }
    }

    /// `GET /books/{id}`.
    pub async fn get(&self, id: &str) -> Result<Book, Error> {
        let url = self.client.url(&["books", segment(id, "book")?]);
        json(self.client.authed(Call::new(Method::GET, url)).await?).await
    }

    /// `POST /books` (`editor` or `admin`).
    pub async fn create(&self, book: &BookInput) -> Result<Book, Error> {
        let call = Call::new(Method::POST, self.client.url(&["books"])).json(book)?;
        json(self.client.authed(call).await?).await
    }

    /// `PUT /books/{id}` (`editor` or `admin`): replaces the whole book. With `if_match`, only
    /// if its version is still that one ([`Error::PreconditionFailed`] otherwise).
    pub async fn replace(
        &self,
        id: &str,
        book: &BookInput,
        if_match: Option<i64>,
    ) -> Result<Book, Error> {
        let url = self.client.url(&["books", segment(id, "book")?]);
        let call = Call::new(Method::PUT, url).json(book)?.if_match(if_match);
        json(self.client.authed(call).await?).await
    }

    /// `DELETE /books/{id}` (`admin` with a fresh login). With `if_match`, only if its version
    /// is still that one.
    pub async fn delete(&self, id: &str, if_match: Option<i64>) -> Result<(), Error> {
        let url = self.client.url(&["books", segment(id, "book")?]);
        let call = Call::new(Method::DELETE, url).if_match(if_match);
        self.client.authed(call).await.map(drop)
    }
}
