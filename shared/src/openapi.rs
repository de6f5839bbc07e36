//! OpenAPI support shared by both services (feature `openapi`): the check that the document
//! describes exactly the routes the server has, the error responses generated from
//! [`ErrorCode`], and the schemas of the shared types.
//!
//! **No route goes undocumented.** [`serve`] answers `GET /openapi.json` only after comparing the
//! document with the route table of the running server (`HttpRequest::resource_map`, which
//! holds every resource any `config` function registered, in any module or scope). A path that
//! is registered but not in the document, or documented but not registered, makes it answer
//! `500 internal` naming the paths instead of a document that lies; the API tests and the
//! schemathesis run in CI fetch it, so such a change cannot pass. Methods are checked by each
//! service's API test: on every registered path it sends every method, and a method the document
//! does not list must get the router's fallback answer, one it lists must not.
//!
//! The error responses of each operation come from [`api_errors!`] next to its handler: the
//! codes it can answer, grouped under their status by `ErrorCode::status`, each with the
//! `ErrorBody` schema narrowed to those codes.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use actix_web::dev::ResourceMap;
use actix_web::{HttpRequest, HttpResponse};
use utoipa::openapi::schema::{AllOfBuilder, ObjectBuilder, Ref, Schema, Type};
use utoipa::openapi::{ContentBuilder, Header, RefOr, Response, ResponseBuilder};
use utoipa::{PartialSchema, ToSchema};

use crate::{ErrorBody, ErrorCode, Role};

/// `{"status": "ok"}`, the answer of `GET /healthz`.
#[derive(ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: String,
}

/// `{"status": "ready", "revocation_store": ...}`, the answer of `GET /readyz` when ready.
#[derive(ToSchema)]
pub struct Readiness {
    #[schema(example = "ready")]
    pub status: String,
    /// `redis`, `redis-replica` or `memory`.
    #[schema(example = "redis")]
    pub revocation_store: String,
}

/// The answer of `GET /openapi.json`: the document, or a 500 naming the routes it misses.
pub fn serve(req: &HttpRequest, document: utoipa::openapi::OpenApi) -> HttpResponse {
    let drift = route_drift(req.resource_map(), &document);
    if !drift.is_empty() {
        // Route names are no secret, and the test failing on this should say which.
        let drift = drift.join("; ");
        tracing::error!(%drift, "the OpenAPI document does not match the routes");
        return ErrorBody::new(ErrorCode::Internal, drift).into_response();
    }
    HttpResponse::Ok().json(document)
}

/// Declares `config` (registering `GET /openapi.json`) and its documented handler, serving
/// `$doc` through [`serve`]. List `openapi_json` in the document's `paths(...)`.
#[macro_export]
macro_rules! openapi_route {
    ($doc:ty) => {
        pub fn config(cfg: &mut actix_web::web::ServiceConfig) {
            cfg.route("/openapi.json", actix_web::web::get().to(openapi_json));
        }

        /// This document.
        #[utoipa::path(
            get,
            path = "/openapi.json",
            tag = "operations",
            responses((status = 200, description = "The OpenAPI 3.1 document", body = Object,
                content_type = "application/json"))
        )]
        async fn openapi_json(req: actix_web::HttpRequest) -> actix_web::HttpResponse {
            $crate::openapi::serve(&req, <$doc as utoipa::OpenApi>::openapi())
        }
    };
}

/// The ways a token can be presented, as OpenAPI security schemes: `access_token` (bearer),
/// `access_cookie` and `csrf_header` (cookie mode) everywhere, and where a service takes refresh
/// tokens (auth-service) `refresh_token` and `refresh_cookie` too.
pub struct TokenSchemes {
    pub refresh: bool,
}

/// The schemes of a service that only verifies access tokens.
pub const ACCESS_SCHEMES: TokenSchemes = TokenSchemes { refresh: false };
/// The schemes of the issuer, which also takes refresh tokens.
pub const ISSUER_SCHEMES: TokenSchemes = TokenSchemes { refresh: true };

impl utoipa::Modify for TokenSchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme,
        };
        let bearer = |what: &str| {
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(format!(
                        "`Authorization: Bearer <{what} token>` issued by auth-service (RS256)"
                    )))
                    .build(),
            )
        };
        let cookie = |name: &str, what: &str| {
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                name,
                &format!("the {what} token, set by auth-service's `POST /auth/session`"),
            )))
        };
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("access_token", bearer("access"));
        components.add_security_scheme(
            "access_cookie",
            cookie(crate::extract::ACCESS_COOKIE, "access"),
        );
        components.add_security_scheme(
            "csrf_header",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                crate::extract::CSRF_HEADER,
                "the value of the `csrf_access_token` cookie; required with a cookie token on \
                 POST, PUT, PATCH and DELETE",
            ))),
        );
        if self.refresh {
            components.add_security_scheme(
                "client_basic",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Basic)
                        .description(Some(
                            "`client_secret_basic` (RFC 6749 §2.3.1); the form fields \
                             `client_id` and `client_secret` work too"
                                .to_owned(),
                        ))
                        .build(),
                ),
            );
            components.add_security_scheme("refresh_token", bearer("refresh"));
            components.add_security_scheme(
                "refresh_cookie",
                cookie(crate::extract::REFRESH_COOKIE, "refresh (path `/auth`)"),
            );
        }
    }
}

// ---- Route table against document -------------------------------------------------------------

/// Differences between the routes the server has and the paths the document describes.
pub fn route_drift(map: &ResourceMap, document: &utoipa::openapi::OpenApi) -> Vec<String> {
    let registered = registered_paths(map);
    if registered.is_empty() {
        return vec!["the route table could not be read (actix's ResourceMap changed form)".into()];
    }
    let documented: BTreeSet<String> = document.paths.paths.keys().cloned().collect();
    let mut drift = Vec::new();
    for path in registered.difference(&documented) {
        drift.push(format!("route {path} is registered but not documented"));
    }
    for path in documented.difference(&registered) {
        drift.push(format!("path {path} is documented but not registered"));
    }
    drift
}

/// Full path patterns of every resource in the route table, regex constraints removed
/// (`/books/{id:\d+}` is documented as `/books/{id}`).
///
/// actix offers no iterator over its routes, so they are read from the pretty `Debug` form of
/// the `ResourceMap` tree: each `ResourceMap {` node carries its pattern, relative to its
/// parent's, and leaves (`nodes: None`) are the resources. Should that form ever change, no
/// path is found and [`route_drift`] reports it, rather than passing vacuously.
pub fn registered_paths(map: &ResourceMap) -> BTreeSet<String> {
    struct Node {
        indent: usize,
        patterns: Vec<String>,
        leaf: bool,
    }
    let text = format!("{map:#?}");
    let mut lines = text.lines();
    let mut stack: Vec<Node> = Vec::new();
    let mut found = BTreeSet::new();
    while let Some(line) = lines.next() {
        let indent = line.len() - line.trim_start().len();
        let trimmed = line.trim();
        if trimmed == "ResourceMap {" {
            stack.push(Node {
                indent,
                patterns: Vec::new(),
                leaf: false,
            });
            continue;
        }
        let Some(top) = stack.last_mut() else {
            continue;
        };
        // The node's own members sit one level (4 spaces) in, its pattern's members two.
        if indent == top.indent + 8 && trimmed.starts_with("patterns: ") {
            for next in lines.by_ref() {
                let next = next.trim().trim_end_matches(',');
                match next.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
                    Some(literal) => top.patterns.push(literal.replace("\\\\", "\\")),
                    None if next == "[" => continue,
                    None => break,
                }
            }
        } else if indent == top.indent + 4 && trimmed == "nodes: None," {
            top.leaf = true;
        } else if indent == top.indent && trimmed.starts_with('}') {
            let Some(node) = stack.pop() else { break };
            if node.leaf {
                let prefix: String = stack
                    .iter()
                    .map(|n| n.patterns.first().map_or("", String::as_str))
                    .collect();
                for pattern in &node.patterns {
                    found.insert(strip_constraints(&format!("{prefix}{pattern}")));
                }
            }
        }
    }
    found
}

/// `/a/{id:\d{3}}` to `/a/{id}`.
fn strip_constraints(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut depth = 0;
    let mut in_regex = false;
    for c in pattern.chars() {
        match c {
            '{' => {
                depth += 1;
                if depth == 1 {
                    out.push(c);
                }
            }
            '}' => {
                depth -= 1;
                if depth == 0 {
                    in_regex = false;
                    out.push(c);
                }
            }
            ':' if depth == 1 => in_regex = true,
            _ if depth == 0 || !in_regex && depth == 1 => out.push(c),
            _ => {}
        }
    }
    out
}

// ---- Error responses ----------------------------------------------------------------------------

/// Token problems on any route that takes a token, and the revocation store being down.
pub const TOKEN: &[ErrorCode] = &[
    ErrorCode::MissingToken,
    ErrorCode::InvalidToken,
    ErrorCode::TokenExpired,
    ErrorCode::TokenRevoked,
    ErrorCode::WrongTokenType,
    ErrorCode::Unavailable,
];

/// What the JSON body extractor refuses.
pub const JSON_BODY: &[ErrorCode] = &[
    ErrorCode::BadRequest,
    ErrorCode::PayloadTooLarge,
    ErrorCode::ValidationFailed,
];

/// Declares the error responses of one operation, for its `#[utoipa::path(responses(...))]`:
/// `api_errors!(LoginErrors: JSON_BODY + [InvalidCredentials, RateLimited]);` lists groups
/// of this module and single `ErrorCode`s.
#[macro_export]
macro_rules! api_errors {
    ($name:ident: $($group:ident +)* [$($code:ident),* $(,)?]) => {
        pub struct $name;

        impl utoipa::IntoResponses for $name {
            fn responses() -> std::collections::BTreeMap<
                String,
                utoipa::openapi::RefOr<utoipa::openapi::response::Response>,
            > {
                $crate::openapi::error_responses(&[
                    $($crate::openapi::$group,)*
                    &[$($crate::ErrorCode::$code),*],
                ])
            }
        }
    };
}

/// One response per status, each listing its codes, with the `ErrorBody` schema narrowed to them.
pub fn error_responses(groups: &[&[ErrorCode]]) -> BTreeMap<String, RefOr<Response>> {
    let mut by_status: BTreeMap<u16, Vec<ErrorCode>> = BTreeMap::new();
    for &code in groups.iter().copied().flatten() {
        let codes = by_status.entry(code.status().as_u16()).or_default();
        if !codes.contains(&code) {
            codes.push(code);
        }
    }
    by_status
        .into_iter()
        .map(|(status, codes)| (status.to_string(), error_response(status, &codes).into()))
        .collect()
}

fn error_response(status: u16, codes: &[ErrorCode]) -> Response {
    let description: Vec<String> = codes
        .iter()
        .map(|c| format!("`{}`: {}", c.as_str(), meaning(*c)))
        .collect();
    let narrowed = ObjectBuilder::new().property(
        "error",
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(codes.iter().map(|c| c.as_str()))),
    );
    let schema = AllOfBuilder::new()
        .item(Ref::from_schema_name(ErrorBodySchema::name()))
        .item(narrowed);
    let mut response = ResponseBuilder::new()
        .description(description.join("; "))
        .content(
            "application/json",
            ContentBuilder::new().schema(Some(schema)).build(),
        );
    let string = || ObjectBuilder::new().schema_type(Type::String);
    if status == 401 {
        response = response.header(
            "WWW-Authenticate",
            Header::builder()
                .schema(string())
                .description(Some(
                    "`Bearer error=\"invalid_token\", error_description=\"...\"` \
                     (`invalid_request` when no token was sent)",
                ))
                .build(),
        );
    }
    if status == 429 {
        response = response.header(
            "Retry-After",
            Header::builder()
                .schema(
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .minimum(Some(1)),
                )
                .description(Some("seconds until the next attempt is allowed"))
                .build(),
        );
    }
    response.build()
}

/// docs/api.md's "when" of each code. The `match` makes a new code a compile error here.
fn meaning(code: ErrorCode) -> &'static str {
    use ErrorCode::*;
    match code {
        BadRequest => {
            "the body is not JSON, a wrong content type, a query parameter not understood"
        }
        MissingToken => "no token where one is required",
        InvalidToken => {
            "bad signature, malformed, wrong alg, unknown kid, wrong iss/aud, nbf ahead"
        }
        TokenExpired => "`exp` is past (after the configured leeway)",
        TokenRevoked => "the token, or every session of its user, has been revoked",
        WrongTokenType => "a refresh token where an access token is required, or the reverse",
        FreshTokenRequired => "a non-fresh access token on an operation that needs a fresh one",
        RefreshTokenReused => "a refresh token already rotated; its whole family is now revoked",
        InvalidCredentials => "login failed (one answer for an unknown user and a wrong password)",
        MfaRequired => "password correct, a second factor is enrolled: see `mfa_token`",
        InvalidMfaCode => "wrong, reused or expired one-time code (throttled like passwords)",
        AccountDisabled => "an administrator disabled the account",
        InsufficientRole => "valid token, but its roles do not allow the operation",
        CsrfFailed => "cookie-carried token without a matching `X-CSRF-TOKEN` header",
        NotFound => "no such resource",
        MethodNotAllowed => "the path does not support this method",
        Conflict => "username taken, duplicate ISBN",
        PreconditionFailed => "`If-Match` does not match the current version",
        PayloadTooLarge => "body over the limit (64 KiB)",
        ValidationFailed => "well-formed JSON that breaks a rule (see `fields`)",
        RateLimited => "too many attempts; see `Retry-After`",
        Internal => "an unexpected failure; the cause is logged, never sent",
        Unavailable => "a dependency is down; nothing was half-written",
    }
}

/// `crate::ErrorBody`, the body of every non-2xx answer.
pub struct ErrorBodySchema;

impl PartialSchema for ErrorBodySchema {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .description(Some("Every non-2xx answer"))
            .property(
                "error",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(ErrorCode::ALL.iter().map(|c| c.as_str()))),
            )
            .required("error")
            .property(
                "message",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .description(Some("for humans")),
            )
            .required("message")
            .property(
                "fields",
                ObjectBuilder::new()
                    .additional_properties(Some(ObjectBuilder::new().schema_type(Type::String)))
                    .description(Some("the problem with each field, on `validation_failed`")),
            )
            .property(
                "mfa_token",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .description(Some(
                        "on `mfa_required`: the single-use token for `POST /auth/login/mfa`",
                    )),
            )
            .into()
    }
}

impl ToSchema for ErrorBodySchema {
    fn name() -> Cow<'static, str> {
        "ErrorBody".into()
    }
}

/// `crate::Role`, from least to most privileged.
pub struct RoleSchema;

impl PartialSchema for RoleSchema {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(Role::ALL.map(Role::as_str)))
            .into()
    }
}

impl ToSchema for RoleSchema {
    fn name() -> Cow<'static, str> {
        "Role".into()
    }
}
