//! The HTTP server both services run: the same JSON rejections, request-id middleware, 404 body,
//! graceful shutdown, and the `/healthz` and `/metrics` handlers.

use std::net::{SocketAddr, TcpListener};

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpResponse, HttpServer};

use crate::error::rejections;
use crate::metrics::Metrics;
use crate::telemetry::request_context;

/// In-flight requests get this long to finish after SIGTERM/SIGINT.
const SHUTDOWN_GRACE_SECS: u64 = 30;

pub struct Bound {
    pub port: u16,
    pub server: Server,
}

/// Binds `listen_addr` (port 0 picks a free port) and builds the server; `configure` registers
/// the service's state and routes.
pub fn bind<F>(
    service: &'static str,
    listen_addr: SocketAddr,
    workers: Option<usize>,
    configure: F,
) -> Result<Bound, String>
where
    F: Fn(&mut web::ServiceConfig) + Send + Clone + 'static,
{
    let listener = TcpListener::bind(listen_addr)
        .map_err(|e| format!("LISTEN_ADDR: cannot bind {listen_addr}: {e}"))?;
    serve_on(service, listener, workers, configure)
}

/// [`bind`] on a listener the caller already holds (to know its port before serving).
pub fn serve_on<F>(
    service: &'static str,
    listener: TcpListener,
    workers: Option<usize>,
    configure: F,
) -> Result<Bound, String>
where
    F: Fn(&mut web::ServiceConfig) + Send + Clone + 'static,
{
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(rejections::json_config())
            .app_data(web::PayloadConfig::new(rejections::BODY_LIMIT))
            .app_data(rejections::query_config())
            .app_data(rejections::path_config())
            .wrap(from_fn(request_context))
            .configure(configure.clone())
            .default_service(web::to(rejections::not_found))
    })
    .shutdown_timeout(SHUTDOWN_GRACE_SECS);
    if let Some(workers) = workers {
        server = server.workers(workers);
    }
    let server = server.listen(listener).map_err(|e| e.to_string())?.run();
    tracing::info!(service, port, "listening");
    Ok(Bound { port, server })
}

/// Liveness: the process is up
#[cfg_attr(feature = "openapi", utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "Up", body = crate::openapi::Health))
))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// Prometheus metrics
#[cfg_attr(feature = "openapi", utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "Prometheus text format", body = String,
        content_type = "text/plain; version=0.0.4"))
))]
pub async fn metrics(metrics: web::Data<Metrics>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(metrics.render())
}

/// Ends a `main` that cannot go on: one line on stderr, then the exit code.
pub fn exit(code: i32, message: impl std::fmt::Display) -> ! {
    eprintln!("{message}");
    std::process::exit(code)
}

/// What `GET /readyz` found: 200 `{"status": "ready", "revocation_store"}` when every dependency
/// answered, else 503 `unavailable` with `fields` naming each problem (causes go to the log).
#[derive(Default)]
pub struct ReadinessReport {
    problems: std::collections::BTreeMap<String, String>,
}

impl ReadinessReport {
    /// Records `dependency` as not ready with `problem` when `result` failed.
    pub fn check<E: std::fmt::Display>(
        &mut self,
        dependency: &str,
        result: Result<(), E>,
        problem: &str,
    ) {
        if let Err(err) = result {
            tracing::warn!(dependency, error = %err, "not ready");
            self.problems
                .insert(dependency.to_owned(), problem.to_owned());
        }
    }

    pub fn respond(self, revocation_store: &str) -> HttpResponse {
        if self.problems.is_empty() {
            HttpResponse::Ok().json(serde_json::json!({
                "status": "ready",
                "revocation_store": revocation_store,
            }))
        } else {
            crate::ErrorBody::new(crate::ErrorCode::Unavailable, "not ready")
                .with_fields(self.problems)
                .into_response()
        }
    }
}
