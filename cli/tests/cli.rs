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

    /// `authbooks args` with this user's config directory and URL, stdin and stdout piped.
    fn command(&self, args: &[&str]) -> Command {
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
        command
    }

    /// Runs `authbooks args`, with `stdin` piped in (never a terminal).
    fn run(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = self.command(args).spawn().expect("authbooks runs");
        if let Some(mut input) = child.stdin.take() {
            input.write_all(stdin.as_bytes()).expect("stdin written");
        }
        child.wait_with_output().expect("authbooks finishes")
    }

    /// Starts `authbooks args` for a test to talk to through stdin and stdout (stderr is the
    /// test's own).
    fn spawn(&self, args: &[&str]) -> std::process::Child {
        self.command(args)
            .stderr(Stdio::inherit())
            .spawn()
            .expect("authbooks runs")
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

/// Logs `user` in as `name` with `password`, which must succeed.
fn log_in(user: &User, name: &str, password: &str) {
    assert_success(
        &user.run(&["login", name], &format!("{password}\n")),
        &["login", name],
    );
}

/// The `id` of every item of a JSON list.
fn ids(list: &Value) -> Vec<&str> {
    list.as_array()
        .expect("a list")
        .iter()
        .map(|item| item["id"].as_str().expect("an id"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_users_find_show_disable_enable_sessions_roles_and_audit_by_username() {
    let stack = start(&[]).await;
    let admin = User::new(Some(&stack.url));
    log_in(&admin, "admin", &stack.admin_password);
    let bob = User::new(Some(&stack.url));
    let registered = bob.run(&["--json", "register", "bob"], "Quarry-fennel-Mosaic-61\n");
    assert_success(&registered, &["register"]);
    let bob_id = serde_json::from_slice::<Value>(&registered.stdout).expect("JSON")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    log_in(&bob, "bob", "Quarry-fennel-Mosaic-61");
    let bob_elsewhere = User::new(Some(&stack.url));
    log_in(&bob_elsewhere, "bob", "Quarry-fennel-Mosaic-61");

    // Finding: everyone (every page), one page, one by name in any case, nobody.
    let everyone = admin.json(&["admin", "users", "find"]);
    let names: Vec<&str> = everyone["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|u| u["username"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["admin", "bob"]);
    assert_eq!(everyone["next_cursor"], Value::Null);
    let first_page = admin.json(&["admin", "users", "find", "--limit", "1"]);
    assert_eq!(first_page["items"][0]["username"], "admin");
    let cursor = first_page["next_cursor"].as_str().expect("a next page");
    let second_page = admin.json(&["admin", "users", "find", "--limit", "1", "--cursor", cursor]);
    assert_eq!(second_page["items"][0]["username"], "bob");
    let found = admin.json(&["admin", "users", "find", "BOB"]);
    assert_eq!(found["items"][0]["id"], bob_id.as_str());
    assert_eq!(
        admin.fails(&["admin", "users", "find", "nobody"], 4)["error"],
        "not_found"
    );
    let table = admin.run(&["admin", "users", "find"], "");
    assert_success(&table, &["admin", "users", "find"]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.starts_with("ID") && table.contains("bob"), "{table}");

    // Showing, by name and by id.
    let shown = admin.json(&["admin", "users", "show", "bob"]);
    assert_eq!(shown["id"], bob_id.as_str());
    assert_eq!(
        (&shown["disabled"], &shown["mfa"]),
        (&false.into(), &false.into())
    );
    assert_eq!(
        admin.json(&["admin", "users", "show", &bob_id])["username"],
        "bob"
    );
    assert_eq!(
        admin.fails(&["admin", "users", "show", "nobody"], 4)["error"],
        "not_found"
    );
    let forbidden = bob.fails(&["admin", "users", "show", "admin"], 6);
    assert_eq!(forbidden["error"], "insufficient_role");

    // A user's sessions: bob's two logins, neither the admin's own; then all ended.
    let sessions = admin.json(&["admin", "users", "sessions", "bob"]);
    assert_eq!(ids(&sessions).len(), 2, "{sessions}");
    assert!(sessions
        .as_array()
        .expect("list")
        .iter()
        .all(|s| s["current"] == false));
    let ended = admin.json(&["admin", "users", "sessions", "bob", "--end"]);
    assert_eq!(ended["user"], bob_id.as_str());
    assert_eq!(ids(&ended["ended"]).len(), 2);
    for session in [&bob, &bob_elsewhere] {
        assert_eq!(session.fails(&["whoami"], 3)["error"], "token_revoked");
    }
    assert_eq!(
        admin.json(&["admin", "users", "sessions", "bob"]),
        Value::from(Vec::<Value>::new())
    );
    assert_eq!(
        admin.json(&["whoami"])["username"],
        "admin",
        "the admin's own session lives"
    );

    // Roles by username.
    log_in(&bob, "bob", "Quarry-fennel-Mosaic-61");
    let promoted = admin.json(&["admin", "roles", "bob", "user", "editor"]);
    assert_eq!(promoted["roles"], serde_json::json!(["user", "editor"]));
    assert_eq!(promoted["id"], bob_id.as_str());
    assert_eq!(bob.fails(&["whoami"], 3)["error"], "token_revoked");
    assert_eq!(
        admin.fails(&["admin", "roles", "nobody", "user"], 4)["error"],
        "not_found"
    );

    // Disabling: the sessions end, and the right password is refused until enabled again.
    log_in(&bob, "bob", "Quarry-fennel-Mosaic-61");
    let disabled = admin.json(&["admin", "users", "disable", "bob"]);
    assert_eq!(disabled["disabled"], true);
    assert_eq!(bob.fails(&["whoami"], 3)["error"], "token_revoked");
    let refused = bob.run(&["--json", "login", "bob"], "Quarry-fennel-Mosaic-61\n");
    assert_eq!(refused.status.code(), Some(6), "a disabled account");
    let refused: Value = serde_json::from_slice(&refused.stderr).expect("a JSON error");
    assert_eq!(refused["error"], "account_disabled");
    let human = bob.run(&["login", "bob"], "Quarry-fennel-Mosaic-61\n");
    assert_eq!(human.status.code(), Some(6));
    assert!(
        String::from_utf8_lossy(&human.stderr).contains("disabled"),
        "{}",
        String::from_utf8_lossy(&human.stderr)
    );
    assert!(!bob.token_file().exists());
    let shown = admin.run(&["admin", "users", "show", "bob"], "");
    assert!(String::from_utf8_lossy(&shown.stdout).contains("status:  disabled"));
    let own = admin.fails(&["admin", "users", "disable", "admin"], 5);
    assert_eq!(own["error"], "conflict", "no disabling oneself");

    let enabled = admin.json(&["admin", "users", "enable", &bob_id]);
    assert_eq!(enabled["disabled"], false);
    log_in(&bob, "bob", "Quarry-fennel-Mosaic-61");
    assert_eq!(
        bob.json(&["whoami"])["roles"],
        serde_json::json!(["user", "editor"])
    );

    // The audit trail, by username and by type.
    let trail = admin.json(&["admin", "audit", "--user", "bob", "--limit", "100"]);
    let kinds: Vec<&str> = trail["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| e["type"].as_str().expect("type"))
        .collect();
    for kind in [
        "registered",
        "login",
        "roles_changed",
        "user_disabled",
        "login_refused",
        "user_enabled",
    ] {
        assert!(kinds.contains(&kind), "{kind} not in {kinds:?}");
    }
    // Newest first.
    assert_eq!(kinds[0], "login", "{kinds:?}");
    let refusals = admin.json(&["admin", "audit", "--type", "login_refused"]);
    assert_eq!(refusals["items"].as_array().expect("items").len(), 2);
    assert_eq!(refusals["items"][0]["subject"], bob_id.as_str());
    assert_eq!(refusals["items"][0]["outcome"], "refused");
    let paged = admin.json(&["admin", "audit", "--limit", "1"]);
    assert_eq!(paged["items"].as_array().expect("items").len(), 1);
    assert!(paged["next_cursor"].is_string());
    let table = admin.run(&["admin", "audit", "--type", "user_disabled"], "");
    assert_success(&table, &["admin", "audit"]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.starts_with("AT (UTC)") && table.contains(&bob_id),
        "{table}"
    );
    let unknown = admin.fails(&["admin", "audit", "--type", "frobnicated"], 7);
    assert_eq!(unknown["error"], "bad_request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_lists_ones_own_and_ends_another_or_this_one() {
    let stack = start(&[]).await;
    let laptop = User::new(Some(&stack.url));
    let phone = User::new(Some(&stack.url));
    log_in(&laptop, "admin", &stack.admin_password);
    log_in(&phone, "admin", &stack.admin_password);

    let listed = laptop.json(&["sessions"]);
    assert_eq!(ids(&listed).len(), 2, "{listed}");
    let items = listed.as_array().expect("list");
    let mine = items
        .iter()
        .find(|s| s["current"] == true)
        .expect("this one");
    let other = items
        .iter()
        .find(|s| s["current"] == false)
        .expect("the other");
    let (mine, other) = (
        mine["id"].as_str().expect("id").to_owned(),
        other["id"].as_str().expect("id").to_owned(),
    );
    assert!(items[0]["user_agent"]
        .as_str()
        .expect("user agent")
        .starts_with("authbooks-client/"));
    let table = laptop.run(&["sessions"], "");
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with('*') && l.contains(&mine)),
        "{table}"
    );

    let ended = laptop.json(&["sessions", "end", &other]);
    assert_eq!(
        (&ended["ended"], &ended["current"]),
        (&Value::from(other.as_str()), &false.into())
    );
    assert_eq!(phone.fails(&["whoami"], 3)["error"], "token_revoked");
    assert_eq!(ids(&laptop.json(&["sessions"])), [mine.as_str()]);
    assert_eq!(
        laptop.fails(&["sessions", "end", &other], 4)["error"],
        "not_found",
        "already ended"
    );

    let ended = laptop.run(&["sessions", "end", &mine], "");
    assert_success(&ended, &["sessions", "end"]);
    assert!(String::from_utf8_lossy(&ended.stdout).contains("logged out"));
    assert!(
        !laptop.token_file().exists(),
        "the dead tokens are forgotten"
    );
    assert_eq!(laptop.fails(&["whoami"], 3)["reason"], "not_logged_in");
}

/// RFC 6238 codes for a base32 secret (SHA-1, 6 digits, 30 s), computed here with HMAC-SHA1,
/// independently of the server's crate. The server accepts the current step and one on either
/// side, each step only once and only after the last accepted: `next` hands out increasing
/// steps, waiting when it has run ahead of the clock.
struct Totp {
    key: Vec<u8>,
    last_step: Option<u64>,
}

impl Totp {
    fn new(secret_base32: &str) -> Self {
        Totp {
            key: base32_decode(secret_base32),
            last_step: None,
        }
    }

    fn code_at(&self, step: u64) -> String {
        let key =
            aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &self.key);
        let mac = aws_lc_rs::hmac::sign(&key, &step.to_be_bytes());
        let mac = mac.as_ref();
        let offset = (mac[19] & 0x0f) as usize;
        let binary = u32::from_be_bytes([
            mac[offset],
            mac[offset + 1],
            mac[offset + 2],
            mac[offset + 3],
        ]) & 0x7fff_ffff;
        format!("{:06}", binary % 1_000_000)
    }

    fn step_now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs()
            / 30
    }

    /// A code the server will take once: for the current step, or the next if the current
    /// one is spent (both stay in the window for at least 30 s).
    async fn next(&mut self) -> String {
        let step = match self.last_step {
            Some(last) => (last + 1).max(Self::step_now()),
            None => Self::step_now(),
        };
        while step > Self::step_now() + 1 {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        self.last_step = Some(step);
        self.code_at(step)
    }

    /// A code that is none of the window's.
    fn wrong(&self) -> String {
        let now = Self::step_now();
        let window: Vec<String> = (now - 2..=now + 2).map(|s| self.code_at(s)).collect();
        (0..10)
            .map(|d| d.to_string().repeat(6))
            .find(|c| !window.contains(c))
            .expect("one of ten is outside a window of five")
    }
}

fn base32_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (mut buffer, mut bits, mut out) = (0u64, 0u32, Vec::new());
    for c in text.bytes().filter(|c| *c != b'=') {
        let value = ALPHABET
            .iter()
            .position(|a| *a == c.to_ascii_uppercase())
            .expect("base32") as u64;
        buffer = (buffer << 5) | value;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    out
}

#[test]
fn the_tests_totp_matches_rfc_6238() {
    // Appendix B: the secret "12345678901234567890", SHA-1, the last 6 digits.
    let totp = Totp::new("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
    assert_eq!(totp.code_at(59 / 30), "287082");
    assert_eq!(totp.code_at(1_111_111_109 / 30), "081804");
    assert_eq!(totp.code_at(2_000_000_000 / 30), "279037");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mfa_enable_then_login_with_a_code_or_a_recovery_code_then_mfa_disable() {
    let stack = start(&[]).await;
    let carol = User::new(Some(&stack.url));
    assert_success(
        &carol.run(&["register", "carol"], "Tundra-saffron-Beacon-27\n"),
        &["register"],
    );
    log_in(&carol, "carol", "Tundra-saffron-Beacon-27");

    // `mfa enable` as a script drives it: the secret on the first JSON line, the code on
    // stdin, the recovery codes on the second line.
    let mut enable = carol.spawn(&["--json", "mfa", "enable"]);
    let mut stdout = std::io::BufReader::new(enable.stdout.take().expect("stdout"));
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).expect("the secret line");
    let started: Value = serde_json::from_str(&line).expect("JSON");
    let secret = started["secret"].as_str().expect("secret");
    assert!(started["otpauth_uri"]
        .as_str()
        .expect("uri")
        .starts_with("otpauth://totp/"));
    let mut totp = Totp::new(secret);
    let mut stdin = enable.stdin.take().expect("stdin");
    writeln!(stdin, "{}", totp.next().await).expect("code written");
    drop(stdin);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).expect("the rest");
    let status = enable.wait().expect("finishes");
    assert!(status.success(), "mfa enable failed: {rest}");
    let confirmed: Value = serde_json::from_str(rest.trim()).expect("JSON");
    let recovery: Vec<String> = confirmed["recovery_codes"]
        .as_array()
        .expect("codes")
        .iter()
        .map(|c| c.as_str().expect("code").to_owned())
        .collect();
    assert_eq!(recovery.len(), 10);
    assert_eq!(carol.json(&["whoami"])["mfa"], true);
    assert_eq!(
        carol.fails(&["mfa", "enable"], 5)["error"],
        "conflict",
        "already enrolled"
    );

    // The password alone no longer logs in.
    assert_eq!(carol.json(&["logout"])["logged_out"], true);
    let no_code = carol.run(&["--json", "login", "carol"], "Tundra-saffron-Beacon-27\n");
    assert_eq!(no_code.status.code(), Some(2), "no code on stdin");
    let no_code: Value = serde_json::from_slice(&no_code.stderr).expect("a JSON error");
    assert_eq!(no_code["error"], "usage");
    assert!(
        no_code["message"]
            .as_str()
            .expect("message")
            .contains("second factor"),
        "{no_code}"
    );
    let wrong = carol.run(
        &["--json", "login", "carol"],
        &format!("Tundra-saffron-Beacon-27\n{}\n", totp.wrong()),
    );
    assert_eq!(wrong.status.code(), Some(3));
    let wrong: Value = serde_json::from_slice(&wrong.stderr).expect("a JSON error");
    assert_eq!(wrong["error"], "invalid_mfa_code");
    assert!(!carol.token_file().exists());

    // The password, then the code, on two lines of stdin.
    let login = carol.run(
        &["--json", "login", "carol"],
        &format!("Tundra-saffron-Beacon-27\n{}\n", totp.next().await),
    );
    assert_success(&login, &["login", "carol"]);
    assert_eq!(
        serde_json::from_slice::<Value>(&login.stdout).expect("JSON")["username"],
        "carol"
    );
    assert_eq!(carol.json(&["whoami"])["mfa"], true);

    // A recovery code in place of a TOTP code, once.
    log_in_with_code(&carol, &recovery[0]);
    let spent = carol.run(
        &["--json", "login", "carol"],
        &format!("Tundra-saffron-Beacon-27\n{}\n", recovery[0]),
    );
    assert_eq!(spent.status.code(), Some(3), "a recovery code works once");
    log_in_with_code(&carol, &recovery[1]);

    // The administrator sees the factor.
    let admin = User::new(Some(&stack.url));
    log_in(&admin, "admin", &stack.admin_password);
    assert_eq!(
        admin.json(&["admin", "users", "show", "carol"])["mfa"],
        true
    );

    // Removing it takes a code (a recovery code here); then the password is enough again.
    let removed = carol.run(&["--json", "mfa", "disable"], &format!("{}\n", recovery[2]));
    assert_success(&removed, &["mfa", "disable"]);
    assert_eq!(carol.json(&["whoami"])["mfa"], false);
    log_in(&carol, "carol", "Tundra-saffron-Beacon-27");
    assert_eq!(
        admin.json(&["admin", "users", "show", "carol"])["mfa"],
        false
    );
    let mfa_events = admin.json(&[
        "admin",
        "audit",
        "--user",
        "carol",
        "--type",
        "mfa_enrolled",
    ]);
    assert_eq!(mfa_events["items"].as_array().expect("items").len(), 1);
}

/// `authbooks login carol` with the password and then `code` on stdin, which must succeed.
fn log_in_with_code(user: &User, code: &str) {
    let login = user.run(
        &["login", "carol"],
        &format!("Tundra-saffron-Beacon-27\n{code}\n"),
    );
    assert_success(&login, &["login", "carol", "(with a code)"]);
}
