//! Second-factor use cases: the two-step login (`mfa_required`, then a code), TOTP enrolment
//! and removal. The primitives (TOTP, sealing, recovery codes, QR) are in `mfa`; the rows in
//! `store`.
//!
//! Every one-time thing is spent by one conditional write: a TOTP step must be newer than the
//! last accepted one, a recovery code must be unused, a challenge must still exist. Codes are
//! throttled like passwords (per user and per address) before they are checked.

pub mod store;

use aws_lc_rs::digest;

use crate::audit::{Event, EventKind, Outcome};
use crate::error::AuthError;
use crate::login;
use crate::mfa::{RecoveryCode, TotpSecret};
use crate::origin::RequestOrigin;
use crate::state::AppState;
use crate::store::User;
use crate::tokens::IssuedPair;

pub use self::store::{Challenge, FactorStore};

/// How long the second step of a login may take.
pub const CHALLENGE_TTL_MS: i64 = 5 * 60 * 1000;
/// Codes tried on one challenge before it is spent (the throttle limits across challenges).
pub const CHALLENGE_ATTEMPTS: i32 = 5;

/// What enrolment hands the user: the secret for an authenticator app, as text, URI and QR.
pub struct Enrolment {
    pub secret: String,
    pub otpauth_uri: String,
    pub qr_svg: String,
}

/// A login whose password was right, for a user with a second factor: the error to answer,
/// carrying a new single-use `mfa_token`.
pub async fn challenge(
    state: &AppState,
    user: &User,
    csrf: Option<String>,
) -> Result<AuthError, AuthError> {
    let token = random_token()?;
    let now = chrono::Utc::now().timestamp_millis();
    state
        .factors
        .insert_challenge(Challenge {
            id: token_id(&token),
            user_id: user.id.clone(),
            csrf,
            attempts: 0,
            expires_at: now + CHALLENGE_TTL_MS,
        })
        .await?;
    state.metrics.inc("auth_mfa_challenges_total");
    Ok(AuthError::MfaRequired { mfa_token: token })
}

/// The second step of a login: `code` (a TOTP code or an unused recovery code) for the
/// challenge `mfa_token`; a fresh pair of a new session, bound to the challenge's CSRF value
/// for a cookie login (returned beside the pair).
pub async fn finish_login(
    state: &AppState,
    origin: &RequestOrigin,
    mfa_token: &str,
    code: &str,
) -> Result<(IssuedPair, Option<String>), AuthError> {
    let now = chrono::Utc::now().timestamp_millis();
    let id = token_id(mfa_token);
    let Some(challenge) = state
        .factors
        .attempt_challenge(id.clone(), now, CHALLENGE_ATTEMPTS)
        .await?
    else {
        let event = Event::new(EventKind::MfaFailed, Outcome::Failure)
            .from(origin)
            .detail("unknown, expired or exhausted mfa_token");
        state.audit.record(event).await;
        return Err(AuthError::InvalidMfaCode);
    };
    let user = state
        .users
        .by_id(challenge.user_id.clone())
        .await?
        .ok_or(AuthError::InvalidMfaCode)?;
    let how = check_code(state, origin, &user, code).await?;
    if !state.factors.consume_challenge(id).await? {
        // Another request finished this login first.
        return Err(AuthError::InvalidMfaCode);
    }
    if user.disabled {
        return Err(AuthError::AccountDisabled);
    }
    let pair =
        login::issue_new_session(state, &user.id, true, challenge.csrf.clone(), origin).await?;
    state.metrics.inc("auth_logins_total{result=\"success\"}");
    let event = Event::success(EventKind::Login)
        .by_self(&user.id)
        .from(origin)
        .detail(format!("second factor: {how}"));
    state.audit.record(event).await;
    Ok((pair, challenge.csrf))
}

/// Checks `code` for `user` — a TOTP code, or else a recovery code — throttled, spending it.
/// Returns which kind it was.
async fn check_code(
    state: &AppState,
    origin: &RequestOrigin,
    user: &User,
    code: &str,
) -> Result<&'static str, AuthError> {
    let attempt = match state.throttle.mfa_code(&origin.ip, &user.id).await {
        Err(err @ AuthError::RateLimited(_)) => {
            let event = Event::new(EventKind::LoginThrottled, Outcome::Refused)
                .subject(&user.id)
                .from(origin)
                .detail("one-time codes");
            state.audit.record(event).await;
            return Err(err);
        }
        other => other?,
    };
    let Some(sealed) = &user.totp_secret else {
        return Err(AuthError::InvalidMfaCode);
    };
    let secret = open_secret(state, user, sealed).await?;
    let now = shared::now_unix() as u64;
    let last_step = u64::try_from(user.totp_last_step).ok().filter(|s| *s > 0);
    let how = if let Some(step) = secret.verify(code, now, last_step) {
        // Compare-and-set on the step: of two requests with one code, one wins.
        if state.factors.use_step(user.id.clone(), step as i64).await? {
            Some("totp")
        } else {
            None
        }
    } else if RecoveryCode::parse(code).is_some() {
        // Matched against every unused code's stored hash (each may be under a previous key),
        // then spent by a conditional write on that exact row.
        let unused = state.factors.unused_recovery_codes(user.id.clone()).await?;
        let used = match state
            .mfa
            .find_recovery_code(user.id.as_bytes(), code, &unused)
        {
            Some(i) => {
                state
                    .factors
                    .use_recovery_code(
                        user.id.clone(),
                        unused[i].clone(),
                        chrono::Utc::now().timestamp_millis(),
                    )
                    .await?
            }
            None => false,
        };
        if used {
            let event = Event::success(EventKind::RecoveryCodeUsed)
                .by_self(&user.id)
                .from(origin);
            state.audit.record(event).await;
        }
        used.then_some("recovery code")
    } else {
        None
    };
    match how {
        Some(how) => {
            state.throttle.password_verified(attempt).await?;
            Ok(how)
        }
        None => {
            state.metrics.inc("auth_mfa_failures_total");
            let event = Event::new(EventKind::MfaFailed, Outcome::Failure)
                .subject(&user.id)
                .from(origin)
                .detail("wrong, reused or expired code");
            state.audit.record(event).await;
            Err(AuthError::InvalidMfaCode)
        }
    }
}

/// Opens the user's sealed secret, re-sealing it under the current key when it was sealed
/// under a previous one (key rotation).
async fn open_secret(state: &AppState, user: &User, sealed: &str) -> Result<TotpSecret, AuthError> {
    let (secret, needs_reseal) = state
        .mfa
        .open_totp_secret(sealed, user.id.as_bytes())
        .map_err(|e| AuthError::unexpected("opening a sealed TOTP secret", e))?;
    if needs_reseal {
        if let Ok(new) = state.mfa.seal_totp_secret(&secret, user.id.as_bytes()) {
            if let Err(err) = state
                .factors
                .reseal(user.id.clone(), sealed.to_owned(), new)
                .await
            {
                tracing::warn!(error = %shared::error::ErrorChain(&err), "TOTP secret not re-sealed");
            }
        }
    }
    Ok(secret)
}

/// Starts enrolment for `user` (who holds a fresh token): a new secret, stored sealed until
/// confirmed. Refused if a factor is already enrolled (remove it first).
pub async fn start_enrolment(state: &AppState, user: &User) -> Result<Enrolment, AuthError> {
    if user.mfa() {
        return Err(AuthError::Conflict(
            "a second factor is already enrolled; remove it first",
        ));
    }
    let secret =
        TotpSecret::generate().map_err(|e| AuthError::unexpected("generating a TOTP secret", e))?;
    let sealed = state
        .mfa
        .seal_totp_secret(&secret, user.id.as_bytes())
        .map_err(|e| AuthError::unexpected("sealing a TOTP secret", e))?;
    let otpauth_uri = secret
        .otpauth_uri(crate::mfa::totp::ISSUER, &user.username)
        .map_err(|e| AuthError::unexpected("building the otpauth URI", e))?;
    let qr_svg = crate::mfa::qr::svg(&otpauth_uri)
        .map_err(|e| AuthError::unexpected("drawing the QR code", e))?;
    state.factors.set_pending(user.id.clone(), sealed).await?;
    Ok(Enrolment {
        secret: secret.to_base32(),
        otpauth_uri,
        qr_svg,
    })
}

/// Confirms enrolment with a code from the new secret: the factor is on, and the 10 recovery
/// codes are returned (shown once, stored hashed).
pub async fn confirm_enrolment(
    state: &AppState,
    origin: &RequestOrigin,
    user: &User,
    code: &str,
) -> Result<Vec<String>, AuthError> {
    if user.mfa() {
        return Err(AuthError::Conflict("a second factor is already enrolled"));
    }
    let Some(pending) = &user.totp_pending else {
        return Err(AuthError::Conflict(
            "no enrolment in progress: start one with POST /auth/mfa/totp",
        ));
    };
    let attempt = state.throttle.mfa_code(&origin.ip, &user.id).await?;
    let secret = open_secret(state, user, pending).await?;
    let Some(step) = secret.verify(code, shared::now_unix() as u64, None) else {
        let event = Event::new(EventKind::MfaFailed, Outcome::Failure)
            .by_self(&user.id)
            .from(origin)
            .detail("enrolment not confirmed: wrong code");
        state.audit.record(event).await;
        return Err(AuthError::InvalidMfaCode);
    };
    state.throttle.password_verified(attempt).await?;
    let codes = RecoveryCode::generate_set()
        .map_err(|e| AuthError::unexpected("generating recovery codes", e))?;
    let hashes = codes
        .iter()
        .map(|code| state.mfa.hash_recovery_code(user.id.as_bytes(), code))
        .collect();
    if !state
        .factors
        .confirm(user.id.clone(), pending.clone(), step as i64, hashes)
        .await?
    {
        return Err(AuthError::Conflict(
            "the enrolment was restarted meanwhile: confirm the newest secret",
        ));
    }
    state.metrics.inc("auth_mfa_enrolments_total");
    let event = Event::success(EventKind::MfaEnrolled)
        .by_self(&user.id)
        .from(origin);
    state.audit.record(event).await;
    Ok(codes.iter().map(RecoveryCode::formatted).collect())
}

/// Removes the factor, proven with a current code (TOTP or recovery).
pub async fn remove(
    state: &AppState,
    origin: &RequestOrigin,
    user: &User,
    code: &str,
) -> Result<(), AuthError> {
    if !user.mfa() {
        return Err(AuthError::NotFound("no second factor is enrolled"));
    }
    check_code(state, origin, user, code).await?;
    state.factors.remove(user.id.clone()).await?;
    let event = Event::success(EventKind::MfaRemoved)
        .by_self(&user.id)
        .from(origin);
    state.audit.record(event).await;
    Ok(())
}

/// Deletes challenges past their time.
pub async fn prune(state: &AppState, now: i64) -> Result<usize, AuthError> {
    state.factors.prune_challenges(now).await
}

/// 256 random bits, URL-safe: what the client holds.
fn random_token() -> Result<String, AuthError> {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes)
        .map_err(|_| AuthError::unexpected("the random source", "no random bytes"))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// What the table stores for a token: its SHA-256, so a read of the table finishes no login.
fn token_id(token: &str) -> String {
    digest::digest(&digest::SHA256, token.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
