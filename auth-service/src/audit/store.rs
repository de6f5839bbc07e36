//! The audit_events table.

use diesel::prelude::*;
use shared::db::DbPool;

use super::Event;
use crate::error::AuthError;
use crate::schema::audit_events;

#[derive(Clone, Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = audit_events)]
pub struct StoredEvent {
    /// A UUIDv7: ordering by id is ordering by time.
    pub id: String,
    /// Milliseconds since the Unix epoch.
    pub at: i64,
    pub kind: String,
    pub actor: Option<String>,
    pub subject: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub outcome: String,
    pub detail: Option<String>,
}

impl StoredEvent {
    /// The row of `event`, stamped now: its id and time are taken when it happens, not when
    /// its group is written.
    pub fn of(event: Event) -> Self {
        let (ip, user_agent) = match event.origin {
            Some(origin) => (Some(origin.ip), Some(origin.user_agent)),
            None => (None, None),
        };
        StoredEvent {
            id: uuid::Uuid::now_v7().to_string(),
            at: chrono::Utc::now().timestamp_millis(),
            kind: event.kind.as_str().to_owned(),
            actor: event.actor,
            subject: event.subject,
            ip,
            user_agent,
            outcome: event.outcome.as_str().to_owned(),
            detail: event.detail,
        }
    }
}

/// A page of events, newest first: before the id `before`, about `user` (as actor or subject)
/// and of kind `kind` when given.
#[derive(Clone, Debug, Default)]
pub struct AuditQuery {
    pub user: Option<String>,
    pub kind: Option<String>,
    pub before: Option<String>,
    pub limit: i64,
}

#[derive(Clone)]
pub struct AuditStore {
    pool: DbPool,
}

impl AuditStore {
    pub fn new(pool: DbPool) -> Self {
        Self { pool }
    }

    async fn run<T, F>(&self, f: F) -> Result<T, AuthError>
    where
        T: Send + 'static,
        F: FnOnce(&mut shared::db::PooledDb) -> Result<T, AuthError> + Send + 'static,
    {
        shared::db::run(&self.pool, f).await
    }

    /// Stores a group of events in one transaction: all or none.
    pub async fn insert_all(
        &self,
        rows: std::sync::Arc<Vec<StoredEvent>>,
    ) -> Result<(), AuthError> {
        self.run(move |conn| {
            conn.transaction(|conn| {
                for row in rows.iter() {
                    diesel::insert_into(audit_events::table)
                        .values(row)
                        .execute(conn)?;
                }
                Ok(())
            })
        })
        .await
    }

    pub async fn page(&self, query: AuditQuery) -> Result<Vec<StoredEvent>, AuthError> {
        self.run(move |conn| {
            let mut rows = audit_events::table
                .select(StoredEvent::as_select())
                .order(audit_events::id.desc())
                .limit(query.limit)
                .into_boxed();
            if let Some(user) = query.user {
                rows = rows.filter(
                    audit_events::subject
                        .eq(user.clone())
                        .or(audit_events::actor.eq(user)),
                );
            }
            if let Some(kind) = query.kind {
                rows = rows.filter(audit_events::kind.eq(kind));
            }
            if let Some(before) = query.before {
                rows = rows.filter(audit_events::id.lt(before));
            }
            Ok(rows.load(conn)?)
        })
        .await
    }

    pub async fn prune_before(&self, cutoff_ms: i64) -> Result<usize, AuthError> {
        self.run(move |conn| {
            Ok(
                diesel::delete(audit_events::table.filter(audit_events::at.lt(cutoff_ms)))
                    .execute(conn)?,
            )
        })
        .await
    }
}
