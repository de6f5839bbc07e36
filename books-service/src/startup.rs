//! Building and running the service: settings in, a bound server out.

use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::web;
use diesel_migrations::{embed_migrations, EmbeddedMigrations};
use shared::config::{invalid, ConfigError};
use shared::jwks_cache::JwksCache;
use shared::revocation::{MemoryRevocations, RevocationCheck, RevocationFeed, RevocationReplica};
use shared::{AuthContext, KeySet, Metrics, TokenVerifier};

use crate::cache::{BookCache, CacheSettings};
use crate::config::Settings;
use crate::reads::PgReads;
use crate::routes;
use crate::state::AppState;
use crate::store::BookStore;

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

const DEPENDENCY_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// A setting that passed parsing but cannot work, reported like any configuration error.
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("DATABASE_URL: {0}")]
    Database(#[source] shared::db::DbSetupError),
    #[error("start-up task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("{0}")]
    Bind(String),
}

pub struct Application {
    port: u16,
    server: Server,
    keys: Arc<JwksCache>,
    cache: Option<BookCache>,
}

/// The async read path for `url`, checked with one connection (see `reads`).
async fn async_reads(url: &str) -> Result<PgReads, String> {
    let reads = PgReads::from_url(url)?;
    reads.check().await?;
    Ok(reads)
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        Self::build_with(settings, None).await
    }

    /// `revocations` replaces the Redis replica or the feed: for running in one process beside auth-service
    /// and sharing its in-process store.
    pub async fn build_with(
        settings: Settings,
        revocations: Option<Arc<dyn RevocationCheck>>,
    ) -> Result<Self, StartupError> {
        // Checked before anything starts, so a missing revocation source fails at once.
        if revocations.is_none()
            && settings.redis_url.is_none()
            && settings.revocation_feed.is_none()
            && !settings.allow_no_revocations
        {
            return Err(invalid(
                "REDIS_URL",
                "not set, so revoked tokens would be accepted; set it to the Redis auth-service revokes into, or set REVOCATION_FEED_URL (with REVOCATION_FEED_CLIENT_ID and REVOCATION_FEED_CLIENT_SECRET) to follow auth-service's revocation feed, or BOOKS_ALLOW_NO_REVOCATIONS=true to run without revocation checks",
            )
            .into());
        }
        let database_url = settings.database_url.clone();
        let pool = tokio::task::spawn_blocking(move || {
            shared::db::connect_and_migrate(&database_url, MIGRATIONS, DEPENDENCY_WAIT)
        })
        .await?
        .map_err(StartupError::Database)?;
        let books = match &settings.database_url {
            shared::db::DatabaseUrl::Postgres(url) => {
                match async_reads(url).await {
                    Ok(reads) => {
                        tracing::info!("single-book reads: one PostgreSQL connection per worker, no blocking pool");
                        BookStore::new(pool).with_reads(reads)
                    }
                    Err(why) => {
                        tracing::info!(why = %why, "single-book reads go through the connection pool");
                        BookStore::new(pool)
                    }
                }
            }
            shared::db::DatabaseUrl::Sqlite(_) => BookStore::new(pool),
        };
        let metrics = web::Data::new(Metrics::new("books-service"));
        // With Redis, instances can agree on what each may serve from memory (see `cache`).
        let books = match (&settings.redis_url, revocations.is_some()) {
            (Some(target), false) => books.with_cache(BookCache::start(
                target.clone(),
                &settings.redis_key_prefix,
                &CacheSettings {
                    entries: settings.book_cache_entries,
                },
                &metrics,
            )),
            _ => books,
        };

        let revocations: Arc<dyn RevocationCheck> = match (
            revocations,
            &settings.redis_url,
            &settings.revocation_feed,
        ) {
            (Some(shared), _, _) => shared,
            (None, Some(url), _) => RevocationReplica::start(
                url.clone(),
                settings.redis_key_prefix.clone(),
                settings.revocation_staleness,
            ),
            (None, None, Some(feed)) => {
                RevocationFeed::start(feed.clone(), settings.revocation_staleness)
            }
            (None, None, None) => {
                tracing::warn!("REDIS_URL is not set and BOOKS_ALLOW_NO_REVOCATIONS=true: revoked tokens are accepted here until they expire");
                Arc::new(MemoryRevocations::new())
            }
        };
        let verifier = Arc::new(
            TokenVerifier::new(&settings.verifier, KeySet::default())
                .with_verified_cache(settings.verified_token_cache),
        );
        let keys = JwksCache::start(
            settings.jwks_url.clone(),
            verifier.clone(),
            settings.jwks_cooldown,
        );
        let auth = web::Data::new(AuthContext {
            verifier,
            revocations: revocations.clone(),
            key_refresher: Some(keys.clone()),
            accept_cookies: true,
        });
        let cache = books.cache().cloned();
        let state = web::Data::new(AppState {
            books,
            revocations,
            keys: keys.clone(),
            metrics: metrics.clone(),
        });

        let bound = shared::server::bind(
            "books-service",
            settings.listen_addr,
            settings.workers,
            move |cfg: &mut web::ServiceConfig| {
                cfg.app_data(state.clone())
                    .app_data(auth.clone())
                    .app_data(metrics.clone());
                cfg.configure(routes::books::config);
                cfg.configure(routes::health::config);
                cfg.configure(routes::openapi::config);
            },
        )
        .map_err(StartupError::Bind)?;
        let (port, server) = (bound.port, bound.server);
        Ok(Self {
            port,
            server,
            keys,
            cache,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The key cache, so tests and benchmarks can observe fetches.
    pub fn keys(&self) -> Arc<JwksCache> {
        self.keys.clone()
    }

    /// The book cache, so tests can stall it (`BookCache::hold`) and see its lease.
    pub fn book_cache(&self) -> Option<BookCache> {
        self.cache.clone()
    }

    /// Serves until SIGINT/SIGTERM, then finishes in-flight requests (up to 30 s) and returns.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}
