//! Liveness, readiness and metrics.

use std::collections::BTreeMap;

use actix_web::{web, HttpResponse};
use shared::{ErrorBody, ErrorCode};

use crate::startup::AppState;

pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(shared::server::healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(shared::server::metrics));
}

/// Ready when the database answers, the revocation replica is current and keys are loaded.
async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let mut problems = BTreeMap::new();
    if let Err(err) = state.books.ping().await {
        tracing::warn!(error = %err, "readiness: database");
        problems.insert("database".to_owned(), "unreachable".to_owned());
    }
    if let Err(err) = state.revocations.ready().await {
        tracing::warn!(error = %err, "readiness: revocations");
        problems.insert("revocations".to_owned(), "not in sync".to_owned());
    }
    if !state.keys.is_loaded() {
        problems.insert("keys".to_owned(), "JWKS not loaded yet".to_owned());
    }
    if problems.is_empty() {
        HttpResponse::Ok().json(serde_json::json!({
            "status": "ready",
            "revocation_store": state.revocations.kind(),
        }))
    } else {
        ErrorBody::new(ErrorCode::Unavailable, "not ready")
            .with_fields(problems)
            .into_response()
    }
}
