//! `spawn_stack()`: a real auth-service and a real books-service, in-process on port 0, each with
//! its own database; on PostgreSQL they share a per-test Redis key prefix, on the embedded
//! defaults they share one in-process revocation store.

use std::collections::HashMap;
use std::sync::Arc;

use diesel::RunQueryDsl;
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};
use shared::revocation::{MemoryRevocations, RevocationCheck};

pub const PASSWORD: &str = "correct horse battery";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

pub use shared::testing::{
    assert_error, payload, redis_url, tokens, wait_ready as wait_until_ready, TestDatabase, Tokens,
};

pub struct Stack {
    pub auth: String,
    pub books: String,
    pub client: reqwest::Client,
    pub auth_database_url: String,
    /// books-service's `DATABASE_URL`.
    pub books_database_url: String,
    pub redis_prefix: String,
    pub redis: String,
    auth_vars: HashMap<String, String>,
    pub books_keys: Arc<shared::jwks_cache::JwksCache>,
    /// books-service's book cache (PostgreSQL stacks), to stall it or see its lease.
    pub books_cache: Option<books_service::cache::BookCache>,
    /// auth-service's `AUTH_KEYS_DIR`.
    pub keys_dir: std::path::PathBuf,
    /// auth-service's test hooks, to hold a request between two steps.
    pub auth_pauses: Arc<auth_service::pause::PausePoints>,
    _databases: Vec<TestDatabase>,
    _dir: tempfile::TempDir,
}

fn vars(pairs: Vec<(&str, String)>) -> HashMap<String, String> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

pub async fn spawn_stack(backend: Backend) -> Stack {
    spawn_stack_with(backend, &[], &[], redis_url()).await
}

/// `auth_extra`/`books_extra` add settings to each service; `redis` is the Redis both use on
/// PostgreSQL.
pub async fn spawn_stack_with(
    backend: Backend,
    auth_extra: &[(&str, &str)],
    books_extra: &[(&str, &str)],
    redis: String,
) -> Stack {
    if std::env::var("TEST_LOG").is_ok() {
        shared::telemetry::init("debug");
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let prefix = format!("test:{}:", uuid::Uuid::new_v4().simple());
    let redis_prefix = prefix.clone();
    let redis_for_stack = redis.clone();
    let mut databases = Vec::new();
    let (auth_db, books_db, shared_store) = match backend {
        Backend::Postgres => {
            let (a, b) = (TestDatabase::create(), TestDatabase::create());
            let urls = (a.url.clone(), b.url.clone());
            databases.extend([a, b]);
            (urls.0, urls.1, None)
        }
        Backend::Sqlite => (
            format!("sqlite://{}", dir.path().join("auth.db").display()),
            format!("sqlite://{}", dir.path().join("books.db").display()),
            Some(Arc::new(MemoryRevocations::new())),
        ),
    };
    let mut common = vec![
        ("LISTEN_ADDR", "127.0.0.1:0".to_owned()),
        ("REDIS_KEY_PREFIX", prefix),
        ("HTTP_WORKERS", "2".to_owned()),
    ];
    if backend == Backend::Postgres {
        common.push(("REDIS_URL", redis));
    }

    let mut auth_vars = vars(common.clone());
    auth_vars.insert("DATABASE_URL".into(), auth_db.clone());
    auth_vars.insert(
        "AUTH_KEYS_DIR".into(),
        dir.path().join("keys").display().to_string(),
    );
    for (k, v) in auth_extra {
        auth_vars.insert((*k).to_owned(), (*v).to_owned());
    }
    let auth_vars_kept = auth_vars.clone();
    let auth_settings = auth_service::Settings::from_vars(auth_vars).expect("auth settings");
    let auth_app = auth_service::Application::build_with(auth_settings, shared_store.clone())
        .await
        .expect("auth-service starts");
    let auth = format!("http://127.0.0.1:{}", auth_app.port());
    let auth_pauses = auth_app.pause_points();
    tokio::spawn(auth_app.run_until_stopped());

    let mut books_vars = vars(common);
    books_vars.insert("DATABASE_URL".into(), books_db.clone());
    books_vars.insert("JWKS_URL".into(), format!("{auth}/.well-known/jwks.json"));
    for (k, v) in books_extra {
        books_vars.insert((*k).to_owned(), (*v).to_owned());
    }
    let books_settings = books_service::Settings::from_vars(books_vars).expect("books settings");
    let books_app = books_service::Application::build_with(
        books_settings,
        shared_store.map(|s| s as Arc<dyn RevocationCheck>),
    )
    .await
    .expect("books-service starts");
    let books = format!("http://127.0.0.1:{}", books_app.port());
    let books_keys = books_app.keys();
    let books_cache = books_app.book_cache();
    tokio::spawn(books_app.run_until_stopped());

    let stack = Stack {
        auth,
        books,
        client: reqwest::Client::new(),
        auth_database_url: auth_db,
        books_database_url: books_db,
        redis_prefix,
        redis: redis_for_stack,
        auth_vars: auth_vars_kept,
        books_keys,
        books_cache,
        keys_dir: dir.path().join("keys"),
        auth_pauses,
        _databases: databases,
        _dir: dir,
    };
    stack.wait_until_ready().await;
    stack
}

impl Stack {
    /// Another books-service instance (PostgreSQL backend) on the same Redis feed and JWKS;
    /// returns its base URL and the database it owns.
    pub async fn another_books_instance(&self) -> (String, TestDatabase) {
        let database = TestDatabase::create();
        let settings = books_service::Settings::from_vars(vars(vec![
            ("LISTEN_ADDR", "127.0.0.1:0".to_owned()),
            ("HTTP_WORKERS", "1".to_owned()),
            ("DATABASE_URL", database.url.clone()),
            ("REDIS_URL", self.redis.clone()),
            ("REDIS_KEY_PREFIX", self.redis_prefix.clone()),
            ("JWKS_URL", format!("{}/.well-known/jwks.json", self.auth)),
        ]))
        .expect("books settings");
        let app = books_service::Application::build(settings)
            .await
            .expect("books-service starts");
        let url = format!("http://127.0.0.1:{}", app.port());
        tokio::spawn(app.run_until_stopped());
        wait_until_ready(&self.client, &url).await;
        (url, database)
    }

    /// Another books-service instance on this stack's own books database (PostgreSQL), Redis and
    /// JWKS, with `workers` workers; returns its base URL once ready.
    pub async fn books_instance_on_same_database(&self, workers: usize) -> String {
        self.books_instance_with_cache(workers).await.0
    }

    /// As `books_instance_on_same_database`, with the instance's book cache.
    pub async fn books_instance_with_cache(
        &self,
        workers: usize,
    ) -> (String, books_service::cache::BookCache) {
        let settings = books_service::Settings::from_vars(vars(vec![
            ("LISTEN_ADDR", "127.0.0.1:0".to_owned()),
            ("HTTP_WORKERS", workers.to_string()),
            ("DATABASE_URL", self.books_database_url.clone()),
            ("REDIS_URL", self.redis.clone()),
            ("REDIS_KEY_PREFIX", self.redis_prefix.clone()),
            ("JWKS_URL", format!("{}/.well-known/jwks.json", self.auth)),
        ]))
        .expect("books settings");
        let app = books_service::Application::build(settings)
            .await
            .expect("books-service starts");
        let url = format!("http://127.0.0.1:{}", app.port());
        let cache = app.book_cache().expect("a cache with Redis");
        tokio::spawn(app.run_until_stopped());
        wait_until_ready(&self.client, &url).await;
        (url, cache)
    }

    /// Another books-service instance, on embedded SQLite in `dir`, with auth-service's JWKS and
    /// the `extra` settings (its revocation source); returns its base URL once it listens, ready
    /// or not.
    pub async fn books_instance(&self, dir: &std::path::Path, extra: &[(&str, &str)]) -> String {
        let mut settings = vars(vec![
            ("LISTEN_ADDR", "127.0.0.1:0".to_owned()),
            ("HTTP_WORKERS", "1".to_owned()),
            (
                "DATABASE_URL",
                format!("sqlite://{}", dir.join("books.db").display()),
            ),
            ("JWKS_URL", format!("{}/.well-known/jwks.json", self.auth)),
        ]);
        for (k, v) in extra {
            settings.insert((*k).to_owned(), (*v).to_owned());
        }
        let settings = books_service::Settings::from_vars(settings).expect("books settings");
        let app = books_service::Application::build(settings)
            .await
            .expect("books-service starts");
        let url = format!("http://127.0.0.1:{}", app.port());
        tokio::spawn(app.run_until_stopped());
        url
    }

    /// A second auth-service instance on the same database, keys and Redis; returns its URL.
    pub async fn another_auth_instance(&self) -> String {
        let settings =
            auth_service::Settings::from_vars(self.auth_vars.clone()).expect("auth settings");
        let app = auth_service::Application::build(settings)
            .await
            .expect("auth-service starts");
        let url = format!("http://127.0.0.1:{}", app.port());
        tokio::spawn(app.run_until_stopped());
        url
    }

    pub async fn wait_until_ready(&self) {
        wait_until_ready(&self.client, &self.books).await
    }

    pub async fn login(&self, username: &str) -> Tokens {
        let response = self
            .client
            .post(format!("{}/auth/login", self.auth))
            .json(&json!({ "username": username, "password": PASSWORD }))
            .send()
            .await
            .unwrap();
        tokens(response).await
    }

    /// A service token (client credentials) granted `scopes`: a fresh admin creates the
    /// client through auth-service's API, which then issues the token.
    pub async fn service_token(&self, scopes: &[&str]) -> String {
        let admin = self
            .user_with_roles(
                &format!("admin-{}", uuid::Uuid::new_v4().simple()),
                "user,admin",
            )
            .await;
        let created: Value = self
            .client
            .post(format!("{}/auth/clients", self.auth))
            .bearer_auth(&admin.access)
            .json(&json!({ "name": "a service", "scopes": scopes }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let response = self
            .client
            .post(format!("{}/oauth/token", self.auth))
            .basic_auth(
                created["client_id"].as_str().unwrap(),
                created["client_secret"].as_str(),
            )
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// Registers `username` with `roles` (set in auth's database, as an admin tool would) and
    /// logs in.
    pub async fn user_with_roles(&self, username: &str, roles: &str) -> Tokens {
        let response = self
            .client
            .post(format!("{}/auth/register", self.auth))
            .json(&json!({ "username": username, "password": PASSWORD }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let url = shared::db::DatabaseUrl::parse(&self.auth_database_url).unwrap();
        let pool = shared::db::connect_and_migrate(
            &url,
            auth_service::startup::MIGRATIONS,
            std::time::Duration::from_secs(2),
        )
        .unwrap();
        diesel::sql_query(format!(
            "UPDATE users SET roles = '{roles}' WHERE username = '{username}'"
        ))
        .execute(&mut *pool.get().unwrap())
        .unwrap();
        self.login(username).await
    }

    pub async fn refresh(&self, refresh_token: &str) -> Tokens {
        let response = self
            .client
            .post(format!("{}/auth/refresh", self.auth))
            .bearer_auth(refresh_token)
            .send()
            .await
            .unwrap();
        tokens(response).await
    }

    pub async fn logout(&self, tokens: &Tokens) -> Response {
        self.client
            .post(format!("{}/auth/logout", self.auth))
            .bearer_auth(&tokens.access)
            .json(&json!({ "refresh_token": tokens.refresh }))
            .send()
            .await
            .unwrap()
    }

    pub fn books_url(&self, path: &str) -> String {
        format!("{}{}", self.books, path)
    }

    pub async fn create_book(&self, token: &str, body: &Value) -> Response {
        self.client
            .post(self.books_url("/books"))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn get_book(&self, token: &str, id: &str) -> Response {
        self.get(token, &format!("/books/{id}")).await
    }

    pub async fn get(&self, token: &str, path: &str) -> Response {
        let send = || {
            self.client
                .get(self.books_url(path))
                .bearer_auth(token)
                .send()
        };
        match send().await {
            Ok(response) => response,
            // A GET is idempotent: once more on a fresh connection when the pooled one was
            // closed under us (seen as a reset on a loaded machine), as any HTTP client would.
            Err(err) if err.is_request() || err.is_connect() => send().await.unwrap(),
            Err(err) => panic!("GET {path}: {err}"),
        }
    }

    pub async fn replace_book(
        &self,
        token: &str,
        id: &str,
        if_match: Option<&str>,
        body: &Value,
    ) -> Response {
        let mut request = self
            .client
            .put(self.books_url(&format!("/books/{id}")))
            .bearer_auth(token)
            .json(body);
        if let Some(etag) = if_match {
            request = request.header("If-Match", etag);
        }
        request.send().await.unwrap()
    }

    pub async fn delete_book(&self, token: &str, id: &str, if_match: Option<&str>) -> Response {
        let mut request = self
            .client
            .delete(self.books_url(&format!("/books/{id}")))
            .bearer_auth(token);
        if let Some(etag) = if_match {
            request = request.header("If-Match", etag);
        }
        request.send().await.unwrap()
    }

    /// The `/metrics` text of the service at `base`.
    pub async fn metrics(&self, base: &str) -> String {
        let response = self.client.get(format!("{base}/metrics")).send().await;
        response.unwrap().text().await.unwrap()
    }

    /// Counter `name` (labels included) of the service at `base`; 0 before its first bump.
    pub async fn counter(&self, base: &str, name: &str) -> u64 {
        self.metrics(base)
            .await
            .lines()
            .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Total requests auth-service has answered, from its own metrics.
    pub async fn auth_request_count(&self) -> u64 {
        let text = self.metrics(&self.auth).await;
        text.lines()
            .filter(|l| l.starts_with("http_requests_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }
}

/// Polls `/readyz` until 200 (at most 10 s).
pub fn book(title: &str, author: &str) -> Value {
    json!({ "title": title, "author": author })
}

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
