//! Cookie mode: HttpOnly token cookies, double-submit CSRF, implicit refresh, cookie logout.

use std::collections::HashMap;

use reqwest::{Method, Response, StatusCode};
use serde_json::json;

use crate::both_backends;
use crate::helpers::{assert_error, payload, spawn_app_with, Backend, TestApp, PASSWORD};

both_backends!(
    a_cookie_session_works_with_csrf_and_ends_cleanly,
    cookies_near_expiry_are_renewed_implicitly,
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

async fn cookies_near_expiry_are_renewed_implicitly(backend: Backend) {
    // A window as long as the token's life: every cookie request renews.
    let app = spawn_app_with(backend, &[("AUTH_COOKIE_REFRESH_WINDOW", "900")]).await;
    let (mut browser, _) = log_in(&app, "zora").await;
    let before = browser.cookies["access_token_cookie"].clone();

    let response = browser.send(Method::GET, "/auth/me", None).await;

    assert_eq!(response.status(), StatusCode::OK);
    let after = browser.cookies["access_token_cookie"].clone();
    assert_ne!(after, before);
    let (old, new) = (payload(&before), payload(&after));
    assert_ne!(new["jti"], old["jti"]);
    assert_eq!(new["fresh"], false);
    assert_eq!(new["csrf"], old["csrf"]);
    assert_eq!(new["fam"], old["fam"]);
    assert_eq!(
        browser.send(Method::GET, "/auth/me", None).await.status(),
        StatusCode::OK
    );
    // Bearer requests never get cookies.
    let bearer = app.me(&after).await;
    assert!(set_cookies(&bearer).is_empty());
}
