//! Revocation: what has been revoked, and the read side every verifier needs to honour it.
//!
//! Three kinds of entry cover every way a token dies early: one token (`jti`), a whole session
//! (`sid`: everything descending from one login) and a per-user cut-off (every token of the user
//! issued at or before a moment). An entry lives until the last token it could match is no longer
//! accepted by any verifier ([`entry_expiry`]), so nothing outlives its token and no token
//! outlives its entry.
//!
//! Only auth-service writes entries (its session ledger); verifiers read them through the narrow
//! [`RevocationCheck`] trait, from a replica of Redis (feature `redis`) or from auth-service's
//! HTTP revocation feed (feature `feed`).

#[cfg(feature = "redis")]
mod connection;
mod cutoff;
#[cfg(feature = "feed")]
mod feed;
mod memory;
mod published;
#[cfg(feature = "redis")]
mod redis_store;
#[cfg(feature = "redis")]
mod replica;
#[cfg(feature = "feed")]
mod sse;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::claims::Claims;

#[cfg(feature = "redis")]
pub use connection::{RedisConnection, WorkerConnections};
pub use cutoff::UserCutoff;
#[cfg(feature = "feed")]
pub use feed::{ClientSecret, FeedConfig, FeedError, RevocationFeed};
pub use memory::MemoryRevocations;
pub use published::Published;
#[cfg(feature = "redis")]
pub use redis_store::{connect as connect_redis, RedisRevocations, RevocationKeys};
#[cfg(feature = "redis")]
pub use replica::RevocationReplica;

/// What is revoked.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Revocation {
    /// One token, by `jti`.
    Token { jti: String },
    /// Every token of one session (one login and every pair rotated from it).
    Session { sid: String },
    /// Every token of user `sub` issued at or before `before_ms` (Unix milliseconds), except
    /// the one token `except_jti` (the session that asked for it, e.g. a password change); and,
    /// with no exception, every token issued at or before `strict_before_ms`. Stored merged:
    /// see [`UserCutoff::merge`] for why a later cut-off can never widen an earlier one.
    UserBefore {
        sub: String,
        before_ms: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        except_jti: Option<String>,
        #[serde(default, skip_serializing_if = "is_zero")]
        strict_before_ms: i64,
    },
}

fn is_zero(value: &i64) -> bool {
    *value == 0
}

impl Revocation {
    /// Whether this revocation kills a token with these claims.
    pub fn matches(&self, claims: &Claims) -> bool {
        match self {
            Revocation::Token { jti } => *jti == claims.jti,
            Revocation::Session { sid } => claims.sid.as_deref() == Some(sid.as_str()),
            Revocation::UserBefore { sub, .. } => {
                *sub == claims.sub
                    && UserCutoff::of(self)
                        .is_some_and(|cut| cut.kills(claims.issued_at_ms(), &claims.jti))
            }
        }
    }
}

/// A revocation and the Unix time (seconds) from which it no longer matters: it matches tokens
/// while `now < expires_at`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationEntry {
    #[serde(flatten)]
    pub target: Revocation,
    pub expires_at: i64,
}

impl RevocationEntry {
    pub fn is_live(&self, now: i64) -> bool {
        self.expires_at > now
    }
}

/// The one expiry rule of every entry: a verifier accepts a token while `now <= exp + leeway`
/// (whole seconds), so the entry must still match at that second and may go one second later.
pub fn entry_expiry(last_exp: i64, leeway: u64) -> i64 {
    last_exp + leeway as i64 + 1
}

#[derive(Debug, thiserror::Error)]
pub enum StoreUnavailable {
    #[cfg(feature = "redis")]
    #[error("revocation store unavailable: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("revocation store unavailable: {0}")]
    Other(String),
    /// A write reached the Redis master, but fewer replicas than required confirmed it in time
    /// (`WAIT`): it is in effect now, but a failover before it replicates would undo it.
    #[error("written to the Redis master, but {acked} of the {wanted} replicas required confirmed it within {timeout_ms} ms")]
    NotReplicated {
        wanted: u32,
        acked: u32,
        timeout_ms: u64,
    },
}

/// The read side of revocations: all a verifier needs.
pub trait RevocationCheck: Send + Sync + 'static {
    /// Whether any recorded revocation matches these claims. Fails (and the caller answers 503)
    /// when the answer cannot be trusted.
    fn is_revoked<'a>(
        &'a self,
        claims: &'a Claims,
    ) -> BoxFuture<'a, Result<bool, StoreUnavailable>>;

    /// Whether revocations can be checked right now (for `/readyz`).
    fn ready(&self) -> BoxFuture<'_, Result<(), StoreUnavailable>>;

    /// A short name for logs and readiness output.
    fn kind(&self) -> &'static str;
}
