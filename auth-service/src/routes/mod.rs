//! HTTP only: each module parses requests, checks the caller and calls a use case
//! (`login`, `sessions`, `clients`, `oauth`, the stores); none imports `startup`.

pub mod account;
pub mod auth;
pub mod clients;
pub mod cookies;
pub mod dto;
pub mod health;
pub mod oauth;
pub mod openapi;
pub mod revocations;
pub mod session;
pub mod well_known;

use actix_web::HttpRequest;

use crate::state::AppState;

/// The client's address as the throttles and the refresh grace see it (trusted proxies
/// honoured, IPv6 keyed by its /64; see `throttle::client_address`).
pub fn client_address(req: &HttpRequest, state: &AppState) -> String {
    state.throttle.client(req)
}
