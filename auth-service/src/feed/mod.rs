//! The revocation feed for other services: an ordered log of every revocation an access token
//! could still be refused by, served as a snapshot (`GET /revocations`) and as Server-Sent Events
//! (`GET /revocations/stream`).
//!
//! The ledger appends to the log in the same atomic step as it stores the revocation (the same
//! `MULTI` or Lua script in Redis, the same lock in memory), so the feed never misses one that
//! was acknowledged. Each event has a cursor (`<ms>-<seq>`, a Redis stream id); a reader that
//! subscribes to live events *before* reading the log after its cursor, and skips what it has
//! already sent, sees every event exactly once and in order (see [`FeedLog`]). Entries leave the
//! log once they expire, and every entry expires one access-token lifetime after it was made,
//! so the log is as long as the last `ACCESS_TOKEN_TTL` of revocations, whatever the refresh
//! lifetime.

mod memory;
mod redis;
mod subscription;

use std::fmt;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use shared::revocation::StoreUnavailable;
use tokio::sync::broadcast;

pub use self::memory::MemoryFeed;
pub use self::redis::{stream_key, RedisFeed, FIELD};
pub use self::subscription::{Item, Subscription};

/// Where a reader is in the log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cursor {
    pub ms: u64,
    pub seq: u64,
}

impl Cursor {
    pub const START: Cursor = Cursor { ms: 0, seq: 0 };

    pub fn parse(raw: &str) -> Option<Cursor> {
        let (ms, seq) = raw.split_once('-')?;
        Some(Cursor {
            ms: ms.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// One event: a revocation as published (`shared::revocation::Published`, already JSON).
#[derive(Clone, Debug)]
pub struct FeedEvent {
    pub id: Cursor,
    pub json: Arc<str>,
    pub expires_at: i64,
}

/// A page of the log: live events after a cursor, and the cursor to resume from.
pub struct Backlog {
    pub events: Vec<FeedEvent>,
    /// The last entry read (expired ones included), or the cursor asked for if none was.
    pub cursor: Cursor,
    /// Whether the page reached the end of the log (else read on from `cursor`).
    pub complete: bool,
}

/// How many entries one read of the log returns. A reader that is new on a long log, or far
/// behind, holds one page at a time: when 50 subscribers each held the whole log,
/// auth-service's peak grew with it, to 203-246 MB for a 60 000-event log (docs/capacity.md).
pub const PAGE: usize = 512;

/// How many live events a slow subscriber may fall behind before it re-reads the log (a
/// burst of logouts reaching 50 subscribers must not send them all to Redis at once; ~2 MB).
pub const LIVE_BUFFER: usize = 16 * 1024;

/// The read side of the log.
pub trait FeedLog: Send + Sync + 'static {
    /// Live events among the next `limit` entries after `after`, oldest first.
    fn since(
        &self,
        after: Cursor,
        limit: usize,
    ) -> BoxFuture<'_, Result<Backlog, StoreUnavailable>>;

    /// Events as they are appended, from now on (on any instance).
    fn subscribe(&self) -> broadcast::Receiver<FeedEvent>;
}

/// The log after a cursor, a page at a time: what a subscriber missed, or the whole log for a
/// snapshot, read holding one page whatever the log's length.
pub struct Pages {
    feed: Arc<dyn FeedLog>,
    /// Where the next page starts; `None` once the last one was read.
    next: Option<Cursor>,
    /// The last entry read so far (where a reader of these pages resumes from).
    pub cursor: Cursor,
}

impl Pages {
    pub fn after(feed: Arc<dyn FeedLog>, after: Cursor) -> Self {
        Self {
            feed,
            next: Some(after),
            cursor: after,
        }
    }

    /// The next page's live events, or `None` after the last page. A failed read can be tried
    /// again: it moves nothing on.
    pub async fn next(&mut self) -> Result<Option<Vec<FeedEvent>>, StoreUnavailable> {
        let Some(after) = self.next else {
            return Ok(None);
        };
        let page = self.feed.since(after, PAGE).await?;
        self.next = (!page.complete).then_some(page.cursor);
        self.cursor = page.cursor;
        Ok(Some(page.events))
    }
}

/// Parses a field of an event stored as JSON to find its expiry, without trusting it further.
fn expires_at_of(json: &str) -> Option<i64> {
    serde_json::from_str::<shared::revocation::Published>(json)
        .ok()
        .map(|p| p.expires_at())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_order_like_redis_stream_ids() {
        let a = Cursor::parse("1700000000000-0").unwrap();
        let b = Cursor::parse("1700000000000-1").unwrap();
        let c = Cursor::parse("1700000000001-0").unwrap();
        assert!(Cursor::START < a && a < b && b < c);
        assert_eq!(b.to_string(), "1700000000000-1");
        for bad in ["", "1", "a-b", "1-", "-1", "1-2-3"] {
            assert_eq!(Cursor::parse(bad), None, "{bad}");
        }
    }
}
