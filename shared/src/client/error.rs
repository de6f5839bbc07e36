//! The client's errors: one variant per `docs/api.md` error code, plus what can go wrong on our side
//! of the wire.

use std::collections::BTreeMap;

use crate::error::{ErrorBody, ErrorCode};

/// Why the client has no session (any more). Every case means: log in again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionEnd {
    /// There never was a session on this client.
    NotLoggedIn,
    /// [`Client::logout`](super::Client::logout) or
    /// [`Client::logout_all`](super::Client::logout_all) ended it.
    LoggedOut,
    /// The refresh token had already been rotated (`refresh_token_reused`): the server revoked
    /// the whole session, as it does when a refresh token may have been stolen.
    RefreshTokenReused,
    /// The refresh token has expired.
    RefreshTokenExpired,
    /// The refresh token was revoked or refused (logout elsewhere, a role or password change).
    RefreshTokenRejected,
}

impl SessionEnd {
    /// A stable snake_case name, for scripts and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionEnd::NotLoggedIn => "not_logged_in",
            SessionEnd::LoggedOut => "logged_out",
            SessionEnd::RefreshTokenReused => "refresh_token_reused",
            SessionEnd::RefreshTokenExpired => "refresh_token_expired",
            SessionEnd::RefreshTokenRejected => "refresh_token_rejected",
        }
    }
}

impl std::fmt::Display for SessionEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SessionEnd::NotLoggedIn => "not logged in",
            SessionEnd::LoggedOut => "logged out",
            SessionEnd::RefreshTokenReused => {
                "logged out: the refresh token was already used, so the server ended the session"
            }
            SessionEnd::RefreshTokenExpired => "logged out: the session has expired",
            SessionEnd::RefreshTokenRejected => "logged out: the server ended the session",
        })
    }
}

/// Everything a [`Client`](super::Client) call can fail with. API variants carry the server's
/// message, which is meant for people.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    MissingToken(String),
    #[error("{0}")]
    InvalidToken(String),
    /// Only seen when the token expired again right after a refresh (a clock far off).
    #[error("{0}")]
    TokenExpired(String),
    #[error("{0}")]
    TokenRevoked(String),
    #[error("{0}")]
    WrongTokenType(String),
    /// The operation needs a token from a password login, not from a refresh: log in again.
    #[error("{0}")]
    FreshTokenRequired(String),
    /// Only from an explicit refresh; a refresh the client does on its own reports
    /// [`Error::LoggedOut`] instead.
    #[error("{0}")]
    RefreshTokenReused(String),
    #[error("{0}")]
    InvalidCredentials(String),
    /// The password was right and a second factor is enrolled: finish with
    /// `POST /auth/login/mfa` and this single-use token.
    #[error("{message}")]
    MfaRequired { message: String, mfa_token: String },
    #[error("{0}")]
    InvalidMfaCode(String),
    #[error("{0}")]
    InsufficientRole(String),
    #[error("{0}")]
    AccountDisabled(String),
    #[error("{0}")]
    CsrfFailed(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    Conflict(String),
    /// `If-Match` named a version that is no longer the current one.
    #[error("{0}")]
    PreconditionFailed(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    /// `fields` maps each offending field to its problem.
    #[error("{message}")]
    ValidationFailed {
        message: String,
        fields: BTreeMap<String, String>,
    },
    /// `retry_after` is the server's `Retry-After`, in seconds.
    #[error("{message}")]
    RateLimited {
        message: String,
        retry_after: Option<u64>,
    },
    #[error("{0}")]
    Internal(String),
    #[error("{0}")]
    Unavailable(String),
    /// The client has no usable session; the caller must log in again.
    #[error("{0}")]
    LoggedOut(SessionEnd),
    /// The request did not get an answer (connection refused, timeout, TLS, ...).
    #[error("cannot reach the server: {0}")]
    Transport(String),
    /// An answer outside the contract (a proxy's HTML page, a body that does not parse).
    #[error("unexpected answer{}: {message}", status.map(|s| format!(" (HTTP {s})")).unwrap_or_default())]
    Unexpected {
        status: Option<u16>,
        message: String,
    },
    /// The base URL given to the client is not an absolute http(s) URL.
    #[error("invalid base URL: {0}")]
    InvalidUrl(String),
}

impl Error {
    /// The error for a contract error body; `retry_after` comes from the response header.
    pub fn from_body(body: ErrorBody, retry_after: Option<u64>) -> Self {
        let ErrorBody {
            error,
            message: m,
            fields,
            mfa_token,
        } = body;
        match error {
            ErrorCode::BadRequest => Error::BadRequest(m),
            ErrorCode::MissingToken => Error::MissingToken(m),
            ErrorCode::InvalidToken => Error::InvalidToken(m),
            ErrorCode::TokenExpired => Error::TokenExpired(m),
            ErrorCode::TokenRevoked => Error::TokenRevoked(m),
            ErrorCode::WrongTokenType => Error::WrongTokenType(m),
            ErrorCode::FreshTokenRequired => Error::FreshTokenRequired(m),
            ErrorCode::RefreshTokenReused => Error::RefreshTokenReused(m),
            ErrorCode::InvalidCredentials => Error::InvalidCredentials(m),
            ErrorCode::MfaRequired => Error::MfaRequired {
                message: m,
                mfa_token: mfa_token.unwrap_or_default(),
            },
            ErrorCode::InvalidMfaCode => Error::InvalidMfaCode(m),
            ErrorCode::InsufficientRole => Error::InsufficientRole(m),
            ErrorCode::AccountDisabled => Error::AccountDisabled(m),
            ErrorCode::CsrfFailed => Error::CsrfFailed(m),
            ErrorCode::NotFound => Error::NotFound(m),
            ErrorCode::MethodNotAllowed => Error::MethodNotAllowed(m),
            ErrorCode::Conflict => Error::Conflict(m),
            ErrorCode::PreconditionFailed => Error::PreconditionFailed(m),
            ErrorCode::PayloadTooLarge => Error::PayloadTooLarge(m),
            ErrorCode::ValidationFailed => Error::ValidationFailed {
                message: m,
                fields: fields.unwrap_or_default(),
            },
            ErrorCode::RateLimited => Error::RateLimited {
                message: m,
                retry_after,
            },
            ErrorCode::Internal => Error::Internal(m),
            ErrorCode::Unavailable => Error::Unavailable(m),
        }
    }

    /// The contract's error code, for errors the server answered.
    pub fn code(&self) -> Option<ErrorCode> {
        Some(match self {
            Error::BadRequest(_) => ErrorCode::BadRequest,
            Error::MissingToken(_) => ErrorCode::MissingToken,
            Error::InvalidToken(_) => ErrorCode::InvalidToken,
            Error::TokenExpired(_) => ErrorCode::TokenExpired,
            Error::TokenRevoked(_) => ErrorCode::TokenRevoked,
            Error::WrongTokenType(_) => ErrorCode::WrongTokenType,
            Error::FreshTokenRequired(_) => ErrorCode::FreshTokenRequired,
            Error::RefreshTokenReused(_) => ErrorCode::RefreshTokenReused,
            Error::InvalidCredentials(_) => ErrorCode::InvalidCredentials,
            Error::MfaRequired { .. } => ErrorCode::MfaRequired,
            Error::InvalidMfaCode(_) => ErrorCode::InvalidMfaCode,
            Error::InsufficientRole(_) => ErrorCode::InsufficientRole,
            Error::AccountDisabled(_) => ErrorCode::AccountDisabled,
            Error::CsrfFailed(_) => ErrorCode::CsrfFailed,
            Error::NotFound(_) => ErrorCode::NotFound,
            Error::MethodNotAllowed(_) => ErrorCode::MethodNotAllowed,
            Error::Conflict(_) => ErrorCode::Conflict,
            Error::PreconditionFailed(_) => ErrorCode::PreconditionFailed,
            Error::PayloadTooLarge(_) => ErrorCode::PayloadTooLarge,
            Error::ValidationFailed { .. } => ErrorCode::ValidationFailed,
            Error::RateLimited { .. } => ErrorCode::RateLimited,
            Error::Internal(_) => ErrorCode::Internal,
            Error::Unavailable(_) => ErrorCode::Unavailable,
            Error::LoggedOut(_)
            | Error::Transport(_)
            | Error::Unexpected { .. }
            | Error::InvalidUrl(_) => return None,
        })
    }

    /// A stable snake_case name for every error: the contract's code, or `logged_out`,
    /// `transport`, `unexpected`, `invalid_url`.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::LoggedOut(_) => "logged_out",
            Error::Transport(_) => "transport",
            Error::Unexpected { .. } => "unexpected",
            Error::InvalidUrl(_) => "invalid_url",
            other => other.code().map_or("unexpected", ErrorCode::as_str),
        }
    }

    /// A refresh failed with this: the session is over, not merely interrupted.
    pub(super) fn ends_session(&self) -> Option<SessionEnd> {
        match self {
            Error::RefreshTokenReused(_) => Some(SessionEnd::RefreshTokenReused),
            Error::TokenExpired(_) => Some(SessionEnd::RefreshTokenExpired),
            Error::TokenRevoked(_)
            | Error::InvalidToken(_)
            | Error::WrongTokenType(_)
            | Error::AccountDisabled(_)
            | Error::MissingToken(_) => Some(SessionEnd::RefreshTokenRejected),
            _ => None,
        }
    }

    pub(super) fn transport(err: reqwest::Error) -> Self {
        // reqwest's own message is terse ("error sending request"); the cause is in the chain.
        let mut message = err.to_string();
        let mut source = std::error::Error::source(&err);
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        Error::Transport(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_contract_code_maps_to_its_own_variant_and_back() {
        let codes = [
            "bad_request",
            "missing_token",
            "invalid_token",
            "token_expired",
            "token_revoked",
            "wrong_token_type",
            "fresh_token_required",
            "refresh_token_reused",
            "invalid_credentials",
            "mfa_required",
            "invalid_mfa_code",
            "account_disabled",
            "insufficient_role",
            "csrf_failed",
            "not_found",
            "method_not_allowed",
            "conflict",
            "precondition_failed",
            "payload_too_large",
            "validation_failed",
            "rate_limited",
            "internal",
            "unavailable",
        ];
        for code in codes {
            let body: ErrorBody =
                serde_json::from_value(serde_json::json!({ "error": code, "message": "m" }))
                    .expect("a contract body");
            let error = Error::from_body(body, None);
            assert_eq!(error.kind(), code);
            assert_eq!(error.to_string(), "m");
        }
    }

    #[test]
    fn validation_errors_keep_their_fields_and_rate_limits_their_wait() {
        let body: ErrorBody = serde_json::from_value(serde_json::json!({
            "error": "validation_failed", "message": "bad", "fields": { "title": "empty" }
        }))
        .expect("a contract body");
        let Error::ValidationFailed { fields, .. } = Error::from_body(body, None) else {
            panic!("validation_failed expected");
        };
        assert_eq!(fields["title"], "empty");
        let limited = Error::from_body(ErrorBody::new(ErrorCode::RateLimited, "slow"), Some(3));
        assert!(matches!(
            limited,
            Error::RateLimited {
                retry_after: Some(3),
                ..
            }
        ));
    }

    #[test]
    fn only_dead_refresh_tokens_end_the_session() {
        let reused = Error::RefreshTokenReused("r".into());
        assert_eq!(reused.ends_session(), Some(SessionEnd::RefreshTokenReused));
        let expired = Error::TokenExpired("e".into());
        assert_eq!(
            expired.ends_session(),
            Some(SessionEnd::RefreshTokenExpired)
        );
        assert_eq!(Error::Unavailable("u".into()).ends_session(), None);
        assert_eq!(Error::Transport("t".into()).ends_session(), None);
    }
}
