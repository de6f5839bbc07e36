use std::ops::Deref;

use serde::{Deserialize, Serialize};

use crate::error::TokenError;

/// A role a user can hold. Ordered from least to most privileged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Editor,
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::User, Role::Editor, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Editor => "editor",
            Role::Admin => "admin",
        }
    }

    pub fn parse(value: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.as_str() == value)
    }
}

/// A scope a service account (client credentials) can be granted; what each allows is in
/// docs/api.md. User tokens carry roles instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Scope {
    #[serde(rename = "books:read")]
    BooksRead,
    #[serde(rename = "books:write")]
    BooksWrite,
    #[serde(rename = "introspect")]
    Introspect,
    #[serde(rename = "revocations:read")]
    RevocationsRead,
}

impl Scope {
    pub const ALL: [Scope; 4] = [
        Scope::BooksRead,
        Scope::BooksWrite,
        Scope::Introspect,
        Scope::RevocationsRead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::BooksRead => "books:read",
            Scope::BooksWrite => "books:write",
            Scope::Introspect => "introspect",
            Scope::RevocationsRead => "revocations:read",
        }
    }

    pub fn parse(value: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|scope| scope.as_str() == value)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenType {
    Access,
    Refresh,
}

/// Every claim our tokens carry. Unknown claims are ignored so that issuers may add custom ones;
/// missing or mistyped required claims make the token invalid.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    /// The user's id.
    pub sub: String,
    pub jti: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    #[serde(rename = "type")]
    pub token_type: TokenType,
    pub fresh: bool,
    pub roles: Vec<Role>,
    /// The user's name; empty (and not sent) for a service token.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub username: String,
    /// The session (one per login) this token descends from; none for a service token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// Service tokens only: the granted scopes, space-separated (RFC 6749 §3.3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Service tokens only: the client the token was issued to (RFC 9068), equal to `sub`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Double-submit CSRF value, bound into tokens issued for cookie mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csrf: Option<String>,
}

impl Claims {
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// Whether the space-separated `scope` claim grants `scope`.
    pub fn has_scope(&self, scope: Scope) -> bool {
        self.scope
            .as_deref()
            .is_some_and(|granted| granted.split(' ').any(|s| s == scope.as_str()))
    }

    /// When the token was issued, in milliseconds. Our issuer uses UUIDv7 `jti`s, whose timestamp
    /// gives per-user cut-offs a finer grain than `iat`'s seconds (a login in the same second as
    /// a logout-all must survive it); it is clamped to the `iat` second, which the signature covers.
    pub fn issued_at_ms(&self) -> i64 {
        let second = self.iat.saturating_mul(1000);
        uuid::Uuid::parse_str(&self.jti)
            .ok()
            .filter(|id| id.get_version_num() == 7)
            .and_then(|id| id.get_timestamp())
            .map(|ts| {
                let (secs, nanos) = ts.to_unix();
                secs as i64 * 1000 + i64::from(nanos / 1_000_000)
            })
            .map(|ms| ms.clamp(second, second + 999))
            .unwrap_or(second + 999)
    }

    /// Seconds until the token expires (0 when already expired).
    pub fn remaining_secs(&self, now: i64) -> u64 {
        u64::try_from(self.exp - now).unwrap_or(0)
    }
}

/// Claims of a verified access token. Only the verifier builds one, so a handler that takes
/// `AccessClaims` can never be handed a refresh token.
#[derive(Clone, Debug)]
pub struct AccessClaims(pub(crate) Claims);

/// Claims of a verified refresh token.
#[derive(Clone, Debug)]
pub struct RefreshClaims(pub(crate) Claims);

impl AccessClaims {
    /// Passes when the token holds at least one of `roles`.
    pub fn require_any_role(&self, roles: &[Role]) -> Result<(), TokenError> {
        if roles.iter().any(|role| self.0.has_role(*role)) {
            Ok(())
        } else {
            Err(TokenError::InsufficientRole)
        }
    }

    /// Passes for a service token granted `scope` (RFC 6749 §3.3); a user token has no scopes.
    pub fn require_scope(&self, scope: Scope) -> Result<(), TokenError> {
        if self.0.has_scope(scope) {
            Ok(())
        } else {
            Err(TokenError::InsufficientRole)
        }
    }

    /// Whether this is a service token (client credentials) rather than a user's.
    pub fn is_service(&self) -> bool {
        self.0.client_id.is_some()
    }

    pub fn require_role(&self, role: Role) -> Result<(), TokenError> {
        self.require_any_role(&[role])
    }

    /// Passes only for a token that came straight from a password login.
    pub fn require_fresh(&self) -> Result<(), TokenError> {
        if self.0.fresh {
            Ok(())
        } else {
            Err(TokenError::FreshRequired)
        }
    }

    pub fn into_inner(self) -> Claims {
        self.0
    }
}

impl RefreshClaims {
    pub fn into_inner(self) -> Claims {
        self.0
    }
}

impl Deref for AccessClaims {
    type Target = Claims;
    fn deref(&self) -> &Claims {
        &self.0
    }
}

impl Deref for RefreshClaims {
    type Target = Claims;
    fn deref(&self) -> &Claims {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(roles: Vec<Role>, fresh: bool) -> AccessClaims {
        AccessClaims(Claims {
            iss: "i".into(),
            aud: "a".into(),
            sub: "1".into(),
            jti: "j".into(),
            iat: 0,
            nbf: 0,
            exp: 10,
            token_type: TokenType::Access,
            fresh,
            roles,
            username: "u".into(),
            sid: None,
            csrf: None,
            scope: None,
            client_id: None,
        })
    }

    #[test]
    fn role_checks() {
        let editor = claims(vec![Role::User, Role::Editor], false);
        assert!(editor
            .require_any_role(&[Role::Editor, Role::Admin])
            .is_ok());
        assert_eq!(
            editor.require_role(Role::Admin),
            Err(TokenError::InsufficientRole)
        );
        assert_eq!(editor.require_fresh(), Err(TokenError::FreshRequired));
        assert!(claims(vec![Role::Admin], true).require_fresh().is_ok());
    }

    #[test]
    fn roles_round_trip_as_lowercase_strings() {
        assert_eq!(serde_json::to_string(&Role::Editor).unwrap(), "\"editor\"");
        assert_eq!(Role::parse("admin"), Some(Role::Admin));
        assert_eq!(Role::parse("root"), None);
    }
}
