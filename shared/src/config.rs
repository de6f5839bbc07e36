//! Reading settings from environment variables, with the validation both services share: a bad
//! value becomes one error naming the variable.

use std::collections::HashMap;
use std::net::SocketAddr;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {var}: {problem}")]
pub struct ConfigError {
    pub var: &'static str,
    pub problem: String,
}

pub fn invalid(var: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        var,
        problem: problem.into(),
    }
}

/// auth-service's own address when nothing says otherwise (API.md's default).
pub const DEFAULT_PUBLIC_URL: &str = "http://127.0.0.1:8081";

/// An issuer identifier as RFC 8414 §2 wants it: http(s), a host, no query or fragment; the
/// trailing slash is dropped so that `iss` and the discovery documents agree byte for byte.
fn http_url(var: &'static str, raw: &str) -> Result<String, ConfigError> {
    let rest = raw
        .strip_prefix("https://")
        .or_else(|| raw.strip_prefix("http://"))
        .ok_or_else(|| invalid(var, "expected an http(s):// URL"))?;
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() || raw.contains(['?', '#']) || raw.contains(char::is_whitespace) {
        return Err(invalid(
            var,
            "expected an http(s) URL with a host and no query or fragment",
        ));
    }
    Ok(raw.trim_end_matches('/').to_owned())
}

/// A snapshot of variables; tests build one from a map instead of touching the process.
pub struct Env {
    vars: HashMap<String, String>,
}

impl Env {
    pub fn new(vars: HashMap<String, String>) -> Self {
        Self { vars }
    }

    /// The value, trimmed; unset and empty are the same.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    pub fn string(&self, name: &str, default: &str) -> String {
        self.get(name).unwrap_or(default).to_owned()
    }

    /// Whole seconds, at least `min`.
    pub fn seconds(&self, var: &'static str, default: u64, min: u64) -> Result<u64, ConfigError> {
        match self.get(var) {
            None => Ok(default),
            Some(raw) => match raw.parse::<u64>() {
                Ok(n) if n >= min => Ok(n),
                Ok(_) => Err(invalid(var, format!("must be at least {min}"))),
                Err(_) => Err(invalid(var, format!("expected whole seconds, got {raw:?}"))),
            },
        }
    }

    /// A whole number of something other than seconds (days, counts).
    pub fn number(&self, var: &'static str, default: u64, min: u64) -> Result<u64, ConfigError> {
        match self.get(var) {
            None => Ok(default),
            Some(raw) => match raw.parse::<u64>() {
                Ok(n) if n >= min => Ok(n),
                Ok(_) => Err(invalid(var, format!("must be at least {min}"))),
                Err(_) => Err(invalid(
                    var,
                    format!("expected a whole number, got {raw:?}"),
                )),
            },
        }
    }

    pub fn listen_addr(&self, default: &str) -> Result<SocketAddr, ConfigError> {
        self.get("LISTEN_ADDR")
            .unwrap_or(default)
            .parse()
            .map_err(|_| invalid("LISTEN_ADDR", format!("expected HOST:PORT, e.g. {default}")))
    }

    /// `REDIS_URL`, or `None` for the in-process store: one server (`redis://`, `rediss://`) or
    /// a Redis Sentinel deployment (`redis+sentinel://`, see [`crate::redis_target`]).
    pub fn redis_url(&self) -> Result<Option<crate::RedisTarget>, ConfigError> {
        self.get("REDIS_URL")
            .map(|raw| crate::RedisTarget::parse(raw).map_err(|p| invalid("REDIS_URL", p)))
            .transpose()
    }

    /// What every verifier of our tokens checks: `JWT_ISSUER`, `JWT_AUDIENCE` and `JWT_LEEWAY`
    /// (seconds of clock skew on `exp`/`nbf`), read the same way by every service.
    pub fn verifier_config(&self) -> Result<crate::VerifierConfig, ConfigError> {
        Ok(crate::VerifierConfig {
            issuer: match self.get("JWT_ISSUER") {
                Some(issuer) => http_url("JWT_ISSUER", issuer)?,
                None => self.public_url()?,
            },
            audience: self.string("JWT_AUDIENCE", "authbooks-api"),
            leeway: self.seconds("JWT_LEEWAY", 30, 0)?,
        })
    }

    /// `AUTH_PUBLIC_URL`: auth-service's base URL as clients reach it, without a trailing slash.
    /// It is the default issuer, so verifiers read it as well.
    pub fn public_url(&self) -> Result<String, ConfigError> {
        http_url(
            "AUTH_PUBLIC_URL",
            self.get("AUTH_PUBLIC_URL").unwrap_or(DEFAULT_PUBLIC_URL),
        )
    }

    /// `HTTP_WORKERS`: worker threads, one per core when unset.
    pub fn workers(&self) -> Result<Option<usize>, ConfigError> {
        match self.get("HTTP_WORKERS") {
            None => Ok(None),
            Some(raw) => raw
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .map(Some)
                .ok_or_else(|| invalid("HTTP_WORKERS", "expected a positive number")),
        }
    }

    #[cfg(feature = "db")]
    pub fn database_url(&self, default_file: &str) -> Result<crate::db::DatabaseUrl, ConfigError> {
        match self.get("DATABASE_URL") {
            Some(raw) => crate::db::DatabaseUrl::parse(raw).map_err(|p| invalid("DATABASE_URL", p)),
            None => Ok(crate::db::DatabaseUrl::Sqlite(default_file.into())),
        }
    }
}
