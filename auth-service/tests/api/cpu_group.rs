//! `AUTH_ARGON2_CGROUP`: the password-hashing threads of a real auth-service process move into
//! the CPU cgroup named, and nothing else of the process does. Needs a writable cgroup v1 `cpu`
//! hierarchy (root on the CI machine); elsewhere the test says it was skipped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const ROOT_GROUP: &str = "/sys/fs/cgroup/cpu";

/// The service process, killed and its cgroup removed when the test ends (pass or fail).
struct Running {
    child: Child,
    group: PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir(&self.group);
    }
}

fn thread_ids(pid: u32, named: &str) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|task| {
            let tid = task.ok()?.file_name().into_string().ok()?;
            let comm = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm")).ok()?;
            comm.starts_with(named).then_some(tid)
        })
        .collect()
}

fn members(group: &Path) -> Vec<String> {
    std::fs::read_to_string(group.join("tasks"))
        .unwrap()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn hashing_threads_and_only_they_join_the_configured_cpu_cgroup() {
    let group = PathBuf::from(format!(
        "{ROOT_GROUP}/authbooks-test-{}",
        std::process::id()
    ));
    if std::fs::create_dir(&group).is_err() || !group.join("tasks").is_file() {
        eprintln!("skipped: no writable cgroup v1 cpu hierarchy at {ROOT_GROUP}");
        return;
    }
    let _ = std::fs::write(group.join("cpu.idle"), "1");
    let dir = tempfile::tempdir().unwrap();
    let port = shared::testing::free_port();
    let password = "cgroup-test-Password-7Qx";
    let child = Command::new(env!("CARGO_BIN_EXE_auth-service"))
        .env_clear()
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env(
            "DATABASE_URL",
            format!("sqlite://{}", dir.path().join("auth.db").display()),
        )
        .env("AUTH_KEYS_DIR", dir.path().join("keys"))
        .env("AUTH_BOOTSTRAP_ADMIN_USERNAME", "hasher")
        .env("AUTH_BOOTSTRAP_ADMIN_PASSWORD", password)
        .env("AUTH_ARGON2_CGROUP", &group)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let running = Running { child, group };
    let pid = running.child.id();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let mut ready = false;
    for _ in 0..200 {
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await {
            ready = r.status() == 200;
            if ready {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "auth-service did not become ready");

    // A login hashes on the pool, which starts its threads (one per core) on first use.
    let login = client
        .post(format!("{base}/auth/login"))
        .json(&serde_json::json!({"username": "hasher", "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);

    let hashing = thread_ids(pid, "argon2-");
    assert!(!hashing.is_empty(), "no argon2 threads in process {pid}");
    let mut inside = members(&running.group);
    inside.sort();
    let mut expected = hashing.clone();
    expected.sort();
    assert_eq!(
        inside, expected,
        "the cgroup must hold the argon2 threads and nothing else of the process"
    );
    // The process's other threads (HTTP workers, the main thread) stay where they were.
    let main_thread = pid.to_string();
    assert!(!inside.contains(&main_thread));
}
