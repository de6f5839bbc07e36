//! Session use cases: refresh rotation, logout (one session), logout-all, password change and
//! role change. Every write goes through the session ledger (see `ledger` for the rules that make
//! them hold under concurrency).

use shared::{Claims, TokenError};

use crate::domain::Password;
use crate::error::AuthError;
use crate::ledger::{Rotation, RotationRequest};
use crate::login::argon2;
use crate::password::{self, Verdict};
use crate::password_policy::hash_new_password;
use crate::pause::points;
use crate::state::AppState;
use crate::tokens::{Subject, TokenPair};

/// Rotates refresh token `presented` for the client `client` (a fingerprint): a new pair, the
/// same pair again for a retry within the grace period, or an error that says why not.
pub async fn refresh(
    state: &AppState,
    presented: &Claims,
    client: &str,
) -> Result<TokenPair, AuthError> {
    // The identity and roles come from the refresh token, without a database read: a role or
    // password change cuts off every token issued before it, and the rotation below checks that
    // cut-off in the same step as it spends the token.
    let subject = Subject {
        id: &presented.sub,
        username: &presented.username,
        roles: &presented.roles,
    };
    let session = presented
        .sid
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let pair = state
        .tokens
        .issue_pair(&subject, false, &session, presented.csrf.clone())?;
    state.pauses.pass(points::REFRESH_BEFORE_ROTATE).await;
    let rotation = state
        .ledger
        .rotate(RotationRequest {
            presented,
            client,
            pair: &pair.body,
            issued_ms: pair.issued_ms(),
        })
        .await?;
    state.pauses.pass(points::REFRESH_AFTER_ROTATE).await;
    match rotation {
        Rotation::Fresh => {
            state.metrics.inc("auth_refreshes_total");
            Ok(pair.body)
        }
        Rotation::Replay(pair) => {
            state.metrics.inc("auth_refresh_replays_total");
            Ok(pair)
        }
        Rotation::Reused => {
            state.metrics.inc("auth_refresh_reuse_total");
            Err(TokenError::RefreshReused.into())
        }
        Rotation::Revoked => Err(TokenError::Revoked.into()),
    }
}

/// Logout: the access token, and when given, the refresh token and its whole session; all
/// entries in one atomic write.
pub async fn logout(
    state: &AppState,
    access: &Claims,
    refresh_token: Option<&str>,
) -> Result<(), AuthError> {
    let now = shared::now_unix();
    let mut entries = vec![state.lifetimes.token_entry(access)];
    if let Some(token) = refresh_token {
        match state.auth.verifier.verify_refresh(token) {
            Ok(refresh) if refresh.sub != access.sub => {
                return Err(TokenError::Invalid("the refresh token belongs to another user").into())
            }
            Ok(refresh) => {
                entries.push(state.lifetimes.token_entry(&refresh));
                if let Some(session) = &refresh.sid {
                    entries.push(state.lifetimes.session_entry(session, now));
                }
            }
            // Already dead: nothing left to revoke.
            Err(TokenError::Expired) => {}
            Err(err) => return Err(err.into()),
        }
    }
    state.ledger.revoke(entries).await?;
    state.metrics.inc("auth_logouts_total");
    Ok(())
}

/// Ends the session `access` belongs to: the token itself and every token of its session.
pub async fn end_session(state: &AppState, access: &Claims) -> Result<(), AuthError> {
    let mut entries = vec![state.lifetimes.token_entry(access)];
    if let Some(session) = &access.sid {
        entries.push(state.lifetimes.session_entry(session, shared::now_unix()));
    }
    state.ledger.revoke(entries).await?;
    Ok(())
}

/// Ends every token of `sub` issued until now (and any pair being issued concurrently), except
/// `except_jti`, on every instance.
pub async fn end_all(
    state: &AppState,
    sub: &str,
    except_jti: Option<&str>,
) -> Result<(), AuthError> {
    let now_ms = chrono::Utc::now().timestamp_millis();
    state.ledger.cut_off(sub, now_ms, except_jti).await?;
    Ok(())
}

/// Changes the caller's password and ends every other session. The sessions are cut off
/// *before* the new hash is stored and again after, so no moment exists where the old
/// password's sessions survive the change, and any login made with the old password while the
/// hash was being stored is ended too. Each failure says truthfully what was done.
pub async fn change_password(
    state: &AppState,
    address: &str,
    caller: &Claims,
    current_password: String,
    new_password: Password,
) -> Result<(), AuthError> {
    // Before argon2: a stolen fresh token must not buy unlimited guesses of the password.
    let attempt = state.throttle.password_change(address, &caller.sub).await?;
    let user = state
        .users
        .by_id(caller.sub.clone())
        .await?
        .ok_or(TokenError::Invalid("the user no longer exists"))?;
    let stored = user.password_hash.clone();
    let verdict = argon2(move || password::verify(&current_password, Some(&stored))).await?;
    if !matches!(verdict, Verdict::Valid { .. }) {
        return Err(AuthError::InvalidCredentials);
    }
    state.throttle.password_verified(attempt).await?;
    // After the current password: only its owner learns whether a new one is strong enough.
    let hash = hash_new_password(
        state.password_policy,
        &user.username,
        new_password,
        "new_password",
    )
    .await?;
    state.pauses.pass(points::PASSWORD_BEFORE_CUTOFF).await;
    // A write that timed out may still land, so even the first failure cannot promise that
    // nothing changed: only that the password did not.
    if let Err(err) = end_all(state, &user.id, Some(&caller.jti)).await {
        return Err(AuthError::Incomplete {
            done: "the password was NOT changed; your other sessions may have been ended",
            cause: Box::new(err),
        });
    }
    if let Err(err) = state.users.set_password_hash(user.id.clone(), hash).await {
        return Err(AuthError::Incomplete {
            done: "the password was NOT changed, but your other sessions were ended",
            cause: Box::new(err),
        });
    }
    state.pauses.pass(points::PASSWORD_AFTER_STORE).await;
    if let Err(err) = end_all(state, &user.id, Some(&caller.jti)).await {
        return Err(AuthError::Incomplete {
            done: "the password was changed and your other sessions were ended, but sessions \
                   opened during the change may survive: log out everywhere once the service \
                   is back",
            cause: Box::new(err),
        });
    }
    state.metrics.inc("auth_password_changes_total");
    Ok(())
}

/// Replaces a user's roles and ends every token of that user, so old roles cannot linger in a
/// token. Cut off before the change (so a failure leaves the roles as they were) and after it
/// (so a login that read the old roles meanwhile is ended too).
pub async fn set_roles(
    state: &AppState,
    id: String,
    roles: Vec<shared::Role>,
) -> Result<crate::store::User, AuthError> {
    if state.users.by_id(id.clone()).await?.is_none() {
        return Err(AuthError::NotFound("no such user"));
    }
    // A write that timed out may still land: say only what is certain.
    if let Err(err) = end_all(state, &id, None).await {
        return Err(AuthError::Incomplete {
            done: "the roles were NOT changed; the user's sessions may have been ended",
            cause: Box::new(err),
        });
    }
    let user = match state.users.set_roles(id, roles).await {
        Ok(Some(user)) => user,
        Ok(None) => return Err(AuthError::NotFound("no such user")),
        Err(err) => {
            return Err(AuthError::Incomplete {
                done: "the roles were NOT changed, but the user's sessions were ended",
                cause: Box::new(err),
            })
        }
    };
    if let Err(err) = end_all(state, &user.id, None).await {
        return Err(AuthError::Incomplete {
            done: "the roles were changed and the user's sessions were ended, but a session \
                   opened during the change may survive: end the user's sessions again once \
                   the service is back",
            cause: Box::new(err),
        });
    }
    state.metrics.inc("auth_role_changes_total");
    Ok(user)
}
