//! Memory and lookup time of the in-process revocation store (books-service's replica keeps its
//! entries in one) with 1 000 000 live token entries. Targets (docs/performance.md): at most
//! 64 MB for the entries and 200 ns a lookup.
//!
//!     cargo bench -p shared --bench revocations
//!
//! Memory is the growth of the process's resident set while the entries are inserted (Linux
//! `/proc/self/statm`); lookups are timed over 2 000 000 calls, half hits, half misses, through
//! the same `contains_match` a token check uses.

use std::time::Instant;

use shared::revocation::MemoryRevocations;
use shared::{Claims, Revocation, RevocationEntry, Role, TokenType};

const ENTRIES: usize = 1_000_000;
const LOOKUPS: usize = 2_000_000;

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn claims(jti: String, now: i64) -> Claims {
    Claims {
        iss: "https://auth.example.test".into(),
        aud: "authbooks-api".into(),
        sub: "42".into(),
        jti,
        iat: now,
        nbf: now,
        exp: now + 900,
        token_type: TokenType::Access,
        fresh: false,
        roles: vec![Role::User],
        username: "u".into(),
        sid: Some(uuid::Uuid::new_v4().to_string()),
        csrf: None,
        scope: None,
        client_id: None,
    }
}

fn main() {
    let now = shared::now_unix();
    let ids: Vec<String> = (0..ENTRIES)
        .map(|_| uuid::Uuid::now_v7().to_string())
        .collect();
    let store = MemoryRevocations::new();
    let before = resident_bytes();
    for id in &ids {
        store.apply(RevocationEntry {
            target: Revocation::Token { jti: id.clone() },
            expires_at: now + 931,
        });
    }
    let grown = resident_bytes().saturating_sub(before);
    assert_eq!(store.len(), ENTRIES);

    let probes: Vec<Claims> = (0..1000)
        .map(|i| {
            let jti = if i % 2 == 0 {
                ids[i * 997 % ENTRIES].clone()
            } else {
                uuid::Uuid::now_v7().to_string()
            };
            claims(jti, now)
        })
        .collect();
    let started = Instant::now();
    let mut hits = 0usize;
    for i in 0..LOOKUPS {
        if store.contains_match(&probes[i % probes.len()]) {
            hits += 1;
        }
    }
    let per_lookup = started.elapsed().as_nanos() as f64 / LOOKUPS as f64;
    assert_eq!(hits, LOOKUPS / 2);
    println!(
        "revocations: {ENTRIES} live token entries take {:.1} MB (target <= 64); \
         a lookup (token, session and user checks) takes {per_lookup:.0} ns (target <= 200)",
        grown as f64 / 1_048_576.0
    );
}
