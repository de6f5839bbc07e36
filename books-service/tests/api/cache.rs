//! The book cache (src/cache.rs) against the promise it must keep: a write that returned on one
//! instance is never followed by the previous version from another, even one that caches the
//! book, reads it in a loop meanwhile, or has stopped answering. Every test first shows the
//! cache is really serving (its hit counter moves), so none of them passes by reading the
//! database every time.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::{Connection, PgConnection, RunQueryDsl};
use reqwest::StatusCode;
use serde_json::Value;
use shared::testing::PrivateRedis;

use crate::helpers::{assert_error, book, spawn_stack, spawn_stack_with, Backend, Stack};

const HITS: &str = "books_cache_reads_total{result=\"hit\"}";

async fn wait_for_lease(cache: &books_service::cache::BookCache) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cache.is_current() {
        assert!(Instant::now() < deadline, "the cache never got its lease");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn version_at(client: &reqwest::Client, base: &str, token: &str, id: &str) -> i64 {
    let response = client
        .get(format!("{base}/books/{id}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    body["version"].as_i64().unwrap()
}

/// Reads the book on `base` until it is a cache hit, so the next read is one too.
async fn warm(stack: &Stack, base: &str, token: &str, id: &str) {
    let before = stack.counter(base, HITS).await;
    for _ in 0..50 {
        version_at(&stack.client, base, token, id).await;
        if stack.counter(base, HITS).await > before {
            return;
        }
    }
    panic!("{base} never served the book from its cache");
}

async fn new_book(stack: &Stack, token: &str) -> String {
    let created: Value = stack
        .create_book(token, &book("Version 1", "Author"))
        .await
        .json()
        .await
        .unwrap();
    created["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_on_one_instance_is_never_followed_by_a_cached_old_version_on_another() {
    let stack = spawn_stack(Backend::Postgres).await;
    let (other, cache) = stack.books_instance_with_cache(2).await;
    wait_for_lease(&cache).await;
    let editor = stack.user_with_roles("cora", "user,editor,admin").await;
    let id = new_book(&stack, &editor.access).await;
    warm(&stack, &other, &editor.access, &id).await;

    // Readers hammer the other instance throughout; each read must be at least the version of
    // the last write that had returned when the read was sent.
    let returned = Arc::new(AtomicI64::new(1));
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..3 {
        let (returned, stop) = (returned.clone(), stop.clone());
        let (client, base, token, id) = (
            stack.client.clone(),
            other.clone(),
            editor.access.clone(),
            id.clone(),
        );
        readers.push(tokio::spawn(async move {
            let mut reads = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let floor = returned.load(Ordering::SeqCst);
                let got = version_at(&client, &base, &token, &id).await;
                assert!(
                    got >= floor,
                    "read version {got} after version {floor} was written"
                );
                reads += 1;
            }
            reads
        }));
    }
    let hits_before = stack.counter(&other, HITS).await;
    for n in 2..=25 {
        let response = stack
            .replace_book(
                &editor.access,
                &id,
                None,
                &book(&format!("Version {n}"), "A"),
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        returned.store(n, Ordering::SeqCst);
        // At once, on the other instance, without waiting for anything.
        assert_eq!(
            version_at(&stack.client, &other, &editor.access, &id).await,
            n
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let mut reads = 0;
    for reader in readers {
        reads += reader.await.unwrap();
    }
    assert!(reads > 50, "the readers made only {reads} reads");
    // Between the writes the readers were served from the cache, not only the database.
    assert!(stack.counter(&other, HITS).await > hits_before);

    assert_eq!(
        stack.delete_book(&editor.access, &id, None).await.status(),
        StatusCode::NO_CONTENT
    );
    let response = stack
        .client
        .get(format!("{other}/books/{id}"))
        .bearer_auth(&editor.access)
        .send()
        .await
        .unwrap();
    assert_error(response, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalled_instance_does_not_serve_a_book_written_while_it_stalled() {
    let stack = spawn_stack(Backend::Postgres).await;
    let (other, cache) = stack.books_instance_with_cache(1).await;
    wait_for_lease(&cache).await;
    let editor = stack.user_with_roles("stan", "user,editor,admin").await;
    let id = new_book(&stack, &editor.access).await;
    warm(&stack, &other, &editor.access, &id).await;

    // The other instance stops hearing notices and renewing, as a paused process would.
    cache.hold(true);
    let response = stack
        .replace_book(&editor.access, &id, None, &book("Version 2", "A"))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    // The write went on only once the stalled instance's lease had ended...
    assert_eq!(
        stack
            .counter(
                &stack.books,
                "books_cache_writes_past_lapsed_instances_total"
            )
            .await,
        1
    );
    // ...so, still stalled, it reads the database, and its cached copy is never served again.
    assert_eq!(
        version_at(&stack.client, &other, &editor.access, &id).await,
        2
    );
    assert!(!cache.is_current());
    cache.hold(false);
    wait_for_lease(&cache).await;
    assert_eq!(
        version_at(&stack.client, &other, &editor.access, &id).await,
        2
    );
    warm(&stack, &other, &editor.access, &id).await;
    assert_eq!(
        version_at(&stack.client, &other, &editor.access, &id).await,
        2
    );
}

/// A saturated host answers late: Redis's reply to a renewal can take hundreds of ms. A lease
/// whose renewal is answered before the lease ends is kept (reads stay in memory), rather than
/// given up after a fixed wait and every read sent to the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_is_kept_through_a_slow_renewal_answered_within_it() {
    let redis = PrivateRedis::start();
    let stack = spawn_stack_with(Backend::Postgres, &[], &[], redis.url()).await;
    let cache = stack.books_cache.as_ref().expect("the stack caches books");
    wait_for_lease(cache).await;
    // Redis holds every client's commands for 1.05 s. Renewals start every 0.5 s, and each
    // extends the lease to 1.75 s after it started, so the one that meets the pause waits
    // 0.55-1.05 s for its PING and still ends at least 0.2 s before the lease would.
    let mut connection = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(1050)
        .arg("ALL")
        .query_async(&mut connection)
        .await
        .unwrap();
    let watched_until = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < watched_until {
        assert!(
            cache.is_current(),
            "the lease lapsed although Redis answered within it"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_cannot_tell_the_caches_stores_nothing() {
    let mut redis = PrivateRedis::start();
    let stack = spawn_stack_with(Backend::Postgres, &[], &[], redis.url()).await;
    let editor = stack.user_with_roles("rhea", "user,editor,admin").await;
    let id = new_book(&stack, &editor.access).await;
    if let Some(cache) = &stack.books_cache {
        wait_for_lease(cache).await;
    }
    redis.stop();
    // Within the revocation replica's staleness bound the token is still accepted: the write
    // fails on the cache notice, before the database.
    let response = stack
        .replace_book(&editor.access, &id, None, &book("Never stored", "A"))
        .await;
    assert_error(response, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;
    let response = stack.delete_book(&editor.access, &id, None).await;
    assert_error(response, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;
    let mut conn = PgConnection::establish(&stack.books_database_url).unwrap();
    #[derive(diesel::QueryableByName)]
    struct Stored {
        #[diesel(sql_type = diesel::sql_types::Text)]
        title: String,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        version: i64,
    }
    let stored: Vec<Stored> = diesel::sql_query("SELECT title, version FROM books WHERE id = $1")
        .bind::<diesel::sql_types::Text, _>(&id)
        .load(&mut conn)
        .unwrap();
    assert_eq!(stored.len(), 1, "the book was deleted");
    assert_eq!(
        (stored[0].title.as_str(), stored[0].version),
        ("Version 1", 1)
    );
}
