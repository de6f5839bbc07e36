//! Cookie mode (Flask-JWT-Extended's browser mode): tokens in `HttpOnly` cookies and a readable
//! `csrf_access_token` cookie whose value is also bound into the tokens; the double-submit check
//! on state-changing requests is done by the shared extractors, in both services.
//!
//! Cookies are only ever set by the three answers that create or renew a session (cookie login,
//! cookie refresh) or end it (cookie logout). There is no implicit renewal on other responses:
//! a renewal without the refresh token would let a stolen access cookie live forever, and
//! would put `Set-Cookie` on answers that caches may share.

use actix_web::cookie::{time, Cookie, SameSite};
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder};
use serde::Serialize;
use shared::extract::{ACCESS_COOKIE, CSRF_COOKIE, REFRESH_COOKIE};

use crate::state::AppState;
use crate::tokens::TokenPair;

/// The refresh cookie is only ever sent to auth-service's own paths.
const REFRESH_COOKIE_PATH: &str = "/auth";

fn cookie(name: &str, value: String, max_age: i64, secure: bool) -> Cookie<'_> {
    let path = if name == REFRESH_COOKIE {
        REFRESH_COOKIE_PATH
    } else {
        "/"
    };
    Cookie::build(name, value)
        .path(path)
        // Page scripts read only the CSRF value, never a token.
        .http_only(name != CSRF_COOKIE)
        .secure(secure)
        .same_site(SameSite::Lax)
        .max_age(time::Duration::seconds(max_age))
        .finish()
}

/// Sets the three cookies of a cookie session on `response`. They live as long as the
/// refresh token: an expired access cookie is still sent, so the page learns `token_expired`
/// and refreshes.
pub fn set_session_cookies(
    response: &mut HttpResponseBuilder,
    state: &AppState,
    pair: &TokenPair,
    csrf: &str,
) {
    let secure = state.cookie_secure;
    let life = pair.refresh_expires_in as i64;
    response
        .cookie(cookie(
            ACCESS_COOKIE,
            pair.access_token.clone(),
            life,
            secure,
        ))
        .cookie(cookie(
            REFRESH_COOKIE,
            pair.refresh_token.clone(),
            life,
            secure,
        ))
        .cookie(cookie(CSRF_COOKIE, csrf.to_owned(), life, secure));
}

/// Expires the three cookies.
pub fn clear_session_cookies(response: &mut HttpResponseBuilder, state: &AppState) {
    for name in [ACCESS_COOKIE, REFRESH_COOKIE, CSRF_COOKIE] {
        response.cookie(cookie(name, String::new(), 0, state.cookie_secure));
    }
}

/// Whether this request carries its refresh token in the cookie (so the answer sets cookies).
pub fn refresh_from_cookie(req: &HttpRequest) -> bool {
    !req.headers()
        .contains_key(actix_web::http::header::AUTHORIZATION)
        && req.cookie(REFRESH_COOKIE).is_some()
}

/// What a cookie refresh answers in its body: lifetimes only, no token.
#[derive(Serialize)]
struct CookieRefreshBody<'a> {
    token_type: &'a str,
    expires_in: u64,
    refresh_expires_in: u64,
}

/// The answer to a cookie-carried refresh: the new tokens as cookies only.
pub fn refresh_response(state: &AppState, pair: &TokenPair, csrf: &str) -> HttpResponse {
    let mut response = HttpResponse::Ok();
    response.insert_header(("Cache-Control", "no-store"));
    set_session_cookies(&mut response, state, pair, csrf);
    response.json(CookieRefreshBody {
        token_type: &pair.token_type,
        expires_in: pair.expires_in,
        refresh_expires_in: pair.refresh_expires_in,
    })
}
