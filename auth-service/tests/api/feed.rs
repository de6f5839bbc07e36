//! The revocation feed: `GET /revocations` and `GET /revocations/stream` (Server-Sent Events),
//! on one instance and across two (Redis).

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::Value;

use crate::both_backends;
use crate::helpers::{assert_error, payload, spawn_app_with, Backend, TestApp};
use crate::oauth::{admin_token, create_client, service_token};

both_backends!(
    the_stream_delivers_a_logout_within_a_second,
    resuming_from_last_event_id_loses_nothing,
    the_snapshot_lists_what_can_still_match_and_needs_the_scope,
);

async fn spawn(backend: Backend) -> TestApp {
    spawn_app_with(
        backend,
        &[
            ("AUTH_BOOTSTRAP_ADMIN_USERNAME", "root"),
            ("AUTH_BOOTSTRAP_ADMIN_PASSWORD", "bootstrap-password"),
            ("AUTH_FEED_HEARTBEAT_SECS", "1"),
        ],
    )
    .await
}

/// `GET path` with `token` as the bearer.
async fn get_as(app: &TestApp, path: &str, token: &str) -> reqwest::Response {
    app.client
        .get(app.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

async fn feed_token(app: &TestApp) -> String {
    let admin = admin_token(app).await;
    let client = create_client(app, &admin, &["revocations:read"]).await;
    service_token(app, &client).await
}

/// A minimal SSE reader: events (id, parsed data) and a count of comment lines.
struct Events {
    body: futures_util::stream::BoxStream<'static, reqwest::Result<actix_web::web::Bytes>>,
    buffer: String,
    comments: usize,
}

impl Events {
    async fn open(app: &TestApp, token: &str, last_event_id: Option<&str>) -> Events {
        let mut request = app
            .client
            .get(app.url("/revocations/stream"))
            .bearer_auth(token);
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Events {
            body: response.bytes_stream().boxed(),
            buffer: String::new(),
            comments: 0,
        }
    }

    /// The next event, skipping comments; panics after `within`.
    async fn next(&mut self, within: Duration) -> (String, Value) {
        let deadline = Instant::now() + within;
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut id = None;
                let mut data = None;
                for line in block.lines() {
                    if line.starts_with(':') {
                        self.comments += 1;
                    } else if let Some(rest) = line.strip_prefix("id: ") {
                        id = Some(rest.to_owned());
                    } else if let Some(rest) = line.strip_prefix("data: ") {
                        data = Some(serde_json::from_str(rest).unwrap());
                    }
                }
                if let (Some(id), Some(data)) = (id, data) {
                    return (id, data);
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let chunk = tokio::time::timeout(left, self.body.next())
                .await
                .expect("an event in time")
                .expect("the stream is open")
                .unwrap();
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }
}

async fn the_stream_delivers_a_logout_within_a_second(backend: Backend) {
    let app = spawn(backend).await;
    let token = feed_token(&app).await;
    let mut events = Events::open(&app, &token, None).await;
    // On Redis, the logout goes through a second instance: the feed is every instance's.
    let other = if backend == Backend::Postgres {
        app.another_instance().await
    } else {
        app.clone_handle()
    };
    let user = other.signed_up("zoe").await;

    let started = Instant::now();
    assert_eq!(other.logout(&user).await.status(), StatusCode::NO_CONTENT);
    let (_, event) = events.next(Duration::from_secs(1)).await;

    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(event["kind"], "token");
    assert_eq!(event["jti"], payload(&user.access)["jti"]);
    // An access token's entry: it lives as long as the token could, not 30 days.
    let exp = payload(&user.access)["exp"].as_i64().unwrap();
    assert_eq!(event["expires_at"].as_i64().unwrap(), exp + 30 + 1);
    // Then the session of the refresh token sent with the logout.
    let (_, session) = events.next(Duration::from_secs(1)).await;
    assert_eq!(session["kind"], "session");
    assert_eq!(session["sid"], payload(&user.access)["sid"]);
    let now = shared::now_unix();
    assert!(session["expires_at"].as_i64().unwrap() <= now + 900 + 30 + 2);
    // Heartbeats keep an idle stream visibly alive.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    other.signed_up("zack").await;
    let everywhere = other.signed_up("yann").await;
    let ended = other
        .client
        .post(other.url("/auth/logout-all"))
        .bearer_auth(&everywhere.access)
        .send()
        .await
        .unwrap();
    assert_eq!(ended.status(), StatusCode::NO_CONTENT);
    let (_, cut) = events.next(Duration::from_secs(1)).await;
    assert_eq!(cut["kind"], "user");
    assert_eq!(cut["sub"], payload(&everywhere.access)["sub"]);
    let before = cut["before"].as_f64().unwrap();
    assert!(before >= payload(&everywhere.access)["iat"].as_f64().unwrap());
    assert!(events.comments >= 1, "no heartbeat in 1.5 s");
}

async fn resuming_from_last_event_id_loses_nothing(backend: Backend) {
    let app = spawn(backend).await;
    let token = feed_token(&app).await;
    let mut events = Events::open(&app, &token, None).await;
    let first = app.signed_up("anna").await;
    app.logout(&first).await;
    let (cursor, _) = events.next(Duration::from_secs(2)).await;
    let (cursor_after_session, _) = events.next(Duration::from_secs(2)).await;
    drop(events);

    // Revocations while nobody listens.
    let mut missed = Vec::new();
    for name in ["bert", "carl", "dora"] {
        let user = app.signed_up(name).await;
        app.logout(&user).await;
        missed.push(payload(&user.access)["jti"].clone());
    }

    let mut resumed = Events::open(&app, &token, Some(&cursor)).await;
    let (id, replayed) = resumed.next(Duration::from_secs(2)).await;
    assert_eq!(id, cursor_after_session, "resumes right after the given id");
    assert_eq!(replayed["kind"], "session");
    let mut seen = Vec::new();
    let mut last = id;
    for _ in 0..6 {
        let (id, event) = resumed.next(Duration::from_secs(2)).await;
        assert!(
            crate_cursor(&id) > crate_cursor(&last),
            "in order, no duplicates"
        );
        last = id;
        if event["kind"] == "token" {
            seen.push(event["jti"].clone());
        }
    }
    assert_eq!(seen, missed);
    // A cursor this service never issued is a 400, not an empty stream.
    let bad = get_as(&app, "/revocations/stream?cursor=yesterday", &token).await;
    assert_error(bad, StatusCode::BAD_REQUEST, "bad_request").await;
}

fn crate_cursor(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').unwrap();
    (ms.parse().unwrap(), seq.parse().unwrap())
}

async fn the_snapshot_lists_what_can_still_match_and_needs_the_scope(backend: Backend) {
    let app = spawn(backend).await;
    let token = feed_token(&app).await;
    let user = app.signed_up("elke").await;
    app.logout(&user).await;

    let response = get_as(&app, "/revocations", &token).await;

    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    let items = body["items"].as_array().unwrap();
    assert!(items
        .iter()
        .any(|i| i["kind"] == "token" && i["jti"] == payload(&user.access)["jti"]));
    assert!(items
        .iter()
        .any(|i| i["kind"] == "session" && i["sid"] == payload(&user.access)["sid"]));
    // The refresh token's entry is for auth-service alone: verifiers never see refresh tokens.
    assert!(!items
        .iter()
        .any(|i| i["jti"] == payload(&user.refresh)["jti"]));
    let cursor = body["cursor"].as_str().unwrap();
    assert!(crate_cursor(cursor).0 > 0);

    // A user's token, however privileged, is not a feed reader's.
    let admin = admin_token(&app).await;
    let refused = get_as(&app, "/revocations", &admin).await;
    assert_error(refused, StatusCode::FORBIDDEN, "insufficient_role").await;
    let anonymous = app.get("/revocations/stream").await;
    assert_error(anonymous, StatusCode::UNAUTHORIZED, "missing_token").await;
}

/// Appends `count` token revocations straight to the app's Redis stream (the ledger's own
/// `XADD`, without the HTTP work of a logout); returns their `jti`s in order.
async fn append_to_stream(app: &TestApp, count: usize) -> Vec<String> {
    let client = redis::Client::open(crate::helpers::redis_url()).unwrap();
    let mut redis = client.get_multiplexed_async_connection().await.unwrap();
    let key = auth_service::feed::stream_key(&app.redis_prefix);
    let expires_at = shared::now_unix() + 900;
    let jtis: Vec<String> = (0..count).map(|n| format!("bulk-{n}")).collect();
    for chunk in jtis.chunks(1000) {
        let mut pipe = redis::pipe();
        for jti in chunk {
            let json = serde_json::json!({"kind": "token", "jti": jti, "expires_at": expires_at});
            pipe.cmd("XADD")
                .arg(&key)
                .arg("*")
                .arg(auth_service::feed::FIELD)
                .arg(json.to_string())
                .ignore();
        }
        let () = pipe.query_async(&mut redis).await.unwrap();
    }
    jtis
}

/// The next `count` token events' `jti`s, checking their order on the way.
async fn token_jtis(events: &mut Events, count: usize) -> Vec<String> {
    let mut jtis = Vec::with_capacity(count);
    let mut last = (0, 0);
    while jtis.len() < count {
        let (id, event) = events.next(Duration::from_secs(10)).await;
        assert!(crate_cursor(&id) > last, "in order, once each");
        last = crate_cursor(&id);
        if event["kind"] == "token" {
            jtis.push(event["jti"].as_str().unwrap().to_owned());
        }
    }
    jtis
}

/// The log is read a page at a time (512 entries): a log of several pages reaches a new reader
/// and the snapshot whole, in order and once each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_of_many_pages_reaches_a_new_reader_whole() {
    let app = spawn(Backend::Postgres).await;
    let token = feed_token(&app).await;
    let appended = append_to_stream(&app, 3 * 512 + 7).await;

    let mut events = Events::open(&app, &token, None).await;
    assert_eq!(token_jtis(&mut events, appended.len()).await, appended);

    // An entry that is not JSON (not the ledger's: someone else's write) past the first page
    // must not break the snapshot's body, which is written a page at a time.
    let client = redis::Client::open(crate::helpers::redis_url()).unwrap();
    let mut redis = client.get_multiplexed_async_connection().await.unwrap();
    let key = auth_service::feed::stream_key(&app.redis_prefix);
    let _: String = redis::cmd("XADD")
        .arg(&key)
        .arg("*")
        .arg(auth_service::feed::FIELD)
        .arg("{not json")
        .query_async(&mut redis)
        .await
        .unwrap();
    let later = append_to_stream(&app, 3).await;
    let appended: Vec<String> = appended.into_iter().chain(later).collect();

    let response = get_as(&app, "/revocations", &token).await;
    let body: Value = response.json().await.unwrap();
    let listed: Vec<&str> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["kind"] == "token")
        .map(|i| i["jti"].as_str().unwrap())
        .collect();
    assert_eq!(listed, appended);
    // The cursor is the log's last entry: following from it misses nothing and repeats nothing.
    let newest: Vec<(String, std::collections::HashMap<String, String>)> = redis::cmd("XREVRANGE")
        .arg(&key)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(body["cursor"], newest[0].0.as_str());
}

/// A reader that does not read while more than the live buffer (16 384 events) is appended
/// falls behind it and catches up from the log: it still gets every event, in order, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_far_behind_gets_every_event_once() {
    let app = spawn(Backend::Postgres).await;
    let token = feed_token(&app).await;
    let mut events = Events::open(&app, &token, None).await;
    let first = append_to_stream(&app, 1).await;
    assert_eq!(token_jtis(&mut events, 1).await, first);

    // More than the live buffer and the sockets' buffers hold, while the reader sleeps.
    let appended = append_to_stream(&app, 60_000).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let got = token_jtis(&mut events, appended.len()).await;
    assert_eq!(got.len(), appended.len());
    assert!(got == appended, "every event, in order, once");
}
