//! JWKS, discovery document, health, readiness and metrics.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{payload, spawn_app, spawn_app_with, Backend};

both_backends!(
    access_tokens_verify_against_the_published_jwks_independently,
    openid_configuration_points_at_the_jwks,
    health_readiness_and_metrics,
    an_emergency_rotation_refuses_the_old_keys_tokens_within_a_reload,
);

async fn an_emergency_rotation_refuses_the_old_keys_tokens_within_a_reload(backend: Backend) {
    let app = spawn_app_with(backend, &[("AUTH_KEYS_RELOAD_SECS", "1")]).await;
    let before = app.signed_up("ottilie").await;
    let old_kid = jsonwebtoken::decode_header(&before.access)
        .unwrap()
        .kid
        .unwrap();

    let report =
        auth_service::keys::rotate_emergency(std::path::Path::new(&app.keys_dir()), 900).unwrap();

    let new_kid = report["kid"].as_str().unwrap().to_owned();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let jwks: Value = app
            .get("/.well-known/jwks.json")
            .await
            .json()
            .await
            .unwrap();
        let kids: Vec<_> = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect();
        if kids == [new_kid.clone()] {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still published: {kids:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // Signing with the new key at once, despite the 15-minute activation delay.
    let after = crate::helpers::tokens(app.login("ottilie", crate::helpers::PASSWORD).await).await;
    assert_eq!(
        jsonwebtoken::decode_header(&after.access)
            .unwrap()
            .kid
            .unwrap(),
        new_kid
    );
    // Everything the retired key signed is refused: the session must log in again.
    assert_ne!(old_kid, new_kid);
    assert_eq!(
        app.me(&before.access).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.refresh(&before.refresh).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(app.me(&after.access).await.status(), StatusCode::OK);
}

async fn access_tokens_verify_against_the_published_jwks_independently(backend: Backend) {
    let app = spawn_app(backend).await;
    let tokens = app.signed_up("rupert").await;

    let response = app.get("/.well-known/jwks.json").await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "public, max-age=300");
    let jwks: Value = response.json().await.unwrap();
    let key = &jwks["keys"][0];
    assert_eq!(key["kty"], "RSA");
    assert_eq!(key["alg"], "RS256");
    assert_eq!(key["use"], "sig");
    // Verified with jsonwebtoken directly, not with our shared verifier.
    let header = jsonwebtoken::decode_header(&tokens.access).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::RS256);
    assert_eq!(header.kid.as_deref(), key["kid"].as_str());
    let decoding = jsonwebtoken::DecodingKey::from_rsa_components(
        key["n"].as_str().unwrap(),
        key["e"].as_str().unwrap(),
    )
    .unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_issuer(&["http://127.0.0.1:8081"]);
    validation.set_audience(&["authbooks-api"]);
    let data = jsonwebtoken::decode::<Value>(&tokens.access, &decoding, &validation).unwrap();
    assert_eq!(data.claims["username"], "rupert");
}

async fn openid_configuration_points_at_the_jwks(backend: Backend) {
    let public = "https://id.example.test/authbooks";
    let app = spawn_app_with(backend, &[("AUTH_PUBLIC_URL", public)]).await;
    let tokens = app.signed_up("quentin").await;

    let openid: Value = app
        .get("/.well-known/openid-configuration")
        .await
        .json()
        .await
        .unwrap();
    let rfc8414: Value = app
        .get("/.well-known/oauth-authorization-server")
        .await
        .json()
        .await
        .unwrap();

    assert_eq!(openid, rfc8414);
    // The issuer is the public URL, and exactly the `iss` of every token.
    assert_eq!(rfc8414["issuer"], public);
    assert_eq!(payload(&tokens.access)["iss"], public);
    assert_eq!(payload(&tokens.refresh)["iss"], public);
    for (field, path) in [
        ("jwks_uri", "/.well-known/jwks.json"),
        ("token_endpoint", "/oauth/token"),
        ("revocation_endpoint", "/oauth/revoke"),
        ("introspection_endpoint", "/oauth/introspect"),
    ] {
        assert_eq!(rfc8414[field], format!("{public}{path}"), "{field}");
        // Each endpoint exists here (the public URL's path prefix is the gateway's business).
        let method = if field == "jwks_uri" { "GET" } else { "POST" };
        let response = app
            .client
            .request(method.parse().unwrap(), app.url(path))
            .send()
            .await
            .unwrap();
        assert_ne!(response.status(), StatusCode::NOT_FOUND, "{path}");
    }
    assert_eq!(
        rfc8414["grant_types_supported"],
        json!(["client_credentials"])
    );
    assert_eq!(
        rfc8414["token_endpoint_auth_methods_supported"],
        json!(["client_secret_basic", "client_secret_post"])
    );
    assert_eq!(
        rfc8414["scopes_supported"],
        json!([
            "books:read",
            "books:write",
            "introspect",
            "revocations:read"
        ])
    );
    assert!(rfc8414["response_types_supported"]
        .as_array()
        .is_some_and(|a| !a.is_empty()));
    // Only endpoints that exist: no login or logout under OAuth names.
    for absent in [
        "authorization_endpoint",
        "userinfo_endpoint",
        "refresh_endpoint",
    ] {
        assert!(rfc8414.get(absent).is_none(), "{absent}");
    }
}

async fn health_readiness_and_metrics(backend: Backend) {
    let app = spawn_app(backend).await;

    assert_eq!(app.get("/healthz").await.status(), StatusCode::OK);
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), StatusCode::OK);
    assert!(ready.headers().contains_key("x-request-id"));
    let body: Value = ready.json().await.unwrap();
    let expected = if backend == Backend::Postgres {
        "redis"
    } else {
        "memory"
    };
    assert_eq!(body["revocation_store"], expected);

    app.signed_up("sybil").await;
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("auth_logins_total{result=\"success\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("http_requests_total{service=\"auth-service\",status=\"200\"}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_publishes_a_new_key_that_signs_after_the_delay() {
    let app =
        crate::helpers::spawn_app_with(Backend::Sqlite, &[("AUTH_KEYS_RELOAD_SECS", "1")]).await;
    let before = app.signed_up("rotation").await;
    let old_kid = jsonwebtoken::decode_header(&before.access)
        .unwrap()
        .kid
        .unwrap();

    let output = std::process::Command::new(env!("CARGO_BIN_EXE_auth-service"))
        .args(["keys", "rotate"])
        .env("AUTH_KEYS_DIR", app.keys_dir())
        .output()
        .unwrap();

    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let new_kid = report["kid"].as_str().unwrap().to_owned();
    assert_ne!(new_kid, old_kid);
    let mut published = Vec::new();
    for _ in 0..50 {
        let jwks: Value = app
            .get("/.well-known/jwks.json")
            .await
            .json()
            .await
            .unwrap();
        published = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect();
        if published.len() == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        published.contains(&new_kid) && published.contains(&old_kid),
        "{published:?}"
    );
    // Within the activation delay (the JWKS max-age) the old key still signs, and its tokens work.
    let after = crate::helpers::tokens(app.login("rotation", crate::helpers::PASSWORD).await).await;
    assert_eq!(
        jsonwebtoken::decode_header(&after.access)
            .unwrap()
            .kid
            .unwrap(),
        old_kid
    );
    assert_eq!(app.me(&before.access).await.status(), StatusCode::OK);
}
