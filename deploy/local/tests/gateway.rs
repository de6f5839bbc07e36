//! The real nginx with the project's gateway config in front of two auth-service and two
//! books-service processes on PostgreSQL + Redis, driven through the gateway.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use shared::testing::{redis_url, TestDatabase};
use support::{free_port, service, wait_ready, Process};

/// Renders deploy/nginx.conf.template as its header comment says, and starts nginx in the
/// foreground with a private prefix.
fn gateway(prefix: &Path, port: u16, auth: &[u16], books: &[u16]) -> Process {
    let servers = |ports: &[u16]| {
        ports
            .iter()
            .map(|p| format!("server 127.0.0.1:{p} max_fails=1 fail_timeout=5s;"))
            .collect::<Vec<_>>()
            .join("\n        ")
    };
    let template = include_str!("../../nginx.conf.template");
    let config = template
        .replace("${AUTH_SERVERS}", &servers(auth))
        .replace("${BOOKS_SERVERS}", &servers(books))
        .replace("${GATEWAY_PORT}", &port.to_string())
        .replace("${NGINX_PREFIX}", &prefix.display().to_string())
        .replace("${NGINX_RESOLVER}", "")
        .replace(
            "${WEB_ROOT}",
            concat!(env!("CARGO_MANIFEST_DIR"), "/../web"),
        );
    let path = prefix.join("nginx.conf");
    std::fs::write(&path, config).unwrap();
    // nginx's workers may run as another user: let them write their temp files.
    std::process::Command::new("chmod")
        .args(["-R", "a+rwx", &prefix.display().to_string()])
        .status()
        .unwrap();
    let child = Command::new("nginx")
        .args(["-e", "stderr", "-p"])
        .arg(prefix)
        .arg("-c")
        .arg(&path)
        .args(["-g", "daemon off;"])
        .stdout(Stdio::null())
        .spawn()
        .expect("nginx must be installed (.ci/run installs it)");
    Process(child)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_flow_through_nginx_with_two_instances_of_each_service() {
    let client = reqwest::Client::new();
    let dir = tempfile::tempdir().unwrap();
    let (auth_db, books_db) = (TestDatabase::create(), TestDatabase::create());
    let prefix = format!("e2e:{}:", uuid::Uuid::new_v4().simple());
    let common = [
        ("REDIS_URL", redis_url()),
        ("REDIS_KEY_PREFIX", prefix),
        ("AUTH_TRUSTED_PROXIES", "127.0.0.1".to_owned()),
    ];
    let auth_env = |extra: Vec<(&'static str, String)>| {
        let mut env = common.to_vec();
        env.push(("DATABASE_URL", auth_db.url.clone()));
        env.push((
            "AUTH_KEYS_DIR",
            dir.path().join("keys").display().to_string(),
        ));
        env.extend(extra);
        env
    };
    let (auth_ports, books_ports) = ([free_port(), free_port()], [free_port(), free_port()]);
    let gateway_port = free_port();
    let base = format!("http://127.0.0.1:{gateway_port}");

    // One at a time: the first creates the schema and the signing key the second reuses.
    let mut auth = Vec::new();
    for port in auth_ports {
        auth.push(service("auth", port, &auth_env(vec![])));
        wait_ready(&client, &format!("http://127.0.0.1:{port}")).await;
    }
    let mut books = Vec::new();
    for port in books_ports {
        let mut env = common.to_vec();
        env.push(("DATABASE_URL", books_db.url.clone()));
        env.push(("JWKS_URL", format!("{base}/.well-known/jwks.json")));
        books.push(Some(service("books", port, &env)));
    }
    let nginx_prefix = dir.path().join("nginx");
    std::fs::create_dir_all(&nginx_prefix).unwrap();
    let _nginx = gateway(&nginx_prefix, gateway_port, &auth_ports, &books_ports);
    for port in books_ports {
        wait_ready(&client, &format!("http://127.0.0.1:{port}")).await;
    }

    // The gateway answers what it does not route with the contract's JSON.
    let unknown = client.get(format!("{base}/nope")).send().await.unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert_eq!(unknown.json::<Value>().await.unwrap()["error"], "not_found");

    // register, login (an editor and admin, set as an operator would), CRUD, refresh, logout
    let registered = client
        .post(format!("{base}/auth/register"))
        .json(&json!({ "username": "gwen", "password": "gateway-password" }))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), StatusCode::CREATED);
    let pool = shared::db::connect_and_migrate(
        &shared::db::DatabaseUrl::parse(&auth_db.url).unwrap(),
        auth_service::startup::MIGRATIONS,
        Duration::from_secs(2),
    )
    .unwrap();
    diesel_exec(
        &pool,
        "UPDATE users SET roles = 'user,editor,admin' WHERE username = 'gwen'",
    );
    let login = |client: &reqwest::Client| {
        client
            .post(format!("{base}/auth/login"))
            .json(&json!({ "username": "gwen", "password": "gateway-password" }))
            .send()
    };
    let tokens: Value = login(&client).await.unwrap().json().await.unwrap();
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();

    let mut ids = Vec::new();
    for i in 0..20 {
        let created = client
            .post(format!("{base}/books"))
            .bearer_auth(&access)
            .json(&json!({ "title": format!("Gateway book {i}"), "author": "Nginx" }))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), StatusCode::CREATED);
        ids.push(
            created.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let replaced = client
        .put(format!("{base}/books/{}", ids[0]))
        .bearer_auth(&access)
        .header("If-Match", "\"1\"")
        .json(&json!({ "title": "Renamed", "author": "Nginx" }))
        .send()
        .await
        .unwrap();
    assert_eq!(replaced.status(), StatusCode::OK);
    let deleted = client
        .delete(format!("{base}/books/{}", ids.pop().unwrap()))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);

    // Kill one books instance in the middle of a run of reads: the gateway retries them.
    let mut failures = Vec::new();
    for i in 0..120 {
        if i == 40 {
            if let Some(mut victim) = books[1].take() {
                victim.kill_hard();
            }
        }
        let id = &ids[i % ids.len()];
        let response = client
            .get(format!("{base}/books/{id}"))
            .bearer_auth(&access)
            .send()
            .await
            .unwrap();
        if response.status() != StatusCode::OK {
            failures.push((i, response.status()));
        }
    }
    assert!(failures.is_empty(), "reads lost: {failures:?}");
    let listed: Value = client
        .get(format!("{base}/books?limit=100"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        listed["items"].as_array().unwrap().len(),
        ids.len(),
        "no data lost"
    );

    let refreshed = client
        .post(format!("{base}/auth/refresh"))
        .bearer_auth(&refresh)
        .send()
        .await
        .unwrap();
    assert_eq!(refreshed.status(), StatusCode::OK);

    // A token revoked through one auth instance is refused by both books instances.
    let second: Value = login(&client).await.unwrap().json().await.unwrap();
    let second_access = second["access_token"].as_str().unwrap().to_owned();
    books[1] = Some(service(
        "books",
        books_ports[1],
        &[
            common[0].clone(),
            common[1].clone(),
            ("DATABASE_URL", books_db.url.clone()),
            ("JWKS_URL", format!("{base}/.well-known/jwks.json")),
        ],
    ));
    wait_ready(&client, &format!("http://127.0.0.1:{}", books_ports[1])).await;
    let logout = client
        .post(format!("http://127.0.0.1:{}/auth/logout", auth_ports[0]))
        .bearer_auth(&second_access)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    for port in books_ports {
        let mut status = StatusCode::OK;
        for _ in 0..100 {
            status = client
                .get(format!("http://127.0.0.1:{port}/books"))
                .bearer_auth(&second_access)
                .send()
                .await
                .unwrap()
                .status();
            if status == StatusCode::UNAUTHORIZED {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(status, StatusCode::UNAUTHORIZED, "books on {port}");
    }
    drop(auth);
}

fn diesel_exec(pool: &shared::db::DbPool, sql: &str) {
    use diesel::RunQueryDsl;
    diesel::sql_query(sql)
        .execute(&mut *pool.get().unwrap())
        .unwrap();
}
