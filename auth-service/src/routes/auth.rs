//! `/auth/*`: accounts, password login, refresh rotation, logout.

use std::collections::BTreeMap;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use shared::{AccessClaims, RefreshClaims, Revocation, RevocationEntry, Role, TokenError};

use crate::domain::{Password, Username};
use crate::error::AuthError;
use crate::password::{self, Verdict};
use crate::routes::session;
use crate::startup::AppState;
use crate::store::User;
use crate::tokens::{IssuedPair, Subject, TokenPair};
use shared::api_errors;
use shared::openapi::RoleSchema;

pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.route("/auth/register", web::post().to(register))
        .route("/auth/login", web::post().to(login))
        .route("/auth/refresh", web::post().to(refresh))
        .route("/auth/logout", web::post().to(logout))
        .route("/auth/me", web::get().to(me));
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct Credentials {
    username: String,
    password: String,
}

impl Credentials {
    /// The rules of a new account; every problem is reported at once.
    pub fn into_new_account(self) -> Result<(Username, Password), AuthError> {
        let mut fields = BTreeMap::new();
        let username = Username::parse(&self.username)
            .map_err(|p| fields.insert("username".to_owned(), p.to_owned()))
            .ok();
        let password = Password::parse(&self.password)
            .map_err(|p| fields.insert("password".to_owned(), p.to_owned()))
            .ok();
        match (username, password) {
            (Some(username), Some(password)) => Ok((username, password)),
            _ => Err(AuthError::Validation(fields)),
        }
    }
}

/// The body of `POST /auth/register`: [`Credentials`] with the rules of `Username::parse` and
/// `Password::parse` spelled out for clients.
#[derive(utoipa::ToSchema)]
pub struct NewAccount {
    /// Case-insensitive; stored lower-cased.
    #[schema(pattern = "^[A-Za-z0-9_.-]{3,64}$")]
    pub username: String,
    #[schema(min_length = 8, max_length = 128)]
    pub password: String,
}

/// A user. `created_at` is absent only in the answer to `POST /auth/register`.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = User)]
pub struct UserBody {
    id: String,
    username: String,
    #[schema(value_type = Vec<RoleSchema>)]
    roles: Vec<Role>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, format = DateTime, required = false)]
    created_at: Option<String>,
}

impl UserBody {
    pub fn of(user: &User, with_created_at: bool) -> Self {
        UserBody {
            id: user.id.clone(),
            username: user.username.clone(),
            roles: user.roles.clone(),
            created_at: with_created_at.then(|| {
                chrono::DateTime::from_timestamp_millis(user.created_at)
                    .unwrap_or_default()
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            }),
        }
    }
}

/// argon2 work, bounded to one computation per core (see [`password::run`]).
pub async fn argon2<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, AuthError> {
    password::run(f)
        .await
        .map_err(|e| AuthError::Unexpected(format!("blocking task failed: {e}")))
}

api_errors!(RegisterErrors: JSON_BODY + [Conflict, RateLimited, Unavailable]);

/// Create an account with role `user`
///
/// Throttled per client address; a locked attempt is refused before the password is hashed.
#[utoipa::path(
    post,
    path = "/auth/register",
    tag = "auth",
    request_body = NewAccount,
    responses(
        (status = 201, description = "Created", body = UserBody,
            headers(("Location" = String, description = "`/auth/me`"))),
        RegisterErrors,
    )
)]
async fn register(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<Credentials>,
) -> Result<HttpResponse, AuthError> {
    let (username, password) = body.into_inner().into_new_account()?;
    // Before the hash: a flood of sign-ups must not take the CPU from logins.
    state.throttle.register(&req).await?;
    let hash = argon2(move || password::hash(&password))
        .await?
        .map_err(|e| AuthError::Unexpected(e.to_string()))?;
    let user = state
        .users
        .create(username.as_str().to_owned(), hash, vec![Role::User])
        .await?;
    state.metrics.inc("auth_registrations_total");
    Ok(HttpResponse::Created()
        .insert_header(("Location", "/auth/me"))
        .json(UserBody::of(&user, false)))
}

api_errors!(LoginErrors: JSON_BODY + [InvalidCredentials, RateLimited, Unavailable]);

/// Log in with a password: a fresh access token and a refresh token of a new session
///
/// Throttled per (username, client address), per username and per client address; a locked
/// attempt is refused before any password work.
#[utoipa::path(
    post,
    path = "/auth/login",
    tag = "auth",
    request_body = Credentials,
    responses(
        (status = 200, description = "A token pair", body = TokenPair,
            headers(("Cache-Control" = String, description = "`no-store`"))),
        LoginErrors,
    )
)]
async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<Credentials>,
) -> Result<HttpResponse, AuthError> {
    let pair = authenticate(&state, &req, body.into_inner(), None).await?;
    Ok(token_response(
        serde_json::to_string(&pair.body).map_err(|e| AuthError::Unexpected(e.to_string()))?,
    ))
}

/// Password login shared by `/auth/login` and `/auth/session`: throttle, verify, issue a fresh
/// pair of a new family (with `csrf` bound in for cookie sessions).
pub async fn authenticate(
    state: &AppState,
    req: &HttpRequest,
    credentials: Credentials,
    csrf: Option<String>,
) -> Result<IssuedPair, AuthError> {
    let Credentials { username, password } = credentials;
    // Refused before any argon2 work, so a flood of guesses costs us almost nothing.
    let attempt = state.throttle.login(req, &username).await?;
    // A malformed name still costs one verification (an over-long one never gets here).
    let user = match Username::parse(&username) {
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
    let family = uuid::Uuid::new_v4().to_string();
    let pair = state
        .tokens
        .issue_pair(&subject(&user), true, &family, csrf)?;
    state.metrics.inc("auth_logins_total{result=\"success\"}");
    Ok(pair)
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

fn subject(user: &User) -> Subject<'_> {
    Subject {
        id: &user.id,
        username: &user.username,
        roles: &user.roles,
    }
}

api_errors!(RefreshErrors: TOKEN + [RefreshTokenReused, CsrfFailed]);

/// Rotate a refresh token: a new pair (non-fresh access token); the presented token is spent
///
/// The refresh token comes as `Authorization: Bearer`, or as the `refresh_token_cookie` with
/// `X-CSRF-TOKEN`, in which case the answer also renews the cookies. The same token presented
/// again within the grace period gets the same pair; later, `refresh_token_reused` and its
/// whole session is revoked. No request body is read.
#[utoipa::path(
    post,
    path = "/auth/refresh",
    tag = "auth",
    security(("refresh_token" = []), ("refresh_cookie" = [], "csrf_header" = [])),
    responses(
        (status = 200, description = "A token pair", body = TokenPair,
            headers(
                ("Cache-Control" = String, description = "`no-store`"),
                ("Set-Cookie" = String,
                    description = "renewed session cookies, when the refresh token was a cookie"),
            )),
        RefreshErrors,
    )
)]
async fn refresh(
    state: web::Data<AppState>,
    req: HttpRequest,
    claims: RefreshClaims,
) -> Result<HttpResponse, AuthError> {
    let respond = |answer: String| match (&claims.csrf, session::refresh_from_cookie(&req)) {
        (Some(csrf), true) => session::cookie_refresh_response(&state, answer, csrf),
        _ => token_response(answer),
    };
    let expires_at = claims.exp + state.leeway as i64;
    // Atomic across instances: of two concurrent uses of one refresh token, one wins.
    if !state
        .revocations
        .spend_once(&claims.jti, expires_at)
        .await?
    {
        if let Some(answer) = replay_within_grace(&state, &claims.jti).await? {
            state.metrics.inc("auth_refresh_replays_total");
            return Ok(respond(answer));
        }
        revoke_family(&state, &claims).await?;
        state.metrics.inc("auth_refresh_reuse_total");
        return Err(TokenError::RefreshReused.into());
    }
    // The identity and roles come from the refresh token, without a database read: a role or
    // password change revokes every token issued before it, so a token that got this far
    // carries the user's current roles.
    let subject = Subject {
        id: &claims.sub,
        username: &claims.username,
        roles: &claims.roles,
    };
    let family = claims
        .fam
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let pair = state
        .tokens
        .issue_pair(&subject, false, &family, claims.csrf.clone())?;
    let answer =
        serde_json::to_string(&pair.body).map_err(|e| AuthError::Unexpected(e.to_string()))?;
    if !state.refresh_grace.is_zero() {
        state
            .revocations
            .record_rotation(&claims.jti, answer.clone(), state.refresh_grace)
            .await?;
    }
    state.metrics.inc("auth_refreshes_total");
    Ok(respond(answer))
}

pub fn token_response(pair_json: String) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .content_type("application/json")
        .body(pair_json)
}

/// A spent refresh token presented again within the grace window gets the answer its first use
/// got (a client retrying after a lost response). A concurrent duplicate may arrive while the
/// first use is still being answered, so wait briefly for that answer.
async fn replay_within_grace(state: &AppState, jti: &str) -> Result<Option<String>, AuthError> {
    if state.refresh_grace.is_zero() {
        return Ok(None);
    }
    for _ in 0..25 {
        if let Some(answer) = state.revocations.rotation(jti).await? {
            return Ok(Some(answer));
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    Ok(None)
}

/// Reuse of a rotated refresh token: whoever holds the family, attacker or victim, loses it.
async fn revoke_family(state: &AppState, claims: &RefreshClaims) -> Result<(), AuthError> {
    if let Some(fam) = &claims.fam {
        state
            .revocations
            .revoke(RevocationEntry {
                target: Revocation::Family { fam: fam.clone() },
                expires_at: shared::now_unix() + (state.tokens.refresh_ttl + state.leeway) as i64,
            })
            .await?;
    }
    Ok(())
}

/// Optional body of `POST /auth/logout`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogoutBody {
    refresh_token: Option<String>,
}

impl LogoutBody {
    /// The body is optional: empty or whitespace is no body.
    pub fn parse_optional(body: &[u8]) -> Result<Option<Self>, AuthError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        serde_json::from_slice(body).map(Some).map_err(|e| {
            if e.is_data() {
                AuthError::field("refresh_token", "expected {\"refresh_token\": \"<jwt>\"}")
            } else {
                AuthError::BadRequest("the body is not valid JSON")
            }
        })
    }

    pub fn refresh_token(&self) -> Option<&str> {
        self.refresh_token.as_deref()
    }
}

api_errors!(LogoutErrors: TOKEN + [BadRequest, ValidationFailed, PayloadTooLarge, CsrfFailed]);

/// Revoke the access token and, when named, the refresh token and its whole session
///
/// The body is optional (empty, or `{"refresh_token": "<jwt>"}`); a refresh token that is not
/// valid, or belongs to another user, is `invalid_token`; an expired one is ignored.
#[utoipa::path(
    post,
    path = "/auth/logout",
    tag = "auth",
    security(("access_token" = []), ("access_cookie" = [], "csrf_header" = [])),
    request_body(
        content = ref("#/components/schemas/LogoutBody"),
        content_type = "application/json",
        description = "Optional"
    ),
    responses(
        (status = 204, description = "Revoked"),
        LogoutErrors,
    )
)]
async fn logout(
    state: web::Data<AppState>,
    claims: AccessClaims,
    body: web::Bytes,
) -> Result<HttpResponse, AuthError> {
    let body = LogoutBody::parse_optional(&body)?;
    let leeway = state.leeway as i64;
    let mut entries = vec![RevocationEntry {
        target: Revocation::Token {
            jti: claims.jti.clone(),
        },
        expires_at: claims.exp + leeway,
    }];
    if let Some(token) = body.as_ref().and_then(LogoutBody::refresh_token) {
        match state.auth.verifier.verify_refresh(token) {
            Ok(refresh) if refresh.sub != claims.sub => {
                return Err(TokenError::Invalid("the refresh token belongs to another user").into())
            }
            Ok(refresh) => {
                entries.push(RevocationEntry {
                    target: Revocation::Token {
                        jti: refresh.jti.clone(),
                    },
                    expires_at: refresh.exp + leeway,
                });
                // The whole session ends: every token descending from that login.
                if let Some(fam) = &refresh.fam {
                    entries.push(RevocationEntry {
                        target: Revocation::Family { fam: fam.clone() },
                        expires_at: refresh.exp + leeway,
                    });
                }
            }
            // Already dead: nothing left to revoke.
            Err(TokenError::Expired) => {}
            Err(err) => return Err(err.into()),
        }
    }
    for entry in entries {
        state.revocations.revoke(entry).await?;
    }
    state.metrics.inc("auth_logouts_total");
    Ok(HttpResponse::NoContent().finish())
}

api_errors!(MeErrors: TOKEN + []);

/// The caller's account, loaded from the database
#[utoipa::path(
    get,
    path = "/auth/me",
    tag = "auth",
    security(("access_token" = []), ("access_cookie" = [])),
    responses(
        (status = 200, description = "The user", body = UserBody),
        MeErrors,
    )
)]
async fn me(state: web::Data<AppState>, claims: AccessClaims) -> Result<HttpResponse, AuthError> {
    let user = state
        .users
        .by_id(claims.sub.clone())
        .await?
        .ok_or(TokenError::Invalid("the user no longer exists"))?;
    Ok(HttpResponse::Ok().json(UserBody::of(&user, true)))
}
