//! Issuing token pairs: claims built here, signed with the ring's current key.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use shared::{Claims, Role, TokenType};

use crate::error::AuthError;
use crate::keys::KeyStore;

/// The token pair body.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    pub token_type: String,
    pub expires_in: u64,
    pub refresh_expires_in: u64,
}

pub struct IssuedPair {
    pub body: TokenPair,
    pub access: Claims,
    pub refresh: Claims,
}

impl IssuedPair {
    /// When the later of the two tokens was issued (ms): what the session ledger records.
    pub fn issued_ms(&self) -> i64 {
        self.access.issued_at_ms().max(self.refresh.issued_at_ms())
    }
}

/// Who the tokens are for.
pub struct Subject<'a> {
    pub id: &'a str,
    pub username: &'a str,
    pub roles: &'a [Role],
}

pub struct TokenIssuer {
    pub keys: Arc<KeyStore>,
    pub issuer: String,
    pub audience: String,
    pub access_ttl: u64,
    pub refresh_ttl: u64,
}

impl TokenIssuer {
    /// A new access + refresh pair. `fresh` only straight after a password check; `session` is the
    /// login the pair descends from (a new one per login, kept across refreshes); `csrf` is the
    /// double-submit value of a cookie session, bound into both tokens.
    pub fn issue_pair(
        &self,
        subject: &Subject<'_>,
        fresh: bool,
        session: &str,
        csrf: Option<String>,
    ) -> Result<IssuedPair, AuthError> {
        let now = shared::now_unix();
        let mut access = self.claims(
            subject,
            TokenType::Access,
            fresh,
            session,
            now,
            self.access_ttl,
        );
        let mut refresh = self.claims(
            subject,
            TokenType::Refresh,
            false,
            session,
            now,
            self.refresh_ttl,
        );
        access.csrf = csrf.clone();
        refresh.csrf = csrf;
        Ok(IssuedPair {
            body: TokenPair {
                access_token: self.sign(&access)?,
                refresh_token: self.sign(&refresh)?,
                token_type: "Bearer".to_owned(),
                expires_in: self.access_ttl,
                refresh_expires_in: self.refresh_ttl,
            },
            access,
            refresh,
        })
    }

    /// A service token (client credentials): `sub` and `client_id` are the client, `scope` what
    /// it was granted; no roles, no session, never fresh, no refresh token.
    pub fn issue_service(
        &self,
        client_id: &str,
        scope: &str,
    ) -> Result<(String, Claims), AuthError> {
        let subject = Subject {
            id: client_id,
            username: "",
            roles: &[],
        };
        let mut claims = self.claims(
            &subject,
            TokenType::Access,
            false,
            "",
            shared::now_unix(),
            self.access_ttl,
        );
        claims.sid = None;
        claims.scope = Some(scope.to_owned());
        claims.client_id = Some(client_id.to_owned());
        Ok((self.sign(&claims)?, claims))
    }

    fn claims(
        &self,
        subject: &Subject<'_>,
        token_type: TokenType,
        fresh: bool,
        session: &str,
        now: i64,
        ttl: u64,
    ) -> Claims {
        Claims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: subject.id.to_owned(),
            jti: uuid::Uuid::now_v7().to_string(),
            iat: now,
            nbf: now,
            exp: now + ttl as i64,
            token_type,
            fresh,
            roles: subject.roles.to_vec(),
            username: subject.username.to_owned(),
            sid: Some(session.to_owned()),
            csrf: None,
            scope: None,
            client_id: None,
        }
    }

    pub fn sign(&self, claims: &Claims) -> Result<String, AuthError> {
        let payload =
            serde_json::to_vec(claims).map_err(|e| AuthError::unexpected("encoding claims", e))?;
        let now_ms = chrono::Utc::now().timestamp_millis();
        self.keys
            .current()
            .signing_key(now_ms, self.keys.policy().activation_delay_ms)
            .sign_jwt(&payload)
            .map_err(|e| AuthError::unexpected("signing a token", e))
    }
}
