//! A resource server's copy of the issuer's public keys: fetched from the JWKS URL, refreshed
//! when `Cache-Control: max-age` runs out, and re-fetched early (at most once per cooldown, one
//! fetch in flight) when a token names a `kid` we do not know, as after a key rotation.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::{BoxFuture, FutureExt};

use crate::jwks::Jwks;
use crate::verifier::{KeySet, TokenVerifier};

/// Used when the JWKS response carries no usable `max-age`.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(300);
/// Never refresh more often than this, whatever `max-age` says.
const MIN_MAX_AGE: Duration = Duration::from_secs(5);

/// Lets a resource server fetch keys it does not know yet (a rotated signing key).
pub trait KeyRefresher: Send + Sync + 'static {
    /// Re-fetches the key set if `kid` is unknown and the cooldown allows; `true` when the
    /// verifier's keys changed.
    fn refresh_for_kid<'a>(&'a self, kid: &'a str) -> BoxFuture<'a, bool>;
}

pub struct JwksCache {
    url: String,
    client: reqwest::Client,
    verifier: Arc<TokenVerifier>,
    cooldown: Duration,
    /// Held while an on-demand fetch runs, so concurrent requests wait for one fetch.
    last_on_demand: tokio::sync::Mutex<Option<Instant>>,
    loaded: AtomicBool,
    fetches: AtomicU64,
}

impl JwksCache {
    /// Starts the background refresh loop and returns at once: the first fetch retries with
    /// backoff, so the service starts even when the issuer is not up yet.
    pub fn start(url: String, verifier: Arc<TokenVerifier>, cooldown: Duration) -> Arc<Self> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .connect_timeout(Duration::from_secs(2))
            .build()
            .unwrap_or_default();
        let cache = Arc::new(Self {
            url,
            client,
            verifier,
            cooldown,
            last_on_demand: tokio::sync::Mutex::new(None),
            loaded: AtomicBool::new(false),
            fetches: AtomicU64::new(0),
        });
        let task = cache.clone();
        tokio::spawn(async move { task.refresh_forever().await });
        cache
    }

    /// Whether a key set has been loaded (for `/readyz`).
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// How many fetches were attempted (for tests and metrics).
    pub fn fetch_count(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    async fn refresh_forever(self: Arc<Self>) {
        let mut retry = Duration::from_millis(200);
        loop {
            match self.fetch().await {
                Ok(max_age) => {
                    retry = Duration::from_millis(200);
                    tokio::time::sleep(max_age).await;
                }
                Err(err) => {
                    tracing::warn!(url = %self.url, error = %err, retry_in_ms = retry.as_millis() as u64, "JWKS fetch failed; keeping the keys we have");
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    /// Fetches and installs the key set; returns how long it may be cached.
    async fn fetch(&self) -> Result<Duration, String> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let response = self
            .client
            .get(&self.url)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("status {}", response.status()));
        }
        let max_age = response
            .headers()
            .get(reqwest::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_max_age)
            .unwrap_or(DEFAULT_MAX_AGE)
            .max(MIN_MAX_AGE);
        let jwks: Jwks = response.json().await.map_err(|e| e.to_string())?;
        let keys = KeySet::from_jwks(&jwks);
        if keys.is_empty() {
            return Err("the JWKS holds no RS256 signing key".into());
        }
        tracing::info!(
            keys = keys.len(),
            max_age_s = max_age.as_secs(),
            "JWKS loaded"
        );
        self.verifier.replace_keys(keys);
        self.loaded.store(true, Ordering::Release);
        Ok(max_age)
    }

    async fn refresh_for(&self, kid: &str) -> bool {
        let mut last = self.last_on_demand.lock().await;
        // Another request may have fetched while we waited for the lock.
        if self.verifier.keys().contains(kid) {
            return true;
        }
        if last.is_some_and(|at| at.elapsed() < self.cooldown) {
            return false;
        }
        *last = Some(Instant::now());
        match self.fetch().await {
            Ok(_) => self.verifier.keys().contains(kid),
            Err(err) => {
                tracing::warn!(error = %err, "JWKS re-fetch for an unknown kid failed");
                false
            }
        }
    }
}

impl KeyRefresher for JwksCache {
    fn refresh_for_kid<'a>(&'a self, kid: &'a str) -> BoxFuture<'a, bool> {
        self.refresh_for(kid).boxed()
    }
}

fn parse_max_age(cache_control: &str) -> Option<Duration> {
    cache_control
        .split(',')
        .filter_map(|d| d.trim().strip_prefix("max-age="))
        .find_map(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::parse_max_age;
    use std::time::Duration;

    #[test]
    fn max_age_is_read_from_cache_control() {
        assert_eq!(
            parse_max_age("public, max-age=300"),
            Some(Duration::from_secs(300))
        );
        assert_eq!(parse_max_age("no-cache"), None);
        assert_eq!(parse_max_age("max-age=abc"), None);
    }
}
