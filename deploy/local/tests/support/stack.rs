//! The one-command stack as a process, for the stack's own end-to-end tests and the CLI's
//! (`cli/tests` includes this file by path).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use reqwest::StatusCode;

/// The `authbooks-local` binary. Cargo hands it to the tests of its own package; another
/// package's tests (the CLI's) cannot name it, so they build it, with their own profile, the
/// first time they ask: never a stale binary left over from an earlier build.
pub fn local_stack_binary() -> PathBuf {
    if let Some(path) = option_env!("CARGO_BIN_EXE_authbooks-local") {
        return PathBuf::from(path);
    }
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(build_local_stack).clone()
}

fn build_local_stack() -> PathBuf {
    // A test executable sits in <target dir>/<profile dir>/deps/.
    let profile = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.file_name()?.to_str()?.to_owned()))
        .map(|dir| {
            if dir == "debug" {
                "dev".to_owned()
            } else {
                dir
            }
        })
        .unwrap_or_else(|| "dev".to_owned());
    let output = Command::new(env!("CARGO"))
        .args(["build", "-p", "authbooks-local", "--bin", "authbooks-local"])
        .args([
            "--profile",
            &profile,
            "--message-format=json-render-diagnostics",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo runs");
    assert!(
        output.status.success(),
        "cargo build -p authbooks-local failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|message| message["target"]["name"] == "authbooks-local")
        .find_map(|message| message["executable"].as_str().map(PathBuf::from))
        .expect("cargo reports the authbooks-local executable")
}

/// A child process stopped when the test ends, whatever happens: SIGTERM first (so nginx's
/// master stops its workers), SIGKILL if it lingers.
pub struct Process(pub Child);

impl Process {
    /// `kill -9`: no chance to finish anything.
    pub fn kill_hard(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let pid = self.0.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        for _ in 0..50 {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill_hard();
    }
}

pub async fn wait_ready(client: &reqwest::Client, base: &str) {
    for _ in 0..300 {
        let ready = client.get(format!("{base}/readyz")).send().await;
        if ready.is_ok_and(|r| r.status() == StatusCode::OK) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{base} did not become ready");
}

/// The one-command stack (`authbooks-local`) as a process on `listen` with its data in
/// `data_dir`; its banner is read for the URL and, on a first start, the admin password.
pub struct LocalStack {
    pub url: String,
    pub admin_password: Option<String>,
    pub banner: Vec<String>,
    pub process: Process,
}

impl LocalStack {
    pub async fn start(data_dir: &Path, listen: &str, settings: &[(&str, &str)]) -> Self {
        use std::io::{BufRead, BufReader};
        let mut command = Command::new(local_stack_binary());
        for name in [
            "DATABASE_URL",
            "REDIS_URL",
            "AUTH_BOOTSTRAP_ADMIN_USERNAME",
            "AUTH_BOOTSTRAP_ADMIN_PASSWORD",
        ] {
            command.env_remove(name);
        }
        let mut child = command
            .env("LISTEN_ADDR", listen)
            .env("AUTHBOOKS_DATA_DIR", data_dir)
            .env("HTTP_WORKERS", "2")
            .envs(settings.iter().copied())
            .stdout(Stdio::piped())
            .stderr(if std::env::var("TEST_LOG").is_ok() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
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
        let url = banner
            .iter()
            .find_map(|l| l.strip_prefix("authbooks is running at "))
            .and_then(|rest| rest.split_whitespace().next())
            .expect("the banner names the URL")
            .to_owned();
        let admin_password = banner
            .iter()
            .find_map(|l| l.strip_prefix("First start: created user 'admin' with password "))
            .map(str::to_owned);
        wait_ready(&reqwest::Client::new(), &url).await;
        Self {
            url,
            admin_password,
            banner,
            process: Process(child),
        }
    }
}
