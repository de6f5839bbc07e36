//! The error contract of `docs/api.md`: one code per failure, one JSON body shape, and (feature
//! `actix`) one place that turns them into HTTP responses.

use std::collections::BTreeMap;

#[cfg(feature = "actix")]
use actix_web::http::{header, StatusCode};
#[cfg(feature = "actix")]
use actix_web::{HttpResponse, ResponseError};
use serde::{Deserialize, Serialize};

/// Declares [`ErrorCode`] from one table, so the variants, their wire names, their statuses and
/// the list of all codes cannot drift apart.
macro_rules! error_codes {
    ($($variant:ident = $code:literal => $status:ident,)*) => {
        /// The `error` codes of the contract.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum ErrorCode {
            $($variant,)*
        }

        impl ErrorCode {
            /// Every code of the contract.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            #[cfg(feature = "actix")]
            pub fn status(self) -> StatusCode {
                match self {
                    $(ErrorCode::$variant => StatusCode::$status,)*
                }
            }

            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $code,)*
                }
            }
        }
    };
}

error_codes! {
    BadRequest = "bad_request" => BAD_REQUEST,
    MissingToken = "missing_token" => UNAUTHORIZED,
    InvalidToken = "invalid_token" => UNAUTHORIZED,
    TokenExpired = "token_expired" => UNAUTHORIZED,
    TokenRevoked = "token_revoked" => UNAUTHORIZED,
    WrongTokenType = "wrong_token_type" => UNAUTHORIZED,
    FreshTokenRequired = "fresh_token_required" => UNAUTHORIZED,
    RefreshTokenReused = "refresh_token_reused" => UNAUTHORIZED,
    InvalidCredentials = "invalid_credentials" => UNAUTHORIZED,
    MfaRequired = "mfa_required" => UNAUTHORIZED,
    InvalidMfaCode = "invalid_mfa_code" => UNAUTHORIZED,
    InsufficientRole = "insufficient_role" => FORBIDDEN,
    AccountDisabled = "account_disabled" => FORBIDDEN,
    CsrfFailed = "csrf_failed" => FORBIDDEN,
    NotFound = "not_found" => NOT_FOUND,
    MethodNotAllowed = "method_not_allowed" => METHOD_NOT_ALLOWED,
    Conflict = "conflict" => CONFLICT,
    PreconditionFailed = "precondition_failed" => PRECONDITION_FAILED,
    PayloadTooLarge = "payload_too_large" => PAYLOAD_TOO_LARGE,
    ValidationFailed = "validation_failed" => UNPROCESSABLE_ENTITY,
    RateLimited = "rate_limited" => TOO_MANY_REQUESTS,
    Internal = "internal" => INTERNAL_SERVER_ERROR,
    Unavailable = "unavailable" => SERVICE_UNAVAILABLE,
}

/// `{"error": "...", "message": "...", "fields": {...}}`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorCode,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<BTreeMap<String, String>>,
    /// On `mfa_required`: the single-use token for `POST /auth/login/mfa`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mfa_token: Option<String>,
}

impl ErrorBody {
    pub fn new(error: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            error,
            message: message.into(),
            fields: None,
            mfa_token: None,
        }
    }

    pub fn with_fields(mut self, fields: BTreeMap<String, String>) -> Self {
        self.fields = Some(fields);
        self
    }

    /// A dependency is down: the cause goes to the log, the client gets a generic message.
    pub fn unavailable(cause: &dyn std::fmt::Display) -> Self {
        tracing::warn!(cause = %cause, "dependency unavailable");
        Self::new(
            ErrorCode::Unavailable,
            "a dependency is unavailable; nothing was changed, try again shortly",
        )
    }

    /// A bug or unexpected failure: the cause goes to the log, the client learns nothing of it.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(cause = %cause, "unexpected error");
        Self::new(ErrorCode::Internal, "internal error")
    }
}

#[cfg(feature = "actix")]
impl ErrorBody {
    /// The HTTP response for this body: status from the code, and the RFC 6750 challenge on 401.
    pub fn into_response(self) -> HttpResponse {
        let mut response = HttpResponse::build(self.error.status());
        if self.error.status() == StatusCode::UNAUTHORIZED {
            let kind = if self.error == ErrorCode::MissingToken {
                "invalid_request"
            } else {
                "invalid_token"
            };
            // The message is ours and never holds a quote; strip any anyway to keep the header valid.
            let description = self.message.replace('"', "'");
            response.insert_header((
                header::WWW_AUTHENTICATE,
                format!("Bearer error=\"{kind}\", error_description=\"{description}\""),
            ));
        }
        response.json(self)
    }
}

/// Everything that can be wrong with the token on a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("no token was sent")]
    Missing,
    #[error("the token is invalid: {0}")]
    Invalid(&'static str),
    /// The `kid` is not in our key set; a resource server may re-fetch its keys and retry.
    #[error("the token is invalid: unknown signing key")]
    UnknownKid,
    #[error("the token has expired")]
    Expired,
    #[error("the token has been revoked")]
    Revoked,
    #[error("wrong token type: {0} token required")]
    WrongType(&'static str),
    #[error("a fresh token is required: log in again with your password")]
    FreshRequired,
    #[error("the token's roles do not allow this operation")]
    InsufficientRole,
    #[error("the X-CSRF-TOKEN header is missing or does not match the token")]
    CsrfFailed,
    #[error("this refresh token was already used; the session has been revoked")]
    RefreshReused,
    #[error("the revocation list is unavailable; try again shortly")]
    Unavailable,
}

impl TokenError {
    pub fn code(self) -> ErrorCode {
        match self {
            TokenError::Missing => ErrorCode::MissingToken,
            TokenError::Invalid(_) | TokenError::UnknownKid => ErrorCode::InvalidToken,
            TokenError::Expired => ErrorCode::TokenExpired,
            TokenError::Revoked => ErrorCode::TokenRevoked,
            TokenError::WrongType(_) => ErrorCode::WrongTokenType,
            TokenError::FreshRequired => ErrorCode::FreshTokenRequired,
            TokenError::InsufficientRole => ErrorCode::InsufficientRole,
            TokenError::CsrfFailed => ErrorCode::CsrfFailed,
            TokenError::RefreshReused => ErrorCode::RefreshTokenReused,
            TokenError::Unavailable => ErrorCode::Unavailable,
        }
    }
}

#[cfg(feature = "actix")]
impl ResponseError for TokenError {
    fn status_code(&self) -> StatusCode {
        self.code().status()
    }

    fn error_response(&self) -> HttpResponse {
        ErrorBody::new(self.code(), self.to_string()).into_response()
    }
}

/// JSON errors for what actix rejects before a handler runs (bad JSON, wrong content type,
/// oversized bodies, bad query strings and paths).
#[cfg(feature = "actix")]
pub mod rejections {
    use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
    use actix_web::{web, HttpRequest};

    use super::{ErrorBody, ErrorCode};

    /// Request bodies are capped at 64 KiB, as `docs/api.md` says.
    pub const BODY_LIMIT: usize = 64 * 1024;

    fn body_error(code: ErrorCode, message: String) -> actix_web::Error {
        let mut body = ErrorBody::new(code, message);
        if code == ErrorCode::ValidationFailed {
            let message = body.message.clone();
            body = body.with_fields([("body".to_string(), message)].into());
        }
        let response = body.into_response();
        actix_web::error::InternalError::from_response("rejected", response).into()
    }

    pub fn json_config() -> web::JsonConfig {
        web::JsonConfig::default().limit(BODY_LIMIT).error_handler(
            |err: JsonPayloadError, _req: &HttpRequest| match err {
                JsonPayloadError::Overflow { .. }
                | JsonPayloadError::OverflowKnownLength { .. } => body_error(
                    ErrorCode::PayloadTooLarge,
                    "the request body is larger than 64 KiB".into(),
                ),
                JsonPayloadError::ContentType => body_error(
                    ErrorCode::BadRequest,
                    "the body must be JSON (Content-Type: application/json)".into(),
                ),
                JsonPayloadError::Deserialize(e) if e.is_data() => body_error(
                    ErrorCode::ValidationFailed,
                    format!("the body does not have the expected fields: {e}"),
                ),
                other => body_error(
                    ErrorCode::BadRequest,
                    format!("the body is not valid JSON: {other}"),
                ),
            },
        )
    }

    pub fn query_config() -> web::QueryConfig {
        web::QueryConfig::default().error_handler(|err: QueryPayloadError, _req: &HttpRequest| {
            body_error(ErrorCode::BadRequest, format!("bad query string: {err}"))
        })
    }

    pub fn path_config() -> web::PathConfig {
        web::PathConfig::default().error_handler(|_err: PathError, _req: &HttpRequest| {
            body_error(ErrorCode::NotFound, "no such resource".into())
        })
    }

    /// The answer for any path no route matches.
    pub async fn not_found() -> actix_web::HttpResponse {
        ErrorBody::new(ErrorCode::NotFound, "no such resource").into_response()
    }
}

/// An error and every cause below it, `outer: inner: innermost`, for the log line of a 5xx.
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(inner) = cause {
            write!(f, ": {inner}")?;
            cause = inner.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::ErrorCode;

    #[test]
    fn wire_names_are_the_serde_names() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
        assert_eq!(ErrorCode::ALL.len(), 23);
    }
}
