//! `/auth/sessions`: the caller's own sessions (one per login), and ending one of them.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;
use shared::{api_errors, AccessClaims};

use crate::error::AuthError;
use crate::routes::dto::rfc3339;
use crate::routes::origin;
use crate::sessions::{self, records::SessionRecord};
use crate::state::AppState;

pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.route("/auth/sessions", web::get().to(list))
        .route("/auth/sessions/{id}", web::delete().to(end));
}

/// A session: one login and every token descending from it (the tokens' `sid`).
#[derive(Serialize, utoipa::ToSchema)]
pub struct SessionBody {
    id: String,
    #[schema(format = DateTime)]
    created_at: String,
    /// The last refresh (a plain access-token request does not count).
    #[schema(format = DateTime)]
    last_used_at: String,
    /// When its refresh token expires, unless refreshed again.
    #[schema(format = DateTime)]
    expires_at: String,
    user_agent: String,
    /// The client address at login, as the throttles see it (an IPv6 address by its /64).
    ip: String,
    /// Whether this is the session of the token making the request.
    current: bool,
}

impl SessionBody {
    pub fn of(record: &SessionRecord, current_sid: Option<&str>) -> Self {
        SessionBody {
            id: record.id.clone(),
            created_at: rfc3339(record.created_at),
            last_used_at: rfc3339(record.last_used_at),
            expires_at: rfc3339(record.expires_at),
            user_agent: record.user_agent.clone(),
            ip: record.ip.clone(),
            current: current_sid == Some(record.id.as_str()),
        }
    }
}

/// `{items: [session]}`
#[derive(Serialize, utoipa::ToSchema)]
pub struct SessionList {
    pub items: Vec<SessionBody>,
}

api_errors!(ListErrors: TOKEN + []);

/// The caller's live sessions, newest first; `current` marks the caller's own
#[utoipa::path(
    get,
    path = "/auth/sessions",
    tag = "sessions",
    security(("access_token" = []), ("access_cookie" = [])),
    responses((status = 200, description = "Live sessions", body = SessionList), ListErrors)
)]
async fn list(state: web::Data<AppState>, claims: AccessClaims) -> Result<HttpResponse, AuthError> {
    let now = chrono::Utc::now().timestamp_millis();
    let records = state.sessions.live_of(claims.sub.clone(), now).await?;
    let items = records
        .iter()
        .map(|r| SessionBody::of(r, claims.sid.as_deref()))
        .collect();
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(SessionList { items }))
}

api_errors!(EndErrors: TOKEN + [CsrfFailed, NotFound]);

/// End one of the caller's sessions, everywhere
///
/// Every token of the session is refused by every verifier (through Redis or the revocation
/// feed). Another user's session, an ended one or an unknown id is `not_found`.
#[utoipa::path(
    delete,
    path = "/auth/sessions/{id}",
    tag = "sessions",
    params(("id" = String, Path, description = "the session's id (the tokens' `sid`)")),
    security(("access_token" = []), ("access_cookie" = [], "csrf_header" = [])),
    responses((status = 204, description = "Ended"), EndErrors)
)]
async fn end(
    state: web::Data<AppState>,
    req: HttpRequest,
    claims: AccessClaims,
    id: web::Path<String>,
) -> Result<HttpResponse, AuthError> {
    let origin = origin(&req, &state);
    sessions::end_by_id(&state, &claims.sub, &id, &claims.sub, &origin).await?;
    Ok(HttpResponse::NoContent().finish())
}
