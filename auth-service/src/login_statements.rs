//! A login's database statements without the blocking pool: the user by name (for the hash), by
//! id (the roles, read after the user's generation) and the new session's record, each on
//! [`shared::pg_async`]'s connection per worker (what that saves, when it is used, how it fails
//! and recovers: there). Without it (SQLite, or a URL that needs libpq) the stores use the pool.

use shared::pg_async::WorkerStatements;
use tokio_postgres::Row;

use crate::error::AuthError;
use crate::sessions::records::SessionRecord;
use crate::store::{User, UserRow};

const USER_BY_USERNAME: usize = 0;
const USER_BY_ID: usize = 1;
const INSERT_SESSION: usize = 2;
/// The columns in `UserRow`'s order.
const STATEMENTS: &[&str] = &[
    "SELECT id, username, password_hash, roles, created_at, updated_at, disabled, totp_secret, \
     totp_pending, totp_last_step FROM users WHERE username = $1",
    "SELECT id, username, password_hash, roles, created_at, updated_at, disabled, totp_secret, \
     totp_pending, totp_last_step FROM users WHERE id = $1",
    "INSERT INTO sessions (id, user_id, created_at, last_used_at, expires_at, user_agent, ip, \
     ended_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
];

/// How these connections show in `pg_stat_activity` (unless `DATABASE_URL` names one).
pub const APPLICATION_NAME: &str = "auth-service login";

pub struct LoginStatements {
    statements: WorkerStatements,
}

impl LoginStatements {
    /// The statements for `url`, checked with one connection, or why they cannot be used.
    pub async fn connect(url: &str) -> Result<Self, String> {
        let statements = WorkerStatements::from_url(url, APPLICATION_NAME, STATEMENTS)?;
        statements.check().await?;
        Ok(LoginStatements { statements })
    }

    pub async fn user_by_username(&self, username: &str) -> Result<Option<User>, AuthError> {
        self.user(USER_BY_USERNAME, username).await
    }

    pub async fn user_by_id(&self, id: &str) -> Result<Option<User>, AuthError> {
        self.user(USER_BY_ID, id).await
    }

    async fn user(&self, statement: usize, key: &str) -> Result<Option<User>, AuthError> {
        let row = self.statements.query_opt(statement, &[&key]).await?;
        row.map(|row| decode_user(&row)).transpose()
    }

    pub async fn insert_session(&self, record: &SessionRecord) -> Result<(), AuthError> {
        self.statements
            .execute(
                INSERT_SESSION,
                &[
                    &record.id,
                    &record.user_id,
                    &record.created_at,
                    &record.last_used_at,
                    &record.expires_at,
                    &record.user_agent,
                    &record.ip,
                    &record.ended_at,
                ],
            )
            .await?;
        Ok(())
    }
}

fn decode_user(row: &Row) -> Result<User, AuthError> {
    let decode = |e| AuthError::unexpected("decoding a user", e);
    Ok(User::from(UserRow {
        id: row.try_get(0).map_err(decode)?,
        username: row.try_get(1).map_err(decode)?,
        password_hash: row.try_get(2).map_err(decode)?,
        roles: row.try_get(3).map_err(decode)?,
        created_at: row.try_get(4).map_err(decode)?,
        updated_at: row.try_get(5).map_err(decode)?,
        disabled: row.try_get(6).map_err(decode)?,
        totp_secret: row.try_get(7).map_err(decode)?,
        totp_pending: row.try_get(8).map_err(decode)?,
        totp_last_step: row.try_get(9).map_err(decode)?,
    }))
}
