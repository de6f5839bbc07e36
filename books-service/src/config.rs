//! Settings from the environment (docs/api.md's table), validated once at start.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use shared::config::{invalid, ConfigError, Env};
use shared::db::DatabaseUrl;
use shared::revocation::{ClientSecret, FeedConfig};

#[derive(Clone, Debug)]
pub struct Settings {
    pub listen_addr: SocketAddr,
    pub database_url: DatabaseUrl,
    /// Where revocations come from: Redis, or auth-service's revocation feed (at most one is
    /// set). Neither is refused at start unless `allow_no_revocations`, or the revocation store
    /// is passed in (the one-process local stack).
    pub redis_url: Option<shared::RedisTarget>,
    pub revocation_feed: Option<FeedConfig>,
    /// `BOOKS_ALLOW_NO_REVOCATIONS=true`: the operator accepts that, without a revocation
    /// source, revoked tokens stay valid here until they expire.
    pub allow_no_revocations: bool,
    pub redis_key_prefix: String,
    pub jwks_url: String,
    /// Issuer, audience and leeway every token must match.
    pub verifier: shared::VerifierConfig,
    /// The longest the local copy of the revocations may go without hearing from its source
    /// (Redis or the feed) before token checks answer 503 instead of trusting it.
    pub revocation_staleness: Duration,
    /// Minimum time between two JWKS re-fetches triggered by unknown `kid`s.
    pub jwks_cooldown: Duration,
    pub workers: Option<usize>,
    /// `VERIFIED_TOKEN_CACHE`: verified tokens remembered per worker (0: none), so a token
    /// used again skips the signature check; time, type and revocations are checked each time.
    pub verified_token_cache: usize,
    /// `BOOK_CACHE_ENTRIES`: books remembered between reads (0: none), with Redis only; see
    /// `cache`.
    pub book_cache_entries: usize,
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
        let redis_url = env.redis_url()?;
        let revocation_feed = revocation_feed(&env)?;
        if redis_url.is_some() && revocation_feed.is_some() {
            return Err(invalid(
                "REVOCATION_FEED_URL",
                "set together with REDIS_URL; books-service takes revocations from exactly one source: unset REDIS_URL or REVOCATION_FEED_URL",
            ));
        }
        Ok(Settings {
            listen_addr: env.listen_addr("0.0.0.0:8082")?,
            database_url: env.database_url("data/books.db")?,
            redis_url,
            revocation_feed,
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
            verified_token_cache: env.number("VERIFIED_TOKEN_CACHE", 1024, 0)? as usize,
            book_cache_entries: env.number("BOOK_CACHE_ENTRIES", 10_000, 0)? as usize,
        })
    }
}

/// `REVOCATION_FEED_URL` and its client: the stream URL names the snapshot too (the same
/// without `/stream`) and, unless `REVOCATION_FEED_TOKEN_URL` says otherwise, the token
/// endpoint (`/oauth/token` at its origin).
fn revocation_feed(env: &Env) -> Result<Option<FeedConfig>, ConfigError> {
    const CLIENT_ID: &str = "REVOCATION_FEED_CLIENT_ID";
    const CLIENT_SECRET: &str = "REVOCATION_FEED_CLIENT_SECRET";
    const TOKEN_URL: &str = "REVOCATION_FEED_TOKEN_URL";
    let Some(raw) = env.get("REVOCATION_FEED_URL") else {
        if let Some(set) = [CLIENT_ID, CLIENT_SECRET, TOKEN_URL]
            .into_iter()
            .find(|var| env.get(var).is_some())
        {
            return Err(invalid(
                "REVOCATION_FEED_URL",
                format!("not set, but {set} is: set it to auth-service's revocation stream, e.g. http://auth:8081/revocations/stream"),
            ));
        }
        return Ok(None);
    };
    let stream = http_url("REVOCATION_FEED_URL", raw)
        .ok()
        .filter(|url| url.path().ends_with("/stream"))
        .ok_or_else(|| {
            invalid(
                "REVOCATION_FEED_URL",
                "expected auth-service's revocation stream, http(s)://HOST[:PORT]/revocations/stream",
            )
        })?;
    let snapshot_url = stream.as_str().trim_end_matches("/stream").to_owned();
    let token_url = match env.get(TOKEN_URL) {
        Some(raw) => http_url(TOKEN_URL, raw)?.to_string(),
        None => format!("{}/oauth/token", stream.origin().ascii_serialization()),
    };
    let required = |var: &'static str| {
        env.get(var).map(str::to_owned).ok_or_else(|| {
            invalid(
                var,
                "required with REVOCATION_FEED_URL (a client of auth-service with scope revocations:read)",
            )
        })
    };
    Ok(Some(FeedConfig {
        stream_url: stream.to_string(),
        snapshot_url,
        token_url,
        client_id: required(CLIENT_ID)?,
        client_secret: ClientSecret::new(required(CLIENT_SECRET)?),
    }))
}

/// An absolute http(s) URL with a host and no query or fragment.
fn http_url(var: &'static str, raw: &str) -> Result<reqwest::Url, ConfigError> {
    reqwest::Url::parse(raw)
        .ok()
        .filter(|url| matches!(url.scheme(), "http" | "https") && url.has_host())
        .filter(|url| url.query().is_none() && url.fragment().is_none())
        .ok_or_else(|| invalid(var, "expected an http:// or https:// URL without query"))
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
        assert!(s.redis_url.is_none() && s.revocation_feed.is_none() && !s.allow_no_revocations);
    }

    fn with(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        Settings::from_vars(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    const FEED: [(&str, &str); 3] = [
        ("REVOCATION_FEED_URL", "http://auth:8081/revocations/stream"),
        ("REVOCATION_FEED_CLIENT_ID", "books"),
        ("REVOCATION_FEED_CLIENT_SECRET", "s3cret"),
    ];

    #[test]
    fn the_feed_url_names_the_snapshot_and_the_token_endpoint() {
        let feed = with(&FEED).unwrap().revocation_feed.unwrap();
        assert_eq!(feed.stream_url, "http://auth:8081/revocations/stream");
        assert_eq!(feed.snapshot_url, "http://auth:8081/revocations");
        assert_eq!(feed.token_url, "http://auth:8081/oauth/token");
        assert_eq!(feed.client_id, "books");

        let mut vars = FEED.to_vec();
        vars.push((
            "REVOCATION_FEED_TOKEN_URL",
            "https://login.example/oauth/token",
        ));
        let feed = with(&vars).unwrap().revocation_feed.unwrap();
        assert_eq!(feed.token_url, "https://login.example/oauth/token");
    }

    #[test]
    fn a_bad_feed_setting_names_its_variable() {
        let error_var = |vars: &[(&str, &str)]| with(vars).unwrap_err().var;
        let mut both = FEED.to_vec();
        both.push(("REDIS_URL", "redis://redis:6379"));
        let err = with(&both).unwrap_err();
        assert_eq!(err.var, "REVOCATION_FEED_URL");
        assert!(err.problem.contains("REDIS_URL"), "{}", err.problem);

        for url in [
            "auth:8081/revocations/stream",
            "ftp://auth/revocations/stream",
            "http://auth:8081/revocations",
            "http://auth/revocations/stream?x=1",
        ] {
            assert_eq!(
                error_var(&[FEED[1], FEED[2], ("REVOCATION_FEED_URL", url)]),
                "REVOCATION_FEED_URL",
                "{url}"
            );
        }
        assert_eq!(error_var(&[FEED[0], FEED[2]]), "REVOCATION_FEED_CLIENT_ID");
        assert_eq!(
            error_var(&[FEED[0], FEED[1]]),
            "REVOCATION_FEED_CLIENT_SECRET"
        );
        assert_eq!(error_var(&[FEED[1], FEED[2]]), "REVOCATION_FEED_URL");
        let mut vars = FEED.to_vec();
        vars.push(("REVOCATION_FEED_TOKEN_URL", "/oauth/token"));
        assert_eq!(error_var(&vars), "REVOCATION_FEED_TOKEN_URL");
    }

    #[test]
    fn the_client_secret_is_not_in_the_settings_debug_output() {
        let settings = with(&FEED).unwrap();
        assert!(!format!("{settings:?}").contains("s3cret"));
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
