//! Test support for the services' integration tests (feature `testing`): a PostgreSQL database
//! per test and the addresses of the local PostgreSQL and Redis.

use diesel::{Connection, PgConnection, RunQueryDsl};
use serde_json::Value;

/// `TEST_PG_URL` (server URL without a database), default the local trust-auth server.
pub fn pg_base_url() -> String {
    std::env::var("TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// The URL of database `name` on the test server, with `TEST_PG_OPTIONS` (default
/// `?sslmode=disable`: plain TCP, as in docker-compose.yml). Without it libpq negotiates TLS
/// with a server that offers it (Debian's does). A test binary whose tests had all passed once
/// aborted at exit with "double free or corruption" (one CI run in four); the likely cause is
/// OpenSSL's exit-time cleanup running while pooled connections in other threads still use it,
/// and plain TCP keeps OpenSSL out of the tests' database connections.
pub fn pg_url(name: &str) -> String {
    let options = std::env::var("TEST_PG_OPTIONS").unwrap_or_else(|_| "?sslmode=disable".into());
    format!("{}/{name}{options}", pg_base_url())
}

/// `TEST_REDIS_URL`, default the local Redis.
pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A PostgreSQL database made for one test and dropped (with its connections) after it.
pub struct TestDatabase {
    name: String,
    pub url: String,
}

impl TestDatabase {
    pub fn create() -> Self {
        let name = format!("authbooks_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::establish(&pg_url("postgres"))
            .expect("PostgreSQL must be running for the tests (see README)");
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .expect("create test database");
        let url = pg_url(&name);
        Self { name, url }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Ok(mut admin) = PgConnection::establish(&pg_url("postgres")) {
            let _ = diesel::sql_query(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&mut admin);
        }
    }
}

/// The claims of a JWT, decoded without any verification (to inspect what was issued).
pub fn payload(token: &str) -> Value {
    use base64::Engine;
    let part = token.split('.').nth(1).expect("payload part");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("json payload")
}

fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(reference) => {
            let name = reference.trim_start_matches("#/components/schemas/");
            &doc["components"]["schemas"][name]
        }
        None => schema,
    }
}

/// A small JSON Schema check: `$ref`, `allOf`, `type` (one or several), `enum`, `properties`,
/// `required`, `additionalProperties` and `items` — what our document uses. Undocumented
/// properties are refused too, so a response that grows a field must grow its schema.
pub fn conforms(doc: &Value, schema: &Value, value: &Value) -> Result<(), String> {
    if schema["$ref"].is_string() {
        return conforms(doc, resolve(doc, schema), value);
    }
    if let Some(all) = schema["allOf"].as_array() {
        // Each part may name only some properties; together they must name every one.
        let parts: Vec<&Value> = all.iter().map(|part| resolve(doc, part)).collect();
        if let Value::Object(members) = value {
            for name in members.keys() {
                if !parts.iter().any(|p| p["properties"].get(name).is_some()) {
                    return Err(format!("`{name}` is not documented"));
                }
            }
        }
        let loose = |part: &Value| {
            let mut part = part.clone();
            part["additionalProperties"] = serde_json::json!({});
            part
        };
        return parts
            .iter()
            .try_for_each(|p| conforms(doc, &loose(p), value));
    }
    if let Some(allowed) = schema["enum"].as_array() {
        if !allowed.contains(value) {
            return Err(format!("{value} is not one of {allowed:?}"));
        }
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    let type_of = match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    let typed = types.is_empty()
        || types.contains(&type_of)
        || (type_of == "integer" && types.contains(&"number"));
    if !typed {
        return Err(format!("{value} is not of type {types:?}"));
    }
    if let Value::Object(members) = value {
        for name in schema["required"].as_array().into_iter().flatten() {
            let name = name.as_str().unwrap_or_default();
            if !members.contains_key(name) {
                return Err(format!("required `{name}` is missing"));
            }
        }
        let properties = schema["properties"].as_object();
        for (name, member) in members {
            match properties.and_then(|p| p.get(name)) {
                Some(property) => conforms(doc, property, member)?,
                None if schema["additionalProperties"].is_object() => {
                    conforms(doc, &schema["additionalProperties"], member)?
                }
                None if properties.is_some() => return Err(format!("`{name}` is not documented")),
                None => {}
            }
        }
    }
    if let (Value::Array(items), Some(_)) = (value, schema.get("items")) {
        for item in items {
            conforms(doc, &schema["items"], item)?;
        }
    }
    Ok(())
}

/// The error codes a documented error response lists (its `ErrorBody` schema, narrowed).
pub fn error_codes(response: &Value) -> Vec<String> {
    response["content"]["application/json"]["schema"]["allOf"][1]["properties"]["error"]["enum"]
        .as_array()
        .map(|codes| {
            codes
                .iter()
                .filter_map(|c| c.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Every HTTP method a route could take.
pub const METHODS: [&str; 7] = ["get", "head", "post", "put", "patch", "delete", "options"];

/// Sends every method to every path of `doc` on the server at `base` (`{id}` filled with a fresh
/// UUID). A method the document does not list must get the router's fallback answer (as judged
/// by `is_fallback(status, body, method)`); one it lists must not, and must answer a status, and
/// for errors a code, that its operation documents.
pub async fn check_every_route(
    client: &reqwest::Client,
    base: &str,
    doc: &Value,
    is_fallback: impl Fn(reqwest::StatusCode, &Value, &str) -> bool,
) {
    for (path, item) in doc["paths"].as_object().expect("paths") {
        let url = format!(
            "{base}{}",
            path.replace("{id}", &uuid::Uuid::new_v4().to_string())
        );
        for method in METHODS {
            let method_name =
                reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            let response = client
                .request(method_name, &url)
                .send()
                .await
                .expect("request");
            let status = response.status();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            let fallback = is_fallback(status, &body, method);
            let Some(operation) = item.get(method) else {
                assert!(
                    fallback,
                    "{method} {path} answers {status} {body} but is not documented"
                );
                continue;
            };
            assert!(!fallback, "{method} {path} is documented but not routed");
            let documented = &operation["responses"][status.as_str()];
            assert!(
                documented.is_object(),
                "{method} {path}: {status} is not documented"
            );
            if !status.is_success() {
                let code = body["error"].as_str().unwrap_or_default().to_owned();
                assert!(
                    error_codes(documented).contains(&code),
                    "{method} {path}: {status} {code} is not documented"
                );
            }
        }
    }
}

/// A loopback port no one listens on at the moment of asking (bound and released at once), for
/// a server a test starts itself.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// A Redis server of the test's own on a free port (no persistence), so a test can stop and
/// restart it without touching anyone else's.
pub struct PrivateRedis {
    pub port: u16,
    child: Option<std::process::Child>,
}

impl PrivateRedis {
    pub fn start() -> Self {
        let mut redis = Self {
            port: free_port(),
            child: None,
        };
        redis.restart();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server again (empty: nothing is kept on disk).
    pub fn restart(&mut self) {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server must be installed (.ci/run installs it)");
        self.child = Some(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        panic!("private redis did not start");
    }

    /// Stops the server at once (`kill -9`).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A token pair as the services answer it.
#[derive(Clone, Debug)]
pub struct Tokens {
    pub access: String,
    pub refresh: String,
}

/// The pair of a `200` login or refresh answer.
pub async fn tokens(response: reqwest::Response) -> Tokens {
    assert_eq!(
        response.status(),
        reqwest::StatusCode::OK,
        "token pair expected"
    );
    let body: Value = response.json().await.expect("JSON token pair");
    let token = |name: &str| body[name].as_str().expect(name).to_owned();
    Tokens {
        access: token("access_token"),
        refresh: token("refresh_token"),
    }
}

/// Asserts an error answer of the contract — status, `error` code, a message, and on 401 the
/// RFC 6750 `WWW-Authenticate` challenge — and returns its body.
pub async fn assert_error(
    response: reqwest::Response,
    status: reqwest::StatusCode,
    code: &str,
) -> Value {
    assert_eq!(response.status(), status, "status");
    let challenge = response
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body: Value = response.json().await.expect("JSON error body");
    assert_eq!(body["error"], code, "error code in {body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    if status == reqwest::StatusCode::UNAUTHORIZED {
        let challenge = challenge.expect("401 carries WWW-Authenticate");
        assert!(challenge.starts_with("Bearer error="), "{challenge}");
    }
    body
}

/// Waits (up to 15 s) until `base/readyz` answers 200.
pub async fn wait_ready(client: &reqwest::Client, base: &str) {
    for _ in 0..300 {
        let ready = client.get(format!("{base}/readyz")).send().await;
        if ready.is_ok_and(|r| r.status() == reqwest::StatusCode::OK) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("{base} did not become ready");
}

// ---- The API reference (docs/api.md) against the code -----------------------------------------

/// What `docs` (the text of `docs/api.md`) misses as the reference of the service whose generated
/// OpenAPI document is `openapi`: every operation needs a heading (a line starting with `#`)
/// that names it in backticks as `` `POST /auth/login` ``, and the text under that heading, up to
/// the next heading, must name in backticks every error code the operation documents
/// (`` `invalid_credentials` ``). Empty when nothing is missing.
pub fn api_reference_gaps(openapi: &Value, docs: &str) -> Vec<String> {
    let Some(paths) = openapi["paths"].as_object().filter(|p| !p.is_empty()) else {
        return vec!["the OpenAPI document has no paths".into()];
    };
    let lines: Vec<&str> = docs.lines().collect();
    let mut gaps = Vec::new();
    for (path, item) in paths {
        let operations = item.as_object().into_iter().flatten();
        for (method, operation) in operations.filter(|(m, _)| METHODS.contains(&m.as_str())) {
            let route = format!("`{} {path}`", method.to_uppercase());
            let Some(heading) = lines
                .iter()
                .position(|line| line.starts_with('#') && line.contains(&route))
            else {
                gaps.push(format!("{route}: no heading names it"));
                continue;
            };
            let section: Vec<&str> = lines[heading + 1..]
                .iter()
                .take_while(|line| !line.starts_with('#'))
                .copied()
                .collect();
            let section = section.join("\n");
            let responses = operation["responses"].as_object().into_iter().flatten();
            for (status, response) in responses.filter(|(s, _)| s.starts_with(['4', '5'])) {
                for code in error_codes(response) {
                    if !section.contains(&format!("`{code}`")) {
                        gaps.push(format!("{route}: {status} `{code}` is not named"));
                    }
                }
            }
        }
    }
    gaps
}

/// The environment variables a service reads: every quoted `NAME_LIKE_THIS` in its `config.rs`
/// (`config_source`; unit tests after `#[cfg(test)]` excluded), the ones every service reads
/// through [`crate::config::Env`] (`LISTEN_ADDR`, `DATABASE_URL`, `REDIS_URL`, `HTTP_WORKERS`),
/// and `RUST_LOG`, the log filter of [`crate::telemetry::init`].
pub fn variables_read(config_source: &str) -> std::collections::BTreeSet<String> {
    fn quoted_names(source: &str) -> impl Iterator<Item = String> + '_ {
        let code = source.split("#[cfg(test)]").next().unwrap_or_default();
        code.split('"')
            .filter(|s| {
                s.len() >= 3
                    && s.starts_with(|c: char| c.is_ascii_uppercase())
                    && s.contains('_')
                    && s.bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
            })
            .map(str::to_owned)
    }
    let mut names: std::collections::BTreeSet<String> = quoted_names(config_source)
        .chain(quoted_names(include_str!("config.rs")))
        .collect();
    names.insert("RUST_LOG".into());
    names
}

/// The variables the configuration table of `docs/api.md` gives for `service` (`auth` or
/// `books`): the rows under `## Configuration` whose first cell is one `` `NAME` `` and whose
/// second cell is `service` or `both`.
pub fn variables_documented(docs: &str, service: &str) -> std::collections::BTreeSet<String> {
    let section = docs
        .split("\n## Configuration")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .unwrap_or_default();
    section
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.trim().trim_matches('|').split('|').collect();
            let name = cells.first()?.trim().strip_prefix('`')?.strip_suffix('`')?;
            let scope = cells.get(1)?.trim();
            let is_name = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
            (is_name && (scope == service || scope == "both")).then(|| name.to_owned())
        })
        .collect()
}
