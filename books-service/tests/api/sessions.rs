//! Session features seen from books-service: per-user cut-offs across instances, cookie mode.

use std::time::{Duration, Instant};

use reqwest::{Response, StatusCode};
use serde_json::json;

use crate::helpers::{assert_error, book, spawn_stack, Backend, PASSWORD};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_all_on_one_auth_instance_is_enforced_by_every_books_instance() {
    let stack = spawn_stack(Backend::Postgres).await;
    let second_auth = stack.another_auth_instance().await;
    let (second_books, _database) = stack.another_books_instance().await;
    let laptop = stack.user_with_roles("amara", "user").await;
    let phone = stack.login("amara").await;
    let books = [stack.books.clone(), second_books];
    for base in &books {
        for token in [&laptop.access, &phone.access] {
            let ok = stack
                .client
                .get(format!("{base}/books"))
                .bearer_auth(token)
                .send()
                .await;
            assert_eq!(ok.unwrap().status(), StatusCode::OK);
        }
    }

    let response = stack
        .client
        .post(format!("{second_auth}/auth/logout-all"))
        .bearer_auth(&phone.access)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    for base in &books {
        for token in [&laptop.access, &phone.access] {
            let refused = refused_soon(&stack.client, &format!("{base}/books"), token).await;
            assert_error(refused, StatusCode::UNAUTHORIZED, "token_revoked").await;
        }
    }
    let fresh = stack.login("amara").await;
    for base in &books {
        let ok = stack
            .client
            .get(format!("{base}/books"))
            .bearer_auth(&fresh.access)
            .send()
            .await;
        assert_eq!(
            ok.unwrap().status(),
            StatusCode::OK,
            "a new login is unaffected"
        );
    }
}

/// Polls until the request is refused (revocations travel by pub/sub), at most one second.
async fn refused_soon(client: &reqwest::Client, url: &str, token: &str) -> Response {
    refused_soon_with(|| client.get(url).bearer_auth(token)).await
}

async fn refused_soon_with(request: impl Fn() -> reqwest::RequestBuilder) -> Response {
    let started = Instant::now();
    loop {
        let response = request().send().await.unwrap();
        if response.status() != StatusCode::OK || started.elapsed() > Duration::from_secs(1) {
            return response;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_sessions_work_on_books_with_double_submit_csrf() {
    let stack = spawn_stack(Backend::Postgres).await;
    stack.user_with_roles("beatriz", "user,editor").await;
    let session = stack
        .client
        .post(format!("{}/auth/session", stack.auth))
        .json(&json!({ "username": "beatriz", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(session.status(), StatusCode::NO_CONTENT);
    let cookies: Vec<(String, String)> = session
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| {
            let pair = v.to_str().ok()?.split(';').next()?;
            let (name, value) = pair.split_once('=')?;
            Some((name.to_owned(), value.to_owned()))
        })
        .collect();
    let value = |name: &str| cookies.iter().find(|(n, _)| n == name).unwrap().1.clone();
    let cookie_header = format!(
        "access_token_cookie={}; csrf_access_token={}",
        value("access_token_cookie"),
        value("csrf_access_token")
    );
    let csrf = value("csrf_access_token");
    let books_url = stack.books_url("/books");

    let read = stack
        .client
        .get(&books_url)
        .header("cookie", &cookie_header)
        .send()
        .await;
    assert_eq!(read.unwrap().status(), StatusCode::OK, "cookie alone reads");
    let create = |csrf: Option<&str>| {
        let mut request = stack
            .client
            .post(&books_url)
            .header("cookie", &cookie_header)
            .json(&book("Cookies", "A. Baker"));
        if let Some(csrf) = csrf {
            request = request.header("X-CSRF-TOKEN", csrf);
        }
        async move { request.send().await.unwrap() }
    };
    assert_error(create(None).await, StatusCode::FORBIDDEN, "csrf_failed").await;
    assert_error(
        create(Some("forged")).await,
        StatusCode::FORBIDDEN,
        "csrf_failed",
    )
    .await;
    assert_eq!(create(Some(&csrf)).await.status(), StatusCode::CREATED);

    let logout = stack
        .client
        .delete(format!("{}/auth/session", stack.auth))
        .header("cookie", &cookie_header)
        .header("X-CSRF-TOKEN", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    let cleared = logout
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter(|v| v.to_str().unwrap().contains("Max-Age=0"))
        .count();
    assert_eq!(cleared, 3, "all three cookies cleared");
    let old_cookie = refused_soon_with(|| {
        stack
            .client
            .get(&books_url)
            .header("cookie", &cookie_header)
    })
    .await;
    assert_error(old_cookie, StatusCode::UNAUTHORIZED, "token_revoked").await;
}

/// Finding 1 of the security review, seen from books-service's replica: an admin demotes an
/// editor while her own password change (which spares her token J) is in flight. The replica
/// replaced the demotion's cut-off with the later one, so J could still create books. Both
/// cut-offs must hold on every verifier.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demoted_editors_token_stays_refused_after_her_own_password_change() {
    let stack = crate::helpers::spawn_stack_with(
        Backend::Postgres,
        &[
            ("AUTH_BOOTSTRAP_ADMIN_USERNAME", "root"),
            ("AUTH_BOOTSTRAP_ADMIN_PASSWORD", "bootstrap-password"),
        ],
        &[],
        crate::helpers::redis_url(),
    )
    .await;
    let eve = stack.user_with_roles("eve", "user,editor").await;
    let created = stack.create_book(&eve.access, &book("Before", "Eve")).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let root = crate::helpers::tokens(
        stack
            .client
            .post(format!("{}/auth/login", stack.auth))
            .json(&json!({ "username": "root", "password": "bootstrap-password" }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let id = crate::helpers::payload(&eve.access)["sub"]
        .as_str()
        .unwrap()
        .to_owned();

    // Her password change has passed its checks when the demotion lands.
    let held = stack
        .auth_pauses
        .arm(auth_service::pause::points::PASSWORD_BEFORE_CUTOFF);
    let change = stack
        .client
        .post(format!("{}/auth/password", stack.auth))
        .bearer_auth(&eve.access)
        .json(&json!({ "current_password": PASSWORD, "new_password": "a new passphrase" }));
    let change = tokio::spawn(async move { change.send().await.unwrap() });
    held.reached().await;
    let demoted = stack
        .client
        .put(format!("{}/auth/users/{id}/roles", stack.auth))
        .bearer_auth(&root.access)
        .json(&json!({ "roles": ["user"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(demoted.status(), StatusCode::OK);
    held.release();
    assert_eq!(change.await.unwrap().status(), StatusCode::NO_CONTENT);

    let refused = refused_soon_with(|| {
        stack
            .client
            .post(stack.books_url("/books"))
            .bearer_auth(&eve.access)
            .json(&book("After", "Eve"))
    })
    .await;
    assert_error(refused, StatusCode::UNAUTHORIZED, "token_revoked").await;
}

/// Property (finding 2 of the security review, seen by every verifier): six thieves loop
/// `POST /auth/refresh` on two auth instances while the owner logs out everywhere; afterwards
/// the last access token each thief was handed is refused by both books instances.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_loops_racing_logout_all_leave_no_token_books_accepts() {
    let stack = crate::helpers::spawn_stack_with(
        Backend::Postgres,
        &[("AUTH_REFRESH_GRACE", "0")],
        &[],
        crate::helpers::redis_url(),
    )
    .await;
    let auths = [stack.auth.clone(), stack.another_auth_instance().await];
    let (second_books, _database) = stack.another_books_instance().await;
    let owner = stack.user_with_roles("olga", "user").await;
    let mut thieves = Vec::new();
    for _ in 0..6 {
        let mut current = stack.login("olga").await;
        let (client, auths) = (stack.client.clone(), auths.clone());
        thieves.push(tokio::spawn(async move {
            for turn in 0.. {
                let response = client
                    .post(format!("{}/auth/refresh", auths[turn % 2]))
                    .bearer_auth(&current.refresh)
                    .send()
                    .await
                    .unwrap();
                if response.status() != StatusCode::OK {
                    return current;
                }
                current = crate::helpers::tokens(response).await;
            }
            unreachable!()
        }));
    }
    tokio::time::sleep(Duration::from_millis(50)).await;

    let ended = stack
        .client
        .post(format!("{}/auth/logout-all", auths[1]))
        .bearer_auth(&owner.access)
        .send()
        .await
        .unwrap();
    assert_eq!(ended.status(), StatusCode::NO_CONTENT);

    for thief in thieves {
        let last = tokio::time::timeout(Duration::from_secs(20), thief)
            .await
            .expect("every refresh loop ends")
            .unwrap();
        for books in [&stack.books, &second_books] {
            let refused =
                refused_soon(&stack.client, &format!("{books}/books"), &last.access).await;
            assert_error(refused, StatusCode::UNAUTHORIZED, "token_revoked").await;
        }
    }
}
