//! Revocations in Redis, shared by every instance. Each entry is a key that expires with the last
//! token it matches, and each new entry is also published on a channel so resource servers can
//! keep a local replica instead of asking Redis on every request. auth-service writes them (its
//! session ledger); this is the read side.

use futures_util::future::{BoxFuture, FutureExt};
use redis::AsyncCommands;

use super::connection::RedisConnection;
use super::{Revocation, RevocationCheck, RevocationEntry, StoreUnavailable};
use crate::claims::Claims;
use crate::now_unix;
use crate::RedisTarget;

/// Key names under one prefix, so tests and deployments can share a Redis without colliding.
#[derive(Clone, Debug)]
pub struct RevocationKeys {
    prefix: String,
}

impl RevocationKeys {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    pub fn entry(&self, target: &Revocation) -> String {
        match target {
            Revocation::Token { jti } => self.token(jti),
            Revocation::Session { sid } => self.session(sid),
            Revocation::UserBefore { sub, .. } => self.user(sub),
        }
    }

    pub fn token(&self, jti: &str) -> String {
        format!("{}revoked:token:{jti}", self.prefix)
    }

    pub fn session(&self, sid: &str) -> String {
        format!("{}revoked:session:{sid}", self.prefix)
    }

    pub fn user(&self, sub: &str) -> String {
        format!("{}revoked:user:{sub}", self.prefix)
    }

    pub fn rotation(&self, jti: &str) -> String {
        format!("{}rotated:{jti}", self.prefix)
    }

    /// A refresh token's spent marker, as releases before the chain record wrote one per
    /// rotation; now only read, so tokens spent before an upgrade stay spent.
    pub fn spent(&self, jti: &str) -> String {
        format!("{}spent:{jti}", self.prefix)
    }

    /// A chain of refresh tokens (a session's): the `jti` of its newest token.
    pub fn chain(&self, chain: &str) -> String {
        format!("{}chain:{chain}", self.prefix)
    }

    /// auth-service's per-user bookkeeping: the cut-off generation and the latest issue time.
    pub fn user_ledger(&self, sub: &str) -> String {
        format!("{}ledger:user:{sub}", self.prefix)
    }

    /// `SCAN MATCH` pattern for every revocation entry (spent markers excluded).
    pub fn entry_pattern(&self) -> String {
        format!("{}revoked:*", self.prefix)
    }

    /// The pub/sub channel each new entry is published on, as its JSON.
    pub fn channel(&self) -> String {
        format!("{}revocations", self.prefix)
    }
}

/// Connects to `REDIS_URL`'s server (for Sentinel, its current master), with short timeouts: a
/// request must fail fast with 503, not hang, when Redis is down. See [`RedisConnection`].
pub async fn connect(target: &RedisTarget) -> Result<RedisConnection, StoreUnavailable> {
    Ok(RedisConnection::connect(target).await?)
}

pub struct RedisRevocations {
    connection: RedisConnection,
    keys: RevocationKeys,
}

impl RedisRevocations {
    pub async fn connect(target: &RedisTarget, prefix: &str) -> Result<Self, StoreUnavailable> {
        let connection = connect(target).await?;
        Ok(Self {
            connection,
            keys: RevocationKeys::new(prefix),
        })
    }

    pub fn keys(&self) -> &RevocationKeys {
        &self.keys
    }

    async fn check(&self, claims: &Claims) -> Result<bool, StoreUnavailable> {
        let mut keys = vec![self.keys.token(&claims.jti), self.keys.user(&claims.sub)];
        if let Some(sid) = &claims.sid {
            keys.push(self.keys.session(sid));
        }
        let mut connection = self.connection.clone();
        let values: Vec<Option<String>> = connection.mget(&keys).await?;
        let now = now_unix();
        let mut revoked = false;
        for json in values.iter().flatten() {
            // An entry we cannot read might be the one that revokes this token: fail closed.
            let entry: RevocationEntry = serde_json::from_str(json)
                .map_err(|e| StoreUnavailable::Other(format!("unreadable entry: {e}")))?;
            revoked |= entry.is_live(now) && entry.target.matches(claims);
        }
        Ok(revoked)
    }
}

impl RevocationCheck for RedisRevocations {
    fn is_revoked<'a>(
        &'a self,
        claims: &'a Claims,
    ) -> BoxFuture<'a, Result<bool, StoreUnavailable>> {
        self.check(claims).boxed()
    }

    fn ready(&self) -> BoxFuture<'_, Result<(), StoreUnavailable>> {
        async move {
            let mut connection = self.connection.clone();
            redis::cmd("PING")
                .query_async::<String>(&mut connection)
                .await?;
            Ok(())
        }
        .boxed()
    }

    fn kind(&self) -> &'static str {
        "redis"
    }
}
