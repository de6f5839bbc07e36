//! The built `authbooks` binary against a running local stack, as a script would use it:
//! `--json` output parsed here, exit codes checked, the token file inspected.

// The local stack's own test helper, shared rather than copied.
#[path = "../../deploy/local/tests/support/stack.rs"]
mod stack;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

/// A password the policy accepts for `reader`, as typed on stdin.
const READER_PASSWORD: &str = "Lantern-orchid-Velvet-93\n";

struct Stack {
    url: String,
    admin_password: String,
    _process: stack::Process,
    _dir: tempfile::TempDir,
}

/// Starts `authbooks-local` on a free port with a fresh data directory and `settings`, and
/// waits until it is ready.
async fn start(settings: &[(&str, &str)]) -> Stack {
    let dir = tempfile::tempdir().expect("temp dir");
    let local = stack::LocalStack::start(dir.path(), "127.0.0.1:0", settings).await;
    Stack {
        url: local.url,
        admin_password: local
            .admin_password
            .expect("a first start creates the admin"),
        _process: local.process,
        _dir: dir,
    }
}

/// One user's `authbooks`: its own config directory (and so its own token file).
struct User {
    config: tempfile::TempDir,
    url: Option<String>,
}

impl User {
    fn new(url: Option<&str>) -> Self {
        User {
            config: tempfile::tempdir().expect("temp dir"),
            url: url.map(str::to_owned),
        }
    }

    fn token_file(&self) -> PathBuf {
        self.config.path().join("authbooks").join("tokens.json")
    }

    /// Runs `authbooks args`, with `stdin` piped in (never a terminal).
    fn run(&self, args: &[&str], stdin: &str) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_authbooks"));
        command
            .args(args)
            .env_remove("AUTHBOOKS_URL")
            .env_remove("XDG_CONFIG_HOME")
            .env("AUTHBOOKS_CONFIG_DIR", self.config.path().join("authbooks"))
            .env("HOME", self.config.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(url) = &self.url {
            command.env("AUTHBOOKS_URL", url);
        }
        let mut child = command.spawn().expect("authbooks runs");
        if let Some(mut input) = child.stdin.take() {
            input.write_all(stdin.as_bytes()).expect("stdin written");
        }
        child.wait_with_output().expect("authbooks finishes")
    }

    /// `authbooks --json args`, which must succeed; its stdout parsed.
    fn json(&self, args: &[&str]) -> Value {
        let output = self.run(&[&["--json"], args].concat(), "");
        assert_success(&output, args);
        serde_json::from_slice(&output.stdout).expect("stdout is JSON")
    }

    /// `authbooks --json args`, which must fail with `code`; its stderr error parsed.
    fn fails(&self, args: &[&str], code: i32) -> Value {
        let output = self.run(&[&["--json"], args].concat(), "");
        assert_eq!(
            output.status.code(),
            Some(code),
            "{args:?}: stdout {} stderr {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stderr).expect("stderr is a JSON error")
    }
}

fn assert_success(output: &Output, args: &[&str]) {
    assert!(
        output.status.success(),
        "{args:?} failed ({:?}): {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("exists")
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_add_list_edit_rm_logout_with_json_output_and_a_private_token_file() {
    let stack = start(&[]).await;
    let admin = User::new(None);

    let login = admin.run(
        &["--url", &stack.url, "login", "admin", "--json"],
        &format!("{}\n", stack.admin_password),
    );
    assert_success(&login, &["login"]);
    let me: Value = serde_json::from_slice(&login.stdout).expect("JSON user");
    assert_eq!(me["username"], "admin");
    assert_eq!(mode(&admin.token_file()), 0o600);
    assert_eq!(mode(&admin.config.path().join("authbooks")), 0o700);
    let stored = std::fs::read_to_string(admin.token_file()).expect("readable");
    assert!(
        !stored.contains(&stack.admin_password),
        "no password stored"
    );

    // The stored login remembers the URL: no --url from here on.
    let added = admin.json(&[
        "books",
        "add",
        "--title",
        "Dune",
        "--author",
        "Frank Herbert",
        "--year",
        "1965",
    ]);
    let id = added["id"].as_str().expect("an id").to_owned();
    assert_eq!(added["version"], 1);
    let listed = admin.json(&["books", "list"]);
    assert_eq!(listed["items"][0]["id"], id.as_str());
    assert_eq!(listed["items"][0]["published_year"], 1965);
    let table = admin.run(&["books", "list"], "");
    assert_success(&table, &["books", "list"]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.starts_with("ID"), "{table}");
    assert!(
        table.contains("Frank Herbert") && table.contains(&id),
        "{table}"
    );

    let edited = admin.json(&[
        "books",
        "edit",
        &id,
        "--title",
        "Dune Messiah",
        "--year",
        "",
    ]);
    assert_eq!(edited["title"], "Dune Messiah");
    assert_eq!(edited["published_year"], Value::Null);
    assert_eq!(edited["version"], 2);
    let stale = admin.fails(
        &["books", "edit", &id, "--title", "X", "--if-match", "1"],
        5,
    );
    assert_eq!(stale["error"], "precondition_failed");
    assert_eq!(admin.json(&["books", "get", &id])["title"], "Dune Messiah");

    assert_eq!(admin.json(&["books", "rm", &id])["deleted"], id.as_str());
    assert_eq!(admin.fails(&["books", "get", &id], 4)["error"], "not_found");
    let invalid = admin.fails(&["books", "add", "--title", "", "--author", "A"], 7);
    assert_eq!(invalid["error"], "validation_failed");
    assert!(invalid["fields"]["title"].is_string());
    assert_eq!(admin.json(&["whoami"])["username"], "admin");

    let stored = std::fs::read_to_string(admin.token_file()).expect("readable");
    let access: Value = serde_json::from_str(&stored).expect("JSON");
    assert_eq!(admin.json(&["logout"])["logged_out"], true);
    assert!(!admin.token_file().exists(), "tokens forgotten");
    let revoked = reqwest::Client::new()
        .get(format!("{}/books", stack.url))
        .bearer_auth(access["access_token"].as_str().expect("token"))
        .send()
        .await
        .expect("answer");
    assert_eq!(
        revoked.status(),
        StatusCode::UNAUTHORIZED,
        "revoked on the server"
    );
    let whoami = admin.fails(&["whoami"], 3);
    assert_eq!(
        (&whoami["error"], &whoami["reason"]),
        (&Value::from("logged_out"), &Value::from("not_logged_in"))
    );
    assert_eq!(admin.json(&["logout"])["was_logged_in"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_forbidden_and_revoked_sessions_map_to_their_exit_codes() {
    let stack = start(&[]).await;
    let admin = User::new(Some(&stack.url));
    let reader = User::new(Some(&stack.url));
    assert_success(
        &admin.run(&["login", "admin"], &format!("{}\n", stack.admin_password)),
        &["login"],
    );
    let wrong = reader.run(&["--json", "login", "admin"], "not-the-password\n");
    assert_eq!(wrong.status.code(), Some(3), "wrong credentials");
    // The password policy's refusal is invalid input (7), with the problem under `password`.
    let weak = reader.run(&["--json", "register", "reader"], "reader-password\n");
    assert_eq!(
        weak.status.code(),
        Some(7),
        "a password containing the username"
    );
    let refusal: Value = serde_json::from_slice(&weak.stderr).expect("stderr is a JSON error");
    assert_eq!(
        (&refusal["error"], &refusal["fields"]["password"]),
        (
            &Value::from("validation_failed"),
            &Value::from("must not contain the username")
        )
    );
    let registered = reader.run(&["--json", "register", "reader"], READER_PASSWORD);
    assert_success(&registered, &["register"]);
    let reader_id = serde_json::from_slice::<Value>(&registered.stdout).expect("JSON")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert_success(
        &reader.run(&["login", "reader"], READER_PASSWORD),
        &["login"],
    );

    let forbidden = reader.fails(&["books", "add", "--title", "T", "--author", "A"], 6);
    assert_eq!(forbidden["error"], "insufficient_role");
    let promoted = admin.json(&["admin", "roles", &reader_id, "user", "editor"]);
    assert_eq!(promoted["roles"], serde_json::json!(["user", "editor"]));

    // The role change ended the reader's session: exit 3, and the dead tokens are dropped.
    let ended = reader.fails(&["books", "add", "--title", "T", "--author", "A"], 3);
    assert_eq!(ended["error"], "token_revoked");
    assert!(!reader.token_file().exists());
    assert_success(
        &reader.run(&["login", "reader"], READER_PASSWORD),
        &["login"],
    );
    reader.json(&["books", "add", "--title", "T", "--author", "A"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_access_token_is_refreshed_and_the_rotated_pair_stored() {
    let stack = start(&[
        ("ACCESS_TOKEN_TTL", "2"),
        ("JWT_LEEWAY", "0"),
        ("AUTH_REFRESH_GRACE", "0"),
    ])
    .await;
    let admin = User::new(Some(&stack.url));
    assert_success(
        &admin.run(&["login", "admin"], &format!("{}\n", stack.admin_password)),
        &["login"],
    );
    let id = admin.json(&["books", "add", "--title", "Dune", "--author", "F"])["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let before = std::fs::read_to_string(admin.token_file()).expect("stored");
    tokio::time::sleep(Duration::from_millis(3_200)).await;

    admin.json(&["books", "list"]);
    let after = std::fs::read_to_string(admin.token_file()).expect("stored");
    assert_ne!(before, after, "the rotated pair was stored");
    assert_eq!(mode(&admin.token_file()), 0o600);
    // With no grace, presenting the spent refresh token again would end the session: this
    // only works because the new one was stored.
    tokio::time::sleep(Duration::from_millis(3_200)).await;
    admin.json(&["books", "list"]);
    let fresh_needed = admin.fails(&["books", "rm", &id], 3);
    assert_eq!(fresh_needed["error"], "fresh_token_required");
}

#[test]
fn usage_help_and_no_server_have_their_exit_codes() {
    let user = User::new(Some("http://127.0.0.1:9"));
    let help = user.run(&["--help"], "");
    assert_success(&help, &["--help"]);
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("Exit codes") && help.contains("books list"),
        "{help}"
    );

    assert_eq!(user.run(&["frobnicate"], "").status.code(), Some(2));
    assert_eq!(
        user.fails(&["books", "add", "--title", "T"], 2)["error"],
        "usage"
    );
    assert_eq!(user.fails(&["whoami"], 3)["reason"], "not_logged_in");
    assert_eq!(
        user.fails(&["login", "admin"], 2)["error"],
        "usage",
        "no password on stdin"
    );
    assert_eq!(
        user.run(&["login", "admin"], "password\n").status.code(),
        Some(8),
        "nothing listens on port 9"
    );
    assert_eq!(
        user.run(&["--url", "nope", "login", "admin"], "password\n")
            .status
            .code(),
        Some(2),
        "not a URL"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_clients_create_list_rotate_and_rm_service_accounts() {
    let stack = start(&[]).await;
    let admin = User::new(Some(&stack.url));
    assert_success(
        &admin.run(&["login", "admin"], &format!("{}\n", stack.admin_password)),
        &["login"],
    );
    let token = |id: &str, secret: &str| {
        let (url, id, secret) = (stack.url.clone(), id.to_owned(), secret.to_owned());
        async move {
            reqwest::Client::new()
                .post(format!("{url}/oauth/token"))
                .basic_auth(id, Some(secret))
                .form(&[("grant_type", "client_credentials")])
                .send()
                .await
                .expect("request")
                .status()
        }
    };

    let created = admin.json(&["admin", "clients", "create", "reports", "books:read"]);
    let id = created["client_id"].as_str().expect("client_id").to_owned();
    let secret = created["client_secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    assert_eq!(created["scopes"], serde_json::json!(["books:read"]));
    // Through the stack's gateway, as another service would.
    assert_eq!(token(&id, &secret).await, reqwest::StatusCode::OK);

    let listed = admin.json(&["admin", "clients", "list"]);
    assert_eq!(listed[0]["client_id"], id.as_str());
    assert!(listed[0].get("client_secret").is_none());
    let table = admin.run(&["admin", "clients", "list"], "");
    assert!(String::from_utf8_lossy(&table.stdout).contains("reports"));

    let rotated = admin.json(&["admin", "clients", "rotate", &id]);
    let new_secret = rotated["client_secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    assert_eq!(token(&id, &secret).await, reqwest::StatusCode::UNAUTHORIZED);
    assert_eq!(token(&id, &new_secret).await, reqwest::StatusCode::OK);

    assert_eq!(
        admin.json(&["admin", "clients", "rm", &id])["deleted"],
        id.as_str()
    );
    assert_eq!(
        token(&id, &new_secret).await,
        reqwest::StatusCode::UNAUTHORIZED
    );
    let missing = admin.fails(&["admin", "clients", "rm", &id], 4);
    assert_eq!(missing["error"], "not_found");
    let usage = admin.run(&["admin", "clients", "create", "x", "root"], "");
    assert_eq!(usage.status.code(), Some(2));
}
