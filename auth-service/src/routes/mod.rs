pub mod account;
pub mod auth;
pub mod health;
pub mod openapi;
pub mod session;
pub mod well_known;
