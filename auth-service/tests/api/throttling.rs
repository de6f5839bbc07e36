//! Login throttling, across instances.

use reqwest::StatusCode;
use serde_json::Value;

use crate::both_backends;
use crate::helpers::{assert_error, spawn_app, spawn_app_with, Backend, PASSWORD};

both_backends!(
    too_many_attempts_are_429_with_retry_after_and_no_hashing,
    a_successful_login_resets_the_username_counter,
);

async fn too_many_attempts_are_429_with_retry_after_and_no_hashing(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register("ursula", PASSWORD).await;
    for _ in 0..5 {
        let response = app.login("ursula", "wrong guess").await;
        assert_error(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    }

    let locked = app.login("Ursula", PASSWORD).await;

    assert_eq!(locked.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = locked.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=900).contains(&retry_after), "{retry_after}");
    assert_error(locked, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("auth_logins_total{result=\"throttled\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("auth_logins_total{result=\"failure\"} 5"),
        "{metrics}"
    );
    // Another user from the same address is not locked out.
    app.register("victor", PASSWORD).await;
    assert_eq!(app.login("victor", PASSWORD).await.status(), StatusCode::OK);
}

async fn a_successful_login_resets_the_username_counter(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register("wanda", PASSWORD).await;
    for _ in 0..4 {
        app.login("wanda", "wrong guess").await;
    }
    assert_eq!(app.login("wanda", PASSWORD).await.status(), StatusCode::OK);
    for _ in 0..4 {
        let response = app.login("wanda", "wrong again").await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_on_two_instances_count_together() {
    let first = spawn_app_with(Backend::Postgres, &[("AUTH_LOGIN_LIMIT_USERNAME", "4")]).await;
    let second = first.another_instance().await;
    first.register("xena", PASSWORD).await;

    for app in [&first, &second, &first, &second] {
        let response = app.login("xena", "wrong guess").await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }

    for app in [&first, &second] {
        let body: Value = app.login("xena", PASSWORD).await.json().await.unwrap();
        assert_eq!(body["error"], "rate_limited", "{body}");
    }
}
