//! The password login use case, shared by `POST /auth/login` and `POST /auth/session`:
//! throttle, verify (argon2, dummy work for unknown names), rehash, issue a fresh pair of a new
//! session — recorded in the session ledger so that no concurrent cut-off can miss it.

use crate::audit::{Event, EventKind, Outcome};
use crate::domain::{Password, Username};
use crate::error::AuthError;
use crate::origin::RequestOrigin;
use crate::password::{self, Verdict};
use crate::pause::points;
use crate::sessions::records::SessionRecord;
use crate::state::AppState;
use crate::store::User;
use crate::tokens::{IssuedPair, Subject};

/// How often a login re-reads the user when cut-offs keep landing while it issues.
const ISSUE_ATTEMPTS: usize = 5;

/// argon2 work, bounded to one computation per core (see [`password::run`]).
pub async fn argon2<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, AuthError> {
    password::run(f)
        .await
        .map_err(|e| AuthError::unexpected("a password hashing task", e))
}

/// Checks a username and password and issues a fresh pair of a new session (with `csrf` bound
/// in for cookie sessions). `origin.ip` is the client's address, for throttling. A user with a
/// second factor gets `MfaRequired` instead, with a challenge to finish in `mfa::finish_login`.
pub async fn authenticate(
    state: &AppState,
    origin: &RequestOrigin,
    username: &str,
    password: String,
    csrf: Option<String>,
) -> Result<IssuedPair, AuthError> {
    // Refused before any argon2 work, so a flood of guesses costs us almost nothing.
    let attempt = match state.throttle.login(&origin.ip, username).await {
        Err(err @ AuthError::RateLimited(_)) => {
            let event = Event::new(EventKind::LoginThrottled, Outcome::Refused)
                .from(origin)
                .detail(attempted(username));
            state.audit.record(event).await;
            return Err(err);
        }
        other => other?,
    };
    // A malformed name still costs one verification (an over-long one never gets here).
    let user = match Username::parse(username) {
        Ok(name) => state.users.by_username(name.as_str().to_owned()).await?,
        Err(_) => None,
    };
    let stored = user.as_ref().map(|u| u.password_hash.clone());
    let verdict = {
        let password = password.clone();
        argon2(move || password::verify(&password, stored.as_deref())).await?
    };
    let (user, needs_rehash) = match (user, verdict) {
        (Some(user), Verdict::Valid { needs_rehash }) => (user, needs_rehash),
        (user, _) => {
            state.metrics.inc("auth_logins_total{result=\"failure\"}");
            let mut event = Event::new(EventKind::LoginFailed, Outcome::Failure)
                .from(origin)
                .detail(attempted(username));
            if let Some(user) = user {
                event = event.subject(&user.id);
            }
            state.audit.record(event).await;
            return Err(AuthError::InvalidCredentials);
        }
    };
    // The pair's counter is cleared while the login goes on, so that command shares a round
    // trip with the ledger's first one instead of adding one in a row. A failure still fails the
    // login (as it did when it came first), whatever the rest did.
    let (cleared, admitted) = tokio::join!(
        state.throttle.login_succeeded(attempt),
        admit(state, origin, user, needs_rehash, password, csrf),
    );
    cleared?;
    admitted
}

/// A right password's login from there on: the rehash, the disabled and second-factor checks,
/// and the new session.
async fn admit(
    state: &AppState,
    origin: &RequestOrigin,
    user: User,
    needs_rehash: bool,
    password: String,
    csrf: Option<String>,
) -> Result<IssuedPair, AuthError> {
    if needs_rehash {
        rehash(state, &user, password).await;
    }
    // Only after the password: the answer must not tell a guesser which accounts are disabled.
    if user.disabled {
        let event = Event::new(EventKind::LoginRefused, Outcome::Refused)
            .subject(&user.id)
            .from(origin)
            .detail("account disabled");
        state.audit.record(event).await;
        return Err(AuthError::AccountDisabled);
    }
    if user.mfa() {
        return Err(crate::second_factor::challenge(state, &user, csrf).await?);
    }
    state.pauses.pass(points::LOGIN_AFTER_PASSWORD).await;
    let pair = issue_new_session(state, &user.id, true, csrf, origin).await?;
    state.metrics.inc("auth_logins_total{result=\"success\"}");
    state
        .audit
        .record(
            Event::success(EventKind::Login)
                .by_self(&user.id)
                .from(origin),
        )
        .await;
    Ok(pair)
}

/// The attempted name, for the audit trail: only if it is a valid username (a password typed
/// into the name field must not end up in the trail).
fn attempted(username: &str) -> String {
    match Username::parse(username) {
        Ok(name) => format!("username={}", name.as_str()),
        Err(_) => "username=(invalid)".to_owned(),
    }
}

/// Issues a pair of a new session for user `id` with the roles stored now. The roles are read
/// after the user's generation and the pair is recorded only if no cut-off came in between;
/// otherwise the roles are read again. A demotion (or a disable) can therefore never be outrun
/// by a login that read the user before it. The session's record is written once the pair is.
pub async fn issue_new_session(
    state: &AppState,
    id: &str,
    fresh: bool,
    csrf: Option<String>,
    origin: &RequestOrigin,
) -> Result<IssuedPair, AuthError> {
    let session = uuid::Uuid::new_v4().to_string();
    for _ in 0..ISSUE_ATTEMPTS {
        let generation = state.ledger.generation(id).await?;
        let user = state
            .users
            .by_id(id.to_owned())
            .await?
            .ok_or(AuthError::InvalidCredentials)?;
        if user.disabled {
            return Err(AuthError::AccountDisabled);
        }
        let pair = state
            .tokens
            .issue_pair(&subject(&user), fresh, &session, csrf.clone())?;
        state.pauses.pass(points::LOGIN_BEFORE_RECORD).await;
        if state
            .ledger
            .record_issue(id, generation, pair.issued_ms())
            .await?
        {
            let now = pair.issued_ms();
            let expires = now + pair.body.refresh_expires_in as i64 * 1000;
            state
                .sessions
                .insert(SessionRecord::new(&session, id, origin, now, expires))
                .await?;
            return Ok(pair);
        }
        // A cut-off landed, perhaps in this very millisecond: the next pair must be younger.
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    Err(AuthError::unavailable(
        "issuing a session",
        "the user's sessions kept being ended while logging in",
    ))
}

/// Upgrades a hash made with older parameters. Failure is logged, never fatal to the login.
async fn rehash(state: &AppState, user: &User, password: String) {
    let Ok(password) = Password::parse(&password) else {
        return;
    };
    let hashed = argon2(move || password::hash(&password)).await;
    if let Ok(Ok(hash)) = hashed {
        if let Err(err) = state.users.set_password_hash(user.id.clone(), hash).await {
            tracing::warn!(error = %err, "password rehash failed");
        }
    }
}

pub fn subject(user: &User) -> Subject<'_> {
    Subject {
        id: &user.id,
        username: &user.username,
        roles: &user.roles,
    }
}
