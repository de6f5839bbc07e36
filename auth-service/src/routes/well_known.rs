//! Discovery: the JWKS every verifier fetches, and an OpenID-style metadata document.

use actix_web::{web, HttpRequest, HttpResponse};

use crate::state::AppState;

pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.route("/.well-known/jwks.json", web::get().to(jwks))
        .route(
            "/.well-known/openid-configuration",
            web::get().to(openid_configuration),
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

/// Metadata for clients and verifiers (OpenID Connect discovery style).
#[derive(utoipa::ToSchema)]
pub struct OpenIdConfiguration {
    pub issuer: String,
    pub jwks_uri: String,
    pub token_endpoint: String,
    pub refresh_endpoint: String,
    pub revocation_endpoint: String,
    pub userinfo_endpoint: String,
    pub id_token_signing_alg_values_supported: Vec<String>,
    pub token_endpoint_auth_methods_supported: Vec<String>,
    pub claims_supported: Vec<String>,
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

/// Issuer, JWKS and endpoint URLs
#[utoipa::path(
    get,
    path = "/.well-known/openid-configuration",
    tag = "discovery",
    responses((status = 200, description = "The metadata", body = OpenIdConfiguration,
        headers(("Cache-Control" = String, description = "`public, max-age=300`"))))
)]
async fn openid_configuration(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let base = match &state.public_url {
        Some(url) => url.clone(),
        None => {
            let info = req.connection_info();
            format!("{}://{}", info.scheme(), info.host())
        }
    };
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "public, max-age=300"))
        .json(serde_json::json!({
            "issuer": state.tokens.issuer,
            "jwks_uri": format!("{base}/.well-known/jwks.json"),
            "token_endpoint": format!("{base}/auth/login"),
            "refresh_endpoint": format!("{base}/auth/refresh"),
            "revocation_endpoint": format!("{base}/auth/logout"),
            "userinfo_endpoint": format!("{base}/auth/me"),
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["none"],
            "claims_supported": ["iss", "aud", "sub", "jti", "iat", "nbf", "exp", "type", "fresh", "roles", "username"],
        }))
}
