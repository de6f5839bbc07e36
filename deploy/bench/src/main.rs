//! `bare-verify`: the benchmark's baseline (`deploy/bench.py`). `GET /verify` does only the RS256
//! verification books-service does, with keys from `JWKS_URL`, behind the same server and
//! middleware, so the harness can say how much of a verified GET is the verification itself.

use shared::server::exit;

#[tokio::main]
async fn main() {
    shared::telemetry::init("warn");
    bare_verify().await.unwrap_or_else(|e| exit(1, e));
}

/// The benchmark baseline (`deploy/bench.py`): `GET /verify` does only the RS256 verification
/// books-service does, with keys from `JWKS_URL`, behind the same middleware.
async fn bare_verify() -> Result<(), String> {
    use actix_web::{web, HttpRequest, HttpResponse};
    use std::sync::Arc;

    let jwks_url = std::env::var("JWKS_URL").map_err(|_| "JWKS_URL is required".to_owned())?;
    let listen = std::env::var("LISTEN_ADDR")
        .unwrap_or_else(|_| "127.0.0.1:8090".into())
        .parse()
        .map_err(|_| "invalid configuration: LISTEN_ADDR".to_owned())?;
    let jwks: shared::jwks::Jwks = reqwest::get(&jwks_url)
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    let verifier = Arc::new(
        shared::TokenVerifier::new(
            &shared::VerifierConfig {
                issuer: std::env::var("JWT_ISSUER")
                    .unwrap_or_else(|_| shared::config::DEFAULT_PUBLIC_URL.into()),
                audience: std::env::var("JWT_AUDIENCE").unwrap_or_else(|_| "authbooks-api".into()),
                leeway: 30,
            },
            shared::KeySet::from_jwks(&jwks),
        )
        // Remembers verified tokens exactly as books-service does (`VERIFIED_TOKEN_CACHE`, same
        // default), so the baseline stays "books-service's verification and nothing else".
        .with_verified_cache(
            std::env::var("VERIFIED_TOKEN_CACHE")
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(1024),
        ),
    );
    async fn verify(verifier: web::Data<shared::TokenVerifier>, req: HttpRequest) -> HttpResponse {
        let token = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        match verifier.verify_access(token) {
            Ok(claims) => HttpResponse::Ok().json(serde_json::json!({ "sub": claims.sub })),
            Err(err) => actix_web::ResponseError::error_response(&err),
        }
    }
    let verifier = web::Data::from(verifier);
    let workers = std::env::var("HTTP_WORKERS")
        .ok()
        .and_then(|w| w.parse().ok());
    let bound = shared::server::bind(
        "bare-verify",
        listen,
        workers,
        move |cfg: &mut web::ServiceConfig| {
            cfg.app_data(verifier.clone())
                .route("/verify", web::get().to(verify))
                .route("/readyz", web::get().to(shared::server::healthz));
        },
    )?;
    bound.server.await.map_err(|e| e.to_string())
}
