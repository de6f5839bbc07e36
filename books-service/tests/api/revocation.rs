//! Revocations reach books-service through Redis, not through calls to auth-service.

use std::time::{Duration, Instant};

use reqwest::StatusCode;

use shared::testing::PrivateRedis;

use crate::both_backends;
use crate::helpers::{assert_error, spawn_stack, spawn_stack_with, Backend};

both_backends!(logout_is_enforced_by_books_within_100ms_without_asking_auth);

async fn logout_is_enforced_by_books_within_100ms_without_asking_auth(backend: Backend) {
    let stack = spawn_stack(backend).await;
    let tokens = stack.user_with_roles("victor", "user").await;
    assert_eq!(
        stack.get(&tokens.access, "/books").await.status(),
        StatusCode::OK
    );
    let logout = stack.logout(&tokens).await;
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    let logged_out_at = Instant::now();
    let auth_requests_before = stack.auth_request_count().await;

    let refused_after = loop {
        let response = stack.get(&tokens.access, "/books").await;
        if response.status() == StatusCode::UNAUTHORIZED {
            assert_error(response, StatusCode::UNAUTHORIZED, "token_revoked").await;
            break logged_out_at.elapsed();
        }
        assert!(
            logged_out_at.elapsed() < Duration::from_secs(2),
            "never refused"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    };

    assert!(
        refused_after <= Duration::from_millis(100),
        "refused after {refused_after:?}"
    );
    // Only our own /metrics call reached auth-service in between.
    assert_eq!(stack.auth_request_count().await, auth_requests_before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_books_instance_loads_earlier_revocations() {
    let stack = spawn_stack(Backend::Postgres).await;
    let tokens = stack.user_with_roles("wendy", "user").await;
    assert_eq!(stack.logout(&tokens).await.status(), StatusCode::NO_CONTENT);

    let (second, _database) = stack.another_books_instance().await;

    let response = stack
        .client
        .get(format!("{second}/books"))
        .bearer_auth(&tokens.access)
        .send()
        .await
        .unwrap();
    assert_error(response, StatusCode::UNAUTHORIZED, "token_revoked").await;
}

async fn wait_for_status(
    stack: &crate::helpers::Stack,
    token: &str,
    status: StatusCode,
) -> reqwest::Response {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let response = stack.get(token, "/books").await;
        if response.status() == status {
            return response;
        }
        assert!(
            Instant::now() < deadline,
            "still {} after 15 s",
            response.status()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_longer_than_the_staleness_bound_is_503_then_recovers() {
    let mut redis = PrivateRedis::start();
    let stack = spawn_stack_with(
        Backend::Postgres,
        &[],
        &[("REVOCATION_STALENESS_MS", "1000")],
        redis.url(),
    )
    .await;
    let tokens = stack.user_with_roles("xavier", "user").await;
    assert_eq!(
        stack.get(&tokens.access, "/books").await.status(),
        StatusCode::OK
    );

    redis.stop();
    let during = wait_for_status(&stack, &tokens.access, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_error(during, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;
    let ready = stack
        .client
        .get(stack.books_url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);

    redis.restart();
    wait_for_status(&stack, &tokens.access, StatusCode::OK).await;
    // The feed works again: a new logout reaches books-service. (auth-service may need a
    // moment to reconnect its own Redis connections: login is throttled through Redis.)
    let deadline = Instant::now() + Duration::from_secs(15);
    let again = loop {
        assert!(Instant::now() < deadline, "login did not recover");
        let response = stack
            .client
            .post(format!("{}/auth/login", stack.auth))
            .json(
                &serde_json::json!({ "username": "xavier", "password": crate::helpers::PASSWORD }),
            )
            .send()
            .await
            .unwrap();
        if response.status() == StatusCode::OK {
            break crate::helpers::tokens(response).await;
        }
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        stack.get(&again.access, "/books").await.status(),
        StatusCode::OK
    );
    let logout = wait_for_logout(&stack, &again).await;
    assert_eq!(logout, StatusCode::NO_CONTENT);
    wait_for_status(&stack, &again.access, StatusCode::UNAUTHORIZED).await;
}

/// auth-service may need a moment to reconnect to the restarted Redis.
async fn wait_for_logout(
    stack: &crate::helpers::Stack,
    tokens: &crate::helpers::Tokens,
) -> StatusCode {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let status = stack.logout(tokens).await.status();
        if status != StatusCode::SERVICE_UNAVAILABLE || Instant::now() > deadline {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A Redis that comes back without its data (a restart without persistence, or a failover to a
/// replica that had not received the last writes) gets back every revocation books-service
/// still holds: the replica keeps its entries across the reload and writes back what Redis
/// lacks, so auth-service, which reads Redis itself, refuses the token again too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_lost_its_data_gets_back_every_revocation_books_service_holds() {
    let mut redis = PrivateRedis::start();
    let stack = spawn_stack_with(Backend::Postgres, &[], &[], redis.url()).await;
    let kept = stack.user_with_roles("yara", "user").await;
    let cut = stack.user_with_roles("zeno", "user").await;
    assert_eq!(stack.logout(&kept).await.status(), StatusCode::NO_CONTENT);
    let all = stack
        .client
        .post(format!("{}/auth/logout-all", stack.auth))
        .bearer_auth(&cut.access)
        .send()
        .await
        .unwrap();
    assert_eq!(all.status(), StatusCode::NO_CONTENT);
    for token in [&kept.access, &cut.access] {
        wait_for_status(&stack, token, StatusCode::UNAUTHORIZED).await;
    }

    redis.stop();
    redis.restart();

    let me = |token: String| {
        let stack = &stack;
        async move {
            stack
                .client
                .get(format!("{}/auth/me", stack.auth))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
        }
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    for token in [&kept.access, &cut.access] {
        loop {
            let response = me(token.clone()).await;
            if response.status() == StatusCode::UNAUTHORIZED {
                assert_error(response, StatusCode::UNAUTHORIZED, "token_revoked").await;
                break;
            }
            assert!(
                Instant::now() < deadline,
                "auth-service still answers {} for a revoked token",
                response.status()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // And books-service never stopped refusing it.
        let response = stack.get(token, "/books").await;
        assert_ne!(response.status(), StatusCode::OK);
    }
    // Written back as entries Redis keeps: the session, the access token, the cut-off.
    let mut connection = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}revoked:*", stack.redis_prefix))
        .query_async(&mut connection)
        .await
        .unwrap();
    let sub = shared::testing::payload(&cut.access)["sub"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        keys.contains(&format!("{}revoked:user:{sub}", stack.redis_prefix)),
        "{keys:?}"
    );
    let sid = shared::testing::payload(&kept.access)["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        keys.contains(&format!("{}revoked:session:{sid}", stack.redis_prefix)),
        "{keys:?}"
    );
}
