//! Cookie mode (Flask-JWT-Extended's browser mode): tokens in `HttpOnly` cookies, a readable
//! `csrf_access_token` cookie whose value is also bound into the tokens, and the double-submit
//! check on every state-changing request (done by the shared extractors, in both services).

use actix_web::body::MessageBody;
use actix_web::cookie::{time, Cookie, SameSite};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{web, HttpRequest, HttpResponse, HttpResponseBuilder};
use shared::extract::{ACCESS_COOKIE, CSRF_COOKIE, REFRESH_COOKIE};
use shared::{AccessClaims, Revocation, RevocationEntry, TokenType};

use crate::error::AuthError;
use crate::routes::auth::{authenticate, Credentials};
use crate::startup::AppState;
use shared::api_errors;

pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.route("/auth/session", web::post().to(create_session))
        .route("/auth/session", web::delete().to(end_session));
}

/// The refresh cookie is only ever sent to auth-service's own paths.
const REFRESH_COOKIE_PATH: &str = "/auth";

fn cookie<'c>(
    name: &'c str,
    value: String,
    max_age: i64,
    http_only: bool,
    secure: bool,
) -> Cookie<'c> {
    let path = if name == REFRESH_COOKIE {
        REFRESH_COOKIE_PATH
    } else {
        "/"
    };
    Cookie::build(name, value)
        .path(path)
        .http_only(http_only)
        .secure(secure)
        .same_site(SameSite::Lax)
        .max_age(time::Duration::seconds(max_age))
        .finish()
}

/// Sets the three cookies of a cookie session on `response`.
pub fn set_session_cookies(
    response: &mut HttpResponseBuilder,
    state: &AppState,
    access: &str,
    refresh: &str,
    csrf: &str,
) {
    let secure = state.cookie_secure;
    let refresh_ttl = state.tokens.refresh_ttl as i64;
    response
        .cookie(cookie(
            ACCESS_COOKIE,
            access.to_owned(),
            refresh_ttl,
            true,
            secure,
        ))
        .cookie(cookie(
            REFRESH_COOKIE,
            refresh.to_owned(),
            refresh_ttl,
            true,
            secure,
        ))
        .cookie(cookie(
            CSRF_COOKIE,
            csrf.to_owned(),
            refresh_ttl,
            false,
            secure,
        ));
}

/// Whether this request carries its refresh token in the cookie (so the answer sets cookies).
pub fn refresh_from_cookie(req: &HttpRequest) -> bool {
    !req.headers()
        .contains_key(actix_web::http::header::AUTHORIZATION)
        && req.cookie(REFRESH_COOKIE).is_some()
}

/// The answer to a cookie-carried refresh: the pair as JSON, and as renewed cookies.
pub fn cookie_refresh_response(state: &AppState, pair_json: String, csrf: &str) -> HttpResponse {
    let pair: serde_json::Value = serde_json::from_str(&pair_json).unwrap_or_default();
    let token = |name: &str| pair[name].as_str().unwrap_or_default().to_owned();
    let mut response = HttpResponse::Ok();
    response.insert_header(("Cache-Control", "no-store"));
    set_session_cookies(
        &mut response,
        state,
        &token("access_token"),
        &token("refresh_token"),
        csrf,
    );
    response.content_type("application/json").body(pair_json)
}

api_errors!(CreateSessionErrors: JSON_BODY + [InvalidCredentials, RateLimited, Unavailable]);

/// Cookie login: the tokens as HttpOnly cookies and a readable `csrf_access_token`
///
/// The same checks and throttling as `POST /auth/login`. Afterwards every POST, PUT, PATCH and
/// DELETE that relies on the cookies must send `X-CSRF-TOKEN` equal to `csrf_access_token`.
#[utoipa::path(
    post,
    path = "/auth/session",
    tag = "session",
    request_body = Credentials,
    responses(
        (status = 204, description = "Logged in",
            headers(("Set-Cookie" = String, description = "`access_token_cookie` (HttpOnly, \
                `Path=/`), `refresh_token_cookie` (HttpOnly, `Path=/auth`) and \
                `csrf_access_token`, all `SameSite=Lax`"))),
        CreateSessionErrors,
    )
)]
async fn create_session(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<Credentials>,
) -> Result<HttpResponse, AuthError> {
    let csrf = uuid::Uuid::new_v4().simple().to_string();
    let pair = authenticate(&state, &req, body.into_inner(), Some(csrf.clone())).await?;
    let mut response = HttpResponse::NoContent();
    response.insert_header(("Cache-Control", "no-store"));
    set_session_cookies(
        &mut response,
        &state,
        &pair.body.access_token,
        &pair.body.refresh_token,
        &csrf,
    );
    Ok(response.finish())
}

api_errors!(EndSessionErrors: TOKEN + [CsrfFailed]);

/// Cookie logout: revoke the session and clear the cookies
#[utoipa::path(
    delete,
    path = "/auth/session",
    tag = "session",
    security(("access_cookie" = [], "csrf_header" = []), ("access_token" = [])),
    responses(
        (status = 204, description = "Logged out",
            headers(("Set-Cookie" = String, description = "the three session cookies, expired"))),
        EndSessionErrors,
    )
)]
async fn end_session(
    state: web::Data<AppState>,
    claims: AccessClaims,
) -> Result<HttpResponse, AuthError> {
    // The extractor already required the CSRF header for this cookie-carried DELETE.
    let leeway = state.leeway as i64;
    let longest = shared::now_unix() + (state.tokens.refresh_ttl + state.leeway) as i64;
    let mut entries = vec![RevocationEntry {
        target: Revocation::Token {
            jti: claims.jti.clone(),
        },
        expires_at: claims.exp + leeway,
    }];
    if let Some(fam) = &claims.fam {
        entries.push(RevocationEntry {
            target: Revocation::Family { fam: fam.clone() },
            expires_at: longest,
        });
    }
    for entry in entries {
        state.revocations.revoke(entry).await?;
    }
    let mut response = HttpResponse::NoContent();
    for name in [ACCESS_COOKIE, REFRESH_COOKIE, CSRF_COOKIE] {
        response.cookie(cookie(
            name,
            String::new(),
            0,
            name != CSRF_COOKIE,
            state.cookie_secure,
        ));
    }
    state.metrics.inc("auth_cookie_logouts_total");
    Ok(response.finish())
}

/// Implicit refresh: a successful request carrying a cookie access token close to expiry gets a
/// new access cookie (not fresh, same session and CSRF value), so browsers never see a 401 for
/// an expired token while their refresh token is alive.
pub async fn implicit_refresh(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let renewal = renewal_candidate(&req).await;
    let mut response = next.call(req).await?;
    let Some((state, claims)) = renewal else {
        return Ok(response);
    };
    if !response.status().is_success() || response.request().method() == Method::DELETE {
        return Ok(response);
    }
    match state.tokens.renew_access(&claims) {
        Ok(token) => {
            let access = cookie(
                ACCESS_COOKIE,
                token,
                state.tokens.refresh_ttl as i64,
                true,
                state.cookie_secure,
            );
            if let Err(err) = response.response_mut().add_cookie(&access) {
                tracing::warn!(error = %err, "could not set the renewed access cookie");
            } else {
                state.metrics.inc("auth_implicit_refreshes_total");
            }
        }
        Err(err) => tracing::warn!(error = %err, "implicit refresh failed"),
    }
    Ok(response)
}

async fn renewal_candidate(req: &ServiceRequest) -> Option<(web::Data<AppState>, shared::Claims)> {
    if req
        .headers()
        .contains_key(actix_web::http::header::AUTHORIZATION)
    {
        return None;
    }
    let token = req.cookie(ACCESS_COOKIE)?.value().to_owned();
    let state = req.app_data::<web::Data<AppState>>()?.clone();
    let claims = state.auth.verify(&token, TokenType::Access).await.ok()?;
    let remaining = claims.exp - shared::now_unix();
    (claims.csrf.is_some() && remaining <= state.cookie_refresh_window as i64)
        .then_some((state, claims))
}
