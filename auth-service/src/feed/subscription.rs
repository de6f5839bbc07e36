//! One reader following the log (`GET /revocations/stream`): what it missed first, a page at a
//! time, then live events, exactly once and in cursor order.
//!
//! The reader subscribes to live events *before* its first read of the log, so an event
//! appended in between is in one or the other (or both, and then skipped by its cursor), never
//! in neither. A reader that falls behind the live buffer reads the log again from the last
//! event it got. Either way it holds at most one page of the log ([`super::PAGE`]) plus the live
//! buffer all readers share, however long the log is.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use shared::revocation::StoreUnavailable;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::time::{Instant, Interval};

use super::{Cursor, FeedEvent, FeedLog, Pages};

/// What a reader gets next.
#[derive(Debug)]
pub enum Item {
    Event(FeedEvent),
    /// Nothing new for a heartbeat's time: a sign of life.
    KeepAlive,
}

pub struct Subscription {
    feed: Arc<dyn FeedLog>,
    live: broadcast::Receiver<FeedEvent>,
    pending: VecDeque<FeedEvent>,
    /// The newest cursor handed out (or the one resumed from).
    sent: Cursor,
    /// The log still to read, while the reader is catching up on it.
    catching_up: Option<Pages>,
    heartbeat: Interval,
    until: Instant,
}

impl Subscription {
    /// Subscribes and reads the first page after `after`: an unreadable log is an error here,
    /// before anything is answered. The subscription ends at `until`.
    pub async fn open(
        feed: Arc<dyn FeedLog>,
        after: Cursor,
        heartbeat: Duration,
        until: Instant,
    ) -> Result<Self, StoreUnavailable> {
        let live = feed.subscribe();
        let mut missed = Pages::after(feed.clone(), after);
        let first = missed.next().await?.unwrap_or_default();
        Ok(Self {
            feed,
            live,
            pending: first.into(),
            sent: after,
            catching_up: Some(missed),
            heartbeat: tokio::time::interval(heartbeat),
            until,
        })
    }

    /// The next item, or `None` when the subscription ends (its time is up, or the log stayed
    /// unreadable while catching up: the reader resumes with its last cursor). What was missed
    /// goes first; the heartbeat's first tick is immediate, so a keep-alive follows it at once
    /// (a reader that takes any line as a sign of life is never "fresh" before it has what it
    /// missed).
    pub async fn next(&mut self) -> Option<Item> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                if event.id <= self.sent {
                    continue;
                }
                self.sent = event.id;
                return Some(Item::Event(event));
            }
            if let Some(missed) = &mut self.catching_up {
                match next_page(missed).await? {
                    Some(events) => self.pending.extend(events),
                    None => self.catching_up = None,
                }
                continue;
            }
            tokio::select! {
                received = self.live.recv() => match received {
                    Ok(event) => self.pending.push_back(event),
                    // Fell behind the live buffer: read what was missed from the log.
                    Err(RecvError::Lagged(_)) => {
                        self.catching_up = Some(Pages::after(self.feed.clone(), self.sent));
                    }
                    Err(RecvError::Closed) => return None,
                },
                _ = self.heartbeat.tick() => return Some(Item::KeepAlive),
                _ = tokio::time::sleep_until(self.until) => return None,
            }
        }
    }

    /// Events held for this reader alone (the live buffer is shared by all).
    #[cfg(test)]
    fn held(&self) -> usize {
        self.pending.len()
    }
}

/// The next page of what was missed (`Some(None)` after the last), with two retries; `None`
/// if the log stays unreadable.
async fn next_page(missed: &mut Pages) -> Option<Option<Vec<FeedEvent>>> {
    for attempt in 0..3 {
        match missed.next().await {
            Ok(page) => return Some(page),
            Err(err) if attempt == 2 => {
                tracing::warn!(error = %err, "revocation stream: the log is unreadable; closing");
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::{MemoryFeed, LIVE_BUFFER, PAGE};
    use shared::revocation::Published;

    fn revoke(feed: &MemoryFeed, n: usize) {
        let expires_at = shared::now_unix() + 900;
        feed.append(&Published::Token {
            jti: format!("jti-{n}"),
            expires_at,
        });
    }

    fn jti(event: &FeedEvent) -> String {
        let value: serde_json::Value = serde_json::from_str(&event.json).unwrap();
        value["jti"].as_str().unwrap().to_owned()
    }

    async fn open(feed: &Arc<MemoryFeed>) -> Subscription {
        let log: Arc<dyn FeedLog> = feed.clone();
        let until = Instant::now() + Duration::from_secs(60);
        Subscription::open(log, Cursor::START, Duration::from_secs(60), until)
            .await
            .unwrap()
    }

    /// The next `n` events, in order, checking the reader never holds more than a page.
    async fn take(subscription: &mut Subscription, n: usize) -> Vec<String> {
        let mut got = Vec::new();
        let mut last = Cursor::START;
        while got.len() < n {
            match subscription.next().await.expect("open") {
                Item::Event(event) => {
                    assert!(event.id > last, "in order, once each");
                    last = event.id;
                    got.push(jti(&event));
                }
                Item::KeepAlive => {}
            }
            assert!(subscription.held() <= PAGE, "held {}", subscription.held());
        }
        got
    }

    fn names(range: std::ops::Range<usize>) -> Vec<String> {
        range.map(|n| format!("jti-{n}")).collect()
    }

    #[tokio::test]
    async fn a_new_reader_on_a_long_log_gets_it_all_a_page_at_a_time() {
        let feed = Arc::new(MemoryFeed::default());
        let logged = 2 * PAGE + 7;
        (0..logged).for_each(|n| revoke(&feed, n));
        let mut subscription = open(&feed).await;
        assert_eq!(subscription.held(), PAGE, "the first page only");

        assert_eq!(take(&mut subscription, logged).await, names(0..logged));
        revoke(&feed, logged);
        assert_eq!(take(&mut subscription, 1).await, names(logged..logged + 1));
    }

    #[tokio::test]
    async fn a_reader_behind_the_live_buffer_catches_up_from_the_log() {
        let feed = Arc::new(MemoryFeed::default());
        let mut subscription = open(&feed).await;
        revoke(&feed, 0);
        assert_eq!(take(&mut subscription, 1).await, names(0..1));
        // More than the live buffer holds while this reader does not read.
        let appended = LIVE_BUFFER + PAGE + 3;
        (1..=appended).for_each(|n| revoke(&feed, n));

        let all = take(&mut subscription, appended).await;
        assert_eq!(all, names(1..appended + 1));
        revoke(&feed, appended + 1);
        assert_eq!(
            take(&mut subscription, 1).await,
            names(appended + 1..appended + 2)
        );
    }
}
