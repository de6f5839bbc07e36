//! The in-process store for a single node: same semantics as Redis, gone when the process stops.

use std::collections::HashMap;
use std::sync::Mutex;

use futures_util::future::{self, BoxFuture, FutureExt};

use super::{Revocation, RevocationCheck, RevocationEntry, StoreUnavailable, UserCutoff};
use crate::claims::Claims;
use crate::now_unix;

/// Expired entries are swept every this many writes, so memory follows the live set.
const SWEEP_EVERY: u64 = 1024;

struct StoredCutoff {
    cutoff: UserCutoff,
    expires_at: i64,
}

#[derive(Default)]
struct Entries {
    tokens: HashMap<String, i64>,
    sessions: HashMap<String, i64>,
    /// Each user's cut-offs, combined by [`UserCutoff::merge`].
    users: HashMap<String, StoredCutoff>,
    writes: u64,
}

impl Entries {
    fn sweep(&mut self, now: i64) {
        self.tokens.retain(|_, exp| *exp > now);
        self.sessions.retain(|_, exp| *exp > now);
        self.users.retain(|_, cut| cut.expires_at > now);
    }

    fn insert(&mut self, entry: RevocationEntry, now: i64) {
        let expires_at = entry.expires_at;
        let longer = |old: Option<&i64>| old.map_or(expires_at, |old| expires_at.max(*old));
        match &entry.target {
            Revocation::Token { jti } => {
                let exp = longer(self.tokens.get(jti));
                self.tokens.insert(jti.clone(), exp);
            }
            Revocation::Session { sid } => {
                let exp = longer(self.sessions.get(sid));
                self.sessions.insert(sid.clone(), exp);
            }
            Revocation::UserBefore { sub, .. } => {
                let Some(cutoff) = UserCutoff::of(&entry.target) else {
                    return;
                };
                let stored = match self.users.remove(sub) {
                    Some(old) if old.expires_at > now => StoredCutoff {
                        cutoff: old.cutoff.merge(&cutoff),
                        expires_at: old.expires_at.max(expires_at),
                    },
                    _ => StoredCutoff { cutoff, expires_at },
                };
                self.users.insert(sub.clone(), stored);
            }
        }
        self.writes += 1;
        if self.writes.is_multiple_of(SWEEP_EVERY) {
            self.sweep(now);
        }
    }

    fn matches(&self, claims: &Claims, now: i64) -> bool {
        let live = |exp: Option<&i64>| exp.is_some_and(|exp| *exp > now);
        live(self.tokens.get(&claims.jti))
            || claims
                .sid
                .as_ref()
                .is_some_and(|sid| live(self.sessions.get(sid)))
            || self.users.get(&claims.sub).is_some_and(|cut| {
                cut.expires_at > now && cut.cutoff.kills(claims.issued_at_ms(), &claims.jti)
            })
    }
}

/// In-process revocations with the same TTL and merge semantics as Redis. Single-node only:
/// other processes never see these entries.
#[derive(Default)]
pub struct MemoryRevocations {
    entries: Mutex<Entries>,
}

impl MemoryRevocations {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records an entry (auth-service's in-process ledger and the replica use this). Cut-offs
    /// merge with the user's earlier ones; entries already past `expires_at` are ignored.
    pub fn apply(&self, entry: RevocationEntry) {
        let now = now_unix();
        if entry.is_live(now) {
            self.lock().insert(entry, now);
        }
    }

    /// Drops everything (the replica uses this before a full reload).
    pub fn clear(&self) {
        *self.lock() = Entries::default();
    }

    /// Number of live revocation entries.
    pub fn len(&self) -> usize {
        let mut entries = self.lock();
        entries.sweep(now_unix());
        entries.tokens.len() + entries.sessions.len() + entries.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn contains_match(&self, claims: &Claims) -> bool {
        self.lock().matches(claims, now_unix())
    }
}

impl RevocationCheck for MemoryRevocations {
    fn is_revoked<'a>(
        &'a self,
        claims: &'a Claims,
    ) -> BoxFuture<'a, Result<bool, StoreUnavailable>> {
        future::ready(Ok(self.contains_match(claims))).boxed()
    }

    fn ready(&self) -> BoxFuture<'_, Result<(), StoreUnavailable>> {
        future::ready(Ok(())).boxed()
    }

    fn kind(&self) -> &'static str {
        "memory"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims::{Role, TokenType};

    fn claims(jti: &str, sub: &str, iat: i64, sid: Option<&str>) -> Claims {
        Claims {
            iss: "i".into(),
            aud: "a".into(),
            sub: sub.into(),
            jti: jti.into(),
            iat,
            nbf: iat,
            exp: iat + 60,
            token_type: TokenType::Access,
            fresh: true,
            roles: vec![Role::User],
            username: "u".into(),
            sid: sid.map(Into::into),
            csrf: None,
            scope: None,
            client_id: None,
        }
    }

    #[tokio::test]
    async fn each_kind_of_entry_matches_only_its_tokens() {
        let store = MemoryRevocations::new();
        let now = now_unix();
        let later = now + 60;
        store.apply(RevocationEntry {
            target: Revocation::Token { jti: "a".into() },
            expires_at: later,
        });
        store.apply(RevocationEntry {
            target: Revocation::Session { sid: "f".into() },
            expires_at: later,
        });
        store.apply(RevocationEntry {
            target: Revocation::UserBefore {
                sub: "7".into(),
                before_ms: now * 1000 + 999,
                except_jti: None,
                strict_before_ms: 0,
            },
            expires_at: later,
        });

        assert!(store
            .is_revoked(&claims("a", "1", now, None))
            .await
            .unwrap());
        assert!(!store
            .is_revoked(&claims("b", "1", now, None))
            .await
            .unwrap());
        assert!(store
            .is_revoked(&claims("c", "1", now, Some("f")))
            .await
            .unwrap());
        assert!(store
            .is_revoked(&claims("d", "7", now, None))
            .await
            .unwrap());
        assert!(!store
            .is_revoked(&claims("e", "7", now + 1, None))
            .await
            .unwrap());
    }

    #[tokio::test]
    async fn expired_entries_match_nothing() {
        let store = MemoryRevocations::new();
        store.apply(RevocationEntry {
            target: Revocation::Token { jti: "a".into() },
            expires_at: now_unix() - 1,
        });
        assert!(store.is_empty());
        assert!(!store
            .is_revoked(&claims("a", "1", now_unix(), None))
            .await
            .unwrap());
    }
}
