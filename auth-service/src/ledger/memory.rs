//! The in-process ledger (single node): one lock makes each operation atomic, and its entries go
//! into the [`MemoryRevocations`] that this process's verifiers read.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures_util::future::{self, BoxFuture, FutureExt};
use shared::revocation::{MemoryRevocations, StoreUnavailable};
use shared::{now_unix, Claims, RevocationEntry, UserCutoff};

use crate::feed::MemoryFeed;

use super::{Lifetimes, Remembered, Rotation, RotationRequest, SessionLedger};

#[derive(Default)]
struct UserBook {
    generation: u64,
    issued_ms: i64,
    /// The latest cut-off's moment (ms): a pair issued at or before it would be born dead.
    cut_ms: i64,
    expires_at: i64,
}

#[derive(Default)]
struct Book {
    users: HashMap<String, UserBook>,
    /// Each chain of refresh tokens (see [`super::chain_of`]): its newest token's `jti`, and
    /// when that token has expired (the record may go then).
    chains: HashMap<String, (String, i64)>,
    /// Grace answers: the remembered pair and until when it may be replayed.
    answers: HashMap<String, (Remembered, Instant)>,
    writes: u64,
}

impl Book {
    fn sweep_now_and_then(&mut self, now: i64) {
        self.writes += 1;
        if self.writes.is_multiple_of(1024) {
            self.users.retain(|_, user| user.expires_at > now);
            self.chains.retain(|_, (_, until)| *until > now);
            let instant = Instant::now();
            self.answers.retain(|_, (_, until)| *until > instant);
        }
    }

    /// Whether `jti` is behind the newest token of `chain` (no record: nothing rotated yet).
    fn is_spent(&self, chain: &str, jti: &str, now: i64) -> bool {
        self.chains
            .get(chain)
            .is_some_and(|(newest, until)| *until > now && newest != jti)
    }

    fn user(&mut self, sub: &str, lifetimes: &Lifetimes, now: i64) -> &mut UserBook {
        let user = self.users.entry(sub.to_owned()).or_default();
        if user.expires_at <= now {
            *user = UserBook::default();
        }
        user.expires_at = now + lifetimes.ledger_ttl_secs() as i64;
        user
    }
}

pub struct MemoryLedger {
    revocations: Arc<MemoryRevocations>,
    feed: Arc<MemoryFeed>,
    lifetimes: Lifetimes,
    book: Mutex<Book>,
}

impl MemoryLedger {
    pub fn new(
        revocations: Arc<MemoryRevocations>,
        feed: Arc<MemoryFeed>,
        lifetimes: Lifetimes,
    ) -> Self {
        Self {
            revocations,
            feed,
            lifetimes,
            book: Mutex::new(Book::default()),
        }
    }

    /// Stores an entry for this process's verifiers and appends it to the feed; called under
    /// the book's lock, so the two never disagree on order.
    fn apply(&self, entry: RevocationEntry, now: i64) {
        if let Some(published) = self.lifetimes.published(&entry, now) {
            self.feed.append(&published);
        }
        self.revocations.apply(entry);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn rotate_locked(&self, request: &RotationRequest<'_>) -> Result<Rotation, StoreUnavailable> {
        let now = now_unix();
        let presented = request.presented;
        let mut book = self.lock();
        if self.revocations.contains_match(presented) {
            return Ok(Rotation::Revoked);
        }
        let chain = super::chain_of(presented);
        if !book.is_spent(&chain, &presented.jti, now) {
            let replacement = &request.replacement.refresh;
            let until = shared::entry_expiry(replacement.exp, self.lifetimes.leeway);
            book.chains.insert(chain, (replacement.jti.clone(), until));
            if !self.lifetimes.grace.is_zero() {
                let remembered = Remembered {
                    client: request.client.to_owned(),
                    pair: request.replacement.body.clone(),
                };
                let until = Instant::now() + self.lifetimes.grace;
                book.answers
                    .insert(presented.jti.clone(), (remembered, until));
            }
            let user = book.user(&presented.sub, &self.lifetimes, now);
            user.issued_ms = user.issued_ms.max(request.replacement.issued_ms());
            book.sweep_now_and_then(now);
            return Ok(Rotation::Fresh);
        }
        let replay = book
            .answers
            .get(&presented.jti)
            .filter(|(remembered, until)| {
                *until > Instant::now() && remembered.client == request.client
            })
            .map(|(remembered, _)| remembered.pair.clone());
        if let Some(pair) = replay {
            return Ok(Rotation::Replay(pair));
        }
        book.answers.remove(&presented.jti);
        if let Some(sid) = &presented.sid {
            self.apply(self.lifetimes.session_entry(sid, now), now);
        }
        Ok(Rotation::Reused)
    }
}

impl SessionLedger for MemoryLedger {
    fn revoke(&self, entries: Vec<RevocationEntry>) -> BoxFuture<'_, Result<(), StoreUnavailable>> {
        let now = now_unix();
        let _book = self.lock();
        for entry in entries.into_iter().filter(|entry| entry.is_live(now)) {
            self.apply(entry, now);
        }
        future::ready(Ok(())).boxed()
    }

    fn cut_off<'a>(
        &'a self,
        sub: &'a str,
        before_ms: i64,
        except_jti: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), StoreUnavailable>> {
        let now = now_unix();
        let mut book = self.lock();
        let user = book.user(sub, &self.lifetimes, now);
        let before_ms = before_ms.max(user.issued_ms);
        user.generation += 1;
        user.cut_ms = user.cut_ms.max(before_ms);
        let cutoff = UserCutoff::new(before_ms, except_jti.map(str::to_owned));
        self.apply(
            RevocationEntry {
                target: cutoff.into_revocation(sub.to_owned()),
                expires_at: self.lifetimes.cutoff_expiry(before_ms),
            },
            now,
        );
        book.sweep_now_and_then(now);
        future::ready(Ok(())).boxed()
    }

    fn generation<'a>(&'a self, sub: &'a str) -> BoxFuture<'a, Result<u64, StoreUnavailable>> {
        let now = now_unix();
        let generation = self
            .lock()
            .users
            .get(sub)
            .filter(|user| user.expires_at > now)
            .map_or(0, |user| user.generation);
        future::ready(Ok(generation)).boxed()
    }

    fn record_issue<'a>(
        &'a self,
        sub: &'a str,
        generation: u64,
        issued_ms: i64,
    ) -> BoxFuture<'a, Result<bool, StoreUnavailable>> {
        let now = now_unix();
        let mut book = self.lock();
        let user = book.user(sub, &self.lifetimes, now);
        let current = user.generation == generation && issued_ms > user.cut_ms;
        if current {
            user.issued_ms = user.issued_ms.max(issued_ms);
        }
        future::ready(Ok(current)).boxed()
    }

    fn is_spent<'a>(&'a self, token: &'a Claims) -> BoxFuture<'a, Result<bool, StoreUnavailable>> {
        let spent = self
            .lock()
            .is_spent(&super::chain_of(token), &token.jti, now_unix());
        future::ready(Ok(spent)).boxed()
    }

    fn rotate<'a>(
        &'a self,
        request: RotationRequest<'a>,
    ) -> BoxFuture<'a, Result<Rotation, StoreUnavailable>> {
        future::ready(self.rotate_locked(&request)).boxed()
    }
}
