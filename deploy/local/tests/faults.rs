//! Fault tests with real processes: PostgreSQL and Redis going away and coming back, services
//! killed with SIGKILL in the middle of writes, Redis restarted from its append-only file.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use diesel::RunQueryDsl;
use reqwest::StatusCode;
use serde_json::{json, Value};
use shared::testing::{redis_url, TestDatabase};
use support::{free_port, service, wait_ready, PrivatePostgres, PrivateRedis};

const PASSWORD: &str = "fault-test-password";

fn prefix() -> String {
    format!("faults:{}:", uuid::Uuid::new_v4().simple())
}

fn execute(database_url: &str, sql: &str) {
    let pool = shared::db::connect_and_migrate(
        &shared::db::DatabaseUrl::parse(database_url).unwrap(),
        auth_service::startup::MIGRATIONS,
        Duration::from_secs(5),
    )
    .unwrap();
    diesel::sql_query(sql)
        .execute(&mut *pool.get().unwrap())
        .unwrap();
}

/// Registers `username`, gives it `roles` in auth's database and logs in; the access token.
async fn user(
    client: &reqwest::Client,
    auth: &str,
    auth_db: &str,
    username: &str,
    roles: &str,
) -> Value {
    let registered = client
        .post(format!("{auth}/auth/register"))
        .json(&json!({ "username": username, "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), StatusCode::CREATED);
    execute(
        auth_db,
        &format!("UPDATE users SET roles = '{roles}' WHERE username = '{username}'"),
    );
    login(client, auth, username).await
}

async fn login(client: &reqwest::Client, auth: &str, username: &str) -> Value {
    let response = client
        .post(format!("{auth}/auth/login"))
        .json(&json!({ "username": username, "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

fn token(pair: &Value, kind: &str) -> String {
    pair[format!("{kind}_token")].as_str().unwrap().to_owned()
}

/// Polls until `check` passes, at most `seconds`.
async fn eventually<F, Fut>(seconds: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within {seconds} s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn status_and_code(response: reqwest::Response) -> (StatusCode, String) {
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (
        status,
        body["error"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_is_503_and_both_services_recover_without_restart() {
    let postgres = PrivatePostgres::start();
    postgres.create_database("auth");
    postgres.create_database("books");
    let keys = tempfile::tempdir().unwrap();
    let (auth_port, books_port) = (free_port(), free_port());
    let (auth, books) = (
        format!("http://127.0.0.1:{auth_port}"),
        format!("http://127.0.0.1:{books_port}"),
    );
    let common = [("REDIS_URL", redis_url()), ("REDIS_KEY_PREFIX", prefix())];
    let mut auth_env = common.to_vec();
    auth_env.push(("DATABASE_URL", postgres.url("auth")));
    auth_env.push(("AUTH_KEYS_DIR", keys.path().display().to_string()));
    let _auth = service("auth", auth_port, &auth_env);
    let client = reqwest::Client::new();
    wait_ready(&client, &auth).await;
    let mut books_env = common.to_vec();
    books_env.push(("DATABASE_URL", postgres.url("books")));
    books_env.push(("JWKS_URL", format!("{auth}/.well-known/jwks.json")));
    let _books = service("books", books_port, &books_env);
    wait_ready(&client, &books).await;
    let pair = user(&client, &auth, &postgres.url("auth"), "olga", "user,editor").await;
    let access = token(&pair, "access");
    let created: Value = client
        .post(format!("{books}/books"))
        .bearer_auth(&access)
        .json(&json!({ "title": "Before the outage", "author": "A" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();

    postgres.stop();

    let read = client
        .get(format!("{books}/books/{id}"))
        .bearer_auth(&access)
        .send()
        .await;
    assert_eq!(
        status_and_code(read.unwrap()).await,
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable".into())
    );
    let write = client
        .post(format!("{books}/books"))
        .bearer_auth(&access)
        .json(&json!({ "title": "During the outage", "author": "A" }))
        .send()
        .await;
    assert_eq!(
        status_and_code(write.unwrap()).await,
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable".into())
    );
    let register = client
        .post(format!("{auth}/auth/register"))
        .json(&json!({ "username": "during", "password": PASSWORD }))
        .send()
        .await;
    assert_eq!(
        status_and_code(register.unwrap()).await,
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable".into())
    );
    for base in [&auth, &books] {
        let ready = client.get(format!("{base}/readyz")).send().await.unwrap();
        assert_eq!(
            ready.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "{base}/readyz"
        );
    }

    postgres.resume();

    eventually(20, "books reads recover", || async {
        let response = client
            .get(format!("{books}/books/{id}"))
            .bearer_auth(&access)
            .send()
            .await;
        response.is_ok_and(|r| r.status() == StatusCode::OK)
    })
    .await;
    // Pages take the pool, whose dead connections each answer one request with 503 before they
    // are replaced (docs/operating.md); single-book reads have connections of their own, so
    // their recovery above no longer drains the pool's.
    let listed = std::sync::Mutex::new(Value::Null);
    eventually(20, "books pages recover", || async {
        let response = client
            .get(format!("{books}/books"))
            .bearer_auth(&access)
            .send()
            .await;
        let Ok(response) = response else {
            return false;
        };
        if response.status() != StatusCode::OK {
            return false;
        }
        *listed.lock().unwrap() = response.json().await.unwrap();
        true
    })
    .await;
    let listed = listed.into_inner().unwrap();
    assert_eq!(
        listed["items"].as_array().unwrap().len(),
        1,
        "nothing half-written: {listed}"
    );
    eventually(20, "auth recovers", || async {
        let response = client
            .post(format!("{auth}/auth/register"))
            .json(&json!({ "username": "after", "password": PASSWORD }))
            .send()
            .await;
        response.is_ok_and(|r| r.status() == StatusCode::CREATED)
    })
    .await;
}

/// Writers that keep creating books until stopped, recording every acknowledged id.
fn spawn_writers(
    client: &reqwest::Client,
    books: &str,
    access: &str,
    acked: &Arc<Mutex<Vec<String>>>,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..4)
        .map(|writer| {
            let (client, url, access) =
                (client.clone(), format!("{books}/books"), access.to_owned());
            let (acked, stop) = (acked.clone(), stop.clone());
            tokio::spawn(async move {
                for n in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let body =
                        json!({ "title": format!("crash {writer}-{n}"), "author": "Writer" });
                    match client
                        .post(&url)
                        .bearer_auth(&access)
                        .json(&body)
                        .send()
                        .await
                    {
                        Ok(r) if r.status() == StatusCode::CREATED => {
                            let book: Value = r.json().await.unwrap();
                            acked
                                .lock()
                                .unwrap()
                                .push(book["id"].as_str().unwrap().to_owned());
                        }
                        _ => return,
                    }
                }
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_writes_loses_no_committed_row_and_leaves_none_half_written() {
    let (auth_db, books_db) = (TestDatabase::create(), TestDatabase::create());
    let keys = tempfile::tempdir().unwrap();
    let (auth_port, books_port) = (free_port(), free_port());
    let (auth, books) = (
        format!("http://127.0.0.1:{auth_port}"),
        format!("http://127.0.0.1:{books_port}"),
    );
    let common = [("REDIS_URL", redis_url()), ("REDIS_KEY_PREFIX", prefix())];
    let mut auth_env = common.to_vec();
    auth_env.push(("DATABASE_URL", auth_db.url.clone()));
    auth_env.push(("AUTH_KEYS_DIR", keys.path().display().to_string()));
    // Registrations keep flowing from one address until the kill.
    auth_env.push(("AUTH_REGISTER_LIMIT_ADDRESS", "1000000".to_owned()));
    let mut books_env = common.to_vec();
    books_env.push(("DATABASE_URL", books_db.url.clone()));
    books_env.push(("JWKS_URL", format!("{auth}/.well-known/jwks.json")));
    let client = reqwest::Client::new();
    let mut auth_process = service("auth", auth_port, &auth_env);
    wait_ready(&client, &auth).await;
    let mut books_process = service("books", books_port, &books_env);
    wait_ready(&client, &books).await;
    let access = token(
        &user(&client, &auth, &auth_db.url, "kira", "user,editor").await,
        "access",
    );

    // Books: kill -9 once 40 writes were acknowledged, with writes still in flight.
    let (acked, stop) = (
        Arc::new(Mutex::new(Vec::new())),
        Arc::new(AtomicBool::new(false)),
    );
    let writers = spawn_writers(&client, &books, &access, &acked, &stop);
    eventually(30, "40 acknowledged writes", || async {
        acked.lock().unwrap().len() >= 40
    })
    .await;
    books_process.kill_hard();
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.await.unwrap();
    }
    let _books_again = service("books", books_port, &books_env);
    wait_ready(&client, &books).await;
    let mut stored = Vec::new();
    let mut path = "/books?limit=100".to_owned();
    loop {
        let page: Value = client
            .get(format!("{books}{path}"))
            .bearer_auth(&access)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for book in page["items"].as_array().unwrap() {
            assert!(
                book["title"].as_str().unwrap().starts_with("crash "),
                "{book}"
            );
            assert_eq!(book["author"], "Writer");
            assert_eq!(book["version"], 1);
            stored.push(book["id"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/books?limit=100&cursor={cursor}"),
            None => break,
        }
    }
    let acked = acked.lock().unwrap().clone();
    for id in &acked {
        assert!(stored.contains(id), "acknowledged book {id} was lost");
    }

    // Users: kill -9 auth-service during registrations.
    let registered = Arc::new(Mutex::new(Vec::new()));
    let registrars: Vec<_> = (0..3)
        .map(|r| {
            let (client, url, registered) = (
                client.clone(),
                format!("{auth}/auth/register"),
                registered.clone(),
            );
            tokio::spawn(async move {
                for n in 0.. {
                    let username = format!("user{r}x{n}");
                    let body = json!({ "username": username, "password": PASSWORD });
                    match client.post(&url).json(&body).send().await {
                        Ok(response) if response.status() == StatusCode::CREATED => {
                            registered.lock().unwrap().push(username)
                        }
                        _ => return,
                    }
                }
            })
        })
        .collect();
    eventually(30, "6 registrations", || async {
        registered.lock().unwrap().len() >= 6
    })
    .await;
    auth_process.kill_hard();
    for registrar in registrars {
        registrar.await.unwrap();
    }
    let _auth_again = service("auth", auth_port, &auth_env);
    wait_ready(&client, &auth).await;
    let registered = registered.lock().unwrap().clone();
    for username in &registered {
        let pair = login(&client, &auth, username).await;
        assert!(
            pair["access_token"].is_string(),
            "{username} can log in after the crash"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_is_503_for_revocation_work_and_aof_keeps_every_revocation() {
    let mut redis = PrivateRedis::start(true);
    let (auth_db, books_db) = (TestDatabase::create(), TestDatabase::create());
    let keys = tempfile::tempdir().unwrap();
    let (auth_port, books_port) = (free_port(), free_port());
    let (auth, books) = (
        format!("http://127.0.0.1:{auth_port}"),
        format!("http://127.0.0.1:{books_port}"),
    );
    let common = [
        ("REDIS_URL", redis.url()),
        ("REDIS_KEY_PREFIX", prefix()),
        ("REVOCATION_STALENESS_MS", "1000".to_owned()),
    ];
    let mut auth_env = common.to_vec();
    auth_env.push(("DATABASE_URL", auth_db.url.clone()));
    auth_env.push(("AUTH_KEYS_DIR", keys.path().display().to_string()));
    let mut books_env = common.to_vec();
    books_env.push(("DATABASE_URL", books_db.url.clone()));
    books_env.push(("JWKS_URL", format!("{auth}/.well-known/jwks.json")));
    let client = reqwest::Client::new();
    let _auth = service("auth", auth_port, &auth_env);
    wait_ready(&client, &auth).await;
    let _books = service("books", books_port, &books_env);
    wait_ready(&client, &books).await;
    let revoked = user(&client, &auth, &auth_db.url, "rhea", "user").await;
    let logout = client
        .post(format!("{auth}/auth/logout"))
        .bearer_auth(token(&revoked, "access"))
        .json(&json!({ "refresh_token": token(&revoked, "refresh") }))
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    let live = login(&client, &auth, "rhea").await;

    redis.crash();

    // Everything that must consult or change revocations refuses rather than guesses.
    let refresh = client
        .post(format!("{auth}/auth/refresh"))
        .bearer_auth(token(&live, "refresh"))
        .send()
        .await;
    assert_eq!(
        status_and_code(refresh.unwrap()).await,
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable".into())
    );
    let logout = client
        .post(format!("{auth}/auth/logout"))
        .bearer_auth(token(&live, "access"))
        .send()
        .await;
    assert_eq!(
        status_and_code(logout.unwrap()).await,
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable".into())
    );
    // books-service serves from its replica until the staleness bound, then refuses.
    eventually(10, "books refuses once its replica is stale", || async {
        let response = client
            .get(format!("{books}/books"))
            .bearer_auth(token(&live, "access"))
            .send()
            .await;
        response.is_ok_and(|r| r.status() == StatusCode::SERVICE_UNAVAILABLE)
    })
    .await;

    redis.resume();

    eventually(20, "books recovers", || async {
        let response = client
            .get(format!("{books}/books"))
            .bearer_auth(token(&live, "access"))
            .send()
            .await;
        response.is_ok_and(|r| r.status() == StatusCode::OK)
    })
    .await;
    // The revocation made before the crash came back from the append-only file.
    for (base, path) in [(&books, "/books"), (&auth, "/auth/me")] {
        let response = client
            .get(format!("{base}{path}"))
            .bearer_auth(token(&revoked, "access"))
            .send()
            .await;
        assert_eq!(
            status_and_code(response.unwrap()).await,
            (StatusCode::UNAUTHORIZED, "token_revoked".into()),
            "{base}"
        );
    }
    eventually(20, "auth recovers", || async {
        let response = client
            .post(format!("{auth}/auth/refresh"))
            .bearer_auth(token(&live, "refresh"))
            .send()
            .await;
        response.is_ok_and(|r| r.status() == StatusCode::OK)
    })
    .await;
    assert!(
        redis.dir().join("appendonlydir").exists() || redis.dir().join("appendonly.aof").exists()
    );
}
