//! `GET /openapi.json`: served, complete against the contract, true to the router, and
//! covered by `docs/api.md`.
//!
//! How an undocumented route fails: the served document is checked against the running
//! server's route table (paths; see `auth_service::routes::openapi`), and
//! `every_route_answers_as_documented` sends every method to every path of that table: a method
//! the document does not list must get the router's fallback (`404 not_found`, "no such
//! resource"), one it lists must not, and must answer a status and error code its operation
//! documents.

use actix_web::{test as actix_test, web, App, HttpResponse};
use auth_service::routes::openapi::ApiDoc;
use reqwest::StatusCode;
use serde_json::{json, Value};
use shared::testing::{
    api_reference_gaps, check_every_route, conforms, error_codes, variables_documented,
    variables_read,
};
use utoipa::OpenApi;

use crate::helpers::{spawn_app, Backend, TestApp, PASSWORD};

/// The auth-service routes of the contract and the common routes: (method, path, success
/// status).
const CONTRACT: &[(&str, &str, &str)] = &[
    ("post", "/auth/register", "201"),
    ("post", "/auth/login", "200"),
    ("post", "/auth/refresh", "200"),
    ("post", "/auth/logout", "204"),
    ("post", "/auth/logout-all", "204"),
    ("get", "/auth/me", "200"),
    ("post", "/auth/password", "204"),
    ("put", "/auth/users/{id}/roles", "200"),
    ("post", "/auth/session", "204"),
    ("delete", "/auth/session", "204"),
    ("post", "/auth/login/mfa", "200"),
    ("get", "/auth/sessions", "200"),
    ("delete", "/auth/sessions/{id}", "204"),
    ("post", "/auth/mfa/totp", "200"),
    ("post", "/auth/mfa/totp/confirm", "200"),
    ("delete", "/auth/mfa/totp", "204"),
    ("get", "/auth/users", "200"),
    ("get", "/auth/users/{id}", "200"),
    ("post", "/auth/users/{id}/disable", "200"),
    ("post", "/auth/users/{id}/enable", "200"),
    ("get", "/auth/users/{id}/sessions", "200"),
    ("delete", "/auth/users/{id}/sessions", "204"),
    ("get", "/auth/audit", "200"),
    ("get", "/.well-known/jwks.json", "200"),
    ("get", "/.well-known/openid-configuration", "200"),
    ("get", "/healthz", "200"),
    ("get", "/readyz", "200"),
    ("get", "/metrics", "200"),
    ("get", "/openapi.json", "200"),
];

async fn served(app: &TestApp) -> Value {
    let response = app.get("/openapi.json").await;
    let status = response.status();
    let content_type = response.headers()["content-type"].clone();
    let body: Value = response.json().await.expect("JSON");
    // A 500 here names the routes the document and the router disagree on.
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(content_type, "application/json");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_covers_the_contract() {
    let app = spawn_app(Backend::Sqlite).await;

    let doc = served(&app).await;

    assert_eq!(doc, serde_json::to_value(ApiDoc::openapi()).unwrap());
    assert_eq!(doc["openapi"], "3.1.0");
    for (method, path, success) in CONTRACT {
        let operation = &doc["paths"][path][method];
        assert!(operation.is_object(), "{method} {path} is not documented");
        assert!(
            operation["responses"][success].is_object(),
            "{method} {path}: no {success}"
        );
    }
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["access_token"]["scheme"], "bearer");
    assert_eq!(schemes["refresh_token"]["scheme"], "bearer");
    assert_eq!(schemes["access_cookie"]["name"], "access_token_cookie");
    assert_eq!(schemes["refresh_cookie"]["name"], "refresh_token_cookie");
    assert_eq!(schemes["csrf_header"]["name"], "X-CSRF-TOKEN");
    assert_eq!(
        doc["components"]["schemas"]["ErrorBody"]["properties"]["error"]["enum"]
            .as_array()
            .map(Vec::len),
        Some(23)
    );

    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let responses = operation["responses"].as_object().unwrap();
            // Bearer-token routes; the OAuth endpoints authenticate clients (HTTP Basic or
            // form fields) and answer RFC 6749 errors instead.
            let secured = operation["security"]
                .as_array()
                .is_some_and(|requirements| {
                    requirements.iter().any(|r| {
                        r.as_object()
                            .is_some_and(|r| r.keys().any(|k| k != "client_basic"))
                    })
                });
            let unauthorized = responses.get("401").map(error_codes).unwrap_or_default();
            assert_eq!(
                secured,
                unauthorized.contains(&"missing_token".to_owned()),
                "{method} {path}: a token route documents missing_token, a public one does not"
            );
            if let Some(unauthorized) = responses.get("401") {
                assert!(unauthorized["headers"]["WWW-Authenticate"].is_object());
            }
            if let Some(limited) = responses.get("429") {
                assert!(limited["headers"]["Retry-After"].is_object());
            }
            for (status, response) in responses {
                if status.starts_with(['4', '5']) {
                    let codes = error_codes(response);
                    assert!(!codes.is_empty(), "{method} {path} {status}: no codes");
                }
            }
        }
    }
    // Headers the contract names.
    let register = &doc["paths"]["/auth/register"]["post"]["responses"]["201"];
    assert!(register["headers"]["Location"].is_object());
    let session = &doc["paths"]["/auth/session"]["post"]["responses"]["204"];
    assert!(session["headers"]["Set-Cookie"].is_object());
    let jwks = &doc["paths"]["/.well-known/jwks.json"]["get"]["responses"]["200"];
    assert!(jwks["headers"]["Cache-Control"].is_object());
}

/// The router's answer when no route takes the request.
fn is_fallback(status: StatusCode, body: &Value, method: &str) -> bool {
    if method == "head" {
        return status == StatusCode::NOT_FOUND;
    }
    status == StatusCode::NOT_FOUND
        && *body == json!({ "error": "not_found", "message": "no such resource" })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_as_documented() {
    let app = spawn_app(Backend::Sqlite).await;
    let doc = served(&app).await;
    check_every_route(&app.client, &app.address, &doc, is_fallback).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_match_their_schemas() {
    let app = spawn_app(Backend::Sqlite).await;
    let doc = served(&app).await;
    let check = |path: &str, method: &str, status: &str, body: &Value| {
        let schema = &doc["paths"][path][method]["responses"][status]["content"]
            ["application/json"]["schema"];
        if let Err(problem) = conforms(&doc, schema, body) {
            panic!("{method} {path} {status}: {problem} in {body}");
        }
    };

    let registered = app.register("schema-user", PASSWORD).await;
    assert_eq!(registered.status(), StatusCode::CREATED);
    check(
        "/auth/register",
        "post",
        "201",
        &registered.json().await.unwrap(),
    );
    let login = app.login("schema-user", PASSWORD).await;
    let body: Value = login.json().await.unwrap();
    check("/auth/login", "post", "200", &body);
    let pair = tokens_of(&body);
    check(
        "/auth/me",
        "get",
        "200",
        &app.me(&pair.0).await.json().await.unwrap(),
    );
    let refreshed: Value = app.refresh(&pair.1).await.json().await.unwrap();
    check("/auth/refresh", "post", "200", &refreshed);
    for path in [
        "/.well-known/jwks.json",
        "/.well-known/openid-configuration",
        "/healthz",
        "/readyz",
    ] {
        check(
            path,
            "get",
            "200",
            &app.get(path).await.json().await.unwrap(),
        );
    }
    // Errors, with `fields`.
    let invalid = app.register("x", "short").await;
    assert_eq!(invalid.status(), StatusCode::UNPROCESSABLE_ENTITY);
    check(
        "/auth/register",
        "post",
        "422",
        &invalid.json().await.unwrap(),
    );
    let wrong = app.login("schema-user", "wrong password").await;
    check("/auth/login", "post", "401", &wrong.json().await.unwrap());
}

fn tokens_of(pair: &Value) -> (String, String) {
    let field = |name: &str| pair[name].as_str().unwrap().to_owned();
    (field("access_token"), field("refresh_token"))
}

/// The mechanism itself: a route added without documentation makes the document refuse to be
/// served, wherever it is registered (here inside a scope, as auth-service's routes are).
#[actix_web::test]
async fn an_undocumented_route_is_detected() {
    async fn hidden() -> HttpResponse {
        HttpResponse::Ok().finish()
    }
    let app = actix_test::init_service(
        App::new().service(
            web::scope("")
                .configure(auth_service::routes::openapi::config)
                .service(web::scope("/admin").route("/export/{id:\\d+}", web::get().to(hidden))),
        ),
    )
    .await;

    let response = actix_test::call_service(
        &app,
        actix_test::TestRequest::get()
            .uri("/openapi.json")
            .to_request(),
    )
    .await;

    assert_eq!(response.status(), 500);
    let body: Value = actix_test::read_body_json(response).await;
    assert_eq!(body["error"], "internal");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("route /admin/export/{id} is registered but not documented"),
        "{message}"
    );
    assert!(message.contains("path /auth/login is documented but not registered"));
}

#[actix_web::test]
async fn the_route_table_is_read_with_scopes_and_constraints() {
    async fn paths(req: actix_web::HttpRequest) -> HttpResponse {
        let found = shared::openapi::registered_paths(req.resource_map());
        HttpResponse::Ok().json(found)
    }
    let app = actix_test::init_service(
        App::new()
            .route("/paths", web::get().to(paths))
            .service(
                web::scope("")
                    .route("/a", web::post().to(paths))
                    .route("/a", web::get().to(paths))
                    .service(
                        web::scope("/admin").route("/export/{id:\\d{3}}", web::get().to(paths)),
                    ),
            )
            .service(web::resource("/books/{id}").route(web::get().to(paths))),
    )
    .await;

    let found: Vec<String> = actix_test::call_and_read_body_json(
        &app,
        actix_test::TestRequest::get().uri("/paths").to_request(),
    )
    .await;

    assert_eq!(found, ["/a", "/admin/export/{id}", "/books/{id}", "/paths"]);
}

/// `docs/api.md`, the API reference at the root of the repository.
const API_REFERENCE: &str = include_str!("../../../docs/api.md");

/// Every operation of the generated document has a heading in `docs/api.md` ("`POST /books`"),
/// and its section names every error code the operation declares.
#[test]
fn docs_api_md_names_every_route_and_its_errors() {
    let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
    let gaps = api_reference_gaps(&doc, API_REFERENCE);
    assert!(gaps.is_empty(), "docs/api.md misses:\n{}", gaps.join("\n"));
}

/// The configuration table of `docs/api.md` lists exactly the variables this service reads.
#[test]
fn docs_api_md_lists_every_setting() {
    let read = variables_read(include_str!("../../src/config.rs"));
    let documented = variables_documented(API_REFERENCE, "auth");
    assert!(
        read.contains("JWT_ISSUER") && read.contains("LISTEN_ADDR"),
        "{read:?}"
    );
    let undocumented: Vec<_> = read.difference(&documented).collect();
    let not_read: Vec<_> = documented.difference(&read).collect();
    assert!(
        undocumented.is_empty() && not_read.is_empty(),
        "read but not in docs/api.md's table: {undocumented:?}; in the table but not read: {not_read:?}"
    );
}
