//! Liveness, readiness and metrics.

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

/// Readiness: the database answers and the revocation store can be reached
///
/// When not ready, `fields` names each unreachable dependency.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses((status = 200, description = "Ready", body = shared::openapi::Readiness), ReadyErrors)
)]
async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let mut problems = std::collections::BTreeMap::new();
    if let Err(err) = state.users.ping().await {
        tracing::warn!(error = %err, "readiness: database");
        problems.insert("database".to_owned(), "unreachable".to_owned());
    }
    if let Err(err) = state.auth.revocations.ready().await {
        tracing::warn!(error = %err, "readiness: revocation store");
        problems.insert(
            state.auth.revocations.kind().to_owned(),
            "unreachable".to_owned(),
        );
    }
    if problems.is_empty() {
        HttpResponse::Ok().json(serde_json::json!({
            "status": "ready",
            "revocation_store": state.auth.revocations.kind(),
        }))
    } else {
        ErrorBody::new(
            ErrorCode::Unavailable,
            "not ready: a dependency is unreachable",
        )
        .with_fields(problems)
        .into_response()
    }
}
