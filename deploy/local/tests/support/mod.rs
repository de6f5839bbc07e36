//! Processes for the end-to-end tests: the services as real processes (`authbooks-local auth` /
//! `books`), and private PostgreSQL and Redis servers a test may stop and start at will.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;

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

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// `authbooks-local <mode>` on `port` with `env`.
pub fn service(mode: &str, port: u16, env: &[(&str, String)]) -> Process {
    let mut command = Command::new(env!("CARGO_BIN_EXE_authbooks-local"));
    command
        .arg(mode)
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("HTTP_WORKERS", "1")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    Process(command.spawn().expect("service process starts"))
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

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// Runs a PostgreSQL tool as the `postgres` user when we are root (the server refuses root).
fn pg_command(tool: &str) -> Command {
    let bin = std::fs::read_dir("/usr/lib/postgresql")
        .ok()
        .and_then(|mut versions| versions.next())
        .and_then(Result::ok)
        .map(|v| v.path().join("bin").join(tool))
        .unwrap_or_else(|| PathBuf::from(tool));
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(bin);
        command
    } else {
        Command::new(bin)
    }
}

/// A PostgreSQL server of the test's own, in a temporary directory.
pub struct PrivatePostgres {
    pub port: u16,
    dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl PrivatePostgres {
    pub fn start() -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("authbooks-pg")
            .tempdir_in("/tmp")
            .expect("temp dir");
        let dir = tmp.path().join("data");
        if is_root() {
            std::fs::create_dir_all(&dir).expect("data dir");
            let chown = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(tmp.path())
                .status()
                .expect("chown");
            assert!(chown.success());
        }
        let init = pg_command("initdb")
            .args(["-A", "trust", "-U", "postgres", "-D"])
            .arg(&dir)
            .stdout(Stdio::null())
            .status()
            .expect("initdb (PostgreSQL server binaries) must be installed");
        assert!(init.success(), "initdb failed");
        let postgres = Self {
            port: free_port(),
            dir,
            _tmp: tmp,
        };
        postgres.resume();
        postgres
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Starts (again) on the same port and data.
    pub fn resume(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=on",
            self.port,
            self.dir.display()
        );
        let status = pg_command("pg_ctl")
            .args(["-w", "-D"])
            .arg(&self.dir)
            .args(["-o", &options, "-l"])
            .arg(self.dir.join("log"))
            .arg("start")
            .stdout(Stdio::null())
            .status()
            .expect("pg_ctl");
        assert!(status.success(), "private postgres did not start");
    }

    /// Stops at once, as a crash would (`-m immediate`).
    pub fn stop(&self) {
        let _ = pg_command("pg_ctl")
            .args(["-w", "-D"])
            .arg(&self.dir)
            .args(["-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .status();
    }

    pub fn create_database(&self, name: &str) {
        let status = pg_command("createdb")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                name,
            ])
            .status()
            .expect("createdb");
        assert!(status.success());
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A Redis server of the test's own; with `aof`, every write is fsynced to an append-only file
/// in its directory, so a restart keeps it.
pub struct PrivateRedis {
    pub port: u16,
    aof: bool,
    dir: tempfile::TempDir,
    child: Option<Process>,
}

impl PrivateRedis {
    pub fn start(aof: bool) -> Self {
        let mut redis = Self {
            port: free_port(),
            aof,
            dir: tempfile::tempdir().expect("temp dir"),
            child: None,
        };
        redis.resume();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn resume(&mut self) {
        let mut command = Command::new("redis-server");
        command
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null());
        if self.aof {
            command.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            command.args(["--appendonly", "no"]);
        }
        self.child = Some(Process(
            command.spawn().expect("redis-server must be installed"),
        ));
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("private redis did not start");
    }

    /// `kill -9`: whatever was not on disk is gone.
    pub fn crash(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill_hard();
        }
    }
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
        let mut command = Command::new(env!("CARGO_BIN_EXE_authbooks-local"));
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
