//! What `GET /books/{id}` costs beside token verification alone: throughput and p50/p99 latency
//! of the real books-service (verification + revocation check + database read) and of a bare
//! route that only runs `TokenVerifier::verify_access`, driven by the same client in one run.
//!
//! `cargo bench -p books-service --bench get_book`. `BENCH_SECONDS` (default 5) is the measured
//! time per target; `BENCH_BACKEND=sqlite` swaps PostgreSQL + Redis for SQLite files and the
//! in-process revocation store. The figures also go to `$CARGO_TARGET_DIR/bench-get-book.json`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::http::header::AUTHORIZATION;
use actix_web::{web, HttpRequest, HttpResponse};
use diesel::RunQueryDsl;
use serde_json::{json, Value};
use shared::jwks::Jwks;
use shared::revocation::{MemoryRevocations, RevocationCheck};
use shared::testing::{redis_url, TestDatabase};
use shared::{KeySet, TokenVerifier, VerifierConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CONNECTIONS: usize = 32;
/// One server thread per target leaves the other core to the (single-threaded) client.
const HTTP_WORKERS: usize = 1;
const WARM_UP: Duration = Duration::from_secs(1);
const PASSWORD: &str = "correct horse battery";

#[derive(serde::Serialize)]
struct Row {
    target: &'static str,
    requests: usize,
    requests_per_second: f64,
    p50_us: u32,
    p99_us: u32,
}

/// Reads one response (sized body, as both servers send) and returns its status.
async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> u16 {
    buf.clear();
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..end]).expect("ASCII response head");
            let length: usize = head
                .lines()
                .filter_map(|line| line.split_once(':'))
                .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
                .map_or(0, |(_, value)| {
                    value.trim().parse().expect("content-length")
                });
            let status = head.get(9..12).and_then(|s| s.parse().ok());
            if buf.len() >= end + 4 + length {
                return status.expect("HTTP status code");
            }
        }
        let read = stream.read_buf(buf).await.expect("read response");
        assert!(read > 0, "server closed a keep-alive connection");
    }
}

/// `CONNECTIONS` keep-alive connections, each sending `request` back to back for `run`.
/// Hand-rolled HTTP/1.1: with reqwest the one client thread sat at 100% CPU while the server
/// worker idled at half load, so it measured the client, not the servers.
async fn drive(port: u16, request: &str, run: Duration) -> Vec<u32> {
    let deadline = Instant::now() + run;
    let request: Arc<[u8]> = request.as_bytes().into();
    let connections: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let request = request.clone();
            tokio::spawn(async move {
                let mut stream = TcpStream::connect(("127.0.0.1", port))
                    .await
                    .expect("connect");
                stream.set_nodelay(true).expect("TCP_NODELAY");
                let (mut buf, mut latencies) = (Vec::with_capacity(4096), Vec::new());
                while Instant::now() < deadline {
                    let sent = Instant::now();
                    stream.write_all(&request).await.expect("send request");
                    let status = read_response(&mut stream, &mut buf).await;
                    assert_eq!(status, 200, "answered {}", String::from_utf8_lossy(&buf));
                    latencies.push(sent.elapsed().as_micros() as u32);
                }
                latencies
            })
        })
        .collect();
    let results = futures_util::future::join_all(connections).await;
    results
        .into_iter()
        .flat_map(|r| r.expect("load connection panicked"))
        .collect()
}

async fn measure(target: &'static str, port: u16, path: &str, token: &str, run: Duration) -> Row {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n\r\n"
    );
    // The client gets a thread and runtime of its own: on the main runtime it starved the
    // services' background tasks, and the revocation replica's heartbeat timed out (503s).
    let (mut latencies, elapsed) = tokio::task::spawn_blocking(move || {
        let client = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
        client.expect("client runtime").block_on(async {
            drive(port, &request, WARM_UP).await;
            let started = Instant::now();
            (drive(port, &request, run).await, started.elapsed())
        })
    })
    .await
    .expect("load generator panicked");
    assert!(!latencies.is_empty(), "{target}: no request completed");
    latencies.sort_unstable();
    let at = |q: usize| latencies[(latencies.len() * q / 100).min(latencies.len() - 1)];
    Row {
        target,
        requests: latencies.len(),
        requests_per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50_us: at(50),
        p99_us: at(99),
    }
}

/// The bare target: the bearer token checked by the verifier, nothing else.
async fn verify_only(req: HttpRequest, verifier: web::Data<TokenVerifier>) -> HttpResponse {
    let bearer = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    match bearer.map(|token| verifier.verify_access(token)) {
        Some(Ok(_)) => HttpResponse::Ok().json(json!({ "ok": true })),
        _ => HttpResponse::Unauthorized().finish(),
    }
}

async fn post(client: &reqwest::Client, url: String, token: Option<&str>, body: &Value) -> Value {
    let mut request = client.post(&url).json(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("setup request fails");
    let status = response.status();
    assert!(status.is_success(), "{url} answered {status}");
    response.json().await.expect("JSON body")
}

fn vars(pairs: &[(&str, String)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let seconds: u64 =
        std::env::var("BENCH_SECONDS").map_or(5, |s| s.parse().expect("BENCH_SECONDS"));
    let sqlite = std::env::var("BENCH_BACKEND").is_ok_and(|b| b == "sqlite");
    let dir = tempfile::tempdir().expect("temp dir");
    let in_dir = |name: &str| dir.path().join(name).display().to_string();

    // Wired as `spawn_stack_with` in tests/api/helpers.rs does, with one worker per server.
    let mut databases = Vec::new();
    let (backend, auth_db, books_db, store) = if sqlite {
        let store = Arc::new(MemoryRevocations::new());
        let url = |name: &str| format!("sqlite://{}", in_dir(name));
        let backend = "SQLite + in-process revocations";
        (backend, url("auth.db"), url("books.db"), Some(store))
    } else {
        databases.extend([TestDatabase::create(), TestDatabase::create()]);
        let urls = (databases[0].url.clone(), databases[1].url.clone());
        ("PostgreSQL + Redis", urls.0, urls.1, None)
    };
    let prefix = format!("bench:{}:", uuid::Uuid::new_v4().simple());
    let mut common = vec![
        ("LISTEN_ADDR", "127.0.0.1:0".to_owned()),
        ("HTTP_WORKERS", HTTP_WORKERS.to_string()),
        ("REDIS_KEY_PREFIX", prefix),
    ];
    if !sqlite {
        common.push(("REDIS_URL", redis_url()));
    }
    let mut auth_vars = common.clone();
    auth_vars.extend([
        ("DATABASE_URL", auth_db.clone()),
        ("AUTH_KEYS_DIR", in_dir("keys")),
    ]);
    let settings = auth_service::Settings::from_vars(vars(&auth_vars)).expect("auth settings");
    let app = auth_service::Application::build_with(settings, store.clone())
        .await
        .expect("auth-service starts");
    let auth = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());

    let jwks_url = format!("{auth}/.well-known/jwks.json");
    common.extend([("DATABASE_URL", books_db), ("JWKS_URL", jwks_url.clone())]);
    let settings = books_service::Settings::from_vars(vars(&common)).expect("books settings");
    let config = VerifierConfig {
        ..settings.verifier.clone()
    };
    let app = books_service::Application::build_with(
        settings,
        store.map(|s| s as Arc<dyn RevocationCheck>),
    )
    .await
    .expect("books-service starts");
    let books_port = app.port();
    let books = format!("http://127.0.0.1:{books_port}");
    tokio::spawn(app.run_until_stopped());

    // The bare route verifies with the keys auth-service publishes, as books-service does.
    let client = reqwest::Client::new();
    let response = client.get(&jwks_url).send().await.expect("fetch JWKS");
    let jwks: Jwks = response.json().await.expect("JWKS JSON");
    let verifier = web::Data::new(TokenVerifier::new(&config, KeySet::from_jwks(&jwks)));
    let address = "127.0.0.1:0".parse().expect("address");
    let bare = shared::server::bind("bare-verify", address, Some(HTTP_WORKERS), move |cfg| {
        cfg.app_data(verifier.clone())
            .route("/verify", web::get().to(verify_only));
    })
    .expect("bare route binds");
    tokio::spawn(bare.server);

    // Ready once its revocation replica has synced (PostgreSQL + Redis) and its keys are loaded.
    let ready = format!("{books}/readyz");
    for tries in 0.. {
        let answer = client.get(&ready).send().await;
        if answer.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        assert!(tries < 200, "books-service not ready after 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // An editor (role set in auth's database, as an admin tool would) creates the book to read.
    let user = json!({ "username": "bench.editor", "password": PASSWORD });
    post(&client, format!("{auth}/auth/register"), None, &user).await;
    let url = shared::db::DatabaseUrl::parse(&auth_db).expect("auth database URL");
    let migrations = auth_service::startup::MIGRATIONS;
    let pool = shared::db::connect_and_migrate(&url, migrations, Duration::from_secs(2))
        .expect("auth database");
    diesel::sql_query("UPDATE users SET roles = 'user,editor' WHERE username = 'bench.editor'")
        .execute(&mut *pool.get().expect("auth connection"))
        .expect("set roles");
    let login = post(&client, format!("{auth}/auth/login"), None, &user).await;
    let token = login["access_token"].as_str().expect("access token");
    let book = json!({ "title": "The Name of the Rose", "author": "Umberto Eco" });
    let book = post(&client, format!("{books}/books"), Some(token), &book).await;
    let book_path = format!("/books/{}", book["id"].as_str().expect("book id"));

    let run = Duration::from_secs(seconds);
    let rows = [
        measure("GET /books/{id}", books_port, &book_path, token, run).await,
        measure("bare verify route", bare.port, "/verify", token, run).await,
    ];
    let ratio = rows[0].requests_per_second / rows[1].requests_per_second;

    println!(
        "{backend}; HTTP_WORKERS={HTTP_WORKERS} for both servers; client: {CONNECTIONS} keep-alive \
         HTTP/1.1 connections on one tokio thread in this process; {}s warm-up, {seconds}s \
         measured per target\n",
        WARM_UP.as_secs()
    );
    println!("target              requests/s   p50 µs   p99 µs");
    for row in &rows {
        let (target, rps, p50, p99) = (row.target, row.requests_per_second, row.p50_us, row.p99_us);
        println!("{target:<18} {rps:>11.0} {p50:>8} {p99:>8}");
    }
    println!("\nGET /books/{{id}} throughput = {ratio:.2} x bare verify route");

    let report = json!({
        "backend": backend, "http_workers": HTTP_WORKERS, "connections": CONNECTIONS,
        "warm_up_seconds": WARM_UP.as_secs(), "seconds": seconds, "targets": rows,
        "get_book_over_bare_verify": ratio,
    });
    let target_dir = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    );
    std::fs::create_dir_all(&target_dir).expect("target dir");
    let path = target_dir.join("bench-get-book.json");
    std::fs::write(&path, format!("{report:#}\n")).expect("write JSON report");
    println!("figures written to {}", path.display());
}
