//! Revocation: what has been revoked, and the stores that remember it for exactly as long as the
//! revoked tokens could still be presented.
//!
//! Three kinds of entry cover every way a token dies early: one token (`jti`), a whole refresh
//! family (everything descending from one login) and a per-user cut-off (every token of the user
//! issued at or before a moment). An entry expires when the last token it could match expires,
//! so nothing outlives its token.

mod memory;
mod redis_store;
mod replica;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::claims::Claims;

pub use memory::MemoryRevocations;
pub use redis_store::{connect as connect_redis, RedisRevocations, RevocationKeys};
pub use replica::RevocationReplica;

/// What is revoked.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Revocation {
    /// One token, by `jti`.
    Token { jti: String },
    /// Every token of one refresh family.
    Family { fam: String },
    /// Every token of user `sub` issued at or before `before_ms` (Unix milliseconds), except
    /// the one token `except_jti` (the session that asked for it, e.g. a password change).
    UserBefore {
        sub: String,
        before_ms: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        except_jti: Option<String>,
    },
}

impl Revocation {
    /// Whether this revocation kills a token with these claims.
    pub fn matches(&self, claims: &Claims) -> bool {
        match self {
            Revocation::Token { jti } => *jti == claims.jti,
            Revocation::Family { fam } => claims.fam.as_deref() == Some(fam.as_str()),
            Revocation::UserBefore {
                sub,
                before_ms,
                except_jti,
            } => {
                *sub == claims.sub
                    && claims.issued_at_ms() <= *before_ms
                    && except_jti.as_deref() != Some(claims.jti.as_str())
            }
        }
    }
}

/// A revocation and the Unix time after which it no longer matters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationEntry {
    #[serde(flatten)]
    pub target: Revocation,
    pub expires_at: i64,
}

#[derive(Debug, thiserror::Error)]
#[error("revocation store unavailable: {0}")]
pub struct StoreUnavailable(pub String);

impl From<redis::RedisError> for StoreUnavailable {
    fn from(err: redis::RedisError) -> Self {
        StoreUnavailable(err.to_string())
    }
}

/// Where revocations live. Implementations keep every entry until its `expires_at` and no longer.
pub trait RevocationStore: Send + Sync + 'static {
    /// Records a revocation; entries already past `expires_at` are ignored.
    fn revoke(&self, entry: RevocationEntry) -> BoxFuture<'_, Result<(), StoreUnavailable>>;

    /// Whether any recorded revocation matches these claims.
    fn is_revoked<'a>(
        &'a self,
        claims: &'a Claims,
    ) -> BoxFuture<'a, Result<bool, StoreUnavailable>>;

    /// Marks a refresh token as used. `true` the first time for a `jti`, `false` ever after
    /// (until `expires_at`); atomic across every instance sharing the store.
    fn spend_once<'a>(
        &'a self,
        jti: &'a str,
        expires_at: i64,
    ) -> BoxFuture<'a, Result<bool, StoreUnavailable>>;

    /// Remembers, for `grace`, the answer given when refresh token `jti` was rotated, so a client
    /// retrying the same refresh after a network error gets the same pair instead of tripping
    /// reuse detection.
    fn record_rotation<'a>(
        &'a self,
        jti: &'a str,
        answer: String,
        grace: std::time::Duration,
    ) -> BoxFuture<'a, Result<(), StoreUnavailable>>;

    /// The answer recorded by [`RevocationStore::record_rotation`], while its grace lasts.
    fn rotation<'a>(
        &'a self,
        jti: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, StoreUnavailable>>;

    /// Whether the store can be reached right now (for `/readyz`).
    fn ready(&self) -> BoxFuture<'_, Result<(), StoreUnavailable>>;

    /// A short name for logs and readiness output.
    fn kind(&self) -> &'static str;
}
