//! What auth-service writes to disk is private to its user, and a loose key is reported at start
//! (review finding 16).

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use auth_service::{Application, Settings};
use tracing::instrument::WithSubscriber;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("exists")
        .permissions()
        .mode()
        & 0o777
}

/// SQLite database in `<root>/data/` (a directory that does not exist yet), keys in `<root>/keys`.
fn settings(root: &Path) -> Settings {
    let vars: HashMap<String, String> = [
        ("LISTEN_ADDR", "127.0.0.1:0".to_owned()),
        ("HTTP_WORKERS", "1".to_owned()),
        (
            "DATABASE_URL",
            format!("sqlite://{}", root.join("data/auth.db").display()),
        ),
        ("AUTH_KEYS_DIR", root.join("keys").display().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    Settings::from_vars(vars).expect("settings")
}

fn key_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .expect("keys dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "pem"))
        .collect()
}

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

/// Starts auth-service on `root`, returning what it logged while starting.
async fn start_logging(root: &Path) -> String {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let app = Application::build(settings(root))
        .with_subscriber(subscriber)
        .await
        .expect("auth-service starts");
    tokio::spawn(app.run_until_stopped());
    let text = String::from_utf8_lossy(&logs.0.lock().expect("log buffer")).into_owned();
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_start_creates_the_database_0600_and_the_keys_dir_0700() {
    let root = tempfile::tempdir().unwrap();
    let logs = start_logging(root.path()).await;

    let data = root.path().join("data");
    assert_eq!(mode(&data), 0o700, "data directory");
    let database_files: Vec<PathBuf> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(database_files.iter().any(|p| p.ends_with("auth.db")));
    for file in &database_files {
        // auth.db and SQLite's -wal/-shm beside it.
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }
    let keys = root.path().join("keys");
    assert_eq!(mode(&keys), 0o700, "keys directory");
    for key in key_files(&keys) {
        assert_eq!(mode(&key), 0o600, "{}", key.display());
    }
    assert!(
        !logs.contains("readable by group or others"),
        "no warning on a fresh start:\n{logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_world_readable_key_file_is_warned_about_at_start() {
    let root = tempfile::tempdir().unwrap();
    let keys = root.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o700)).unwrap();
    let key = auth_service::keys::generate_key_file(&keys).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let pem = std::fs::read_to_string(&key).unwrap();

    let logs = start_logging(root.path()).await;

    let warnings: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("readable by group or others"))
        .collect();
    assert_eq!(warnings.len(), 1, "{logs}");
    assert!(warnings[0].contains(&key.display().to_string()), "{logs}");
    assert!(warnings[0].contains("0644"), "{logs}");
    // The path and mode, never the key.
    let body_line = pem.lines().nth(1).unwrap();
    assert!(!logs.contains(body_line));
}
