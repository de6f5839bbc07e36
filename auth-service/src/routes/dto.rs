//! Request and response bodies shared by the auth routes (kept apart from the diesel models).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use shared::openapi::RoleSchema;
use shared::Role;

use crate::domain::{Password, Username};
use crate::error::AuthError;
use crate::store::User;

#[derive(Deserialize, utoipa::ToSchema)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl Credentials {
    /// The rules of a new account; every problem is reported at once.
    pub fn into_new_account(self) -> Result<(Username, Password), AuthError> {
        let mut fields = BTreeMap::new();
        let username = Username::parse(&self.username)
            .map_err(|p| fields.insert("username".to_owned(), p.to_owned()))
            .ok();
        let password = Password::parse(&self.password)
            .map_err(|p| fields.insert("password".to_owned(), p.to_owned()))
            .ok();
        match (username, password) {
            (Some(username), Some(password)) => Ok((username, password)),
            _ => Err(AuthError::Validation(fields)),
        }
    }
}

/// The body of `POST /auth/register`: [`Credentials`] with the rules of `Username::parse` and
/// `Password::parse` spelled out for clients (the strength rule cannot be a schema).
#[derive(utoipa::ToSchema)]
pub struct NewAccount {
    /// Case-insensitive; stored lower-cased.
    #[schema(pattern = "^[A-Za-z0-9_.-]{3,64}$")]
    pub username: String,
    /// Must not contain the username and must reach the zxcvbn score `AUTH_PASSWORD_MIN_SCORE`
    /// (3 by default).
    #[schema(min_length = 8, max_length = 128)]
    pub password: String,
}

/// A user. `created_at` is absent only in the answer to `POST /auth/register`.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = User)]
pub struct UserBody {
    id: String,
    username: String,
    #[schema(value_type = Vec<RoleSchema>)]
    roles: Vec<Role>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, format = DateTime, required = false)]
    created_at: Option<String>,
    /// Disabled by an administrator: no login, no refresh, every token refused.
    disabled: bool,
    /// A second factor (TOTP) is enrolled and required at every login.
    mfa: bool,
}

impl UserBody {
    pub fn of(user: &User, with_created_at: bool) -> Self {
        UserBody {
            id: user.id.clone(),
            username: user.username.clone(),
            roles: user.roles.clone(),
            created_at: with_created_at.then(|| rfc3339(user.created_at)),
            disabled: user.disabled,
            mfa: user.mfa(),
        }
    }
}

/// `limit` of a list query: 1-100, default 20.
pub fn page_limit(raw: Option<&str>) -> Result<i64, AuthError> {
    match raw {
        None => Ok(20),
        Some(raw) => match raw.parse::<i64>() {
            Ok(n) if (1..=100).contains(&n) => Ok(n),
            _ => Err(AuthError::BadRequest(
                "limit must be a whole number from 1 to 100",
            )),
        },
    }
}

/// A `cursor` of a list query: an id this service handed out (a UUID).
pub fn page_cursor(raw: Option<&str>) -> Result<Option<String>, AuthError> {
    match raw {
        None | Some("") => Ok(None),
        Some(raw) => uuid::Uuid::parse_str(raw)
            .map(|id| Some(id.to_string()))
            .map_err(|_| AuthError::BadRequest("cursor is not one this service issued")),
    }
}

/// A stored millisecond timestamp as the API shows it (RFC 3339, UTC, milliseconds).
pub fn rfc3339(millis: i64) -> String {
    chrono::DateTime::from_timestamp_millis(millis)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
