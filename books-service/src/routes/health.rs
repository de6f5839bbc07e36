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
    let mut report = ReadinessReport::default();
    report.check("database", state.books.ping().await, "unreachable");
    report.check(
        "revocations",
        state.revocations.ready().await,
        "not in sync",
    );
    let keys = if state.keys.is_loaded() {
        Ok(())
    } else {
        Err("no key set fetched yet")
    };
    report.check("keys", keys, "JWKS not loaded yet");
    report.respond(state.revocations.kind())
}
