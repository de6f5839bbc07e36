//! The request and response bodies of `docs/api.md`, as the client sees them.

use serde::{Deserialize, Serialize};

use crate::claims::Role;

/// A user as `POST /auth/register`, `GET /auth/me`, `PUT /auth/users/{id}/roles` and the
/// account administration (`/auth/users`) return it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: String,
    pub username: String,
    pub roles: Vec<Role>,
    /// RFC 3339; absent from the answer to `register`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// Disabled by an administrator: no login, no refresh, every token refused. A server from
    /// before account administration does not send it (and cannot disable anyone): `false`.
    #[serde(default)]
    pub disabled: bool,
    /// A second factor (TOTP) is enrolled and needed at every login. Absent from a server
    /// without second factors: `false`.
    #[serde(default)]
    pub mfa: bool,
}

/// One page of `GET /auth/users`, oldest account first; pass `next_cursor` back as
/// [`UserQuery::cursor`] for the next.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserPage {
    pub items: Vec<User>,
    #[serde(default)]
    pub next_cursor: Option<String>,
}

/// The filters of `GET /auth/users`; `None` leaves the server's default.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserQuery {
    /// An exact, case-insensitive name.
    pub username: Option<String>,
    pub cursor: Option<String>,
    /// 1-100; the server's default is 20.
    pub limit: Option<u32>,
}

impl UserQuery {
    pub(super) fn pairs(&self) -> Vec<(&'static str, String)> {
        pairs(
            self.limit,
            [("username", &self.username), ("cursor", &self.cursor)],
        )
    }
}

/// A live session (one login and every token refreshed from it) as `GET /auth/sessions` and
/// `GET /auth/users/{id}/sessions` list it. Not the token pair: that is [`Session`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// The tokens' `sid`; what `DELETE /auth/sessions/{id}` takes.
    pub id: String,
    /// RFC 3339: the login.
    pub created_at: String,
    /// RFC 3339: the last refresh.
    #[serde(default)]
    pub last_used_at: Option<String>,
    /// RFC 3339: when its refresh token expires, unless refreshed again.
    #[serde(default)]
    pub expires_at: Option<String>,
    #[serde(default)]
    pub user_agent: Option<String>,
    /// The client address at login (an IPv6 address by its /64).
    #[serde(default)]
    pub ip: Option<String>,
    /// The session of the token that asked.
    #[serde(default)]
    pub current: bool,
}

/// The body of `GET /auth/sessions` and `GET /auth/users/{id}/sessions`.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct SessionList {
    pub items: Vec<SessionInfo>,
}

/// A security event of `GET /auth/audit`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub id: String,
    /// RFC 3339.
    pub at: String,
    /// `login`, `login_failed`, `user_disabled`, ... (docs/api.md lists them).
    #[serde(rename = "type")]
    pub kind: String,
    /// Who acted (a user's or client's id); `None` when nobody proved who they were.
    #[serde(default)]
    pub actor: Option<String>,
    /// Whom it concerns (a user's or client's id).
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub ip: Option<String>,
    #[serde(default)]
    pub user_agent: Option<String>,
    /// `success`, `failure` or `refused`.
    pub outcome: String,
    #[serde(default)]
    pub detail: Option<String>,
}

/// One page of `GET /auth/audit`, newest first; pass `next_cursor` back as
/// [`AuditQuery::cursor`] for the next (older) page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditPage {
    pub items: Vec<AuditEvent>,
    #[serde(default)]
    pub next_cursor: Option<String>,
}

/// The filters of `GET /auth/audit`; `None` leaves the server's default.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// A user's or client's id: events where it is the actor or the subject.
    pub user: Option<String>,
    /// An event type (`login`, `user_disabled`, ...).
    pub kind: Option<String>,
    pub cursor: Option<String>,
    /// 1-100; the server's default is 20.
    pub limit: Option<u32>,
}

impl AuditQuery {
    pub(super) fn pairs(&self) -> Vec<(&'static str, String)> {
        pairs(
            self.limit,
            [
                ("user", &self.user),
                ("type", &self.kind),
                ("cursor", &self.cursor),
            ],
        )
    }
}

/// A TOTP secret to confirm, from `POST /auth/mfa/totp`. Keep it as secret as a password;
/// `Debug` does not print it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TotpEnrolment {
    /// Base32, for typing into an authenticator app.
    pub secret: String,
    /// `otpauth://totp/...` (RFC 6238: SHA-1, 6 digits, 30 s), which QR codes carry.
    pub otpauth_uri: String,
    /// The URI drawn as a QR code, an SVG document.
    #[serde(default)]
    pub qr_svg: String,
}

impl std::fmt::Debug for TotpEnrolment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TotpEnrolment").finish_non_exhaustive()
    }
}

/// The body of `POST /auth/mfa/totp/confirm`.
#[derive(Deserialize)]
pub(super) struct RecoveryCodes {
    pub recovery_codes: Vec<String>,
}

/// Query pairs: `limit` when set, then each named value that is set.
fn pairs<const N: usize>(
    limit: Option<u32>,
    values: [(&'static str, &Option<String>); N],
) -> Vec<(&'static str, String)> {
    let mut pairs = Vec::new();
    if let Some(limit) = limit {
        pairs.push(("limit", limit.to_string()));
    }
    for (name, value) in values {
        if let Some(value) = value {
            pairs.push((name, value.clone()));
        }
    }
    pairs
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
        pairs(
            self.limit,
            [
                ("cursor", &self.cursor),
                ("author", &self.author),
                ("q", &self.q),
            ],
        )
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
    fn an_enrolment_debug_never_shows_the_secret() {
        let enrolment = TotpEnrolment {
            secret: "JBSWY3DPEHPK3PXP".into(),
            otpauth_uri: "otpauth://totp/authbooks:a?secret=JBSWY3DPEHPK3PXP".into(),
            qr_svg: String::new(),
        };
        let shown = format!("{enrolment:?}");
        assert!(!shown.contains("JBSWY3DPEHPK3PXP"), "{shown}");
    }

    #[test]
    fn a_user_from_an_older_server_has_no_factor_and_is_not_disabled() {
        let old: User = serde_json::from_value(serde_json::json!({
            "id": "u1", "username": "alice", "roles": ["user"]
        }))
        .expect("tolerated");
        assert!(!old.disabled && !old.mfa && old.created_at.is_none());
        let new: User = serde_json::from_value(serde_json::json!({
            "id": "u1", "username": "alice", "roles": ["user"],
            "created_at": "2026-01-01T00:00:00.000Z", "disabled": true, "mfa": true
        }))
        .expect("parsed");
        assert!(new.disabled && new.mfa);
    }

    #[test]
    fn sessions_and_audit_events_parse_with_nulls_and_the_type_field() {
        let session: SessionInfo = serde_json::from_value(serde_json::json!({
            "id": "s1", "created_at": "2026-01-01T00:00:00.000Z",
            "last_used_at": "2026-01-01T00:00:00.000Z", "expires_at": "2026-01-31T00:00:00.000Z",
            "user_agent": "curl", "ip": "127.0.0.1", "current": true
        }))
        .expect("parsed");
        assert!(session.current);
        let event: AuditEvent = serde_json::from_value(serde_json::json!({
            "id": "e1", "at": "2026-01-01T00:00:00.000Z", "type": "login_failed",
            "actor": null, "subject": "u1", "ip": "127.0.0.1", "user_agent": null,
            "outcome": "failure", "detail": null
        }))
        .expect("parsed");
        assert_eq!(event.kind, "login_failed");
        assert_eq!(
            serde_json::to_value(&event).expect("serializable")["type"],
            "login_failed"
        );
    }

    #[test]
    fn queries_send_only_what_is_set() {
        assert_eq!(
            AuditQuery {
                kind: Some("login".into()),
                limit: Some(5),
                ..AuditQuery::default()
            }
            .pairs(),
            vec![("limit", "5".to_owned()), ("type", "login".to_owned())]
        );
        assert_eq!(
            UserQuery {
                username: Some("alice".into()),
                ..UserQuery::default()
            }
            .pairs(),
            vec![("username", "alice".to_owned())]
        );
        assert!(UserQuery::default().pairs().is_empty());
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
