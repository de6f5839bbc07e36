//! books-service: CRUD on books behind local token verification. Keys come from the issuer's
//! JWKS, revocations from a local copy fed by Redis or by auth-service's revocation feed: no call
//! to auth-service per request.

pub mod access;
pub mod cache;
pub mod config;
pub mod domain;
pub mod error;
pub mod reads;
pub mod routes;
pub mod schema;
pub mod startup;
pub mod state;
pub mod store;

pub use config::Settings;
pub use startup::Application;
