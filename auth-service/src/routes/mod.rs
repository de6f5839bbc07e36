pub mod account;
pub mod auth;
pub mod health;
pub mod well_known;
