//! Session use cases: refresh rotation, logout (one session), ending a session by id,
//! logout-all, password change and role change. Every write goes through the session ledger
//! (see `ledger` for the rules that make them hold under concurrency); the session records
//! (`records`) follow it, and each event goes to the audit trail.

pub mod records;

use shared::{Claims, TokenError};

use crate::audit::{Event, EventKind, Outcome};
use crate::domain::Password;
use crate::error::AuthError;
use crate::ledger::{Rotation, RotationRequest};
use crate::login::argon2;
use crate::origin::RequestOrigin;
use crate::password::{self, Verdict};
use crate::password_policy::hash_new_password;
use crate::pause::points;
use crate::state::AppState;
use crate::tokens::{Subject, TokenPair};

/// Rotates refresh token `presented` for the client at `origin`: a new pair, the same pair
/// again for a retry within the grace period (same address and user agent), or an error that
/// says why not.
pub async fn refresh(
    state: &AppState,
    presented: &Claims,
    origin: &RequestOrigin,
) -> Result<TokenPair, AuthError> {
    let client = &crate::ledger::client_fingerprint(&origin.ip, &origin.user_agent);
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
            replacement: &pair,
        })
        .await?;
    state.pauses.pass(points::REFRESH_AFTER_ROTATE).await;
    match rotation {
        Rotation::Fresh => {
            state.metrics.inc("auth_refreshes_total");
            // Bookkeeping only (the rotation above is what counts): queued, written in a group
            // off the request path; a failure is logged.
            let now = pair.issued_ms();
            let expires = now + pair.body.refresh_expires_in as i64 * 1000;
            state.sessions.touch(session, now, expires).await;
            Ok(pair.body)
        }
        Rotation::Replay(pair) => {
            state.metrics.inc("auth_refresh_replays_total");
            Ok(pair)
        }
        Rotation::Reused => {
            state.metrics.inc("auth_refresh_reuse_total");
            let event = Event::new(EventKind::RefreshReuse, Outcome::Refused)
                .subject(&presented.sub)
                .from(origin)
                .detail(format!("session {session} ended"));
            state.audit.record(event).await;
            mark_ended(state, Some(&session)).await;
            Err(TokenError::RefreshReused.into())
        }
        Rotation::Revoked => {
            // A disabled account says so (its cut-off is what revoked the token).
            match state.users.by_id(presented.sub.clone()).await {
                Ok(Some(user)) if user.disabled => Err(AuthError::AccountDisabled),
                _ => Err(TokenError::Revoked.into()),
            }
        }
    }
}

/// Marks a session's record ended after the ledger ended it. The ledger decides; a failed
/// record update is logged and the prune (by expiry) removes the row later.
pub async fn mark_ended(state: &AppState, session: Option<&String>) {
    let Some(session) = session else { return };
    let now = chrono::Utc::now().timestamp_millis();
    if let Err(err) = state.sessions.end(session.clone(), now).await {
        tracing::warn!(error = %shared::error::ErrorChain(&err), "session record not marked ended");
    }
}

/// Logout: the access token, and when given, the refresh token and its whole session; all
/// entries in one atomic write.
pub async fn logout(
    state: &AppState,
    access: &Claims,
    refresh_token: Option<&str>,
    origin: &RequestOrigin,
) -> Result<(), AuthError> {
    let now = shared::now_unix();
    let mut entries = vec![state.lifetimes.token_entry(access)];
    let mut ended = None;
    if let Some(token) = refresh_token {
        match state.auth.verifier.verify_refresh(token) {
            Ok(refresh) if refresh.sub != access.sub => {
                return Err(TokenError::Invalid("the refresh token belongs to another user").into())
            }
            Ok(refresh) => {
                entries.push(state.lifetimes.token_entry(&refresh));
                if let Some(session) = &refresh.sid {
                    entries.push(state.lifetimes.session_entry(session, now));
                    ended = Some(session.clone());
                }
            }
            // Already dead: nothing left to revoke.
            Err(TokenError::Expired) => {}
            Err(err) => return Err(err.into()),
        }
    }
    state.ledger.revoke(entries).await?;
    mark_ended(state, ended.as_ref()).await;
    state.metrics.inc("auth_logouts_total");
    let mut event = Event::success(EventKind::Logout)
        .by_self(&access.sub)
        .from(origin);
    if let Some(session) = &ended {
        event = event.detail(format!("session {session} ended"));
    }
    state.audit.record(event).await;
    Ok(())
}

/// Ends the session `access` belongs to: the token itself and every token of its session.
pub async fn end_session(
    state: &AppState,
    access: &Claims,
    origin: &RequestOrigin,
) -> Result<(), AuthError> {
    let mut entries = vec![state.lifetimes.token_entry(access)];
    if let Some(session) = &access.sid {
        entries.push(state.lifetimes.session_entry(session, shared::now_unix()));
    }
    state.ledger.revoke(entries).await?;
    mark_ended(state, access.sid.as_ref()).await;
    let event = Event::success(EventKind::Logout)
        .by_self(&access.sub)
        .from(origin)
        .detail(format!(
            "session {} ended",
            access.sid.as_deref().unwrap_or("-")
        ));
    state.audit.record(event).await;
    Ok(())
}

/// Ends session `id` of user `owner` everywhere: every token of it is refused by every
/// verifier (through Redis or the revocation feed). `NotFound` unless it is the owner's and
/// still live, so nobody learns whether another user's session id exists.
pub async fn end_by_id(
    state: &AppState,
    owner: &str,
    id: &str,
    actor: &str,
    origin: &RequestOrigin,
) -> Result<(), AuthError> {
    let now_ms = chrono::Utc::now().timestamp_millis();
    let record = state.sessions.get(id.to_owned()).await?;
    match record {
        Some(r) if r.user_id == owner && r.ended_at.is_none() && r.expires_at > now_ms => {}
        _ => return Err(AuthError::NotFound("no such session")),
    }
    let entry = state.lifetimes.session_entry(id, shared::now_unix());
    state.ledger.revoke(vec![entry]).await?;
    mark_ended(state, Some(&id.to_owned())).await;
    let event = Event::success(EventKind::SessionEnded)
        .actor(actor)
        .subject(owner)
        .from(origin)
        .detail(format!("session {id}"));
    state.audit.record(event).await;
    Ok(())
}

/// Ends every token of `sub` issued until now (and any pair being issued concurrently), except
/// `except_jti`, on every instance; the user's session records are marked ended.
pub async fn end_all(
    state: &AppState,
    sub: &str,
    except_jti: Option<&str>,
) -> Result<(), AuthError> {
    let now_ms = chrono::Utc::now().timestamp_millis();
    state.ledger.cut_off(sub, now_ms, except_jti).await?;
    // A session recorded after this update but issued before the cut-off is still ended by the
    // ledger (its tokens are refused); its row then only lingers until its expiry prunes it.
    if let Err(err) = state
        .sessions
        .end_all_of(sub.to_owned(), now_ms, now_ms)
        .await
    {
        tracing::warn!(error = %shared::error::ErrorChain(&err), "session records not marked ended");
    }
    Ok(())
}

/// Changes the caller's password and ends every other session. The sessions are cut off
/// *before* the new hash is stored and again after, so no moment exists where the old
/// password's sessions survive the change, and any login made with the old password while the
/// hash was being stored is ended too. Each failure says truthfully what was done.
pub async fn change_password(
    state: &AppState,
    origin: &RequestOrigin,
    caller: &Claims,
    current_password: String,
    new_password: Password,
) -> Result<(), AuthError> {
    // Before argon2: a stolen fresh token must not buy unlimited guesses of the password.
    let attempt = state
        .throttle
        .password_change(&origin.ip, &caller.sub)
        .await?;
    let user = state
        .users
        .by_id(caller.sub.clone())
        .await?
        .ok_or(TokenError::Invalid("the user no longer exists"))?;
    let stored = user.password_hash.clone();
    let verdict = argon2(move || password::verify(&current_password, Some(&stored))).await?;
    if !matches!(verdict, Verdict::Valid { .. }) {
        let event = Event::new(EventKind::PasswordChangeFailed, Outcome::Failure)
            .by_self(&user.id)
            .from(origin)
            .detail("wrong current password");
        state.audit.record(event).await;
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
    let event = Event::success(EventKind::PasswordChanged)
        .by_self(&user.id)
        .from(origin)
        .detail("every other session ended");
    state.audit.record(event).await;
    Ok(())
}

/// Replaces a user's roles and ends every token of that user, so old roles cannot linger in a
/// token. Cut off before the change (so a failure leaves the roles as they were) and after it
/// (so a login that read the old roles meanwhile is ended too).
pub async fn set_roles(
    state: &AppState,
    actor: &str,
    origin: &RequestOrigin,
    id: String,
    roles: Vec<shared::Role>,
) -> Result<crate::store::User, AuthError> {
    let Some(before) = state.users.by_id(id.clone()).await? else {
        return Err(AuthError::NotFound("no such user"));
    };
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
    let names = |roles: &[shared::Role]| {
        roles
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(",")
    };
    let event = Event::success(EventKind::RolesChanged)
        .actor(actor)
        .subject(&user.id)
        .from(origin)
        .detail(format!(
            "{} -> {}",
            names(&before.roles),
            names(&user.roles)
        ));
    state.audit.record(event).await;
    Ok(user)
}
