//! Liveness, readiness and metrics.

use actix_web::{web, HttpResponse};
use shared::{ErrorBody, ErrorCode};

use crate::startup::AppState;

pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(shared::server::healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(shared::server::metrics));
}

/// Ready when the database answers and the revocation store can be reached.
async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let mut problems = std::collections::BTreeMap::new();
    if let Err(err) = state.users.ping().await {
        tracing::warn!(error = %err, "readiness: database");
        problems.insert("database".to_owned(), "unreachable".to_owned());
    }
    if let Err(err) = state.revocations.ready().await {
        tracing::warn!(error = %err, "readiness: revocation store");
        problems.insert(
            state.revocations.kind().to_owned(),
            "unreachable".to_owned(),
        );
    }
    if problems.is_empty() {
        HttpResponse::Ok().json(serde_json::json!({
            "status": "ready",
            "revocation_store": state.revocations.kind(),
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
