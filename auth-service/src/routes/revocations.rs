//! `GET /revocations` (snapshot) and `GET /revocations/stream` (Server-Sent Events), for
//! services that verify tokens locally but cannot reach Redis. A service token with scope
//! `revocations:read` is required.

use std::time::Duration;

use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::stream;
use serde::Deserialize;
use shared::{api_errors, AccessClaims, Scope};
use tokio::sync::broadcast::{self, error::RecvError};

use crate::error::AuthError;
use crate::feed::{Cursor, FeedEvent, FeedLog};
use crate::state::AppState;

pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.route("/revocations", web::get().to(snapshot))
        .route("/revocations/stream", web::get().to(follow));
}

/// One page: every revocation that can still match a live access token, and where to resume.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Snapshot {
    /// Revocations as JSON objects: `{"kind": "token", "jti"}`, `{"kind": "session", "sid"}`
    /// or `{"kind": "user", "sub", "before", "except_jti"?}`, each with `expires_at`.
    items: Vec<serde_json::Value>,
    /// Give it to `/revocations/stream?cursor=` (or as `Last-Event-ID`) to follow from here.
    cursor: String,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    /// Resume after this cursor (a snapshot's `cursor` or an event's `id`); `Last-Event-ID`
    /// wins when both are sent.
    cursor: Option<String>,
}

fn parse_cursor(raw: &str) -> Result<Cursor, AuthError> {
    Cursor::parse(raw).ok_or(AuthError::BadRequest(
        "cursor is not one this service issued",
    ))
}

api_errors!(FeedErrors: TOKEN + [InsufficientRole]);

/// Every revocation that can still match a live access token (scope `revocations:read`)
#[utoipa::path(
    get,
    path = "/revocations",
    tag = "revocations",
    security(("access_token" = [])),
    responses(
        (status = 200, description = "The snapshot and its cursor", body = Snapshot),
        FeedErrors,
    )
)]
async fn snapshot(
    state: web::Data<AppState>,
    claims: AccessClaims,
) -> Result<HttpResponse, AuthError> {
    claims.require_scope(Scope::RevocationsRead)?;
    let backlog = state.feed.since(Cursor::START).await?;
    let items = backlog
        .events
        .iter()
        .filter_map(|e| serde_json::from_str(&e.json).ok())
        .collect();
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(Snapshot {
            items,
            cursor: backlog.cursor.to_string(),
        }))
}

api_errors!(StreamErrors: TOKEN + [InsufficientRole, BadRequest]);

/// Revocations as Server-Sent Events, resumable without a gap (scope `revocations:read`)
///
/// Each event is one revocation (`data:` its JSON, `id:` its cursor); a comment line comes at
/// least every `AUTH_FEED_HEARTBEAT_SECS` (2 s by default, never more than 15 s). The stream
/// ends when the token that opened it expires: reconnect with a new one and `Last-Event-ID`.
#[utoipa::path(
    get,
    path = "/revocations/stream",
    tag = "revocations",
    params(StreamQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "the last event's id: resume after it")),
    security(("access_token" = [])),
    responses(
        (status = 200, description = "`text/event-stream`", content_type = "text/event-stream", body = String),
        StreamErrors,
    )
)]
async fn follow(
    state: web::Data<AppState>,
    claims: AccessClaims,
    req: HttpRequest,
    query: web::Query<StreamQuery>,
) -> Result<HttpResponse, AuthError> {
    claims.require_scope(Scope::RevocationsRead)?;
    let last_event_id = req
        .headers()
        .get("Last-Event-ID")
        .map(|v| v.to_str().unwrap_or("?").trim().to_owned())
        .filter(|v| !v.is_empty());
    let after = match last_event_id.or_else(|| query.cursor.clone()) {
        Some(raw) => parse_cursor(&raw)?,
        None => Cursor::START,
    };
    // Subscribed before reading the backlog: an event appended in between is in one or the
    // other (or both, and then skipped by its cursor), never in neither.
    let live = state.feed.subscribe();
    let backlog = state.feed.since(after).await?;
    let until = tokio::time::Instant::now()
        + Duration::from_secs(claims.remaining_secs(shared::now_unix()));
    let stream = EventStream {
        feed: state.feed.clone(),
        live,
        pending: backlog.events.into(),
        sent: after,
        heartbeat: tokio::time::interval(state.feed_heartbeat),
        until,
    };
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/event-stream"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        // Gateways (nginx) must pass each event on at once.
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(stream::unfold(stream, |mut s| async move {
            s.next()
                .await
                .map(|chunk| (Ok::<_, actix_web::Error>(chunk), s))
        })))
}

/// The state of one subscriber's stream.
struct EventStream {
    feed: std::sync::Arc<dyn FeedLog>,
    live: broadcast::Receiver<FeedEvent>,
    pending: std::collections::VecDeque<FeedEvent>,
    /// The newest cursor sent (or the one resumed from).
    sent: Cursor,
    heartbeat: tokio::time::Interval,
    until: tokio::time::Instant,
}

impl EventStream {
    /// What this subscriber missed, from the log; `None` (the stream ends, and the reader
    /// resumes with `Last-Event-ID`) if the log stays unreadable.
    async fn catch_up(&self) -> Option<Vec<FeedEvent>> {
        for attempt in 0..3 {
            match self.feed.since(self.sent).await {
                Ok(backlog) => return Some(backlog.events),
                Err(err) if attempt == 2 => {
                    tracing::warn!(error = %err, "revocation stream: the log is unreadable; closing");
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        None
    }

    /// The next chunk to send, or `None` when the stream ends. The backlog goes first; the
    /// heartbeat's first tick is immediate, so a comment line follows it at once (a reader that
    /// takes any line as a sign of life is never "fresh" before it has what it missed).
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                if event.id <= self.sent {
                    continue;
                }
                self.sent = event.id;
                return Some(Bytes::from(format!(
                    "id: {}\ndata: {}\n\n",
                    event.id, event.json
                )));
            }
            tokio::select! {
                received = self.live.recv() => match received {
                    Ok(event) => self.pending.push_back(event),
                    // Fell behind the live buffer: read what was missed from the log.
                    Err(RecvError::Lagged(_)) => match self.catch_up().await {
                        Some(events) => self.pending.extend(events),
                        None => return None,
                    },
                    Err(RecvError::Closed) => return None,
                },
                _ = self.heartbeat.tick() => return Some(Bytes::from_static(b": keep-alive\n\n")),
                _ = tokio::time::sleep_until(self.until) => return None,
            }
        }
    }
}
