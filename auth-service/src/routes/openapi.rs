//! The OpenAPI 3.1 document of auth-service, generated from the handlers' `#[utoipa::path]`
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

use actix_web::{web, HttpRequest, HttpResponse};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::{account, auth, health, session, well_known};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "auth-service",
        description = "Accounts, password login, RS256 token pairs with rotation, cookie sessions \
            and the JWKS. Every error is an `ErrorBody`; 401s carry `WWW-Authenticate: Bearer`. \
            A method a path does not list answers `404 not_found`.",
        license(name = "MIT", identifier = "MIT")
    ),
    paths(
        auth::register,
        auth::login,
        auth::refresh,
        auth::logout,
        auth::me,
        account::logout_all,
        account::change_password,
        account::set_roles,
        session::create_session,
        session::end_session,
        well_known::jwks,
        well_known::openid_configuration,
        shared::server::healthz,
        health::readyz,
        shared::server::metrics,
        openapi_json,
    ),
    components(schemas(shared::openapi::ErrorBodySchema, shared::openapi::RoleSchema, auth::LogoutBody)),
    modifiers(&SecuritySchemes),
    tags(
        (name = "auth", description = "Accounts and bearer tokens"),
        (name = "session", description = "Cookie sessions (double-submit CSRF)"),
        (name = "discovery", description = "Keys and metadata for verifiers"),
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
        let bearer = |what: &str| {
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(format!(
                        "`Authorization: Bearer <{what} token>` (RS256)"
                    )))
                    .build(),
            )
        };
        let key = |key: ApiKey| SecurityScheme::ApiKey(key);
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("access_token", bearer("access"));
        components.add_security_scheme("refresh_token", bearer("refresh"));
        components.add_security_scheme(
            "access_cookie",
            key(ApiKey::Cookie(ApiKeyValue::with_description(
                shared::extract::ACCESS_COOKIE,
                "the access token, set by `POST /auth/session`",
            ))),
        );
        components.add_security_scheme(
            "refresh_cookie",
            key(ApiKey::Cookie(ApiKeyValue::with_description(
                shared::extract::REFRESH_COOKIE,
                "the refresh token, set by `POST /auth/session` (path `/auth`)",
            ))),
        );
        components.add_security_scheme(
            "csrf_header",
            key(ApiKey::Header(ApiKeyValue::with_description(
                shared::extract::CSRF_HEADER,
                "the value of the `csrf_access_token` cookie; required with a cookie token on \
                 POST, PUT, PATCH and DELETE",
            ))),
        );
    }
}
