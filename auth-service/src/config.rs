//! Settings from the environment (docs/api.md's table), typed and validated once at start. A bad
//! value stops the service with one line naming the variable.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use shared::config::{invalid, Env};
use shared::db::DatabaseUrl;
use shared::VerifierConfig;

use crate::password_policy::PasswordPolicy;

/// A secret that never prints.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Clone, Debug)]
pub struct BootstrapAdmin {
    pub username: String,
    pub password: Secret,
}

#[derive(Clone, Debug)]
pub struct Settings {
    pub listen_addr: SocketAddr,
    pub database_url: DatabaseUrl,
    /// `None`: the in-process revocation store (single node).
    pub redis_url: Option<shared::RedisTarget>,
    /// Replicas that must confirm a revocation before it is acknowledged (`WAIT`).
    pub redis_wait: crate::ledger::ReplicaWait,
    /// Prefix of every Redis key and channel, so deployments and tests can share a server.
    pub redis_key_prefix: String,
    pub keys_dir: PathBuf,
    /// Issuer, audience and leeway: stamped into tokens, checked by every verifier.
    pub verifier: VerifierConfig,
    pub access_ttl: u64,
    pub refresh_ttl: u64,
    pub bootstrap_admin: Option<BootstrapAdmin>,
    /// The strength a new password must have (`AUTH_PASSWORD_MIN_SCORE`).
    pub password_policy: PasswordPolicy,
    /// The key client secrets are hashed with; `None`: a key file in the keys directory.
    pub client_secret_key: Option<Secret>,
    /// The key TOTP secrets are sealed with (and recovery codes hashed with); `None`: a key file
    /// in the keys directory. See `mfa::sealed`.
    pub mfa_key: Option<Secret>,
    /// Earlier values of `mfa_key`, comma-separated: they open (and check) but never seal.
    pub mfa_previous_keys: Option<Secret>,
    /// `Secure` on auth cookies; turn off only for local plain-http use.
    pub cookie_secure: bool,
    /// Seconds the JWKS may be cached by verifiers (`Cache-Control: max-age`).
    pub jwks_max_age: u64,
    /// A new key signs only after it has been published this long (default: the JWKS max-age).
    pub key_activation_delay: u64,
    /// How often the keys directory is checked for new keys.
    pub keys_reload_secs: u64,
    /// Seconds between comment lines on an idle `/revocations/stream` (readers treat silence as
    /// staleness).
    pub feed_heartbeat_secs: u64,
    /// Seconds during which a rotated refresh token replays its first answer (0: never).
    pub refresh_grace_secs: u64,
    /// Peers allowed to state the client address in `X-Forwarded-For` (the gateway).
    pub trusted_proxies: crate::throttle::TrustedProxies,
    /// The public base URL (e.g. `https://api.example.com`): every absolute URL of the
    /// discovery documents starts with it, and it is the default issuer.
    pub public_url: String,
    /// Login attempts per (username, client address) / per client address before back-off
    /// starts; the per-username limit is derived (see `throttle::USERNAME_FACTOR`).
    pub login_limit_username: u64,
    pub login_limit_address: u64,
    /// Registrations per client address before back-off starts.
    pub register_limit_address: u64,
    /// HTTP worker threads; one per core when unset.
    pub workers: Option<usize>,
    /// Days audit events are kept (`AUDIT_RETENTION_DAYS`).
    pub audit_retention_days: u32,
    /// How often ended and expired sessions, stale second-factor logins and old audit events
    /// are deleted.
    pub prune_interval_secs: u64,
    /// A CPU cgroup the password-hashing threads move into (`AUTH_ARGON2_CGROUP`).
    pub argon2_cgroup: Option<crate::cpu_group::CpuGroup>,
}

pub use shared::config::ConfigError;

/// The default key activation delay is at least this (15 minutes): longer than the JWKS cache of
/// the verifiers other teams use (jose's `createRemoteJWKSet` keeps keys 10 minutes; keyfunc and
/// .NET re-fetch on an unknown `kid` at most every 5 minutes), so a new key is in their caches
/// before it signs. See docs/operating.md, "Keys and rotation".
pub const MIN_DEFAULT_ACTIVATION_DELAY: u64 = 900;

impl Settings {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(std::env::vars().collect())
    }

    /// Builds settings from a variable map; tests pass their own instead of touching the process
    /// environment.
    pub fn from_vars(vars: HashMap<String, String>) -> Result<Self, ConfigError> {
        let env = Env::new(vars);
        let get = |name: &str| env.get(name);
        let listen_addr = env.listen_addr("0.0.0.0:8081")?;
        let database_url = env.database_url("data/auth.db")?;
        let redis_url = env.redis_url()?;
        let redis_wait = redis_wait(&env, redis_url.as_ref())?;
        let verifier = env.verifier_config()?;
        let access_ttl = env.seconds("ACCESS_TOKEN_TTL", 900, 1)?;
        let refresh_ttl = env.seconds("REFRESH_TOKEN_TTL", 2_592_000, 1)?;
        if refresh_ttl < access_ttl {
            return Err(invalid(
                "REFRESH_TOKEN_TTL",
                "must not be shorter than ACCESS_TOKEN_TTL",
            ));
        }
        let bootstrap_admin = match (
            get("AUTH_BOOTSTRAP_ADMIN_USERNAME"),
            get("AUTH_BOOTSTRAP_ADMIN_PASSWORD"),
        ) {
            (Some(username), Some(password)) => Some(BootstrapAdmin {
                username: username.to_owned(),
                password: Secret::new(password),
            }),
            (None, None) => None,
            (Some(_), None) => {
                return Err(invalid(
                    "AUTH_BOOTSTRAP_ADMIN_PASSWORD",
                    "must be set together with AUTH_BOOTSTRAP_ADMIN_USERNAME",
                ))
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "AUTH_BOOTSTRAP_ADMIN_USERNAME",
                    "must be set together with AUTH_BOOTSTRAP_ADMIN_PASSWORD",
                ))
            }
        };
        let password_policy = match get("AUTH_PASSWORD_MIN_SCORE") {
            None => PasswordPolicy::default(),
            Some(raw) => raw
                .parse::<u8>()
                .ok()
                .and_then(|score| PasswordPolicy::with_min_score(score).ok())
                .ok_or_else(|| {
                    invalid(
                        "AUTH_PASSWORD_MIN_SCORE",
                        format!("expected a zxcvbn score from 0 to 4, got {raw:?}"),
                    )
                })?,
        };
        let cookie_secure = match get("AUTH_COOKIE_SECURE") {
            None | Some("true") | Some("1") => true,
            Some("false") | Some("0") => false,
            Some(_) => return Err(invalid("AUTH_COOKIE_SECURE", "expected true or false")),
        };

        let jwks_max_age = env.seconds("JWKS_MAX_AGE", 300, 0)?;
        Ok(Settings {
            listen_addr,
            database_url,
            redis_url,
            redis_wait,
            redis_key_prefix: get("REDIS_KEY_PREFIX").unwrap_or("authbooks:").to_owned(),
            keys_dir: PathBuf::from(get("AUTH_KEYS_DIR").unwrap_or("data/keys")),
            verifier,
            access_ttl,
            refresh_ttl,
            bootstrap_admin,
            password_policy,
            client_secret_key: get("AUTH_CLIENT_SECRET_KEY").map(Secret::new),
            mfa_key: get("AUTH_MFA_KEY").map(Secret::new),
            mfa_previous_keys: get("AUTH_MFA_PREVIOUS_KEYS").map(Secret::new),
            cookie_secure,
            jwks_max_age,
            key_activation_delay: env.seconds(
                "AUTH_KEY_ACTIVATION_DELAY",
                jwks_max_age.max(MIN_DEFAULT_ACTIVATION_DELAY),
                0,
            )?,
            keys_reload_secs: env.seconds("AUTH_KEYS_RELOAD_SECS", 10, 1)?,
            feed_heartbeat_secs: env.seconds("AUTH_FEED_HEARTBEAT_SECS", 2, 1)?,
            refresh_grace_secs: env.seconds("AUTH_REFRESH_GRACE", 5, 0)?,
            trusted_proxies: crate::throttle::TrustedProxies::parse(
                get("AUTH_TRUSTED_PROXIES").unwrap_or_default(),
            )
            .map_err(|p| invalid("AUTH_TRUSTED_PROXIES", p))?,
            public_url: env.public_url()?,
            login_limit_username: env.seconds("AUTH_LOGIN_LIMIT_USERNAME", 5, 1)?,
            login_limit_address: env.seconds("AUTH_LOGIN_LIMIT_ADDRESS", 100, 1)?,
            register_limit_address: env.seconds("AUTH_REGISTER_LIMIT_ADDRESS", 10, 1)?,
            workers: env.workers()?,
            audit_retention_days: u32::try_from(env.number("AUDIT_RETENTION_DAYS", 90, 1)?)
                .map_err(|_| invalid("AUDIT_RETENTION_DAYS", "too large"))?,
            prune_interval_secs: env.seconds("AUTH_PRUNE_INTERVAL_SECS", 600, 1)?,
            argon2_cgroup: get("AUTH_ARGON2_CGROUP")
                .map(|dir| crate::cpu_group::CpuGroup::open(PathBuf::from(dir)))
                .transpose()
                .map_err(|why| invalid("AUTH_ARGON2_CGROUP", why))?,
        })
    }
}

/// The longest `REDIS_WAIT_TIMEOUT_MS`: below the 2 s every Redis reply is waited for, so a
/// `WAIT` that runs out is answered as such rather than as a lost connection.
pub const MAX_WAIT_TIMEOUT_MS: u64 = 1500;

/// `REDIS_WAIT_REPLICAS` (default 1 under Redis Sentinel, where a failover promotes a replica;
/// 0 otherwise) and `REDIS_WAIT_TIMEOUT_MS` (default 1000).
fn redis_wait(
    env: &Env,
    target: Option<&shared::RedisTarget>,
) -> Result<crate::ledger::ReplicaWait, ConfigError> {
    let default_replicas = u64::from(target.is_some_and(shared::RedisTarget::is_sentinel));
    let replicas = env.number("REDIS_WAIT_REPLICAS", default_replicas, 0)?;
    let timeout_ms = env.number("REDIS_WAIT_TIMEOUT_MS", 1000, 1)?;
    if timeout_ms > MAX_WAIT_TIMEOUT_MS {
        return Err(invalid(
            "REDIS_WAIT_TIMEOUT_MS",
            format!("must be at most {MAX_WAIT_TIMEOUT_MS} (below the 2 s Redis reply timeout)"),
        ));
    }
    Ok(crate::ledger::ReplicaWait {
        replicas: u32::try_from(replicas)
            .ok()
            .filter(|n| *n <= 16)
            .ok_or_else(|| invalid("REDIS_WAIT_REPLICAS", "must be at most 16"))?,
        timeout_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn argon2_cgroup_must_name_a_cgroup_directory() {
        assert_eq!(
            Settings::from_vars(HashMap::new()).unwrap().argon2_cgroup,
            None
        );
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        for bad in [dir.path(), missing.as_path()] {
            let err = Settings::from_vars(vars(&[("AUTH_ARGON2_CGROUP", bad.to_str().unwrap())]))
                .unwrap_err();
            assert_eq!(err.var, "AUTH_ARGON2_CGROUP", "{}", bad.display());
        }
        // A cgroup v1 directory takes thread ids in `tasks`, a v2 one in `cgroup.threads`.
        std::fs::write(dir.path().join("tasks"), "").unwrap();
        let group = Settings::from_vars(vars(&[(
            "AUTH_ARGON2_CGROUP",
            dir.path().to_str().unwrap(),
        )]))
        .unwrap()
        .argon2_cgroup
        .unwrap();
        assert_eq!(group.dir, dir.path());
    }

    #[test]
    fn defaults_follow_the_contract() {
        let s = Settings::from_vars(HashMap::new()).unwrap();
        assert_eq!(s.listen_addr.port(), 8081);
        assert_eq!(s.database_url, DatabaseUrl::Sqlite("data/auth.db".into()));
        assert!(s.redis_url.is_none());
        assert_eq!(
            (s.access_ttl, s.refresh_ttl, s.verifier.leeway),
            (900, 2_592_000, 30)
        );
        assert_eq!(
            (s.verifier.issuer.as_str(), s.verifier.audience.as_str()),
            ("http://127.0.0.1:8081", "authbooks-api")
        );
        assert_eq!(s.public_url, "http://127.0.0.1:8081");
        assert_eq!(
            (
                s.login_limit_username,
                s.login_limit_address,
                s.register_limit_address
            ),
            (5, 100, 10)
        );
        assert_eq!(s.password_policy.min_score(), 3);
    }

    #[test]
    fn the_password_minimum_score_is_0_to_4() {
        let s = Settings::from_vars(vars(&[("AUTH_PASSWORD_MIN_SCORE", "4")])).unwrap();
        assert_eq!(s.password_policy.min_score(), 4);
        let s = Settings::from_vars(vars(&[("AUTH_PASSWORD_MIN_SCORE", "0")])).unwrap();
        assert_eq!(s.password_policy.min_score(), 0);
        for bad in ["5", "-1", "3.5", "strong"] {
            let err = Settings::from_vars(vars(&[("AUTH_PASSWORD_MIN_SCORE", bad)])).unwrap_err();
            assert_eq!(err.var, "AUTH_PASSWORD_MIN_SCORE", "{bad}");
            assert!(err.to_string().contains("0 to 4"), "{err}");
        }
    }

    #[test]
    fn revocations_wait_for_a_replica_by_default_only_under_sentinel() {
        let wait = |pairs: &[(&str, &str)]| Settings::from_vars(vars(pairs)).map(|s| s.redis_wait);
        let none = crate::ledger::ReplicaWait {
            replicas: 0,
            timeout_ms: 1000,
        };
        assert_eq!(wait(&[]), Ok(none));
        assert_eq!(wait(&[("REDIS_URL", "redis://127.0.0.1:6379")]), Ok(none));
        let sentinel = ("REDIS_URL", "redis+sentinel://127.0.0.1:26379/mymaster");
        assert_eq!(
            wait(&[sentinel]),
            Ok(crate::ledger::ReplicaWait {
                replicas: 1,
                timeout_ms: 1000
            })
        );
        assert_eq!(
            wait(&[
                sentinel,
                ("REDIS_WAIT_REPLICAS", "0"),
                ("REDIS_WAIT_TIMEOUT_MS", "250")
            ]),
            Ok(crate::ledger::ReplicaWait {
                replicas: 0,
                timeout_ms: 250
            })
        );
        for (var, value) in [
            ("REDIS_WAIT_TIMEOUT_MS", "0"),
            ("REDIS_WAIT_TIMEOUT_MS", "1501"),
            ("REDIS_WAIT_REPLICAS", "x"),
            ("REDIS_WAIT_REPLICAS", "17"),
            ("REDIS_URL", "redis+sentinel://127.0.0.1/mymaster"),
        ] {
            let err = wait(&[(var, value)]).unwrap_err();
            assert_eq!(err.var, var, "{value}");
        }
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        let err = Settings::from_vars(vars(&[("ACCESS_TOKEN_TTL", "15m")])).unwrap_err();
        assert_eq!(err.var, "ACCESS_TOKEN_TTL");
        let err = Settings::from_vars(vars(&[("DATABASE_URL", "mysql://x")])).unwrap_err();
        assert_eq!(err.var, "DATABASE_URL");
        let err =
            Settings::from_vars(vars(&[("AUTH_BOOTSTRAP_ADMIN_USERNAME", "root")])).unwrap_err();
        assert_eq!(err.var, "AUTH_BOOTSTRAP_ADMIN_PASSWORD");
        assert!(err
            .to_string()
            .starts_with("invalid configuration: AUTH_BOOTSTRAP_ADMIN_PASSWORD"));
    }

    #[test]
    fn the_issuer_is_the_public_url_unless_set_and_always_an_http_url() {
        let s =
            Settings::from_vars(vars(&[("AUTH_PUBLIC_URL", "https://api.example.com/")])).unwrap();
        assert_eq!(s.public_url, "https://api.example.com");
        assert_eq!(s.verifier.issuer, "https://api.example.com");
        let s = Settings::from_vars(vars(&[
            ("AUTH_PUBLIC_URL", "https://api.example.com"),
            ("JWT_ISSUER", "https://id.example.com/tenant"),
        ]))
        .unwrap();
        assert_eq!(s.verifier.issuer, "https://id.example.com/tenant");
        for (var, bad) in [
            ("JWT_ISSUER", "authbooks"),
            ("JWT_ISSUER", "https://"),
            ("JWT_ISSUER", "https://id.example.com/?tenant=1"),
            ("AUTH_PUBLIC_URL", "ftp://example.com"),
        ] {
            let err = Settings::from_vars(vars(&[(var, bad)])).unwrap_err();
            assert_eq!(err.var, var, "{bad}");
        }
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Settings::from_vars(vars(&[
            ("AUTH_BOOTSTRAP_ADMIN_USERNAME", "root"),
            ("AUTH_BOOTSTRAP_ADMIN_PASSWORD", "hunter2hunter2"),
            ("AUTH_MFA_KEY", "mfakeymfakeymfakeymfakeymfakeymfakeymfakey"),
            (
                "AUTH_MFA_PREVIOUS_KEYS",
                "oldkeyoldkeyoldkeyoldkeyoldkeyoldkeyoldkey",
            ),
        ]))
        .unwrap();
        let shown = format!("{s:?}");
        assert!(!shown.contains("hunter2"));
        assert!(!shown.contains("mfakey") && !shown.contains("oldkey"));
    }
}
