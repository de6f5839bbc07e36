//! `GET /books/{id}` on PostgreSQL without the blocking pool.
//!
//! diesel is synchronous, so every query through [`shared::db::run`] hops from the actix worker
//! to a thread of tokio's blocking pool and back: two thread wake-ups and context switches per
//! read, on top of the PostgreSQL round trip. Here each actix worker thread keeps one
//! tokio-postgres connection of its own, driven by that worker's own runtime, with the statement
//! prepared once per connection; the reads that are in flight on a worker at the same time are
//! pipelined on its connection. What is cached in front of it, and how writes keep that
//! correct across instances, is `cache`'s business.
//!
//! Used only when the connection needs nothing libpq alone provides: a `DATABASE_URL` that
//! tokio-postgres parses, names its user, and does not require TLS (`sslmode=require` stays on the
//! pool, as does SQLite). Writes, pages and `/readyz` keep the pool.
//!
//! Failure: a read whose connection fails gets `503 unavailable` and the connection is dropped;
//! the next read on that worker connects again (the targets of a multi-host URL in order, with
//! `target_session_attrs` as given), so after a PostgreSQL restart or failover each worker fails
//! the reads in flight on its connection, then recovers without a restart.

use std::cell::RefCell;
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, Config, NoTls, Statement};

use crate::error::BooksError;
use crate::store::BookRow;

const GET_BOOK: &str = "SELECT id, title, author, isbn, published_year, created_at, updated_at, \
                        version FROM books WHERE id = $1";

/// As long as the pool waits for a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The async read path of one `BookStore`; its connections live in the threads that use it.
pub struct PgReads {
    id: u64,
    config: Config,
}

struct Reader {
    client: Client,
    get: Statement,
}

/// One worker thread's connection for one `PgReads`.
#[derive(Default)]
struct Slot {
    current: Mutex<Option<Arc<Reader>>>,
    /// Held while connecting, so a burst of reads on a fresh worker opens one connection.
    connecting: tokio::sync::Mutex<()>,
}

thread_local! {
    static SLOTS: RefCell<HashMap<u64, Arc<Slot>>> = RefCell::new(HashMap::new());
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl PgReads {
    /// The read path for `url`, or why it cannot serve it (then reads stay on the pool).
    pub fn from_url(url: &str) -> Result<Self, String> {
        let mut config = Config::from_str(url).map_err(|e| e.to_string())?;
        if config.get_ssl_mode() == SslMode::Require {
            return Err("sslmode=require needs TLS, which this path does not have".into());
        }
        if config.get_user().is_none() {
            return Err("the URL names no user (libpq would take it from the environment)".into());
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        Ok(PgReads {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            config,
        })
    }

    /// Connects and prepares once, at start, so a URL this path cannot use (a password that only
    /// libpq's password file holds, say) is found before any request.
    pub async fn check(&self) -> Result<(), String> {
        let (client, connection) = self
            .config
            .connect(NoTls)
            .await
            .map_err(|e| e.to_string())?;
        let driver = tokio::spawn(connection);
        let prepared = client.prepare(GET_BOOK).await.map_err(|e| e.to_string());
        drop(client);
        let _ = driver.await;
        prepared.map(drop)
    }

    fn slot(&self) -> Arc<Slot> {
        SLOTS.with(|slots| slots.borrow_mut().entry(self.id).or_default().clone())
    }

    async fn reader(&self, slot: &Slot) -> Result<Arc<Reader>, BooksError> {
        let current = || {
            slot.current
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
                .filter(|r| !r.client.is_closed())
        };
        if let Some(reader) = current() {
            return Ok(reader);
        }
        let _connecting = slot.connecting.lock().await;
        if let Some(reader) = current() {
            return Ok(reader);
        }
        let (client, connection) = self
            .config
            .connect(NoTls)
            .await
            .map_err(|e| BooksError::unavailable("the database", e))?;
        // Driven by this worker's runtime, where its reads run.
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::warn!(error = %err, "database read connection closed");
            }
        });
        let get = client
            .prepare(GET_BOOK)
            .await
            .map_err(|e| BooksError::unavailable("the database", e))?;
        let reader = Arc::new(Reader { client, get });
        *slot.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(reader.clone());
        Ok(reader)
    }

    pub async fn get(&self, id: &str) -> Result<BookRow, BooksError> {
        let slot = self.slot();
        let reader = self.reader(&slot).await?;
        let row = match reader.client.query_opt(&reader.get, &[&id]).await {
            Ok(Some(row)) => row,
            Ok(None) => return Err(BooksError::NotFound),
            Err(err) => {
                // Whatever went wrong, the next read gets a fresh connection (and statement).
                let mut current = slot.current.lock().unwrap_or_else(|e| e.into_inner());
                if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, &reader)) {
                    *current = None;
                }
                return Err(classify(err));
            }
        };
        let decode = |e| BooksError::unexpected("decoding a book", e);
        Ok(BookRow {
            id: row.try_get(0).map_err(decode)?,
            title: row.try_get(1).map_err(decode)?,
            author: row.try_get(2).map_err(decode)?,
            isbn: row.try_get(3).map_err(decode)?,
            published_year: row.try_get(4).map_err(decode)?,
            created_at: row.try_get(5).map_err(decode)?,
            updated_at: row.try_get(6).map_err(decode)?,
            version: row.try_get(7).map_err(decode)?,
        })
    }
}

/// 503 when the database went away (no SQL error, or a connection or shutdown class: `08`,
/// `57`), 500 for anything else, as [`shared::db::is_connection_lost`] decides on the pool.
fn classify(err: tokio_postgres::Error) -> BooksError {
    let lost = err.is_closed()
        || err
            .code()
            .is_none_or(|code| code.code().starts_with("08") || code.code().starts_with("57"));
    if lost {
        BooksError::unavailable("the database", err)
    } else {
        BooksError::unexpected("a database query", err)
    }
}

#[cfg(test)]
mod tests {
    use super::PgReads;

    #[test]
    fn urls_that_need_libpq_stay_on_the_pool() {
        let refused = |url: &str| PgReads::from_url(url).err().unwrap_or_default();
        assert!(refused("postgres://books@db:5432/books?sslmode=require").contains("TLS"));
        assert!(refused("postgres://db:5432/books").contains("no user"));
        assert!(PgReads::from_url("postgres://books:secret@db:5432/books?sslmode=disable").is_ok());
        assert!(PgReads::from_url(
            "postgres://postgres@127.0.0.1:5433,127.0.0.1:5434/books?target_session_attrs=read-write"
        )
        .is_ok());
    }
}
