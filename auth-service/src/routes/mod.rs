//! HTTP only: each module parses requests, checks the caller and calls a use case
//! (`login`, `sessions`, `clients`, `oauth`, the stores); none imports `startup`.

pub mod account;
pub mod audit;
pub mod auth;
pub mod clients;
pub mod cookies;
pub mod dto;
pub mod health;
pub mod mfa;
pub mod oauth;
pub mod openapi;
pub mod revocations;
pub mod session;
pub mod sessions;
pub mod users;
pub mod well_known;

use actix_web::HttpRequest;

use crate::origin::RequestOrigin;
use crate::state::AppState;

/// Where the request came from: the client's address as the throttles see it and its user
/// agent, for session records and the audit trail.
pub fn origin(req: &HttpRequest, state: &AppState) -> RequestOrigin {
    let user_agent = req
        .headers()
        .get(actix_web::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    RequestOrigin::new(client_address(req, state), user_agent)
}

/// The client's address as the throttles and the refresh grace see it (trusted proxies
/// honoured, IPv6 keyed by its /64; see `throttle::client_address`).
pub fn client_address(req: &HttpRequest, state: &AppState) -> String {
    state.throttle.client(req)
}
