//! The one-command local stack, started as a new user would: the binary, a fresh data directory,
//! no PostgreSQL or Redis settings, port 8080.

mod support;

use std::process::Command;

use reqwest::StatusCode;
use serde_json::{json, Value};
use support::LocalStack;

const BASE: &str = "http://127.0.0.1:8080";

/// Starts the binary in `dir` on port 8080, as the README tells a new user to.
async fn start(dir: &std::path::Path) -> LocalStack {
    LocalStack::start(dir, "127.0.0.1:8080", &[]).await
}

async fn login(client: &reqwest::Client, password: &str) -> (String, String) {
    let body: Value = client
        .post(format!("{BASE}/auth/login"))
        .json(&json!({ "username": "admin", "password": password }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (
        body["access_token"]
            .as_str()
            .expect("access token")
            .to_owned(),
        body["refresh_token"]
            .as_str()
            .expect("refresh token")
            .to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_user_runs_the_whole_flow_on_port_8080_and_data_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let stack = start(dir.path()).await;
    let password = stack
        .admin_password
        .clone()
        .expect("the admin password is printed on first start");
    assert!(stack
        .banner
        .iter()
        .any(|l| l.contains("http://127.0.0.1:8080")));

    let registered = client
        .post(format!("{BASE}/auth/register"))
        .json(&json!({ "username": "reader", "password": "Lantern-orchid-Velvet-93" }))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), StatusCode::CREATED);
    let (access, refresh) = login(&client, &password).await;
    let created = client
        .post(format!("{BASE}/books"))
        .bearer_auth(&access)
        .json(&json!({ "title": "Dune", "author": "Frank Herbert" }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let id = created.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let listed: Value = client
        .get(format!("{BASE}/books"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"][0]["id"], id.as_str());
    let replaced = client
        .put(format!("{BASE}/books/{id}"))
        .bearer_auth(&access)
        .header("If-Match", "\"1\"")
        .json(&json!({ "title": "Dune Messiah", "author": "Frank Herbert" }))
        .send()
        .await
        .unwrap();
    assert_eq!(replaced.status(), StatusCode::OK);
    let refreshed = client
        .post(format!("{BASE}/auth/refresh"))
        .bearer_auth(&refresh)
        .send()
        .await
        .unwrap();
    assert_eq!(refreshed.status(), StatusCode::OK);
    let logout = client
        .post(format!("{BASE}/auth/logout"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    let revoked = client
        .get(format!("{BASE}/books/{id}"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        revoked.json::<Value>().await.unwrap()["error"],
        "token_revoked"
    );

    // Ctrl-C stops it cleanly.
    let pid = stack.process.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let mut stack = stack;
    let status = stack.process.0.wait().unwrap();
    assert!(status.success(), "clean exit on SIGINT: {status}");

    // A second start reuses the data: no new admin, the same password, the same book.
    let again = start(dir.path()).await;
    assert!(
        again.admin_password.is_none(),
        "no new admin on a second start"
    );
    let (access, _) = login(&client, &password).await;
    let kept = client
        .get(format!("{BASE}/books/{id}"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(kept.status(), StatusCode::OK);
    assert_eq!(kept.json::<Value>().await.unwrap()["title"], "Dune Messiah");
}

/// Issue 13, finding 9: the stack's proxy replaces a client's `X-Forwarded-For` with the address
/// it really sees, so forged addresses do not get a client past auth-service's per-address limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_proxy_replaces_client_forwarded_for() {
    let dir = tempfile::tempdir().unwrap();
    let stack = LocalStack::start(
        dir.path(),
        "127.0.0.1:0",
        &[("AUTH_LOGIN_LIMIT_ADDRESS", "3")],
    )
    .await;
    let client = reqwest::Client::new();
    let attempt = |n: u32| {
        client
            .post(format!("{}/auth/login", stack.url))
            .header("x-forwarded-for", format!("198.51.100.{n}"))
            .json(&json!({ "username": format!("nobody{n}"), "password": "wrong guess" }))
            .send()
    };
    for n in 0..3 {
        let response = attempt(n).await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "attempt {n}");
    }

    let refused = attempt(3).await.unwrap();

    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.headers().contains_key("retry-after"));
    assert_eq!(
        refused.json::<Value>().await.unwrap()["error"],
        "rate_limited"
    );
}
