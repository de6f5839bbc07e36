//! The log in process (single node): appended under the memory ledger's lock.

use std::collections::VecDeque;
use std::sync::Mutex;

use futures_util::future::{self, BoxFuture, FutureExt};
use shared::revocation::{Published, StoreUnavailable};
use tokio::sync::broadcast;

use super::{Backlog, Cursor, FeedEvent, FeedLog, LIVE_BUFFER};

pub struct MemoryFeed {
    log: Mutex<Log>,
    live: broadcast::Sender<FeedEvent>,
}

#[derive(Default)]
struct Log {
    events: VecDeque<FeedEvent>,
    last: Cursor,
}

impl Default for MemoryFeed {
    fn default() -> Self {
        Self {
            log: Mutex::default(),
            live: broadcast::channel(LIVE_BUFFER).0,
        }
    }
}

impl MemoryFeed {
    fn lock(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends a revocation with the next cursor (`<now ms>-<seq>`, like a Redis stream id).
    pub fn append(&self, published: &Published) {
        let Ok(json) = serde_json::to_string(published) else {
            return;
        };
        let now_ms = chrono::Utc::now().timestamp_millis().max(0) as u64;
        let mut log = self.lock();
        let id = if now_ms > log.last.ms {
            Cursor { ms: now_ms, seq: 0 }
        } else {
            Cursor {
                ms: log.last.ms,
                seq: log.last.seq + 1,
            }
        };
        log.last = id;
        let event = FeedEvent {
            id,
            json: json.into(),
            expires_at: published.expires_at(),
        };
        // Entries expire in the order they were made, give or take a second: drop from the
        // front while the front has expired.
        let now = shared::now_unix();
        while log.events.front().is_some_and(|e| e.expires_at <= now) {
            log.events.pop_front();
        }
        log.events.push_back(event.clone());
        // Sent under the lock, so subscribers see events in cursor order.
        let _ = self.live.send(event);
    }
}

impl FeedLog for MemoryFeed {
    fn since(
        &self,
        after: Cursor,
        limit: usize,
    ) -> BoxFuture<'_, Result<Backlog, StoreUnavailable>> {
        let now = shared::now_unix();
        let log = self.lock();
        // The log is in cursor order: find the first entry after `after` without a scan, so a
        // reader paging through a long log does not rescan it for every page.
        let first = log.events.partition_point(|e| e.id <= after);
        let page: Vec<&FeedEvent> = log.events.range(first..).take(limit).collect();
        let complete = page.len() < limit;
        let cursor = match page.last() {
            Some(last) if !complete => last.id,
            _ => log.last.max(after),
        };
        let events = page
            .into_iter()
            .filter(|e| e.expires_at > now)
            .cloned()
            .collect();
        future::ready(Ok(Backlog {
            events,
            cursor,
            complete,
        }))
        .boxed()
    }

    fn subscribe(&self) -> broadcast::Receiver<FeedEvent> {
        self.live.subscribe()
    }
}
