//! `GET /books/{id}` on PostgreSQL without the blocking pool: one statement on
//! [`shared::pg_async`]'s connection per worker (what it saves, when it is used, how it fails
//! and recovers: there). Writes, pages and `/readyz` keep the pool. What is cached in front of it,
//! and how writes keep that correct across instances, is `cache`'s business.

use shared::pg_async::WorkerStatements;

use crate::error::BooksError;
use crate::store::BookRow;

const GET_BOOK: usize = 0;
const STATEMENTS: &[&str] = &[
    "SELECT id, title, author, isbn, published_year, created_at, \
                               updated_at, version FROM books WHERE id = $1",
];

/// The async read path of one `BookStore`; its connections live in the threads that use it.
pub struct PgReads {
    statements: WorkerStatements,
}

impl PgReads {
    /// The read path for `url`, or why it cannot serve it (then reads stay on the pool).
    pub fn from_url(url: &str) -> Result<Self, String> {
        Ok(PgReads {
            statements: WorkerStatements::from_url(url, "books-service reads", STATEMENTS)?,
        })
    }

    /// Connects and prepares once, at start (see [`WorkerStatements::check`]).
    pub async fn check(&self) -> Result<(), String> {
        self.statements.check().await
    }

    pub async fn get(&self, id: &str) -> Result<BookRow, BooksError> {
        let row = self
            .statements
            .query_opt(GET_BOOK, &[&id])
            .await?
            .ok_or(BooksError::NotFound)?;
        let decode = |e| BooksError::unexpected("decoding a book", e);
        Ok(BookRow {
            id: row.try_get(0).map_err(decode)?,
            title: row.try_get(1).map_err(decode)?,
            author: row.try_get(2).map_err(decode)?,
            isbn: row.try_get(3).map_err(decode)?,
            published_year: row.try_get(4).map_err(decode)?,
            created_at: row.try_get(5).map_err(decode)?,
            updated_at: row.try_get(6).map_err(decode)?,
            version: row.try_get(7).map_err(decode)?,
        })
    }
}
