//! Building and running the service: settings in, a bound server out.

use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::web;
use diesel_migrations::{embed_migrations, EmbeddedMigrations};
use shared::revocation::{MemoryRevocations, RedisRevocations, RevocationCheck, StoreUnavailable};
use shared::{AuthContext, KeySet, Metrics, Role, TokenVerifier};

use crate::audit::{AuditLog, AuditStore};
use crate::clients::{ClientStore, SecretHasher, ServiceAccounts};
use crate::config::Settings;
use crate::domain::{Password, Username};
use crate::error::AuthError;
use crate::feed::{FeedLog, MemoryFeed, RedisFeed};
use crate::keys::{KeyPolicy, KeyStore};
use crate::ledger::{Lifetimes, MemoryLedger, RedisLedger, SessionLedger};
use crate::login_statements::LoginStatements;
use crate::mfa::Sealer;
use crate::password_policy::PasswordPolicy;
use crate::pause::PausePoints;
use crate::routes;
use crate::second_factor::FactorStore;
use crate::sessions::records::SessionStore;
use crate::state::AppState;
use crate::store::UserStore;
use crate::throttle::{MemoryThrottle, RedisThrottle, Throttle, ThrottlePolicy, ThrottleStore};
use crate::tokens::TokenIssuer;

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// How long start-up waits for PostgreSQL and Redis before giving up.
const DEPENDENCY_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StartupError(String);

pub struct Application {
    port: u16,
    server: Server,
    pauses: Arc<PausePoints>,
    /// For the last flush of the group writers at shutdown.
    state: web::Data<AppState>,
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        Self::build_with(settings, None).await
    }

    /// `revocations` replaces the store chosen from the settings: for running in one process
    /// beside books-service and sharing the in-process store with it.
    pub async fn build_with(
        settings: Settings,
        revocations: Option<Arc<MemoryRevocations>>,
    ) -> Result<Self, StartupError> {
        let keys = Arc::new(
            KeyStore::open(
                &settings.keys_dir,
                KeyPolicy {
                    activation_delay_ms: settings.key_activation_delay as i64 * 1000,
                    max_token_life_ms: (settings.refresh_ttl + settings.verifier.leeway) as i64
                        * 1000,
                },
            )
            .await
            .map_err(|e| StartupError(format!("AUTH_KEYS_DIR: {e}")))?,
        );
        let database_url = settings.database_url.clone();
        let pool = tokio::task::spawn_blocking(move || {
            shared::db::connect_and_migrate(&database_url, MIGRATIONS, DEPENDENCY_WAIT)
        })
        .await
        .map_err(|e| StartupError(e.to_string()))?
        .map_err(|e| StartupError(format!("DATABASE_URL: {e}")))?;
        let lifetimes = Lifetimes {
            access_ttl: settings.access_ttl,
            refresh_ttl: settings.refresh_ttl,
            leeway: settings.verifier.leeway,
            grace: Duration::from_secs(settings.refresh_grace_secs),
        };
        let stores = match revocations {
            Some(shared) => memory_stores(shared, lifetimes),
            None => revocation_stores(&settings, lifetimes).await?,
        };
        let (revocations, ledger, feed) = (stores.check, stores.ledger, stores.feed);
        let policy = ThrottlePolicy::new(
            settings.login_limit_username,
            settings.login_limit_address,
            settings.register_limit_address,
        );
        let throttle_store = throttle_store(&settings, &policy).await?;
        let secrets = SecretHasher::load_or_create(
            settings.client_secret_key.as_ref().map(|k| k.expose()),
            &settings.keys_dir,
        )
        .map_err(|e| StartupError(format!("AUTH_CLIENT_SECRET_KEY: {e}")))?;
        // Errors name AUTH_MFA_KEY or AUTH_MFA_PREVIOUS_KEYS themselves.
        let mfa = Sealer::load_or_create(
            settings.mfa_key.as_ref().map(|k| k.expose()),
            settings.mfa_previous_keys.as_ref().map(|k| k.expose()),
            &settings.keys_dir,
        )
        .map_err(StartupError)?;
        tracing::info!(
            key_id = mfa.key_id(),
            previous_key_ids = ?mfa.previous_key_ids(),
            "second-factor key ready"
        );
        let clients = ServiceAccounts {
            store: ClientStore::new(pool.clone()),
            secrets,
        };
        let (mut users, mut sessions) = (
            UserStore::new(pool.clone()),
            SessionStore::new(pool.clone()),
        );
        if let shared::db::DatabaseUrl::Postgres(url) = &settings.database_url {
            match LoginStatements::connect(url).await {
                Ok(login) => {
                    tracing::info!(
                        "login statements: one PostgreSQL connection per worker, no blocking pool"
                    );
                    let login = Arc::new(login);
                    users = users.with_login_statements(login.clone());
                    sessions = sessions.with_login_statements(login);
                }
                Err(why) => {
                    tracing::info!(why = %why, "login statements go through the connection pool")
                }
            }
        }
        let factors = FactorStore::new(pool.clone());
        let audit_store = AuditStore::new(pool);
        if let Some(group) = &settings.argon2_cgroup {
            crate::password::hash_in_cpu_group(group.clone());
        }
        crate::password::warm_up();
        if let Some(admin) = &settings.bootstrap_admin {
            bootstrap_admin(
                &users,
                settings.password_policy,
                &admin.username,
                admin.password.expose(),
            )
            .await?;
        }

        let verifier = TokenVerifier::new(
            &settings.verifier,
            KeySet::from_jwks(&keys.published_jwks()),
        );
        let verifier = Arc::new(verifier);
        spawn_key_reloader(
            keys.clone(),
            verifier.clone(),
            Duration::from_secs(settings.keys_reload_secs),
        );
        let auth = web::Data::new(AuthContext {
            verifier,
            revocations: revocations.clone(),
            key_refresher: None,
            accept_cookies: true,
        });
        let metrics = web::Data::new(Metrics::new("auth-service"));
        let pauses = Arc::new(PausePoints::default());
        let state = web::Data::new(AppState {
            users,
            sessions,
            factors,
            audit: AuditLog::new(
                audit_store,
                metrics.clone().into_inner(),
                settings.audit_retention_days,
            ),
            clients,
            tokens: TokenIssuer {
                keys,
                issuer: settings.verifier.issuer.clone(),
                audience: settings.verifier.audience.clone(),
                access_ttl: settings.access_ttl,
                refresh_ttl: settings.refresh_ttl,
            },
            mfa,
            ledger,
            feed,
            feed_heartbeat: Duration::from_secs(settings.feed_heartbeat_secs),
            lifetimes,
            auth: auth.clone(),
            metrics: metrics.clone(),
            jwks_max_age: settings.jwks_max_age,
            throttle: Throttle::new(
                throttle_store,
                policy,
                settings.trusted_proxies.clone(),
                metrics.clone().into_inner(),
            ),
            password_policy: settings.password_policy,
            cookie_secure: settings.cookie_secure,
            public_url: settings.public_url.clone(),
            pauses: pauses.clone(),
        });

        let kept_state = state.clone();
        crate::maintenance::spawn(
            state.clone(),
            Duration::from_secs(settings.prune_interval_secs),
        );
        let bound = shared::server::bind(
            "auth-service",
            settings.listen_addr,
            settings.workers,
            move |cfg: &mut web::ServiceConfig| {
                cfg.app_data(state.clone())
                    .app_data(auth.clone())
                    .app_data(metrics.clone());
                cfg.configure(routes::auth::config)
                    .configure(routes::account::config)
                    .configure(routes::session::config)
                    .configure(routes::mfa::config)
                    .configure(routes::sessions::config)
                    .configure(routes::users::config)
                    .configure(routes::audit::config)
                    .configure(routes::clients::config)
                    .configure(routes::oauth::config)
                    .configure(routes::revocations::config)
                    .configure(routes::well_known::config)
                    .configure(routes::health::config)
                    .configure(routes::openapi::config);
            },
        )
        .map_err(StartupError)?;
        let (port, server) = (bound.port, bound.server);
        Ok(Self {
            port,
            server,
            pauses,
            state: kept_state,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The test hooks of this instance (see [`crate::pause`]); nothing is armed unless a test
    /// arms it.
    pub fn pause_points(&self) -> Arc<PausePoints> {
        self.pauses.clone()
    }

    /// Serves until SIGINT/SIGTERM, then finishes in-flight requests (up to 30 s), writes what
    /// the group writers still hold (audit events, session touches) and returns.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let served = self.server.await;
        self.state.audit.flush().await;
        self.state.sessions.flush().await;
        served
    }
}

/// Watches the keys directory so new keys are published (and verified here) without a restart,
/// and drops retired keys from this instance's own verifier as they retire.
fn spawn_key_reloader(keys: Arc<KeyStore>, verifier: Arc<TokenVerifier>, every: Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tick.tick().await;
            if let Err(err) = keys.reload().await {
                tracing::warn!(error = %err, "keys directory reload failed; keeping the current keys");
            }
            verifier.replace_keys(KeySet::from_jwks(&keys.published_jwks()));
        }
    });
}

async fn throttle_store(
    settings: &Settings,
    policy: &ThrottlePolicy,
) -> Result<Arc<dyn ThrottleStore>, StartupError> {
    match &settings.redis_url {
        Some(url) => {
            let throttle = shared::retry_with_backoff("redis", DEPENDENCY_WAIT, || {
                RedisThrottle::connect(url, &settings.redis_key_prefix, policy.clone())
            })
            .await
            .map_err(|e| StartupError(format!("REDIS_URL: {e}")))?;
            Ok(Arc::new(throttle))
        }
        None => Ok(Arc::new(MemoryThrottle::new(policy.clone()))),
    }
}

/// Redis for both sides when configured; otherwise one in-process store, single node.
/// The revocation store this process reads, the ledger that writes it, and the feed log.
struct RevocationStores {
    check: Arc<dyn RevocationCheck>,
    ledger: Arc<dyn SessionLedger>,
    feed: Arc<dyn FeedLog>,
}

async fn revocation_stores(
    settings: &Settings,
    lifetimes: Lifetimes,
) -> Result<RevocationStores, StartupError> {
    match &settings.redis_url {
        Some(url) => {
            let prefix = &settings.redis_key_prefix;
            let redis_error = |e: StoreUnavailable| StartupError(format!("REDIS_URL: {e}"));
            let check = shared::retry_with_backoff("redis", DEPENDENCY_WAIT, || {
                RedisRevocations::connect(url, prefix)
            })
            .await
            .map_err(redis_error)?;
            let ledger = shared::retry_with_backoff("redis", DEPENDENCY_WAIT, || {
                RedisLedger::connect(url, prefix, lifetimes, settings.redis_wait)
            })
            .await
            .map_err(redis_error)?;
            let feed = shared::retry_with_backoff("redis", DEPENDENCY_WAIT, || {
                RedisFeed::connect(url, prefix)
            })
            .await
            .map_err(redis_error)?;
            Ok(RevocationStores {
                check: Arc::new(check),
                ledger: Arc::new(ledger),
                feed: Arc::new(feed),
            })
        }
        None => {
            tracing::warn!(
                "REDIS_URL is not set: revocations are kept in this process only (single node)"
            );
            Ok(memory_stores(Arc::new(MemoryRevocations::new()), lifetimes))
        }
    }
}

fn memory_stores(store: Arc<MemoryRevocations>, lifetimes: Lifetimes) -> RevocationStores {
    let feed = Arc::new(MemoryFeed::default());
    let ledger = Arc::new(MemoryLedger::new(store.clone(), feed.clone(), lifetimes));
    RevocationStores {
        check: store,
        ledger,
        feed,
    }
}

/// Creates the configured admin unless that username already exists. Its password must pass the
/// password policy like any new password, even when the admin exists already: a weak configured
/// password is a configuration error either way.
async fn bootstrap_admin(
    users: &UserStore,
    policy: PasswordPolicy,
    username: &str,
    password: &str,
) -> Result<(), StartupError> {
    let username = Username::parse(username)
        .map_err(|p| StartupError(format!("AUTH_BOOTSTRAP_ADMIN_USERNAME: {p}")))?;
    let password = Password::parse(password)
        .map_err(|p| StartupError(format!("AUTH_BOOTSTRAP_ADMIN_PASSWORD: {p}")))?;
    let checked = {
        let (username, password) = (username.clone(), password.clone());
        tokio::task::spawn_blocking(move || policy.check(username.as_str(), &password))
    };
    checked
        .await
        .map_err(|e| StartupError(e.to_string()))?
        .map_err(|refusal| StartupError(format!("AUTH_BOOTSTRAP_ADMIN_PASSWORD: {refusal}")))?;
    let existing = users
        .by_username(username.as_str().to_owned())
        .await
        .map_err(|e| StartupError(e.to_string()))?;
    if existing.is_some() {
        return Ok(());
    }
    let hash = tokio::task::spawn_blocking(move || crate::password::hash(&password))
        .await
        .map_err(|e| StartupError(e.to_string()))?
        .map_err(|e| StartupError(e.to_string()))?;
    match users
        .create(
            username.as_str().to_owned(),
            hash,
            vec![Role::User, Role::Admin],
        )
        .await
    {
        // Another instance created it first.
        Ok(_) | Err(AuthError::Conflict(_)) => {
            tracing::info!(username = username.as_str(), "bootstrap admin ready");
            Ok(())
        }
        Err(err) => Err(StartupError(err.to_string())),
    }
}
