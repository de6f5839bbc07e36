//! Refresh rotation, token types, logout and the revocation store.

use redis::AsyncCommands;
use reqwest::StatusCode;
use serde_json::json;

use crate::both_backends;
use crate::helpers::{
    assert_error, payload, redis_url, spawn_app, spawn_app_with, tokens, Backend, PASSWORD,
};

both_backends!(
    token_types_are_not_interchangeable,
    refresh_rotates_and_returns_a_non_fresh_access_token,
    a_spent_refresh_token_is_refused_and_ends_the_session,
    concurrent_refreshes_of_one_token_yield_one_pair,
    a_retry_within_the_grace_window_gets_the_same_pair,
    logout_all_ends_every_session_of_the_user_only,
    password_change_needs_a_fresh_token_and_ends_other_sessions,
    a_weak_new_password_is_refused_and_changes_nothing,
    admins_change_roles_with_a_fresh_token_and_old_tokens_die,
    logout_revokes_both_tokens,
    logout_without_a_body_revokes_the_access_token,
    a_grace_replay_from_another_client_is_reuse,
    a_revoked_token_is_refused_through_its_last_second,
    a_logout_body_over_64_kib_is_a_json_413,
    a_session_keeps_one_rotation_record_however_often_it_refreshes,
);

/// The ledger keeps one record per session (its newest refresh token), not a marker per spent
/// token: twelve rotations leave one record in Redis, living as long as the newest token, and
/// every older token of the chain — not only the one just rotated — is reuse.
async fn a_session_keeps_one_rotation_record_however_often_it_refreshes(backend: Backend) {
    let app = spawn_app_with(backend, &[("AUTH_REFRESH_GRACE", "0")]).await;
    let mut chain = vec![app.signed_up("rotor").await];
    for _ in 0..12 {
        let next = app.refresh(&chain.last().unwrap().refresh).await;
        assert_eq!(next.status(), StatusCode::OK);
        chain.push(tokens(next).await);
    }
    if backend == Backend::Postgres {
        let client = redis::Client::open(redis_url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let keys: Vec<String> = conn.keys(format!("{}*", app.redis_prefix)).await.unwrap();
        let chains: Vec<&String> = keys.iter().filter(|k| k.contains(":chain:")).collect();
        assert_eq!(chains.len(), 1, "one record for the session: {keys:?}");
        assert!(
            !keys.iter().any(|k| k.contains(":spent:")),
            "no marker per spent token: {keys:?}"
        );
        let newest = payload(&chain.last().unwrap().refresh);
        let stored: String = conn.get(chains[0]).await.unwrap();
        assert_eq!(
            stored,
            newest["jti"].as_str().unwrap(),
            "names the newest token"
        );
        let ttl: i64 = conn.ttl(chains[0]).await.unwrap();
        let remaining = newest["exp"].as_i64().unwrap() - shared::now_unix() + app.leeway as i64;
        assert!(
            (remaining - 5..=remaining + 1).contains(&ttl),
            "lives as long as the newest token: ttl {ttl}, token {remaining}"
        );
    }
    // A token from the middle of the chain, long superseded, ends the session.
    assert_error(
        app.refresh(&chain[4].refresh).await,
        StatusCode::UNAUTHORIZED,
        "refresh_token_reused",
    )
    .await;
    assert_error(
        app.refresh(&chain.last().unwrap().refresh).await,
        StatusCode::UNAUTHORIZED,
        "token_revoked",
    )
    .await;
}

/// Releases before the chain record wrote a marker per spent token; after an upgrade a token
/// such a release spent must stay spent (the script reads the old marker when a session has no
/// record yet). The marker is written here as that release wrote it.
#[tokio::test]
async fn a_token_spent_before_the_upgrade_stays_spent() {
    let app = spawn_app_with(Backend::Postgres, &[("AUTH_REFRESH_GRACE", "0")]).await;
    let first = app.signed_up("legacy").await;
    let jti = payload(&first.refresh)["jti"].as_str().unwrap().to_owned();
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = conn
        .set_ex(format!("{}spent:{jti}", app.redis_prefix), "1", 3600)
        .await
        .unwrap();

    assert_error(
        app.refresh(&first.refresh).await,
        StatusCode::UNAUTHORIZED,
        "refresh_token_reused",
    )
    .await;
    // And a session with neither record nor marker rotates as before.
    let other = app.signed_up("current").await;
    assert_eq!(app.refresh(&other.refresh).await.status(), StatusCode::OK);
}

/// The optional logout body is read raw; over 64 KiB it gets the contract's JSON 413 like every
/// other body (it used to take up to 256 KiB and answer larger ones in plain text).
async fn a_logout_body_over_64_kib_is_a_json_413(backend: Backend) {
    let app = spawn_app(backend).await;
    let tokens = app.signed_up("lena").await;
    for size in [65 * 1024, 300 * 1024] {
        let response = app
            .client
            .post(app.url("/auth/logout"))
            .bearer_auth(&tokens.access)
            .header("content-type", "application/json")
            .body(format!("{{\"refresh_token\": \"{}\"}}", "x".repeat(size)))
            .send()
            .await
            .unwrap();
        assert_error(response, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    }
    assert_eq!(app.me(&tokens.access).await.status(), StatusCode::OK);
}

/// Finding 11: the grace replay handed the new pair to whoever presented the old token within
/// 5 s. Now only the client that rotated (address and user agent) gets it; anyone else trips
/// reuse detection and the session ends.
async fn a_grace_replay_from_another_client_is_reuse(backend: Backend) {
    let app = spawn_app_with(backend, &[("AUTH_REFRESH_GRACE", "5")]).await;
    let stolen = app.signed_up("gina").await;
    let refresh_as = |agent: &'static str, token: String| {
        let request = app
            .client
            .post(app.url("/auth/refresh"))
            .header("user-agent", agent)
            .bearer_auth(token);
        async move { request.send().await.unwrap() }
    };
    let owner = refresh_as("owner-browser/1.0", stolen.refresh.clone()).await;
    assert_eq!(owner.status(), StatusCode::OK);
    let owner = tokens(owner).await;

    let replayed = refresh_as("thief/2.0", stolen.refresh.clone()).await;

    assert_error(replayed, StatusCode::UNAUTHORIZED, "refresh_token_reused").await;
    assert_error(
        app.me(&owner.access).await,
        StatusCode::UNAUTHORIZED,
        "token_revoked",
    )
    .await;
    let retry = refresh_as("owner-browser/1.0", stolen.refresh).await;
    assert_eq!(retry.status(), StatusCode::UNAUTHORIZED);
}

/// Finding 12: an entry expired at `exp + leeway` while verifiers accept a token until the end
/// of that second, so a revoked token was accepted again during its last second. Polled every
/// 50 ms from logout to expiry: never a 200.
async fn a_revoked_token_is_refused_through_its_last_second(backend: Backend) {
    let app = spawn_app_with(backend, &[("ACCESS_TOKEN_TTL", "1"), ("JWT_LEEWAY", "1")]).await;
    let tokens = app.signed_up("hank").await;
    let logout = app
        .client
        .post(app.url("/auth/logout"))
        .bearer_auth(&tokens.access)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let response = app.me(&tokens.access).await;
        assert_ne!(
            response.status(),
            StatusCode::OK,
            "a revoked token was accepted"
        );
        let body: serde_json::Value = response.json().await.unwrap();
        if body["error"] == "token_expired" {
            break;
        }
        assert_eq!(body["error"], "token_revoked");
        assert!(std::time::Instant::now() < deadline, "never expired");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

async fn token_types_are_not_interchangeable(backend: Backend) {
    let app = spawn_app(backend).await;
    let tokens = app.signed_up("ivan").await;

    let me_with_refresh = app.me(&tokens.refresh).await;
    assert_error(
        me_with_refresh,
        StatusCode::UNAUTHORIZED,
        "wrong_token_type",
    )
    .await;

    let refresh_with_access = app.refresh(&tokens.access).await;
    assert_error(
        refresh_with_access,
        StatusCode::UNAUTHORIZED,
        "wrong_token_type",
    )
    .await;
}

async fn refresh_rotates_and_returns_a_non_fresh_access_token(backend: Backend) {
    let app = spawn_app(backend).await;
    let first = app.signed_up("judy").await;

    let response = app.refresh(&first.refresh).await;

    assert_eq!(response.status(), StatusCode::OK);
    let second = tokens(response).await;
    let access = payload(&second.access);
    assert_eq!(access["fresh"], false);
    assert_eq!(access["type"], "access");
    assert_ne!(second.refresh, first.refresh);
    assert_eq!(
        payload(&second.refresh)["sid"],
        payload(&first.refresh)["sid"]
    );
    assert_eq!(app.me(&second.access).await.status(), StatusCode::OK);
    // The rotated token chain keeps working.
    assert_eq!(app.refresh(&second.refresh).await.status(), StatusCode::OK);
}

async fn a_spent_refresh_token_is_refused_and_ends_the_session(backend: Backend) {
    let app = spawn_app_with(backend, &[("AUTH_REFRESH_GRACE", "0")]).await;
    let first = app.signed_up("mallory").await;
    let second = tokens(app.refresh(&first.refresh).await).await;

    let replay = app.refresh(&first.refresh).await;

    assert_error(replay, StatusCode::UNAUTHORIZED, "refresh_token_reused").await;
    // The whole family is revoked: the legitimate holder's newer tokens die too.
    let newer = app.refresh(&second.refresh).await;
    assert_error(newer, StatusCode::UNAUTHORIZED, "token_revoked").await;
    assert_error(
        app.me(&second.access).await,
        StatusCode::UNAUTHORIZED,
        "token_revoked",
    )
    .await;
}

async fn concurrent_refreshes_of_one_token_yield_one_pair(backend: Backend) {
    let app = spawn_app_with(backend, &[("AUTH_REFRESH_GRACE", "0")]).await;
    let tokens = app.signed_up("niaj").await;

    let attempts = (0..50).map(|_| app.refresh(&tokens.refresh));
    let responses = futures_util::future::join_all(attempts).await;

    let mut winners = Vec::new();
    for response in responses {
        if response.status() == StatusCode::OK {
            winners.push(crate::helpers::tokens(response).await);
        } else {
            // The first duplicate trips reuse detection; later ones find the family revoked.
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
            let body: serde_json::Value = response.json().await.unwrap();
            assert!(
                body["error"] == "refresh_token_reused" || body["error"] == "token_revoked",
                "{body}"
            );
        }
    }
    assert_eq!(winners.len(), 1, "exactly one new pair");
    // The duplicates revoked the family, so not even that pair stays valid.
    let winner = &winners[0];
    assert_error(
        app.me(&winner.access).await,
        StatusCode::UNAUTHORIZED,
        "token_revoked",
    )
    .await;
    assert_error(
        app.refresh(&winner.refresh).await,
        StatusCode::UNAUTHORIZED,
        "token_revoked",
    )
    .await;
}

async fn a_retry_within_the_grace_window_gets_the_same_pair(backend: Backend) {
    let app = spawn_app_with(backend, &[("AUTH_REFRESH_GRACE", "1")]).await;
    let tokens = app.signed_up("oscar").await;
    let first = app.refresh(&tokens.refresh).await;
    assert_eq!(first.status(), StatusCode::OK);
    let first = first.text().await.unwrap();

    let retry = app.refresh(&tokens.refresh).await;

    assert_eq!(retry.status(), StatusCode::OK);
    assert_eq!(
        retry.text().await.unwrap(),
        first,
        "the same pair, not a second one"
    );
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let late = app.refresh(&tokens.refresh).await;
    assert_error(late, StatusCode::UNAUTHORIZED, "refresh_token_reused").await;
    let pair: serde_json::Value = serde_json::from_str(&first).unwrap();
    let rotated = pair["refresh_token"].as_str().unwrap();
    assert_error(
        app.refresh(rotated).await,
        StatusCode::UNAUTHORIZED,
        "token_revoked",
    )
    .await;
}

async fn logout_all_ends_every_session_of_the_user_only(backend: Backend) {
    let app = spawn_app(backend).await;
    let laptop = app.signed_up("petra").await;
    let phone = tokens(app.login("petra", PASSWORD).await).await;
    let someone_else = app.signed_up("quentin").await;

    let response = app
        .client
        .post(app.url("/auth/logout-all"))
        .bearer_auth(&phone.access)
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    for token in [&laptop.access, &phone.access] {
        assert_error(
            app.me(token).await,
            StatusCode::UNAUTHORIZED,
            "token_revoked",
        )
        .await;
    }
    for token in [&laptop.refresh, &phone.refresh] {
        assert_error(
            app.refresh(token).await,
            StatusCode::UNAUTHORIZED,
            "token_revoked",
        )
        .await;
    }
    assert_eq!(app.me(&someone_else.access).await.status(), StatusCode::OK);
    // A login right after (even within the same second) is a new session and works.
    let again = tokens(app.login("petra", PASSWORD).await).await;
    assert_eq!(app.me(&again.access).await.status(), StatusCode::OK);
}

async fn password_change_needs_a_fresh_token_and_ends_other_sessions(backend: Backend) {
    let app = spawn_app(backend).await;
    let current = app.signed_up("rita").await;
    let other = tokens(app.login("rita", PASSWORD).await).await;
    let stale = tokens(app.refresh(&other.refresh).await).await;
    let change = |token: String, current_password: &str| {
        let body =
            json!({ "current_password": current_password, "new_password": "a brand new secret" });
        let request = app
            .client
            .post(app.url("/auth/password"))
            .bearer_auth(token)
            .json(&body);
        async move { request.send().await.unwrap() }
    };

    let not_fresh = change(stale.access.clone(), PASSWORD).await;
    assert_error(not_fresh, StatusCode::UNAUTHORIZED, "fresh_token_required").await;
    let wrong = change(current.access.clone(), "not my password").await;
    assert_error(wrong, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    let changed = change(current.access.clone(), PASSWORD).await;
    assert_eq!(changed.status(), StatusCode::NO_CONTENT);

    assert_eq!(
        app.me(&current.access).await.status(),
        StatusCode::OK,
        "the caller's token stays"
    );
    assert_error(
        app.me(&other.access).await,
        StatusCode::UNAUTHORIZED,
        "token_revoked",
    )
    .await;
    assert_error(
        app.refresh(&current.refresh).await,
        StatusCode::UNAUTHORIZED,
        "token_revoked",
    )
    .await;
    assert_error(
        app.login("rita", PASSWORD).await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    assert_eq!(
        app.login("rita", "a brand new secret").await.status(),
        StatusCode::OK
    );
}

/// The password policy on a change: `fields.new_password` with the estimator's feedback; the
/// password stays and no session ends.
async fn a_weak_new_password_is_refused_and_changes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let current = app.signed_up("judy").await;
    let other = tokens(app.login("judy", PASSWORD).await).await;
    for (new, problem) in [
        ("password1", "too weak (score "),
        ("11111111", "too weak (score "),
        ("Judy-Zanzibar-quokka-77", "must not contain the username"),
    ] {
        let body = assert_error(
            app.change_password(&current.access, PASSWORD, new).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
        let fields = body["fields"].as_object().unwrap();
        assert_eq!(fields.len(), 1, "{body}");
        let got = fields["new_password"].as_str().unwrap();
        assert!(got.starts_with(problem), "{new:?}: {got}");
        assert_error(
            app.login("judy", new).await,
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
        )
        .await;
    }
    assert_eq!(app.login("judy", PASSWORD).await.status(), StatusCode::OK);
    assert_eq!(
        app.me(&other.access).await.status(),
        StatusCode::OK,
        "no session was ended"
    );
    // A wrong current password is still answered as such, before any strength verdict.
    assert_error(
        app.change_password(&current.access, "not my password", "password1")
            .await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
}

async fn admins_change_roles_with_a_fresh_token_and_old_tokens_die(backend: Backend) {
    let app = spawn_app_with(
        backend,
        &[
            ("AUTH_BOOTSTRAP_ADMIN_USERNAME", "root"),
            ("AUTH_BOOTSTRAP_ADMIN_PASSWORD", "bootstrap-password"),
        ],
    )
    .await;
    let admin = tokens(app.login("root", "bootstrap-password").await).await;
    let user = app.signed_up("sam").await;
    let id = payload(&user.access)["sub"].as_str().unwrap().to_owned();
    let put_roles = |token: String, roles: serde_json::Value| {
        let request = app
            .client
            .put(app.url(&format!("/auth/users/{id}/roles")))
            .bearer_auth(token)
            .json(&json!({ "roles": roles }));
        async move { request.send().await.unwrap() }
    };

    let by_user = put_roles(user.access.clone(), json!(["admin"])).await;
    assert_error(by_user, StatusCode::FORBIDDEN, "insufficient_role").await;
    let stale_admin = tokens(app.refresh(&admin.refresh).await).await;
    let not_fresh = put_roles(stale_admin.access.clone(), json!(["editor"])).await;
    assert_error(not_fresh, StatusCode::UNAUTHORIZED, "fresh_token_required").await;
    let bogus = put_roles(admin.access.clone(), json!(["root"])).await;
    assert_error(bogus, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;

    let changed = put_roles(admin.access.clone(), json!(["user", "editor"])).await;
    assert_eq!(changed.status(), StatusCode::OK);
    let body: serde_json::Value = changed.json().await.unwrap();
    assert_eq!(body["roles"], json!(["user", "editor"]));

    assert_error(
        app.me(&user.access).await,
        StatusCode::UNAUTHORIZED,
        "token_revoked",
    )
    .await;
    let next = tokens(app.login("sam", PASSWORD).await).await;
    assert_eq!(payload(&next.access)["roles"], json!(["user", "editor"]));
    let missing = app
        .client
        .put(app.url(&format!("/auth/users/{}/roles", uuid::Uuid::now_v7())))
        .bearer_auth(&admin.access)
        .json(&json!({ "roles": ["user"] }))
        .send()
        .await
        .unwrap();
    assert_error(missing, StatusCode::NOT_FOUND, "not_found").await;
}

async fn logout_revokes_both_tokens(backend: Backend) {
    let app = spawn_app(backend).await;
    let tokens = app.signed_up("olivia").await;

    let response = app.logout(&tokens).await;

    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_error(
        app.me(&tokens.access).await,
        StatusCode::UNAUTHORIZED,
        "token_revoked",
    )
    .await;
    assert_error(
        app.refresh(&tokens.refresh).await,
        StatusCode::UNAUTHORIZED,
        "token_revoked",
    )
    .await;

    if backend == Backend::Postgres {
        // Stored in Redis for as long as the token can still be presented (through the last
        // accepted second, `exp + leeway`, hence the + 1) and no longer.
        let jti = payload(&tokens.access)["jti"].as_str().unwrap().to_owned();
        let exp = payload(&tokens.access)["exp"].as_i64().unwrap();
        let client = redis::Client::open(redis_url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let key = format!("{}revoked:token:{jti}", app.redis_prefix);
        let ttl: i64 = conn.ttl(&key).await.unwrap();
        let remaining = exp - shared::now_unix() + app.leeway as i64 + 1;
        assert!(ttl > 0, "revoked jti has a TTL ({ttl})");
        assert!(ttl <= remaining, "ttl {ttl} <= remaining life {remaining}");
        assert!(
            ttl >= remaining - 5,
            "ttl {ttl} close to remaining life {remaining}"
        );
    }
}

async fn logout_without_a_body_revokes_the_access_token(backend: Backend) {
    let app = spawn_app(backend).await;
    let tokens = app.signed_up("peggy").await;

    let response = app
        .client
        .post(app.url("/auth/logout"))
        .bearer_auth(&tokens.access)
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_error(
        app.me(&tokens.access).await,
        StatusCode::UNAUTHORIZED,
        "token_revoked",
    )
    .await;
    // The refresh token was not named, so that session can still refresh.
    assert_eq!(app.refresh(&tokens.refresh).await.status(), StatusCode::OK);

    let bad_body = app
        .client
        .post(app.url("/auth/logout"))
        .bearer_auth(
            &crate::helpers::tokens(app.login("peggy", crate::helpers::PASSWORD).await)
                .await
                .access,
        )
        .json(&json!({ "refresh_token": "garbage" }))
        .send()
        .await
        .unwrap();
    assert_error(bad_body, StatusCode::UNAUTHORIZED, "invalid_token").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reuse_is_detected_on_the_other_instance() {
    let first = spawn_app_with(Backend::Postgres, &[("AUTH_REFRESH_GRACE", "0")]).await;
    let second = first.another_instance().await;
    let tokens = first.signed_up("yusuf").await;
    let rotated = crate::helpers::tokens(first.refresh(&tokens.refresh).await).await;

    let replay = second.refresh(&tokens.refresh).await;

    assert_error(replay, StatusCode::UNAUTHORIZED, "refresh_token_reused").await;
    for app in [&first, &second] {
        let refused = app.refresh(&rotated.refresh).await;
        assert_error(refused, StatusCode::UNAUTHORIZED, "token_revoked").await;
    }
}
