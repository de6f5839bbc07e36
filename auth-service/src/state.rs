//! The one state value every handler shares.

use std::sync::Arc;

use actix_web::web;
use shared::{AuthContext, Metrics};

use crate::audit::AuditLog;
use crate::clients::ServiceAccounts;
use crate::feed::FeedLog;
use crate::ledger::{Lifetimes, SessionLedger};
use crate::mfa::Sealer;
use crate::password_policy::PasswordPolicy;
use crate::pause::PausePoints;
use crate::second_factor::FactorStore;
use crate::sessions::records::SessionStore;
use crate::store::UserStore;
use crate::throttle::Throttle;
use crate::tokens::TokenIssuer;

pub struct AppState {
    pub users: UserStore,
    /// One record per session (login), for "your sessions" and administrators.
    pub sessions: SessionStore,
    /// Security events: stored, logged and counted; recording never fails a request.
    pub audit: AuditLog,
    /// The second factor's rows (TOTP columns, recovery codes, pending logins).
    pub factors: FactorStore,
    /// Service accounts (client credentials) and their secrets' hasher.
    pub clients: ServiceAccounts,
    pub tokens: TokenIssuer,
    /// Seals TOTP secrets and hashes recovery codes (the second factor's keys).
    pub mfa: Sealer,
    /// Every write that starts or ends a session goes through here.
    pub ledger: Arc<dyn SessionLedger>,
    /// The revocation feed's log (appended by the ledger, read by `/revocations`).
    pub feed: Arc<dyn FeedLog>,
    /// How often an idle `/revocations/stream` sends a comment line.
    pub feed_heartbeat: std::time::Duration,
    pub lifetimes: Lifetimes,
    pub auth: web::Data<AuthContext>,
    pub metrics: web::Data<Metrics>,
    pub jwks_max_age: u64,
    /// Attempt counters for login, registration and password change; knows the trusted proxies.
    pub throttle: Throttle,
    /// The strength rule of a new password (registration and password change).
    pub password_policy: PasswordPolicy,
    pub cookie_secure: bool,
    pub public_url: String,
    /// Test hooks; unarmed in production.
    pub pauses: Arc<PausePoints>,
}

impl AppState {
    pub fn leeway(&self) -> u64 {
        self.lifetimes.leeway
    }
}
