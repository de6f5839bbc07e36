//! `/auth/session`: cookie login and cookie logout (see `cookies` for the cookie rules).

use actix_web::{web, HttpRequest, HttpResponse};
use shared::AccessClaims;

use crate::error::AuthError;
use crate::login;
use crate::routes::dto::Credentials;
use crate::routes::{cookies, origin};
use crate::sessions;
use crate::state::AppState;
use shared::api_errors;

pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.route("/auth/session", web::post().to(create_session))
        .route("/auth/session", web::delete().to(end_session));
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
    let Credentials { username, password } = body.into_inner();
    let origin = origin(&req, &state);
    let pair =
        login::authenticate(&state, &origin, &username, password, Some(csrf.clone())).await?;
    let mut response = HttpResponse::NoContent();
    response.insert_header(("Cache-Control", "no-store"));
    cookies::set_session_cookies(&mut response, &state, &pair.body, &csrf);
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
    req: HttpRequest,
    claims: AccessClaims,
) -> Result<HttpResponse, AuthError> {
    // The extractor already required the CSRF header for this cookie-carried DELETE.
    sessions::end_session(&state, &claims, &origin(&req, &state)).await?;
    let mut response = HttpResponse::NoContent();
    cookies::clear_session_cookies(&mut response, &state);
    state.metrics.inc("auth_cookie_logouts_total");
    Ok(response.finish())
}
