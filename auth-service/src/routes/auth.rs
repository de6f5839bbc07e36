//! `/auth/*`: accounts, password login, refresh rotation, logout.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use shared::{AccessClaims, RefreshToRotate, Role, TokenError};

use crate::audit::{Event, EventKind};
use crate::error::AuthError;
use crate::login;
use crate::password_policy::hash_new_password;
use crate::routes::dto::{Credentials, NewAccount, UserBody};
use crate::routes::{client_address, cookies, origin};
use crate::sessions;
use crate::state::AppState;
use crate::tokens::TokenPair;
use shared::api_errors;

pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.route("/auth/register", web::post().to(register))
        .route("/auth/login", web::post().to(login))
        .route("/auth/refresh", web::post().to(refresh))
        .route("/auth/logout", web::post().to(logout))
        .route("/auth/me", web::get().to(me));
}

api_errors!(RegisterErrors: JSON_BODY + [Conflict, RateLimited, Unavailable]);

/// Create an account with role `user`
///
/// The password must be 8-128 characters, must not contain the username (in any case) and must
/// reach the zxcvbn strength score `AUTH_PASSWORD_MIN_SCORE` (3 of 0-4 by default); a refused
/// password is `422 validation_failed` with the estimator's feedback in `fields.password`.
/// Throttled per client address; a locked attempt is refused before the password is estimated
/// or hashed.
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
    // Before the strength estimate and the hash: a flood of sign-ups must not take the CPU from
    // logins.
    state
        .throttle
        .register(&client_address(&req, &state))
        .await?;
    let hash = hash_new_password(
        state.password_policy,
        username.as_str(),
        password,
        "password",
    )
    .await?;
    let user = state
        .users
        .create(username.as_str().to_owned(), hash, vec![Role::User])
        .await?;
    state.metrics.inc("auth_registrations_total");
    let event = Event::success(EventKind::Registered)
        .by_self(&user.id)
        .from(&origin(&req, &state));
    state.audit.record(event).await;
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
    let Credentials { username, password } = body.into_inner();
    let origin = origin(&req, &state);
    let pair = login::authenticate(&state, &origin, &username, password, None).await?;
    Ok(token_response(&pair.body))
}

api_errors!(RefreshErrors: TOKEN + [RefreshTokenReused, CsrfFailed]);

/// Rotate a refresh token: a new pair (non-fresh access token); the presented token is spent
///
/// The refresh token comes as `Authorization: Bearer`, or as the `refresh_token_cookie` with
/// `X-CSRF-TOKEN`, in which case the new tokens are set as cookies only and the body carries
/// no token (page scripts never see the refresh token). The same token presented again by the
/// same client (address and user agent) within the grace period gets the same pair; from
/// another client, or later, it is `refresh_token_reused` and its whole session is revoked.
/// No request body is read.
#[utoipa::path(
    post,
    path = "/auth/refresh",
    tag = "auth",
    security(("refresh_token" = []), ("refresh_cookie" = [], "csrf_header" = [])),
    responses(
        (status = 200, description = "A token pair; with a cookie refresh token, the same body \
            without `access_token` and `refresh_token`", body = TokenPair,
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
    // Not checked against revocations here: the rotation checks them in the same atomic step
    // as it spends the token (one Redis round trip per refresh).
    RefreshToRotate(claims): RefreshToRotate,
) -> Result<HttpResponse, AuthError> {
    let pair = sessions::refresh(&state, &claims, &origin(&req, &state)).await?;
    Ok(match (&claims.csrf, cookies::refresh_from_cookie(&req)) {
        (Some(csrf), true) => cookies::refresh_response(&state, &pair, csrf),
        _ => token_response(&pair),
    })
}

pub fn token_response(pair: &TokenPair) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(pair)
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
    req: HttpRequest,
    claims: AccessClaims,
    body: Result<web::Bytes, actix_web::Error>,
) -> Result<HttpResponse, AuthError> {
    // The optional body is read raw; over the 64 KiB limit (`PayloadConfig` in the shared
    // server) it is refused with the same JSON answer as every other body.
    let body = body.map_err(|err| {
        if err.as_response_error().status_code() == actix_web::http::StatusCode::PAYLOAD_TOO_LARGE {
            AuthError::PayloadTooLarge
        } else {
            AuthError::BadRequest("the body could not be read")
        }
    })?;
    let body = LogoutBody::parse_optional(&body)?;
    sessions::logout(
        &state,
        &claims,
        body.as_ref().and_then(LogoutBody::refresh_token),
        &origin(&req, &state),
    )
    .await?;
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
