//! A resource server's local copy of the revocation list: loaded in full from Redis, kept current
//! by the pub/sub channel, so checking a token costs a hash lookup and no network trip.
//!
//! Staleness bound: the replica is trusted only while its subscription answered a heartbeat
//! within `staleness` (heartbeats every `staleness / 4`, at most one second). A revocation published while
//! the subscription is healthy arrives within that bound; if the subscription is broken for
//! longer, `is_revoked` fails and the service answers 503 rather than accept a token that may
//! have been revoked. A broken subscription does not end that trust at once: the replica keeps
//! serving what it has until the bound runs out, while it reconnects (100 ms, then every 250 ms)
//! — under Redis Sentinel, to the master the sentinels name now — and reloads everything. Only a
//! heartbeat after the reload makes it current again.
//!
//! A reload keeps what the replica already holds and merges what it loads into it, never clears:
//! an entry only ever ends by expiring. After a failover the new master may lack the last writes
//! of the old one (those that had not reached a replica yet), so the replica writes back every
//! live entry it holds that the master lacks (token and session entries only where the key is
//! absent, cut-offs merged with the master's by the one rule of `UserCutoff::merge`), and
//! publishes each one, so every other replica and auth-service see it too.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::{self, BoxFuture, FutureExt};
use futures_util::StreamExt;

use super::connection::RedisConnection;
use super::redis_store::{connect, RevocationKeys};
use super::{
    MemoryRevocations, Revocation, RevocationCheck, RevocationEntry, StoreUnavailable, UserCutoff,
};
use crate::claims::Claims;
use crate::RedisTarget;

pub struct RevocationReplica {
    entries: MemoryRevocations,
    synced: AtomicBool,
    last_heartbeat: Mutex<Option<Instant>>,
    staleness: Duration,
}

impl RevocationReplica {
    /// Starts the replica and its background sync task. Returns at once; until the first full
    /// load completes, the replica reports itself not ready.
    pub fn start(target: RedisTarget, prefix: String, staleness: Duration) -> Arc<Self> {
        let replica = Arc::new(Self {
            entries: MemoryRevocations::new(),
            synced: AtomicBool::new(false),
            last_heartbeat: Mutex::new(None),
            staleness,
        });
        let task = replica.clone();
        tokio::spawn(async move { task.sync_forever(target, RevocationKeys::new(prefix)).await });
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

    async fn sync_forever(self: Arc<Self>, target: RedisTarget, keys: RevocationKeys) {
        let mut delay = Duration::from_millis(100);
        loop {
            match self.sync_once(&target, &keys).await {
                Ok(()) => delay = Duration::from_millis(100),
                Err(err) => {
                    tracing::warn!(error = %err, retry_in_ms = delay.as_millis() as u64, "revocation replica out of sync");
                }
            }
            // Still trusted until the last heartbeat is `staleness` old (`is_current`).
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(250));
        }
    }

    /// Subscribes, then loads everything, then applies messages until the connection fails.
    /// Subscribing first means nothing published during the load is missed.
    async fn sync_once(
        &self,
        target: &RedisTarget,
        keys: &RevocationKeys,
    ) -> Result<(), StoreUnavailable> {
        let mut connection = connect(target).await?;
        let pubsub = connection.pubsub().await?;
        let (mut sink, mut stream) = pubsub.split();
        sink.subscribe(keys.channel()).await?;

        let loaded = load_all(&mut connection, keys).await?;
        let lost = self.entries_missing_from(&loaded);
        let count = loaded.len();
        for entry in loaded {
            self.entries.apply(entry);
        }
        if !lost.is_empty() {
            // Written back before the replica counts as current: the other replicas and
            // auth-service learn them from Redis too. A failure is no reason to stop serving
            // what this replica holds: it is retried on the next reload.
            match restore(&mut connection, keys, &lost).await {
                Ok(restored) => tracing::warn!(
                    missing = lost.len(),
                    restored,
                    "revocations the Redis master did not have (lost in a failover or restart) were written back"
                ),
                Err(err) => tracing::warn!(
                    missing = lost.len(),
                    error = %err,
                    "revocations the Redis master does not have could not be written back; kept here"
                ),
            }
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
    connection: &mut RedisConnection,
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

impl RevocationReplica {
    /// The live entries held here that `loaded` (what the master has) lacks: a token or session
    /// it does not name, or a cut-off its own for that user does not already cover.
    fn entries_missing_from(&self, loaded: &[RevocationEntry]) -> Vec<RevocationEntry> {
        let held = self.entries.entries();
        if held.is_empty() {
            return held;
        }
        let mut tokens = HashSet::new();
        let mut sessions = HashSet::new();
        let mut users: HashMap<&str, UserCutoff> = HashMap::new();
        for entry in loaded {
            match &entry.target {
                Revocation::Token { jti } => {
                    tokens.insert(jti.as_str());
                }
                Revocation::Session { sid } => {
                    sessions.insert(sid.as_str());
                }
                Revocation::UserBefore { sub, .. } => {
                    if let Some(cut) = UserCutoff::of(&entry.target) {
                        let merged = match users.remove(sub.as_str()) {
                            Some(earlier) => earlier.merge(&cut),
                            None => cut,
                        };
                        users.insert(sub.as_str(), merged);
                    }
                }
            }
        }
        // An entry about to expire is not worth a write.
        let soon = crate::now_unix() + 1;
        held.into_iter()
            .filter(|entry| entry.expires_at > soon)
            .filter(|entry| match &entry.target {
                Revocation::Token { jti } => !tokens.contains(jti.as_str()),
                Revocation::Session { sid } => !sessions.contains(sid.as_str()),
                Revocation::UserBefore { sub, .. } => {
                    match (UserCutoff::of(&entry.target), users.get(sub.as_str())) {
                        (Some(mine), Some(master)) => master.merge(&mine) != *master,
                        (Some(_), None) => true,
                        (None, _) => false,
                    }
                }
            })
            .collect()
    }
}

/// Writes `value` at KEYS[1] and publishes it, only if the key still holds ARGV[4] (absent when
/// ARGV[4] is ''). ARGV: the entry's JSON, its expiry (Unix seconds), the channel, the value
/// expected. Returns 1 when written.
const RESTORE: &str = r#"
local current = redis.call('GET', KEYS[1])
if (current or '') ~= ARGV[4] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EXAT', ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[1])
return 1
"#;

/// Writes back entries the master lacks (see the module documentation); returns how many were
/// written (the others had meanwhile been written by someone else, or already covered).
async fn restore(
    connection: &mut RedisConnection,
    keys: &RevocationKeys,
    lost: &[RevocationEntry],
) -> Result<usize, StoreUnavailable> {
    let script = redis::Script::new(RESTORE);
    let unreadable = |e: serde_json::Error| StoreUnavailable::Other(e.to_string());
    let mut restored = 0;
    for entry in lost {
        let key = keys.entry(&entry.target);
        // A few tries: a cut-off written meanwhile by auth-service is merged, not overwritten.
        for _ in 0..3 {
            let current: Option<String> =
                redis::cmd("GET").arg(&key).query_async(connection).await?;
            let Some(json) = restored_json(entry, current.as_deref()).map_err(unreadable)? else {
                break;
            };
            let written: i64 = script
                .key(&key)
                .arg(&json.0)
                .arg(json.1)
                .arg(keys.channel())
                .arg(current.as_deref().unwrap_or_default())
                .invoke_async(connection)
                .await?;
            if written == 1 {
                restored += 1;
                break;
            }
        }
    }
    Ok(restored)
}

/// What to write back for `entry` where the master holds `current`, and until when; `None` when
/// the master's entry already covers it. A token or session entry is written only where the
/// key is absent. A cut-off is merged with the master's, keeping the longer lives.
fn restored_json(
    entry: &RevocationEntry,
    current: Option<&str>,
) -> Result<Option<(String, i64)>, serde_json::Error> {
    let stored = |target: Revocation, expires_at: i64, verifier: i64| {
        let mut value = serde_json::to_value(RevocationEntry { target, expires_at })?;
        if let Some(object) = value.as_object_mut() {
            object.insert("verifier_expires_at".into(), verifier.into());
        }
        serde_json::to_string(&value).map(|json| Some((json, expires_at)))
    };
    let Some(current) = current else {
        return stored(entry.target.clone(), entry.expires_at, entry.expires_at);
    };
    let (Revocation::UserBefore { sub, .. }, Some(mine)) =
        (&entry.target, UserCutoff::of(&entry.target))
    else {
        return Ok(None);
    };
    let theirs: StoredEntry = serde_json::from_str(current)?;
    let Some(master) = UserCutoff::of(&theirs.entry.target) else {
        return Ok(None);
    };
    let merged = master.merge(&mine);
    if merged == master {
        return Ok(None);
    }
    let expires_at = theirs.entry.expires_at.max(entry.expires_at);
    let verifier = theirs
        .verifier_expires_at
        .unwrap_or(theirs.entry.expires_at)
        .max(entry.expires_at);
    stored(merged.into_revocation(sub.clone()), expires_at, verifier)
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
