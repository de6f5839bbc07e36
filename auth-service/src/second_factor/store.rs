//! Second-factor rows: the TOTP columns of `users`, `recovery_codes` and `mfa_challenges`.
//! Every "use once" rule is one conditional statement, so two instances racing with the same
//! code or token cannot both win.

use diesel::prelude::*;
use shared::db::DbPool;

use crate::error::AuthError;
use crate::schema::{mfa_challenges, recovery_codes, users};

#[derive(Clone, Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = mfa_challenges)]
pub struct Challenge {
    /// SHA-256 (hex) of the `mfa_token` the client holds.
    pub id: String,
    pub user_id: String,
    /// Set when the login was a cookie login: bound into the tokens it ends with.
    pub csrf: Option<String>,
    pub attempts: i32,
    pub expires_at: i64,
}

#[derive(Clone)]
pub struct FactorStore {
    pool: DbPool,
}

impl FactorStore {
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

    /// Stores a secret being enrolled (sealed), replacing any earlier unconfirmed one.
    pub async fn set_pending(&self, user_id: String, sealed: String) -> Result<(), AuthError> {
        self.run(move |conn| {
            diesel::update(users::table.find(user_id))
                .set(users::totp_pending.eq(Some(sealed)))
                .execute(conn)?;
            Ok(())
        })
        .await
    }

    /// Makes the pending secret the user's factor, with `step` as its last used step and these
    /// recovery codes (replacing any old ones), in one transaction. `false` if the pending
    /// secret changed meanwhile (another enrolment started): nothing is written then.
    pub async fn confirm(
        &self,
        user_id: String,
        pending: String,
        step: i64,
        code_hashes: Vec<String>,
    ) -> Result<bool, AuthError> {
        self.run(move |conn| {
            conn.transaction(|conn| {
                let updated = diesel::update(
                    users::table
                        .find(&user_id)
                        .filter(users::totp_pending.eq(&pending)),
                )
                .set((
                    users::totp_secret.eq(Some(&pending)),
                    users::totp_pending.eq(None::<String>),
                    users::totp_last_step.eq(step),
                ))
                .execute(conn)?;
                if updated == 0 {
                    return Ok(false);
                }
                diesel::delete(recovery_codes::table.filter(recovery_codes::user_id.eq(&user_id)))
                    .execute(conn)?;
                // One statement per code: the multi-backend connection has no batch insert.
                for hash in code_hashes {
                    diesel::insert_into(recovery_codes::table)
                        .values((
                            recovery_codes::user_id.eq(&user_id),
                            recovery_codes::code_hash.eq(hash),
                        ))
                        .execute(conn)?;
                }
                Ok(true)
            })
        })
        .await
    }

    /// Removes the factor and its recovery codes.
    pub async fn remove(&self, user_id: String) -> Result<(), AuthError> {
        self.run(move |conn| {
            conn.transaction(|conn| {
                diesel::update(users::table.find(&user_id))
                    .set((
                        users::totp_secret.eq(None::<String>),
                        users::totp_pending.eq(None::<String>),
                        users::totp_last_step.eq(0),
                    ))
                    .execute(conn)?;
                diesel::delete(recovery_codes::table.filter(recovery_codes::user_id.eq(&user_id)))
                    .execute(conn)?;
                Ok(())
            })
        })
        .await
    }

    /// Re-seals a secret under the current key (after it was opened with a previous one).
    pub async fn reseal(&self, user_id: String, old: String, new: String) -> Result<(), AuthError> {
        self.run(move |conn| {
            diesel::update(
                users::table
                    .find(user_id)
                    .filter(users::totp_secret.eq(old)),
            )
            .set(users::totp_secret.eq(Some(new)))
            .execute(conn)?;
            Ok(())
        })
        .await
    }

    /// Accepts TOTP time step `step` for the user only if it is newer than every step accepted
    /// before: `false` is a replay (or an older code).
    pub async fn use_step(&self, user_id: String, step: i64) -> Result<bool, AuthError> {
        self.run(move |conn| {
            let updated = diesel::update(
                users::table
                    .find(user_id)
                    .filter(users::totp_last_step.lt(step)),
            )
            .set(users::totp_last_step.eq(step))
            .execute(conn)?;
            Ok(updated == 1)
        })
        .await
    }

    /// Spends recovery code `hash` of the user: `false` if unknown or already used.
    pub async fn use_recovery_code(
        &self,
        user_id: String,
        hash: String,
        now: i64,
    ) -> Result<bool, AuthError> {
        self.run(move |conn| {
            let updated = diesel::update(
                recovery_codes::table
                    .filter(recovery_codes::user_id.eq(user_id))
                    .filter(recovery_codes::code_hash.eq(hash))
                    .filter(recovery_codes::used_at.is_null()),
            )
            .set(recovery_codes::used_at.eq(Some(now)))
            .execute(conn)?;
            Ok(updated == 1)
        })
        .await
    }

    /// The stored hashes of the user's unused recovery codes.
    pub async fn unused_recovery_codes(&self, user_id: String) -> Result<Vec<String>, AuthError> {
        self.run(move |conn| {
            Ok(recovery_codes::table
                .filter(recovery_codes::user_id.eq(user_id))
                .filter(recovery_codes::used_at.is_null())
                .select(recovery_codes::code_hash)
                .load(conn)?)
        })
        .await
    }

    /// How many unused recovery codes the user has left.
    pub async fn recovery_codes_left(&self, user_id: String) -> Result<i64, AuthError> {
        self.run(move |conn| {
            Ok(recovery_codes::table
                .filter(recovery_codes::user_id.eq(user_id))
                .filter(recovery_codes::used_at.is_null())
                .count()
                .get_result(conn)?)
        })
        .await
    }

    pub async fn insert_challenge(&self, challenge: Challenge) -> Result<(), AuthError> {
        self.run(move |conn| {
            diesel::insert_into(mfa_challenges::table)
                .values(&challenge)
                .execute(conn)?;
            Ok(())
        })
        .await
    }

    /// A live challenge by id, counting this attempt; `None` if unknown, expired or out of
    /// attempts (then it is deleted).
    pub async fn attempt_challenge(
        &self,
        id: String,
        now: i64,
        max_attempts: i32,
    ) -> Result<Option<Challenge>, AuthError> {
        self.run(move |conn| {
            let updated = diesel::update(
                mfa_challenges::table
                    .find(&id)
                    .filter(mfa_challenges::expires_at.gt(now))
                    .filter(mfa_challenges::attempts.lt(max_attempts)),
            )
            .set(mfa_challenges::attempts.eq(mfa_challenges::attempts + 1))
            .execute(conn)?;
            if updated == 0 {
                diesel::delete(mfa_challenges::table.find(&id)).execute(conn)?;
                return Ok(None);
            }
            Ok(mfa_challenges::table
                .find(&id)
                .select(Challenge::as_select())
                .first(conn)
                .optional()?)
        })
        .await
    }

    /// Spends a challenge: `false` if another request already did.
    pub async fn consume_challenge(&self, id: String) -> Result<bool, AuthError> {
        self.run(move |conn| Ok(diesel::delete(mfa_challenges::table.find(id)).execute(conn)? == 1))
            .await
    }

    pub async fn prune_challenges(&self, now: i64) -> Result<usize, AuthError> {
        self.run(move |conn| {
            Ok(
                diesel::delete(mfa_challenges::table.filter(mfa_challenges::expires_at.le(now)))
                    .execute(conn)?,
            )
        })
        .await
    }
}
