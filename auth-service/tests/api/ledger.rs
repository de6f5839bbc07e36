//! The Redis session ledger's Lua scripts against the Rust rules they must follow.

use auth_service::ledger::{Lifetimes, RedisLedger, SessionLedger};
use redis::AsyncCommands;
use shared::{RevocationEntry, UserCutoff};

use crate::helpers::redis_url;

/// Every sequence of three cut-offs from a set that mixes "everything" and "all but one token"
/// at real millisecond timestamps: the entry the script stores is the Rust merge of them all.
#[tokio::test]
async fn the_redis_cut_off_script_merges_like_the_rust_rule() {
    let prefix = format!("test:{}:", uuid::Uuid::new_v4().simple());
    let lifetimes = Lifetimes {
        access_ttl: 30,
        refresh_ttl: 60,
        leeway: 1,
        grace: std::time::Duration::ZERO,
    };
    let ledger = RedisLedger::connect(&redis_url(), &prefix, lifetimes)
        .await
        .unwrap();
    let client = redis::Client::open(redis_url()).unwrap();
    let mut redis = client.get_multiplexed_async_connection().await.unwrap();
    let base = chrono::Utc::now().timestamp_millis();
    let cuts: Vec<(i64, Option<&str>)> = vec![
        (base + 10, None),
        (base + 20, None),
        (base + 10, Some("j")),
        (base + 20, Some("j")),
        (base + 20, Some("k")),
        (base + 30, Some("k")),
    ];
    let mut user = 0;
    for a in &cuts {
        for b in &cuts {
            for c in &cuts {
                user += 1;
                let sub = format!("user{user}");
                let mut expected: Option<UserCutoff> = None;
                for (before, except) in [a, b, c] {
                    ledger.cut_off(&sub, *before, *except).await.unwrap();
                    let cut = UserCutoff::new(*before, except.map(str::to_owned));
                    expected = Some(match expected {
                        Some(old) => old.merge(&cut),
                        None => cut,
                    });
                }
                let stored: String = redis
                    .get(format!("{prefix}revoked:user:{sub}"))
                    .await
                    .unwrap();
                let entry: RevocationEntry = serde_json::from_str(&stored).unwrap();
                assert_eq!(
                    UserCutoff::of(&entry.target),
                    expected,
                    "{a:?} then {b:?} then {c:?}: {stored}"
                );
            }
        }
    }
}
