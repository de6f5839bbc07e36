//! The audit trail: each security event with its actor, subject, address and outcome; filters,
//! paging; retention; a lost write never fails the request it records.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{assert_error, spawn_app, spawn_app_with, tokens, Backend, PASSWORD};

both_backends!(events_are_recorded_with_actor_and_subject);

async fn events(app: &crate::helpers::TestApp, token: &str, query: &str) -> Value {
    let response = app
        .call(Method::GET, &format!("/auth/audit?{query}"), token, None)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

fn kinds(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect()
}

async fn events_are_recorded_with_actor_and_subject(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin("gus").await;
    let admin_id = app.user_id(&admin.access).await;
    let user = app.signed_up("hana").await;
    let id = app.user_id(&user.access).await;
    assert_eq!(
        app.login("hana", "not the password at all").await.status(),
        StatusCode::UNAUTHORIZED
    );
    app.call(
        Method::PUT,
        &format!("/auth/users/{id}/roles"),
        &admin.access,
        Some(json!({ "roles": ["user", "editor"] })),
    )
    .await;
    let user = tokens(app.login("hana", PASSWORD).await).await;
    app.call(Method::POST, "/auth/logout-all", &user.access, None)
        .await;
    app.call(
        Method::POST,
        &format!("/auth/users/{id}/disable"),
        &admin.access,
        None,
    )
    .await;
    app.call(
        Method::POST,
        &format!("/auth/users/{id}/enable"),
        &admin.access,
        None,
    )
    .await;

    let about_hana = events(&app, &admin.access, &format!("user={id}")).await;
    assert_eq!(
        kinds(&about_hana),
        [
            "user_enabled",
            "user_disabled",
            "logout_all",
            "login",
            "roles_changed",
            "login_failed",
            "login",
            "registered"
        ],
        "newest first: {about_hana}"
    );
    let items = about_hana["items"].as_array().unwrap();
    let disabled = &items[1];
    assert_eq!(disabled["actor"], admin_id.as_str());
    assert_eq!(disabled["subject"], id.as_str());
    assert_eq!(disabled["outcome"], "success");
    assert_eq!(disabled["ip"], "127.0.0.1");
    assert!(disabled["user_agent"].is_string());
    let failed = &items[5];
    assert!(failed["actor"].is_null(), "nobody proved who they were");
    assert_eq!(failed["outcome"], "failure");
    assert!(
        items[4]["detail"].as_str().unwrap().contains("editor"),
        "{}",
        items[4]
    );

    let only_logins = events(&app, &admin.access, &format!("user={id}&type=login")).await;
    assert_eq!(kinds(&only_logins), ["login", "login"]);
    // Paging: newest first, the cursor continues where the page ended.
    let first = events(&app, &admin.access, &format!("user={id}&limit=3")).await;
    assert_eq!(
        kinds(&first),
        ["user_enabled", "user_disabled", "logout_all"]
    );
    let cursor = first["next_cursor"].as_str().unwrap();
    let next = events(
        &app,
        &admin.access,
        &format!("user={id}&limit=3&cursor={cursor}"),
    )
    .await;
    assert_eq!(kinds(&next), ["login", "roles_changed", "login_failed"]);

    let unknown = app
        .call(Method::GET, "/auth/audit?type=coffee", &admin.access, None)
        .await;
    assert_error(unknown, StatusCode::BAD_REQUEST, "bad_request").await;
    let user = tokens(app.login("hana", PASSWORD).await).await;
    let refused = app
        .call(Method::GET, "/auth/audit", &user.access, None)
        .await;
    assert_error(refused, StatusCode::FORBIDDEN, "insufficient_role").await;
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("auth_audit_events_total{type=\"user_disabled\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_audit_write_is_counted_and_never_fails_the_request() {
    let app = spawn_app(Backend::Postgres).await;
    app.signed_up("ivo").await;
    app.execute_sql("ALTER TABLE audit_events RENAME TO audit_events_away");
    let login = app.login("ivo", PASSWORD).await;
    assert_eq!(login.status(), StatusCode::OK, "the login itself succeeds");
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("auth_audit_events_lost_total 1"),
        "{metrics}"
    );
    app.execute_sql("ALTER TABLE audit_events_away RENAME TO audit_events");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_past_the_retention_are_pruned() {
    let app = spawn_app_with(
        Backend::Postgres,
        &[
            ("AUDIT_RETENTION_DAYS", "1"),
            ("AUTH_PRUNE_INTERVAL_SECS", "1"),
        ],
    )
    .await;
    let admin = app.admin("jade").await;
    let two_days_ago = chrono::Utc::now().timestamp_millis() - 2 * 86_400_000;
    app.execute_sql(&format!(
        "INSERT INTO audit_events (id, at, kind, outcome) \
         VALUES ('00000000-0000-7000-8000-000000000000', {two_days_ago}, 'login', 'success')"
    ));
    let sql = format!(
        "SELECT CAST(COUNT(*) AS TEXT) AS value FROM audit_events WHERE at = {two_days_ago}"
    );
    let count = || app.query_string(&sql);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while count() != "0" && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(count(), "0", "the old event is gone");
    let recent = events(&app, &admin.access, "type=login").await;
    assert!(!kinds(&recent).is_empty(), "recent events stay");
}
