//! A resource server's local copy of the revocation list, fed over HTTP by auth-service's
//! revocation feed: for a verifier that cannot reach Redis (docs/api.md, `GET /revocations`).
//!
//! With a service token (OAuth client credentials), it loads the snapshot once, then follows
//! `GET /revocations/stream` from the snapshot's cursor. After any disconnect it resumes with
//! `Last-Event-ID`, and the server replays what it missed, so nothing is reloaded unless the
//! server refuses the cursor. Entries only accumulate until they expire (a revocation is never
//! withdrawn), so applying a snapshot over what is held is always safe.
//!
//! Staleness bound, as the Redis replica: the copy is trusted only while something from the
//! server (an event or a heartbeat comment) arrived within `staleness`, counted when no event is
//! half received; otherwise `is_revoked`
//! fails and the service answers 503 rather than accept a token that may have been revoked. It
//! recovers by itself when the stream is back.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::{self, BoxFuture, FutureExt};
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::StatusCode;
use serde::Deserialize;

use super::sse::{SseEvent, SseParser};
use super::{MemoryRevocations, Published, RevocationCheck, RevocationEntry, StoreUnavailable};
use crate::claims::Claims;

const FIRST_RETRY: Duration = Duration::from_millis(100);
const MAX_RETRY: Duration = Duration::from_secs(2);
/// Token and snapshot requests; the stream itself has no overall limit, only [`idle_limit`].
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// At most this many distinct ignored things are remembered for "log once".
const MAX_IGNORED: usize = 32;

/// The OAuth client secret: kept out of `Debug` output and logs.
#[derive(Clone)]
pub struct ClientSecret(String);

impl ClientSecret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientSecret(***)")
    }
}

/// Where the feed is and how to be let in.
#[derive(Clone, Debug)]
pub struct FeedConfig {
    /// `GET`: the event stream (`.../revocations/stream`).
    pub stream_url: String,
    /// `GET`: the snapshot (`.../revocations`).
    pub snapshot_url: String,
    /// `POST`: the OAuth token endpoint (client credentials grant).
    pub token_url: String,
    pub client_id: String,
    pub client_secret: ClientSecret,
}

/// Why following the feed stopped; the entries held are kept, and it tries again.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("{what}: request failed: {source}")]
    Request {
        what: &'static str,
        #[source]
        source: reqwest::Error,
    },
    #[error("{what}: no answer within {0:?}", REQUEST_TIMEOUT)]
    TimedOut { what: &'static str },
    /// The token endpoint refused the client credentials (`error` is its OAuth error code).
    #[error("the token endpoint refused the client credentials: {status} {error}")]
    CredentialsRefused { status: StatusCode, error: String },
    /// 401 or 403 from the feed: a new token is fetched before the next attempt.
    #[error(
        "{what}: the service token was refused ({status}); the client needs scope revocations:read"
    )]
    TokenRefused {
        what: &'static str,
        status: StatusCode,
    },
    #[error("{what}: unexpected status {status}")]
    Status {
        what: &'static str,
        status: StatusCode,
    },
    /// The server sent something that is not the feed's format. Nothing after it is applied,
    /// and the cursor stays before it: an event we cannot read might revoke something.
    #[error("{what}: {problem}")]
    Malformed { what: &'static str, problem: String },
    #[error("the stream sent nothing for {0:?}")]
    Silent(Duration),
    #[error("the server closed the stream")]
    Closed,
}

fn malformed(what: &'static str, problem: impl fmt::Display) -> FeedError {
    FeedError::Malformed {
        what,
        problem: problem.to_string(),
    }
}

/// The kinds this version knows; [`Published`] reads them.
const KNOWN_KINDS: [&str; 3] = ["token", "session", "user"];

/// What one revocation JSON means here.
#[derive(Debug, PartialEq)]
enum Decoded {
    Entry(RevocationEntry),
    /// A kind this version does not know: newer servers may send more kinds.
    UnknownKind(String),
}

fn decode(value: serde_json::Value) -> Result<Decoded, String> {
    let kind = value
        .get("kind")
        .and_then(|kind| kind.as_str())
        .ok_or("no \"kind\"")?;
    if !KNOWN_KINDS.contains(&kind) {
        return Ok(Decoded::UnknownKind(kind.to_owned()));
    }
    let published: Published = serde_json::from_value(value).map_err(|e| e.to_string())?;
    Ok(Decoded::Entry(published.into_entry()))
}

#[derive(Deserialize)]
struct Snapshot {
    items: Vec<serde_json::Value>,
    cursor: String,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    token_type: String,
    expires_in: Option<u64>,
}

/// A service token and when to replace it: at three quarters of its life, so a stream is
/// reopened with a fresh token before the server closes it for expiry.
struct ServiceToken {
    value: String,
    renew_at: Option<Instant>,
}

/// The feed's copy of the revocation list.
pub struct RevocationFeed {
    entries: MemoryRevocations,
    /// When the server was last heard from; `None` until the first snapshot is loaded.
    last_heard: Mutex<Option<Instant>>,
    staleness: Duration,
    /// What was ignored and logged already.
    ignored: Mutex<HashSet<String>>,
}

impl RevocationFeed {
    /// Starts following the feed in the background and returns at once; until the first
    /// snapshot is loaded, the copy reports itself not ready. `staleness`: how long it may go
    /// without hearing from the server before it is not trusted.
    pub fn start(config: FeedConfig, staleness: Duration) -> Arc<Self> {
        let feed = Arc::new(Self::new(staleness));
        let task = feed.clone();
        tokio::spawn(async move { task.follow_forever(Link::new(config)).await });
        feed
    }

    fn new(staleness: Duration) -> Self {
        Self {
            entries: MemoryRevocations::new(),
            last_heard: Mutex::new(None),
            staleness,
            ignored: Mutex::new(HashSet::new()),
        }
    }

    pub fn staleness(&self) -> Duration {
        self.staleness
    }

    /// Whether the copy may be trusted right now.
    pub fn is_current(&self) -> bool {
        self.last_heard
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|at| at.elapsed() <= self.staleness)
    }

    fn heard(&self) {
        *self.last_heard.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }

    /// Applies one revocation JSON; unknown kinds are skipped (and logged once per kind).
    fn apply(&self, what: &'static str, value: serde_json::Value) -> Result<(), FeedError> {
        match decode(value).map_err(|problem| malformed(what, problem))? {
            Decoded::Entry(entry) => self.entries.apply(entry),
            Decoded::UnknownKind(kind) => self.ignore(&format!("kind {kind:?}")),
        }
        Ok(())
    }

    /// Logs, once per `what`, that something the feed sent was skipped: newer servers may send
    /// more than this version knows.
    fn ignore(&self, what: &str) {
        let mut logged = self.ignored.lock().unwrap_or_else(|e| e.into_inner());
        if logged.len() < MAX_IGNORED && logged.insert(what.to_owned()) {
            tracing::warn!(
                ignored = what,
                "revocation feed: ignoring what this version does not know (a newer auth-service?)"
            );
        }
    }

    /// Applies a dispatched event; the caller moves the cursor only after this succeeded.
    fn apply_event(&self, event: SseEvent) -> Result<(), FeedError> {
        if event.data.is_empty() {
            return Ok(());
        }
        // The feed's revocations carry no `event` field; a named event is something else.
        if !(event.event.is_empty() || event.event == "message") {
            self.ignore(&format!("event {:?}", event.event));
            return Ok(());
        }
        let value = serde_json::from_str(&event.data)
            .map_err(|e| malformed("stream", format!("an event is not JSON: {e}")))?;
        self.apply("stream", value)
    }

    async fn follow_forever(self: Arc<Self>, mut link: Link) {
        let mut delay = FIRST_RETRY;
        loop {
            let outcome = self.follow_once(&mut link).await;
            if std::mem::take(&mut link.heard) {
                delay = FIRST_RETRY;
            }
            let Err(err) = outcome else {
                // The token is due for renewal: reconnect at once with a new one.
                continue;
            };
            match &err {
                FeedError::TokenRefused { .. } => link.token = None,
                // The server does not take our cursor (too old, or from another server): start
                // again from a snapshot.
                FeedError::Status {
                    what: "stream",
                    status,
                } if status.is_client_error() => link.cursor = None,
                _ => {}
            }
            tracing::warn!(error = %err, retry_in_ms = delay.as_millis() as u64, "revocation feed disconnected");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(MAX_RETRY);
        }
    }

    /// Loads the snapshot if there is no cursor yet, then applies the stream until it fails or
    /// the token is due for renewal (`Ok`).
    async fn follow_once(&self, link: &mut Link) -> Result<(), FeedError> {
        let token = link.token().await?;
        if link.cursor.is_none() {
            let snapshot = link.snapshot(&token).await?;
            let count = snapshot.items.len();
            for item in snapshot.items {
                self.apply("snapshot", item)?;
            }
            link.cursor = Some(snapshot.cursor);
            self.heard();
            tracing::info!(entries = count, "revocation feed: snapshot loaded");
        }

        let mut response = link.open_stream(&token).await?;
        let mut parser = SseParser::new();
        let renewal = link.renew_at();
        let idle = idle_limit(self.staleness);
        loop {
            let chunk = tokio::select! {
                chunk = tokio::time::timeout(idle, response.chunk()) => chunk,
                () = renewal_due(renewal) => return Ok(()),
            };
            let chunk = match chunk {
                Err(_) => {
                    tracing::warn!(
                        "revocation feed: nothing for {idle:?}; heartbeats must come more often than REVOCATION_STALENESS_MS"
                    );
                    return Err(FeedError::Silent(idle));
                }
                Ok(Err(source)) => {
                    return Err(FeedError::Request {
                        what: "stream",
                        source,
                    })
                }
                Ok(Ok(None)) => return Err(FeedError::Closed),
                Ok(Ok(Some(chunk))) => chunk,
            };
            let parsed = parser.push(&chunk).map_err(|e| malformed("stream", e))?;
            for event in parsed.events {
                let id = event.id.clone();
                self.apply_event(event)?;
                if id.is_some() {
                    link.cursor = id;
                }
            }
            // Heard from the server, but fresh only between events: with half an event
            // received, a revocation is still on its way.
            if parsed.lines > 0 {
                link.heard = true;
                if !parser.mid_event() {
                    self.heard();
                }
            }
        }
    }
}

/// A connection stays open while it is silent for less than this, then is replaced: twice the
/// staleness bound (the server must beat faster than that bound for the feed to be usable at
/// all), at most 20 s.
fn idle_limit(staleness: Duration) -> Duration {
    (staleness * 2).min(Duration::from_secs(20))
}

async fn renewal_due(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => future::pending().await,
    }
}

/// The connection side: HTTP client, token and resume point.
struct Link {
    config: FeedConfig,
    http: reqwest::Client,
    token: Option<ServiceToken>,
    /// Where the stream resumes: the snapshot's cursor, then the last applied event's id.
    cursor: Option<String>,
    /// Whether the server was heard since the last attempt (resets the backoff).
    heard: bool,
    /// The longest wait for the next part of a snapshot's body ([`REQUEST_TIMEOUT`]).
    stall_limit: Duration,
}

impl Link {
    fn new(config: FeedConfig) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .build()
            .unwrap_or_default();
        Self {
            config,
            http,
            token: None,
            cursor: None,
            heard: false,
            stall_limit: REQUEST_TIMEOUT,
        }
    }

    fn renew_at(&self) -> Option<Instant> {
        self.token.as_ref().and_then(|token| token.renew_at)
    }

    /// The current token, or a new one when there is none or it is due for renewal.
    async fn token(&mut self) -> Result<String, FeedError> {
        if let Some(token) = &self.token {
            if token.renew_at.is_none_or(|at| Instant::now() < at) {
                return Ok(token.value.clone());
            }
        }
        let token = self.fetch_token().await?;
        let value = token.value.clone();
        self.token = Some(token);
        Ok(value)
    }

    async fn fetch_token(&self) -> Result<ServiceToken, FeedError> {
        const WHAT: &str = "token endpoint";
        let request = self
            .http
            .post(&self.config.token_url)
            .basic_auth(&self.config.client_id, Some(&self.config.client_secret.0))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "application/json")
            .body("grant_type=client_credentials")
            .send();
        let requested = Instant::now();
        let response = within(WHAT, request).await?;
        let status = response.status();
        if status == StatusCode::BAD_REQUEST || status == StatusCode::UNAUTHORIZED {
            // The OAuth error code only (RFC 6749 §5.2): the body could echo what we sent.
            let body: serde_json::Value = within(WHAT, response.json()).await.unwrap_or_default();
            let error = body["error"].as_str().unwrap_or("no error code").to_owned();
            return Err(FeedError::CredentialsRefused { status, error });
        }
        if !status.is_success() {
            return Err(FeedError::Status { what: WHAT, status });
        }
        let body: TokenResponse = within(WHAT, response.json()).await?;
        if !body.token_type.eq_ignore_ascii_case("bearer") {
            return Err(malformed(
                WHAT,
                format!("token_type {:?}, expected Bearer", body.token_type),
            ));
        }
        Ok(ServiceToken {
            value: body.access_token,
            renew_at: body
                .expires_in
                .map(|secs| requested + Duration::from_millis(secs * 750)),
        })
    }

    async fn snapshot(&self, token: &str) -> Result<Snapshot, FeedError> {
        const WHAT: &str = "snapshot";
        let request = self
            .http
            .get(&self.config.snapshot_url)
            .bearer_auth(token)
            .header(ACCEPT, "application/json")
            .send();
        let mut response = check_status(WHAT, within(WHAT, request).await?)?;
        // The snapshot is as long as the log (auth-service writes it a page at a time), so
        // only a stall fails it: each part must come within the limit, the whole may not.
        let mut body = Vec::new();
        loop {
            match tokio::time::timeout(self.stall_limit, response.chunk()).await {
                Ok(Ok(Some(chunk))) => body.extend_from_slice(&chunk),
                Ok(Ok(None)) => break,
                Ok(Err(source)) => return Err(FeedError::Request { what: WHAT, source }),
                Err(_) => return Err(FeedError::TimedOut { what: WHAT }),
            }
        }
        serde_json::from_slice(&body).map_err(|e| malformed(WHAT, e))
    }

    async fn open_stream(&self, token: &str) -> Result<reqwest::Response, FeedError> {
        const WHAT: &str = "stream";
        let mut request = self
            .http
            .get(&self.config.stream_url)
            .bearer_auth(token)
            .header(ACCEPT, "text/event-stream");
        if let Some(cursor) = &self.cursor {
            request = request.header("Last-Event-ID", cursor);
        }
        let response = check_status(WHAT, within(WHAT, request.send()).await?)?;
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !content_type.starts_with("text/event-stream") {
            return Err(malformed(
                WHAT,
                format!("Content-Type {content_type:?}, expected text/event-stream"),
            ));
        }
        Ok(response)
    }
}

fn check_status(
    what: &'static str,
    response: reqwest::Response,
) -> Result<reqwest::Response, FeedError> {
    match response.status() {
        status if status.is_success() => Ok(response),
        status @ (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => {
            Err(FeedError::TokenRefused { what, status })
        }
        status => Err(FeedError::Status { what, status }),
    }
}

/// `request` within [`REQUEST_TIMEOUT`], its error tagged with `what`.
async fn within<T>(
    what: &'static str,
    request: impl std::future::Future<Output = Result<T, reqwest::Error>>,
) -> Result<T, FeedError> {
    match tokio::time::timeout(REQUEST_TIMEOUT, request).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(source)) => Err(FeedError::Request { what, source }),
        Err(_) => Err(FeedError::TimedOut { what }),
    }
}

impl RevocationCheck for RevocationFeed {
    fn is_revoked<'a>(
        &'a self,
        claims: &'a Claims,
    ) -> BoxFuture<'a, Result<bool, StoreUnavailable>> {
        let result = if self.is_current() {
            Ok(self.entries.contains_match(claims))
        } else {
            Err(not_current())
        };
        future::ready(result).boxed()
    }

    fn ready(&self) -> BoxFuture<'_, Result<(), StoreUnavailable>> {
        let result = if self.is_current() {
            Ok(())
        } else {
            Err(not_current())
        };
        future::ready(result).boxed()
    }

    fn kind(&self) -> &'static str {
        "revocation-feed"
    }
}

fn not_current() -> StoreUnavailable {
    StoreUnavailable::Other("the revocation feed has not been heard from recently enough".into())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::claims::{Role, TokenType};
    use crate::now_unix;
    use crate::revocation::Revocation;

    fn claims(jti: &str, sub: &str, iat: i64, sid: Option<&str>) -> Claims {
        Claims {
            iss: "i".into(),
            aud: "a".into(),
            sub: sub.into(),
            jti: jti.into(),
            iat,
            nbf: iat,
            exp: iat + 60,
            token_type: TokenType::Access,
            fresh: true,
            roles: vec![Role::User],
            username: "u".into(),
            sid: sid.map(Into::into),
            csrf: None,
            scope: None,
            client_id: None,
        }
    }

    fn fresh_feed() -> RevocationFeed {
        let feed = RevocationFeed::new(Duration::from_secs(5));
        feed.heard();
        feed
    }

    fn event(data: serde_json::Value) -> SseEvent {
        SseEvent {
            id: Some("1".into()),
            event: String::new(),
            data: data.to_string(),
        }
    }

    #[test]
    fn each_kind_decodes_to_its_entry() {
        let later = now_unix() + 60;
        let decoded = |value| match decode(value) {
            Ok(Decoded::Entry(entry)) => entry,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            decoded(json!({"kind": "token", "jti": "j", "expires_at": later})).target,
            Revocation::Token { jti: "j".into() }
        );
        assert_eq!(
            decoded(json!({"kind": "session", "sid": "s", "expires_at": later})).target,
            Revocation::Session { sid: "s".into() }
        );
        assert_eq!(
            decoded(json!({"kind": "user", "sub": "7", "before": 1764325678.123,
                           "except_jti": "mine", "expires_at": later})),
            RevocationEntry {
                target: Revocation::UserBefore {
                    sub: "7".into(),
                    before_ms: 1_764_325_678_123,
                    except_jti: Some("mine".into()),
                    strict_before_ms: 0,
                },
                expires_at: later,
            }
        );
    }

    #[test]
    fn unknown_kinds_are_reported_and_broken_known_kinds_are_errors() {
        assert_eq!(
            decode(json!({"kind": "device", "id": "d"})),
            Ok(Decoded::UnknownKind("device".into()))
        );
        assert!(decode(json!({"kind": "token", "expires_at": 1})).is_err());
        assert!(decode(json!({"jti": "j", "expires_at": 1})).is_err());
    }

    #[tokio::test]
    async fn applied_events_revoke_their_tokens() {
        let feed = fresh_feed();
        let now = now_unix();
        let later = now + 60;
        for data in [
            json!({"kind": "token", "jti": "a", "expires_at": later}),
            json!({"kind": "session", "sid": "s", "expires_at": later}),
            json!({"kind": "user", "sub": "7", "before": now as f64 + 0.999, "expires_at": later}),
        ] {
            feed.apply_event(event(data)).unwrap();
        }
        for (token, revoked) in [
            (claims("a", "1", now, None), true),
            (claims("b", "1", now, Some("s")), true),
            (claims("c", "7", now, None), true),
            (claims("d", "7", now + 1, None), false),
            (claims("e", "1", now, None), false),
        ] {
            assert_eq!(
                feed.is_revoked(&token).await.unwrap(),
                revoked,
                "{}",
                token.jti
            );
        }
    }

    #[tokio::test]
    async fn user_cutoffs_merge_so_a_later_exception_does_not_revive_a_token() {
        let feed = fresh_feed();
        let now = now_unix();
        let later = now + 60;
        // Logout-all of user 7, then a password change that spares its own token "mine".
        feed.apply_event(event(
            json!({"kind": "user", "sub": "7", "before": now as f64 - 10.0, "expires_at": later}),
        ))
        .unwrap();
        feed.apply_event(event(
            json!({"kind": "user", "sub": "7", "before": now as f64,
                                      "except_jti": "mine", "expires_at": later}),
        ))
        .unwrap();
        let revoked =
            |jti: &str, iat: i64| feed.entries.contains_match(&claims(jti, "7", iat, None));
        assert!(revoked("mine", now - 20), "issued before the logout-all");
        assert!(
            !revoked("mine", now - 5),
            "the password changer's own token"
        );
        assert!(revoked("other", now - 5));
        assert!(!revoked("other", now + 1));
    }

    #[test]
    fn unknown_kinds_and_named_events_are_skipped_and_unreadable_events_are_errors() {
        let feed = fresh_feed();
        feed.apply_event(event(
            json!({"kind": "device", "id": "d", "expires_at": now_unix() + 60}),
        ))
        .unwrap();
        feed.apply_event(SseEvent {
            event: "notice".into(),
            ..event(json!({"kind": "token", "jti": "n", "expires_at": now_unix() + 60}))
        })
        .unwrap();
        assert!(feed.entries.is_empty());
        assert_eq!(feed.ignored.lock().unwrap().len(), 2);

        let not_json = SseEvent {
            data: "{".into(),
            ..event(json!({}))
        };
        assert!(matches!(
            feed.apply_event(not_json),
            Err(FeedError::Malformed { .. })
        ));
        assert!(feed
            .apply_event(event(json!({"kind": "user", "sub": "7", "expires_at": 1})))
            .is_err());
    }

    #[tokio::test]
    async fn it_fails_closed_before_the_snapshot_and_when_stale() {
        let feed = RevocationFeed::new(Duration::from_millis(50));
        let token = claims("a", "1", now_unix(), None);
        assert!(feed.is_revoked(&token).await.is_err());
        assert!(feed.ready().await.is_err());

        feed.heard();
        assert!(!feed.is_revoked(&token).await.unwrap());
        assert!(feed.ready().await.is_ok());

        tokio::time::sleep(Duration::from_millis(80)).await;
        assert!(feed.is_revoked(&token).await.is_err());
        assert!(feed.ready().await.is_err());

        feed.heard();
        assert!(feed.ready().await.is_ok());
    }

    /// Serves one `GET` with a chunked JSON body: `parts`, each after `gap`.
    async fn trickling_server(parts: Vec<String>, gap: Duration) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/revocations", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buffer = [0u8; 1024];
            while !request.ends_with(b"\r\n\r\n") {
                let n = socket.read(&mut buffer).await.unwrap();
                request.extend_from_slice(&buffer[..n]);
            }
            let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                        transfer-encoding: chunked\r\n\r\n";
            socket.write_all(head.as_bytes()).await.unwrap();
            for part in parts {
                tokio::time::sleep(gap).await;
                let chunk = format!("{:x}\r\n{part}\r\n", part.len());
                if socket.write_all(chunk.as_bytes()).await.is_err() {
                    return;
                }
            }
            let _ = socket.write_all(b"0\r\n\r\n").await;
        });
        url
    }

    fn link_to(snapshot_url: String, stall_limit: Duration) -> Link {
        let mut link = Link::new(FeedConfig {
            stream_url: format!("{snapshot_url}/stream"),
            snapshot_url,
            token_url: "http://127.0.0.1:9/oauth/token".into(),
            client_id: "books".into(),
            client_secret: ClientSecret::new("unused"),
        });
        link.stall_limit = stall_limit;
        link
    }

    #[tokio::test]
    async fn a_long_snapshot_loads_while_its_parts_keep_coming() {
        // Twelve parts 50 ms apart: the whole takes 600 ms, three times the stall limit.
        let item = r#"{"kind":"token","jti":"t","expires_at":1}"#;
        let mut parts = vec![format!("{{\"items\":[{item}")];
        parts.extend((0..10).map(|_| format!(",{item}")));
        parts.push(r#"],"cursor":"5-0"}"#.into());
        let url = trickling_server(parts, Duration::from_millis(50)).await;
        let link = link_to(url, Duration::from_millis(200));

        let snapshot = link.snapshot("token").await.unwrap();
        assert_eq!(snapshot.items.len(), 11);
        assert_eq!(snapshot.cursor, "5-0");
    }

    #[tokio::test]
    async fn a_stalled_or_cut_snapshot_is_an_error() {
        let stalled = trickling_server(
            vec![r#"{"items":["#.into(), "]".into()],
            Duration::from_millis(400),
        )
        .await;
        let err = snapshot_error(stalled, Duration::from_millis(200)).await;
        assert!(matches!(err, FeedError::TimedOut { .. }), "{err}");

        // Ended short of its closing brackets: never taken for the whole log.
        let cut =
            trickling_server(vec![r#"{"items":[{"kind":"token""#.into()], Duration::ZERO).await;
        let err = snapshot_error(cut, Duration::from_secs(2)).await;
        assert!(matches!(err, FeedError::Malformed { .. }), "{err}");
    }

    async fn snapshot_error(url: String, stall_limit: Duration) -> FeedError {
        match link_to(url, stall_limit).snapshot("token").await {
            Ok(_) => panic!("the snapshot loaded"),
            Err(err) => err,
        }
    }

    #[test]
    fn the_secret_never_prints() {
        let config = FeedConfig {
            stream_url: "http://a/revocations/stream".into(),
            snapshot_url: "http://a/revocations".into(),
            token_url: "http://a/oauth/token".into(),
            client_id: "books".into(),
            client_secret: ClientSecret::new("hunter2"),
        };
        assert!(!format!("{config:?}").contains("hunter2"));
    }
}
