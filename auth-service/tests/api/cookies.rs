//! Cookie mode: HttpOnly token cookies, double-submit CSRF, cookie refresh, cookie logout; and
//! no cookie is ever set outside those three answers.

use std::collections::HashMap;

use reqwest::{Method, Response, StatusCode};
use serde_json::json;

use crate::both_backends;
use crate::helpers::{assert_error, payload, spawn_app_with, Backend, TestApp, PASSWORD};

both_backends!(
    a_cookie_session_works_with_csrf_and_ends_cleanly,
    logout_with_near_expiry_cookies_sets_no_new_cookie,
    no_answer_but_login_refresh_and_logout_sets_cookies,
    a_cookie_login_over_another_users_cookies_sets_only_the_new_ones,
    cookie_refresh_body_carries_no_token,
);

/// `name -> (value, attributes)` of every `Set-Cookie` in a response.
fn set_cookies(response: &Response) -> HashMap<String, (String, String)> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|line| {
            let (pair, attributes) = line.split_once(';').unwrap_or((line, ""));
            let (name, value) = pair.split_once('=')?;
            Some((name.to_owned(), (value.to_owned(), attributes.to_owned())))
        })
        .collect()
}

struct Browser<'a> {
    app: &'a TestApp,
    cookies: HashMap<String, String>,
}

impl Browser<'_> {
    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn send(&mut self, method: Method, path: &str, csrf: Option<&str>) -> Response {
        let mut request = self
            .app
            .client
            .request(method, self.app.url(path))
            .header("cookie", self.cookie_header());
        if let Some(csrf) = csrf {
            request = request.header("X-CSRF-TOKEN", csrf);
        }
        let response = request.send().await.unwrap();
        for (name, (value, _)) in set_cookies(&response) {
            if value.is_empty() {
                self.cookies.remove(&name);
            } else {
                self.cookies.insert(name, value);
            }
        }
        response
    }

    fn csrf(&self) -> String {
        self.cookies["csrf_access_token"].clone()
    }
}

async fn log_in<'a>(app: &'a TestApp, username: &str) -> (Browser<'a>, Response) {
    app.register(username, PASSWORD).await;
    let response = app
        .post_json(
            "/auth/session",
            &json!({ "username": username, "password": PASSWORD }),
        )
        .await;
    let cookies = set_cookies(&response)
        .into_iter()
        .map(|(name, (value, _))| (name, value))
        .collect();
    (Browser { app, cookies }, response)
}

async fn a_cookie_session_works_with_csrf_and_ends_cleanly(backend: Backend) {
    let app = spawn_app_with(backend, &[("AUTH_COOKIE_SECURE", "true")]).await;
    let (mut browser, login) = log_in(&app, "yolanda").await;

    assert_eq!(login.status(), StatusCode::NO_CONTENT);
    let cookies = set_cookies(&login);
    let attributes = |name: &str| cookies[name].1.to_ascii_lowercase();
    for name in ["access_token_cookie", "refresh_token_cookie"] {
        assert!(
            attributes(name).contains("httponly"),
            "{name}: {}",
            attributes(name)
        );
    }
    for name in [
        "access_token_cookie",
        "refresh_token_cookie",
        "csrf_access_token",
    ] {
        assert!(attributes(name).contains("samesite=lax"), "{name}");
        assert!(attributes(name).contains("secure"), "{name}");
    }
    assert!(!attributes("csrf_access_token").contains("httponly"));
    assert!(attributes("refresh_token_cookie").contains("path=/auth"));
    let access = &cookies["access_token_cookie"].0;
    assert_eq!(
        payload(access)["csrf"],
        browser.csrf().as_str(),
        "CSRF value bound into the JWT"
    );

    assert_eq!(
        browser.send(Method::GET, "/auth/me", None).await.status(),
        StatusCode::OK
    );
    let no_header = browser.send(Method::POST, "/auth/logout-all", None).await;
    assert_error(no_header, StatusCode::FORBIDDEN, "csrf_failed").await;
    let wrong = browser
        .send(Method::POST, "/auth/logout-all", Some("forged"))
        .await;
    assert_error(wrong, StatusCode::FORBIDDEN, "csrf_failed").await;

    let old_access = browser.cookies["access_token_cookie"].clone();
    let csrf = browser.csrf();
    let refreshed = browser
        .send(Method::POST, "/auth/refresh", Some(&csrf))
        .await;
    assert_eq!(refreshed.status(), StatusCode::OK);
    assert_ne!(
        browser.cookies["access_token_cookie"], old_access,
        "cookies renewed"
    );
    assert_eq!(
        browser.send(Method::GET, "/auth/me", None).await.status(),
        StatusCode::OK
    );

    let without_csrf = browser.send(Method::DELETE, "/auth/session", None).await;
    assert_error(without_csrf, StatusCode::FORBIDDEN, "csrf_failed").await;
    let session_access = browser.cookies["access_token_cookie"].clone();
    let logout = browser
        .send(Method::DELETE, "/auth/session", Some(&csrf))
        .await;
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    assert!(
        browser.cookies.is_empty(),
        "cookies cleared: {:?}",
        browser.cookies
    );

    browser
        .cookies
        .insert("access_token_cookie".into(), session_access);
    let replayed = browser.send(Method::GET, "/auth/me", None).await;
    assert_error(replayed, StatusCode::UNAUTHORIZED, "token_revoked").await;
}

/// Finding 3: implicit renewal answered `POST /auth/logout` with 204 *and* a new valid access
/// cookie. Tokens here live 60 s, well inside the old 300 s renewal window.
async fn logout_with_near_expiry_cookies_sets_no_new_cookie(backend: Backend) {
    let app = spawn_app_with(backend, &[("ACCESS_TOKEN_TTL", "60")]).await;
    let (mut browser, _) = log_in(&app, "zora").await;
    let csrf = browser.csrf();
    let access = browser.cookies["access_token_cookie"].clone();

    let logout = browser
        .send(Method::POST, "/auth/logout", Some(&csrf))
        .await;

    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    assert!(
        set_cookies(&logout).is_empty(),
        "{:?}",
        set_cookies(&logout)
    );
    assert_eq!(browser.cookies["access_token_cookie"], access);
    let me = browser.send(Method::GET, "/auth/me", None).await;
    assert_error(me, StatusCode::UNAUTHORIZED, "token_revoked").await;

    let (mut other, _) = log_in(&app, "zeno").await;
    let csrf = other.csrf();
    let all = other
        .send(Method::POST, "/auth/logout-all", Some(&csrf))
        .await;
    assert_eq!(all.status(), StatusCode::NO_CONTENT);
    assert!(set_cookies(&all).is_empty());
    let me = other.send(Method::GET, "/auth/me", None).await;
    assert_error(me, StatusCode::UNAUTHORIZED, "token_revoked").await;
}

/// Finding 3: renewal worked on `GET /healthz` and put `Set-Cookie` on `Cache-Control: public`
/// answers (JWKS, discovery), so a stolen access cookie lived forever.
async fn no_answer_but_login_refresh_and_logout_sets_cookies(backend: Backend) {
    let app = spawn_app_with(backend, &[("ACCESS_TOKEN_TTL", "60")]).await;
    let (mut browser, _) = log_in(&app, "ursula").await;
    for path in [
        "/healthz",
        "/readyz",
        "/auth/me",
        "/.well-known/jwks.json",
        "/.well-known/openid-configuration",
        "/openapi.json",
    ] {
        let response = browser.send(Method::GET, path, None).await;
        assert!(response.status().is_success(), "{path}");
        assert!(set_cookies(&response).is_empty(), "{path} set a cookie");
    }
}

/// Finding 3: `POST /auth/session` while holding another user's cookies appended the old user's
/// renewed cookie after the new ones, so the browser kept the old session.
async fn a_cookie_login_over_another_users_cookies_sets_only_the_new_ones(backend: Backend) {
    let app = spawn_app_with(backend, &[("ACCESS_TOKEN_TTL", "60")]).await;
    let (mut browser, _) = log_in(&app, "mallory").await;
    app.register("alice", PASSWORD).await;

    let response = browser
        .app
        .client
        .post(app.url("/auth/session"))
        .header("cookie", browser.cookie_header())
        .json(&json!({ "username": "alice", "password": PASSWORD }))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let lines = response.headers().get_all("set-cookie").iter().count();
    assert_eq!(lines, 3, "one of each cookie, no more");
    let cookies = set_cookies(&response);
    assert_eq!(
        payload(&cookies["access_token_cookie"].0)["username"],
        "alice"
    );
    browser.cookies = cookies.into_iter().map(|(k, (v, _))| (k, v)).collect();
    let me: serde_json::Value = browser
        .send(Method::GET, "/auth/me", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["username"], "alice");
}

/// Finding 10: a cookie-mode refresh returned both tokens in its JSON body, so page scripts
/// could read the 30-day refresh token that the HttpOnly cookie is meant to hide.
async fn cookie_refresh_body_carries_no_token(backend: Backend) {
    let app = spawn_app_with(backend, &[]).await;
    let (mut browser, _) = log_in(&app, "petra").await;
    let csrf = browser.csrf();
    let old_refresh = browser.cookies["refresh_token_cookie"].clone();

    let response = browser
        .send(Method::POST, "/auth/refresh", Some(&csrf))
        .await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(body.get("access_token").is_none(), "{body}");
    assert!(body.get("refresh_token").is_none(), "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["expires_in"].as_u64().is_some_and(|s| s > 0));
    assert_ne!(browser.cookies["refresh_token_cookie"], old_refresh);
    assert_eq!(
        browser.send(Method::GET, "/auth/me", None).await.status(),
        StatusCode::OK
    );
}
