//! `GET /revocations` (snapshot) and `GET /revocations/stream` (Server-Sent Events), for
//! services that verify tokens locally but cannot reach Redis. A service token with scope
//! `revocations:read` is required.

use std::time::Duration;

use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::{stream, StreamExt};
use serde::Deserialize;
use shared::{api_errors, AccessClaims, Scope};

use crate::error::AuthError;
use crate::feed::{self, Cursor, FeedEvent, Item, Subscription};
use crate::state::AppState;

pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.route("/revocations", web::get().to(snapshot))
        .route("/revocations/stream", web::get().to(follow));
}

/// Every revocation that can still match a live access token, and where to resume. The
/// answer's shape for the OpenAPI document; `snapshot` writes it a page at a time.
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
    let mut pages = feed::Pages::after(state.feed.clone(), Cursor::START);
    // The first page before answering, so an unreadable log is a 503, not a broken 200.
    let first = pages.next().await?.unwrap_or_default();
    let mut body = SnapshotBody {
        pages,
        wrote_any: false,
        done: false,
    };
    let opening = body.items(b"{\"items\":[", &first);
    let rest = stream::unfold(body, |mut body| async move {
        let chunk = body.next_chunk().await?;
        Some((chunk, body))
    });
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .streaming(stream::once(async { Ok(opening) }).chain(rest)))
}

/// `Snapshot`'s JSON written a page at a time, each item as the log stored it. A log that
/// becomes unreadable midway ends the body short of its closing `]}` (and the transfer with
/// an error), which no JSON reader takes for a whole snapshot.
struct SnapshotBody {
    pages: feed::Pages,
    wrote_any: bool,
    done: bool,
}

impl SnapshotBody {
    async fn next_chunk(&mut self) -> Option<Result<Bytes, actix_web::Error>> {
        if self.done {
            return None;
        }
        match self.pages.next().await {
            Ok(Some(events)) => Some(Ok(self.items(b"", &events))),
            Ok(None) => {
                self.done = true;
                let closing = format!("],\"cursor\":\"{}\"}}", self.pages.cursor);
                Some(Ok(Bytes::from(closing)))
            }
            Err(err) => {
                self.done = true;
                tracing::warn!(error = %err, "revocation snapshot: the log became unreadable");
                Some(Err(actix_web::error::ErrorServiceUnavailable(
                    "the revocation log is unreadable",
                )))
            }
        }
    }

    /// `prefix`, then the events as array items. An entry that is not JSON (the ledger writes
    /// only JSON; this is someone else's write) is left out rather than breaking the body.
    fn items(&mut self, prefix: &[u8], events: &[FeedEvent]) -> Bytes {
        let mut chunk = Vec::with_capacity(prefix.len() + events.len() * 128);
        chunk.extend_from_slice(prefix);
        for event in events {
            if serde_json::from_str::<serde::de::IgnoredAny>(&event.json).is_err() {
                continue;
            }
            if self.wrote_any {
                chunk.push(b',');
            }
            self.wrote_any = true;
            chunk.extend_from_slice(event.json.as_bytes());
        }
        Bytes::from(chunk)
    }
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
    let until = tokio::time::Instant::now()
        + Duration::from_secs(claims.remaining_secs(shared::now_unix()));
    let subscription =
        Subscription::open(state.feed.clone(), after, state.feed_heartbeat, until).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/event-stream"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        // Gateways (nginx) must pass each event on at once.
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(stream::unfold(subscription, |mut s| async move {
            s.next()
                .await
                .map(|item| (Ok::<_, actix_web::Error>(sse(item)), s))
        })))
}

/// One item as Server-Sent Events lines.
fn sse(item: Item) -> Bytes {
    match item {
        Item::Event(event) => Bytes::from(format!("id: {}\ndata: {}\n\n", event.id, event.json)),
        Item::KeepAlive => Bytes::from_static(b": keep-alive\n\n"),
    }
}
