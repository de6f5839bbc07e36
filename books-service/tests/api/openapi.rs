//! `GET /openapi.json`: served, complete against the contract, true to the router, and
//! covered by `docs/api.md`.
//!
//! How an undocumented route fails: the served document is checked against the running
//! server's route table (paths; see `books_service::routes::openapi`), and
//! `every_route_answers_as_documented` sends every method to every path of that table: a method
//! the document does not list must get the router's fallback (`405 method_not_allowed` on the
//! books resources, `404 not_found` elsewhere), one it lists must not, and must answer a status
//! and error code its operation documents.

use actix_web::{test as actix_test, web, App, HttpResponse};
use books_service::routes::openapi::ApiDoc;
use reqwest::StatusCode;
use serde_json::{json, Value};
use shared::testing::{
    api_reference_gaps, check_every_route, conforms, error_codes, variables_documented,
    variables_read,
};
use utoipa::OpenApi;

use crate::helpers::{book, spawn_stack, Backend, Stack};

/// The books-service routes of the contract and the common routes: (method, path, success
/// status).
const CONTRACT: &[(&str, &str, &str)] = &[
    ("get", "/books", "200"),
    ("post", "/books", "201"),
    ("get", "/books/{id}", "200"),
    ("put", "/books/{id}", "200"),
    ("delete", "/books/{id}", "204"),
    ("get", "/healthz", "200"),
    ("get", "/readyz", "200"),
    ("get", "/metrics", "200"),
    ("get", "/openapi.json", "200"),
];

async fn served(stack: &Stack) -> Value {
    let response = stack
        .client
        .get(stack.books_url("/openapi.json"))
        .send()
        .await
        .unwrap();
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
    let stack = spawn_stack(Backend::Sqlite).await;

    let doc = served(&stack).await;

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
    assert_eq!(schemes["access_cookie"]["name"], "access_token_cookie");
    assert_eq!(schemes["csrf_header"]["name"], "X-CSRF-TOKEN");

    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let responses = operation["responses"].as_object().unwrap();
            let secured = operation["security"].is_array();
            let unauthorized = responses.get("401").map(error_codes).unwrap_or_default();
            assert_eq!(
                secured,
                unauthorized.contains(&"missing_token".to_owned()),
                "{method} {path}: a token route documents missing_token, a public one does not"
            );
            if let Some(unauthorized) = responses.get("401") {
                assert!(unauthorized["headers"]["WWW-Authenticate"].is_object());
            }
            for (status, response) in responses {
                if status.starts_with(['4', '5']) {
                    assert!(
                        !error_codes(response).is_empty(),
                        "{method} {path} {status}"
                    );
                }
            }
        }
    }
    let paths = &doc["paths"];
    let created = &paths["/books"]["post"]["responses"]["201"]["headers"];
    assert!(created["Location"].is_object() && created["ETag"].is_object());
    assert!(paths["/books/{id}"]["get"]["responses"]["200"]["headers"]["ETag"].is_object());
    for method in ["put", "delete"] {
        let parameters = paths["/books/{id}"][method]["parameters"]
            .as_array()
            .unwrap();
        assert!(parameters
            .iter()
            .any(|p| p["name"] == "If-Match" && p["in"] == "header"));
        assert!(paths["/books/{id}"][method]["responses"]["412"].is_object());
    }
}

/// The router's answer when no route takes the request.
fn is_fallback(status: StatusCode, body: &Value, method: &str) -> bool {
    let not_found = status == StatusCode::NOT_FOUND
        && *body == json!({ "error": "not_found", "message": "no such resource" });
    let not_allowed =
        status == StatusCode::METHOD_NOT_ALLOWED && body["error"] == "method_not_allowed";
    match method {
        "head" => matches!(status.as_u16(), 404 | 405),
        _ => not_found || not_allowed,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_as_documented() {
    let stack = spawn_stack(Backend::Sqlite).await;
    let doc = served(&stack).await;
    check_every_route(&stack.client, &stack.books, &doc, is_fallback).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_match_their_schemas() {
    let stack = spawn_stack(Backend::Sqlite).await;
    let doc = served(&stack).await;
    let check = |path: &str, method: &str, status: &str, body: &Value| {
        let schema = &doc["paths"][path][method]["responses"][status]["content"]
            ["application/json"]["schema"];
        if let Err(problem) = conforms(&doc, schema, body) {
            panic!("{method} {path} {status}: {problem} in {body}");
        }
    };
    let admin = stack.user_with_roles("sadie", "user,editor,admin").await;

    let mut dune = book("Dune", "Frank Herbert");
    dune["isbn"] = "978-0-441-17271-9".into();
    let created = stack.create_book(&admin.access, &dune).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let created: Value = created.json().await.unwrap();
    check("/books", "post", "201", &created);
    let id = created["id"].as_str().unwrap();
    let plain = stack
        .create_book(&admin.access, &book("Emma", "Jane Austen"))
        .await;
    check("/books", "post", "201", &plain.json().await.unwrap());
    let read = stack.get_book(&admin.access, id).await;
    check("/books/{id}", "get", "200", &read.json().await.unwrap());
    let page = stack.get(&admin.access, "/books?limit=1").await;
    let page: Value = page.json().await.unwrap();
    assert!(page["next_cursor"].is_string());
    check("/books", "get", "200", &page);
    let last = stack.get(&admin.access, "/books?limit=100").await;
    check("/books", "get", "200", &last.json().await.unwrap());
    let replaced = stack
        .replace_book(&admin.access, id, Some("\"1\""), &dune)
        .await;
    assert_eq!(replaced.status(), StatusCode::OK);
    check("/books/{id}", "put", "200", &replaced.json().await.unwrap());
    for path in ["/healthz", "/readyz"] {
        let body = stack
            .client
            .get(stack.books_url(path))
            .send()
            .await
            .unwrap();
        check(path, "get", "200", &body.json().await.unwrap());
    }
    // Errors.
    let stale = stack
        .replace_book(&admin.access, id, Some("\"1\""), &dune)
        .await;
    assert_eq!(stale.status(), StatusCode::PRECONDITION_FAILED);
    check("/books/{id}", "put", "412", &stale.json().await.unwrap());
    let duplicate = stack.create_book(&admin.access, &dune).await;
    assert_eq!(duplicate.status(), StatusCode::CONFLICT);
    check("/books", "post", "409", &duplicate.json().await.unwrap());
    let invalid = stack.create_book(&admin.access, &book("", "")).await;
    assert_eq!(invalid.status(), StatusCode::UNPROCESSABLE_ENTITY);
    check("/books", "post", "422", &invalid.json().await.unwrap());
    let missing = stack
        .get_book(&admin.access, &uuid::Uuid::new_v4().to_string())
        .await;
    check("/books/{id}", "get", "404", &missing.json().await.unwrap());
}

/// The mechanism itself: a route added without documentation makes the document refuse to be
/// served.
#[actix_web::test]
async fn an_undocumented_route_is_detected() {
    async fn hidden() -> HttpResponse {
        HttpResponse::Ok().finish()
    }
    let app = actix_test::init_service(
        App::new()
            .configure(books_service::routes::openapi::config)
            .route("/books/{id}/cover", web::get().to(hidden)),
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
        message.contains("route /books/{id}/cover is registered but not documented"),
        "{message}"
    );
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
    let documented = variables_documented(API_REFERENCE, "books");
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
