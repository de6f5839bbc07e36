//! Periodic clean-up, run by every instance (each delete is idempotent): ended and expired
//! sessions, second-factor logins never finished, audit events past their retention.

use std::time::Duration;

use crate::state::AppState;

/// One pass; returns how many rows went, for tests and the log.
pub async fn prune(state: &AppState) -> Result<Pruned, crate::error::AuthError> {
    let now = chrono::Utc::now().timestamp_millis();
    Ok(Pruned {
        sessions: state.sessions.prune(now).await?,
        challenges: crate::second_factor::prune(state, now).await?,
        audit_events: state.audit.prune(now).await?,
    })
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    pub sessions: usize,
    pub challenges: usize,
    pub audit_events: usize,
}

/// Prunes every `every` (first pass at start), logging failures and carrying on.
pub fn spawn(state: actix_web::web::Data<AppState>, every: Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            match prune(&state).await {
                Ok(pruned) if pruned != Pruned::default() => {
                    tracing::info!(?pruned, "pruned ended sessions and old records")
                }
                Ok(_) => {}
                Err(err) => {
                    tracing::warn!(error = %shared::error::ErrorChain(&err), "pruning failed")
                }
            }
        }
    });
}
