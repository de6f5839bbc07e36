//! JWKS, discovery document, health, readiness and metrics.

use reqwest::StatusCode;
use serde_json::Value;

use crate::both_backends;
use crate::helpers::{spawn_app, Backend};

both_backends!(
    access_tokens_verify_against_the_published_jwks_independently,
    openid_configuration_points_at_the_jwks,
    health_readiness_and_metrics,
);

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
    validation.set_issuer(&["authbooks"]);
    validation.set_audience(&["authbooks-api"]);
    let data = jsonwebtoken::decode::<Value>(&tokens.access, &decoding, &validation).unwrap();
    assert_eq!(data.claims["username"], "rupert");
}

async fn openid_configuration_points_at_the_jwks(backend: Backend) {
    let app = spawn_app(backend).await;

    let body: Value = app
        .get("/.well-known/openid-configuration")
        .await
        .json()
        .await
        .unwrap();

    assert_eq!(body["issuer"], "authbooks");
    assert_eq!(body["jwks_uri"], app.url("/.well-known/jwks.json"));
    assert_eq!(body["token_endpoint"], app.url("/auth/login"));
    assert_eq!(body["revocation_endpoint"], app.url("/auth/logout"));
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
