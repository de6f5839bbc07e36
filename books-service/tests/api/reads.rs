//! Single-book reads on PostgreSQL go through each worker's own connection (src/reads.rs), not the
//! pool: a write that returned on one instance is read by every worker of another at once, and a
//! read connection that PostgreSQL drops costs at most the read in flight on it.

use diesel::{Connection, PgConnection, RunQueryDsl};
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{assert_error, book, spawn_stack, Backend};

/// A client that opens a new connection for every request, so requests spread over the workers.
fn fresh_connections() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_one_instance_is_read_on_another_at_once() {
    let stack = spawn_stack(Backend::Postgres).await;
    let other = stack.books_instance_on_same_database(2).await;
    let editor = stack.user_with_roles("wanda", "user,editor,admin").await;
    let created: Value = stack
        .create_book(&editor.access, &book("Version 0", "Author"))
        .await
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let client = fresh_connections();
    let read = || {
        client
            .get(format!("{other}/books/{id}"))
            .bearer_auth(&editor.access)
            .send()
    };
    // Every worker of the other instance has its connection and statement before the writes.
    for _ in 0..4 {
        assert_eq!(read().await.unwrap().status(), StatusCode::OK);
    }
    for n in 1..=10 {
        let title = format!("Version {n}");
        let replaced = stack
            .replace_book(&editor.access, &id, None, &book(&title, "Author"))
            .await;
        assert_eq!(replaced.status(), StatusCode::OK);
        for _ in 0..3 {
            let response = read().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(
                response.headers()["etag"].to_str().unwrap(),
                format!("\"{}\"", n + 1)
            );
            let got: Value = response.json().await.unwrap();
            assert_eq!(got["title"], title.as_str());
        }
    }
    let deleted = stack.delete_book(&editor.access, &id, None).await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    for _ in 0..3 {
        assert_error(read().await.unwrap(), StatusCode::NOT_FOUND, "not_found").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_read_connection_costs_at_most_the_read_in_flight() {
    let stack = spawn_stack(Backend::Postgres).await;
    let editor = stack.user_with_roles("dora", "user,editor").await;
    let created: Value = stack
        .create_book(&editor.access, &book("Kept", "Author"))
        .await
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    // One keep-alive connection: one worker, one read connection.
    assert_eq!(
        stack.get_book(&editor.access, &id).await.status(),
        StatusCode::OK
    );

    // What a PostgreSQL restart does to every connection of the books database.
    let database = stack
        .books_database_url
        .rsplit('/')
        .next()
        .and_then(|name| name.split('?').next())
        .unwrap()
        .to_owned();
    let mut admin = PgConnection::establish(&shared::testing::pg_url("postgres")).unwrap();
    diesel::sql_query(format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = '{database}' AND pid <> pg_backend_pid()"
    ))
    .execute(&mut admin)
    .unwrap();

    let first = stack.get_book(&editor.access, &id).await;
    if first.status() != StatusCode::OK {
        assert_error(first, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;
    }
    for _ in 0..5 {
        assert_eq!(
            stack.get_book(&editor.access, &id).await.status(),
            StatusCode::OK
        );
    }
}
