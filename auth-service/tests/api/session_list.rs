//! `GET /auth/sessions` and `DELETE /auth/sessions/{id}`: one record per login, what it shows,
//! when it is touched, who may end it, and the pruning of ended ones.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::both_backends;
use crate::helpers::{assert_error, spawn_app, spawn_app_with, tokens, Backend, PASSWORD};

both_backends!(
    each_login_is_a_session_with_its_origin_and_the_callers_is_marked,
    refresh_touches_a_session_and_access_requests_do_not,
    a_session_ended_by_id_is_gone_and_its_tokens_refused,
    nobody_ends_another_users_session,
);

async fn sessions(app: &crate::helpers::TestApp, token: &str) -> Vec<Value> {
    let response = app.call(Method::GET, "/auth/sessions", token, None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    body["items"].as_array().unwrap().clone()
}

async fn each_login_is_a_session_with_its_origin_and_the_callers_is_marked(backend: Backend) {
    let app = spawn_app(backend).await;
    let first = app.signed_up("kofi").await;
    let second = app
        .client
        .post(app.url("/auth/login"))
        .header("User-Agent", "Firefox/140 on the phone")
        .json(&serde_json::json!({ "username": "kofi", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    let second = tokens(second).await;

    let listed = sessions(&app, &second.access).await;
    assert_eq!(listed.len(), 2);
    // Newest first, the caller's marked.
    assert_eq!(listed[0]["user_agent"], "Firefox/140 on the phone");
    assert_eq!(listed[0]["current"], true);
    assert_eq!(listed[1]["current"], false);
    assert_eq!(listed[0]["ip"], "127.0.0.1");
    for field in ["id", "created_at", "last_used_at", "expires_at"] {
        assert!(listed[0][field].is_string(), "{field} in {}", listed[0]);
    }
    // The session id is the tokens' sid.
    let sid = shared::testing::payload(&second.access)["sid"].clone();
    assert_eq!(listed[0]["id"], sid);
    assert_eq!(
        sessions(&app, &first.access).await[1]["current"],
        true,
        "the first login's token sees its own"
    );
}

async fn refresh_touches_a_session_and_access_requests_do_not(backend: Backend) {
    let app = spawn_app(backend).await;
    let pair = app.signed_up("lena").await;
    let before = sessions(&app, &pair.access).await[0].clone();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    app.me(&pair.access).await;
    let after_access = sessions(&app, &pair.access).await[0].clone();
    assert_eq!(after_access["last_used_at"], before["last_used_at"]);

    let renewed = tokens(app.refresh(&pair.refresh).await).await;
    let after_refresh = sessions(&app, &renewed.access).await;
    assert_eq!(after_refresh.len(), 1, "a refresh continues the session");
    assert_eq!(after_refresh[0]["id"], before["id"]);
    assert!(
        after_refresh[0]["last_used_at"].as_str() > before["last_used_at"].as_str(),
        "{after_refresh:?} vs {before}"
    );
}

async fn a_session_ended_by_id_is_gone_and_its_tokens_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let laptop = app.signed_up("mira").await;
    let phone = tokens(app.login("mira", PASSWORD).await).await;
    let laptop_sid = shared::testing::payload(&laptop.access)["sid"]
        .as_str()
        .unwrap()
        .to_owned();

    let ended = app
        .call(
            Method::DELETE,
            &format!("/auth/sessions/{laptop_sid}"),
            &phone.access,
            None,
        )
        .await;
    assert_eq!(ended.status(), StatusCode::NO_CONTENT);

    let listed = sessions(&app, &phone.access).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["current"], true);
    assert_error(
        app.me(&laptop.access).await,
        StatusCode::UNAUTHORIZED,
        "token_revoked",
    )
    .await;
    assert_error(
        app.refresh(&laptop.refresh).await,
        StatusCode::UNAUTHORIZED,
        "token_revoked",
    )
    .await;
    // Ending it again: it no longer exists.
    let again = app
        .call(
            Method::DELETE,
            &format!("/auth/sessions/{laptop_sid}"),
            &phone.access,
            None,
        )
        .await;
    assert_error(again, StatusCode::NOT_FOUND, "not_found").await;
    // A session can end itself; the caller's tokens then stop working.
    let own = shared::testing::payload(&phone.access)["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    let ended = app
        .call(
            Method::DELETE,
            &format!("/auth/sessions/{own}"),
            &phone.access,
            None,
        )
        .await;
    assert_eq!(ended.status(), StatusCode::NO_CONTENT);
    assert_error(
        app.me(&phone.access).await,
        StatusCode::UNAUTHORIZED,
        "token_revoked",
    )
    .await;
}

async fn nobody_ends_another_users_session(backend: Backend) {
    let app = spawn_app(backend).await;
    let victim = app.signed_up("nour").await;
    let attacker = app.signed_up("oskar").await;
    let sid = shared::testing::payload(&victim.access)["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    let refused = app
        .call(
            Method::DELETE,
            &format!("/auth/sessions/{sid}"),
            &attacker.access,
            None,
        )
        .await;
    assert_error(refused, StatusCode::NOT_FOUND, "not_found").await;
    assert_eq!(app.me(&victim.access).await.status(), StatusCode::OK);
    assert!(sessions(&app, &attacker.access)
        .await
        .iter()
        .all(|s| s["id"] != sid.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ended_and_expired_sessions_are_pruned() {
    let app = spawn_app_with(Backend::Postgres, &[("AUTH_PRUNE_INTERVAL_SECS", "1")]).await;
    let pair = app.signed_up("pia").await;
    app.logout(&pair).await;
    let live = app.signed_up("quinn").await;
    app.execute_sql(
        "INSERT INTO sessions (id, user_id, created_at, last_used_at, expires_at, user_agent, ip) \
         VALUES ('old', 'x', 1, 1, 2, 'ua', '127.0.0.1')",
    );
    let count = || app.query_string("SELECT CAST(COUNT(*) AS TEXT) AS value FROM sessions");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while count() != "1" && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(count(), "1", "only quinn's live session is left");
    assert_eq!(sessions(&app, &live.access).await.len(), 1);
}
