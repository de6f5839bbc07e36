//! The password login use case, shared by `POST /auth/login` and `POST /auth/session`:
//! throttle, verify (argon2, dummy work for unknown names), rehash, issue a fresh pair of a new
//! session — recorded in the session ledger so that no concurrent cut-off can miss it.

use crate::domain::{Password, Username};
use crate::error::AuthError;
use crate::password::{self, Verdict};
use crate::pause::points;
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
/// in for cookie sessions). `address` is the client's, for throttling.
pub async fn authenticate(
    state: &AppState,
    address: &str,
    username: &str,
    password: String,
    csrf: Option<String>,
) -> Result<IssuedPair, AuthError> {
    // Refused before any argon2 work, so a flood of guesses costs us almost nothing.
    let attempt = state.throttle.login(address, username).await?;
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
        _ => {
            state.metrics.inc("auth_logins_total{result=\"failure\"}");
            return Err(AuthError::InvalidCredentials);
        }
    };
    state.throttle.login_succeeded(attempt).await?;
    if needs_rehash {
        rehash(state, &user, password).await;
    }
    state.pauses.pass(points::LOGIN_AFTER_PASSWORD).await;
    let pair = issue_new_session(state, &user.id, true, csrf).await?;
    state.metrics.inc("auth_logins_total{result=\"success\"}");
    Ok(pair)
}

/// Issues a pair of a new session for user `id` with the roles stored now. The roles are read
/// after the user's generation and the pair is recorded only if no cut-off came in between;
/// otherwise the roles are read again. A demotion can therefore never be outrun by a login
/// that read the old roles.
pub async fn issue_new_session(
    state: &AppState,
    id: &str,
    fresh: bool,
    csrf: Option<String>,
) -> Result<IssuedPair, AuthError> {
    let session = uuid::Uuid::new_v4().to_string();
    for _ in 0..ISSUE_ATTEMPTS {
        let generation = state.ledger.generation(id).await?;
        let user = state
            .users
            .by_id(id.to_owned())
            .await?
            .ok_or(AuthError::InvalidCredentials)?;
        let pair = state
            .tokens
            .issue_pair(&subject(&user), fresh, &session, csrf.clone())?;
        state.pauses.pass(points::LOGIN_BEFORE_RECORD).await;
        if state
            .ledger
            .record_issue(id, generation, pair.issued_ms())
            .await?
        {
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
