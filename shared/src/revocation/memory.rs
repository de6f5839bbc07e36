//! The in-process store for a single node: same semantics as Redis, gone when the process stops.

use std::collections::HashMap;
use std::sync::Mutex;

use futures_util::future::{self, BoxFuture, FutureExt};

use super::{Revocation, RevocationEntry, RevocationStore, StoreUnavailable};
use crate::claims::Claims;
use crate::now_unix;

/// Expired entries are swept every this many writes, so memory follows the live set.
const SWEEP_EVERY: u64 = 1024;

struct UserCutoff {
    before_ms: i64,
    except_jti: Option<String>,
    expires_at: i64,
}

#[derive(Default)]
struct Entries {
    tokens: HashMap<String, i64>,
    families: HashMap<String, i64>,
    /// The latest cut-off per user; a later one replaces it (cut-offs only move forward).
    users: HashMap<String, UserCutoff>,
    spent: HashMap<String, i64>,
    rotations: HashMap<String, (String, std::time::Instant)>,
    writes: u64,
}

impl Entries {
    fn sweep(&mut self, now: i64) {
        self.tokens.retain(|_, exp| *exp > now);
        self.families.retain(|_, exp| *exp > now);
        self.users.retain(|_, cut| cut.expires_at > now);
        self.spent.retain(|_, exp| *exp > now);
        let instant = std::time::Instant::now();
        self.rotations.retain(|_, (_, until)| *until > instant);
    }

    fn note_write(&mut self, now: i64) {
        self.writes += 1;
        if self.writes.is_multiple_of(SWEEP_EVERY) {
            self.sweep(now);
        }
    }

    fn insert(&mut self, entry: RevocationEntry, now: i64) {
        let expires_at = entry.expires_at;
        match entry.target {
            Revocation::Token { jti } => {
                self.tokens.insert(jti, expires_at);
            }
            Revocation::Family { fam } => {
                self.families.insert(fam, expires_at);
            }
            Revocation::UserBefore {
                sub,
                before_ms,
                except_jti,
            } => {
                let newer = self
                    .users
                    .get(&sub)
                    .is_none_or(|cut| cut.before_ms <= before_ms);
                if newer {
                    let expires_at = self
                        .users
                        .get(&sub)
                        .map_or(expires_at, |cut| cut.expires_at.max(expires_at));
                    self.users.insert(
                        sub,
                        UserCutoff {
                            before_ms,
                            except_jti,
                            expires_at,
                        },
                    );
                }
            }
        }
        self.note_write(now);
    }

    fn matches(&self, claims: &Claims, now: i64) -> bool {
        let live = |exp: Option<&i64>| exp.is_some_and(|exp| *exp > now);
        live(self.tokens.get(&claims.jti))
            || claims
                .fam
                .as_ref()
                .is_some_and(|fam| live(self.families.get(fam)))
            || self.users.get(&claims.sub).is_some_and(|cut| {
                cut.expires_at > now
                    && claims.issued_at_ms() <= cut.before_ms
                    && cut.except_jti.as_deref() != Some(claims.jti.as_str())
            })
    }
}

/// In-process revocations with the same TTL semantics as [`super::RedisRevocations`].
/// Single-node only: other processes never see these entries.
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

    /// Applies an entry received from elsewhere (the replica uses this).
    pub fn apply(&self, entry: RevocationEntry) {
        let now = now_unix();
        if entry.expires_at > now {
            self.lock().insert(entry, now);
        }
    }

    /// Drops everything (the replica uses this before a full reload).
    pub fn clear(&self) {
        *self.lock() = Entries::default();
    }

    /// Number of live revocation entries (spent markers excluded).
    pub fn len(&self) -> usize {
        let mut entries = self.lock();
        entries.sweep(now_unix());
        entries.tokens.len() + entries.families.len() + entries.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn contains_match(&self, claims: &Claims) -> bool {
        self.lock().matches(claims, now_unix())
    }
}

impl RevocationStore for MemoryRevocations {
    fn revoke(&self, entry: RevocationEntry) -> BoxFuture<'_, Result<(), StoreUnavailable>> {
        self.apply(entry);
        future::ready(Ok(())).boxed()
    }

    fn is_revoked<'a>(
        &'a self,
        claims: &'a Claims,
    ) -> BoxFuture<'a, Result<bool, StoreUnavailable>> {
        future::ready(Ok(self.contains_match(claims))).boxed()
    }

    fn spend_once<'a>(
        &'a self,
        jti: &'a str,
        expires_at: i64,
    ) -> BoxFuture<'a, Result<bool, StoreUnavailable>> {
        let now = now_unix();
        let mut entries = self.lock();
        let first = match entries.spent.get(jti) {
            Some(exp) if *exp > now => false,
            _ => {
                entries.spent.insert(jti.to_owned(), expires_at);
                entries.note_write(now);
                true
            }
        };
        future::ready(Ok(first)).boxed()
    }

    fn record_rotation<'a>(
        &'a self,
        jti: &'a str,
        answer: String,
        grace: std::time::Duration,
    ) -> BoxFuture<'a, Result<(), StoreUnavailable>> {
        let mut entries = self.lock();
        entries
            .rotations
            .insert(jti.to_owned(), (answer, std::time::Instant::now() + grace));
        entries.note_write(now_unix());
        future::ready(Ok(())).boxed()
    }

    fn rotation<'a>(
        &'a self,
        jti: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, StoreUnavailable>> {
        let answer = self
            .lock()
            .rotations
            .get(jti)
            .filter(|(_, until)| *until > std::time::Instant::now())
            .map(|(answer, _)| answer.clone());
        future::ready(Ok(answer)).boxed()
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

    fn claims(jti: &str, sub: &str, iat: i64, fam: Option<&str>) -> Claims {
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
            fam: fam.map(Into::into),
            csrf: None,
        }
    }

    #[tokio::test]
    async fn each_kind_of_entry_matches_only_its_tokens() {
        let store = MemoryRevocations::new();
        let now = now_unix();
        let later = now + 60;
        store
            .revoke(RevocationEntry {
                target: Revocation::Token { jti: "a".into() },
                expires_at: later,
            })
            .await
            .unwrap();
        store
            .revoke(RevocationEntry {
                target: Revocation::Family { fam: "f".into() },
                expires_at: later,
            })
            .await
            .unwrap();
        store
            .revoke(RevocationEntry {
                target: Revocation::UserBefore {
                    sub: "7".into(),
                    before_ms: now * 1000 + 999,
                    except_jti: None,
                },
                expires_at: later,
            })
            .await
            .unwrap();

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
        store
            .revoke(RevocationEntry {
                target: Revocation::Token { jti: "a".into() },
                expires_at: now_unix() - 1,
            })
            .await
            .unwrap();
        assert!(store.is_empty());
        assert!(!store
            .is_revoked(&claims("a", "1", now_unix(), None))
            .await
            .unwrap());
    }

    #[tokio::test]
    async fn a_jti_is_spent_once() {
        let store = MemoryRevocations::new();
        let exp = now_unix() + 60;
        assert!(store.spend_once("r", exp).await.unwrap());
        assert!(!store.spend_once("r", exp).await.unwrap());
        assert!(store.spend_once("other", exp).await.unwrap());
    }
}
