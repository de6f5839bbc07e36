//! Settings from the environment (docs/api.md's table), validated once at start.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use shared::config::{invalid, ConfigError, Env};
use shared::db::DatabaseUrl;

#[derive(Clone, Debug)]
pub struct Settings {
    pub listen_addr: SocketAddr,
    pub database_url: DatabaseUrl,
    /// Where revocations come from. `None` is refused at start unless `allow_no_revocations`,
    /// or the revocation store is passed in (the one-process local stack).
    pub redis_url: Option<String>,
    /// `BOOKS_ALLOW_NO_REVOCATIONS=true`: the operator accepts that, without `REDIS_URL`,
    /// revoked tokens stay valid here until they expire.
    pub allow_no_revocations: bool,
    pub redis_key_prefix: String,
    pub jwks_url: String,
    /// Issuer, audience and leeway every token must match.
    pub verifier: shared::VerifierConfig,
    /// The longest the local revocation replica may go without hearing from Redis before
    /// token checks answer 503 instead of trusting it.
    pub revocation_staleness: Duration,
    /// Minimum time between two JWKS re-fetches triggered by unknown `kid`s.
    pub jwks_cooldown: Duration,
    pub workers: Option<usize>,
}

impl Settings {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(std::env::vars().collect())
    }

    pub fn from_vars(vars: HashMap<String, String>) -> Result<Self, ConfigError> {
        let env = Env::new(vars);
        let jwks_url = env.string("JWKS_URL", "http://127.0.0.1:8081/.well-known/jwks.json");
        if !(jwks_url.starts_with("http://") || jwks_url.starts_with("https://")) {
            return Err(invalid("JWKS_URL", "expected an http:// or https:// URL"));
        }
        let staleness_ms = env.seconds("REVOCATION_STALENESS_MS", 5000, 500)?;
        Ok(Settings {
            listen_addr: env.listen_addr("0.0.0.0:8082")?,
            database_url: env.database_url("data/books.db")?,
            redis_url: env.redis_url()?,
            allow_no_revocations: match env.get("BOOKS_ALLOW_NO_REVOCATIONS") {
                None | Some("false") | Some("0") => false,
                Some("true") | Some("1") => true,
                Some(_) => {
                    return Err(invalid(
                        "BOOKS_ALLOW_NO_REVOCATIONS",
                        "expected true or false",
                    ))
                }
            },
            redis_key_prefix: env.string("REDIS_KEY_PREFIX", "authbooks:"),
            jwks_url,
            verifier: env.verifier_config()?,
            revocation_staleness: Duration::from_millis(staleness_ms),
            jwks_cooldown: Duration::from_secs(env.seconds("JWKS_REFETCH_COOLDOWN", 30, 1)?),
            workers: env.workers()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_contract() {
        let s = Settings::from_vars(HashMap::new()).unwrap();
        assert_eq!(s.listen_addr.port(), 8082);
        assert_eq!(s.jwks_url, "http://127.0.0.1:8081/.well-known/jwks.json");
        assert_eq!(s.database_url, DatabaseUrl::Sqlite("data/books.db".into()));
        assert_eq!(s.revocation_staleness, Duration::from_secs(5));
        assert_eq!(s.jwks_cooldown, Duration::from_secs(30));
        assert!(s.redis_url.is_none() && !s.allow_no_revocations);
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        let vars = HashMap::from([("JWKS_URL".to_owned(), "ftp://x".to_owned())]);
        assert_eq!(Settings::from_vars(vars).unwrap_err().var, "JWKS_URL");
        let vars = HashMap::from([("JWT_LEEWAY".to_owned(), "-1".to_owned())]);
        assert_eq!(Settings::from_vars(vars).unwrap_err().var, "JWT_LEEWAY");
        let vars = HashMap::from([("BOOKS_ALLOW_NO_REVOCATIONS".to_owned(), "yes".to_owned())]);
        assert_eq!(
            Settings::from_vars(vars).unwrap_err().var,
            "BOOKS_ALLOW_NO_REVOCATIONS"
        );
    }
}
