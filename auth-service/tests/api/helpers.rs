//! `spawn_app()`: a real auth-service on port 0 with its own database (a fresh PostgreSQL database
//! or SQLite file), its own Redis key prefix and its own keys directory.

use std::collections::HashMap;

use auth_service::{Application, Settings};
use diesel::RunQueryDsl;
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};

pub const PASSWORD: &str = "correct horse battery";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// PostgreSQL + Redis, as in production.
    Postgres,
    /// The embedded defaults: a SQLite file and the in-process revocation store.
    Sqlite,
}

pub use shared::testing::{assert_error, payload, redis_url, tokens, TestDatabase, Tokens};

pub struct TestApp {
    pub address: String,
    /// This instance's test hooks (`auth_service::pause`).
    pub pauses: std::sync::Arc<auth_service::pause::PausePoints>,
    pub client: reqwest::Client,
    pub database_url: String,
    pub redis_prefix: String,
    pub leeway: u64,
    /// The settings it was started with, to start more instances sharing its state.
    vars: HashMap<String, String>,
    _database: Option<TestDatabase>,
    _dir: tempfile::TempDir,
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, &[]).await
}

/// Starts the service with extra environment-style settings on top of the test defaults.
pub async fn spawn_app_with(backend: Backend, extra: &[(&str, &str)]) -> TestApp {
    if std::env::var("TEST_LOG").is_ok() {
        shared::telemetry::init("debug");
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let redis_prefix = format!("test:{}:", uuid::Uuid::new_v4().simple());
    let (database, database_url) = match backend {
        Backend::Postgres => {
            let db = TestDatabase::create();
            let url = db.url.clone();
            (Some(db), url)
        }
        Backend::Sqlite => (
            None,
            format!("sqlite://{}", dir.path().join("auth.db").display()),
        ),
    };
    let mut vars: HashMap<String, String> = [
        ("LISTEN_ADDR", "127.0.0.1:0".to_owned()),
        ("DATABASE_URL", database_url.clone()),
        (
            "AUTH_KEYS_DIR",
            dir.path().join("keys").display().to_string(),
        ),
        ("REDIS_KEY_PREFIX", redis_prefix.clone()),
        ("HTTP_WORKERS", "2".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    if backend == Backend::Postgres {
        vars.insert("REDIS_URL".into(), redis_url());
    }
    for (k, v) in extra {
        vars.insert((*k).to_owned(), (*v).to_owned());
    }
    let settings = Settings::from_vars(vars.clone()).expect("test settings");
    let leeway = settings.verifier.leeway;
    let (address, pauses) = start(settings).await;
    TestApp {
        address,
        pauses,
        vars,
        client: reqwest::Client::new(),
        database_url,
        redis_prefix,
        leeway,
        _database: database,
        _dir: dir,
    }
}

async fn start(settings: Settings) -> (String, std::sync::Arc<auth_service::pause::PausePoints>) {
    let app = Application::build(settings).await.expect("app starts");
    let address = format!("http://127.0.0.1:{}", app.port());
    let pauses = app.pause_points();
    tokio::spawn(app.run_until_stopped());
    (address, pauses)
}

impl TestApp {
    /// A second instance on the same database, Redis prefix and keys: a copy of this app's
    /// address book entry with another address.
    pub async fn another_instance(&self) -> TestApp {
        self.another_instance_with(&[]).await
    }

    /// Another instance on the same database, Redis prefix and keys, with some settings changed.
    pub async fn another_instance_with(&self, extra: &[(&str, &str)]) -> TestApp {
        let mut vars = self.vars.clone();
        for (k, v) in extra {
            vars.insert((*k).to_owned(), (*v).to_owned());
        }
        let (address, pauses) = start(Settings::from_vars(vars).expect("settings")).await;
        TestApp {
            address,
            pauses,
            client: reqwest::Client::new(),
            database_url: self.database_url.clone(),
            redis_prefix: self.redis_prefix.clone(),
            leeway: self.leeway,
            vars: self.vars.clone(),
            _database: None,
            _dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// What stops an instance on this app's database, Redis prefix and keys from starting with
    /// some settings changed (it must not start).
    pub async fn another_instance_fails_with(&self, extra: &[(&str, &str)]) -> String {
        let mut vars = self.vars.clone();
        for (k, v) in extra {
            vars.insert((*k).to_owned(), (*v).to_owned());
        }
        match Application::build(Settings::from_vars(vars).expect("settings")).await {
            Ok(_) => panic!("auth-service started with {extra:?}"),
            Err(err) => err.to_string(),
        }
    }

    /// `POST /auth/password` with `access`.
    pub async fn change_password(&self, access: &str, current: &str, new: &str) -> Response {
        self.client
            .post(self.url("/auth/password"))
            .bearer_auth(access)
            .json(&json!({ "current_password": current, "new_password": new }))
            .send()
            .await
            .expect("request")
    }

    /// Another handle on this same running instance, to move into a spawned task.
    pub fn clone_handle(&self) -> TestApp {
        TestApp {
            address: self.address.clone(),
            pauses: self.pauses.clone(),
            client: self.client.clone(),
            database_url: self.database_url.clone(),
            redis_prefix: self.redis_prefix.clone(),
            leeway: self.leeway,
            vars: self.vars.clone(),
            _database: None,
            _dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// The keys directory this app (and every instance it started) uses.
    pub fn keys_dir(&self) -> String {
        self.vars["AUTH_KEYS_DIR"].clone()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn register(&self, username: &str, password: &str) -> Response {
        self.post_json(
            "/auth/register",
            &json!({ "username": username, "password": password }),
        )
        .await
    }

    pub async fn login(&self, username: &str, password: &str) -> Response {
        self.post_json(
            "/auth/login",
            &json!({ "username": username, "password": password }),
        )
        .await
    }

    /// Registers `username` with [`PASSWORD`] and logs in.
    pub async fn signed_up(&self, username: &str) -> Tokens {
        let registered = self.register(username, PASSWORD).await;
        assert_eq!(registered.status(), StatusCode::CREATED);
        let response = self.login(username, PASSWORD).await;
        assert_eq!(response.status(), StatusCode::OK);
        tokens(response).await
    }

    /// Registers `username`, gives it roles `user,admin` in the database and logs in (fresh).
    pub async fn admin(&self, username: &str) -> Tokens {
        self.signed_up(username).await;
        self.execute_sql(&format!(
            "UPDATE users SET roles = 'user,admin' WHERE username = '{username}'"
        ));
        tokens(self.login(username, PASSWORD).await).await
    }

    /// The id of the user holding `token`.
    pub async fn user_id(&self, token: &str) -> String {
        let me: Value = self.me(token).await.json().await.expect("JSON");
        me["id"].as_str().expect("id").to_owned()
    }

    /// Any request with a bearer token and an optional JSON body.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> Response {
        let mut request = self
            .client
            .request(method, self.url(path))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.expect("request")
    }

    pub async fn me(&self, token: &str) -> Response {
        self.client
            .get(self.url("/auth/me"))
            .bearer_auth(token)
            .send()
            .await
            .expect("request")
    }

    pub async fn refresh(&self, refresh_token: &str) -> Response {
        self.client
            .post(self.url("/auth/refresh"))
            .bearer_auth(refresh_token)
            .send()
            .await
            .expect("request")
    }

    pub async fn logout(&self, tokens: &Tokens) -> Response {
        self.client
            .post(self.url("/auth/logout"))
            .bearer_auth(&tokens.access)
            .json(&json!({ "refresh_token": tokens.refresh }))
            .send()
            .await
            .expect("request")
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request")
    }

    /// A direct connection to this app's database (either backend), for arranging and checking.
    fn database(&self) -> shared::db::PooledDb {
        let url = shared::db::DatabaseUrl::parse(&self.database_url).expect("url");
        let pool = shared::db::connect_and_migrate(
            &url,
            auth_service::startup::MIGRATIONS,
            std::time::Duration::from_secs(2),
        )
        .expect("pool");
        pool.get().expect("connection")
    }

    pub fn execute_sql(&self, sql: &str) {
        diesel::sql_query(sql)
            .execute(&mut *self.database())
            .expect("sql");
    }

    pub fn query_string(&self, sql: &str) -> String {
        #[derive(diesel::QueryableByName)]
        struct Row {
            #[diesel(sql_type = diesel::sql_types::Text)]
            value: String,
        }
        let rows: Vec<Row> = diesel::sql_query(sql)
            .load(&mut *self.database())
            .expect("sql");
        rows.into_iter().next().expect("one row").value
    }
}

/// Generates `mod name { postgres, sqlite }` test pairs calling `name(Backend)`.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                use $crate::helpers::Backend;
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name(Backend::Postgres).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name(Backend::Sqlite).await
                }
            }
        )*
    };
}

/// An RFC 6238 code (SHA-1, 6 digits, 30 s) for a base32 secret at `unix` seconds, computed
/// here with HMAC-SHA1 from aws-lc-rs: independent of the crate the service uses.
pub fn totp_code(secret_base32: &str, unix: u64) -> String {
    let key = base32_decode(secret_base32);
    let counter = (unix / 30).to_be_bytes();
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &key);
    let mac = aws_lc_rs::hmac::sign(&key, &counter);
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

/// The current Unix time in seconds.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
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
fn rfc_6238_vectors_through_the_test_implementation() {
    // Appendix B: secret "12345678901234567890" (base32 below), SHA-1, last 6 digits.
    let secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
    assert_eq!(totp_code(secret, 59), "287082");
    assert_eq!(totp_code(secret, 1_111_111_109), "081804");
    assert_eq!(totp_code(secret, 2_000_000_000), "279037");
}
