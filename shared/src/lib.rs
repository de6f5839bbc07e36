//! What both services share: the token claims, the error contract of `docs/api.md`, token verification,
//! revocation storage and the actix glue that turns a request into verified claims.
//!
//! Always compiled, with no HTTP stack: `claims` (claims and roles), `error` (the error contract
//! as plain serde types), `jwks` (the JWKS types) and `verifier` (the RS256 `TokenVerifier`:
//! jsonwebtoken's header type, aws-lc-rs for the signature). Everything else is behind a
//! feature, none on by default, so that a client does not link the servers:
//!
//! - `client`: the typed HTTP client of the platform (`client`), for the CLI and cross-service
//!   tests. Pulls in reqwest and tokio.
//! - `verify`: for any resource server, `jwks_cache` (the issuer's keys, fetched and refreshed)
//!   and `revocation` (the entries, the `RevocationCheck` read side, the in-process store).
//!   Pulls in reqwest, tokio and futures-util.
//! - `actix`: `verify`, plus `extract` (verified claims as actix extractors) and the actix side of
//!   `error` (`ErrorBody::into_response`, `TokenError` as a `ResponseError`, `rejections`).
//!   Pulls in actix-web.
//! - `redis`: `verify`, plus the Redis revocation store and the replica resource servers keep,
//!   and `revocation::RedisConnection`, the one connection type every Redis user goes through
//!   (one server, or the master of a Redis Sentinel deployment, followed across failovers).
//!   Pulls in redis.
//! - `feed`: `verify`, plus `revocation::RevocationFeed`, the copy fed by auth-service's HTTP
//!   revocation feed (snapshot, then Server-Sent Events), for verifiers that cannot reach Redis.
//!   Pulls in nothing more than `verify`.
//! - `server`: `actix`, plus what both services run: `server`, `telemetry`, `metrics`, `config`
//!   and `retry_with_backoff`. Pulls in tracing-subscriber.
//! - `redis` or `server`: `redis_target`, the parser of `REDIS_URL` (`redis://` or
//!   `redis+sentinel://`).
//! - `db`: the diesel pool over PostgreSQL and embedded SQLite (`db`). Pulls in diesel and SQLite.
//! - `pg-async`: `db`, plus `pg_async`, a service's hot statements on one tokio-postgres
//!   connection per worker thread, without the blocking pool. Pulls in tokio-postgres.
//! - `openapi`: `actix`, plus helpers for the services' OpenAPI documents (`openapi`). Pulls in
//!   utoipa.
//! - `testing`: `db`, plus helpers for the services' integration tests (`testing`). Pulls in
//!   reqwest.
//!
//! Another Rust service verifies our tokens with `features = ["verify"]`, or `["actix"]` for the
//! extractors (and `"feed"` to honour revocations without Redis); the services take
//! `["server", "redis", "db", "openapi"]`, books-service `"feed"` as well.

pub mod claims;
#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "server")]
pub mod config;
#[cfg(feature = "db")]
pub mod db;
pub mod error;
#[cfg(feature = "actix")]
pub mod extract;
pub mod jwks;
#[cfg(feature = "verify")]
pub mod jwks_cache;
#[cfg(feature = "server")]
pub mod metrics;
#[cfg(feature = "openapi")]
pub mod openapi;
#[cfg(feature = "pg-async")]
pub mod pg_async;
#[cfg(any(feature = "redis", feature = "server"))]
pub mod redis_target;
#[cfg(feature = "verify")]
pub mod revocation;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "server")]
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod verifier;

pub use claims::{AccessClaims, Claims, RefreshClaims, Role, Scope, TokenType};
pub use error::{ErrorBody, ErrorCode, TokenError};
#[cfg(feature = "actix")]
pub use extract::{AuthContext, MaybeAccessClaims, RefreshToRotate, TokenSource};
#[cfg(feature = "verify")]
pub use jwks_cache::KeyRefresher;
#[cfg(feature = "server")]
pub use metrics::Metrics;
#[cfg(any(feature = "redis", feature = "server"))]
pub use redis_target::RedisTarget;
#[cfg(feature = "verify")]
pub use revocation::{entry_expiry, Revocation, RevocationCheck, RevocationEntry, UserCutoff};
pub use verifier::{KeySet, TokenVerifier, VerifierConfig};

/// Seconds since the Unix epoch.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Retries `attempt` with exponential backoff (100 ms doubling to 3 s) until it succeeds or
/// `wait` has passed, so a service started before its dependencies waits instead of crashing.
#[cfg(feature = "server")]
pub async fn retry_with_backoff<T, E, F, Fut>(
    what: &str,
    wait: std::time::Duration,
    mut attempt: F,
) -> Result<T, E>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let deadline = tokio::time::Instant::now() + wait;
    let mut delay = std::time::Duration::from_millis(100);
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(err) if tokio::time::Instant::now() + delay < deadline => {
                tracing::warn!(dependency = what, error = %err, retry_in_ms = delay.as_millis() as u64, "not reachable yet");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(std::time::Duration::from_secs(3));
            }
            Err(err) => return Err(err),
        }
    }
}
