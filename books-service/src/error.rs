//! The one error type of books-service and its single mapping to HTTP.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use shared::{ErrorBody, ErrorCode, TokenError};

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
    #[error("a dependency is unavailable: {0}")]
    Unavailable(String),
    #[error("unexpected error: {0}")]
    Unexpected(String),
}

impl BooksError {
    fn code(&self) -> ErrorCode {
        match self {
            BooksError::Token(err) => err.code(),
            BooksError::BadRequest(_) => ErrorCode::BadRequest,
            BooksError::Validation(_) => ErrorCode::ValidationFailed,
            BooksError::NotFound => ErrorCode::NotFound,
            BooksError::Conflict(_) => ErrorCode::Conflict,
            BooksError::PreconditionFailed => ErrorCode::PreconditionFailed,
            BooksError::Unavailable(_) => ErrorCode::Unavailable,
            BooksError::Unexpected(_) => ErrorCode::Internal,
        }
    }
}

impl From<diesel::result::Error> for BooksError {
    fn from(err: diesel::result::Error) -> Self {
        if shared::db::is_unique_violation(&err) {
            BooksError::Conflict("a book with this ISBN already exists")
        } else if shared::db::is_connection_lost(&err) {
            BooksError::Unavailable(format!("database: {err}"))
        } else {
            BooksError::Unexpected(format!("database: {err}"))
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
            BooksError::Unavailable(cause) => ErrorBody::unavailable(cause).into_response(),
            BooksError::Unexpected(cause) => ErrorBody::internal(cause).into_response(),
            other => ErrorBody::new(other.code(), other.to_string()).into_response(),
        }
    }
}
