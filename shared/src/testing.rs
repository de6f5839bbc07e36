//! Test support for the services' integration tests (feature `testing`): a PostgreSQL database
//! per test and the addresses of the local PostgreSQL and Redis.

use diesel::{Connection, PgConnection, RunQueryDsl};

/// `TEST_PG_URL` (server URL without a database), default the local trust-auth server.
pub fn pg_base_url() -> String {
    std::env::var("TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// `TEST_REDIS_URL`, default the local Redis.
pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A PostgreSQL database made for one test and dropped (with its connections) after it.
pub struct TestDatabase {
    name: String,
    pub url: String,
}

impl TestDatabase {
    pub fn create() -> Self {
        let name = format!("authbooks_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::establish(&format!("{}/postgres", pg_base_url()))
            .expect("PostgreSQL must be running for the tests (see README)");
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .expect("create test database");
        let url = format!("{}/{name}", pg_base_url());
        Self { name, url }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Ok(mut admin) = PgConnection::establish(&format!("{}/postgres", pg_base_url())) {
            let _ = diesel::sql_query(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&mut admin);
        }
    }
}

/// The claims of a JWT, decoded without any verification (to inspect what was issued).
pub fn payload(token: &str) -> serde_json::Value {
    use base64::Engine;
    let part = token.split('.').nth(1).expect("payload part");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("json payload")
}
