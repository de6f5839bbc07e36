//! The JWKS cache against real HTTP servers on port 0 (raw tokio listeners, so each can misbehave
//! exactly): an oversized or endless body is refused without being buffered, and concurrent
//! requests behind a slow issuer share one fetch (review finding 13).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shared::jwks::Jwks;
use shared::jwks_cache::{JwksCache, JwksError, MAX_JWKS_BYTES};
use shared::{KeyRefresher, KeySet, TokenVerifier, VerifierConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const TEST_JWKS: &str = include_str!("fixtures/test_jwks.json");
const ATTACKER_JWKS: &str = include_str!("fixtures/attacker_jwks.json");

/// What the server answers to one request.
#[derive(Clone)]
enum Reply {
    /// A JWKS with `max-age=300`, after `delay`.
    Jwks { body: String, delay: Duration },
    /// `200` with no length, then bytes until the client hangs up.
    Endless,
    /// `200` announcing `Content-Length: n`, then nothing for 10 s.
    Announces(u64),
}

#[derive(Default)]
struct Served {
    requests: AtomicUsize,
    /// Bytes of endless body written before the client hung up.
    endless_bytes: AtomicU64,
    /// The client closed the connection of an endless body.
    hung_up: AtomicBool,
}

/// Serves `reply(n)` to the n-th request (from 0), one request per connection.
async fn serve(reply: impl Fn(usize) -> Reply + Send + Sync + 'static) -> (String, Arc<Served>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!(
        "http://{}/.well-known/jwks.json",
        listener.local_addr().expect("addr")
    );
    let served = Arc::new(Served::default());
    let state = served.clone();
    let reply = Arc::new(reply);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let n = state.requests.fetch_add(1, Ordering::SeqCst);
            let reply = reply(n);
            tokio::spawn(answer(stream, reply, state.clone()));
        }
    });
    (url, served)
}

async fn answer(mut stream: TcpStream, reply: Reply, served: Arc<Served>) {
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.ends_with(b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    match reply {
        Reply::Jwks { body, delay } => {
            tokio::time::sleep(delay).await;
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nCache-Control: max-age=300\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(body.as_bytes()).await;
        }
        Reply::Endless => {
            let head =
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n";
            if stream.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let chunk = vec![b' '; 16 * 1024];
            while stream.write_all(&chunk).await.is_ok() {
                served
                    .endless_bytes
                    .fetch_add(chunk.len() as u64, Ordering::SeqCst);
            }
            served.hung_up.store(true, Ordering::SeqCst);
        }
        Reply::Announces(length) => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
            );
            let _ = stream.write_all(head.as_bytes()).await;
            tokio::time::sleep(Duration::from_secs(10)).await;
        }
    }
}

fn verifier() -> Arc<TokenVerifier> {
    Arc::new(TokenVerifier::new(
        &VerifierConfig {
            issuer: "authbooks".into(),
            audience: "authbooks-api".into(),
            leeway: 0,
        },
        KeySet::default(),
    ))
}

/// Both fixture keys in one set, as after the issuer added a key.
fn rotated_jwks() -> String {
    let mut jwks: Jwks = serde_json::from_str(TEST_JWKS).expect("fixture");
    let attacker: Jwks = serde_json::from_str(ATTACKER_JWKS).expect("fixture");
    jwks.keys.extend(attacker.keys);
    serde_json::to_string(&jwks).expect("serialise")
}

async fn wait_loaded(cache: &JwksCache) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cache.is_loaded() {
        assert!(Instant::now() < deadline, "the first JWKS never loaded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A cache whose first fetch loads `test-kid` and whose later fetches get `later`.
async fn loaded_cache(later: Reply) -> (Arc<JwksCache>, Arc<TokenVerifier>, Arc<Served>) {
    let (url, served) = serve(move |n| match n {
        0 => Reply::Jwks {
            body: TEST_JWKS.to_owned(),
            delay: Duration::ZERO,
        },
        _ => later.clone(),
    })
    .await;
    let verifier = verifier();
    let cache = JwksCache::start(url, verifier.clone(), Duration::from_millis(1));
    wait_loaded(&cache).await;
    assert!(verifier.keys().contains("test-kid"));
    (cache, verifier, served)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_body_over_64_kib_is_refused() {
    let (cache, verifier, served) = loaded_cache(Reply::Endless).await;
    let before = cache.fetch_count();

    let started = Instant::now();
    let outcome = cache.refresh().await;
    let took = started.elapsed();

    let err = outcome.expect_err("an endless body must be refused");
    assert!(matches!(*err, JwksError::TooLarge), "{err}");
    assert!(took < Duration::from_secs(2), "refused after {took:?}");
    assert_eq!(cache.fetch_count(), before + 1);
    let keys = verifier.keys();
    assert!(keys.contains("test-kid") && keys.len() == 1, "keys changed");

    // The client stopped reading and hung up: the server's writes fail instead of the body
    // piling up in this process. (What it wrote sits in the two sockets' kernel buffers.)
    let deadline = Instant::now() + Duration::from_secs(2);
    while !served.hung_up.load(Ordering::SeqCst) {
        assert!(
            Instant::now() < deadline,
            "the client kept the endless body open"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let written = served.endless_bytes.load(Ordering::SeqCst);
    assert!(
        written < 64 * 1024 * 1024,
        "{written} bytes went out before the hang-up"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_body_announced_over_64_kib_is_refused_before_it_is_read() {
    let announced = 100 * 1024 * 1024;
    let (cache, verifier, _served) = loaded_cache(Reply::Announces(announced)).await;

    let started = Instant::now();
    let err = cache.refresh().await.expect_err("refused");
    let took = started.elapsed();

    // The server never sends the body: only the announcement can have refused it this fast
    // (the client's own timeout is 5 s).
    assert!(
        matches!(*err, JwksError::AnnouncedTooLarge { announced: a } if a == announced),
        "{err}"
    );
    assert!(took < Duration::from_secs(2), "refused after {took:?}");
    assert!(verifier.keys().contains("test-kid"));
    assert_eq!(MAX_JWKS_BYTES, 64 * 1024);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_share_one_jwks_fetch_behind_a_slow_server() {
    let fetch_time = Duration::from_secs(1);
    // Cooldown 1 ms: before single flight, each waiter behind the slow fetch started its own.
    let (url, served) = serve(move |n| Reply::Jwks {
        body: if n == 0 {
            TEST_JWKS.to_owned()
        } else {
            rotated_jwks()
        },
        delay: fetch_time,
    })
    .await;
    let cache = JwksCache::start(url, verifier(), Duration::from_millis(1));
    wait_loaded(&cache).await;
    let before = cache.fetch_count();

    // Half ask for the key the issuer just added, half for a kid nobody publishes (a forged
    // token): neither may start a fetch of its own while one is in flight.
    let kids = ["attacker-kid", "kid-nobody-publishes"];
    let started = Instant::now();
    let waiters: Vec<_> = (0..8)
        .map(|i| {
            let cache = cache.clone();
            tokio::spawn(async move { (i % 2, cache.refresh_for_kid(kids[i % 2]).await) })
        })
        .collect();
    let mut answers = Vec::new();
    for waiter in waiters {
        answers.push(waiter.await.expect("waiter"));
    }
    let took = started.elapsed();

    for (which, found) in &answers {
        assert_eq!(*found, *which == 0, "{} -> {found}", kids[*which]);
    }
    assert_eq!(cache.fetch_count(), before + 1, "one fetch for 8 waiters");
    assert_eq!(served.requests.load(Ordering::SeqCst), 2);
    assert!(
        took >= fetch_time - Duration::from_millis(100) && took < fetch_time * 18 / 10,
        "8 waiters took {took:?}, one fetch takes {fetch_time:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_that_gives_up_does_not_cancel_the_shared_jwks_fetch() {
    let (url, served) = serve(|n| Reply::Jwks {
        body: if n == 0 {
            TEST_JWKS.to_owned()
        } else {
            rotated_jwks()
        },
        delay: Duration::from_millis(600),
    })
    .await;
    let cache = JwksCache::start(url, verifier(), Duration::from_secs(60));
    wait_loaded(&cache).await;
    let before = cache.fetch_count();

    // The request that started the fetch goes away (its client hung up).
    let first = {
        let cache = cache.clone();
        tokio::spawn(async move { cache.refresh_for_kid("attacker-kid").await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    first.abort();

    // A later request joins the same fetch, within the cooldown, and gets its keys.
    assert!(cache.refresh_for_kid("attacker-kid").await);
    assert_eq!(cache.fetch_count(), before + 1);
    assert_eq!(served.requests.load(Ordering::SeqCst), 2);
}
