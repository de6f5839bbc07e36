//! The one-command local stack, started as a new user would: the binary, a fresh data directory,
//! no PostgreSQL or Redis settings, port 8080.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

const BASE: &str = "http://127.0.0.1:8080";

struct Stack {
    child: Child,
    banner: Vec<String>,
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the binary in `dir` and reads its banner up to the curl example.
fn start(dir: &std::path::Path) -> Stack {
    let mut child = Command::new(env!("CARGO_BIN_EXE_authbooks-local"))
        .current_dir(dir)
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env_remove("LISTEN_ADDR")
        .env_remove("AUTH_BOOTSTRAP_ADMIN_USERNAME")
        .env_remove("AUTH_BOOTSTRAP_ADMIN_PASSWORD")
        .stdout(Stdio::piped())
        .spawn()
        .expect("authbooks-local starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut banner = Vec::new();
    for line in lines.by_ref() {
        let line = line.expect("banner line");
        let done = line.starts_with("Try:");
        banner.push(line);
        if done {
            break;
        }
    }
    // Keep draining, so the stack never writes into a closed pipe.
    std::thread::spawn(move || lines.for_each(drop));
    Stack { child, banner }
}

async fn wait_ready(client: &reqwest::Client) {
    for _ in 0..200 {
        let ready = client.get(format!("{BASE}/readyz")).send().await;
        if ready.is_ok_and(|r| r.status() == StatusCode::OK) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the local stack did not become ready");
}

async fn login(client: &reqwest::Client, password: &str) -> (String, String) {
    let body: Value = client
        .post(format!("{BASE}/auth/login"))
        .json(&json!({ "username": "admin", "password": password }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (
        body["access_token"]
            .as_str()
            .expect("access token")
            .to_owned(),
        body["refresh_token"]
            .as_str()
            .expect("refresh token")
            .to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_user_runs_the_whole_flow_on_port_8080_and_data_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let stack = start(dir.path());
    let password = stack
        .banner
        .iter()
        .find_map(|l| l.strip_prefix("First start: created user 'admin' with password "))
        .expect("the admin password is printed on first start")
        .to_owned();
    assert!(stack
        .banner
        .iter()
        .any(|l| l.contains("http://127.0.0.1:8080")));
    wait_ready(&client).await;

    let registered = client
        .post(format!("{BASE}/auth/register"))
        .json(&json!({ "username": "reader", "password": "reader-password" }))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), StatusCode::CREATED);
    let (access, refresh) = login(&client, &password).await;
    let created = client
        .post(format!("{BASE}/books"))
        .bearer_auth(&access)
        .json(&json!({ "title": "Dune", "author": "Frank Herbert" }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let id = created.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let listed: Value = client
        .get(format!("{BASE}/books"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"][0]["id"], id.as_str());
    let replaced = client
        .put(format!("{BASE}/books/{id}"))
        .bearer_auth(&access)
        .header("If-Match", "\"1\"")
        .json(&json!({ "title": "Dune Messiah", "author": "Frank Herbert" }))
        .send()
        .await
        .unwrap();
    assert_eq!(replaced.status(), StatusCode::OK);
    let refreshed = client
        .post(format!("{BASE}/auth/refresh"))
        .bearer_auth(&refresh)
        .send()
        .await
        .unwrap();
    assert_eq!(refreshed.status(), StatusCode::OK);
    let logout = client
        .post(format!("{BASE}/auth/logout"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    let revoked = client
        .get(format!("{BASE}/books/{id}"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        revoked.json::<Value>().await.unwrap()["error"],
        "token_revoked"
    );

    // Ctrl-C stops it cleanly.
    let pid = stack.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let mut stack = stack;
    let status = stack.child.wait().unwrap();
    assert!(status.success(), "clean exit on SIGINT: {status}");

    // A second start reuses the data: no new admin, the same password, the same book.
    let again = start(dir.path());
    assert!(!again.banner.iter().any(|l| l.starts_with("First start")));
    wait_ready(&client).await;
    let (access, _) = login(&client, &password).await;
    let kept = client
        .get(format!("{BASE}/books/{id}"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(kept.status(), StatusCode::OK);
    assert_eq!(kept.json::<Value>().await.unwrap()["title"], "Dune Messiah");
}
