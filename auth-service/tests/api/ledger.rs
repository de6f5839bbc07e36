//! The Redis session ledger's Lua scripts against the Rust rules they must follow.

use auth_service::ledger::{Lifetimes, RedisLedger, SessionLedger};
use redis::AsyncCommands;
use shared::{RevocationEntry, UserCutoff};

use crate::helpers::redis_url;

fn lifetimes(access_ttl: u64, refresh_ttl: u64, leeway: u64) -> Lifetimes {
    Lifetimes {
        access_ttl,
        refresh_ttl,
        leeway,
        grace: std::time::Duration::ZERO,
    }
}

/// A ledger under a fresh key prefix, and a plain connection to read what it stored.
async fn ledger(lifetimes: Lifetimes) -> (String, RedisLedger, redis::aio::MultiplexedConnection) {
    let prefix = format!("test:{}:", uuid::Uuid::new_v4().simple());
    let ledger = RedisLedger::connect(
        &redis_url().parse().unwrap(),
        &prefix,
        lifetimes,
        auth_service::ledger::ReplicaWait::NONE,
    )
    .await
    .unwrap();
    let client = redis::Client::open(redis_url()).unwrap();
    let redis = client.get_multiplexed_async_connection().await.unwrap();
    (prefix, ledger, redis)
}

/// Every sequence of three cut-offs from a set that mixes "everything" and "all but one token"
/// at real millisecond timestamps: the entry the script stores is the Rust merge of them all.
#[tokio::test]
async fn the_redis_cut_off_script_merges_like_the_rust_rule() {
    let lifetimes = lifetimes(30, 60, 1);
    let (prefix, ledger, mut redis) = ledger(lifetimes).await;
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

/// What verifiers' replicas read: every stored entry says until when an *access* token it
/// matches can live (`verifier_expires_at`), so they keep it an access lifetime, not a refresh
/// lifetime; a refresh token's own entry says 0 (verifiers never see refresh tokens).
#[tokio::test]
async fn stored_entries_tell_verifiers_their_access_token_horizon() {
    let lifetimes = lifetimes(900, 2_592_000, 30);
    let (prefix, ledger, mut redis) = ledger(lifetimes).await;
    let now = shared::now_unix();
    let access_jti = uuid::Uuid::now_v7().to_string();
    let refresh_jti = uuid::Uuid::now_v7().to_string();
    let token = |jti: &str, exp: i64| RevocationEntry {
        target: shared::Revocation::Token { jti: jti.into() },
        expires_at: shared::entry_expiry(exp, 30),
    };

    ledger
        .revoke(vec![
            token(&access_jti, now + 900),
            token(&refresh_jti, now + 2_592_000),
            lifetimes.session_entry("s1", now),
        ])
        .await
        .unwrap();
    ledger.cut_off("u1", now * 1000, None).await.unwrap();

    let stored = |key: String| {
        let mut redis = redis.clone();
        async move {
            let json: String = redis.get(key).await.unwrap();
            serde_json::from_str::<serde_json::Value>(&json).unwrap()
        }
    };
    let horizon = now + 900 + 30 + 1;
    let access = stored(format!("{prefix}revoked:token:{access_jti}")).await;
    assert_eq!(access["verifier_expires_at"], now + 931);
    let refresh = stored(format!("{prefix}revoked:token:{refresh_jti}")).await;
    assert_eq!(refresh["verifier_expires_at"], 0);
    assert_eq!(refresh["expires_at"], now + 2_592_031);
    let session = stored(format!("{prefix}revoked:session:s1")).await;
    assert_eq!(session["verifier_expires_at"], horizon);
    assert!(session["expires_at"].as_i64().unwrap() > now + 2_592_000);
    let user = stored(format!("{prefix}revoked:user:u1")).await;
    let verifier = user["verifier_expires_at"].as_i64().unwrap();
    assert!((horizon..=horizon + 2).contains(&verifier), "{user}");
    let _: () = redis.del(format!("{prefix}revoked:user:u1")).await.unwrap();
}
