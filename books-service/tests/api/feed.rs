//! books-service learning revocations from an HTTP revocation feed instead of Redis. First a
//! small scripted feed server plays the protocol's corners (client credentials, a refused
//! token, token renewal, CRLF and multi-line data, an unknown kind, resuming with
//! `Last-Event-ID`, a silent stream); auth-service's real feed follows.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use base64::Engine;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_error, payload, spawn_stack, Backend, Stack, Tokens};

const CLIENT_ID: &str = "books-feed";
const CLIENT_SECRET: &str = "feed-secret-0123456789";
const HEARTBEAT: Duration = Duration::from_millis(100);

/// What the scripted feed serves and what it saw.
#[derive(Default)]
struct Script {
    /// Every event, `(id, revocation)`; the snapshot holds the first `in_snapshot`.
    events: Vec<(String, Value)>,
    in_snapshot: usize,
    expires_in: u64,
    tokens_issued: Vec<String>,
    /// Tokens the feed answers 401 from now on.
    refused: HashSet<String>,
    /// Each stream request: the index of its token and its `Last-Event-ID`.
    opened: Vec<(usize, Option<String>)>,
    /// Bumped to close every open stream.
    generation: u64,
    /// Open streams send nothing, not even heartbeats, while set.
    silent: bool,
    bad_credentials: usize,
}

type ScriptData = web::Data<Mutex<Script>>;

struct ScriptedFeed {
    url: String,
    script: ScriptData,
}

impl ScriptedFeed {
    async fn start(expires_in: u64) -> Self {
        let script = web::Data::new(Mutex::new(Script {
            expires_in,
            ..Script::default()
        }));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let data = script.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/oauth/token", web::post().to(issue_token))
                .route("/revocations", web::get().to(snapshot))
                .route("/revocations/stream", web::get().to(stream))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(0)
        .listen(listener)
        .unwrap()
        .run();
        tokio::spawn(server);
        Self { url, script }
    }

    fn with<T>(&self, change: impl FnOnce(&mut Script) -> T) -> T {
        change(&mut self.script.lock().unwrap())
    }

    fn push(&self, id: &str, revocation: Value) {
        self.with(|s| s.events.push((id.to_owned(), revocation)));
    }

    fn books_settings(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "REVOCATION_FEED_URL",
                format!("{}/revocations/stream", self.url),
            ),
            ("REVOCATION_FEED_CLIENT_ID", CLIENT_ID.to_owned()),
            ("REVOCATION_FEED_CLIENT_SECRET", CLIENT_SECRET.to_owned()),
            ("REVOCATION_STALENESS_MS", "1000".to_owned()),
        ]
    }
}

async fn issue_token(request: HttpRequest, body: String, script: ScriptData) -> HttpResponse {
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
    );
    let presented = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    let mut s = script.lock().unwrap();
    if presented != Some(expected.as_str()) || body != "grant_type=client_credentials" {
        s.bad_credentials += 1;
        return HttpResponse::Unauthorized().json(json!({ "error": "invalid_client" }));
    }
    let token = format!("service-token-{}", s.tokens_issued.len());
    s.tokens_issued.push(token.clone());
    HttpResponse::Ok().json(json!({
        "access_token": token, "token_type": "Bearer",
        "expires_in": s.expires_in, "scope": "revocations:read",
    }))
}

/// The index of the caller's token, if the feed takes it.
fn caller(request: &HttpRequest, s: &Script) -> Option<usize> {
    let token = request
        .headers()
        .get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")?;
    if s.refused.contains(token) {
        return None;
    }
    s.tokens_issued.iter().position(|t| t == token)
}

async fn snapshot(request: HttpRequest, script: ScriptData) -> HttpResponse {
    let s = script.lock().unwrap();
    if caller(&request, &s).is_none() {
        return HttpResponse::Unauthorized().finish();
    }
    let included = &s.events[..s.in_snapshot];
    HttpResponse::Ok().json(json!({
        "items": included.iter().map(|(_, r)| r.clone()).collect::<Vec<_>>(),
        "cursor": included.last().map_or("c0".to_owned(), |(id, _)| id.clone()),
    }))
}

async fn stream(request: HttpRequest, script: ScriptData) -> HttpResponse {
    let mut s = script.lock().unwrap();
    let Some(token) = caller(&request, &s) else {
        return HttpResponse::Unauthorized().finish();
    };
    let resume = request
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    s.opened.push((token, resume.clone()));
    let next = match resume.as_deref() {
        Some("c0") => 0,
        Some(id) => match s.events.iter().position(|(e, _)| e == id) {
            Some(at) => at + 1,
            None => return HttpResponse::BadRequest().finish(),
        },
        None => s.events.len(),
    };
    let opened = (script.clone(), next, s.generation, Instant::now());
    let body = futures_util::stream::unfold(
        opened,
        |(script, mut next, generation, mut beat)| async move {
            loop {
                let chunk = {
                    let s = script.lock().unwrap();
                    if s.generation != generation {
                        return None;
                    }
                    match s.events.get(next) {
                        _ if s.silent => None,
                        Some((id, revocation)) => {
                            next += 1;
                            Some(sse_event(id, revocation))
                        }
                        None if beat.elapsed() >= HEARTBEAT => {
                            beat = Instant::now();
                            Some(": keep-alive\r\n\r\n".to_owned())
                        }
                        None => None,
                    }
                };
                match chunk {
                    Some(chunk) => {
                        let item = Ok::<_, std::io::Error>(web::Bytes::from(chunk));
                        return Some((item, (script, next, generation, beat)));
                    }
                    None => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        },
    );
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .streaming(body)
}

/// An event with CRLF line endings and its JSON on two `data` lines (the second without the
/// optional space), as a server may legally send it.
fn sse_event(id: &str, revocation: &Value) -> String {
    let json = revocation.to_string();
    let (head, tail) = json.split_at(json.find(',').map_or(json.len(), |at| at + 1));
    format!("id: {id}\r\ndata: {head}\r\ndata:{tail}\r\n\r\n")
}

fn jti(tokens: &Tokens) -> String {
    payload(&tokens.access)["jti"].as_str().unwrap().to_owned()
}

fn now_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Polls `GET /books` with `token` until it answers `status` (at most `within`); returns the
/// answer and how long it took.
async fn until_status(
    stack: &Stack,
    token: &str,
    status: StatusCode,
    within: Duration,
) -> (reqwest::Response, Duration) {
    let started = Instant::now();
    loop {
        let response = stack.get(token, "/books").await;
        if response.status() == status {
            return (response, started.elapsed());
        }
        assert!(
            started.elapsed() < within,
            "still {} after {within:?}",
            response.status()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Polls until `GET /books` with `token` answers anything but 503.
async fn until_available(stack: &Stack, token: &str, within: Duration) -> reqwest::Response {
    let started = Instant::now();
    loop {
        let response = stack.get(token, "/books").await;
        if response.status() != StatusCode::SERVICE_UNAVAILABLE {
            return response;
        }
        assert!(started.elapsed() < within, "still 503 after {within:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn readiness(stack: &Stack) -> (StatusCode, Value) {
    let response = stack
        .client
        .get(stack.books_url("/readyz"))
        .send()
        .await
        .unwrap();
    (response.status(), response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn books_follows_a_scripted_feed_across_refused_tokens_reconnects_and_silence() {
    let mut stack = spawn_stack(Backend::Sqlite).await;
    let a = stack.user_with_roles("fiona", "user").await;
    let (b, c, d, e) = (
        stack.login("fiona").await,
        stack.login("fiona").await,
        stack.login("fiona").await,
        stack.login("fiona").await,
    );
    let sub = payload(&a.access)["sub"].as_str().unwrap().to_owned();
    let expires_at = shared::now_unix() + 3600;
    let revoke =
        |tokens: &Tokens| json!({"kind": "token", "jti": jti(tokens), "expires_at": expires_at});
    // Service tokens live 2 s here, so the test outlives a few: each is renewed before it ends.
    let feed = ScriptedFeed::start(2).await;
    feed.push("c1", revoke(&a));
    feed.with(|s| s.in_snapshot = 1);
    let dir = tempfile::tempdir().unwrap();
    let settings = feed.books_settings();
    let settings: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    stack.books = stack.books_instance(dir.path(), &settings).await;
    stack.wait_until_ready().await;
    let (status, ready) = readiness(&stack).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ready["revocation_store"], "revocation-feed");

    // From the snapshot.
    let refused = stack.get(&a.access, "/books").await;
    assert_error(refused, StatusCode::UNAUTHORIZED, "token_revoked").await;
    assert_eq!(
        stack.get(&b.access, "/books").await.status(),
        StatusCode::OK
    );

    // From the stream, past a kind this version does not know.
    feed.push(
        "c2",
        json!({"kind": "device", "device": "x", "expires_at": expires_at}),
    );
    feed.push("c3", revoke(&b));
    let (_, took) = until_status(
        &stack,
        &b.access,
        StatusCode::UNAUTHORIZED,
        Duration::from_secs(1),
    )
    .await;
    assert!(took < Duration::from_secs(1), "{took:?}");

    // The feed refuses the service token and drops the stream, then stays silent: while it
    // does, a revocation is made and the copy goes stale.
    feed.with(|s| {
        let current = s.opened.last().unwrap().0;
        let token = s.tokens_issued[current].clone();
        s.refused.insert(token);
        s.silent = true;
        s.generation += 1;
    });
    feed.push("c4", revoke(&c));
    let silenced = Instant::now();
    let (unavailable, _) = until_status(
        &stack,
        &d.access,
        StatusCode::SERVICE_UNAVAILABLE,
        Duration::from_secs(5),
    )
    .await;
    assert!(
        silenced.elapsed() >= Duration::from_millis(900),
        "{:?}",
        silenced.elapsed()
    );
    assert_error(unavailable, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;
    let (status, ready) = readiness(&stack).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(ready["fields"]["revocations"].is_string(), "{ready}");

    // Back: the revocation made meanwhile is enforced as soon as books answers again.
    feed.with(|s| s.silent = false);
    let back = until_available(&stack, &c.access, Duration::from_secs(10)).await;
    assert_error(back, StatusCode::UNAUTHORIZED, "token_revoked").await;
    assert_eq!(
        stack.get(&d.access, "/books").await.status(),
        StatusCode::OK
    );

    // A cut-off for the user, sparing one token (a password change's own).
    feed.push(
        "c5",
        json!({"kind": "user", "sub": sub, "before": now_seconds(),
                           "except_jti": jti(&d), "expires_at": expires_at}),
    );
    until_status(
        &stack,
        &e.access,
        StatusCode::UNAUTHORIZED,
        Duration::from_secs(1),
    )
    .await;
    assert_eq!(
        stack.get(&d.access, "/books").await.status(),
        StatusCode::OK
    );

    feed.with(|s| {
        assert_eq!(s.bad_credentials, 0);
        let refused: Vec<usize> = s
            .refused
            .iter()
            .map(|t| s.tokens_issued.iter().position(|i| i == t).unwrap())
            .collect();
        // Every stream after the snapshot resumed from where the previous one stopped.
        assert_eq!(s.opened[0].1.as_deref(), Some("c1"), "{:?}", s.opened);
        assert!(
            s.opened.iter().all(|(_, resume)| resume.is_some()),
            "{:?}",
            s.opened
        );
        assert!(
            s.opened
                .iter()
                .any(|(_, resume)| resume.as_deref() == Some("c3")),
            "{:?}",
            s.opened
        );
        // The refused token was replaced, and no stream was opened with it afterwards.
        let after_refusal = s
            .opened
            .iter()
            .position(|(_, r)| r.as_deref() == Some("c3"))
            .unwrap();
        assert!(
            s.opened[after_refusal..]
                .iter()
                .all(|(t, _)| !refused.contains(t)),
            "{:?}",
            s.opened
        );
        assert!(s.tokens_issued.len() >= 2);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn books_renews_its_service_token_before_it_expires() {
    let mut stack = spawn_stack(Backend::Sqlite).await;
    let tokens = stack.user_with_roles("gustav", "user").await;
    let feed = ScriptedFeed::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let settings = feed.books_settings();
    let settings: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    stack.books = stack.books_instance(dir.path(), &settings).await;
    stack.wait_until_ready().await;

    // One-second tokens, renewed at three quarters of their life: about four in three seconds,
    // each stream reopened where the last one stopped, and never a gap books notices.
    // (Three renewals take three seconds on a quiet machine; a loaded one gets up to 15.)
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(15)
        && feed.with(|s| s.tokens_issued.len() < 3 || s.opened.len() < 3)
    {
        assert_eq!(
            stack.get(&tokens.access, "/books").await.status(),
            StatusCode::OK
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    feed.with(|s| {
        assert!(s.tokens_issued.len() >= 3, "{:?}", s.tokens_issued);
        assert!(s.opened.len() >= 3, "{:?}", s.opened);
        assert!(
            s.opened
                .iter()
                .all(|(_, resume)| resume.as_deref() == Some("c0")),
            "{:?}",
            s.opened
        );
    });
}

// ---- auth-service's own feed -------------------------------------------------------------------

const ADMIN: &str = "root";
const ADMIN_PASSWORD: &str = "bootstrap-password";

/// A TCP proxy the test can cut: cutting closes every open connection and closes new ones at
/// once, until it is restored. books-service reaches the feed only through it.
struct CuttableProxy {
    port: u16,
    cut: tokio::sync::watch::Sender<bool>,
}

impl CuttableProxy {
    async fn start(target: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (cut, watch) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if *watch.borrow() {
                    continue;
                }
                let mut watch = watch.clone();
                let target = target.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await else {
                        return;
                    };
                    let cut = async {
                        if watch.wait_for(|cut| *cut).await.is_err() {
                            // The proxy is gone with its test: forward until either side closes.
                            std::future::pending::<()>().await;
                        }
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        () = cut => {}
                    }
                });
            }
        });
        Self { port, cut }
    }

    fn cut(&self) {
        self.cut.send_replace(true);
    }

    fn restore(&self) {
        self.cut.send_replace(false);
    }
}

/// A real auth-service (embedded SQLite, no Redis) with a bootstrap admin and 1 s heartbeats;
/// a feed client the admin creates; and a books-service whose only revocation source is that
/// feed, through a [`CuttableProxy`], trusting it for 2 s without news.
struct FeedStack {
    stack: Stack,
    proxy: CuttableProxy,
    _dir: tempfile::TempDir,
}

async fn spawn_feed_stack() -> FeedStack {
    let mut stack = crate::helpers::spawn_stack_with(
        Backend::Sqlite,
        &[
            ("AUTH_BOOTSTRAP_ADMIN_USERNAME", ADMIN),
            ("AUTH_BOOTSTRAP_ADMIN_PASSWORD", ADMIN_PASSWORD),
            ("AUTH_FEED_HEARTBEAT_SECS", "1"),
        ],
        &[],
        crate::helpers::redis_url(),
    )
    .await;
    let login = stack
        .client
        .post(format!("{}/auth/login", stack.auth))
        .json(&json!({ "username": ADMIN, "password": ADMIN_PASSWORD }))
        .send()
        .await
        .unwrap();
    let admin = crate::helpers::tokens(login).await;
    let created = stack
        .client
        .post(format!("{}/auth/clients", stack.auth))
        .bearer_auth(&admin.access)
        .json(&json!({ "name": "books-service", "scopes": ["revocations:read"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let client: Value = created.json().await.unwrap();

    let auth_address = stack.auth.trim_start_matches("http://").to_owned();
    let proxy = CuttableProxy::start(auth_address).await;
    let dir = tempfile::tempdir().unwrap();
    let feed_url = format!("http://127.0.0.1:{}/revocations/stream", proxy.port);
    stack.books = stack
        .books_instance(
            dir.path(),
            &[
                ("REVOCATION_FEED_URL", &feed_url),
                (
                    "REVOCATION_FEED_CLIENT_ID",
                    client["client_id"].as_str().unwrap(),
                ),
                (
                    "REVOCATION_FEED_CLIENT_SECRET",
                    client["client_secret"].as_str().unwrap(),
                ),
                ("REVOCATION_STALENESS_MS", "2000"),
            ],
        )
        .await;
    stack.wait_until_ready().await;
    FeedStack {
        stack,
        proxy,
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_and_logout_all_reach_books_through_the_feed_within_a_second() {
    let FeedStack {
        stack,
        proxy: _proxy,
        ..
    } = spawn_feed_stack().await;
    let (status, ready) = readiness(&stack).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ready["revocation_store"], "revocation-feed");
    let laptop = stack.user_with_roles("hana", "user").await;
    let phone = stack.login("hana").await;
    assert_eq!(
        stack.get(&laptop.access, "/books").await.status(),
        StatusCode::OK
    );
    assert_eq!(
        stack.get(&phone.access, "/books").await.status(),
        StatusCode::OK
    );

    assert_eq!(stack.logout(&laptop).await.status(), StatusCode::NO_CONTENT);
    let (refused, took) = until_status(
        &stack,
        &laptop.access,
        StatusCode::UNAUTHORIZED,
        Duration::from_secs(1),
    )
    .await;
    assert_error(refused, StatusCode::UNAUTHORIZED, "token_revoked").await;
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert_eq!(
        stack.get(&phone.access, "/books").await.status(),
        StatusCode::OK
    );

    let logout_all = stack
        .client
        .post(format!("{}/auth/logout-all", stack.auth))
        .bearer_auth(&phone.access)
        .send()
        .await
        .unwrap();
    assert_eq!(logout_all.status(), StatusCode::NO_CONTENT);
    let (refused, took) = until_status(
        &stack,
        &phone.access,
        StatusCode::UNAUTHORIZED,
        Duration::from_secs(1),
    )
    .await;
    assert_error(refused, StatusCode::UNAUTHORIZED, "token_revoked").await;
    assert!(took < Duration::from_secs(1), "{took:?}");

    // A login after the cut-off is not caught by it.
    let later = stack.login("hana").await;
    assert_eq!(
        stack.get(&later.access, "/books").await.status(),
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_feed_is_503_after_the_staleness_limit_and_resuming_loses_nothing() {
    let FeedStack { stack, proxy, .. } = spawn_feed_stack().await;
    let doomed = stack.user_with_roles("ivan", "user").await;
    let kept = stack.login("ivan").await;
    assert_eq!(
        stack.get(&doomed.access, "/books").await.status(),
        StatusCode::OK
    );

    proxy.cut();
    let cut_at = Instant::now();
    // Revoked while books cannot hear about it.
    assert_eq!(stack.logout(&doomed).await.status(), StatusCode::NO_CONTENT);
    let (unavailable, _) = until_status(
        &stack,
        &kept.access,
        StatusCode::SERVICE_UNAVAILABLE,
        Duration::from_secs(5),
    )
    .await;
    // The last heartbeat came at most 1 s before the cut, and the limit is 2 s.
    assert!(
        cut_at.elapsed() >= Duration::from_millis(900),
        "{:?}",
        cut_at.elapsed()
    );
    assert_error(unavailable, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;
    let (status, ready) = readiness(&stack).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(ready["fields"]["revocations"].is_string(), "{ready}");

    proxy.restore();
    // The first answer that is not 503 already knows of the logout made during the cut.
    let back = until_available(&stack, &doomed.access, Duration::from_secs(10)).await;
    assert_error(back, StatusCode::UNAUTHORIZED, "token_revoked").await;
    assert_eq!(
        stack.get(&kept.access, "/books").await.status(),
        StatusCode::OK
    );
    let (status, _) = readiness(&stack).await;
    assert_eq!(status, StatusCode::OK);
}
