//! The one error type of books-service and its single mapping to HTTP.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use shared::error::ErrorChain;
use shared::{ErrorBody, ErrorCode, TokenError};

/// The cause of an unexpected or unavailable error, kept as a value for the log.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum BooksError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("{0}")]
    BadRequest(String),
    #[error("the book breaks a rule")]
    Validation(BTreeMap<String, String>),
    #[error("no such book")]
    NotFound,
    #[error("{0}")]
    Conflict(&'static str),
    #[error("the book has changed since you read it (If-Match does not match its ETag)")]
    PreconditionFailed,
    /// A dependency is down. The cause goes to the log, never to the client.
    #[error("{what} is unavailable")]
    Unavailable {
        what: &'static str,
        #[source]
        cause: Cause,
    },
    /// A bug or an unexpected failure. The cause goes to the log, never to the client.
    #[error("{what} failed")]
    Unexpected {
        what: &'static str,
        #[source]
        cause: Cause,
    },
}

impl BooksError {
    pub fn unavailable(what: &'static str, cause: impl Into<Cause>) -> Self {
        BooksError::Unavailable {
            what,
            cause: cause.into(),
        }
    }

    pub fn unexpected(what: &'static str, cause: impl Into<Cause>) -> Self {
        BooksError::Unexpected {
            what,
            cause: cause.into(),
        }
    }

    fn code(&self) -> ErrorCode {
        match self {
            BooksError::Token(err) => err.code(),
            BooksError::BadRequest(_) => ErrorCode::BadRequest,
            BooksError::Validation(_) => ErrorCode::ValidationFailed,
            BooksError::NotFound => ErrorCode::NotFound,
            BooksError::Conflict(_) => ErrorCode::Conflict,
            BooksError::PreconditionFailed => ErrorCode::PreconditionFailed,
            BooksError::Unavailable { .. } => ErrorCode::Unavailable,
            BooksError::Unexpected { .. } => ErrorCode::Internal,
        }
    }
}

impl From<shared::pg_async::StatementError> for BooksError {
    fn from(err: shared::pg_async::StatementError) -> Self {
        if err.lost() {
            BooksError::unavailable("the database", err)
        } else {
            BooksError::unexpected("a database statement", err)
        }
    }
}

impl From<diesel::result::Error> for BooksError {
    fn from(err: diesel::result::Error) -> Self {
        if shared::db::violates_unique(&err, "books_isbn_key", "books.isbn") {
            BooksError::Conflict("a book with this ISBN already exists")
        } else if shared::db::is_connection_lost(&err) {
            BooksError::unavailable("the database", err)
        } else {
            BooksError::unexpected("a database query", err)
        }
    }
}

impl ResponseError for BooksError {
    fn status_code(&self) -> StatusCode {
        self.code().status()
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            BooksError::Token(err) => err.error_response(),
            BooksError::Validation(fields) => ErrorBody::new(
                ErrorCode::ValidationFailed,
                "the book breaks a rule; see fields",
            )
            .with_fields(fields.clone())
            .into_response(),
            BooksError::Unavailable { .. } => {
                ErrorBody::unavailable(&ErrorChain(self)).into_response()
            }
            BooksError::Unexpected { .. } => ErrorBody::internal(&ErrorChain(self)).into_response(),
            other => ErrorBody::new(other.code(), other.to_string()).into_response(),
        }
    }
}
