//! The request and response bodies of `docs/api.md`, as the client sees them.

use serde::{Deserialize, Serialize};

use crate::claims::Role;

/// A user as `POST /auth/register`, `GET /auth/me` and `PUT /auth/users/{id}/roles` return it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: String,
    pub username: String,
    pub roles: Vec<Role>,
    /// RFC 3339; absent from the answer to `register`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
}

/// A service account (`/auth/clients`). `client_secret` is only in the answers to creating it
/// and to rotating its secret: it is shown once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceClient {
    pub client_id: String,
    pub name: String,
    pub scopes: Vec<String>,
    /// RFC 3339.
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
}

/// The body of `GET /auth/clients`.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct ServiceClientList {
    pub items: Vec<ServiceClient>,
}

/// A stored book. `version` is also its `ETag`, which `replace` and `delete` may require.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Book {
    pub id: String,
    pub title: String,
    pub author: String,
    pub isbn: Option<String>,
    pub published_year: Option<i32>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
    pub version: i64,
}

/// The body of `POST /books` and `PUT /books/{id}` (a full replacement).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookInput {
    pub title: String,
    pub author: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isbn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published_year: Option<i32>,
}

impl From<&Book> for BookInput {
    fn from(book: &Book) -> Self {
        BookInput {
            title: book.title.clone(),
            author: book.author.clone(),
            isbn: book.isbn.clone(),
            published_year: book.published_year,
        }
    }
}

/// One page of `GET /books`; pass `next_cursor` back as [`BookQuery::cursor`] for the next.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookPage {
    pub items: Vec<Book>,
    pub next_cursor: Option<String>,
}

/// The filters of `GET /books`; `None` leaves the server's default.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BookQuery {
    /// 1-100; the server's default is 20.
    pub limit: Option<u32>,
    pub cursor: Option<String>,
    /// Exact, case-insensitive.
    pub author: Option<String>,
    /// A case-insensitive substring of the title.
    pub q: Option<String>,
}

impl BookQuery {
    pub(super) fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = Vec::new();
        if let Some(limit) = self.limit {
            pairs.push(("limit", limit.to_string()));
        }
        for (name, value) in [
            ("cursor", &self.cursor),
            ("author", &self.author),
            ("q", &self.q),
        ] {
            if let Some(value) = value {
                pairs.push((name, value.clone()));
            }
        }
        pairs
    }
}

/// A logged-in session: the token pair the client sends and rotates. Keep it as secret as a
/// password; `Debug` does not print the tokens.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub access_token: String,
    pub refresh_token: String,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").finish_non_exhaustive()
    }
}

/// The token pair body of `POST /auth/login` and `POST /auth/refresh`.
#[derive(Deserialize)]
pub(super) struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
}

impl From<TokenPair> for Session {
    fn from(pair: TokenPair) -> Self {
        Session {
            access_token: pair.access_token,
            refresh_token: pair.refresh_token,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_debug_never_shows_the_tokens() {
        let session = Session {
            access_token: "secret-access".into(),
            refresh_token: "secret-refresh".into(),
        };
        let shown = format!("{session:?}");
        assert!(!shown.contains("secret"), "{shown}");
    }

    #[test]
    fn a_book_input_leaves_out_what_is_not_set() {
        let input = BookInput {
            title: "Dune".into(),
            author: "Frank Herbert".into(),
            ..BookInput::default()
        };
        assert_eq!(
            serde_json::to_value(&input).expect("serializable"),
            serde_json::json!({ "title": "Dune", "author": "Frank Herbert" })
        );
    }
}
