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

/// Ids (`jti`, `sid`) and when their entries expire, compact for the common case: every id our
/// issuer makes is a UUID, kept as its 16 bytes with a 32-bit expiry (about 21 bytes a slot,
/// against 60+ for a `String` key), so a million live entries stay well under 64 MB. Any other
/// id is kept as text.
#[derive(Default)]
struct IdMap {
    uuids: HashMap<[u8; 16], u32>,
    texts: HashMap<Box<str>, i64>,
}

/// An id as [`IdMap`] keys it.
enum Key<'a> {
    Uuid([u8; 16]),
    Text(&'a str),
}

fn key(id: &str) -> Key<'_> {
    // Only the canonical form (36 characters, lower-case hex) maps to bytes, so two spellings of
    // one UUID never share an entry, as they would not in Redis.
    let canonical = id.len() == 36 && !id.bytes().any(|b| b.is_ascii_uppercase());
    match uuid::Uuid::try_parse(id) {
        Ok(uuid) if canonical => Key::Uuid(*uuid.as_bytes()),
        _ => Key::Text(id),
    }
}

impl IdMap {
    fn get(&self, id: &str) -> Option<i64> {
        match key(id) {
            Key::Uuid(bytes) => self.uuids.get(&bytes).map(|exp| i64::from(*exp)),
            Key::Text(text) => self.texts.get(text).copied(),
        }
    }

    /// Keeps the later expiry when the id is already there.
    fn insert_longer(&mut self, id: &str, expires_at: i64) {
        let expires_at = expires_at.max(self.get(id).unwrap_or(i64::MIN));
        match key(id) {
            // Unix seconds fit 32 bits until 2106; clamping can only make an entry live longer.
            Key::Uuid(bytes) => {
                let clamped = u32::try_from(expires_at.max(0)).unwrap_or(u32::MAX);
                self.uuids.insert(bytes, clamped);
            }
            Key::Text(text) => {
                self.texts.insert(text.into(), expires_at);
            }
        }
    }

    fn retain_live(&mut self, now: i64) {
        self.uuids.retain(|_, exp| i64::from(*exp) > now);
        self.texts.retain(|_, exp| *exp > now);
    }

    fn len(&self) -> usize {
        self.uuids.len() + self.texts.len()
    }
}

#[derive(Default)]
struct Entries {
    tokens: IdMap,
    sessions: IdMap,
    /// Each user's cut-offs, combined by [`UserCutoff::merge`].
    users: HashMap<String, StoredCutoff>,
    writes: u64,
}

impl Entries {
    fn sweep(&mut self, now: i64) {
        self.tokens.retain_live(now);
        self.sessions.retain_live(now);
        self.users.retain(|_, cut| cut.expires_at > now);
    }

    fn insert(&mut self, entry: RevocationEntry, now: i64) {
        let expires_at = entry.expires_at;
        match &entry.target {
            Revocation::Token { jti } => self.tokens.insert_longer(jti, expires_at),
            Revocation::Session { sid } => self.sessions.insert_longer(sid, expires_at),
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
        let live = |exp: Option<i64>| exp.is_some_and(|exp| exp > now);
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

    /// Every live entry, cut-offs merged per user (the replica compares them with what Redis
    /// holds after a reload).
    pub fn entries(&self) -> Vec<RevocationEntry> {
        let now = now_unix();
        let entries = self.lock();
        let mut all =
            Vec::with_capacity(entries.tokens.len() + entries.sessions.len() + entries.users.len());
        let ids =
            |map: &IdMap, kind: fn(String) -> Revocation, all: &mut Vec<RevocationEntry>| {
                let uuids = map.uuids.iter().map(|(bytes, exp)| {
                    (uuid::Uuid::from_bytes(*bytes).to_string(), i64::from(*exp))
                });
                let texts = map.texts.iter().map(|(id, exp)| (id.to_string(), *exp));
                all.extend(uuids.chain(texts).filter(|(_, exp)| *exp > now).map(
                    |(id, expires_at)| RevocationEntry {
                        target: kind(id),
                        expires_at,
                    },
                ));
            };
        ids(&entries.tokens, |jti| Revocation::Token { jti }, &mut all);
        ids(
            &entries.sessions,
            |sid| Revocation::Session { sid },
            &mut all,
        );
        all.extend(
            entries
                .users
                .iter()
                .filter(|(_, cut)| cut.expires_at > now)
                .map(|(sub, cut)| RevocationEntry {
                    target: cut.cutoff.clone().into_revocation(sub.clone()),
                    expires_at: cut.expires_at,
                }),
        );
        all
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
    async fn uuid_and_other_ids_are_kept_apart_and_the_longer_expiry_wins() {
        let store = MemoryRevocations::new();
        let now = now_unix();
        let id = uuid::Uuid::now_v7().to_string();
        for (jti, expires_at) in [
            (id.as_str(), now + 5),
            (id.as_str(), now + 60),
            ("x", now + 60),
        ] {
            store.apply(RevocationEntry {
                target: Revocation::Token { jti: jti.into() },
                expires_at,
            });
        }
        assert_eq!(store.len(), 2);
        assert_eq!(store.lock().tokens.get(&id), Some(now + 60));
        assert!(store.contains_match(&claims(&id, "1", now, None)));
        assert!(store.contains_match(&claims("x", "1", now, None)));
        // Another spelling of the same UUID is another id, as it would be in Redis.
        let upper = id.to_uppercase();
        assert!(!store.contains_match(&claims(&upper, "1", now, None)));
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
