//! Refresh rotation, token types, logout and the revocation store.

use redis::AsyncCommands;
use reqwest::StatusCode;
use serde_json::json;

use crate::both_backends;
use crate::helpers::{assert_error, payload, redis_url, spawn_app, tokens, Backend};

both_backends!(
    token_types_are_not_interchangeable,
    refresh_rotates_and_returns_a_non_fresh_access_token,
    a_spent_refresh_token_is_refused_and_ends_the_session,
    concurrent_refreshes_of_one_token_yield_one_pair,
    logout_revokes_both_tokens,
    logout_without_a_body_revokes_the_access_token,
);

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
        payload(&second.refresh)["fam"],
        payload(&first.refresh)["fam"]
    );
    assert_eq!(app.me(&second.access).await.status(), StatusCode::OK);
    // The rotated token chain keeps working.
    assert_eq!(app.refresh(&second.refresh).await.status(), StatusCode::OK);
}

async fn a_spent_refresh_token_is_refused_and_ends_the_session(backend: Backend) {
    let app = spawn_app(backend).await;
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
    let app = spawn_app(backend).await;
    let tokens = app.signed_up("niaj").await;

    let attempts = (0..8).map(|_| app.refresh(&tokens.refresh));
    let statuses: Vec<StatusCode> = futures_util::future::join_all(attempts)
        .await
        .iter()
        .map(|r| r.status())
        .collect();

    let successes = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    assert_eq!(successes, 1, "{statuses:?}");
    assert!(statuses
        .iter()
        .all(|s| *s == StatusCode::OK || *s == StatusCode::UNAUTHORIZED));
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
        // Stored in Redis for no longer than the token can still be presented.
        let jti = payload(&tokens.access)["jti"].as_str().unwrap().to_owned();
        let exp = payload(&tokens.access)["exp"].as_i64().unwrap();
        let client = redis::Client::open(redis_url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let key = format!("{}revoked:token:{jti}", app.redis_prefix);
        let ttl: i64 = conn.ttl(&key).await.unwrap();
        let remaining = exp - shared::now_unix() + app.leeway as i64;
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
