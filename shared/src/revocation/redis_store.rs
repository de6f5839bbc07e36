//! Revocations in Redis, shared by every instance. Each entry is a key whose TTL is the remaining
//! life of the tokens it matches, and each new entry is also published on a channel so resource
//! servers can keep a local replica instead of asking Redis on every request.

use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::AsyncCommands;

use super::{Revocation, RevocationEntry, RevocationStore, StoreUnavailable};
use crate::claims::Claims;
use crate::now_unix;

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
            Revocation::Family { fam } => self.family(fam),
            Revocation::UserBefore { sub, .. } => self.user(sub),
        }
    }

    pub fn token(&self, jti: &str) -> String {
        format!("{}revoked:token:{jti}", self.prefix)
    }

    pub fn family(&self, fam: &str) -> String {
        format!("{}revoked:family:{fam}", self.prefix)
    }

    pub fn user(&self, sub: &str) -> String {
        format!("{}revoked:user:{sub}", self.prefix)
    }

    pub fn rotation(&self, jti: &str) -> String {
        format!("{}rotated:{jti}", self.prefix)
    }

    pub fn spent(&self, jti: &str) -> String {
        format!("{}spent:{jti}", self.prefix)
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

/// Connects with short timeouts: a request must fail fast with 503, not hang, when Redis is down.
pub async fn connect(url: &str) -> Result<(redis::Client, ConnectionManager), StoreUnavailable> {
    let client = redis::Client::open(url)?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Duration::from_secs(2))
        .set_response_timeout(Duration::from_secs(2))
        .set_number_of_retries(2)
        .set_max_delay(500);
    let manager = ConnectionManager::new_with_config(client.clone(), config).await?;
    Ok((client, manager))
}

pub struct RedisRevocations {
    connection: ConnectionManager,
    keys: RevocationKeys,
}

impl RedisRevocations {
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, StoreUnavailable> {
        let (_, connection) = connect(url).await?;
        Ok(Self {
            connection,
            keys: RevocationKeys::new(prefix),
        })
    }

    pub fn keys(&self) -> &RevocationKeys {
        &self.keys
    }

    async fn revoke_entry(&self, entry: RevocationEntry) -> Result<(), StoreUnavailable> {
        let ttl = entry.expires_at - now_unix();
        if ttl <= 0 {
            return Ok(());
        }
        let key = self.keys.entry(&entry.target);
        let json = serde_json::to_string(&entry).map_err(|e| StoreUnavailable(e.to_string()))?;
        let mut connection = self.connection.clone();
        // One MULTI: a revocation is never stored without being announced, nor the reverse.
        redis::pipe()
            .atomic()
            .cmd("SET")
            .arg(&key)
            .arg(&json)
            .arg("EX")
            .arg(ttl)
            .ignore()
            .cmd("PUBLISH")
            .arg(self.keys.channel())
            .arg(&json)
            .ignore()
            .query_async::<()>(&mut connection)
            .await?;
        Ok(())
    }

    async fn check(&self, claims: &Claims) -> Result<bool, StoreUnavailable> {
        let mut keys = vec![self.keys.token(&claims.jti), self.keys.user(&claims.sub)];
        if let Some(fam) = &claims.fam {
            keys.push(self.keys.family(fam));
        }
        let mut connection = self.connection.clone();
        let values: Vec<Option<String>> = connection.mget(&keys).await?;
        let now = now_unix();
        Ok(values
            .iter()
            .flatten()
            .filter_map(|json| serde_json::from_str::<RevocationEntry>(json).ok())
            .any(|entry| entry.expires_at > now && entry.target.matches(claims)))
    }

    async fn spend(&self, jti: &str, expires_at: i64) -> Result<bool, StoreUnavailable> {
        let ttl = (expires_at - now_unix()).max(1);
        let mut connection = self.connection.clone();
        let set: Option<String> = redis::cmd("SET")
            .arg(self.keys.spent(jti))
            .arg(now_unix())
            .arg("NX")
            .arg("EX")
            .arg(ttl)
            .query_async(&mut connection)
            .await?;
        Ok(set.is_some())
    }
}

impl RevocationStore for RedisRevocations {
    fn revoke(&self, entry: RevocationEntry) -> BoxFuture<'_, Result<(), StoreUnavailable>> {
        self.revoke_entry(entry).boxed()
    }

    fn is_revoked<'a>(
        &'a self,
        claims: &'a Claims,
    ) -> BoxFuture<'a, Result<bool, StoreUnavailable>> {
        self.check(claims).boxed()
    }

    fn spend_once<'a>(
        &'a self,
        jti: &'a str,
        expires_at: i64,
    ) -> BoxFuture<'a, Result<bool, StoreUnavailable>> {
        self.spend(jti, expires_at).boxed()
    }

    fn record_rotation<'a>(
        &'a self,
        jti: &'a str,
        answer: String,
        grace: std::time::Duration,
    ) -> BoxFuture<'a, Result<(), StoreUnavailable>> {
        async move {
            let mut connection = self.connection.clone();
            let millis = grace.as_millis().max(1) as u64;
            let _: () = connection
                .pset_ex(self.keys.rotation(jti), answer, millis)
                .await?;
            Ok(())
        }
        .boxed()
    }

    fn rotation<'a>(
        &'a self,
        jti: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, StoreUnavailable>> {
        async move {
            let mut connection = self.connection.clone();
            Ok(connection.get(self.keys.rotation(jti)).await?)
        }
        .boxed()
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
