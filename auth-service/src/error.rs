//! The one error type of auth-service and its single mapping to HTTP.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use shared::error::ErrorChain;
use shared::revocation::StoreUnavailable;
use shared::{ErrorBody, ErrorCode, TokenError};

/// The cause of an unexpected or unavailable error, kept as a value for the log.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Token(#[from] TokenError),
    /// An error of the OAuth 2.0 endpoints, answered in RFC 6749 §5.2's shape.
    #[error(transparent)]
    OAuth(#[from] OAuthError),
    #[error("{0}")]
    BadRequest(&'static str),
    #[error("wrong username or password")]
    InvalidCredentials,
    /// The password was right; the second factor is still to come, with this single-use token.
    #[error("a second factor is required: send a code with this mfa_token to /auth/login/mfa")]
    MfaRequired { mfa_token: String },
    #[error("wrong, reused or expired code")]
    InvalidMfaCode,
    #[error("this account has been disabled by an administrator")]
    AccountDisabled,
    #[error("the request breaks a rule")]
    Validation(BTreeMap<String, String>),
    #[error("{0}")]
    Conflict(&'static str),
    #[error("the request body is larger than 64 KiB")]
    PayloadTooLarge,
    /// Too many attempts (login, registration, password change); the client may retry after this
    /// many seconds.
    #[error("too many attempts; try again in {0} s")]
    RateLimited(u64),
    #[error("{0}")]
    NotFound(&'static str),
    /// A dependency is down. The cause goes to the log, never to the client.
    #[error("{what} is unavailable")]
    Unavailable {
        what: &'static str,
        #[source]
        cause: Cause,
    },
    /// A dependency failed halfway through a change: `done` tells the client truthfully what
    /// took effect; the cause goes to the log.
    #[error("{done}")]
    Incomplete {
        done: &'static str,
        #[source]
        cause: Box<AuthError>,
    },
    /// A bug or an unexpected failure. The cause goes to the log, never to the client.
    #[error("{what} failed")]
    Unexpected {
        what: &'static str,
        #[source]
        cause: Cause,
    },
}

/// RFC 6749 §5.2 errors (and RFC 7009/7662, which reuse them). Their bodies are
/// `{"error", "error_description"}`, not our `ErrorBody`: OAuth client libraries parse them.
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    #[error("{0}")]
    InvalidRequest(String),
    /// Unknown client, wrong secret or no client authentication: the same answer for each.
    #[error("client authentication failed")]
    InvalidClient,
    #[error("{0}")]
    InvalidScope(String),
    #[error("{0}")]
    UnauthorizedClient(&'static str),
    #[error("only grant_type=client_credentials is supported")]
    UnsupportedGrantType,
}

impl OAuthError {
    fn code(&self) -> &'static str {
        match self {
            OAuthError::InvalidRequest(_) => "invalid_request",
            OAuthError::InvalidClient => "invalid_client",
            OAuthError::InvalidScope(_) => "invalid_scope",
            OAuthError::UnauthorizedClient(_) => "unauthorized_client",
            OAuthError::UnsupportedGrantType => "unsupported_grant_type",
        }
    }

    fn response(&self) -> HttpResponse {
        let body =
            serde_json::json!({ "error": self.code(), "error_description": self.to_string() });
        let mut response = match self {
            // §5.2: 401 and the authentication scheme the client can use.
            OAuthError::InvalidClient => {
                let mut response = HttpResponse::Unauthorized();
                response.insert_header((
                    actix_web::http::header::WWW_AUTHENTICATE,
                    "Basic realm=\"authbooks\", charset=\"UTF-8\"",
                ));
                response
            }
            _ => HttpResponse::BadRequest(),
        };
        // §5.1: token responses and their errors are never cached.
        response
            .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
            .insert_header((actix_web::http::header::PRAGMA, "no-cache"))
            .json(body)
    }
}

impl AuthError {
    pub fn unavailable(what: &'static str, cause: impl Into<Cause>) -> Self {
        AuthError::Unavailable {
            what,
            cause: cause.into(),
        }
    }

    pub fn unexpected(what: &'static str, cause: impl Into<Cause>) -> Self {
        AuthError::Unexpected {
            what,
            cause: cause.into(),
        }
    }

    pub fn field(name: &str, problem: &str) -> Self {
        AuthError::Validation([(name.to_owned(), problem.to_owned())].into())
    }

    fn code(&self) -> ErrorCode {
        match self {
            AuthError::Token(err) => err.code(),
            AuthError::OAuth(OAuthError::InvalidClient) => ErrorCode::InvalidCredentials,
            AuthError::OAuth(_) => ErrorCode::BadRequest,
            AuthError::BadRequest(_) => ErrorCode::BadRequest,
            AuthError::InvalidCredentials => ErrorCode::InvalidCredentials,
            AuthError::MfaRequired { .. } => ErrorCode::MfaRequired,
            AuthError::InvalidMfaCode => ErrorCode::InvalidMfaCode,
            AuthError::AccountDisabled => ErrorCode::AccountDisabled,
            AuthError::Validation(_) => ErrorCode::ValidationFailed,
            AuthError::Conflict(_) => ErrorCode::Conflict,
            AuthError::PayloadTooLarge => ErrorCode::PayloadTooLarge,
            AuthError::RateLimited(_) => ErrorCode::RateLimited,
            AuthError::NotFound(_) => ErrorCode::NotFound,
            AuthError::Unavailable { .. } | AuthError::Incomplete { .. } => ErrorCode::Unavailable,
            AuthError::Unexpected { .. } => ErrorCode::Internal,
        }
    }
}

impl From<shared::pg_async::StatementError> for AuthError {
    fn from(err: shared::pg_async::StatementError) -> Self {
        if err.lost() {
            AuthError::unavailable("the database", err)
        } else {
            AuthError::unexpected("a database statement", err)
        }
    }
}

impl From<diesel::result::Error> for AuthError {
    fn from(err: diesel::result::Error) -> Self {
        if shared::db::is_connection_lost(&err) {
            AuthError::unavailable("the database", err)
        } else {
            AuthError::unexpected("a database query", err)
        }
    }
}

/// What a client is told when a revocation reached the Redis master but not, in time, the
/// replicas it must reach (`REDIS_WAIT_REPLICAS`).
pub const NOT_REPLICATED: &str = "the revocation was written and is in effect, but no Redis \
    replica confirmed it in time: a Redis failover before one does could undo it";

impl From<StoreUnavailable> for AuthError {
    fn from(err: StoreUnavailable) -> Self {
        match err {
            StoreUnavailable::NotReplicated { .. } => AuthError::Incomplete {
                done: NOT_REPLICATED,
                cause: Box::new(AuthError::unavailable("the Redis replicas", err)),
            },
            err => AuthError::unavailable("the revocation store", err),
        }
    }
}

impl ResponseError for AuthError {
    fn status_code(&self) -> StatusCode {
        self.code().status()
    }

    fn error_response(&self) -> HttpResponse {
        let body = match self {
            AuthError::Token(err) => return err.error_response(),
            AuthError::OAuth(err) => return err.response(),
            AuthError::Validation(fields) => ErrorBody::new(
                ErrorCode::ValidationFailed,
                "the request breaks a rule; see fields",
            )
            .with_fields(fields.clone()),
            AuthError::Unavailable { .. } => ErrorBody::unavailable(&ErrorChain(self)),
            AuthError::Incomplete { done, .. } => {
                tracing::warn!(cause = %ErrorChain(self), "a change was interrupted halfway");
                ErrorBody::new(ErrorCode::Unavailable, *done)
            }
            AuthError::Unexpected { .. } => ErrorBody::internal(&ErrorChain(self)),
            AuthError::MfaRequired { mfa_token } => {
                let mut body = ErrorBody::new(ErrorCode::MfaRequired, self.to_string());
                body.mfa_token = Some(mfa_token.clone());
                let mut response = body.into_response();
                // The token finishes a login: never cached.
                response.headers_mut().insert(
                    actix_web::http::header::CACHE_CONTROL,
                    actix_web::http::header::HeaderValue::from_static("no-store"),
                );
                return response;
            }
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
