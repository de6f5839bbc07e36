//! auth-service: accounts, password login and RS256 token pairs, with the public keys published
//! as a JWKS so every other service verifies tokens on its own.

pub mod audit;
pub mod clients;
pub mod config;
pub mod cpu_group;
pub mod domain;
pub mod error;
pub mod feed;
pub mod keys;
pub mod ledger;
pub mod login;
pub mod login_statements;
pub mod maintenance;
pub mod mfa;
pub mod oauth;
pub mod origin;
pub mod password;
pub mod password_policy;
pub mod pause;
pub mod routes;
pub mod schema;
pub mod second_factor;
pub mod server_key;
pub mod sessions;
pub mod startup;
pub mod state;
pub mod store;
pub mod throttle;
pub mod tokens;
pub mod users;
pub mod write_behind;

pub use config::Settings;
pub use startup::Application;
