//! One diesel code path over two backends: PostgreSQL in production, an embedded SQLite file as
//! the zero-setup default. Both services use this pool and the same retry-at-start rule.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::r2d2::{self, ManageConnection};
use diesel::sqlite::SqliteConnection;
use diesel::Connection;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness};

#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    Pg(PgConnection),
    Sqlite(SqliteConnection),
}

pub type DbPool = r2d2::Pool<DbManager>;
pub type PooledDb = r2d2::PooledConnection<DbManager>;

/// Where the data lives, parsed from `DATABASE_URL`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatabaseUrl {
    Postgres(String),
    Sqlite(PathBuf),
}

impl DatabaseUrl {
    /// `postgres://...`/`postgresql://...` or `sqlite://PATH`; anything else is refused rather than
    /// guessed, so a typo never silently becomes a new SQLite file.
    pub fn parse(value: &str) -> Result<Self, String> {
        if value.starts_with("postgres://") || value.starts_with("postgresql://") {
            Ok(DatabaseUrl::Postgres(value.to_owned()))
        } else if let Some(path) = value.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err("sqlite:// needs a file path".into());
            }
            Ok(DatabaseUrl::Sqlite(PathBuf::from(path)))
        } else {
            Err("expected postgres://... or sqlite://PATH".into())
        }
    }

    pub fn backend(&self) -> &'static str {
        match self {
            DatabaseUrl::Postgres(_) => "postgres",
            DatabaseUrl::Sqlite(_) => "sqlite",
        }
    }
}

/// The r2d2 manager: opens exactly the configured backend (the derive's own `establish` would try
/// each backend in turn, and SQLite accepts any string as a path).
pub struct DbManager {
    url: DatabaseUrl,
}

impl ManageConnection for DbManager {
    type Connection = DbConnection;
    type Error = r2d2::Error;

    fn connect(&self) -> Result<DbConnection, r2d2::Error> {
        match &self.url {
            DatabaseUrl::Postgres(url) => PgConnection::establish(url)
                .map(DbConnection::Pg)
                .map_err(r2d2::Error::ConnectionError),
            DatabaseUrl::Sqlite(path) => {
                let path = path.to_string_lossy();
                let mut conn =
                    SqliteConnection::establish(&path).map_err(r2d2::Error::ConnectionError)?;
                // WAL lets readers run beside the one writer; busy_timeout makes writers queue
                // instead of failing with "database is locked".
                conn.batch_execute(
                    "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000; \
                     PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
                )
                .map_err(r2d2::Error::QueryError)?;
                Ok(DbConnection::Sqlite(conn))
            }
        }
    }

    /// Only for r2d2's own checks; checkouts are not tested (see [`discard`]).
    fn is_valid(&self, conn: &mut DbConnection) -> Result<(), r2d2::Error> {
        conn.batch_execute("SELECT 1")
            .map_err(r2d2::Error::QueryError)
    }

    fn has_broken(&self, _conn: &mut DbConnection) -> bool {
        DISCARD_ON_RETURN.take()
    }
}

thread_local! {
    /// Set by [`discard`] just before the connection checked out on this thread is returned.
    static DISCARD_ON_RETURN: Cell<bool> = const { Cell::new(false) };
}

/// What [`run`] needs from a service's error type.
pub trait StoreError: Send + 'static {
    /// No connection could be checked out (database down, pool exhausted).
    fn checkout_failed(err: r2d2::PoolError) -> Self;
    /// The blocking task panicked or was cancelled.
    fn task_failed(err: tokio::task::JoinError) -> Self;
    /// Whether the failure may have left the connection dead, so it must not be reused.
    fn may_have_lost_connection(&self) -> bool;
}

/// Runs `f` with a pooled connection on tokio's blocking pool (diesel is synchronous). A
/// connection whose work failed with [`StoreError::may_have_lost_connection`] is closed, not
/// reused ([`discard`]).
pub async fn run<T, E, F>(pool: &DbPool, f: F) -> Result<T, E>
where
    T: Send + 'static,
    E: StoreError,
    F: FnOnce(&mut PooledDb) -> Result<T, E> + Send + 'static,
{
    let pool = pool.clone();
    tokio::task::spawn_blocking(move || {
        let mut conn = pool.get().map_err(E::checkout_failed)?;
        let result = f(&mut conn);
        if matches!(&result, Err(err) if err.may_have_lost_connection()) {
            discard(conn);
        }
        result
    })
    .await
    .map_err(E::task_failed)?
}

/// Returns `conn` to the pool to be closed instead of reused, after work on it failed in a way
/// that may mean the connection is dead (PostgreSQL restarted, network cut).
///
/// This replaces r2d2's `SELECT 1` on every checkout, which cost a GET one extra PostgreSQL round
/// trip (profiled with `BENCH_PERF=1 bash deploy/bench.sh`). The price: after a PostgreSQL restart
/// each pooled connection fails one request with 503 `unavailable` before it is replaced.
pub fn discard(conn: PooledDb) {
    DISCARD_ON_RETURN.set(true);
    // r2d2 asks `has_broken` on this thread as the connection goes back.
    drop(conn);
}

/// Creates a missing SQLite file with mode 0600 (and its missing directories with 0700) before
/// SQLite would create it with the umask's mode, typically 0644: it holds password hashes.
/// SQLite gives its `-wal` and `-shm` files the database file's mode. An existing file is left
/// as it is.
pub fn create_private_sqlite_file(path: &Path) -> Result<(), DbSetupError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| DbSetupError::DataDir(dir.display().to_string(), e))?;
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(DbSetupError::DataFile(path.display().to_string(), e)),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DbSetupError {
    #[error("cannot create the data directory {0}: {1}")]
    DataDir(String, #[source] std::io::Error),
    #[error("cannot create the database file {0}: {1}")]
    DataFile(String, #[source] std::io::Error),
    #[error("database not reachable: {0}")]
    Unreachable(String),
    #[error("migrations failed: {0}")]
    Migrations(String),
}

/// Key of the PostgreSQL advisory lock held while migrating ("authbks" in ASCII).
const MIGRATION_LOCK: i64 = 0x0061_7574_6862_6b73;

/// Builds the pool and applies the embedded migrations, retrying with backoff for up to
/// `wait` while the database is not reachable yet (containers start in any order).
pub fn connect_and_migrate(
    url: &DatabaseUrl,
    migrations: EmbeddedMigrations,
    wait: Duration,
) -> Result<DbPool, DbSetupError> {
    if let DatabaseUrl::Sqlite(path) = url {
        create_private_sqlite_file(path)?;
    }
    let max_size = match url {
        DatabaseUrl::Postgres(_) => 10,
        DatabaseUrl::Sqlite(_) => 4,
    };
    let pool = r2d2::Pool::builder()
        .max_size(max_size)
        .min_idle(Some(1))
        .connection_timeout(Duration::from_secs(2))
        .test_on_check_out(false)
        .build_unchecked(DbManager { url: url.clone() });

    let deadline = std::time::Instant::now() + wait;
    let mut delay = Duration::from_millis(100);
    let mut conn = loop {
        match pool.get() {
            Ok(conn) => break conn,
            Err(err) if std::time::Instant::now() + delay < deadline => {
                tracing::warn!(error = %err, retry_in_ms = delay.as_millis() as u64, "database not reachable yet");
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(3));
            }
            Err(err) => return Err(DbSetupError::Unreachable(err.to_string())),
        }
    };
    let applied = match &mut *conn {
        DbConnection::Pg(c) => {
            // Instances starting together would race on CREATE TABLE; one migrates at a time.
            c.batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))
                .map_err(|e| DbSetupError::Migrations(e.to_string()))?;
            let applied = c.run_pending_migrations(migrations).map(|v| v.len());
            let unlocked = c.batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"));
            let applied = applied.map_err(|e| DbSetupError::Migrations(e.to_string()))?;
            unlocked.map_err(|e| DbSetupError::Migrations(e.to_string()))?;
            applied
        }
        DbConnection::Sqlite(c) => c
            .run_pending_migrations(migrations)
            .map(|v| v.len())
            .map_err(|e| DbSetupError::Migrations(e.to_string()))?,
    };
    tracing::info!(backend = url.backend(), applied, "database ready");
    drop(conn);
    Ok(pool)
}

/// `SELECT 1` through the pool, for `/readyz`.
pub fn ping(pool: &DbPool) -> Result<(), String> {
    let mut conn = pool.get().map_err(|e| e.to_string())?;
    let checked = conn.batch_execute("SELECT 1");
    if let Err(err) = checked {
        discard(conn);
        return Err(err.to_string());
    }
    Ok(())
}

/// Whether a diesel error violates the unique index `index` on `table.column`: PostgreSQL names
/// the index; SQLite names only the column ("UNIQUE constraint failed: table.column"). Matched
/// by name so that a violation of some other constraint is never mistaken for this conflict.
pub fn violates_unique(err: &diesel::result::Error, index: &str, table_column: &str) -> bool {
    match err {
        diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            info,
        ) => match info.constraint_name() {
            Some(name) => name == index,
            None => info.message().ends_with(table_column),
        },
        _ => false,
    }
}

/// Whether a diesel error means the database went away (503) rather than a bug (500).
pub fn is_connection_lost(err: &diesel::result::Error) -> bool {
    use diesel::result::{DatabaseErrorKind, Error};
    matches!(
        err,
        Error::DatabaseError(
            DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
            _
        )
    )
}

#[cfg(test)]
mod tests {
    use super::{create_private_sqlite_file, DatabaseUrl};
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &std::path::Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_new_sqlite_file_and_its_new_directory_are_private() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("data/nested/auth.db");
        create_private_sqlite_file(&file).unwrap();
        assert_eq!(mode(&file), 0o600);
        assert_eq!(mode(&tmp.path().join("data/nested")), 0o700);
        assert_eq!(mode(&tmp.path().join("data")), 0o700);

        // An existing file is the operator's: neither truncated nor re-moded.
        std::fs::write(&file, b"x").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
        create_private_sqlite_file(&file).unwrap();
        assert_eq!(mode(&file), 0o640);
        assert_eq!(std::fs::read(&file).unwrap(), b"x");
    }

    #[test]
    fn database_urls_are_parsed_strictly() {
        assert_eq!(
            DatabaseUrl::parse("sqlite://data/a.db"),
            Ok(DatabaseUrl::Sqlite("data/a.db".into()))
        );
        assert!(matches!(
            DatabaseUrl::parse("postgres://u@h/db"),
            Ok(DatabaseUrl::Postgres(_))
        ));
        assert!(DatabaseUrl::parse("mysql://x").is_err());
        assert!(DatabaseUrl::parse("data.db").is_err());
        assert!(DatabaseUrl::parse("sqlite://").is_err());
    }
}
