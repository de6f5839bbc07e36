//! Account administration: finding and paging users, disable/enable, a user's sessions.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::both_backends;
use crate::helpers::{assert_error, spawn_app, tokens, Backend, PASSWORD};

both_backends!(
    admins_find_users_by_name_and_page_through_them,
    disabling_ends_every_session_and_refuses_login_and_refresh,
    admins_list_and_end_a_users_sessions,
);

async fn admins_find_users_by_name_and_page_through_them(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin("wanda").await;
    let user = app.signed_up("Xaver").await;
    for name in ["yusuf", "zoe"] {
        app.signed_up(name).await;
    }
    let refused = app
        .call(Method::GET, "/auth/users", &user.access, None)
        .await;
    assert_error(refused, StatusCode::FORBIDDEN, "insufficient_role").await;

    let found: Value = app
        .call(
            Method::GET,
            "/auth/users?username=XAVER",
            &admin.access,
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    let items = found["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{found}");
    assert_eq!(items[0]["username"], "xaver");
    for field in ["id", "roles", "created_at", "disabled", "mfa"] {
        assert!(!items[0][field].is_null(), "{field} in {}", items[0]);
    }

    // Four users, pages of three: oldest first, a cursor, then the last page.
    let first: Value = app
        .call(Method::GET, "/auth/users?limit=3", &admin.access, None)
        .await
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["wanda", "xaver", "yusuf"]);
    let cursor = first["next_cursor"].as_str().unwrap();
    let second: Value = app
        .call(
            Method::GET,
            &format!("/auth/users?limit=3&cursor={cursor}"),
            &admin.access,
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(second["items"].as_array().unwrap().len(), 1);
    assert_eq!(second["items"][0]["username"], "zoe");
    assert!(second["next_cursor"].is_null());

    for bad in ["limit=0", "limit=101", "cursor=nope", "sort=name"] {
        let response = app
            .call(
                Method::GET,
                &format!("/auth/users?{bad}"),
                &admin.access,
                None,
            )
            .await;
        assert_error(response, StatusCode::BAD_REQUEST, "bad_request").await;
    }
    let id = items[0]["id"].as_str().unwrap();
    let shown: Value = app
        .call(
            Method::GET,
            &format!("/auth/users/{id}"),
            &admin.access,
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(shown["username"], "xaver");
    assert_eq!(shown["disabled"], false);
    assert_eq!(shown["mfa"], false);
    let missing = app
        .call(Method::GET, "/auth/users/no-such-id", &admin.access, None)
        .await;
    assert_error(missing, StatusCode::NOT_FOUND, "not_found").await;
}

async fn disabling_ends_every_session_and_refuses_login_and_refresh(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin("ada").await;
    let user = app.signed_up("bert").await;
    let id = app.user_id(&user.access).await;

    let stale = tokens(app.refresh(&admin.refresh).await).await;
    let not_fresh = app
        .call(
            Method::POST,
            &format!("/auth/users/{id}/disable"),
            &stale.access,
            None,
        )
        .await;
    assert_error(not_fresh, StatusCode::UNAUTHORIZED, "fresh_token_required").await;
    let own_id = app.user_id(&admin.access).await;
    let own = app
        .call(
            Method::POST,
            &format!("/auth/users/{own_id}/disable"),
            &admin.access,
            None,
        )
        .await;
    assert_error(own, StatusCode::CONFLICT, "conflict").await;

    let disabled = app
        .call(
            Method::POST,
            &format!("/auth/users/{id}/disable"),
            &admin.access,
            None,
        )
        .await;
    assert_eq!(disabled.status(), StatusCode::OK);
    let body: Value = disabled.json().await.unwrap();
    assert_eq!(body["disabled"], true);

    assert_error(
        app.me(&user.access).await,
        StatusCode::UNAUTHORIZED,
        "token_revoked",
    )
    .await;
    assert_error(
        app.refresh(&user.refresh).await,
        StatusCode::FORBIDDEN,
        "account_disabled",
    )
    .await;
    assert_error(
        app.login("bert", PASSWORD).await,
        StatusCode::FORBIDDEN,
        "account_disabled",
    )
    .await;
    // A wrong password learns nothing about the account's state.
    assert_error(
        app.login("bert", "not the password at all").await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;

    let enabled = app
        .call(
            Method::POST,
            &format!("/auth/users/{id}/enable"),
            &admin.access,
            None,
        )
        .await;
    assert_eq!(enabled.status(), StatusCode::OK);
    assert_eq!(app.login("bert", PASSWORD).await.status(), StatusCode::OK);
    assert_error(
        app.me(&user.access).await,
        StatusCode::UNAUTHORIZED,
        "token_revoked",
    )
    .await;
}

async fn admins_list_and_end_a_users_sessions(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin("cleo").await;
    let user = app.signed_up("dario").await;
    tokens(app.login("dario", PASSWORD).await).await;
    let id = app.user_id(&user.access).await;
    let path = format!("/auth/users/{id}/sessions");

    let refused = app.call(Method::GET, &path, &user.access, None).await;
    assert_error(refused, StatusCode::FORBIDDEN, "insufficient_role").await;
    let listed: Value = app
        .call(Method::GET, &path, &admin.access, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 2);

    let ended = app.call(Method::DELETE, &path, &admin.access, None).await;
    assert_eq!(ended.status(), StatusCode::NO_CONTENT);
    let listed: Value = app
        .call(Method::GET, &path, &admin.access, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 0);
    assert_error(
        app.me(&user.access).await,
        StatusCode::UNAUTHORIZED,
        "token_revoked",
    )
    .await;
    assert_eq!(app.me(&admin.access).await.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_racing_a_disable_cannot_outlive_it() {
    use auth_service::pause::points;
    let app = spawn_app(Backend::Postgres).await;
    let admin = app.admin("edda").await;
    let user = app.signed_up("fritz").await;
    let id = app.user_id(&user.access).await;
    // A login read the user (enabled) and is about to record its pair when the disable lands.
    let gate = app.pauses.arm(points::LOGIN_BEFORE_RECORD);
    let login = {
        let app = app.clone_handle();
        tokio::spawn(async move { app.login("fritz", PASSWORD).await })
    };
    gate.reached().await;
    let disabled = app
        .call(
            Method::POST,
            &format!("/auth/users/{id}/disable"),
            &admin.access,
            None,
        )
        .await;
    assert_eq!(disabled.status(), StatusCode::OK);
    gate.release();
    let response = login.await.unwrap();
    assert_error(response, StatusCode::FORBIDDEN, "account_disabled").await;
}
