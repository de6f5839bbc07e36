//! `feed-fanout`: the revocation feed's fan-out figure for `deploy/bench.py`. Opens
//! `FEED_SUBSCRIBERS` streams on `FEED_URL` (`/revocations/stream`) with `FEED_TOKEN`, waits until
//! each has opened, prints `ready`, then counts events until every subscriber has seen
//! `FEED_EVENTS` of them (or `FEED_TIMEOUT_SECS` pass) and prints one JSON line: events delivered,
//! seconds from the first to the last, events/s across all subscribers, and the slowest
//! subscriber's count.

use std::time::{Duration, Instant};

use futures_util::StreamExt;

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| shared::server::exit(2, format!("{name} is required")))
}

#[tokio::main]
async fn main() {
    let url = var("FEED_URL");
    let token = var("FEED_TOKEN");
    let subscribers: usize = var("FEED_SUBSCRIBERS").parse().unwrap_or(50);
    let expected: usize = var("FEED_EVENTS").parse().unwrap_or(10_000);
    let timeout = Duration::from_secs(
        std::env::var("FEED_TIMEOUT_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(60),
    );
    let client = reqwest::Client::new();
    let mut streams = Vec::new();
    for _ in 0..subscribers {
        let response = client
            .get(&url)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap_or_else(|e| shared::server::exit(1, format!("subscribe: {e}")));
        if !response.status().is_success() {
            shared::server::exit(1, format!("subscribe: {}", response.status()));
        }
        streams.push(response.bytes_stream());
    }
    println!("ready");
    let tasks: Vec<_> = streams
        .into_iter()
        .map(|mut stream| {
            tokio::spawn(async move {
                let (mut seen, mut first, mut last) = (0usize, None, None);
                let mut carry = Vec::new();
                let deadline = tokio::time::Instant::now() + timeout;
                while seen < expected {
                    let chunk = match tokio::time::timeout_at(deadline, stream.next()).await {
                        Ok(Some(Ok(chunk))) => chunk,
                        _ => break,
                    };
                    carry.extend_from_slice(&chunk);
                    // Count complete events ("id:" lines), keeping a partial line for later.
                    let end = carry.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
                    let events = carry[..end]
                        .split(|b| *b == b'\n')
                        .filter(|line| line.starts_with(b"id: "))
                        .count();
                    carry.drain(..end);
                    if events > 0 {
                        first.get_or_insert_with(Instant::now);
                        last = Some(Instant::now());
                        seen += events;
                    }
                }
                (seen, first, last)
            })
        })
        .collect();
    let mut total = 0;
    let mut slowest = usize::MAX;
    let (mut first, mut last): (Option<Instant>, Option<Instant>) = (None, None);
    for task in tasks {
        let (seen, f, l) = task.await.unwrap_or((0, None, None));
        total += seen;
        slowest = slowest.min(seen);
        first = match (first, f) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        last = match (last, l) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
    let seconds = match (first, last) {
        (Some(f), Some(l)) => (l - f).as_secs_f64().max(1e-6),
        _ => 0.0,
    };
    println!(
        "{}",
        serde_json::json!({
            "subscribers": subscribers,
            "events_per_subscriber": expected,
            "delivered": total,
            "slowest_subscriber": slowest,
            "seconds": seconds,
            "events_per_s": if seconds > 0.0 { total as f64 / seconds } else { 0.0 },
        })
    );
}
