//! Register, login, `/auth/me` and the request-body rules.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{assert_error, payload, spawn_app, spawn_app_with, tokens, Backend, PASSWORD};

both_backends!(
    register_creates_a_user_with_role_user,
    duplicate_username_is_409_whatever_the_case,
    invalid_username_and_password_are_422_with_fields,
    weak_passwords_are_refused_at_registration_with_the_estimators_feedback,
    the_password_minimum_score_is_configurable,
    wrong_password_and_unknown_user_get_identical_401s,
    login_issues_a_fresh_access_token_and_a_refresh_token,
    me_loads_the_user_from_the_database,
    bodies_that_are_not_json_are_rejected_with_json_errors,
    bootstrap_admin_is_created_once,
    a_weak_bootstrap_admin_password_stops_the_start,
    outdated_password_hashes_are_upgraded_at_login,
);

async fn register_creates_a_user_with_role_user(backend: Backend) {
    let app = spawn_app(backend).await;

    let response = app.register("Alice", PASSWORD).await;

    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["username"], "alice");
    assert_eq!(body["roles"], json!(["user"]));
    assert!(uuid::Uuid::parse_str(body["id"].as_str().unwrap()).is_ok());
    let stored = app.query_string("SELECT password_hash AS value FROM users");
    assert!(
        stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{stored}"
    );
    assert!(!stored.contains(PASSWORD));
}

async fn duplicate_username_is_409_whatever_the_case(backend: Backend) {
    let app = spawn_app(backend).await;
    assert_eq!(
        app.register("bob", PASSWORD).await.status(),
        StatusCode::CREATED
    );

    assert_error(
        app.register("bob", PASSWORD).await,
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;
    assert_error(
        app.register("BOB", "another password").await,
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;
}

async fn invalid_username_and_password_are_422_with_fields(backend: Backend) {
    let app = spawn_app(backend).await;
    let cases = [
        ("ab", PASSWORD, vec!["username"]),
        ("has space", PASSWORD, vec!["username"]),
        ("carol", "short", vec!["password"]),
        ("x", "y", vec!["password", "username"]),
    ];
    for (username, password, fields) in cases {
        let body = assert_error(
            app.register(username, password).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
        let mut got: Vec<&str> = body["fields"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        got.sort();
        assert_eq!(got, fields, "for {username:?}/{password:?}");
    }
    let missing = app
        .post_json("/auth/register", &json!({ "username": "dave" }))
        .await;
    assert_error(
        missing,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
}

/// The password policy: the answer names `fields.password` only, with the estimator's feedback,
/// and nothing is stored.
async fn weak_passwords_are_refused_at_registration_with_the_estimators_feedback(backend: Backend) {
    let app = spawn_app(backend).await;
    let cases = [
        ("grace", "password1", "too weak (score "),
        ("grace", "qwertyuiop", "too weak (score "),
        (
            "grace",
            "grace-Zanzibar-quokka-77",
            "must not contain the username",
        ),
        (
            "Grace",
            "zanzibar-GRACE-quokka-77",
            "must not contain the username",
        ),
    ];
    for (username, password, problem) in cases {
        let body = assert_error(
            app.register(username, password).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
        let fields = body["fields"].as_object().unwrap();
        assert_eq!(fields.len(), 1, "{body}");
        let got = fields["password"].as_str().unwrap();
        assert!(got.starts_with(problem), "{password:?}: {got}");
        assert_error(
            app.login(username, password).await,
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
        )
        .await;
    }
    let common = assert_error(
        app.register("grace", "password1").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    let feedback = common["fields"]["password"].as_str().unwrap();
    assert!(feedback.contains("needs 3): "), "{feedback}");
    assert!(feedback.contains("common password"), "{feedback}");
    assert_eq!(
        app.query_string("SELECT CAST(COUNT(*) AS TEXT) AS value FROM users"),
        "0"
    );
    // A strong one of the same user goes through.
    let strong = "correct-Horse-battery-staple-42";
    assert_eq!(
        app.register("grace", strong).await.status(),
        StatusCode::CREATED
    );
    assert_eq!(app.login("grace", strong).await.status(), StatusCode::OK);
}

async fn the_password_minimum_score_is_configurable(backend: Backend) {
    // "bootstrap-password" scores 3 of 4: enough by default, not with a minimum of 4.
    let strict = spawn_app_with(backend, &[("AUTH_PASSWORD_MIN_SCORE", "4")]).await;
    let body = assert_error(
        strict.register("hank", "bootstrap-password").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    let problem = body["fields"]["password"].as_str().unwrap();
    assert!(
        problem.starts_with("too weak (score 3 of 4, needs 4): "),
        "{problem}"
    );
    assert_eq!(
        strict.register("hank", PASSWORD).await.status(),
        StatusCode::CREATED
    );

    let lax = strict
        .another_instance_with(&[("AUTH_PASSWORD_MIN_SCORE", "0")])
        .await;
    assert_eq!(
        lax.register("ivan", "password1").await.status(),
        StatusCode::CREATED
    );
    // The username rule holds whatever the score.
    assert_error(
        lax.register("kim", "kim-password").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
}

async fn wrong_password_and_unknown_user_get_identical_401s(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register("erin", PASSWORD).await;

    let wrong_password = app.login("erin", "not the password").await;
    let unknown_user = app.login("nobody", "not the password").await;

    let headers = |r: &reqwest::Response| r.headers().get("www-authenticate").cloned();
    assert_eq!(headers(&wrong_password), headers(&unknown_user));
    let a = assert_error(
        wrong_password,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    let b = assert_error(
        unknown_user,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    assert_eq!(a, b);
}

async fn login_issues_a_fresh_access_token_and_a_refresh_token(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register("frank", PASSWORD).await;

    let response = app.login("Frank", PASSWORD).await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert_eq!(body["refresh_expires_in"], 2_592_000);
    let access = payload(body["access_token"].as_str().unwrap());
    let refresh = payload(body["refresh_token"].as_str().unwrap());
    assert_eq!(access["type"], "access");
    assert_eq!(access["fresh"], true);
    assert_eq!(access["roles"], json!(["user"]));
    assert_eq!(access["username"], "frank");
    assert_eq!(access["iss"], "http://127.0.0.1:8081");
    assert_eq!(access["aud"], "authbooks-api");
    assert_eq!(
        access["exp"].as_i64().unwrap() - access["iat"].as_i64().unwrap(),
        900
    );
    assert_eq!(refresh["type"], "refresh");
    assert_eq!(refresh["sub"], access["sub"]);
    assert_ne!(refresh["jti"], access["jti"]);
    // One session id per login, in both tokens, under its standard name.
    assert!(uuid::Uuid::parse_str(access["sid"].as_str().unwrap()).is_ok());
    assert_eq!(refresh["sid"], access["sid"]);
    assert!(access.get("fam").is_none());
    assert_eq!(
        refresh["exp"].as_i64().unwrap() - refresh["iat"].as_i64().unwrap(),
        2_592_000
    );
}

async fn me_loads_the_user_from_the_database(backend: Backend) {
    let app = spawn_app(backend).await;
    let tokens = app.signed_up("grace").await;

    let response = app.me(&tokens.access).await;

    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["username"], "grace");
    assert_eq!(body["roles"], json!(["user"]));
    assert!(chrono::DateTime::parse_from_rfc3339(body["created_at"].as_str().unwrap()).is_ok());

    let missing = app.get("/auth/me").await;
    let www = missing.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(www.contains("error=\"invalid_request\""), "{www}");
    assert_error(missing, StatusCode::UNAUTHORIZED, "missing_token").await;
    let garbage = app.me("not-a-jwt").await;
    assert_error(garbage, StatusCode::UNAUTHORIZED, "invalid_token").await;
}

async fn bodies_that_are_not_json_are_rejected_with_json_errors(backend: Backend) {
    let app = spawn_app(backend).await;
    let url = app.url("/auth/register");

    let not_json = app
        .client
        .post(&url)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_error(not_json, StatusCode::BAD_REQUEST, "bad_request").await;

    let wrong_type = app
        .client
        .post(&url)
        .body("username=a")
        .send()
        .await
        .unwrap();
    assert_error(wrong_type, StatusCode::BAD_REQUEST, "bad_request").await;

    let huge = json!({ "username": "x".repeat(70 * 1024), "password": PASSWORD });
    let too_large = app.post_json("/auth/register", &huge).await;
    assert_error(
        too_large,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    )
    .await;

    assert_error(app.get("/nope").await, StatusCode::NOT_FOUND, "not_found").await;
}

async fn bootstrap_admin_is_created_once(backend: Backend) {
    let app = spawn_app_with(
        backend,
        &[
            ("AUTH_BOOTSTRAP_ADMIN_USERNAME", "root"),
            ("AUTH_BOOTSTRAP_ADMIN_PASSWORD", "bootstrap-password"),
        ],
    )
    .await;

    let response = app.login("root", "bootstrap-password").await;

    assert_eq!(response.status(), StatusCode::OK);
    let access = payload(&tokens(response).await.access);
    assert_eq!(access["roles"], json!(["user", "admin"]));
    assert_eq!(
        app.query_string("SELECT CAST(COUNT(*) AS TEXT) AS value FROM users"),
        "1"
    );
}

/// A weak configured admin password is a configuration error: one line naming the variable, and
/// no admin is created.
async fn a_weak_bootstrap_admin_password_stops_the_start(backend: Backend) {
    let app = spawn_app(backend).await;
    for (password, problem) in [
        ("password1", "too weak (score "),
        ("root-Zanzibar-quokka-77", "must not contain the username"),
    ] {
        let line = app
            .another_instance_fails_with(&[
                ("AUTH_BOOTSTRAP_ADMIN_USERNAME", "root"),
                ("AUTH_BOOTSTRAP_ADMIN_PASSWORD", password),
            ])
            .await;
        assert!(
            line.starts_with(&format!("AUTH_BOOTSTRAP_ADMIN_PASSWORD: {problem}")),
            "{line}"
        );
        assert!(!line.contains('\n') && !line.contains(password), "{line}");
    }
    assert_eq!(
        app.query_string("SELECT CAST(COUNT(*) AS TEXT) AS value FROM users"),
        "0"
    );
}

async fn outdated_password_hashes_are_upgraded_at_login(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register("heidi", PASSWORD).await;
    // "correct horse battery" hashed with m=4096, t=1, p=1.
    let weak = weak_hash(PASSWORD);
    app.execute_sql(&format!("UPDATE users SET password_hash = '{weak}'"));

    let response = app.login("heidi", PASSWORD).await;

    assert_eq!(response.status(), StatusCode::OK);
    let stored = app.query_string("SELECT password_hash AS value FROM users");
    assert_ne!(stored, weak);
    assert!(
        stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{stored}"
    );
    assert_eq!(app.login("heidi", PASSWORD).await.status(), StatusCode::OK);
}

fn weak_hash(password: &str) -> String {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let params = argon2::Params::new(4096, 1, 1, None).unwrap();
    let hasher = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    hasher
        .hash_password(password.as_bytes(), &salt)
        .unwrap()
        .to_string()
}
