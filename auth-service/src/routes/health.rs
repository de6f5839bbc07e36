//! Liveness, readiness and metrics.

use actix_web::{web, HttpResponse};
use shared::server::ReadinessReport;

use crate::state::AppState;
use shared::api_errors;

/// The operational routes.
pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(shared::server::healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(shared::server::metrics));
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
    let revocations = &state.auth.revocations;
    let mut report = ReadinessReport::default();
    report.check("database", state.users.ping().await, "unreachable");
    report.check(revocations.kind(), revocations.ready().await, "unreachable");
    report.respond(revocations.kind())
}
