//! Discovery: the JWKS every verifier fetches, and an OpenID-style metadata document.

use actix_web::{web, HttpRequest, HttpResponse};

use crate::startup::AppState;

pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.route("/.well-known/jwks.json", web::get().to(jwks))
        .route(
            "/.well-known/openid-configuration",
            web::get().to(openid_configuration),
        );
}

async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((
            "Cache-Control",
            format!("public, max-age={}", state.jwks_max_age),
        ))
        .json(state.tokens.keys.published_jwks())
}

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
