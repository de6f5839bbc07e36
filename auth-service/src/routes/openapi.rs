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

use shared::openapi::ISSUER_SCHEMES;
use utoipa::OpenApi;

use crate::routes::{
    account, audit, auth, clients, health, mfa, oauth, revocations, session, sessions, users,
    well_known,
};

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
        mfa::login_mfa,
        mfa::session_mfa,
        mfa::start,
        mfa::confirm,
        mfa::remove,
        sessions::list,
        sessions::end,
        users::find,
        users::show,
        users::disable,
        users::enable,
        users::sessions_of,
        users::end_sessions_of,
        audit::list,
        clients::create_client,
        clients::list_clients,
        clients::delete_client,
        clients::rotate_secret,
        oauth::token,
        oauth::revoke,
        oauth::introspect,
        revocations::snapshot,
        revocations::follow,
        well_known::jwks,
        well_known::openid_configuration,
        well_known::authorization_server,
        shared::server::healthz,
        health::readyz,
        shared::server::metrics,
        openapi_json,
    ),
    components(schemas(shared::openapi::ErrorBodySchema, shared::openapi::RoleSchema, auth::LogoutBody, oauth::OAuthErrorBody)),
    modifiers(&ISSUER_SCHEMES),
    tags(
        (name = "auth", description = "Accounts and bearer tokens"),
        (name = "session", description = "Cookie sessions (double-submit CSRF)"),
        (name = "sessions", description = "The caller's sessions (one per login)"),
        (name = "mfa", description = "The second factor: TOTP (RFC 6238) and recovery codes"),
        (name = "users", description = "Account administration (admin)"),
        (name = "audit", description = "The audit trail of security events (admin)"),
        (name = "clients", description = "Service accounts (admin)"),
        (name = "oauth", description = "OAuth 2.0 endpoints for other services (form-encoded, RFC 6749 errors)"),
        (name = "revocations", description = "The revocation feed for verifiers that cannot reach Redis"),
        (name = "discovery", description = "Keys and metadata for verifiers"),
        (name = "operations", description = "Health, readiness, metrics, this document"),
    )
)]
pub struct ApiDoc;

shared::openapi_route!(ApiDoc);
