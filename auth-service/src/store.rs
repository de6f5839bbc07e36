//! The users table. Synchronous diesel: every call runs on the blocking pool via [`UserStore`].

use std::sync::Arc;

use diesel::prelude::*;
use shared::db::{violates_unique, DbPool};
use shared::Role;

use crate::error::AuthError;
use crate::login_statements::LoginStatements;
use crate::schema::users;

#[derive(Clone, Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = users)]
pub struct UserRow {
    pub id: String,
    pub username: String,
    pub password_hash: String,
    pub roles: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub disabled: bool,
    pub totp_secret: Option<String>,
    pub totp_pending: Option<String>,
    pub totp_last_step: i64,
}

/// A user as the rest of the service sees it.
#[derive(Clone, Debug)]
pub struct User {
    pub id: String,
    pub username: String,
    pub password_hash: String,
    pub roles: Vec<Role>,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
    /// Disabled by an administrator: no login, no refresh, every token cut off.
    pub disabled: bool,
    /// The second factor, sealed (see `mfa`): enrolled when `totp_secret` is set.
    pub totp_secret: Option<String>,
    pub totp_pending: Option<String>,
    /// The newest TOTP time step accepted (replays of it or older steps are refused).
    pub totp_last_step: i64,
}

impl User {
    /// Whether a second factor is enrolled (and so required at every login).
    pub fn mfa(&self) -> bool {
        self.totp_secret.is_some()
    }
}

impl From<UserRow> for User {
    fn from(row: UserRow) -> Self {
        User {
            roles: decode_roles(&row.roles),
            id: row.id,
            username: row.username,
            password_hash: row.password_hash,
            created_at: row.created_at,
            disabled: row.disabled,
            totp_secret: row.totp_secret,
            totp_pending: row.totp_pending,
            totp_last_step: row.totp_last_step,
        }
    }
}

/// Roles are stored as comma-separated names, the same on both backends.
fn encode_roles(roles: &[Role]) -> String {
    roles
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

fn decode_roles(raw: &str) -> Vec<Role> {
    raw.split(',').filter_map(Role::parse).collect()
}

fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[derive(Clone)]
pub struct UserStore {
    pool: DbPool,
    /// The reads by name and id without the blocking pool, where PostgreSQL allows.
    login: Option<Arc<LoginStatements>>,
}

impl UserStore {
    pub fn new(pool: DbPool) -> Self {
        Self { pool, login: None }
    }

    pub fn with_login_statements(self, login: Arc<LoginStatements>) -> Self {
        Self {
            login: Some(login),
            ..self
        }
    }

    pub fn pool(&self) -> &DbPool {
        &self.pool
    }

    async fn run<T, F>(&self, f: F) -> Result<T, AuthError>
    where
        T: Send + 'static,
        F: FnOnce(&mut shared::db::PooledDb) -> Result<T, AuthError> + Send + 'static,
    {
        shared::db::run(&self.pool, f).await
    }

    /// Inserts a new user; a taken username is `Conflict`, decided by the unique index.
    pub async fn create(
        &self,
        username: String,
        password_hash: String,
        roles: Vec<Role>,
    ) -> Result<User, AuthError> {
        let now = now_millis();
        let row = UserRow {
            id: uuid::Uuid::now_v7().to_string(),
            username,
            password_hash,
            roles: encode_roles(&roles),
            created_at: now,
            updated_at: now,
            disabled: false,
            totp_secret: None,
            totp_pending: None,
            totp_last_step: 0,
        };
        self.run(move |conn| {
            diesel::insert_into(users::table)
                .values(&row)
                .execute(conn)
                .map_err(|e| {
                    if violates_unique(&e, "users_username_key", "users.username") {
                        AuthError::Conflict("username is already taken")
                    } else {
                        AuthError::from(e)
                    }
                })?;
            Ok(User::from(row))
        })
        .await
    }

    pub async fn by_username(&self, username: String) -> Result<Option<User>, AuthError> {
        if let Some(login) = &self.login {
            return login.user_by_username(&username).await;
        }
        self.run(move |conn| {
            Ok(users::table
                .filter(users::username.eq(username))
                .select(UserRow::as_select())
                .first(conn)
                .optional()?
                .map(User::from))
        })
        .await
    }

    pub async fn by_id(&self, id: String) -> Result<Option<User>, AuthError> {
        if let Some(login) = &self.login {
            return login.user_by_id(&id).await;
        }
        self.run(move |conn| {
            Ok(users::table
                .find(id)
                .select(UserRow::as_select())
                .first(conn)
                .optional()?
                .map(User::from))
        })
        .await
    }

    pub async fn set_password_hash(&self, id: String, hash: String) -> Result<(), AuthError> {
        self.run(move |conn| {
            diesel::update(users::table.find(id))
                .set((
                    users::password_hash.eq(hash),
                    users::updated_at.eq(now_millis()),
                ))
                .execute(conn)?;
            Ok(())
        })
        .await
    }

    /// Replaces a user's roles; `None` when there is no such user.
    pub async fn set_roles(&self, id: String, roles: Vec<Role>) -> Result<Option<User>, AuthError> {
        self.run(move |conn| {
            let updated = diesel::update(users::table.find(&id))
                .set((
                    users::roles.eq(encode_roles(&roles)),
                    users::updated_at.eq(now_millis()),
                ))
                .execute(conn)?;
            if updated == 0 {
                return Ok(None);
            }
            Ok(users::table
                .find(&id)
                .select(UserRow::as_select())
                .first(conn)
                .optional()?
                .map(User::from))
        })
        .await
    }

    /// Users in creation order (ids are UUIDv7), after the id `after`; with `username`, only
    /// that name (usernames are stored lower-cased, so this is a case-insensitive match).
    pub async fn page(
        &self,
        username: Option<String>,
        after: Option<String>,
        limit: i64,
    ) -> Result<Vec<User>, AuthError> {
        self.run(move |conn| {
            let mut query = users::table
                .select(UserRow::as_select())
                .order(users::id.asc())
                .limit(limit)
                .into_boxed();
            if let Some(name) = username {
                query = query.filter(users::username.eq(name.to_ascii_lowercase()));
            }
            if let Some(after) = after {
                query = query.filter(users::id.gt(after));
            }
            Ok(query.load(conn)?.into_iter().map(User::from).collect())
        })
        .await
    }

    /// Sets or clears the disabled flag; `None` when there is no such user.
    pub async fn set_disabled(
        &self,
        id: String,
        disabled: bool,
    ) -> Result<Option<User>, AuthError> {
        self.run(move |conn| {
            let updated = diesel::update(users::table.find(&id))
                .set((
                    users::disabled.eq(disabled),
                    users::updated_at.eq(now_millis()),
                ))
                .execute(conn)?;
            if updated == 0 {
                return Ok(None);
            }
            Ok(users::table
                .find(&id)
                .select(UserRow::as_select())
                .first(conn)
                .optional()?
                .map(User::from))
        })
        .await
    }

    pub async fn ping(&self) -> Result<(), AuthError> {
        let pool = self.pool.clone();
        tokio::task::spawn_blocking(move || shared::db::ping(&pool))
            .await
            .map_err(|e| AuthError::unexpected("the readiness check", e))?
            .map_err(|e| AuthError::unavailable("the database", e))
    }
}

impl shared::db::StoreError for AuthError {
    fn checkout_failed(err: diesel::r2d2::PoolError) -> Self {
        AuthError::unavailable("the database pool", err)
    }

    fn task_failed(err: tokio::task::JoinError) -> Self {
        AuthError::unexpected("a database task", err)
    }

    fn may_have_lost_connection(&self) -> bool {
        matches!(
            self,
            AuthError::Unavailable { .. } | AuthError::Unexpected { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_through_text() {
        let roles = vec![Role::User, Role::Admin];
        assert_eq!(encode_roles(&roles), "user,admin");
        assert_eq!(decode_roles("user,admin"), roles);
        assert_eq!(decode_roles("user,bogus"), vec![Role::User]);
    }
}
