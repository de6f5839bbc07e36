//! Books remembered between reads, with invalidation that holds across instances: a write that
//! returned on any instance is never followed by the previous version from any other.
//!
//! Each instance that caches holds a **lease** in Redis (`<prefix>books:cache:members`, a sorted
//! set scored by the lease's end in Redis's clock) and serves from its cache only while its own
//! clock says the lease is current. Its own end is computed from the moment it *sent* the
//! renewal, minus a margin, so it always ends before the end Redis records.
//!
//! A write to a book (replace, delete) goes in three steps:
//! 1. **Before** the database is touched, one script marks the book "in flux"
//!    (`<prefix>books:cache:influx`, until `IN_FLUX` from now), lists the instances whose
//!    lease is current and publishes the notice on `<prefix>books:cache`. Every instance that
//!    receives it drops the book, stops caching it while it is in flux, and acknowledges. The
//!    writer waits until each listed instance has acknowledged or its lease has ended in Redis.
//!    Only then does it write; if it cannot get there (Redis down, no answer within a lease),
//!    it answers `503` with nothing written.
//! 2. The database write.
//! 3. **After**, a best-effort notice ends the in-flux state (and makes reads that were in
//!    flight during the write not fill the cache). If it is lost, the in-flux state ends by
//!    itself; the writer gives up before writing when it is too close to that end.
//!
//! Why this cannot serve a stale book after the write returned, instance by instance:
//! - it acknowledged the notice: it dropped the book before the write started, and it neither
//!   serves nor fills the book from the cache until the book is out of flux;
//! - its lease ended in Redis before the writer went on: its own clock ended it earlier, and a
//!   renewal of a lease Redis has already ended is refused, so it can only come back through a
//!   new registration, which starts empty, under a new member id, and loads the books in flux;
//! - it registered after the notice: its registration loaded the in-flux set (subscribed first,
//!   so nothing published in between is missed).
//!
//! Renewals first `PING` over the subscription: every notice published before the renewal is
//! applied before the lease is extended. A read that was loading from the database while a
//! notice arrived does not fill the cache (a generation counter), nor does one whose lease
//! ended meanwhile. Entries also end after `MAX_AGE`, a bound for writes made outside this
//! protocol (SQL by hand, a books-service without Redis on the same database).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{FutureExt, StreamExt};
use redis::RedisResult;
use shared::revocation::RedisConnection;
use shared::{Metrics, RedisTarget};

use crate::error::BooksError;
use crate::store::BookRow;

/// How long a lease lasts from a renewal; renewed every quarter of it. Also the longest a
/// write waits for an instance that has stopped answering.
pub const LEASE: Duration = Duration::from_secs(2);
/// Taken off the local end of a lease: room for clocks that run at slightly different rates.
const LEASE_MARGIN: Duration = Duration::from_millis(250);
/// How long a book stays in flux when the "after" notice is lost.
pub const IN_FLUX: Duration = Duration::from_secs(10);
/// A write that has not started its database step this long after the "before" notice gives
/// up (`503`, nothing written), so it always ends well inside `IN_FLUX`.
pub const WRITE_START_LIMIT: Duration = Duration::from_secs(5);
/// The longest an entry is served: the bound for writes made outside this protocol. A book read
/// in the last part of it is read again in the background (see [`State::lookup`]).
pub const MAX_AGE: Duration = Duration::from_secs(60);
/// How long a dead member's entry stays in the members set before a writer removes it.
const MEMBER_GRACE_MS: u64 = 60_000;
/// How long an acknowledgement set lives (a writer waits at most about a lease).
const ACK_TTL_MS: u64 = 60_000;

/// Registers (mode `register`) or renews (mode `renew`: only a lease still current in Redis)
/// member `ARGV[1]` for `ARGV[2]` ms; adds the member to the acknowledgement sets `KEYS[3..]`.
/// Mode `ack` only acknowledges. Returns `[ok, in-flux (member, ms left) pairs on register]`.
const LEASE_SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 3, #KEYS do
  redis.call('SADD', KEYS[i], ARGV[1])
  redis.call('PEXPIRE', KEYS[i], tonumber(ARGV[4]))
end
if ARGV[3] == 'ack' then return {1, {}} end
if ARGV[3] == 'renew' then
  local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
  if not score or tonumber(score) < now then return {0, {}} end
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
local flux = {}
if ARGV[3] == 'register' then
  local held = redis.call('ZRANGEBYSCORE', KEYS[2], now, '+inf', 'WITHSCORES')
  for i = 1, #held, 2 do
    table.insert(flux, held[i])
    table.insert(flux, tostring(tonumber(held[i + 1]) - now))
  end
end
return {1, flux}
"#;

/// Before a write: marks `ARGV[3]` (`<id> <write>`) in flux for `ARGV[4]` ms, publishes
/// `ARGV[2]` on channel `ARGV[1]` and returns the members whose lease is current.
const BEFORE_SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - 1)
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[4]), ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[5]))
local members = redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')
redis.call('PUBLISH', ARGV[1], ARGV[2])
return members
"#;

/// Of the members in `ARGV` that have not acknowledged (`KEYS[2]`): those whose lease is
/// current, and those whose lease has ended.
const PENDING_SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local pending = {}
local lapsed = {}
for i = 1, #ARGV do
  if redis.call('SISMEMBER', KEYS[2], ARGV[i]) == 0 then
    local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
    if score and tonumber(score) >= now then
      table.insert(pending, ARGV[i])
    else
      table.insert(lapsed, ARGV[i])
    end
  end
end
return {pending, lapsed}
"#;

/// After a write: the book is out of flux (`ARGV[3]`), and the notice `ARGV[2]` goes out.
const AFTER_SCRIPT: &str = r#"
redis.call('ZREM', KEYS[1], ARGV[3])
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1
"#;

/// What [`BookCache::lookup`] found.
pub enum Lookup {
    Hit(BookRow),
    /// Cached, and due to be read again: serve it, read it in the background and give that to
    /// [`BookCache::fill`] with this ticket (the entry still ends at its age if that fails).
    Renew(BookRow, Ticket),
    /// Not cached: read it and give it to [`BookCache::fill`] with this ticket.
    Miss(Ticket),
    /// Read it, and do not cache it (no current lease, or the book is in flux).
    Bypass,
}

/// A read's permission to fill the cache, void if anything changed while it read.
pub struct Ticket {
    generation: u64,
}

/// Settings of the cache.
#[derive(Clone, Debug)]
pub struct CacheSettings {
    /// Books kept; 0: this instance caches nothing (its writes still notify the others).
    pub entries: usize,
}

#[derive(Clone)]
pub struct BookCache {
    inner: Arc<Inner>,
}

struct Inner {
    target: RedisTarget,
    keys: Keys,
    capacity: usize,
    connection: tokio::sync::OnceCell<RedisConnection>,
    state: Mutex<State>,
    /// Notices applied but not yet acknowledged (their acknowledgement failed): sent again with
    /// the next renewal.
    unacknowledged: Mutex<Vec<String>>,
    /// Test hook: while set, the instance neither applies notices nor renews (a stalled process).
    held: AtomicBool,
    hits: Arc<AtomicU64>,
    misses: Arc<AtomicU64>,
    lapsed_members: Arc<AtomicU64>,
    scripts: Scripts,
}

struct Scripts {
    lease: redis::Script,
    before: redis::Script,
    pending: redis::Script,
    after: redis::Script,
}

struct Keys {
    members: String,
    influx: String,
    channel: String,
    ack_prefix: String,
}

struct Entry {
    row: Arc<BookRow>,
    /// From here a read also renews it (once).
    renew_at: Instant,
    renewing: bool,
    /// Served only before this: its fill plus `MAX_AGE`.
    until: Instant,
}

#[derive(Default)]
struct State {
    /// Serve only before this instant.
    valid_until: Option<Instant>,
    /// This registration's member id.
    member: String,
    /// Bumped by every notice and every lapse: a read that started before does not fill.
    generation: u64,
    entries: HashMap<String, Entry>,
    /// Writes in progress: (write id, book id, until).
    in_flux: Vec<(String, String, Instant)>,
    /// Randomly keyed (per process): draws the entries' renewal instants.
    draws: std::collections::hash_map::RandomState,
    fills: u64,
}

impl State {
    fn current(&self, now: Instant) -> bool {
        self.valid_until.is_some_and(|until| now < until)
    }

    /// Whether `id` is in flux; drops ended in-flux marks on the way.
    fn in_flux(&mut self, id: &str, now: Instant) -> bool {
        if self.in_flux.is_empty() {
            return false;
        }
        self.in_flux.retain(|(_, _, until)| *until > now);
        self.in_flux.iter().any(|(_, book, _)| book == id)
    }

    fn lookup(&mut self, id: &str, now: Instant) -> Lookup {
        if !self.current(now) || self.in_flux(id, now) {
            return Lookup::Bypass;
        }
        let generation = self.generation;
        if let Some(entry) = self.entries.get_mut(id) {
            if now < entry.until {
                let row = BookRow::clone(&entry.row);
                if now >= entry.renew_at && !entry.renewing {
                    entry.renewing = true;
                    return Lookup::Renew(row, Ticket { generation });
                }
                return Lookup::Hit(row);
            }
            self.entries.remove(id);
        }
        Lookup::Miss(Ticket {
            generation: self.generation,
        })
    }

    fn fill(&mut self, ticket: Ticket, row: &BookRow, now: Instant, capacity: usize) {
        if ticket.generation != self.generation || !self.current(now) || self.in_flux(&row.id, now)
        {
            return;
        }
        if self.entries.len() >= capacity && !self.entries.contains_key(&row.id) {
            // Any entry: the cheapest to find, and the hit rate of a cache this size is not
            // worth an LRU's bookkeeping on every read.
            if let Some(victim) = self.entries.keys().next().cloned() {
                self.entries.remove(&victim);
            }
        }
        let entry = Entry {
            row: Arc::new(row.clone()),
            renew_at: now + self.renewal_age(&row.id),
            renewing: false,
            until: now + MAX_AGE,
        };
        self.entries.insert(row.id.clone(), entry);
    }

    /// When a read of a book filled now starts renewing it: over half of `MAX_AGE`, up to three
    /// quarters, drawn anew at each fill. Entries used to end at `MAX_AGE` and simply miss: books
    /// filled together (a cold cache under load fills thousands within a second) all ended in the
    /// same second a minute later, and the reads of all of them waited on the database at once,
    /// the largest spikes of the `GET` tail under a login flood (docs/performance.md). A book in
    /// use is now read again in the background before it ends, at spread-out instants.
    fn renewal_age(&mut self, id: &str) -> Duration {
        use std::hash::BuildHasher;
        self.fills = self.fills.wrapping_add(1);
        let draw = self.draws.hash_one((id, self.fills));
        // The top 32 bits as a fraction in (0, 1].
        let fraction = ((draw >> 32) + 1) as f64 / (1u64 << 32) as f64;
        MAX_AGE / 2 + MAX_AGE.mul_f64(fraction / 4.0)
    }

    /// Applies one notice; returns the write to acknowledge.
    fn apply(&mut self, text: &str, now: Instant) -> Option<String> {
        self.generation += 1;
        match Notice::parse(text) {
            Some(Notice::Before { write, id }) => {
                self.entries.remove(id);
                self.in_flux
                    .push((write.to_owned(), id.to_owned(), now + IN_FLUX));
                Some(write.to_owned())
            }
            Some(Notice::After { write }) => {
                self.in_flux.retain(|(w, _, _)| w != write);
                None
            }
            None => {
                // A notice this version cannot read might name any book.
                tracing::warn!("unreadable book cache notice; clearing the cache");
                self.entries.clear();
                None
            }
        }
    }

    /// Nothing held survives a gap in the lease.
    fn lapse(&mut self) {
        self.valid_until = None;
        self.generation += 1;
        self.entries.clear();
    }
}

/// A notice on the channel.
enum Notice<'a> {
    Before { write: &'a str, id: &'a str },
    After { write: &'a str },
}

impl<'a> Notice<'a> {
    fn parse(text: &'a str) -> Option<Self> {
        let mut parts = text.split(' ');
        let notice = match (parts.next()?, parts.next()?, parts.next()) {
            ("before", write, Some(id)) => Notice::Before { write, id },
            ("after", write, _) => Notice::After { write },
            _ => return None,
        };
        Some(notice)
    }
}

impl BookCache {
    /// The cache of one instance. With `entries > 0` it starts holding a lease (in the
    /// background; until it holds one, every read goes to the database).
    pub fn start(
        target: RedisTarget,
        prefix: &str,
        settings: &CacheSettings,
        metrics: &Metrics,
    ) -> Self {
        let inner = Arc::new(Inner {
            target,
            keys: Keys {
                members: format!("{prefix}books:cache:members"),
                influx: format!("{prefix}books:cache:influx"),
                channel: format!("{prefix}books:cache"),
                ack_prefix: format!("{prefix}books:cache:ack:"),
            },
            capacity: settings.entries,
            connection: tokio::sync::OnceCell::new(),
            state: Mutex::new(State::default()),
            unacknowledged: Mutex::new(Vec::new()),
            held: AtomicBool::new(false),
            hits: metrics.handle("books_cache_reads_total{result=\"hit\"}"),
            misses: metrics.handle("books_cache_reads_total{result=\"miss\"}"),
            lapsed_members: metrics.handle("books_cache_writes_past_lapsed_instances_total"),
            scripts: Scripts {
                lease: redis::Script::new(LEASE_SCRIPT),
                before: redis::Script::new(BEFORE_SCRIPT),
                pending: redis::Script::new(PENDING_SCRIPT),
                after: redis::Script::new(AFTER_SCRIPT),
            },
        });
        if inner.capacity > 0 {
            tokio::spawn(hold_lease(inner.clone()));
        }
        BookCache { inner }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state()
    }

    pub fn lookup(&self, id: &str) -> Lookup {
        if self.inner.capacity == 0 {
            return Lookup::Bypass;
        }
        let found = self.state().lookup(id, Instant::now());
        match &found {
            Lookup::Hit(_) | Lookup::Renew(..) => self.inner.hits.fetch_add(1, Ordering::Relaxed),
            Lookup::Miss(_) => self.inner.misses.fetch_add(1, Ordering::Relaxed),
            Lookup::Bypass => 0,
        };
        found
    }

    /// Keeps `row`, read under `ticket`, unless something changed since the ticket was given.
    pub fn fill(&self, ticket: Ticket, row: &BookRow) {
        self.state()
            .fill(ticket, row, Instant::now(), self.inner.capacity);
    }

    /// Step 1 of a write to book `id`: returns once no instance can serve it from its cache
    /// until the write is over, with the write's id for [`BookCache::after_write`] and the
    /// moment after which the database step must not start.
    pub async fn before_write(&self, id: &str) -> Result<PendingWrite, BooksError> {
        let unavailable = |e| BooksError::unavailable("the book cache's coordination (Redis)", e);
        let write = uuid::Uuid::new_v4().simple().to_string();
        let started = Instant::now();
        let mut connection = self.inner.connection().await.map_err(unavailable)?;
        let keys = &self.inner.keys;
        let members: Vec<String> = self
            .inner
            .scripts
            .before
            .key(&keys.members)
            .key(&keys.influx)
            .arg(&keys.channel)
            .arg(format!("before {write} {id}"))
            .arg(format!("{id} {write}"))
            .arg(IN_FLUX.as_millis() as u64)
            .arg(MEMBER_GRACE_MS)
            .invoke_async(&mut connection)
            .await
            .map_err(unavailable)?;
        let pending = PendingWrite {
            id: id.to_owned(),
            write,
            start_by: started + WRITE_START_LIMIT,
        };
        let ack_key = format!("{}{}", keys.ack_prefix, pending.write);
        let mut waiting = members;
        let mut pause = Duration::from_micros(500);
        let give_up = Instant::now() + LEASE + Duration::from_millis(500);
        while !waiting.is_empty() {
            if Instant::now() > give_up {
                self.after_write(&pending).await;
                return Err(BooksError::unavailable(
                    "the book cache's coordination (Redis)",
                    format!(
                        "{} instance(s) neither acknowledged nor lost their lease",
                        waiting.len()
                    ),
                ));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(20));
            let (still, lapsed): (Vec<String>, Vec<String>) = self
                .inner
                .scripts
                .pending
                .key(&keys.members)
                .key(&ack_key)
                .arg(&waiting)
                .invoke_async(&mut connection)
                .await
                .map_err(unavailable)?;
            if !lapsed.is_empty() {
                tracing::warn!(
                    instances = lapsed.len(),
                    "a book write went on without an instance that stopped answering: its lease ended"
                );
                self.inner
                    .lapsed_members
                    .fetch_add(lapsed.len() as u64, Ordering::Relaxed);
            }
            waiting = still;
        }
        Ok(pending)
    }

    /// Step 3: the book is out of flux. Best effort: when this is lost, the in-flux state ends
    /// by itself after `IN_FLUX`.
    pub async fn after_write(&self, pending: &PendingWrite) {
        let result: RedisResult<i64> = async {
            let mut connection = self.inner.connection().await?;
            self.inner
                .scripts
                .after
                .key(&self.inner.keys.influx)
                .arg(&self.inner.keys.channel)
                .arg(format!("after {}", pending.write))
                .arg(format!("{} {}", pending.id, pending.write))
                .invoke_async(&mut connection)
                .await
        }
        .await;
        if let Err(err) = result {
            tracing::warn!(error = %err, "the book cache's end-of-write notice was lost; the book is cached again after the in-flux time");
        }
    }

    /// Test hook: a stalled instance (`true`) neither applies notices nor renews its lease.
    pub fn hold(&self, held: bool) {
        self.inner.held.store(held, Ordering::SeqCst);
    }

    /// Whether the cache holds a current lease (for tests and `/readyz`-style checks).
    pub fn is_current(&self) -> bool {
        self.state().current(Instant::now())
    }
}

/// A write between [`BookCache::before_write`] and [`BookCache::after_write`].
pub struct PendingWrite {
    id: String,
    write: String,
    start_by: Instant,
}

impl PendingWrite {
    /// Whether the database step may still start (see `WRITE_START_LIMIT`).
    pub fn may_start(&self) -> bool {
        Instant::now() < self.start_by
    }
}

impl Inner {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn connection(&self) -> RedisResult<RedisConnection> {
        self.connection
            .get_or_try_init(|| RedisConnection::connect(&self.target))
            .await
            .cloned()
    }

    fn apply(&self, payload: &[u8]) -> Option<String> {
        let text = std::str::from_utf8(payload).unwrap_or("");
        self.state().apply(text, Instant::now())
    }

    /// Acknowledges `writes` without holding up the notices behind them; a failed
    /// acknowledgement goes with the next renewal.
    fn acknowledge(self: &Arc<Self>, member: String, writes: Vec<String>) {
        if writes.is_empty() {
            return;
        }
        let inner = self.clone();
        tokio::spawn(async move {
            if let Err(err) = inner.lease_call("ack", &member, &writes).await {
                tracing::debug!(error = %err, "book cache acknowledgement failed; sent with the next renewal");
                inner
                    .unacknowledged
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend(writes);
            }
        });
    }

    async fn lease_call(
        &self,
        mode: &str,
        member: &str,
        writes: &[String],
    ) -> RedisResult<(i64, Vec<String>)> {
        let mut connection = self.connection().await?;
        let mut script = self.scripts.lease.prepare_invoke();
        script.key(&self.keys.members).key(&self.keys.influx);
        for write in writes {
            script.key(format!("{}{write}", self.keys.ack_prefix));
        }
        script
            .arg(member)
            .arg(LEASE.as_millis() as u64)
            .arg(mode)
            .arg(ACK_TTL_MS);
        let reply = tokio::time::timeout(LEASE / 2, script.invoke_async(&mut connection)).await;
        reply.unwrap_or_else(|_| {
            Err(redis::RedisError::from((
                redis::ErrorKind::IoError,
                "book cache lease call timed out",
            )))
        })
    }

    /// One registration: subscribe, register (loading what is in flux), then apply notices and
    /// renew until something fails or the lease lapses.
    async fn hold_once(self: &Arc<Self>) -> Result<(), String> {
        let connection = self.connection().await.map_err(|e| e.to_string())?;
        let pubsub = connection.pubsub().await.map_err(|e| e.to_string())?;
        let (mut sink, mut stream) = pubsub.split();
        sink.subscribe(&self.keys.channel)
            .await
            .map_err(|e| e.to_string())?;

        let member = uuid::Uuid::new_v4().simple().to_string();
        let started = Instant::now();
        let (_, in_flux) = self
            .lease_call("register", &member, &[])
            .await
            .map_err(|e| e.to_string())?;
        {
            let now = Instant::now();
            let mut state = self.state();
            state.lapse();
            state.member = member.clone();
            for pair in in_flux.chunks(2) {
                let [held, left] = pair else { continue };
                let Some((id, write)) = held.split_once(' ') else {
                    continue;
                };
                let left =
                    Duration::from_millis(left.parse().unwrap_or(IN_FLUX.as_millis() as u64));
                state
                    .in_flux
                    .push((write.to_owned(), id.to_owned(), now + left));
            }
            state.valid_until = Some(started + LEASE - LEASE_MARGIN);
        }
        tracing::info!("book cache: lease held");

        let mut renew = tokio::time::interval(LEASE / 4);
        renew.tick().await;
        // Notices that arrived while the test hook held this instance, applied once it lets go.
        let mut deferred: Vec<Vec<u8>> = Vec::new();
        loop {
            if self.held.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
            if !deferred.is_empty() {
                let writes: Vec<String> =
                    deferred.drain(..).filter_map(|p| self.apply(&p)).collect();
                self.acknowledge(member.clone(), writes);
            }
            tokio::select! {
                message = stream.next() => {
                    let Some(message) = message else {
                        return Err("subscription closed".into());
                    };
                    if self.held.load(Ordering::SeqCst) {
                        deferred.push(message.get_payload_bytes().to_vec());
                        continue;
                    }
                    let mut writes: Vec<String> = self.apply(message.get_payload_bytes()).into_iter().collect();
                    // Whatever else has arrived goes in the same acknowledgement.
                    while let Some(Some(message)) = stream.next().now_or_never() {
                        writes.extend(self.apply(message.get_payload_bytes()));
                    }
                    if !writes.is_empty() {
                        self.acknowledge(member.clone(), writes);
                    }
                }
                _ = renew.tick() => {
                    if self.held.load(Ordering::SeqCst) {
                        continue;
                    }
                    let started = Instant::now();
                    // The renewal may take as long as the lease it renews has left: until then
                    // reads are served under that lease, and once it ends they go to the
                    // database whatever this renewal is waiting for. On a host whose cores are
                    // saturated, an answer from Redis can take hundreds of ms (a PING from
                    // another process took up to 192 ms on 2 cores during a login flood); the
                    // fixed 0.5 s this had lost current leases to that, sending every read to
                    // the database at the worst moment.
                    let lease_left = self
                        .state()
                        .valid_until
                        .map_or(Duration::ZERO, |end| end.saturating_duration_since(started));
                    let renewal = async {
                        // Every notice published before this PING is delivered before its answer.
                        sink.ping::<redis::Value>().await.map_err(|e| e.to_string())?;
                        let mut writes = Vec::new();
                        loop {
                            match stream.next().now_or_never() {
                                Some(Some(message)) => writes.extend(self.apply(message.get_payload_bytes())),
                                Some(None) => return Err("subscription closed".to_owned()),
                                None => break,
                            }
                        }
                        writes.extend(std::mem::take(
                            &mut *self.unacknowledged.lock().unwrap_or_else(|e| e.into_inner()),
                        ));
                        self.lease_call("renew", &member, &writes)
                            .await
                            .map_err(|e| e.to_string())
                    };
                    // (A lease already ended, as after the test hook's stall, still gets the
                    // renewal's answer, which refuses it.)
                    let (renewed, _) = tokio::time::timeout(lease_left.max(LEASE / 4), renewal)
                        .await
                        .map_err(|_| "Redis did not answer the renewal before the lease ended".to_owned())??;
                    let mut state = self.state();
                    if renewed != 1 || !state.current(started) {
                        return Err("the lease lapsed before it was renewed".into());
                    }
                    state.valid_until = Some(started + LEASE - LEASE_MARGIN);
                }
            }
        }
    }
}

/// Holds a lease for as long as the process runs, registering anew after every failure.
async fn hold_lease(inner: Arc<Inner>) {
    loop {
        let why = match inner.hold_once().await {
            Ok(()) => String::new(),
            Err(why) => why,
        };
        inner.state().lapse();
        tracing::warn!(reason = %why, "book cache: lease lost; reading from the database until it is held again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_parse_and_unknown_ones_do_not() {
        assert!(matches!(
            Notice::parse("before w1 b1"),
            Some(Notice::Before {
                write: "w1",
                id: "b1"
            })
        ));
        assert!(matches!(
            Notice::parse("after w1"),
            Some(Notice::After { write: "w1" })
        ));
        assert!(Notice::parse("clear").is_none());
        assert!(Notice::parse("before w1").is_none());
    }

    fn row(id: &str, version: i64) -> BookRow {
        BookRow {
            id: id.into(),
            title: format!("v{version}"),
            author: "a".into(),
            isbn: None,
            published_year: None,
            created_at: 0,
            updated_at: 0,
            version,
        }
    }

    fn leased(now: Instant) -> State {
        State {
            valid_until: Some(now + LEASE),
            ..State::default()
        }
    }

    fn ticket(state: &mut State, id: &str, now: Instant) -> Ticket {
        match state.lookup(id, now) {
            Lookup::Miss(ticket) => ticket,
            Lookup::Hit(_) | Lookup::Renew(..) => panic!("{id} is cached"),
            Lookup::Bypass => panic!("{id} bypasses the cache"),
        }
    }

    fn hit(state: &mut State, id: &str, now: Instant) -> Option<i64> {
        match state.lookup(id, now) {
            Lookup::Hit(row) | Lookup::Renew(row, _) => Some(row.version),
            _ => None,
        }
    }

    #[test]
    fn a_read_fills_and_the_next_one_hits() {
        let now = Instant::now();
        let mut state = leased(now);
        let ticket = ticket(&mut state, "b", now);
        state.fill(ticket, &row("b", 1), now, 10);
        assert_eq!(hit(&mut state, "b", now), Some(1));
    }

    #[test]
    fn a_read_in_flight_during_a_notice_does_not_fill() {
        let now = Instant::now();
        let mut state = leased(now);
        let ticket = ticket(&mut state, "b", now);
        // The write's notices arrive while the read waits for the database.
        assert_eq!(state.apply("before w1 b", now).as_deref(), Some("w1"));
        assert!(state.apply("after w1", now).is_none());
        state.fill(ticket, &row("b", 1), now, 10);
        assert_eq!(hit(&mut state, "b", now), None);
    }

    #[test]
    fn a_book_in_flux_is_neither_served_nor_filled_until_the_write_ends() {
        let now = Instant::now();
        let mut state = leased(now);
        let first = ticket(&mut state, "b", now);
        state.fill(first, &row("b", 1), now, 10);
        state.apply("before w1 b", now);
        assert!(matches!(state.lookup("b", now), Lookup::Bypass));
        // Another book is unaffected.
        assert!(matches!(state.lookup("c", now), Lookup::Miss(_)));
        state.apply("after w1", now);
        let second = ticket(&mut state, "b", now);
        state.fill(second, &row("b", 2), now, 10);
        assert_eq!(hit(&mut state, "b", now), Some(2));
    }

    #[test]
    fn a_lost_after_notice_holds_the_book_in_flux_only_so_long() {
        let now = Instant::now();
        let mut state = leased(now + IN_FLUX);
        state.apply("before w1 b", now);
        assert!(matches!(
            state.lookup("b", now + IN_FLUX / 2),
            Lookup::Bypass
        ));
        assert!(matches!(state.lookup("b", now + IN_FLUX), Lookup::Miss(_)));
    }

    #[test]
    fn without_a_current_lease_nothing_is_served_or_filled() {
        let now = Instant::now();
        let mut state = leased(now);
        let ticket_before = ticket(&mut state, "b", now);
        state.fill(ticket_before, &row("b", 1), now, 10);
        let later = now + LEASE;
        assert!(matches!(state.lookup("b", later), Lookup::Bypass));
        let stale = ticket(&mut state, "c", now);
        state.fill(stale, &row("c", 1), later, 10);
        state.valid_until = Some(later + LEASE);
        assert_eq!(hit(&mut state, "c", later), None);
    }

    #[test]
    fn a_lapse_voids_tickets_and_entries() {
        let now = Instant::now();
        let mut state = leased(now);
        let first = ticket(&mut state, "b", now);
        state.fill(first, &row("b", 1), now, 10);
        let in_flight = ticket(&mut state, "c", now);
        state.lapse();
        state.valid_until = Some(now + LEASE);
        state.fill(in_flight, &row("c", 1), now, 10);
        assert_eq!(hit(&mut state, "b", now), None);
        assert_eq!(hit(&mut state, "c", now), None);
    }

    #[test]
    fn books_filled_together_are_renewed_at_different_times() {
        let now = Instant::now();
        let mut state = leased(now + 2 * MAX_AGE);
        let ids: Vec<String> = (0..1000).map(|n| format!("book-{n}")).collect();
        for id in &ids {
            let ticket = ticket(&mut state, id, now);
            state.fill(ticket, &row(id, 1), now, ids.len());
        }
        let renewals_at = |state: &mut State, at: Duration| {
            ids.iter()
                .filter(|id| matches!(state.lookup(id, now + at), Lookup::Renew(..)))
                .count()
        };
        assert_eq!(renewals_at(&mut state, MAX_AGE / 2), 0);
        // Each renews once: by 5/8 of the age about half, by 3/4 the rest.
        let early = renewals_at(&mut state, MAX_AGE * 5 / 8);
        assert!(
            (350..=650).contains(&early),
            "{early} of 1000 renewed by 5/8"
        );
        assert_eq!(renewals_at(&mut state, MAX_AGE * 3 / 4), 1000 - early);
        // Not renewed (no fill came back): every one ends at the max age.
        let served = ids
            .iter()
            .filter(|id| hit(&mut state, id, now + MAX_AGE + Duration::from_millis(1)).is_some())
            .count();
        assert_eq!(served, 0);
    }

    #[test]
    fn a_book_in_use_is_read_again_before_it_ends() {
        let now = Instant::now();
        let mut state = leased(now + 2 * MAX_AGE);
        let first = ticket(&mut state, "b", now);
        state.fill(first, &row("b", 1), now, 10);
        let late = now + MAX_AGE * 3 / 4 + Duration::from_millis(1);
        let Lookup::Renew(served, renewal) = state.lookup("b", late) else {
            panic!("a read late in the entry's life renews it");
        };
        assert_eq!(served.version, 1);
        // One renewal at a time: the reads meanwhile are plain hits.
        assert!(matches!(state.lookup("b", late), Lookup::Hit(_)));
        state.fill(renewal, &row("b", 2), late, 10);
        assert_eq!(
            hit(&mut state, "b", now + MAX_AGE + Duration::from_millis(1)),
            Some(2)
        );

        // A notice between the renewing read and its fill voids the renewal.
        let later = late + MAX_AGE * 3 / 4 + Duration::from_millis(1);
        let Lookup::Renew(_, renewal) = state.lookup("b", later) else {
            panic!("the renewed entry renews again late in its own life");
        };
        state.apply("not a notice", later);
        state.fill(renewal, &row("b", 3), later, 10);
        assert_eq!(hit(&mut state, "b", later), None);
    }

    #[test]
    fn entries_end_at_the_max_age_and_an_unreadable_notice_clears_all() {
        let now = Instant::now();
        let mut state = leased(now + MAX_AGE);
        let first = ticket(&mut state, "b", now);
        state.fill(first, &row("b", 1), now, 10);
        assert_eq!(hit(&mut state, "b", now + MAX_AGE / 2), Some(1));
        assert_eq!(
            hit(&mut state, "b", now + MAX_AGE + Duration::from_millis(1)),
            None
        );
        let second = ticket(&mut state, "b", now);
        state.fill(second, &row("b", 1), now, 10);
        state.apply("flush everything", now);
        assert_eq!(hit(&mut state, "b", now), None);
    }

    #[test]
    fn a_full_cache_makes_room() {
        let now = Instant::now();
        let mut state = leased(now);
        for id in ["a", "b", "c"] {
            let t = ticket(&mut state, id, now);
            state.fill(t, &row(id, 1), now, 2);
        }
        assert_eq!(state.entries.len(), 2);
        assert_eq!(hit(&mut state, "c", now), Some(1));
    }
}
