//! `REDIS_WAIT_REPLICAS`: a revocation is acknowledged only once that many Redis replicas hold
//! it (`WAIT`), so a failover, which promotes a replica, cannot undo a logout that answered
//! `204`. When no replica confirms in time the revocation is still in effect (it is on the
//! master) and the `503` says so. (The failover itself: `deploy/local/tests/failover.rs`.)

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use shared::testing::PrivateRedis;

use crate::helpers::{assert_error, spawn_app_with, tokens, Backend, PASSWORD};

/// A replica of `master`, as a child process, killed on drop; its files (a replica stores the
/// master's snapshot while it synchronises) in a temporary directory.
struct Replica {
    child: std::process::Child,
    /// Kept until the replica is killed; removed on drop.
    _dir: tempfile::TempDir,
}

impl Replica {
    async fn start(master: &PrivateRedis) -> Self {
        let port = shared::testing::free_port();
        let dir = tempfile::tempdir().unwrap();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .args(["--replicaof", "127.0.0.1", &master.port.to_string()])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server");
        let replica = Replica { child, _dir: dir };
        // Ready once it acknowledges a write: "online" in the master's INFO came a moment
        // before the first acknowledgement in a loaded CI run, and a logout's `WAIT` then
        // timed out.
        let client = redis::Client::open(master.url()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let acked: i64 = match client.get_multiplexed_async_connection().await {
                Ok(mut connection) => redis::pipe()
                    .cmd("SET")
                    .arg("replica-probe")
                    .arg("1")
                    .ignore()
                    .cmd("WAIT")
                    .arg(1)
                    .arg(500)
                    .query_async::<(i64,)>(&mut connection)
                    .await
                    .map_or(0, |(acked,)| acked),
                Err(_) => 0,
            };
            if acked >= 1 {
                return replica;
            }
            assert!(Instant::now() < deadline, "the replica did not sync");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_no_replica_confirms_is_503_saying_it_is_in_effect_and_204_once_one_does() {
    let redis = PrivateRedis::start();
    let url = redis.url();
    let app = spawn_app_with(
        Backend::Postgres,
        &[
            ("REDIS_URL", url.as_str()),
            ("REDIS_WAIT_REPLICAS", "1"),
            // Long enough for a replica on a loaded machine to answer.
            ("REDIS_WAIT_TIMEOUT_MS", "1000"),
        ],
    )
    .await;
    let first = app.signed_up("wanda").await;

    // No replica: the logout waits 1 s for one, then says what happened.
    let started = Instant::now();
    let body = assert_error(
        app.logout(&first).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
    )
    .await;
    assert!(started.elapsed() >= Duration::from_millis(1000));
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("written and is in effect") && message.contains("failover"),
        "{message}"
    );
    // It is in effect: the access token and the session are revoked.
    assert_error(
        app.me(&first.access).await,
        StatusCode::UNAUTHORIZED,
        "token_revoked",
    )
    .await;
    assert_error(
        app.refresh(&first.refresh).await,
        StatusCode::UNAUTHORIZED,
        "token_revoked",
    )
    .await;

    // The same for a cut-off (logout-all).
    let second = tokens(app.login("wanda", PASSWORD).await).await;
    let all = app
        .client
        .post(app.url("/auth/logout-all"))
        .bearer_auth(&second.access)
        .send()
        .await
        .unwrap();
    let body = assert_error(all, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("written and is in effect"));
    assert_error(
        app.me(&second.access).await,
        StatusCode::UNAUTHORIZED,
        "token_revoked",
    )
    .await;

    // Logins, refreshes and reads do not wait for replicas.
    let third = tokens(app.login("wanda", PASSWORD).await).await;
    let refreshed = app.refresh(&third.refresh).await;
    assert_eq!(refreshed.status(), StatusCode::OK);
    let third = tokens(refreshed).await;

    // With a replica: acknowledged as usual.
    let _replica = Replica::start(&redis).await;
    assert_eq!(app.logout(&third).await.status(), StatusCode::NO_CONTENT);
    let fourth = tokens(app.login("wanda", PASSWORD).await).await;
    let all = app
        .client
        .post(app.url("/auth/logout-all"))
        .bearer_auth(&fourth.access)
        .send()
        .await
        .unwrap();
    assert_eq!(all.status(), StatusCode::NO_CONTENT);
}
