//! The audit trail: every security event, stored (actor, subject, address, user agent,
//! outcome), logged as one JSON line and counted in `/metrics`.
//!
//! Recording never fails the request it records, nor waits for the database: the event is
//! logged and counted at once and its row queued for the group writer ([`WriteBehind`]). A
//! group that fails to be written is counted (`auth_audit_events_lost_total`, one per event)
//! and logged; each event's own log line still holds it. Queries flush this instance's queue
//! first, so the trail is complete as soon as the answer that recorded an event was sent.

mod store;

use std::sync::Arc;

use shared::Metrics;

use crate::origin::RequestOrigin;
use crate::write_behind::WriteBehind;

pub use self::store::{AuditQuery, AuditStore, StoredEvent};

macro_rules! event_kinds {
    ($($variant:ident = $name:literal),* $(,)?) => {
        /// What happened. The names are the contract's `type` values.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum EventKind {
            $($variant,)*
        }

        impl EventKind {
            pub const ALL: &'static [EventKind] = &[$(EventKind::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(EventKind::$variant => $name,)*
                }
            }

            pub fn parse(name: &str) -> Option<Self> {
                match name {
                    $($name => Some(EventKind::$variant),)*
                    _ => None,
                }
            }

            /// The `/metrics` counter of this kind.
            fn counter(self) -> &'static str {
                match self {
                    $(EventKind::$variant => concat!("auth_audit_events_total{type=\"", $name, "\"}"),)*
                }
            }
        }
    };
}

event_kinds! {
    Registered = "registered",
    Login = "login",
    LoginFailed = "login_failed",
    LoginThrottled = "login_throttled",
    LoginRefused = "login_refused",
    MfaFailed = "mfa_failed",
    RefreshReuse = "refresh_reuse",
    Logout = "logout",
    LogoutAll = "logout_all",
    SessionEnded = "session_ended",
    PasswordChanged = "password_changed",
    PasswordChangeFailed = "password_change_failed",
    RolesChanged = "roles_changed",
    UserDisabled = "user_disabled",
    UserEnabled = "user_enabled",
    MfaEnrolled = "mfa_enrolled",
    MfaRemoved = "mfa_removed",
    RecoveryCodeUsed = "recovery_code_used",
    ClientCreated = "client_created",
    ClientDeleted = "client_deleted",
    ClientSecretRotated = "client_secret_rotated",
}

/// How it ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
    /// Refused by a rule (throttled, disabled account), not by a wrong secret.
    Refused,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Refused => "refused",
        }
    }
}

/// One event to record. `actor` is who acted (a user or client id; none when unknown, as for
/// a failed login), `subject` whom it concerns.
#[derive(Clone, Debug)]
pub struct Event {
    pub kind: EventKind,
    pub actor: Option<String>,
    pub subject: Option<String>,
    pub origin: Option<RequestOrigin>,
    pub outcome: Outcome,
    pub detail: Option<String>,
}

impl Event {
    pub fn new(kind: EventKind, outcome: Outcome) -> Self {
        Event {
            kind,
            actor: None,
            subject: None,
            origin: None,
            outcome,
            detail: None,
        }
    }

    pub fn success(kind: EventKind) -> Self {
        Self::new(kind, Outcome::Success)
    }

    /// A user acting on their own account: actor and subject both.
    pub fn by_self(mut self, user_id: &str) -> Self {
        self.actor = Some(user_id.to_owned());
        self.subject = Some(user_id.to_owned());
        self
    }

    pub fn actor(mut self, id: &str) -> Self {
        self.actor = Some(id.to_owned());
        self
    }

    pub fn subject(mut self, id: &str) -> Self {
        self.subject = Some(id.to_owned());
        self
    }

    pub fn from(mut self, origin: &RequestOrigin) -> Self {
        self.origin = Some(origin.clone());
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

/// Events waiting to be written, at most; past that a request waits for the database.
const QUEUE: usize = 8192;
/// How long events gather before they are written. Without it a login flood wrote (and woke the
/// writer and a database thread for) nearly every event on its own; queries on this instance
/// flush first, so only another instance's reader can see an event this much later.
const LINGER: std::time::Duration = std::time::Duration::from_millis(100);

#[derive(Clone)]
pub struct AuditLog {
    store: AuditStore,
    metrics: Arc<Metrics>,
    writer: WriteBehind<StoredEvent>,
    /// Events older than this many days are pruned.
    pub retention_days: u32,
}

impl AuditLog {
    /// Starts the group writer: call from within the runtime.
    pub fn new(store: AuditStore, metrics: Arc<Metrics>, retention_days: u32) -> Self {
        let writer = {
            let (store, metrics) = (store.clone(), metrics.clone());
            WriteBehind::spawn_lingering(QUEUE, LINGER, move |rows: Vec<StoredEvent>| {
                let (store, metrics) = (store.clone(), metrics.clone());
                async move { write_group(&store, &metrics, rows).await }
            })
        };
        AuditLog {
            store,
            metrics,
            writer,
            retention_days,
        }
    }

    /// Every event recorded so far on this instance, stored (or counted lost).
    pub async fn flush(&self) {
        self.writer.flush().await;
    }

    /// The store, for queries: flushed first, so what this instance recorded is in it.
    pub async fn flushed_store(&self) -> &AuditStore {
        self.flush().await;
        &self.store
    }

    /// Logs, counts and queues `event`. Never fails.
    pub async fn record(&self, event: Event) {
        let origin = event.origin.clone().unwrap_or_default();
        tracing::info!(
            target: "audit",
            kind = event.kind.as_str(),
            actor = event.actor.as_deref(),
            subject = event.subject.as_deref(),
            ip = origin.ip.as_str(),
            user_agent = origin.user_agent.as_str(),
            outcome = event.outcome.as_str(),
            detail = event.detail.as_deref(),
            "audit event"
        );
        self.metrics.inc(event.kind.counter());
        if let Err(row) = self.writer.push(StoredEvent::of(event)).await {
            // Only while the runtime shuts down.
            lost(&self.metrics, &[row], "the audit writer has stopped");
        }
    }

    /// Deletes events past the retention period.
    pub async fn prune(&self, now_ms: i64) -> Result<usize, crate::error::AuthError> {
        let cutoff = now_ms - i64::from(self.retention_days) * 86_400_000;
        self.store.prune_before(cutoff).await
    }
}

async fn write_group(store: &AuditStore, metrics: &Metrics, rows: Vec<StoredEvent>) {
    let rows = Arc::new(rows);
    if let Err(err) = store.insert_all(rows.clone()).await {
        lost(metrics, &rows, &shared::error::ErrorChain(&err).to_string());
    }
}

fn lost(metrics: &Metrics, rows: &[StoredEvent], cause: &str) {
    for row in rows {
        metrics.inc("auth_audit_events_lost_total");
        tracing::error!(
            target: "audit",
            id = row.id.as_str(),
            kind = row.kind.as_str(),
            error = cause,
            "an audit event could not be stored (its log line holds it)"
        );
    }
}
