//! The log as a Redis stream (`<prefix>feed`), written by the ledger's scripts and transactions
//! (`XADD ... MINID ~` trims what has expired) and followed here with `XREAD BLOCK` on a
//! connection of its own, so a blocked read never delays the ledger's commands.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt};
use shared::revocation::{RedisConnection, StoreUnavailable};
use shared::RedisTarget;
use tokio::sync::broadcast;

use super::{expires_at_of, Backlog, Cursor, FeedEvent, FeedLog, LIVE_BUFFER};

/// The stream field holding the event's JSON.
pub const FIELD: &str = "r";

/// How long one `XREAD` blocks; below the connection's response timeout.
const BLOCK_MS: u64 = 1000;

type StreamEntries = Vec<(String, HashMap<String, String>)>;

pub struct RedisFeed {
    connection: RedisConnection,
    key: String,
    live: broadcast::Sender<FeedEvent>,
}

/// The key of the stream under a deployment's prefix.
pub fn stream_key(prefix: &str) -> String {
    format!("{prefix}feed")
}

impl RedisFeed {
    /// Connects twice (commands, and the follower's blocking reads) and starts following.
    pub async fn connect(target: &RedisTarget, prefix: &str) -> Result<Self, StoreUnavailable> {
        let connection = shared::revocation::connect_redis(target).await?;
        let follower = shared::revocation::connect_redis(target).await?;
        let key = stream_key(prefix);
        let live = broadcast::channel(LIVE_BUFFER).0;
        let feed = Self {
            connection,
            key,
            live,
        };
        let mut command = feed.connection.clone();
        let newest: StreamEntries = redis::cmd("XREVRANGE")
            .arg(&feed.key)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut command)
            .await?;
        let start = events(newest, 0).1.unwrap_or(Cursor::START);
        tokio::spawn(follow(follower, feed.key.clone(), start, feed.live.clone()));
        Ok(feed)
    }
}

fn events(entries: StreamEntries, now: i64) -> (Vec<FeedEvent>, Option<Cursor>) {
    let mut last = None;
    let mut events = Vec::new();
    for (id, fields) in entries {
        let Some(cursor) = Cursor::parse(&id) else {
            continue;
        };
        last = Some(cursor);
        let Some(json) = fields.get(FIELD) else {
            continue;
        };
        // Unreadable events are still delivered: the reader decides; but an expired one is not.
        let expires_at = expires_at_of(json).unwrap_or(i64::MAX);
        if expires_at > now {
            events.push(FeedEvent {
                id: cursor,
                json: json.as_str().into(),
                expires_at,
            });
        }
    }
    (events, last)
}

/// Follows the stream from `cursor` for as long as the process runs, through Redis outages.
async fn follow(
    mut connection: RedisConnection,
    key: String,
    mut cursor: Cursor,
    live: broadcast::Sender<FeedEvent>,
) {
    loop {
        let read: Result<Option<Vec<(String, StreamEntries)>>, _> = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(256)
            .arg("BLOCK")
            .arg(BLOCK_MS)
            .arg("STREAMS")
            .arg(&key)
            .arg(cursor.to_string())
            .query_async(&mut connection)
            .await;
        match read {
            Ok(Some(streams)) => {
                for (_, entries) in streams {
                    let (events, last) = events(entries, shared::now_unix());
                    for event in events {
                        let _ = live.send(event);
                    }
                    if let Some(last) = last {
                        cursor = cursor.max(last);
                    }
                }
            }
            Ok(None) => {}
            Err(err) => {
                tracing::warn!(error = %err, "revocation feed: following the stream failed; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

impl FeedLog for RedisFeed {
    fn since(
        &self,
        after: Cursor,
        limit: usize,
    ) -> BoxFuture<'_, Result<Backlog, StoreUnavailable>> {
        async move {
            let mut connection = self.connection.clone();
            let entries: StreamEntries = redis::cmd("XRANGE")
                .arg(&self.key)
                .arg(format!("({after}"))
                .arg("+")
                .arg("COUNT")
                .arg(limit)
                .query_async(&mut connection)
                .await?;
            let complete = entries.len() < limit;
            let (events, last) = events(entries, shared::now_unix());
            Ok(Backlog {
                events,
                cursor: last.unwrap_or(after).max(after),
                complete,
            })
        }
        .boxed()
    }

    fn subscribe(&self) -> broadcast::Receiver<FeedEvent> {
        self.live.subscribe()
    }
}
