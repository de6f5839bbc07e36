//! The OpenAPI 3.1 document of books-service, generated from the handlers' `#[utoipa::path]`
//! annotations and served at `GET /openapi.json`.
//!
//! **No route goes undocumented.** Every answer of `GET /openapi.json` first compares the
//! document with the route table of the running server (`HttpRequest::resource_map`, which
//! holds every resource any `config` function registered, in any module or scope). A path that
//! is registered but not in the document, or documented but not registered, makes it answer
//! `500 internal` naming the paths instead of a document that lies; the API test and the
//! schemathesis run in CI both fetch it, so such a change cannot pass. Methods are checked by
//! the API test (`tests/api/openapi.rs`): on every registered path it sends every method, and a
//! method the document does not list must get the router's fallback answer, one it lists must not.
//!
//! The error helpers and the route-table reader are the same as auth-service's; they belong in
//! `shared` once it takes a `utoipa` dependency.
//!
//! The error responses of each operation come from [`api_errors!`] next to its handler: the
//! codes it can answer, grouped under their status by `ErrorCode::status`, each with the
//! `ErrorBody` schema narrowed to those codes.

use actix_web::{web, HttpRequest, HttpResponse};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::{books, health};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "books-service",
        description = "CRUD on books; every token is verified locally against auth-service's \
            JWKS. Every error is an `ErrorBody`; 401s carry `WWW-Authenticate: Bearer`. A method \
            `/books` or `/books/{id}` does not list answers `405 method_not_allowed`; any other \
            unknown route `404 not_found`.",
        license(name = "MIT", identifier = "MIT")
    ),
    paths(
        books::list,
        books::create,
        books::get,
        books::replace,
        books::delete,
        shared::server::healthz,
        health::readyz,
        shared::server::metrics,
        openapi_json,
    ),
    components(schemas(shared::openapi::ErrorBodySchema)),
    modifiers(&SecuritySchemes),
    tags(
        (name = "books", description = "Books: any user reads, editors and admins write, \
            admins with a fresh token delete"),
        (name = "operations", description = "Health, readiness, metrics, this document"),
    )
)]
pub struct ApiDoc;

pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.route("/openapi.json", web::get().to(openapi_json));
}

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object,
        content_type = "application/json"))
)]
async fn openapi_json(req: HttpRequest) -> HttpResponse {
    shared::openapi::serve(&req, ApiDoc::openapi())
}

// ---- Security schemes ---------------------------------------------------------------------------

/// Tokens come as `Authorization: Bearer`, or in cookie mode as cookies, where every
/// state-changing request also needs `X-CSRF-TOKEN` equal to the `csrf_access_token` cookie.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "access_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "`Authorization: Bearer <access token>` from auth-service (RS256)",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "access_cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                shared::extract::ACCESS_COOKIE,
                "the access token, set by auth-service's `POST /auth/session`",
            ))),
        );
        components.add_security_scheme(
            "csrf_header",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                shared::extract::CSRF_HEADER,
                "the value of the `csrf_access_token` cookie; required with a cookie token on \
                 POST, PUT, PATCH and DELETE",
            ))),
        );
    }
}
