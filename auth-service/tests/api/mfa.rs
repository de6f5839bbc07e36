//! The second factor: TOTP enrolment (fresh token, confirmed by a code), the two-step login
//! (`mfa_required`, `POST /auth/login/mfa`), single use of codes, recovery codes, throttling,
//! the cookie login's two steps, the secret sealed at rest, removal.
//!
//! Codes come from `helpers::totp_code` (HMAC-SHA1 by hand), not from the service's crate. Two
//! codes are usable per 30 s window without waiting (the current step and the next, within the
//! ±1 step skew), which is what these tests spend.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{
    assert_error, spawn_app, tokens, totp_code, unix_now, Backend, TestApp, Tokens, PASSWORD,
};

both_backends!(
    enrolment_needs_a_fresh_token_and_a_code_then_login_needs_the_second_factor,
    codes_and_recovery_codes_work_once,
);

/// Enrols `tokens`' user: the secret and the recovery codes.
async fn enrol(app: &TestApp, tokens: &Tokens) -> (String, Vec<String>) {
    let started = app
        .call(Method::POST, "/auth/mfa/totp", &tokens.access, None)
        .await;
    assert_eq!(started.status(), StatusCode::OK);
    assert_eq!(started.headers()["cache-control"], "no-store");
    let started: Value = started.json().await.unwrap();
    let secret = started["secret"].as_str().unwrap().to_owned();
    let uri = started["otpauth_uri"].as_str().unwrap();
    assert!(uri.starts_with("otpauth://totp/"), "{uri}");
    assert!(uri.contains(&format!("secret={secret}")), "{uri}");
    assert!(started["qr_svg"].as_str().unwrap().contains("<svg"));
    let code = totp_code(&secret, unix_now());
    let confirmed = app
        .call(
            Method::POST,
            "/auth/mfa/totp/confirm",
            &tokens.access,
            Some(json!({ "code": code })),
        )
        .await;
    assert_eq!(confirmed.status(), StatusCode::OK);
    let body: Value = confirmed.json().await.unwrap();
    let codes: Vec<String> = body["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(codes.len(), 10);
    (secret, codes)
}

/// The `mfa_token` of a password login that must continue with a code.
async fn password_step(app: &TestApp, username: &str) -> String {
    let response = app.login(username, PASSWORD).await;
    let body = assert_error(response, StatusCode::UNAUTHORIZED, "mfa_required").await;
    body["mfa_token"].as_str().unwrap().to_owned()
}

async fn second_step(app: &TestApp, mfa_token: &str, code: &str) -> reqwest::Response {
    app.post_json(
        "/auth/login/mfa",
        &json!({ "mfa_token": mfa_token, "code": code }),
    )
    .await
}

async fn enrolment_needs_a_fresh_token_and_a_code_then_login_needs_the_second_factor(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let pair = app.signed_up("rosa").await;
    let stale = tokens(app.refresh(&pair.refresh).await).await;
    let refused = app
        .call(Method::POST, "/auth/mfa/totp", &stale.access, None)
        .await;
    assert_error(refused, StatusCode::UNAUTHORIZED, "fresh_token_required").await;
    // Confirming with a wrong code leaves the factor off.
    app.call(Method::POST, "/auth/mfa/totp", &pair.access, None)
        .await;
    let wrong = app
        .call(
            Method::POST,
            "/auth/mfa/totp/confirm",
            &pair.access,
            Some(json!({ "code": "000000" })),
        )
        .await;
    assert_error(wrong, StatusCode::UNAUTHORIZED, "invalid_mfa_code").await;
    assert_eq!(app.login("rosa", PASSWORD).await.status(), StatusCode::OK);

    let (secret, _) = enrol(&app, &pair).await;
    let me: Value = app.me(&pair.access).await.json().await.unwrap();
    assert_eq!(me["mfa"], true);
    // The secret is sealed at rest: the column does not hold it.
    let stored = app.query_string("SELECT totp_secret AS value FROM users WHERE username = 'rosa'");
    assert!(!stored.contains(&secret), "{stored}");
    assert!(!stored.is_empty());

    // The password alone no longer logs in; a wrong password is still just that.
    assert_error(
        app.login("rosa", "not the password at all").await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    let mfa_token = password_step(&app, "rosa").await;
    let wrong = second_step(&app, &mfa_token, "123456").await;
    assert_error(wrong, StatusCode::UNAUTHORIZED, "invalid_mfa_code").await;
    // The next step's code: the enrolment spent the current one.
    let code = totp_code(&secret, unix_now() + 30);
    let done = second_step(&app, &mfa_token, &code).await;
    assert_eq!(done.headers()["cache-control"], "no-store");
    let pair = tokens(done).await;
    let claims = shared::testing::payload(&pair.access);
    assert_eq!(claims["fresh"], true);
    // The challenge is spent.
    let again = second_step(&app, &mfa_token, &code).await;
    assert_error(again, StatusCode::UNAUTHORIZED, "invalid_mfa_code").await;
    // Starting another enrolment while enrolled is a conflict.
    let conflict = app
        .call(Method::POST, "/auth/mfa/totp", &pair.access, None)
        .await;
    assert_error(conflict, StatusCode::CONFLICT, "conflict").await;
}

async fn codes_and_recovery_codes_work_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let pair = app.signed_up("sami").await;
    let (secret, recovery) = enrol(&app, &pair).await;

    // A code already accepted (the enrolment's) is a replay, even on a new challenge.
    let replayed = totp_code(&secret, unix_now());
    let mfa_token = password_step(&app, "sami").await;
    let refused = second_step(&app, &mfa_token, &replayed).await;
    // (If the clock crossed into the next step meanwhile, the enrolment's code is from the
    // previous step: refused all the same, as older than the last accepted one.)
    assert_error(refused, StatusCode::UNAUTHORIZED, "invalid_mfa_code").await;

    // A recovery code works once, in any case and with spaces.
    let code = recovery[0].to_uppercase().replace('-', " - ");
    let mfa_token = password_step(&app, "sami").await;
    assert_eq!(
        second_step(&app, &mfa_token, &code).await.status(),
        StatusCode::OK
    );
    let mfa_token = password_step(&app, "sami").await;
    let reused = second_step(&app, &mfa_token, &recovery[0]).await;
    assert_error(reused, StatusCode::UNAUTHORIZED, "invalid_mfa_code").await;
    // Another one still works.
    assert_eq!(
        second_step(&app, &mfa_token, &recovery[1]).await.status(),
        StatusCode::OK
    );

    // Removing the factor takes a code too; afterwards the password alone logs in.
    let fresh = {
        let token = password_step(&app, "sami").await;
        tokens(second_step(&app, &token, &recovery[2]).await).await
    };
    let wrong = app
        .call(
            Method::DELETE,
            "/auth/mfa/totp",
            &fresh.access,
            Some(json!({ "code": "999999" })),
        )
        .await;
    assert_error(wrong, StatusCode::UNAUTHORIZED, "invalid_mfa_code").await;
    let removed = app
        .call(
            Method::DELETE,
            "/auth/mfa/totp",
            &fresh.access,
            Some(json!({ "code": recovery[3] })),
        )
        .await;
    assert_eq!(removed.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.login("sami", PASSWORD).await.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_is_accepted_once_even_when_two_requests_race_with_it() {
    let app = spawn_app(Backend::Postgres).await;
    let pair = app.signed_up("tara").await;
    let (secret, _) = enrol(&app, &pair).await;
    let first = password_step(&app, "tara").await;
    let second = password_step(&app, "tara").await;
    let code = totp_code(&secret, unix_now() + 30);
    let (a, b) = tokio::join!(
        second_step(&app, &first, &code),
        second_step(&app, &second, &code)
    );
    let mut statuses = [a.status(), b.status()];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::UNAUTHORIZED]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_codes_are_throttled_like_passwords() {
    let app = spawn_app(Backend::Postgres).await;
    let pair = app.signed_up("ugo").await;
    enrol(&app, &pair).await;
    let mut last = None;
    for _ in 0..12 {
        // A new challenge each time: the throttle counts per user, not per challenge.
        let mfa_token = password_step(&app, "ugo").await;
        let response = second_step(&app, &mfa_token, "000000").await;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            last = Some(response);
            break;
        }
        assert_error(response, StatusCode::UNAUTHORIZED, "invalid_mfa_code").await;
    }
    let throttled = last.expect("throttled within 12 wrong codes");
    assert!(throttled.headers().contains_key("retry-after"));
    assert_error(throttled, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cookie_login_takes_the_same_two_steps() {
    let app = spawn_app(Backend::Postgres).await;
    let pair = app.signed_up("vera").await;
    let (secret, _) = enrol(&app, &pair).await;
    let first = app
        .post_json(
            "/auth/session",
            &json!({ "username": "vera", "password": PASSWORD }),
        )
        .await;
    let body = assert_error(first, StatusCode::UNAUTHORIZED, "mfa_required").await;
    let mfa_token = body["mfa_token"].as_str().unwrap();
    // A JSON login's challenge cannot be finished as a cookie login, and the reverse
    // finishes as a JSON pair.
    let code = totp_code(&secret, unix_now() + 30);
    let done = app
        .post_json(
            "/auth/session/mfa",
            &json!({ "mfa_token": mfa_token, "code": code }),
        )
        .await;
    assert_eq!(done.status(), StatusCode::NO_CONTENT);
    let names: Vec<String> = done
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split('=').next().unwrap().to_owned())
        .collect();
    for cookie in [
        "access_token_cookie",
        "refresh_token_cookie",
        "csrf_access_token",
    ] {
        assert!(names.iter().any(|n| n == cookie), "{cookie} in {names:?}");
    }
}
