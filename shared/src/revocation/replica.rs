//! A resource server's local copy of the revocation list: loaded in full from Redis, kept current
//! by the pub/sub channel, so checking a token costs a hash lookup and no network trip.
//!
//! Staleness bound: the replica is trusted only while its subscription answered a heartbeat
//! within `staleness` (heartbeats every `staleness / 4`, at most one second). A revocation published while
//! the subscription is healthy arrives within that bound; if the subscription is broken for
//! longer, `is_revoked` fails and the service answers 503 rather than accept a token that may
//! have been revoked. After a reconnect the replica reloads everything before it is trusted again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::{self, BoxFuture, FutureExt};
use futures_util::StreamExt;
use redis::aio::ConnectionManager;

use super::redis_store::{connect, RevocationKeys};
use super::{MemoryRevocations, RevocationCheck, RevocationEntry, StoreUnavailable};
use crate::claims::Claims;

pub struct RevocationReplica {
    entries: MemoryRevocations,
    synced: AtomicBool,
    last_heartbeat: Mutex<Option<Instant>>,
    staleness: Duration,
}

impl RevocationReplica {
    /// Starts the replica and its background sync task. Returns at once; until the first full
    /// load completes, the replica reports itself not ready.
    pub fn start(url: String, prefix: String, staleness: Duration) -> Arc<Self> {
        let replica = Arc::new(Self {
            entries: MemoryRevocations::new(),
            synced: AtomicBool::new(false),
            last_heartbeat: Mutex::new(None),
            staleness,
        });
        let task = replica.clone();
        tokio::spawn(async move { task.sync_forever(url, RevocationKeys::new(prefix)).await });
        replica
    }

    pub fn staleness(&self) -> Duration {
        self.staleness
    }

    /// Whether the replica may be trusted right now.
    pub fn is_current(&self) -> bool {
        self.synced.load(Ordering::Acquire)
            && self
                .last_heartbeat
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_some_and(|at| at.elapsed() <= self.staleness)
    }

    fn beat(&self) {
        *self
            .last_heartbeat
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }

    async fn sync_forever(self: Arc<Self>, url: String, keys: RevocationKeys) {
        let mut delay = Duration::from_millis(100);
        loop {
            match self.sync_once(&url, &keys).await {
                Ok(()) => delay = Duration::from_millis(100),
                Err(err) => {
                    tracing::warn!(error = %err, retry_in_ms = delay.as_millis() as u64, "revocation replica out of sync");
                }
            }
            self.synced.store(false, Ordering::Release);
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }

    /// Subscribes, then loads everything, then applies messages until the connection fails.
    /// Subscribing first means nothing published during the load is missed.
    async fn sync_once(&self, url: &str, keys: &RevocationKeys) -> Result<(), StoreUnavailable> {
        let connect_timeout = Duration::from_secs(2);
        let (client, mut connection) = connect(url).await?;
        let pubsub = tokio::time::timeout(connect_timeout, client.get_async_pubsub())
            .await
            .map_err(|_| StoreUnavailable::Other("pub/sub connect timed out".into()))??;
        let (mut sink, mut stream) = pubsub.split();
        sink.subscribe(keys.channel()).await?;

        let loaded = load_all(&mut connection, keys).await?;
        self.entries.clear();
        let count = loaded.len();
        for entry in loaded {
            self.entries.apply(entry);
        }
        self.beat();
        self.synced.store(true, Ordering::Release);
        tracing::info!(entries = count, "revocation replica synced");

        let period = (self.staleness / 4).min(Duration::from_secs(1));
        let mut heartbeat = tokio::time::interval(period);
        loop {
            tokio::select! {
                message = stream.next() => {
                    let Some(message) = message else {
                        return Err(StoreUnavailable::Other("subscription closed".into()));
                    };
                    // A message we cannot read might revoke something: resync rather than skip it.
                    let entry = serde_json::from_slice::<StoredEntry>(message.get_payload_bytes())
                        .map_err(|e| StoreUnavailable::Other(format!("malformed revocation message: {e}")))?;
                    if let Some(entry) = entry.for_verifiers() {
                        self.entries.apply(entry);
                    }
                }
                _ = heartbeat.tick() => {
                    // In subscribed mode PING answers ["pong", ""], hence `Value`.
                    let pong = tokio::time::timeout(period.max(Duration::from_millis(500)), sink.ping::<redis::Value>()).await;
                    match pong {
                        Ok(Ok(_)) => self.beat(),
                        Ok(Err(err)) => return Err(err.into()),
                        Err(_) => return Err(StoreUnavailable::Other("heartbeat timed out".into())),
                    }
                }
            }
        }
    }
}

/// An entry as auth-service stores and publishes it. `verifier_expires_at` is when the last
/// *access* token it matches expires (plus leeway): a verifier never sees refresh tokens, so it
/// keeps the entry only that long — at most an access-token lifetime, not the refresh lifetime
/// the issuer keeps it for — and not at all when it is 0 (it can only match refresh tokens).
/// Entries written before the field existed keep their full life.
#[derive(serde::Deserialize)]
struct StoredEntry {
    #[serde(flatten)]
    entry: RevocationEntry,
    #[serde(default)]
    verifier_expires_at: Option<i64>,
}

impl StoredEntry {
    fn for_verifiers(self) -> Option<RevocationEntry> {
        let mut entry = self.entry;
        if let Some(until) = self.verifier_expires_at {
            entry.expires_at = entry.expires_at.min(until);
        }
        entry.is_live(crate::now_unix()).then_some(entry)
    }
}

/// Every live entry under the prefix: `SCAN` in batches, values by `MGET`.
async fn load_all(
    connection: &mut ConnectionManager,
    keys: &RevocationKeys,
) -> Result<Vec<RevocationEntry>, StoreUnavailable> {
    let mut cursor: u64 = 0;
    let mut entries = Vec::new();
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(keys.entry_pattern())
            .arg("COUNT")
            .arg(1000)
            .query_async(connection)
            .await?;
        if !batch.is_empty() {
            let values: Vec<Option<String>> = redis::cmd("MGET")
                .arg(&batch)
                .query_async(connection)
                .await?;
            for json in values.iter().flatten() {
                let stored: StoredEntry = serde_json::from_str(json).map_err(|e| {
                    StoreUnavailable::Other(format!("unreadable revocation entry: {e}"))
                })?;
                entries.extend(stored.for_verifiers());
            }
        }
        if next == 0 {
            return Ok(entries);
        }
        cursor = next;
    }
}

impl RevocationCheck for RevocationReplica {
    fn is_revoked<'a>(
        &'a self,
        claims: &'a Claims,
    ) -> BoxFuture<'a, Result<bool, StoreUnavailable>> {
        let result = if self.is_current() {
            Ok(self.entries.contains_match(claims))
        } else {
            Err(StoreUnavailable::Other(
                "revocation replica is not in sync with Redis".into(),
            ))
        };
        future::ready(result).boxed()
    }

    fn ready(&self) -> BoxFuture<'_, Result<(), StoreUnavailable>> {
        let result = if self.is_current() {
            Ok(())
        } else {
            Err(StoreUnavailable::Other(
                "revocation replica is not in sync with Redis".into(),
            ))
        };
        future::ready(result).boxed()
    }

    fn kind(&self) -> &'static str {
        "redis-replica"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifiers_keep_an_entry_only_as_long_as_an_access_token_it_matches() {
        let now = crate::now_unix();
        let parse = |json: String| {
            serde_json::from_str::<StoredEntry>(&json)
                .unwrap()
                .for_verifiers()
                .map(|e| e.expires_at)
        };
        let session = |extra: &str| {
            format!(
                r#"{{"kind":"session","sid":"s","expires_at":{}{extra}}}"#,
                now + 2_592_031
            )
        };
        assert_eq!(
            parse(session(&format!(r#","verifier_expires_at":{}"#, now + 931))),
            Some(now + 931)
        );
        // Only refresh tokens can match it: not kept at all.
        assert_eq!(parse(session(r#","verifier_expires_at":0"#)), None);
        // Written before the field existed: its full life.
        assert_eq!(parse(session("")), Some(now + 2_592_031));
    }
}
