//! The races of the security review (issue 13, findings 1, 2 and 4), each made deterministic
//! with the service's pause points, plus property tests that run the races concurrently many
//! times on PostgreSQL + Redis with two instances.

use std::time::{Duration, Instant};

use auth_service::pause::points;
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{
    assert_error, payload, spawn_app_with, tokens, Backend, TestApp, Tokens, PASSWORD,
};

both_backends!(
    a_demotion_is_not_overwritten_by_a_password_change_in_flight,
    a_password_change_is_not_widened_by_a_later_demotion,
    a_refresh_paused_before_rotation_is_refused_after_logout_all,
    a_pair_minted_just_before_logout_all_is_covered_by_it,
    a_login_that_read_the_old_roles_before_a_demotion_gets_the_new_ones,
    a_refresh_racing_a_password_change_is_refused,
);

const ROOT: &str = "root";
const ROOT_PASSWORD: &str = "bootstrap-password";

async fn app_with_admin(backend: Backend) -> TestApp {
    spawn_app_with(
        backend,
        &[
            ("AUTH_BOOTSTRAP_ADMIN_USERNAME", ROOT),
            ("AUTH_BOOTSTRAP_ADMIN_PASSWORD", ROOT_PASSWORD),
        ],
    )
    .await
}

async fn put_roles(app: &TestApp, admin: &str, id: &str, roles: &[&str]) -> Response {
    app.client
        .put(app.url(&format!("/auth/users/{id}/roles")))
        .bearer_auth(admin)
        .json(&json!({ "roles": roles }))
        .send()
        .await
        .unwrap()
}

async fn change_password(app: &TestApp, access: &str, current: &str, new: &str) -> Response {
    app.client
        .post(app.url("/auth/password"))
        .bearer_auth(access)
        .json(&json!({ "current_password": current, "new_password": new }))
        .send()
        .await
        .unwrap()
}

async fn logout_all(app: &TestApp, access: &str) -> Response {
    app.client
        .post(app.url("/auth/logout-all"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap()
}

/// Sends `request` in the background with `point` armed and returns once the request is held
/// there; the test then acts, releases the gate and awaits the answer.
async fn held_at(
    app: &TestApp,
    point: &'static str,
    request: reqwest::RequestBuilder,
) -> (
    std::sync::Arc<auth_service::pause::Gate>,
    tokio::task::JoinHandle<Response>,
) {
    let gate = app.pauses.arm(point);
    let answer = tokio::spawn(async move { request.send().await.unwrap() });
    gate.reached().await;
    (gate, answer)
}

fn refresh_request(app: &TestApp, refresh: &str) -> reqwest::RequestBuilder {
    app.client
        .post(app.url("/auth/refresh"))
        .bearer_auth(refresh)
}

fn password_request(app: &TestApp, access: &str) -> reqwest::RequestBuilder {
    app.client
        .post(app.url("/auth/password"))
        .bearer_auth(access)
        .json(&json!({ "current_password": PASSWORD, "new_password": "a new passphrase" }))
}

fn sub(token: &str) -> String {
    payload(token)["sub"].as_str().unwrap().to_owned()
}

/// `eve` with roles user + admin, logged in: her fresh admin token and root's.
async fn admin_eve(app: &TestApp, name: &str) -> (Tokens, Tokens) {
    let root = tokens(app.login(ROOT, ROOT_PASSWORD).await).await;
    let eve = app.signed_up(name).await;
    let promoted = put_roles(app, &root.access, &sub(&eve.access), &["user", "admin"]).await;
    assert_eq!(promoted.status(), StatusCode::OK);
    let eve = tokens(app.login(name, PASSWORD).await).await;
    assert_eq!(payload(&eve.access)["roles"], json!(["user", "admin"]));
    (eve, root)
}

/// The old token of a demoted admin is refused for reading and for admin work.
async fn assert_refused_everywhere(app: &TestApp, token: &str) {
    assert_error(
        app.me(token).await,
        StatusCode::UNAUTHORIZED,
        "token_revoked",
    )
    .await;
    let regrant = put_roles(app, token, &sub(token), &["user", "admin"]).await;
    assert_error(regrant, StatusCode::UNAUTHORIZED, "token_revoked").await;
}

/// Finding 1: the demotion's cut-off (no exception) landed first; her own password change,
/// excepting her token J, landed second and replaced it, so J kept admin rights.
async fn a_demotion_is_not_overwritten_by_a_password_change_in_flight(backend: Backend) {
    let app = app_with_admin(backend).await;
    let (eve, root) = admin_eve(&app, "eve").await;
    let (held, change) = held_at(
        &app,
        points::PASSWORD_BEFORE_CUTOFF,
        password_request(&app, &eve.access),
    )
    .await;

    let demoted = put_roles(&app, &root.access, &sub(&eve.access), &["user"]).await;
    assert_eq!(demoted.status(), StatusCode::OK);
    held.release();
    assert_eq!(change.await.unwrap().status(), StatusCode::NO_CONTENT);

    assert_refused_everywhere(&app, &eve.access).await;
}

/// Finding 1, the other order: the password change (sparing J) lands first, the demotion second.
async fn a_password_change_is_not_widened_by_a_later_demotion(backend: Backend) {
    let app = app_with_admin(backend).await;
    let (eve, root) = admin_eve(&app, "eve").await;
    let changed = change_password(&app, &eve.access, PASSWORD, "a new passphrase").await;
    assert_eq!(changed.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.me(&eve.access).await.status(), StatusCode::OK);

    let demoted = put_roles(&app, &root.access, &sub(&eve.access), &["user"]).await;

    assert_eq!(demoted.status(), StatusCode::OK);
    assert_refused_everywhere(&app, &eve.access).await;
}

/// A thief's refresh held at `point` while the owner ends every session (`"logout-all"` or a
/// password change); returns the app, the owner's tokens and the thief's answer.
async fn thief_refresh_held_while_owner_ends_all(
    backend: Backend,
    point: &'static str,
    end_all: &str,
) -> (TestApp, Tokens, Response) {
    let app = spawn_app_with(backend, &[]).await;
    let thief = app.signed_up("victim").await;
    let owner = tokens(app.login("victim", PASSWORD).await).await;
    let (held, refresh) = held_at(&app, point, refresh_request(&app, &thief.refresh)).await;

    let ended = match end_all {
        "logout-all" => logout_all(&app, &owner.access).await,
        _ => change_password(&app, &owner.access, PASSWORD, "a new passphrase").await,
    };
    assert_eq!(ended.status(), StatusCode::NO_CONTENT);
    held.release();

    (app, owner, refresh.await.unwrap())
}

/// Finding 2: a refresh that passed its revocation check before logout-all landed minted a pair
/// after the cut-off. Held between its check and its rotation, it must now be refused.
async fn a_refresh_paused_before_rotation_is_refused_after_logout_all(backend: Backend) {
    let (_, _, refresh) = thief_refresh_held_while_owner_ends_all(
        backend,
        points::REFRESH_BEFORE_ROTATE,
        "logout-all",
    )
    .await;
    assert_error(refresh, StatusCode::UNAUTHORIZED, "token_revoked").await;
}

/// Finding 2, the later window: the rotation is done and the pair is on its way out when
/// logout-all lands. The pair may be answered, but it is already dead.
async fn a_pair_minted_just_before_logout_all_is_covered_by_it(backend: Backend) {
    let (app, _, response) = thief_refresh_held_while_owner_ends_all(
        backend,
        points::REFRESH_AFTER_ROTATE,
        "logout-all",
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let minted = tokens(response).await;
    assert_error(
        app.me(&minted.access).await,
        StatusCode::UNAUTHORIZED,
        "token_revoked",
    )
    .await;
    assert_error(
        app.refresh(&minted.refresh).await,
        StatusCode::UNAUTHORIZED,
        "token_revoked",
    )
    .await;
}

/// Finding 2 on login: roles read, then argon2, then issue — a demotion in between must not
/// leave a pair with the old roles alive.
async fn a_login_that_read_the_old_roles_before_a_demotion_gets_the_new_ones(backend: Backend) {
    let app = app_with_admin(backend).await;
    let (eve, root) = admin_eve(&app, "eve").await;
    let (held, login) = held_at(
        &app,
        points::LOGIN_BEFORE_RECORD,
        app.client
            .post(app.url("/auth/login"))
            .json(&json!({ "username": "eve", "password": PASSWORD })),
    )
    .await;

    let demoted = put_roles(&app, &root.access, &sub(&eve.access), &["user"]).await;
    assert_eq!(demoted.status(), StatusCode::OK);
    held.release();

    let response = login.await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let fresh = tokens(response).await;
    assert_eq!(payload(&fresh.access)["roles"], json!(["user"]));
    let me: Value = app.me(&fresh.access).await.json().await.unwrap();
    assert_eq!(me["roles"], json!(["user"]));
}

/// Finding 2 with a password change instead of logout-all: a thief's refresh held before its
/// rotation is refused once the owner changed the password; the owner's token lives on.
async fn a_refresh_racing_a_password_change_is_refused(backend: Backend) {
    let (app, owner, refresh) =
        thief_refresh_held_while_owner_ends_all(backend, points::REFRESH_BEFORE_ROTATE, "password")
            .await;
    assert_error(refresh, StatusCode::UNAUTHORIZED, "token_revoked").await;
    assert_eq!(app.me(&owner.access).await.status(), StatusCode::OK);
}

/// Refreshes in a loop, alternating between instances, until refused; returns the last pair
/// that was handed out.
async fn refresh_until_refused(apps: [&TestApp; 2], mut current: Tokens) -> Tokens {
    let deadline = Instant::now() + Duration::from_secs(20);
    for turn in 0.. {
        assert!(
            Instant::now() < deadline,
            "a refresh loop outlived the cut-off"
        );
        let response = apps[turn % 2].refresh(&current.refresh).await;
        // A dependency too slow to answer (a loaded CI machine) is a 503: no pair was handed out,
        // and a client retries, as this thief does.
        if response.status() == StatusCode::SERVICE_UNAVAILABLE {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        if response.status() != StatusCode::OK {
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
            return current;
        }
        current = tokens(response).await;
    }
    unreachable!()
}

/// Property (finding 2): N thieves loop `POST /auth/refresh` on two instances while the owner
/// ends every session (logout-all or a password change): every family is dead afterwards,
/// including the last pair each loop was handed.
async fn refresh_loops_all_die(end_all: &str) {
    let first = spawn_app_with(Backend::Postgres, &[("AUTH_REFRESH_GRACE", "0")]).await;
    let second = first.another_instance().await;
    for trial in 0..3 {
        let name = format!("victim{trial}");
        first.signed_up(&name).await;
        let mut loops = Vec::new();
        for _ in 0..6 {
            let stolen = tokens(first.login(&name, PASSWORD).await).await;
            let (a, b) = (first.clone_handle(), second.clone_handle());
            loops.push(tokio::spawn(async move {
                refresh_until_refused([&a, &b], stolen).await
            }));
        }
        let owner = tokens(second.login(&name, PASSWORD).await).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let ended = match end_all {
            "logout-all" => logout_all(&second, &owner.access).await,
            _ => change_password(&second, &owner.access, PASSWORD, "a new passphrase").await,
        };
        assert_eq!(ended.status(), StatusCode::NO_CONTENT);
        for thief in loops {
            let last = thief.await.unwrap();
            for app in [&first, &second] {
                assert_error(
                    app.me(&last.access).await,
                    StatusCode::UNAUTHORIZED,
                    "token_revoked",
                )
                .await;
                let again = app.refresh(&last.refresh).await;
                assert_eq!(again.status(), StatusCode::UNAUTHORIZED);
            }
        }
        if end_all != "logout-all" {
            // The next trial's owner logs in with the password of this one's user only.
            assert_eq!(
                first.login(&name, "a new passphrase").await.status(),
                StatusCode::OK
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_refresh_loops_all_die_with_logout_all() {
    refresh_loops_all_die("logout-all").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_refresh_loops_all_die_with_a_password_change() {
    refresh_loops_all_die("password").await;
}

/// Property (finding 1): a demotion and the victim's own password change, sent at the same
/// moment to two instances, many times: her old token is refused every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demotion_racing_a_password_change_always_refuses_the_old_token() {
    let first = spawn_app_with(
        Backend::Postgres,
        &[
            ("AUTH_BOOTSTRAP_ADMIN_USERNAME", ROOT),
            ("AUTH_BOOTSTRAP_ADMIN_PASSWORD", ROOT_PASSWORD),
        ],
    )
    .await;
    let second = first.another_instance().await;
    for trial in 0..6 {
        let (eve, root) = admin_eve(&first, &format!("eve{trial}")).await;
        let id = sub(&eve.access);
        let (demoted, changed) = tokio::join!(
            put_roles(&first, &root.access, &id, &["user"]),
            change_password(&second, &eve.access, PASSWORD, "a new passphrase"),
        );
        assert_eq!(demoted.status(), StatusCode::OK);
        assert!(
            [StatusCode::NO_CONTENT, StatusCode::UNAUTHORIZED].contains(&changed.status()),
            "{}",
            changed.status()
        );
        assert_refused_everywhere(&first, &eve.access).await;
        assert_refused_everywhere(&second, &eve.access).await;
    }
}

/// Blocks every command of a Redis for `millis` (longer than the services' 2 s timeout), as a
/// Redis that hangs mid-request; what was stored stays.
async fn freeze(redis_url: &str, millis: u64) {
    let client = redis::Client::open(redis_url).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(millis)
        .arg("ALL")
        .query_async::<()>(&mut connection)
        .await
        .unwrap();
}

/// A password change by `pat` (who is also logged in elsewhere) held at `point` while its
/// private Redis freezes for longer than the services' timeout: the answer's message, and the
/// app and the other session, once Redis answers again.
async fn password_change_with_redis_frozen_at(
    point: &'static str,
) -> (String, TestApp, Tokens, shared::testing::PrivateRedis) {
    let redis = shared::testing::PrivateRedis::start();
    let app = spawn_app_with(Backend::Postgres, &[("REDIS_URL", &redis.url())]).await;
    let other = app.signed_up("pat").await;
    let owner = tokens(app.login("pat", PASSWORD).await).await;
    let (held, change) = held_at(&app, point, password_request(&app, &owner.access)).await;

    freeze(&redis.url(), 3_000).await;
    held.release();

    let body = assert_error(
        change.await.unwrap(),
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    (
        body["message"].as_str().unwrap().to_owned(),
        app,
        other,
        redis,
    )
}

/// Finding 4: Redis failed after the new hash was stored, before the cut-off was written: the
/// client was told "nothing was changed" while the attacker's old tokens kept working. Now the
/// sessions are cut off before the hash is stored, and the answer says what happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_change_with_redis_failing_halfway_is_answered_truthfully() {
    let (message, app, attacker, _redis) =
        password_change_with_redis_frozen_at(points::PASSWORD_AFTER_STORE).await;

    assert!(message.contains("password was changed"), "{message}");
    assert_error(
        app.me(&attacker.access).await,
        StatusCode::UNAUTHORIZED,
        "token_revoked",
    )
    .await;
    assert_eq!(
        app.refresh(&attacker.refresh).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.login("pat", "a new passphrase").await.status(),
        StatusCode::OK
    );
}

/// Finding 4, the first write: Redis hangs before anything is stored. The password is not
/// changed, and the answer says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_change_with_redis_failing_first_changes_no_password() {
    let (message, app, _, _redis) =
        password_change_with_redis_frozen_at(points::PASSWORD_BEFORE_CUTOFF).await;

    assert!(message.contains("NOT changed"), "{message}");
    assert_eq!(app.login("pat", PASSWORD).await.status(), StatusCode::OK);
}
