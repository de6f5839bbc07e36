//! What both services share: the token claims, the error contract of `API.md`, token verification,
//! revocation storage and the actix glue that turns a request into verified claims.

pub mod claims;
#[cfg(feature = "client")]
pub mod client;
pub mod config;
#[cfg(feature = "db")]
pub mod db;
pub mod error;
pub mod extract;
pub mod jwks;
pub mod jwks_cache;
pub mod metrics;
#[cfg(feature = "openapi")]
pub mod openapi;
pub mod revocation;
pub mod server;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod verifier;

pub use claims::{AccessClaims, Claims, RefreshClaims, Role, TokenType};
pub use error::{ErrorBody, ErrorCode, TokenError};
pub use extract::{AuthContext, KeyRefresher, MaybeAccessClaims, TokenSource};
pub use metrics::Metrics;
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
