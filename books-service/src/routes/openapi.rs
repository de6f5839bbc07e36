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
//! The error responses of each operation come from [`api_errors!`] next to its handler: the
//! codes it can answer, grouped under their status by `ErrorCode::status`, each with the
//! `ErrorBody` schema narrowed to those codes.

use shared::openapi::ACCESS_SCHEMES;
use utoipa::OpenApi;

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
    modifiers(&ACCESS_SCHEMES),
    tags(
        (name = "books", description = "Books: any user reads, editors and admins write, \
            admins with a fresh token delete"),
        (name = "operations", description = "Health, readiness, metrics, this document"),
    )
)]
pub struct ApiDoc;

shared::openapi_route!(ApiDoc);
