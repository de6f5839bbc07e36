//! A resource server's copy of the issuer's public keys: fetched from the JWKS URL, refreshed
//! when `Cache-Control: max-age` runs out, and re-fetched early (at most once per cooldown) when a
//! token names a `kid` we do not know, as after a key rotation.
//!
//! One fetch at a time: whoever needs keys while a fetch runs (a scheduled refresh or requests with
//! an unknown `kid`) awaits that fetch's outcome instead of starting another. A body larger than
//! [`MAX_JWKS_BYTES`] is refused as soon as that is known, from `Content-Length` or while it streams.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures_util::future::{BoxFuture, FutureExt, Shared};

use crate::jwks::Jwks;
use crate::verifier::{KeySet, TokenVerifier};

/// Used when the JWKS response carries no usable `max-age`.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(300);
/// Never refresh more often than this, whatever `max-age` says.
const MIN_MAX_AGE: Duration = Duration::from_secs(5);
/// The largest JWKS body accepted. Ours is a few KiB; the cap keeps a broken or hostile issuer
/// from filling this process's memory.
pub const MAX_JWKS_BYTES: usize = 64 * 1024;

/// Lets a resource server fetch keys it does not know yet (a rotated signing key).
pub trait KeyRefresher: Send + Sync + 'static {
    /// Re-fetches the key set if `kid` is unknown and the cooldown allows; `true` when the
    /// verifier's keys changed.
    fn refresh_for_kid<'a>(&'a self, kid: &'a str) -> BoxFuture<'a, bool>;
}

/// Why a JWKS fetch failed; the keys we had are kept.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("request failed: {0}")]
    Request(#[source] reqwest::Error),
    #[error("status {0}")]
    Status(reqwest::StatusCode),
    #[error("Content-Length {announced} is over the {MAX_JWKS_BYTES}-byte cap")]
    AnnouncedTooLarge { announced: u64 },
    #[error("the body grew past the {MAX_JWKS_BYTES}-byte cap")]
    TooLarge,
    #[error("the body is not a JWKS: {0}")]
    Json(#[source] serde_json::Error),
    #[error("the JWKS holds no RS256 signing key")]
    NoSigningKey,
    #[error("the fetch task ended abnormally: {0}")]
    Task(#[source] tokio::task::JoinError),
}

/// A fetch's outcome: how long the keys may be cached, or why there are no new ones. Shared by
/// every waiter, hence the `Arc`.
pub type FetchOutcome = Result<Duration, Arc<JwksError>>;
type InFlight = Shared<BoxFuture<'static, FetchOutcome>>;

/// What a fetch needs; owned by the task that runs it, so the fetch finishes even when the
/// request that started it is dropped (a client hanging up), and its waiters still get the outcome.
struct Fetcher {
    url: String,
    client: reqwest::Client,
    verifier: Arc<TokenVerifier>,
    loaded: AtomicBool,
    fetches: AtomicU64,
}

#[derive(Default)]
struct Flight {
    /// The fetch in progress; cleared by its task when it ends.
    current: Option<InFlight>,
    /// When the last fetch for an unknown `kid` started (the cooldown counts from there).
    last_on_demand: Option<Instant>,
}

pub struct JwksCache {
    fetcher: Arc<Fetcher>,
    cooldown: Duration,
    flight: Arc<Mutex<Flight>>,
}

fn lock(flight: &Mutex<Flight>) -> MutexGuard<'_, Flight> {
    // The guarded data stays consistent whatever panicked while holding it.
    flight.lock().unwrap_or_else(|e| e.into_inner())
}

/// Clears the in-flight slot when the fetch task ends, also if it panics or is cancelled, so a
/// dead fetch can never be joined forever.
struct EndOfFlight(Arc<Mutex<Flight>>);

impl Drop for EndOfFlight {
    fn drop(&mut self) {
        lock(&self.0).current = None;
    }
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
            fetcher: Arc::new(Fetcher {
                url,
                client,
                verifier,
                loaded: AtomicBool::new(false),
                fetches: AtomicU64::new(0),
            }),
            cooldown,
            flight: Arc::new(Mutex::new(Flight::default())),
        });
        let task = cache.clone();
        tokio::spawn(async move { task.refresh_forever().await });
        cache
    }

    /// Whether a key set has been loaded (for `/readyz`).
    pub fn is_loaded(&self) -> bool {
        self.fetcher.loaded.load(Ordering::Acquire)
    }

    /// How many fetches were started (for tests and metrics); joining one does not count.
    pub fn fetch_count(&self) -> u64 {
        self.fetcher.fetches.load(Ordering::Relaxed)
    }

    /// Fetches the key set now, or awaits the fetch already in flight; returns how long the keys
    /// may be cached.
    pub async fn refresh(&self) -> FetchOutcome {
        let fetch = self.join_or_start(&mut lock(&self.flight));
        fetch.await
    }

    /// The fetch in flight, else a new one.
    fn join_or_start(&self, flight: &mut Flight) -> InFlight {
        if let Some(current) = &flight.current {
            return current.clone();
        }
        let fetcher = self.fetcher.clone();
        let slot = self.flight.clone();
        let task = tokio::spawn(async move {
            // Made on the first poll, not before: a runtime shutting down drops an unpolled task
            // inside `spawn`, where this thread still holds the lock the guard takes.
            let _end = EndOfFlight(slot);
            let outcome = fetcher.fetch().await;
            if let Err(err) = &outcome {
                tracing::warn!(url = %fetcher.url, error = %err, "JWKS fetch failed; keeping the keys we have");
            }
            outcome.map_err(Arc::new)
        });
        let shared = async move {
            task.await
                .unwrap_or_else(|e| Err(Arc::new(JwksError::Task(e))))
        }
        .boxed()
        .shared();
        flight.current = Some(shared.clone());
        shared
    }

    async fn refresh_forever(self: Arc<Self>) {
        let mut retry = Duration::from_millis(200);
        loop {
            match self.refresh().await {
                Ok(max_age) => {
                    retry = Duration::from_millis(200);
                    tokio::time::sleep(max_age).await;
                }
                Err(_) => {
                    tracing::debug!(
                        retry_in_ms = retry.as_millis() as u64,
                        "retrying the JWKS fetch"
                    );
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    async fn refresh_for(&self, kid: &str) -> bool {
        if self.fetcher.verifier.keys().contains(kid) {
            return true;
        }
        let fetch = {
            let mut flight = lock(&self.flight);
            if flight.current.is_none() {
                if flight
                    .last_on_demand
                    .is_some_and(|at| at.elapsed() < self.cooldown)
                {
                    return false;
                }
                flight.last_on_demand = Some(Instant::now());
            }
            self.join_or_start(&mut flight)
        };
        // A failure was logged once by the fetch itself, not once per waiter.
        fetch.await.is_ok() && self.fetcher.verifier.keys().contains(kid)
    }
}

impl Fetcher {
    /// Fetches and installs the key set; returns how long it may be cached.
    async fn fetch(&self) -> Result<Duration, JwksError> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let mut response = self
            .client
            .get(&self.url)
            .send()
            .await
            .map_err(JwksError::Request)?;
        if !response.status().is_success() {
            return Err(JwksError::Status(response.status()));
        }
        let announced = response.content_length();
        if let Some(announced) = announced.filter(|n| *n > MAX_JWKS_BYTES as u64) {
            return Err(JwksError::AnnouncedTooLarge { announced });
        }
        let max_age = response
            .headers()
            .get(reqwest::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_max_age)
            .unwrap_or(DEFAULT_MAX_AGE)
            .max(MIN_MAX_AGE);
        // Sized once: a body that would outgrow it is refused, so it never reallocates.
        let capacity = announced.map_or(MAX_JWKS_BYTES, |n| n as usize);
        let mut body = Vec::with_capacity(capacity);
        while let Some(chunk) = response.chunk().await.map_err(JwksError::Request)? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(JwksError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        let jwks: Jwks = serde_json::from_slice(&body).map_err(JwksError::Json)?;
        let keys = KeySet::from_jwks(&jwks);
        if keys.is_empty() {
            return Err(JwksError::NoSigningKey);
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
