//! Liveness, readiness and metrics.

use std::collections::BTreeMap;

use actix_web::{web, HttpResponse};
use shared::{ErrorBody, ErrorCode};

use crate::state::AppState;
use shared::api_errors;

/// The operational routes, and this service's OpenAPI document.
pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(shared::server::healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(shared::server::metrics))
        .configure(super::openapi::config);
}

api_errors!(ReadyErrors: [Unavailable]);

/// Readiness: the database answers, the revocation replica is current and keys are loaded
///
/// When not ready, `fields` names each problem (`database`, `revocations`, `keys`).
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses((status = 200, description = "Ready", body = shared::openapi::Readiness), ReadyErrors)
)]
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
