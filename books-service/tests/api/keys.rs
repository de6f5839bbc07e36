//! The JWKS key cache: start-up without auth-service, and re-fetches on unknown `kid`s.

use std::collections::HashMap;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{assert_error, spawn_stack, spawn_stack_with, wait_until_ready, Backend};

/// The same token with another `kid` in its header.
fn with_kid(token: &str, kid: &str) -> String {
    let (header, rest) = token.split_once('.').unwrap();
    let mut header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    header["kid"] = Value::String(kid.to_owned());
    format!("{}.{rest}", URL_SAFE_NO_PAD.encode(header.to_string()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_kids_cause_one_fetch_per_cooldown_however_many_requests() {
    let stack = spawn_stack(Backend::Sqlite).await;
    let tokens = stack.user_with_roles("kim", "user").await;
    assert_eq!(
        stack.get(&tokens.access, "/books").await.status(),
        StatusCode::OK
    );
    let before = stack.books_keys.fetch_count();
    let forged = with_kid(&tokens.access, "rotated-key-we-do-not-know");

    let burst = (0..20).map(|_| stack.get(&forged, "/books"));
    let responses = futures_util::future::join_all(burst).await;

    assert_eq!(
        stack.books_keys.fetch_count(),
        before + 1,
        "one fetch for 20 requests"
    );
    for response in responses {
        assert_error(response, StatusCode::UNAUTHORIZED, "invalid_token").await;
    }
    // Within the cooldown, no further fetch; known keys still verify.
    assert_error(
        stack.get(&forged, "/books").await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    assert_eq!(stack.books_keys.fetch_count(), before + 1);
    assert_eq!(
        stack.get(&tokens.access, "/books").await.status(),
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn books_starts_before_auth_and_is_ready_once_keys_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let port = shared::testing::free_port();
    let vars = |pairs: &[(&str, String)]| -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    };
    let books_settings = books_service::Settings::from_vars(vars(&[
        ("LISTEN_ADDR", "127.0.0.1:0".into()),
        ("HTTP_WORKERS", "1".into()),
        (
            "DATABASE_URL",
            format!("sqlite://{}", dir.path().join("books.db").display()),
        ),
        (
            "JWKS_URL",
            format!("http://127.0.0.1:{port}/.well-known/jwks.json"),
        ),
        // Alone, without Redis: this test is about keys, not revocations.
        ("BOOKS_ALLOW_NO_REVOCATIONS", "true".into()),
    ]))
    .unwrap();
    let books = books_service::Application::build(books_settings)
        .await
        .expect("starts without auth");
    let books_url = format!("http://127.0.0.1:{}", books.port());
    tokio::spawn(books.run_until_stopped());
    let client = reqwest::Client::new();

    let not_ready = client
        .get(format!("{books_url}/readyz"))
        .send()
        .await
        .unwrap();
    let body = assert_error(not_ready, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;
    assert!(body["fields"]["keys"].is_string(), "{body}");

    tokio::time::sleep(Duration::from_millis(300)).await;
    let auth_settings = auth_service::Settings::from_vars(vars(&[
        ("LISTEN_ADDR", format!("127.0.0.1:{port}")),
        ("HTTP_WORKERS", "1".into()),
        (
            "DATABASE_URL",
            format!("sqlite://{}", dir.path().join("auth.db").display()),
        ),
        (
            "AUTH_KEYS_DIR",
            dir.path().join("keys").display().to_string(),
        ),
    ]))
    .unwrap();
    let auth = auth_service::Application::build(auth_settings)
        .await
        .expect("auth starts");
    tokio::spawn(auth.run_until_stopped());

    wait_until_ready(&client, &books_url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_signing_key_is_picked_up_without_restart() {
    let stack = spawn_stack_with(
        Backend::Sqlite,
        &[
            ("AUTH_KEY_ACTIVATION_DELAY", "0"),
            ("AUTH_KEYS_RELOAD_SECS", "1"),
        ],
        &[],
        String::new(),
    )
    .await;
    let old = stack.user_with_roles("rotor", "user").await;
    assert_eq!(
        stack.get(&old.access, "/books").await.status(),
        StatusCode::OK
    );
    let old_kid = jsonwebtoken::decode_header(&old.access)
        .unwrap()
        .kid
        .unwrap();

    // An operator adds a key to the shared keys directory; auth-service publishes it and signs
    // with it, books-service has never seen it.
    auth_service::keys::generate_key_file(&stack.keys_dir).unwrap();
    let new = loop {
        let tokens = stack.login("rotor").await;
        if jsonwebtoken::decode_header(&tokens.access)
            .unwrap()
            .kid
            .unwrap()
            != old_kid
        {
            break tokens;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let before = stack.books_keys.fetch_count();

    let burst = (0..100).map(|_| stack.get(&new.access, "/books"));
    let statuses: Vec<StatusCode> = futures_util::future::join_all(burst)
        .await
        .iter()
        .map(|r| r.status())
        .collect();

    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "{statuses:?}"
    );
    assert_eq!(stack.books_keys.fetch_count(), before + 1, "one JWKS fetch");
    // Tokens signed by the old key still verify.
    assert_eq!(
        stack.get(&old.access, "/books").await.status(),
        StatusCode::OK
    );
}
