//! Discovery: the JWKS every verifier fetches, and the metadata documents (RFC 8414 and its
//! OpenID-style twin) that let OAuth clients and verifiers configure themselves.

use actix_web::{web, HttpResponse};

use crate::state::AppState;

pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.route("/.well-known/jwks.json", web::get().to(jwks))
        .route(
            "/.well-known/openid-configuration",
            web::get().to(openid_configuration),
        )
        .route(
            "/.well-known/oauth-authorization-server",
            web::get().to(authorization_server),
        );
}

/// `shared::jwks::Jwks` as published: RS256 signing keys only.
#[derive(utoipa::ToSchema)]
#[schema(as = Jwks)]
pub struct JwksSchema {
    pub keys: Vec<JwkSchema>,
}

/// One RSA public key (RFC 7517); `kid` is its RFC 7638 thumbprint.
#[derive(utoipa::ToSchema)]
#[schema(as = Jwk)]
pub struct JwkSchema {
    #[schema(example = "RSA")]
    pub kty: String,
    pub kid: String,
    #[schema(example = "RS256")]
    pub alg: String,
    #[schema(rename = "use", example = "sig")]
    pub key_use: String,
    /// modulus, base64url
    pub n: String,
    /// exponent, base64url
    pub e: String,
}

/// Authorization server metadata (RFC 8414 §2); the OpenID-style document carries the same
/// fields. Every URL is absolute, under `AUTH_PUBLIC_URL`, and names an endpoint that exists.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ServerMetadata {
    /// The issuer identifier: exactly the `iss` of every token.
    pub issuer: String,
    pub jwks_uri: String,
    /// `POST /oauth/token` (client credentials).
    pub token_endpoint: String,
    /// `POST /oauth/revoke` (RFC 7009).
    pub revocation_endpoint: String,
    /// `POST /oauth/introspect` (RFC 7662).
    pub introspection_endpoint: String,
    pub grant_types_supported: Vec<&'static str>,
    /// Required by RFC 8414 although there is no authorization endpoint: `none` (no response
    /// type of the authorization endpoint is supported).
    pub response_types_supported: Vec<&'static str>,
    pub token_endpoint_auth_methods_supported: Vec<&'static str>,
    pub revocation_endpoint_auth_methods_supported: Vec<&'static str>,
    pub introspection_endpoint_auth_methods_supported: Vec<&'static str>,
    pub scopes_supported: Vec<&'static str>,
    /// For verifiers: tokens are RS256 JWTs signed with the keys at `jwks_uri`.
    pub id_token_signing_alg_values_supported: Vec<&'static str>,
    pub claims_supported: Vec<&'static str>,
    /// Not standard: the revocation feed for verifiers that cannot reach Redis.
    pub revocation_feed_endpoint: String,
}

impl ServerMetadata {
    pub fn new(state: &AppState) -> Self {
        let base = &state.public_url;
        let auth_methods = vec!["client_secret_basic", "client_secret_post"];
        ServerMetadata {
            issuer: state.tokens.issuer.clone(),
            jwks_uri: format!("{base}/.well-known/jwks.json"),
            token_endpoint: format!("{base}/oauth/token"),
            revocation_endpoint: format!("{base}/oauth/revoke"),
            introspection_endpoint: format!("{base}/oauth/introspect"),
            grant_types_supported: vec!["client_credentials"],
            response_types_supported: vec!["none"],
            token_endpoint_auth_methods_supported: auth_methods.clone(),
            revocation_endpoint_auth_methods_supported: auth_methods.clone(),
            introspection_endpoint_auth_methods_supported: auth_methods,
            scopes_supported: shared::Scope::ALL.iter().map(|s| s.as_str()).collect(),
            id_token_signing_alg_values_supported: vec!["RS256"],
            claims_supported: vec![
                "iss",
                "aud",
                "sub",
                "jti",
                "iat",
                "nbf",
                "exp",
                "type",
                "fresh",
                "roles",
                "username",
                "sid",
                "scope",
                "client_id",
            ],
            revocation_feed_endpoint: format!("{base}/revocations/stream"),
        }
    }
}

/// Every public key that may still verify a live token
///
/// Keys are published before they sign and stay until nothing they signed can be valid.
#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    tag = "discovery",
    responses((status = 200, description = "The JWKS", body = JwksSchema,
        headers(("Cache-Control" = String, description = "`public, max-age=<JWKS_MAX_AGE>`"))))
)]
async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((
            "Cache-Control",
            format!("public, max-age={}", state.jwks_max_age),
        ))
        .json(state.tokens.keys.published_jwks())
}

/// OpenID-style discovery: the same metadata as RFC 8414's document
#[utoipa::path(
    get,
    path = "/.well-known/openid-configuration",
    tag = "discovery",
    responses((status = 200, description = "The metadata", body = ServerMetadata,
        headers(("Cache-Control" = String, description = "`public, max-age=300`"))))
)]
async fn openid_configuration(state: web::Data<AppState>) -> HttpResponse {
    metadata(&state)
}

/// RFC 8414 authorization server metadata
#[utoipa::path(
    get,
    path = "/.well-known/oauth-authorization-server",
    tag = "discovery",
    responses((status = 200, description = "The metadata", body = ServerMetadata,
        headers(("Cache-Control" = String, description = "`public, max-age=300`"))))
)]
async fn authorization_server(state: web::Data<AppState>) -> HttpResponse {
    metadata(&state)
}

fn metadata(state: &AppState) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "public, max-age=300"))
        .json(ServerMetadata::new(state))
}
