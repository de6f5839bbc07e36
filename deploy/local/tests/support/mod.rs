//! Processes for the end-to-end tests: the local stack and the services as real processes
//! (`authbooks-local`, `authbooks-local auth` / `books`), and private PostgreSQL and Redis servers
//! a test may stop and start at will.

#![allow(dead_code)]

mod stack;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

pub use shared::testing::free_port;
pub use stack::*;

/// `authbooks-local <mode>` on `port` with `env`.
pub fn service(mode: &str, port: u16, env: &[(&str, String)]) -> Process {
    let mut command = Command::new(local_stack_binary());
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
