//! Account administration: disable and enable, a user's sessions. (Finding and paging users is
//! a plain store read, done by the route.)
//!
//! Disabling follows the rule of role changes (`sessions::set_roles`): a cut-off before the
//! flag is stored (so a failure leaves the account as it was) and after it (so a login that
//! read the user before the flag is ended too). A login reads the flag after the user's
//! generation and records its pair only if no cut-off came in between, so no login can outrun
//! a disable.

use crate::audit::{Event, EventKind};
use crate::error::AuthError;
use crate::origin::RequestOrigin;
use crate::sessions::{self, records::SessionRecord};
use crate::state::AppState;
use crate::store::User;

/// Disables user `id`: every session ends at once, login and refresh answer `account_disabled`.
pub async fn disable(
    state: &AppState,
    actor: &str,
    origin: &RequestOrigin,
    id: String,
) -> Result<User, AuthError> {
    if actor == id {
        // An administrator locking themselves out is never what they meant.
        return Err(AuthError::Conflict("you cannot disable your own account"));
    }
    if state.users.by_id(id.clone()).await?.is_none() {
        return Err(AuthError::NotFound("no such user"));
    }
    if let Err(err) = sessions::end_all(state, &id, None).await {
        return Err(AuthError::Incomplete {
            done: "the account was NOT disabled; its sessions may have been ended",
            cause: Box::new(err),
        });
    }
    let user = match state.users.set_disabled(id, true).await {
        Ok(Some(user)) => user,
        Ok(None) => return Err(AuthError::NotFound("no such user")),
        Err(err) => {
            return Err(AuthError::Incomplete {
                done: "the account was NOT disabled, but its sessions were ended",
                cause: Box::new(err),
            })
        }
    };
    if let Err(err) = sessions::end_all(state, &user.id, None).await {
        return Err(AuthError::Incomplete {
            done: "the account was disabled and its sessions ended, but a session opened during \
                   the change may survive: disable it again once the service is back",
            cause: Box::new(err),
        });
    }
    state.metrics.inc("auth_users_disabled_total");
    let event = Event::success(EventKind::UserDisabled)
        .actor(actor)
        .subject(&user.id)
        .from(origin);
    state.audit.record(event).await;
    Ok(user)
}

/// Enables user `id` again; their old sessions stay ended.
pub async fn enable(
    state: &AppState,
    actor: &str,
    origin: &RequestOrigin,
    id: String,
) -> Result<User, AuthError> {
    let user = state
        .users
        .set_disabled(id, false)
        .await?
        .ok_or(AuthError::NotFound("no such user"))?;
    let event = Event::success(EventKind::UserEnabled)
        .actor(actor)
        .subject(&user.id)
        .from(origin);
    state.audit.record(event).await;
    Ok(user)
}

/// The live sessions of user `id`, newest first.
pub async fn sessions_of(state: &AppState, id: String) -> Result<Vec<SessionRecord>, AuthError> {
    if state.users.by_id(id.clone()).await?.is_none() {
        return Err(AuthError::NotFound("no such user"));
    }
    let now = chrono::Utc::now().timestamp_millis();
    state.sessions.live_of(id, now).await
}

/// Ends every session of user `id` (an administrator's logout-all for them).
pub async fn end_sessions_of(
    state: &AppState,
    actor: &str,
    origin: &RequestOrigin,
    id: String,
) -> Result<(), AuthError> {
    if state.users.by_id(id.clone()).await?.is_none() {
        return Err(AuthError::NotFound("no such user"));
    }
    sessions::end_all(state, &id, None).await?;
    let event = Event::success(EventKind::SessionEnded)
        .actor(actor)
        .subject(&id)
        .from(origin)
        .detail("every session, by an administrator");
    state.audit.record(event).await;
    Ok(())
}
