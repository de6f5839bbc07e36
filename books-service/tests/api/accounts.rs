//! Account features of auth-service seen from books-service, with two auth and two books
//! instances on PostgreSQL and Redis: ending one session by id, disabling a user.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{assert_error, spawn_stack, Backend};

/// GETs `url` with `token` until it is refused or a second has passed; the last answer.
async fn refused_within_a_second(
    client: &reqwest::Client,
    url: &str,
    token: &str,
) -> reqwest::Response {
    let started = Instant::now();
    loop {
        let response = client.get(url).bearer_auth(token).send().await.unwrap();
        if response.status() != StatusCode::OK || started.elapsed() > Duration::from_secs(1) {
            return response;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn get_status(client: &reqwest::Client, url: &str, token: &str) -> StatusCode {
    client
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ending_one_session_on_one_auth_instance_is_refused_by_both_books_instances() {
    let stack = spawn_stack(Backend::Postgres).await;
    let second_auth = stack.another_auth_instance().await;
    let (second_books, _database) = stack.another_books_instance().await;
    let laptop = stack.user_with_roles("ines", "user").await;
    let phone = stack.login("ines").await;
    let books = [stack.books.clone(), second_books];

    // The phone lists the sessions on the other auth instance and ends the laptop's.
    let listed: Value = stack
        .client
        .get(format!("{second_auth}/auth/sessions"))
        .bearer_auth(&phone.access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let items = listed["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{listed}");
    let laptop_session = items.iter().find(|s| s["current"] == false).unwrap();
    let ended = stack
        .client
        .delete(format!(
            "{second_auth}/auth/sessions/{}",
            laptop_session["id"].as_str().unwrap()
        ))
        .bearer_auth(&phone.access)
        .send()
        .await
        .unwrap();
    assert_eq!(ended.status(), StatusCode::NO_CONTENT);

    for base in &books {
        let url = format!("{base}/books");
        let refused = refused_within_a_second(&stack.client, &url, &laptop.access).await;
        assert_error(refused, StatusCode::UNAUTHORIZED, "token_revoked").await;
        assert_eq!(
            get_status(&stack.client, &url, &phone.access).await,
            StatusCode::OK,
            "the other session is untouched"
        );
    }
    // The ended session's refresh token is dead too, on the first auth instance.
    let refresh = stack
        .client
        .post(format!("{}/auth/refresh", stack.auth))
        .bearer_auth(&laptop.refresh)
        .send()
        .await
        .unwrap();
    assert_error(refresh, StatusCode::UNAUTHORIZED, "token_revoked").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_users_tokens_are_refused_everywhere_and_login_and_refresh_say_so() {
    let stack = spawn_stack(Backend::Postgres).await;
    let second_auth = stack.another_auth_instance().await;
    let (second_books, _database) = stack.another_books_instance().await;
    let admin = stack.user_with_roles("root-admin", "user,admin").await;
    let victim = stack.user_with_roles("jonas", "user").await;
    let books = [stack.books.clone(), second_books];
    for base in &books {
        let url = format!("{base}/books");
        assert_eq!(
            get_status(&stack.client, &url, &victim.access).await,
            StatusCode::OK
        );
    }
    let me: Value = stack
        .client
        .get(format!("{}/auth/me", stack.auth))
        .bearer_auth(&victim.access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = me["id"].as_str().unwrap();

    let disabled = stack
        .client
        .post(format!("{second_auth}/auth/users/{id}/disable"))
        .bearer_auth(&admin.access)
        .send()
        .await
        .unwrap();
    assert_eq!(disabled.status(), StatusCode::OK);
    let body: Value = disabled.json().await.unwrap();
    assert_eq!(body["disabled"], true);

    for base in &books {
        let url = format!("{base}/books");
        let refused = refused_within_a_second(&stack.client, &url, &victim.access).await;
        assert_error(refused, StatusCode::UNAUTHORIZED, "token_revoked").await;
    }
    let login = stack
        .client
        .post(format!("{}/auth/login", stack.auth))
        .json(&serde_json::json!({ "username": "jonas", "password": crate::helpers::PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_error(login, StatusCode::FORBIDDEN, "account_disabled").await;
    let refresh = stack
        .client
        .post(format!("{}/auth/refresh", stack.auth))
        .bearer_auth(&victim.refresh)
        .send()
        .await
        .unwrap();
    assert_error(refresh, StatusCode::FORBIDDEN, "account_disabled").await;

    let enabled = stack
        .client
        .post(format!("{}/auth/users/{id}/enable", stack.auth))
        .bearer_auth(&admin.access)
        .send()
        .await
        .unwrap();
    assert_eq!(enabled.status(), StatusCode::OK);
    let again = stack.login("jonas").await;
    for base in &books {
        let url = format!("{base}/books");
        assert_eq!(
            get_status(&stack.client, &url, &again.access).await,
            StatusCode::OK
        );
        assert_eq!(
            get_status(&stack.client, &url, &victim.access).await,
            StatusCode::UNAUTHORIZED,
            "enabling does not bring the old tokens back"
        );
    }
}
