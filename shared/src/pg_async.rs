//! Hot statements on PostgreSQL without the blocking pool.
//!
//! diesel is synchronous, so every query through [`crate::db::run`] hops from the actix worker to
//! a thread of tokio's blocking pool and back: two thread wake-ups and context switches per
//! statement, on top of the PostgreSQL round trip. A service's few statements on a hot path (the
//! single-book read, a login's user reads and its session insert) go through [`WorkerStatements`]
//! instead: each worker thread keeps one tokio-postgres connection of its own, driven by that
//! worker's own runtime, with the statements prepared once per connection; statements in flight
//! on a worker at the same time are pipelined on its connection.
//!
//! Used only when the connection needs nothing libpq alone provides: a `DATABASE_URL` that
//! tokio-postgres parses, names its user, and does not require TLS (`sslmode=require` stays on the
//! pool, as does SQLite). Everything else keeps the pool.
//!
//! Failure: a statement whose connection fails returns an error that [`StatementError::lost`]
//! calls lost (503), and the connection is dropped; the next statement on that worker connects
//! again (the targets of a multi-host URL in order, with `target_session_attrs` as given), so
//! after a PostgreSQL restart or failover each worker fails the statements in flight on its
//! connection, then recovers without a restart.

use std::cell::RefCell;
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_postgres::config::SslMode;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, NoTls, Row, Statement};

/// As long as the pool waits for a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A fixed set of statements, run on one connection per worker thread.
pub struct WorkerStatements {
    id: u64,
    config: Config,
    sql: &'static [&'static str],
}

struct Prepared {
    client: Client,
    statements: Vec<Statement>,
}

/// One worker thread's connection for one `WorkerStatements`.
#[derive(Default)]
struct Slot {
    current: Mutex<Option<Arc<Prepared>>>,
    /// Held while connecting, so a burst of statements on a fresh worker opens one connection.
    connecting: tokio::sync::Mutex<()>,
}

thread_local! {
    static SLOTS: RefCell<HashMap<u64, Arc<Slot>>> = RefCell::new(HashMap::new());
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A statement that failed, and whether its cause was the connection (503) or not (500).
#[derive(Debug, thiserror::Error)]
#[error("{context}")]
pub struct StatementError {
    context: &'static str,
    lost: bool,
    #[source]
    source: tokio_postgres::Error,
}

impl StatementError {
    /// The database went away (no SQL error, or a connection or shutdown class: `08`, `57`), as
    /// [`crate::db::is_connection_lost`] decides on the pool.
    pub fn lost(&self) -> bool {
        self.lost
    }

    fn new(context: &'static str, source: tokio_postgres::Error) -> Self {
        let lost = source.is_closed()
            || source
                .code()
                .is_none_or(|code| code.code().starts_with("08") || code.code().starts_with("57"));
        StatementError {
            context,
            lost,
            source,
        }
    }
}

impl WorkerStatements {
    /// The statements `sql` (each run later by its index) for `url`, or why this path cannot
    /// serve it (then the caller keeps the pool). The connections show in `pg_stat_activity` as
    /// `application_name` unless the URL names one.
    pub fn from_url(
        url: &str,
        application_name: &str,
        sql: &'static [&'static str],
    ) -> Result<Self, String> {
        let mut config = Config::from_str(url).map_err(|e| e.to_string())?;
        if config.get_application_name().is_none() {
            config.application_name(application_name);
        }
        if config.get_ssl_mode() == SslMode::Require {
            return Err("sslmode=require needs TLS, which this path does not have".into());
        }
        if config.get_user().is_none() {
            return Err("the URL names no user (libpq would take it from the environment)".into());
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        Ok(WorkerStatements {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            config,
            sql,
        })
    }

    /// Connects and prepares every statement once, at start, so a URL this path cannot use (a
    /// password that only libpq's password file holds, say) or a statement the schema does not
    /// fit is found before any request.
    pub async fn check(&self) -> Result<(), String> {
        let (client, connection) = self
            .config
            .connect(NoTls)
            .await
            .map_err(|e| e.to_string())?;
        let driver = tokio::spawn(connection);
        let mut prepared = Ok(());
        for sql in self.sql {
            if let Err(err) = client.prepare(sql).await {
                prepared = Err(err.to_string());
                break;
            }
        }
        drop(client);
        let _ = driver.await;
        prepared
    }

    fn slot(&self) -> Arc<Slot> {
        SLOTS.with(|slots| slots.borrow_mut().entry(self.id).or_default().clone())
    }

    async fn prepared(&self, slot: &Slot) -> Result<Arc<Prepared>, StatementError> {
        let current = || {
            slot.current
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
                .filter(|p| !p.client.is_closed())
        };
        if let Some(prepared) = current() {
            return Ok(prepared);
        }
        let _connecting = slot.connecting.lock().await;
        if let Some(prepared) = current() {
            return Ok(prepared);
        }
        let connecting = |e| StatementError::new("connecting to the database", e);
        let (client, connection) = self.config.connect(NoTls).await.map_err(connecting)?;
        // Driven by this worker's runtime, where its statements run.
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::warn!(error = %err, "database statement connection closed");
            }
        });
        let mut statements = Vec::with_capacity(self.sql.len());
        for sql in self.sql {
            let statement = client
                .prepare(sql)
                .await
                .map_err(|e| StatementError::new("preparing a statement", e))?;
            statements.push(statement);
        }
        let prepared = Arc::new(Prepared { client, statements });
        *slot.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(prepared.clone());
        Ok(prepared)
    }

    /// Runs statement `index` (of the `sql` given at construction) with `params`: at most one row.
    pub async fn query_opt(
        &self,
        index: usize,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, StatementError> {
        let slot = self.slot();
        let prepared = self.prepared(&slot).await?;
        let outcome = prepared
            .client
            .query_opt(&prepared.statements[index], params)
            .await;
        self.settle(&slot, &prepared, outcome)
    }

    /// Runs statement `index` with `params`: the rows it changed.
    pub async fn execute(
        &self,
        index: usize,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, StatementError> {
        let slot = self.slot();
        let prepared = self.prepared(&slot).await?;
        let outcome = prepared
            .client
            .execute(&prepared.statements[index], params)
            .await;
        self.settle(&slot, &prepared, outcome)
    }

    /// Whatever went wrong, the next statement on this worker gets a fresh connection (and
    /// statements): a failed connection is not asked again, and a statement the server no longer
    /// knows (a restart) is prepared anew.
    fn settle<T>(
        &self,
        slot: &Slot,
        prepared: &Arc<Prepared>,
        outcome: Result<T, tokio_postgres::Error>,
    ) -> Result<T, StatementError> {
        outcome.map_err(|err| {
            let mut current = slot.current.lock().unwrap_or_else(|e| e.into_inner());
            if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, prepared)) {
                *current = None;
            }
            StatementError::new("a database statement", err)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::WorkerStatements;

    #[test]
    fn urls_that_need_libpq_stay_on_the_pool() {
        const SQL: &[&str] = &["SELECT 1"];
        let refused = |url: &str| {
            WorkerStatements::from_url(url, "test", SQL)
                .err()
                .unwrap_or_default()
        };
        assert!(refused("postgres://books@db:5432/books?sslmode=require").contains("TLS"));
        assert!(refused("postgres://db:5432/books").contains("no user"));
        assert!(WorkerStatements::from_url(
            "postgres://books:secret@db:5432/books?sslmode=disable",
            "test",
            SQL
        )
        .is_ok());
        assert!(WorkerStatements::from_url(
            "postgres://postgres@127.0.0.1:5433,127.0.0.1:5434/books?target_session_attrs=read-write",
            "test",
            SQL
        )
        .is_ok());
    }
}
