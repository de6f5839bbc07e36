//! The session ledger: every write that starts or ends a session, each one atomic on its own.
//!
//! Why one place: the promises "logout-all, a password change or a role change ends every
//! session" only hold if no token can be minted from a state that such a change already ended.
//! Two rules make that true whatever the interleaving, on one instance or many:
//!
//! - **Every issue is recorded.** Each user has a high-water mark of the issue times of the
//!   tokens minted for them, written in the same atomic step as the issue is allowed (a refresh
//!   rotation, or a login that checked its generation). A cut-off is raised to at least that mark
//!   in its own atomic step, so a pair minted before the cut-off lands is covered by it, even when
//!   the instance that minted it has a clock a little ahead.
//! - **A rotation checks what it spends.** Spending a refresh token, checking it against every
//!   revocation (token, session, user cut-off), and recording the grace answer happen in one step
//!   (one Lua script on Redis, one lock in memory): a refresh that raced a logout-all either sees
//!   the cut-off or is covered by it.
//! - **One record per session, not per spent token.** A session's refresh tokens form a chain
//!   (login, then each rotation); the ledger keeps only the chain's newest `jti`, overwritten by
//!   each rotation and kept until that newest token has expired. A presented token is current
//!   when it is that `jti` — or when the session has no record yet, which only its login's token
//!   can meet, since the first rotation writes the record and it outlives every token of the
//!   session. Any other token of the session is spent. So the ledger's memory grows with live
//!   sessions, not with refreshes (docs/capacity.md).
//! - **A login re-reads after its generation.** Each cut-off bumps the user's generation; a login
//!   reads the generation, then the user's roles, and records its issue only if the generation is
//!   unchanged — otherwise it reads again, so no pair carries roles from before a demotion.

mod memory;
mod redis;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use shared::revocation::{Published, StoreUnavailable};
use shared::{entry_expiry, Claims, Revocation, RevocationEntry};

use crate::tokens::{IssuedPair, TokenPair};

pub use self::memory::MemoryLedger;
pub use self::redis::RedisLedger;

/// What a refresh-token rotation found.
#[derive(Debug)]
pub enum Rotation {
    /// First use: the token is spent now and the new pair may be handed out.
    Fresh,
    /// The same token again, from the client that rotated it, within the grace period: the
    /// answer it got the first time (a retry after a lost response).
    Replay(TokenPair),
    /// Spent before, outside the grace period or from another client: its session is now revoked.
    Reused,
    /// Revoked (token, session or user cut-off) when the rotation ran.
    Revoked,
}

/// A rotation to attempt: the presented refresh token and the pair that replaces it.
pub struct RotationRequest<'a> {
    pub presented: &'a Claims,
    /// Who is asking (see [`client_fingerprint`]); a grace replay is only for the same client.
    pub client: &'a str,
    /// The pair that replaces it: its refresh token becomes the session's current one, its
    /// issue time goes into the user's high-water mark, and its body is remembered for a replay
    /// during the grace period.
    pub replacement: &'a IssuedPair,
}

/// Which chain of refresh tokens a token belongs to: its session, or for a token minted
/// without one (none are today; kept for tokens of older releases) a chain of its own.
pub fn chain_of(token: &Claims) -> String {
    match &token.sid {
        Some(sid) => format!("session:{sid}"),
        None => format!("token:{}", token.jti),
    }
}

/// How many Redis replicas must confirm a write that ends sessions or tokens before it is
/// acknowledged (`REDIS_WAIT_REPLICAS`), and how long to wait for them
/// (`REDIS_WAIT_TIMEOUT_MS`). `replicas` 0: no waiting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicaWait {
    pub replicas: u32,
    pub timeout_ms: u64,
}

impl ReplicaWait {
    pub const NONE: ReplicaWait = ReplicaWait {
        replicas: 0,
        timeout_ms: 1000,
    };
}

/// How long things live, from the service's settings; the one place expiry rules are applied.
#[derive(Clone, Copy, Debug)]
pub struct Lifetimes {
    pub access_ttl: u64,
    pub refresh_ttl: u64,
    pub leeway: u64,
    /// How long a rotated refresh token may be replayed for the same answer (0: never).
    pub grace: std::time::Duration,
}

impl Lifetimes {
    /// An entry for one token lives until that token is refused anyway.
    pub fn token_entry(&self, claims: &Claims) -> RevocationEntry {
        RevocationEntry {
            target: Revocation::Token {
                jti: claims.jti.clone(),
            },
            expires_at: entry_expiry(claims.exp, self.leeway),
        }
    }

    /// An entry for a whole session lives until the newest token it could match has expired:
    /// one refresh lifetime from now (no token of a revoked session is ever minted again).
    pub fn session_entry(&self, sid: &str, now: i64) -> RevocationEntry {
        RevocationEntry {
            target: Revocation::Session {
                sid: sid.to_owned(),
            },
            expires_at: self.session_expiry(now),
        }
    }

    /// A user cut-off at `before_ms` matches tokens issued up to then: it lives a refresh
    /// lifetime past that second. (`cutoff_expiry(0)` is that span alone, for the Redis script.)
    pub fn cutoff_expiry(&self, before_ms: i64) -> i64 {
        self.session_expiry(before_ms.div_euclid(1000) + 1)
    }

    fn session_expiry(&self, now: i64) -> i64 {
        entry_expiry(now + self.refresh_ttl as i64, self.leeway)
    }

    /// What the revocation feed publishes for an entry: verifiers only see access tokens, so
    /// an entry lives there as long as an access token it matches could. (A token entry is
    /// published with its own expiry; a refresh token's is harmless to a verifier and usually
    /// too long-lived to pass the horizon check.)
    pub fn published(&self, entry: &RevocationEntry, now: i64) -> Option<Published> {
        let horizon =
            |issued_until: i64| entry_expiry(issued_until + self.access_ttl as i64, self.leeway);
        match &entry.target {
            Revocation::Token { jti } => {
                (entry.expires_at <= horizon(now)).then(|| Published::Token {
                    jti: jti.clone(),
                    expires_at: entry.expires_at,
                })
            }
            Revocation::Session { sid } => Some(Published::Session {
                sid: sid.clone(),
                expires_at: horizon(now),
            }),
            Revocation::UserBefore {
                sub,
                before_ms,
                except_jti,
                ..
            } => Some(Published::User {
                sub: sub.clone(),
                before: *before_ms as f64 / 1000.0,
                except_jti: except_jti.clone(),
                expires_at: horizon(before_ms.div_euclid(1000) + 1),
            }),
        }
    }

    /// Seconds a published cut-off lives past the second after its `before` (for the script).
    pub fn published_cutoff_span(&self) -> i64 {
        entry_expiry(self.access_ttl as i64, self.leeway) + 1
    }

    /// How long a user's bookkeeping (generation, latest issue) must be kept after a write.
    pub fn ledger_ttl_secs(&self) -> u64 {
        self.refresh_ttl + self.leeway + 1
    }
}

/// The write side of revocations and sessions; only auth-service holds one.
pub trait SessionLedger: Send + Sync + 'static {
    /// Records entries all at once (one `MULTI` on Redis): all of them or none.
    fn revoke(&self, entries: Vec<RevocationEntry>) -> BoxFuture<'_, Result<(), StoreUnavailable>>;

    /// Ends every token of `sub` issued until `before_ms` — raised to the latest recorded issue —
    /// except `except_jti`; merged with the user's earlier cut-offs so it never widens them.
    fn cut_off<'a>(
        &'a self,
        sub: &'a str,
        before_ms: i64,
        except_jti: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), StoreUnavailable>>;

    /// The user's cut-off generation, to be passed back to [`SessionLedger::record_issue`].
    fn generation<'a>(&'a self, sub: &'a str) -> BoxFuture<'a, Result<u64, StoreUnavailable>>;

    /// Records a pair issued at `issued_ms` if no cut-off happened since `generation` was read
    /// and the pair is younger than the latest cut-off; `false` means the caller must read the
    /// user again and re-issue.
    fn record_issue<'a>(
        &'a self,
        sub: &'a str,
        generation: u64,
        issued_ms: i64,
    ) -> BoxFuture<'a, Result<bool, StoreUnavailable>>;

    /// Whether refresh token `token` was already rotated (so presenting it again is reuse):
    /// its session's chain has moved past it.
    fn is_spent<'a>(&'a self, token: &'a Claims) -> BoxFuture<'a, Result<bool, StoreUnavailable>>;

    /// Spends a refresh token and decides what the caller gets, in one atomic step.
    fn rotate<'a>(
        &'a self,
        request: RotationRequest<'a>,
    ) -> BoxFuture<'a, Result<Rotation, StoreUnavailable>>;
}

/// A short, stable digest of who is refreshing (client address and user agent), so a grace
/// replay goes only to the client that rotated. Not a secret; hashed so no raw header is stored.
pub fn client_fingerprint(address: &str, user_agent: &str) -> String {
    let digest = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        format!("{address}\n{user_agent}").as_bytes(),
    );
    digest.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A remembered answer: the client it is for and the pair.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Remembered {
    client: String,
    pair: TokenPair,
}

impl Remembered {
    fn encode(client: &str, pair: &TokenPair) -> Result<String, StoreUnavailable> {
        serde_json::to_string(&Remembered {
            client: client.to_owned(),
            pair: pair.clone(),
        })
        .map_err(|e| StoreUnavailable::Other(format!("unserialisable pair: {e}")))
    }

    fn decode(stored: &str) -> Result<Self, StoreUnavailable> {
        serde_json::from_str(stored)
            .map_err(|e| StoreUnavailable::Other(format!("unreadable rotation record: {e}")))
    }
}
