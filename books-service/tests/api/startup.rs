//! Without a revocation source books-service refuses to start, unless the operator opts out
//! explicitly (review finding 15).

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use books_service::startup::StartupError;
use books_service::{Application, Settings};
use tracing::instrument::WithSubscriber;

fn settings_without_redis(dir: &std::path::Path, extra: &[(&str, &str)]) -> Settings {
    let mut vars: HashMap<String, String> = [
        ("LISTEN_ADDR", "127.0.0.1:0".to_owned()),
        ("HTTP_WORKERS", "1".to_owned()),
        (
            "DATABASE_URL",
            format!("sqlite://{}", dir.join("books.db").display()),
        ),
        // Nothing listens there; these tests never need keys.
        (
            "JWKS_URL",
            "http://127.0.0.1:9/.well-known/jwks.json".to_owned(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    for (k, v) in extra {
        vars.insert((*k).to_owned(), (*v).to_owned());
    }
    Settings::from_vars(vars).expect("settings parse")
}

/// Log lines written while a future runs, as plain text.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log buffer")).into_owned()
    }
}

#[tokio::test]
async fn books_without_redis_url_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let settings = settings_without_redis(dir.path(), &[]);

    let err = match Application::build(settings).await {
        Ok(_) => panic!("books-service started without a revocation source"),
        Err(err) => err,
    };

    let StartupError::Config(config) = &err else {
        panic!("expected a configuration error, got {err}");
    };
    assert_eq!(config.var, "REDIS_URL");
    let line = err.to_string();
    assert!(
        line.starts_with("invalid configuration: REDIS_URL: ") && !line.contains('\n'),
        "{line}"
    );
    assert!(line.contains("BOOKS_ALLOW_NO_REVOCATIONS=true"), "{line}");
    // Refused before anything was set up.
    assert!(!dir.path().join("books.db").exists());
}

#[tokio::test]
async fn books_without_redis_url_starts_with_the_explicit_opt_out_and_warns() {
    let dir = tempfile::tempdir().unwrap();
    let settings = settings_without_redis(dir.path(), &[("BOOKS_ALLOW_NO_REVOCATIONS", "true")]);
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();

    let app = Application::build(settings)
        .with_subscriber(subscriber)
        .await
        .expect("starts with the opt-out");
    assert!(app.port() > 0);

    let logs = logs.text();
    let warning = logs
        .lines()
        .find(|l| l.contains("WARN") && l.contains("BOOKS_ALLOW_NO_REVOCATIONS"))
        .unwrap_or_else(|| panic!("no warning about running without revocations in:\n{logs}"));
    assert!(warning.contains("revoked tokens are accepted"), "{warning}");
}

#[test]
fn the_binary_reports_a_missing_revocation_source_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_books-service"))
        .env_remove("REDIS_URL")
        .env_remove("BOOKS_ALLOW_NO_REVOCATIONS")
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env(
            "DATABASE_URL",
            format!("sqlite://{}", dir.path().join("books.db").display()),
        )
        .env("RUST_LOG", "off")
        .output()
        .expect("books-service runs");

    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("invalid configuration: REDIS_URL: "),
        "{stderr}"
    );
}
