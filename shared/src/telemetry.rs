//! JSON logs with a request id on every line, and the middleware that assigns the id.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::web;
use tracing::Instrument;
use tracing_subscriber::EnvFilter;

use crate::metrics::Metrics;

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Installs the JSON log subscriber; `RUST_LOG` filters, `info` by default. Safe to call twice.
pub fn init(default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_span_list(false)
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        .try_init();
}

/// A request id from the gateway is kept when it looks like one; otherwise a new one is made.
fn request_id(req: &ServiceRequest) -> String {
    req.headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|id| {
            !id.is_empty()
                && id.len() <= 64
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        })
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// Middleware: one span per request carrying its id, one log line when it completes (method,
/// path without query string, status, latency; never headers, bodies or tokens), the id echoed
/// in `X-Request-Id`, and the request counted in [`Metrics`] when registered.
pub async fn request_context(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let id = request_id(&req);
    let metrics = req.app_data::<web::Data<Metrics>>().cloned();
    let span = tracing::info_span!("request", request_id = %id);
    let method = req.method().clone();
    let path = req.path().to_owned();
    let mut response = next.call(req).instrument(span.clone()).await?;
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    span.in_scope(|| {
        tracing::info!(
            %method,
            path,
            status,
            latency_ms = elapsed.as_secs_f64() * 1000.0,
            "request completed"
        )
    });
    if let Some(metrics) = metrics {
        metrics.observe_request(status, elapsed);
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(REQUEST_ID_HEADER), value);
    }
    Ok(response)
}
