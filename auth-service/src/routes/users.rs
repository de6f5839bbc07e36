//! `/auth/users`: administration of accounts (role `admin`; changes need a fresh token).

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use shared::{api_errors, AccessClaims, Role};

use crate::error::AuthError;
use crate::routes::dto::{page_cursor, page_limit, UserBody};
use crate::routes::origin;
use crate::routes::sessions::{SessionBody, SessionList};
use crate::state::AppState;
use crate::users;

pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.route("/auth/users", web::get().to(find))
        .route("/auth/users/{id}", web::get().to(show))
        .route("/auth/users/{id}/disable", web::post().to(disable))
        .route("/auth/users/{id}/enable", web::post().to(enable))
        .route("/auth/users/{id}/sessions", web::get().to(sessions_of))
        .route(
            "/auth/users/{id}/sessions",
            web::delete().to(end_sessions_of),
        );
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FindQuery {
    username: Option<String>,
    cursor: Option<String>,
    limit: Option<String>,
}

/// One page of users, oldest account first; `next_cursor` is null on the last page.
#[derive(Serialize, utoipa::ToSchema)]
pub struct UserPage {
    items: Vec<UserBody>,
    next_cursor: Option<String>,
}

api_errors!(FindErrors: TOKEN + [BadRequest, InsufficientRole]);

/// Find users (admin): all of them page by page, or one by name
///
/// `username` is an exact, case-insensitive match. An unknown query parameter, a `limit`
/// outside 1-100 or a `cursor` this service did not issue is `bad_request`.
#[utoipa::path(
    get,
    path = "/auth/users",
    tag = "users",
    params(
        ("username" = Option<String>, Query, description = "exact name, case-insensitive"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 100,
            description = "page size, default 20"),
    ),
    security(("access_token" = []), ("access_cookie" = [])),
    responses((status = 200, description = "A page", body = UserPage), FindErrors)
)]
async fn find(
    state: web::Data<AppState>,
    claims: AccessClaims,
    query: web::Query<FindQuery>,
) -> Result<HttpResponse, AuthError> {
    claims.require_role(Role::Admin)?;
    let limit = page_limit(query.limit.as_deref())?;
    let after = page_cursor(query.cursor.as_deref())?;
    let username = query.username.clone().filter(|name| !name.is_empty());
    // One more than asked: whether another page exists, without a count.
    let mut found = state.users.page(username, after, limit + 1).await?;
    let next_cursor = if found.len() as i64 > limit {
        found.truncate(limit as usize);
        found.last().map(|user| user.id.clone())
    } else {
        None
    };
    let items = found.iter().map(|user| UserBody::of(user, true)).collect();
    Ok(HttpResponse::Ok().json(UserPage { items, next_cursor }))
}

api_errors!(ShowErrors: TOKEN + [InsufficientRole, NotFound]);

/// One user (admin): `{id, username, roles, created_at, disabled, mfa}`
#[utoipa::path(
    get,
    path = "/auth/users/{id}",
    tag = "users",
    params(("id" = String, Path, description = "the user's id")),
    security(("access_token" = []), ("access_cookie" = [])),
    responses((status = 200, description = "The user", body = UserBody), ShowErrors)
)]
async fn show(
    state: web::Data<AppState>,
    claims: AccessClaims,
    id: web::Path<String>,
) -> Result<HttpResponse, AuthError> {
    claims.require_role(Role::Admin)?;
    let user = state
        .users
        .by_id(id.into_inner())
        .await?
        .ok_or(AuthError::NotFound("no such user"))?;
    Ok(HttpResponse::Ok().json(UserBody::of(&user, true)))
}

api_errors!(
    ChangeErrors: TOKEN + [FreshTokenRequired, InsufficientRole, CsrfFailed, NotFound, Conflict]
);

/// Disable an account (admin, fresh token): every session ends at once
///
/// Login and refresh then answer `account_disabled`; every token the user held is refused by
/// every verifier. An administrator cannot disable their own account (`conflict`).
#[utoipa::path(
    post,
    path = "/auth/users/{id}/disable",
    tag = "users",
    params(("id" = String, Path, description = "the user's id")),
    security(("access_token" = []), ("access_cookie" = [], "csrf_header" = [])),
    responses((status = 200, description = "The user, disabled", body = UserBody), ChangeErrors)
)]
async fn disable(
    state: web::Data<AppState>,
    req: HttpRequest,
    claims: AccessClaims,
    id: web::Path<String>,
) -> Result<HttpResponse, AuthError> {
    claims.require_role(Role::Admin)?;
    claims.require_fresh()?;
    let user = users::disable(&state, &claims.sub, &origin(&req, &state), id.into_inner()).await?;
    Ok(HttpResponse::Ok().json(UserBody::of(&user, true)))
}

/// Enable an account again (admin, fresh token); its old sessions stay ended
#[utoipa::path(
    post,
    path = "/auth/users/{id}/enable",
    tag = "users",
    params(("id" = String, Path, description = "the user's id")),
    security(("access_token" = []), ("access_cookie" = [], "csrf_header" = [])),
    responses((status = 200, description = "The user, enabled", body = UserBody), ChangeErrors)
)]
async fn enable(
    state: web::Data<AppState>,
    req: HttpRequest,
    claims: AccessClaims,
    id: web::Path<String>,
) -> Result<HttpResponse, AuthError> {
    claims.require_role(Role::Admin)?;
    claims.require_fresh()?;
    let user = users::enable(&state, &claims.sub, &origin(&req, &state), id.into_inner()).await?;
    Ok(HttpResponse::Ok().json(UserBody::of(&user, true)))
}

/// A user's live sessions (admin), newest first
#[utoipa::path(
    get,
    path = "/auth/users/{id}/sessions",
    tag = "users",
    params(("id" = String, Path, description = "the user's id")),
    security(("access_token" = []), ("access_cookie" = [])),
    responses((status = 200, description = "Live sessions", body = SessionList), ShowErrors)
)]
async fn sessions_of(
    state: web::Data<AppState>,
    claims: AccessClaims,
    id: web::Path<String>,
) -> Result<HttpResponse, AuthError> {
    claims.require_role(Role::Admin)?;
    let records = users::sessions_of(&state, id.into_inner()).await?;
    let items = records
        .iter()
        .map(|r| SessionBody::of(r, claims.sid.as_deref()))
        .collect();
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(SessionList { items }))
}

api_errors!(EndAllErrors: TOKEN + [FreshTokenRequired, InsufficientRole, CsrfFailed, NotFound]);

/// End every session of a user (admin, fresh token), everywhere
#[utoipa::path(
    delete,
    path = "/auth/users/{id}/sessions",
    tag = "users",
    params(("id" = String, Path, description = "the user's id")),
    security(("access_token" = []), ("access_cookie" = [], "csrf_header" = [])),
    responses((status = 204, description = "Ended"), EndAllErrors)
)]
async fn end_sessions_of(
    state: web::Data<AppState>,
    req: HttpRequest,
    claims: AccessClaims,
    id: web::Path<String>,
) -> Result<HttpResponse, AuthError> {
    claims.require_role(Role::Admin)?;
    claims.require_fresh()?;
    users::end_sessions_of(&state, &claims.sub, &origin(&req, &state), id.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}
