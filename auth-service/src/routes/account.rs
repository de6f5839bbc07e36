//! Session-wide operations: logout everywhere, password change, role administration. Each ends
//! the affected user's existing tokens with a per-user cut-off that every verifier applies.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use shared::{AccessClaims, Role};

use crate::audit::{Event, EventKind};
use crate::domain::Password;
use crate::error::AuthError;
use crate::routes::dto::UserBody;
use crate::routes::origin;
use crate::sessions;
use crate::state::AppState;
use shared::api_errors;
use shared::openapi::RoleSchema;

pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.route("/auth/logout-all", web::post().to(logout_all))
        .route("/auth/password", web::post().to(change_password))
        .route("/auth/users/{id}/roles", web::put().to(set_roles));
}

api_errors!(LogoutAllErrors: TOKEN + [CsrfFailed]);

/// End every session of the caller, on every instance
#[utoipa::path(
    post,
    path = "/auth/logout-all",
    tag = "auth",
    security(("access_token" = []), ("access_cookie" = [], "csrf_header" = [])),
    responses(
        (status = 204, description = "Every token of the user issued until now is revoked"),
        LogoutAllErrors,
    )
)]
async fn logout_all(
    state: web::Data<AppState>,
    req: HttpRequest,
    claims: AccessClaims,
) -> Result<HttpResponse, AuthError> {
    // Any authenticated user, for their own sessions.
    sessions::end_all(&state, &claims.sub, None).await?;
    state.metrics.inc("auth_logout_all_total");
    let event = Event::success(EventKind::LogoutAll)
        .by_self(&claims.sub)
        .from(&origin(&req, &state));
    state.audit.record(event).await;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct PasswordChange {
    current_password: String,
    /// 8-128 characters; must not contain the username and must reach the zxcvbn score
    /// `AUTH_PASSWORD_MIN_SCORE` (3 by default).
    new_password: String,
}

impl PasswordChange {
    /// The current password as typed (checked against the stored hash) and the new one, valid.
    pub fn parse(self) -> Result<(String, Password), AuthError> {
        let new_password = Password::parse(&self.new_password)
            .map_err(|problem| AuthError::field("new_password", problem))?;
        Ok((self.current_password, new_password))
    }
}

api_errors!(
    PasswordErrors: TOKEN + JSON_BODY
        + [FreshTokenRequired, InvalidCredentials, CsrfFailed, RateLimited]
);

/// Change the caller's password (fresh token); every other session ends
///
/// `new_password` is 8-128 characters, must not contain the username and must reach the zxcvbn
/// strength score `AUTH_PASSWORD_MIN_SCORE` (3 of 0-4 by default); a refused one is
/// `422 validation_failed` with the estimator's feedback in `fields.new_password`, answered only
/// once `current_password` is right. A wrong `current_password` is `invalid_credentials`.
/// The token that made the change stays valid until it expires. Throttled per user and per
/// client address like login; a locked attempt is refused before any password work.
#[utoipa::path(
    post,
    path = "/auth/password",
    tag = "auth",
    security(("access_token" = []), ("access_cookie" = [], "csrf_header" = [])),
    request_body = PasswordChange,
    responses(
        (status = 204, description = "Changed"),
        PasswordErrors,
    )
)]
async fn change_password(
    state: web::Data<AppState>,
    req: HttpRequest,
    claims: AccessClaims,
    body: web::Json<PasswordChange>,
) -> Result<HttpResponse, AuthError> {
    claims.require_fresh()?;
    let (current_password, new_password) = body.into_inner().parse()?;
    let origin = origin(&req, &state);
    sessions::change_password(&state, &origin, &claims, current_password, new_password).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct RolesBody {
    /// At least one; duplicates are ignored.
    #[schema(value_type = Vec<RoleSchema>)]
    roles: Vec<String>,
}

impl RolesBody {
    /// Known roles, at least one, without duplicates, sorted.
    pub fn parse(&self) -> Result<Vec<Role>, AuthError> {
        let mut roles = Vec::new();
        for name in &self.roles {
            let role = Role::parse(name).ok_or_else(|| {
                AuthError::field(
                    "roles",
                    &format!("unknown role {name:?}; expected user, editor or admin"),
                )
            })?;
            if !roles.contains(&role) {
                roles.push(role);
            }
        }
        if roles.is_empty() {
            return Err(AuthError::field("roles", "must name at least one role"));
        }
        roles.sort();
        Ok(roles)
    }
}

api_errors!(
    SetRolesErrors: TOKEN + JSON_BODY
        + [FreshTokenRequired, InsufficientRole, CsrfFailed, NotFound]
);

/// Replace a user's roles (admin, fresh token); every token of that user ends
#[utoipa::path(
    put,
    path = "/auth/users/{id}/roles",
    tag = "auth",
    params(("id" = String, Path, description = "the user's id")),
    security(("access_token" = []), ("access_cookie" = [], "csrf_header" = [])),
    request_body = RolesBody,
    responses(
        (status = 200, description = "The user with the new roles", body = UserBody),
        SetRolesErrors,
    )
)]
async fn set_roles(
    state: web::Data<AppState>,
    req: HttpRequest,
    claims: AccessClaims,
    id: web::Path<String>,
    body: web::Json<RolesBody>,
) -> Result<HttpResponse, AuthError> {
    claims.require_role(Role::Admin)?;
    claims.require_fresh()?;
    let roles = body.parse()?;
    let origin = origin(&req, &state);
    let user = sessions::set_roles(&state, &claims.sub, &origin, id.into_inner(), roles).await?;
    Ok(HttpResponse::Ok().json(UserBody::of(&user, true)))
}
