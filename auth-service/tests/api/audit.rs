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
    // Events gather for a moment before they are written: a query flushes what came before.
    let admin = app.admin("root").await;
    let written = app
        .call(Method::GET, "/auth/audit", &admin.access, None)
        .await;
    assert_eq!(written.status(), StatusCode::OK);
    app.execute_sql("ALTER TABLE audit_events RENAME TO audit_events_away");
    let login = app.login("ivo", PASSWORD).await;
    assert_eq!(login.status(), StatusCode::OK, "the login itself succeeds");
    // Written off the request path: the loss is counted once its group's write has failed.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let metrics = loop {
        let metrics = app.get("/metrics").await.text().await.unwrap();
        if metrics.contains("auth_audit_events_lost_total") || std::time::Instant::now() > deadline
        {
            break metrics;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_second_factor_reuse_and_clients_are_audited() {
    use crate::helpers::{totp_code, unix_now};
    let app = spawn_app(Backend::Postgres).await;
    let admin = app.admin("kai").await;
    let admin_id = app.user_id(&admin.access).await;
    let user = app.signed_up("lio").await;
    let id = app.user_id(&user.access).await;

    // A refresh token presented twice (outside the grace: another client).
    app.refresh(&user.refresh).await;
    app.client
        .post(app.url("/auth/refresh"))
        .bearer_auth(&user.refresh)
        .header("User-Agent", "somebody else")
        .send()
        .await
        .unwrap();
    // Two sessions; one ended by id.
    let laptop = tokens(app.login("lio", PASSWORD).await).await;
    let phone = tokens(app.login("lio", PASSWORD).await).await;
    let sid = shared::testing::payload(&laptop.access)["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    app.call(
        Method::DELETE,
        &format!("/auth/sessions/{sid}"),
        &phone.access,
        None,
    )
    .await;
    // A second factor: enrolled, a wrong code, removed.
    let started: Value = app
        .call(Method::POST, "/auth/mfa/totp", &phone.access, None)
        .await
        .json()
        .await
        .unwrap();
    let secret = started["secret"].as_str().unwrap();
    let confirmed = app
        .call(
            Method::POST,
            "/auth/mfa/totp/confirm",
            &phone.access,
            Some(json!({ "code": totp_code(secret, unix_now()) })),
        )
        .await;
    assert_eq!(confirmed.status(), StatusCode::OK);
    let denied = app.login("lio", PASSWORD).await;
    let body: Value = denied.json().await.unwrap();
    app.post_json(
        "/auth/login/mfa",
        &json!({ "mfa_token": body["mfa_token"], "code": "000000" }),
    )
    .await;
    let removed = app
        .call(
            Method::DELETE,
            "/auth/mfa/totp",
            &phone.access,
            Some(json!({ "code": totp_code(secret, unix_now() + 30) })),
        )
        .await;
    assert_eq!(removed.status(), StatusCode::NO_CONTENT);
    // A service account created and deleted by the admin.
    let client: Value = app
        .call(
            Method::POST,
            "/auth/clients",
            &admin.access,
            Some(json!({ "name": "reports", "scopes": ["books:read"] })),
        )
        .await
        .json()
        .await
        .unwrap();
    let client_id = client["client_id"].as_str().unwrap();
    app.call(
        Method::DELETE,
        &format!("/auth/clients/{client_id}"),
        &admin.access,
        None,
    )
    .await;

    let about_lio = events(&app, &admin.access, &format!("user={id}&limit=100")).await;
    let by_kind = |kind: &str| -> Value {
        about_lio["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["type"] == kind)
            .cloned()
            .unwrap_or_else(|| panic!("no {kind} in {about_lio}"))
    };
    for kind in ["refresh_reuse", "mfa_failed"] {
        let event = by_kind(kind);
        assert_eq!(event["subject"], id.as_str(), "{event}");
        assert_ne!(event["outcome"], "success", "{event}");
    }
    for kind in ["session_ended", "mfa_enrolled", "mfa_removed"] {
        let event = by_kind(kind);
        assert_eq!(event["actor"], id.as_str(), "{event}");
        assert_eq!(event["subject"], id.as_str(), "{event}");
        assert_eq!(event["outcome"], "success", "{event}");
    }
    assert!(by_kind("session_ended")["detail"]
        .as_str()
        .unwrap()
        .contains(&sid));
    let about_client = events(&app, &admin.access, &format!("user={client_id}")).await;
    assert_eq!(kinds(&about_client), ["client_deleted", "client_created"]);
    for event in about_client["items"].as_array().unwrap() {
        assert_eq!(event["actor"], admin_id.as_str());
    }
}
