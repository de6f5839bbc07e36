//! `/auth/audit`: the audit trail, for administrators.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use shared::{api_errors, AccessClaims, Role};

use crate::audit::{AuditQuery, EventKind, StoredEvent};
use crate::error::AuthError;
use crate::routes::dto::{page_cursor, page_limit, rfc3339};
use crate::state::AppState;

pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.route("/auth/audit", web::get().to(list));
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    user: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    cursor: Option<String>,
    limit: Option<String>,
}

/// A security event.
#[derive(Serialize, utoipa::ToSchema)]
pub struct EventBody {
    id: String,
    #[schema(format = DateTime)]
    at: String,
    /// `login`, `login_failed`, `login_throttled`, `login_refused`, `mfa_failed`,
    /// `refresh_reuse`, `logout`, `logout_all`, `session_ended`, `password_changed`,
    /// `password_change_failed`, `roles_changed`, `user_disabled`, `user_enabled`,
    /// `mfa_enrolled`, `mfa_removed`, `recovery_code_used`, `registered`, `client_created`,
    /// `client_deleted`, `client_secret_rotated`
    #[serde(rename = "type")]
    kind: String,
    /// Who acted: a user or client id; null when unknown (a failed login).
    actor: Option<String>,
    /// Whom it concerns: a user or client id.
    subject: Option<String>,
    ip: Option<String>,
    user_agent: Option<String>,
    /// `success`, `failure` or `refused`.
    outcome: String,
    detail: Option<String>,
}

impl From<StoredEvent> for EventBody {
    fn from(event: StoredEvent) -> Self {
        EventBody {
            id: event.id,
            at: rfc3339(event.at),
            kind: event.kind,
            actor: event.actor,
            subject: event.subject,
            ip: event.ip,
            user_agent: event.user_agent,
            outcome: event.outcome,
            detail: event.detail,
        }
    }
}

/// One page of events, newest first; `next_cursor` is null on the last page.
#[derive(Serialize, utoipa::ToSchema)]
pub struct EventPage {
    items: Vec<EventBody>,
    next_cursor: Option<String>,
}

api_errors!(ListErrors: TOKEN + [BadRequest, InsufficientRole]);

/// The audit trail (admin), newest first, by user and by type
///
/// `user` matches events where that id is the actor or the subject. An unknown `type`, an
/// unknown query parameter, a `limit` outside 1-100 or a foreign `cursor` is `bad_request`.
/// Events are kept `AUDIT_RETENTION_DAYS` days.
#[utoipa::path(
    get,
    path = "/auth/audit",
    tag = "audit",
    params(
        ("user" = Option<String>, Query, description = "a user's (or client's) id"),
        ("type" = Option<String>, Query, description = "an event type"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 100,
            description = "page size, default 20"),
    ),
    security(("access_token" = []), ("access_cookie" = [])),
    responses((status = 200, description = "A page", body = EventPage), ListErrors)
)]
async fn list(
    state: web::Data<AppState>,
    claims: AccessClaims,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, AuthError> {
    claims.require_role(Role::Admin)?;
    let query = query.into_inner();
    let limit = page_limit(query.limit.as_deref())?;
    let before = page_cursor(query.cursor.as_deref())?;
    let kind = match query.kind.as_deref().filter(|k| !k.is_empty()) {
        None => None,
        Some(name) => Some(
            EventKind::parse(name)
                .ok_or(AuthError::BadRequest("type is not a known event type"))?
                .as_str()
                .to_owned(),
        ),
    };
    let mut events = state
        .audit
        .flushed_store()
        .await
        .page(AuditQuery {
            user: query.user.filter(|u| !u.is_empty()),
            kind,
            before,
            limit: limit + 1,
        })
        .await?;
    let next_cursor = if events.len() as i64 > limit {
        events.truncate(limit as usize);
        events.last().map(|event| event.id.clone())
    } else {
        None
    };
    let items = events.into_iter().map(EventBody::from).collect();
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(EventPage { items, next_cursor }))
}
