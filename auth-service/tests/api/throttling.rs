//! Login throttling, across instances.

use reqwest::{Response, StatusCode};
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{
    assert_error, redis_url, spawn_app, spawn_app_with, tokens, Backend, TestApp, PASSWORD,
};

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

// ---- Issue 13 (outside security review), findings 5-9 ----------------------------------------

/// The app believes `X-Forwarded-For` from the test client (127.0.0.1), as it would from the
/// gateway, so each request can say which client it stands for.
const BEHIND_A_PROXY: (&str, &str) = ("AUTH_TRUSTED_PROXIES", "127.0.0.1");

/// `path` with `body`, sent on behalf of the client at `address` (one `X-Forwarded-For` line per
/// entry of `forwarded_for`), optionally with a bearer token.
async fn send_from(
    app: &TestApp,
    path: &str,
    forwarded_for: &[&str],
    token: Option<&str>,
    body: &Value,
) -> Response {
    let mut request = app.client.post(app.url(path)).json(body);
    for line in forwarded_for {
        request = request.header("x-forwarded-for", *line);
    }
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("request")
}

async fn login_from(app: &TestApp, address: &str, username: &str, password: &str) -> Response {
    let body = json!({ "username": username, "password": password });
    send_from(app, "/auth/login", &[address], None, &body).await
}

async fn register_from(app: &TestApp, address: &str, username: &str) -> Response {
    let body = json!({ "username": username, "password": PASSWORD });
    send_from(app, "/auth/register", &[address], None, &body).await
}

/// Asserts a `429 rate_limited` with a sane `Retry-After`, and returns it in seconds.
async fn assert_throttled(response: Response) -> u64 {
    let retry_after: u64 = response
        .headers()
        .get("retry-after")
        .expect("429 carries Retry-After")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=900).contains(&retry_after), "{retry_after}");
    assert_error(response, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    retry_after
}

async fn metrics(app: &TestApp) -> String {
    app.get("/metrics").await.text().await.unwrap()
}

both_backends!(
    ipv6_rotation_within_one_64_is_throttled,
    registration_is_throttled_per_address,
    password_change_guesses_are_throttled,
    over_long_username_is_refused_before_counting_and_keyed_by_hash,
    stranger_cannot_lock_out_the_owner,
    every_forwarded_for_header_line_is_read,
);

/// Finding 5: one /64 is one client, however many of its addresses it uses.
async fn ipv6_rotation_within_one_64_is_throttled(backend: Backend) {
    let app = spawn_app_with(
        backend,
        &[BEHIND_A_PROXY, ("AUTH_LOGIN_LIMIT_ADDRESS", "10")],
    )
    .await;
    for n in 0..10u32 {
        // Another interface id (and another name) each time.
        let address = format!("2001:db8:1:2:{:x}::{:x}", n * 4099 + 1, n + 1);
        let response = login_from(&app, &address, &format!("guess{n}"), "wrong guess").await;
        assert_error(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    }

    let refused = login_from(&app, "2001:db8:1:2:ffff::1", "guess-next", "wrong guess").await;

    assert_throttled(refused).await;
    // The neighbouring /64 is someone else.
    let neighbour = login_from(&app, "2001:db8:1:3::1", "guess-next", "wrong guess").await;
    assert_error(neighbour, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
}

/// Finding 6: sign-ups cost an argon2 hash each, so they are limited per address, and a locked
/// one is refused before hashing.
async fn registration_is_throttled_per_address(backend: Backend) {
    let app = spawn_app_with(
        backend,
        &[BEHIND_A_PROXY, ("AUTH_REGISTER_LIMIT_ADDRESS", "3")],
    )
    .await;
    for name in ["reg-one", "reg-two", "reg-three"] {
        let response = register_from(&app, "198.51.100.20", name).await;
        assert_eq!(response.status(), StatusCode::CREATED, "{name}");
    }

    let refused = register_from(&app, "198.51.100.20", "reg-four").await;

    assert_throttled(refused).await;
    assert!(metrics(&app)
        .await
        .contains("auth_throttled_total{endpoint=\"register\"} 1"));
    assert_eq!(
        app.register("reg-four", PASSWORD).await.status(),
        StatusCode::CREATED,
        "the refused account was not created, and another address may register"
    );
}

/// Finding 6: a stolen fresh token must not allow unlimited guessing of the current password;
/// counted per user (across addresses) and per address (across users).
async fn password_change_guesses_are_throttled(backend: Backend) {
    let app = spawn_app_with(
        backend,
        &[BEHIND_A_PROXY, ("AUTH_LOGIN_LIMIT_ADDRESS", "3")],
    )
    .await;
    let signed_up = |name: &'static str, address: &'static str| {
        let app = &app;
        async move {
            let registered = register_from(app, address, name).await;
            assert_eq!(registered.status(), StatusCode::CREATED);
            let response = login_from(app, address, name, PASSWORD).await;
            assert_eq!(response.status(), StatusCode::OK);
            tokens(response).await.access
        }
    };
    let change = |token: String, address: &'static str, current: &'static str| {
        let app = &app;
        async move {
            let body = json!({ "current_password": current, "new_password": "a brand new secret" });
            send_from(app, "/auth/password", &[address], Some(&token), &body).await
        }
    };

    // Per user: five wrong guesses, from two addresses, and even the right password is refused.
    let alice = signed_up("alice", "198.51.100.1").await;
    for address in ["203.0.113.1", "203.0.113.2"].into_iter().cycle().take(5) {
        let wrong = change(alice.clone(), address, "not my password").await;
        assert_error(wrong, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    }
    assert_throttled(change(alice.clone(), "203.0.113.1", PASSWORD).await).await;
    assert_throttled(change(alice.clone(), "203.0.113.9", PASSWORD).await).await;
    let still = login_from(&app, "198.51.100.1", "alice", PASSWORD).await;
    assert_eq!(
        still.status(),
        StatusCode::OK,
        "the password was not changed"
    );

    // Per address: one guess at each of three users, and the address is locked for a fourth.
    let mut victims = Vec::new();
    for (name, address) in [
        ("bert", "198.51.100.2"),
        ("cleo", "198.51.100.3"),
        ("dina", "198.51.100.4"),
        ("emil", "198.51.100.5"),
    ] {
        victims.push(signed_up(name, address).await);
    }
    for token in &victims[..3] {
        let wrong = change(token.clone(), "203.0.113.50", "not my password").await;
        assert_error(wrong, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    }
    assert_throttled(change(victims[3].clone(), "203.0.113.50", PASSWORD).await).await;
    assert!(metrics(&app)
        .await
        .contains("auth_throttled_total{endpoint=\"password\"} 3"));
    let elsewhere = change(victims[3].clone(), "203.0.113.51", PASSWORD).await;
    assert_eq!(elsewhere.status(), StatusCode::NO_CONTENT);
}

/// Finding 7: a name longer than any account's gets the usual 401 at once, is not counted, and
/// no counter key holds a raw name: they hold its hash.
async fn over_long_username_is_refused_before_counting_and_keyed_by_hash(backend: Backend) {
    let app = spawn_app(backend).await;
    let huge = "Q".repeat(60_000);
    for _ in 0..8 {
        let response = app.login(&huge, "wrong guess").await;
        assert_error(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    }
    let longest = "q".repeat(65);
    let response = app.login(&longest, "wrong guess").await;
    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    for _ in 0..2 {
        let response = app.login("  Zelda ", "wrong guess").await;
        assert_error(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    }
    assert!(metrics(&app)
        .await
        .contains("auth_logins_total{result=\"failure\"} 11"));

    if backend == Backend::Postgres {
        let mut redis = shared::revocation::connect_redis(&redis_url().parse().unwrap())
            .await
            .unwrap();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", app.redis_prefix))
            .query_async(&mut redis)
            .await
            .unwrap();
        let hash = auth_service::throttle::name_key("zelda");
        assert!(keys.iter().any(|k| k.contains(&hash)), "{keys:?}");
        for key in &keys {
            assert!(key.len() <= 200, "a {}-byte key", key.len());
            let lower = key.to_ascii_lowercase();
            assert!(!lower.contains("qqq") && !lower.contains("zelda"), "{key}");
        }
    }
}

/// Finding 8: a stranger who exhausted the tight limit from one address does not lock the owner
/// out of her account from hers, and stays throttled himself.
async fn stranger_cannot_lock_out_the_owner(backend: Backend) {
    let app = spawn_app_with(backend, &[BEHIND_A_PROXY]).await;
    app.register("olga", PASSWORD).await;
    let stranger = "203.0.113.66";
    // Five guesses are allowed on the (olga, stranger) pair; every one after is refused.
    for _ in 0..5 {
        let response = login_from(&app, stranger, "olga", "wrong guess").await;
        assert_error(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    }
    assert_throttled(login_from(&app, stranger, "olga", "wrong guess").await).await;

    let owner = login_from(&app, "198.51.100.77", "olga", PASSWORD).await;

    assert_eq!(owner.status(), StatusCode::OK);
    assert_throttled(login_from(&app, stranger, "olga", "wrong guess").await).await;
    assert_throttled(login_from(&app, stranger, "olga", PASSWORD).await).await;
}

/// Finding 9: every `X-Forwarded-For` line is read, in order, and walked from the right, so a
/// line of the client's own cannot stand in for the one the proxy appended.
async fn every_forwarded_for_header_line_is_read(backend: Backend) {
    let app = spawn_app_with(
        backend,
        &[BEHIND_A_PROXY, ("AUTH_LOGIN_LIMIT_ADDRESS", "3")],
    )
    .await;
    let body = |n: u32| json!({ "username": format!("line{n}"), "password": "wrong guess" });
    for n in 0..3 {
        let forged = format!("6.6.6.{n}");
        let lines = [forged.as_str(), "203.0.113.7"];
        let response = send_from(&app, "/auth/login", &lines, None, &body(n)).await;
        assert_error(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    }

    let lines = ["6.6.6.99", "203.0.113.7"];
    let refused = send_from(&app, "/auth/login", &lines, None, &body(3)).await;

    assert_throttled(refused).await;
    // The right-most line names the client: here someone else, who is not throttled.
    let lines = ["203.0.113.7", "198.51.100.9"];
    let other = send_from(&app, "/auth/login", &lines, None, &body(4)).await;
    assert_error(other, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
}

/// The Redis script and the in-process twin give the same answers to the same attempts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_and_in_process_throttles_agree() {
    use std::sync::Arc;

    use actix_web::test::TestRequest;
    use auth_service::throttle::{
        MemoryThrottle, RedisThrottle, Throttle, ThrottlePolicy, ThrottleStore, TrustedProxies,
    };

    let policy = ThrottlePolicy::new(2, 4, 2);
    let prefix = format!("test:{}:", uuid::Uuid::new_v4().simple());
    let stores: [Arc<dyn ThrottleStore>; 2] = [
        Arc::new(
            RedisThrottle::connect(&redis_url().parse().unwrap(), &prefix, policy.clone())
                .await
                .unwrap(),
        ),
        Arc::new(MemoryThrottle::new(policy.clone())),
    ];
    let mut answers = Vec::new();
    for store in stores {
        let throttle = Throttle::new(
            store,
            policy.clone(),
            TrustedProxies::default(),
            Arc::new(shared::Metrics::new("test")),
        );
        let from = |address: &str| {
            throttle.client(
                &TestRequest::default()
                    .peer_addr(format!("{address}:40000").parse().unwrap())
                    .to_http_request(),
            )
        };
        let (a, b, c) = (
            from("198.51.100.1"),
            from("198.51.100.2"),
            from("198.51.100.3"),
        );
        let mut seen = Vec::new();
        let mut note = |ok: bool| seen.push(ok);
        // The pair (ann, a) locks after 2; ann from b goes on and clears only her own pair.
        note(throttle.login(&a, "ann").await.is_ok());
        note(throttle.login(&a, "ANN ").await.is_ok());
        note(throttle.login(&a, "ann").await.is_ok());
        let attempt = throttle.login(&b, "ann").await;
        note(attempt.is_ok());
        if let Ok(attempt) = attempt {
            throttle.login_succeeded(attempt).await.unwrap();
        }
        note(throttle.login(&a, "ann").await.is_ok());
        // Address a has 3 counted attempts of 4 (the refused third counts): one more name, then
        // every attempt from it is refused.
        note(throttle.login(&a, "bob").await.is_ok());
        note(throttle.login(&a, "cy").await.is_ok());
        note(throttle.login(&a, "dee").await.is_ok());
        // Registrations: 2 per address.
        for _ in 0..3 {
            note(throttle.register(&c).await.is_ok());
        }
        // Password changes: 2 per user, across addresses.
        note(throttle.password_change(&b, "user-1").await.is_ok());
        note(throttle.password_change(&c, "user-1").await.is_ok());
        note(throttle.password_change(&a, "user-1").await.is_ok());
        answers.push(seen);
    }
    let expected = [
        true, true, false, true, false, true, false, false, true, true, false, true, true, false,
    ];
    assert_eq!(answers[0], expected, "redis");
    assert_eq!(answers[1], expected, "in-process");
}
