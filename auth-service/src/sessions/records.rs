//! The sessions table: one row per login (the tokens' `sid`), for "your sessions" and for
//! administrators. The revocation store decides whether a token is accepted; these rows say
//! what exists, and are marked ended whenever the store ends a session.

use std::sync::Arc;

use diesel::prelude::*;
use shared::db::DbPool;

use crate::error::AuthError;
use crate::login_statements::LoginStatements;
use crate::origin::RequestOrigin;
use crate::schema::sessions;
use crate::write_behind::WriteBehind;

#[derive(Clone, Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = sessions)]
pub struct SessionRecord {
    pub id: String,
    pub user_id: String,
    /// Milliseconds since the Unix epoch, like every time here.
    pub created_at: i64,
    /// The last refresh (never a plain access-token request).
    pub last_used_at: i64,
    /// When its newest refresh token expires.
    pub expires_at: i64,
    pub user_agent: String,
    pub ip: String,
    pub ended_at: Option<i64>,
}

impl SessionRecord {
    pub fn new(id: &str, user_id: &str, origin: &RequestOrigin, now: i64, expires_at: i64) -> Self {
        SessionRecord {
            id: id.to_owned(),
            user_id: user_id.to_owned(),
            created_at: now,
            last_used_at: now,
            expires_at,
            user_agent: origin.user_agent.clone(),
            ip: origin.ip.clone(),
            ended_at: None,
        }
    }
}

/// A refresh's "last used" for the group writer.
struct Touch {
    id: String,
    now: i64,
    expires_at: i64,
}

/// Touches waiting to be written, at most; past that a refresh waits for the database.
const TOUCH_QUEUE: usize = 8192;
/// How long touches gather before they are written: "last used" to the second is plenty, and
/// a session refreshed twice in that time is written once. Listing flushes first.
const TOUCH_LINGER: std::time::Duration = std::time::Duration::from_secs(1);

#[derive(Clone)]
pub struct SessionStore {
    pool: DbPool,
    touches: WriteBehind<Touch>,
    /// The insert without the blocking pool, where PostgreSQL allows.
    login: Option<Arc<LoginStatements>>,
}

impl SessionStore {
    /// Starts the writer of touches: call from within the runtime.
    pub fn new(pool: DbPool) -> Self {
        let writer_pool = pool.clone();
        let touches =
            WriteBehind::spawn_lingering(TOUCH_QUEUE, TOUCH_LINGER, move |group: Vec<Touch>| {
                let pool = writer_pool.clone();
                async move {
                    let count = group.len();
                    if let Err(err) = write_touches(&pool, group).await {
                        tracing::warn!(
                            error = %shared::error::ErrorChain(&err),
                            sessions = count,
                            "session records' last use not updated"
                        );
                    }
                }
            });
        Self {
            pool,
            touches,
            login: None,
        }
    }

    pub fn with_login_statements(self, login: Arc<LoginStatements>) -> Self {
        Self {
            login: Some(login),
            ..self
        }
    }

    async fn run<T, F>(&self, f: F) -> Result<T, AuthError>
    where
        T: Send + 'static,
        F: FnOnce(&mut shared::db::PooledDb) -> Result<T, AuthError> + Send + 'static,
    {
        shared::db::run(&self.pool, f).await
    }

    pub async fn insert(&self, record: SessionRecord) -> Result<(), AuthError> {
        if let Some(login) = &self.login {
            return login.insert_session(&record).await;
        }
        self.run(move |conn| {
            diesel::insert_into(sessions::table)
                .values(&record)
                .execute(conn)?;
            Ok(())
        })
        .await
    }

    /// A refresh: the session was used now and lives until `expires_at`. Bookkeeping only
    /// (the ledger decides what is accepted), so it is queued for the group writer and the
    /// refresh does not wait for the database; readers here flush first.
    pub async fn touch(&self, id: String, now: i64, expires_at: i64) {
        let touch = Touch {
            id,
            now,
            expires_at,
        };
        if self.touches.push(touch).await.is_err() {
            tracing::warn!("session record not updated: the writer has stopped");
        }
    }

    /// Every touch queued so far on this instance, written.
    pub async fn flush(&self) {
        self.touches.flush().await;
    }

    pub async fn get(&self, id: String) -> Result<Option<SessionRecord>, AuthError> {
        self.flush().await;
        self.run(move |conn| {
            Ok(sessions::table
                .find(id)
                .select(SessionRecord::as_select())
                .first(conn)
                .optional()?)
        })
        .await
    }

    /// The user's sessions that are neither ended nor expired, newest first.
    pub async fn live_of(
        &self,
        user_id: String,
        now: i64,
    ) -> Result<Vec<SessionRecord>, AuthError> {
        self.flush().await;
        self.run(move |conn| {
            Ok(sessions::table
                .filter(sessions::user_id.eq(user_id))
                .filter(sessions::ended_at.is_null())
                .filter(sessions::expires_at.gt(now))
                .order((sessions::created_at.desc(), sessions::id.desc()))
                .select(SessionRecord::as_select())
                .load(conn)?)
        })
        .await
    }

    /// Marks one session ended; `false` if it was already ended or does not exist.
    pub async fn end(&self, id: String, now: i64) -> Result<bool, AuthError> {
        self.run(move |conn| {
            let updated = diesel::update(
                sessions::table
                    .find(id)
                    .filter(sessions::ended_at.is_null()),
            )
            .set(sessions::ended_at.eq(now))
            .execute(conn)?;
            Ok(updated > 0)
        })
        .await
    }

    /// Marks every session of the user started until `until` ended (a user cut-off).
    pub async fn end_all_of(
        &self,
        user_id: String,
        until: i64,
        now: i64,
    ) -> Result<usize, AuthError> {
        self.run(move |conn| {
            Ok(diesel::update(
                sessions::table
                    .filter(sessions::user_id.eq(user_id))
                    .filter(sessions::created_at.le(until))
                    .filter(sessions::ended_at.is_null()),
            )
            .set(sessions::ended_at.eq(now))
            .execute(conn)?)
        })
        .await
    }

    /// Deletes ended sessions and sessions whose refresh token has expired.
    pub async fn prune(&self, now: i64) -> Result<usize, AuthError> {
        self.run(move |conn| {
            Ok(diesel::delete(
                sessions::table.filter(
                    sessions::ended_at
                        .is_not_null()
                        .or(sessions::expires_at.le(now)),
                ),
            )
            .execute(conn)?)
        })
        .await
    }
}

/// One transaction for a group of touches; a session touched twice in it is written once, with
/// its last touch.
async fn write_touches(pool: &DbPool, group: Vec<Touch>) -> Result<(), AuthError> {
    let mut latest: std::collections::HashMap<String, (i64, i64)> =
        std::collections::HashMap::with_capacity(group.len());
    for touch in group {
        latest.insert(touch.id, (touch.now, touch.expires_at));
    }
    shared::db::run(pool, move |conn| {
        conn.transaction(|conn| {
            for (id, (now, expires_at)) in latest {
                diesel::update(
                    sessions::table
                        .find(id)
                        .filter(sessions::ended_at.is_null()),
                )
                .set((
                    sessions::last_used_at.eq(now),
                    sessions::expires_at.eq(expires_at),
                ))
                .execute(conn)?;
            }
            Ok(())
        })
    })
    .await
}
