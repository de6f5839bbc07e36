//! On PostgreSQL a login reads the user and records its session on each worker's own connection
//! (src/login_statements.rs), not through the pool: what the pool writes, such a login sees at
//! once, and a connection PostgreSQL drops costs at most the login in flight on it.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{assert_error, spawn_app, Backend, TestApp, PASSWORD};

fn database_name(app: &TestApp) -> String {
    app.database_url
        .rsplit('/')
        .next()
        .and_then(|name| name.split('?').next())
        .unwrap()
        .to_owned()
}

fn login_connections(app: &TestApp) -> i64 {
    let database = database_name(app);
    app.query_string(&format!(
        "SELECT CAST(COUNT(*) AS TEXT) AS value FROM pg_stat_activity \
         WHERE datname = '{database}' AND application_name = '{}'",
        auth_service::login_statements::APPLICATION_NAME
    ))
    .parse()
    .unwrap()
}

fn sessions_of(app: &TestApp, user_id: &str) -> i64 {
    app.query_string(&format!(
        "SELECT CAST(COUNT(*) AS TEXT) AS value FROM sessions WHERE user_id = '{user_id}'"
    ))
    .parse()
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_login_connection_costs_at_most_the_login_in_flight() {
    let app = spawn_app(Backend::Postgres).await;
    let tokens = app.signed_up("lena").await;
    let id = app.user_id(&tokens.access).await;
    assert!(
        login_connections(&app) >= 1,
        "the login went through the pool"
    );
    let before = sessions_of(&app, &id);

    // What a PostgreSQL restart does to these connections.
    let database = database_name(&app);
    app.query_string(&format!(
        "SELECT CAST(COUNT(pg_terminate_backend(pid)) AS TEXT) AS value FROM pg_stat_activity \
         WHERE datname = '{database}' AND application_name = '{}'",
        auth_service::login_statements::APPLICATION_NAME
    ));
    let mut succeeded = 0;
    let first = app.login("lena", PASSWORD).await;
    if first.status() == StatusCode::OK {
        succeeded += 1;
    } else {
        assert_error(first, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;
    }
    for _ in 0..3 {
        let response = app.login("lena", PASSWORD).await;
        assert_eq!(response.status(), StatusCode::OK);
        succeeded += 1;
    }
    // Every login that answered 200 has its session's record, and no other did.
    assert_eq!(sessions_of(&app, &id), before + succeeded);
}

/// Sets the user's roles as an administrator (through the pool), then logs in afresh: the
/// roles the new token carries.
async fn roles_after_login(app: &TestApp, admin: &str, id: &str, roles: Value) -> Value {
    let set = app
        .call(
            reqwest::Method::PUT,
            &format!("/auth/users/{id}/roles"),
            admin,
            Some(serde_json::json!({ "roles": roles })),
        )
        .await;
    assert_eq!(set.status(), StatusCode::OK);
    let login: Value = app.login("mira", PASSWORD).await.json().await.unwrap();
    let me: Value = app
        .me(login["access_token"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    me["roles"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demotion_written_through_the_pool_is_seen_by_the_next_login() {
    let app = spawn_app(Backend::Postgres).await;
    let admin = app.admin("root").await;
    let tokens = app.signed_up("mira").await;
    let id = app.user_id(&tokens.access).await;
    let promoted = serde_json::json!(["user", "admin"]);
    assert_eq!(
        roles_after_login(&app, &admin.access, &id, promoted.clone()).await,
        promoted
    );
    let demoted = serde_json::json!(["user"]);
    assert_eq!(
        roles_after_login(&app, &admin.access, &id, demoted.clone()).await,
        demoted
    );
}
