//! The one error type of auth-service and its single mapping to HTTP.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use shared::revocation::StoreUnavailable;
use shared::{ErrorBody, ErrorCode, TokenError};

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("{0}")]
    BadRequest(&'static str),
    #[error("wrong username or password")]
    InvalidCredentials,
    #[error("the request breaks a rule")]
    Validation(BTreeMap<String, String>),
    #[error("{0}")]
    Conflict(&'static str),
    /// Too many attempts (login, registration, password change); the client may retry after this
    /// many seconds.
    #[error("too many attempts; try again in {0} s")]
    RateLimited(u64),
    #[error("{0}")]
    NotFound(&'static str),
    /// A dependency is down. The cause goes to the log, never to the client.
    #[error("a dependency is unavailable: {0}")]
    Unavailable(String),
    /// A bug or an unexpected failure. The cause goes to the log, never to the client.
    #[error("unexpected error: {0}")]
    Unexpected(String),
}

impl AuthError {
    pub fn database_unavailable(err: impl std::fmt::Display) -> Self {
        AuthError::Unavailable(format!("database: {err}"))
    }

    pub fn field(name: &str, problem: &str) -> Self {
        AuthError::Validation([(name.to_owned(), problem.to_owned())].into())
    }

    fn code(&self) -> ErrorCode {
        match self {
            AuthError::Token(err) => err.code(),
            AuthError::BadRequest(_) => ErrorCode::BadRequest,
            AuthError::InvalidCredentials => ErrorCode::InvalidCredentials,
            AuthError::Validation(_) => ErrorCode::ValidationFailed,
            AuthError::Conflict(_) => ErrorCode::Conflict,
            AuthError::RateLimited(_) => ErrorCode::RateLimited,
            AuthError::NotFound(_) => ErrorCode::NotFound,
            AuthError::Unavailable(_) => ErrorCode::Unavailable,
            AuthError::Unexpected(_) => ErrorCode::Internal,
        }
    }
}

impl From<diesel::result::Error> for AuthError {
    fn from(err: diesel::result::Error) -> Self {
        if shared::db::is_connection_lost(&err) {
            AuthError::database_unavailable(err)
        } else {
            AuthError::Unexpected(format!("database: {err}"))
        }
    }
}

impl From<StoreUnavailable> for AuthError {
    fn from(err: StoreUnavailable) -> Self {
        AuthError::Unavailable(err.to_string())
    }
}

impl ResponseError for AuthError {
    fn status_code(&self) -> StatusCode {
        self.code().status()
    }

    fn error_response(&self) -> HttpResponse {
        let body = match self {
            AuthError::Token(err) => return err.error_response(),
            AuthError::Validation(fields) => ErrorBody::new(
                ErrorCode::ValidationFailed,
                "the request breaks a rule; see fields",
            )
            .with_fields(fields.clone()),
            AuthError::Unavailable(cause) => ErrorBody::unavailable(cause),
            AuthError::Unexpected(cause) => ErrorBody::internal(cause),
            AuthError::RateLimited(seconds) => {
                let mut response =
                    ErrorBody::new(ErrorCode::RateLimited, self.to_string()).into_response();
                if let Ok(value) = seconds.to_string().parse() {
                    response
                        .headers_mut()
                        .insert(actix_web::http::header::RETRY_AFTER, value);
                }
                return response;
            }
            other => ErrorBody::new(other.code(), other.to_string()),
        };
        body.into_response()
    }
}
