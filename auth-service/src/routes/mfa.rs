//! The second factor: the second login step (token pair or cookies), TOTP enrolment, removal.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use shared::{api_errors, AccessClaims, TokenError};

use crate::error::AuthError;
use crate::routes::auth::token_response;
use crate::routes::{cookies, origin};
use crate::second_factor;
use crate::state::AppState;
use crate::store::User;

pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.route("/auth/login/mfa", web::post().to(login_mfa))
        .route("/auth/session/mfa", web::post().to(session_mfa))
        .route("/auth/mfa/totp", web::post().to(start))
        .route("/auth/mfa/totp/confirm", web::post().to(confirm))
        .route("/auth/mfa/totp", web::delete().to(remove));
}

/// The second step of a login that answered `mfa_required`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MfaLogin {
    /// From the `mfa_required` answer; single-use, valid 5 minutes.
    mfa_token: String,
    /// A 6-digit TOTP code, or an unused recovery code.
    code: String,
}

api_errors!(
    LoginMfaErrors: JSON_BODY + [InvalidMfaCode, AccountDisabled, RateLimited, Unavailable]
);

/// Finish a login with the second factor: a fresh token pair of a new session
///
/// `code` is the current TOTP code or an unused recovery code (each works once). A wrong,
/// reused or expired code, or an unknown or spent `mfa_token`, is `invalid_mfa_code`; codes
/// are throttled per user and per address like passwords, and an `mfa_token` takes 5 tries.
#[utoipa::path(
    post,
    path = "/auth/login/mfa",
    tag = "auth",
    request_body = MfaLogin,
    responses(
        (status = 200, description = "A token pair", body = crate::tokens::TokenPair,
            headers(("Cache-Control" = String, description = "`no-store`"))),
        LoginMfaErrors,
    )
)]
async fn login_mfa(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<MfaLogin>,
) -> Result<HttpResponse, AuthError> {
    let origin = origin(&req, &state);
    let (pair, _) =
        second_factor::finish_login(&state, &origin, &body.mfa_token, &body.code).await?;
    Ok(token_response(&pair.body))
}

/// Cookie login, second step: the same as `POST /auth/login/mfa`, answered with the session
/// cookies of `POST /auth/session`
#[utoipa::path(
    post,
    path = "/auth/session/mfa",
    tag = "session",
    request_body = MfaLogin,
    responses(
        (status = 204, description = "Logged in",
            headers(("Set-Cookie" = String, description = "the three session cookies"))),
        LoginMfaErrors,
    )
)]
async fn session_mfa(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<MfaLogin>,
) -> Result<HttpResponse, AuthError> {
    let origin = origin(&req, &state);
    let (pair, csrf) =
        second_factor::finish_login(&state, &origin, &body.mfa_token, &body.code).await?;
    // A challenge from a JSON login carries no CSRF value: it cannot become a cookie session.
    let csrf = csrf.ok_or(AuthError::BadRequest(
        "this mfa_token is from POST /auth/login: finish it at /auth/login/mfa",
    ))?;
    let mut response = HttpResponse::NoContent();
    response.insert_header(("Cache-Control", "no-store"));
    cookies::set_session_cookies(&mut response, &state, &pair.body, &csrf);
    Ok(response.finish())
}

/// A new TOTP secret, to be confirmed with a code.
#[derive(Serialize, utoipa::ToSchema)]
pub struct EnrolmentBody {
    /// Base32, for typing into an authenticator app.
    secret: String,
    /// `otpauth://totp/...` (RFC 6238: SHA-1, 6 digits, 30 s).
    otpauth_uri: String,
    /// The URI as a QR code, an SVG document (rendered here: no third-party service sees it).
    qr_svg: String,
}

api_errors!(
    StartErrors: TOKEN + [FreshTokenRequired, CsrfFailed, Conflict, Unavailable]
);

/// Start TOTP enrolment (fresh token): a secret to confirm with `POST /auth/mfa/totp/confirm`
///
/// A second call replaces a secret not yet confirmed. With a factor already enrolled it is
/// `conflict` (remove it first).
#[utoipa::path(
    post,
    path = "/auth/mfa/totp",
    tag = "mfa",
    security(("access_token" = []), ("access_cookie" = [], "csrf_header" = [])),
    responses(
        (status = 200, description = "The secret", body = EnrolmentBody,
            headers(("Cache-Control" = String, description = "`no-store`"))),
        StartErrors,
    )
)]
async fn start(
    state: web::Data<AppState>,
    claims: AccessClaims,
) -> Result<HttpResponse, AuthError> {
    claims.require_fresh()?;
    let user = caller(&state, &claims).await?;
    let enrolment = second_factor::start_enrolment(&state, &user).await?;
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(EnrolmentBody {
            secret: enrolment.secret,
            otpauth_uri: enrolment.otpauth_uri,
            qr_svg: enrolment.qr_svg,
        }))
}

/// A one-time code.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeBody {
    code: String,
}

/// The recovery codes, shown this once.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RecoveryCodes {
    /// 10 codes, each usable once in place of a TOTP code.
    recovery_codes: Vec<String>,
}

api_errors!(
    ConfirmErrors: TOKEN + JSON_BODY
        + [FreshTokenRequired, CsrfFailed, Conflict, InvalidMfaCode, RateLimited]
);

/// Confirm TOTP enrolment with a code (fresh token): the factor is on; 10 recovery codes
#[utoipa::path(
    post,
    path = "/auth/mfa/totp/confirm",
    tag = "mfa",
    security(("access_token" = []), ("access_cookie" = [], "csrf_header" = [])),
    request_body = CodeBody,
    responses(
        (status = 200, description = "Enrolled", body = RecoveryCodes,
            headers(("Cache-Control" = String, description = "`no-store`"))),
        ConfirmErrors,
    )
)]
async fn confirm(
    state: web::Data<AppState>,
    req: HttpRequest,
    claims: AccessClaims,
    body: web::Json<CodeBody>,
) -> Result<HttpResponse, AuthError> {
    claims.require_fresh()?;
    let user = caller(&state, &claims).await?;
    let codes =
        second_factor::confirm_enrolment(&state, &origin(&req, &state), &user, &body.code).await?;
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(RecoveryCodes {
            recovery_codes: codes,
        }))
}

api_errors!(
    RemoveErrors: TOKEN + JSON_BODY
        + [FreshTokenRequired, CsrfFailed, NotFound, InvalidMfaCode, RateLimited]
);

/// Remove the second factor (fresh token and a current code, TOTP or recovery)
#[utoipa::path(
    delete,
    path = "/auth/mfa/totp",
    tag = "mfa",
    security(("access_token" = []), ("access_cookie" = [], "csrf_header" = [])),
    request_body = CodeBody,
    responses((status = 204, description = "Removed"), RemoveErrors)
)]
async fn remove(
    state: web::Data<AppState>,
    req: HttpRequest,
    claims: AccessClaims,
    body: web::Json<CodeBody>,
) -> Result<HttpResponse, AuthError> {
    claims.require_fresh()?;
    let user = caller(&state, &claims).await?;
    second_factor::remove(&state, &origin(&req, &state), &user, &body.code).await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn caller(state: &AppState, claims: &AccessClaims) -> Result<User, AuthError> {
    Ok(state
        .users
        .by_id(claims.sub.clone())
        .await?
        .ok_or(TokenError::Invalid("the user no longer exists"))?)
}
