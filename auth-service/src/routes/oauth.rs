//! `POST /oauth/token`, `/oauth/revoke` and `/oauth/introspect`: form-encoded requests, client
//! authentication and RFC 6749 §5.2 errors, as OAuth client libraries expect.

use std::collections::HashMap;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;

use crate::clients;
use crate::error::{AuthError, OAuthError};
use crate::oauth::{self, ClientCredentials};
use crate::state::AppState;

pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.route("/oauth/token", web::post().to(token))
        .route("/oauth/revoke", web::post().to(revoke))
        .route("/oauth/introspect", web::post().to(introspect));
}

/// The parameters of a form-encoded request (RFC 6749 §3.2: none may appear twice).
struct Form(HashMap<String, String>);

impl Form {
    fn parse(req: &HttpRequest, body: &[u8]) -> Result<Self, AuthError> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let media_type = content_type.split(';').next().unwrap_or_default().trim();
        if !media_type.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
            return Err(OAuthError::InvalidRequest(
                "the body must be application/x-www-form-urlencoded".into(),
            )
            .into());
        }
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body).map_err(|_| {
            OAuthError::InvalidRequest("the body is not a valid form encoding".into())
        })?;
        let mut params = HashMap::new();
        for (name, value) in pairs {
            if params.insert(name.clone(), value).is_some() {
                return Err(
                    OAuthError::InvalidRequest(format!("parameter {name:?} is repeated")).into(),
                );
            }
        }
        Ok(Form(params))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    fn require(&self, name: &str) -> Result<&str, AuthError> {
        self.get(name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| OAuthError::InvalidRequest(format!("{name} is required")).into())
    }

    /// The client's credentials, from `Authorization: Basic` or the form.
    fn credentials(&self, req: &HttpRequest) -> Result<ClientCredentials, AuthError> {
        let basic = match req.headers().get(header::AUTHORIZATION) {
            None => None,
            Some(value) => {
                let value = value.to_str().map_err(|_| OAuthError::InvalidClient)?;
                let (scheme, rest) = value.split_once(' ').ok_or(OAuthError::InvalidClient)?;
                if !scheme.eq_ignore_ascii_case("basic") {
                    return Err(OAuthError::InvalidClient.into());
                }
                Some(rest)
            }
        };
        ClientCredentials::from_request(basic, self.get("client_id"), self.get("client_secret"))
    }
}

/// §5.1: token responses are never cached.
fn no_store(mut response: actix_web::HttpResponseBuilder) -> actix_web::HttpResponseBuilder {
    response
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"));
    response
}

/// The client-credentials token response (RFC 6749 §5.1).
#[derive(Serialize, utoipa::ToSchema)]
pub struct ServiceTokenBody {
    pub access_token: String,
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
    pub expires_in: u64,
    /// The granted scopes, space-separated.
    pub scope: String,
}

/// An RFC 6749 §5.2 error body.
#[derive(Serialize, utoipa::ToSchema)]
pub struct OAuthErrorBody {
    #[schema(example = "invalid_client")]
    pub error: String,
    pub error_description: String,
}

/// Declares the RFC 6749 §5.2 errors of one endpoint: the 400 codes it can answer, always
/// `invalid_client` (401, `WWW-Authenticate: Basic`) and our 503.
macro_rules! oauth_errors {
    ($name:ident: [$($code:literal),*]) => {
        pub struct $name;

        impl utoipa::IntoResponses for $name {
            fn responses() -> std::collections::BTreeMap<
                String,
                utoipa::openapi::RefOr<utoipa::openapi::response::Response>,
            > {
                oauth_error_responses(&[$($code),*])
            }
        }
    };
}

oauth_errors!(TokenErrors: ["invalid_request", "invalid_scope", "unsupported_grant_type"]);
oauth_errors!(RevokeErrors: ["invalid_request", "unauthorized_client"]);
oauth_errors!(IntrospectErrors: ["invalid_request", "unauthorized_client"]);

fn oauth_error_responses(
    bad_request: &[&str],
) -> std::collections::BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::response::Response>>
{
    use utoipa::openapi::schema::{AllOfBuilder, ObjectBuilder, Ref, Type};
    use utoipa::openapi::{ContentBuilder, Header, ResponseBuilder};
    use utoipa::ToSchema;
    let narrowed = |codes: &[&str]| {
        AllOfBuilder::new()
            .item(Ref::from_schema_name(OAuthErrorBody::name()))
            .item(
                ObjectBuilder::new().property(
                    "error",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .enum_values(Some(codes.iter().copied())),
                ),
            )
    };
    let response = |codes: &[&str], description: &str| {
        ResponseBuilder::new().description(description).content(
            "application/json",
            ContentBuilder::new().schema(Some(narrowed(codes))).build(),
        )
    };
    let mut responses = shared::openapi::error_responses(&[&[shared::ErrorCode::Unavailable]]);
    responses.insert(
        "400".into(),
        response(
            bad_request,
            "RFC 6749 §5.2: the request is malformed or not allowed",
        )
        .build()
        .into(),
    );
    responses.insert(
        "401".into(),
        response(&["invalid_client"], "Client authentication failed")
            .header(
                "WWW-Authenticate",
                Header::builder()
                    .schema(ObjectBuilder::new().schema_type(Type::String))
                    .description(Some("`Basic realm=\"authbooks\", charset=\"UTF-8\"`"))
                    .build(),
            )
            .build()
            .into(),
    );
    responses
}

/// Form fields of `POST /oauth/token` (`application/x-www-form-urlencoded`).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct TokenForm {
    /// Only `client_credentials`.
    grant_type: String,
    /// Space-separated; all of the client's scopes when absent.
    scope: Option<String>,
    /// `client_secret_post`; or use HTTP Basic.
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// A service token for a client (RFC 6749 §4.4, client credentials)
#[utoipa::path(
    post,
    path = "/oauth/token",
    tag = "oauth",
    security((), ("client_basic" = [])),
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "A service token", body = ServiceTokenBody),
        TokenErrors,
    )
)]
async fn token(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, AuthError> {
    let form = Form::parse(&req, &body)?;
    let credentials = form.credentials(&req)?;
    match form.require("grant_type")? {
        "client_credentials" => {}
        _ => return Err(OAuthError::UnsupportedGrantType.into()),
    }
    let issued = clients::issue_token(
        &state,
        &credentials.id,
        &credentials.secret,
        form.get("scope"),
    )
    .await?;
    Ok(no_store(HttpResponse::Ok()).json(ServiceTokenBody {
        access_token: issued.access_token,
        token_type: "Bearer",
        expires_in: issued.expires_in,
        scope: issued.scope,
    }))
}

/// Form fields of `POST /oauth/revoke` and `/oauth/introspect`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct TokenRequestForm {
    token: String,
    /// `access_token` or `refresh_token`: which type to try first.
    token_type_hint: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// A request about one token (revocation, introspection) from an authenticated client.
struct TokenRequest {
    client: crate::clients::Client,
    token: String,
    hint: Option<String>,
}

impl TokenRequest {
    async fn read(state: &AppState, req: &HttpRequest, body: &[u8]) -> Result<Self, AuthError> {
        let form = Form::parse(req, body)?;
        let client = form.credentials(req)?.authenticate(state).await?;
        Ok(TokenRequest {
            client,
            token: form.require("token")?.to_owned(),
            hint: form.get("token_type_hint").map(str::to_owned),
        })
    }

    fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }
}

/// Revoke a token (RFC 7009); a refresh token ends its session
#[utoipa::path(
    post,
    path = "/oauth/revoke",
    tag = "oauth",
    security((), ("client_basic" = [])),
    request_body(content = TokenRequestForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Revoked, or already invalid"),
        RevokeErrors,
    )
)]
async fn revoke(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, AuthError> {
    let request = TokenRequest::read(&state, &req, &body).await?;
    oauth::revoke(&state, &request.client, &request.token, request.hint()).await?;
    Ok(HttpResponse::Ok().finish())
}

/// Whether a token is currently accepted, and its claims (RFC 7662; scope `introspect`)
#[utoipa::path(
    post,
    path = "/oauth/introspect",
    tag = "oauth",
    security((), ("client_basic" = [])),
    request_body(content = TokenRequestForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "`{\"active\": false}`, or `active: true` with the claims, `client_id`, `token_type` and `scope`", body = Object),
        IntrospectErrors,
    )
)]
async fn introspect(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, AuthError> {
    let request = TokenRequest::read(&state, &req, &body).await?;
    let answer = oauth::introspect(&state, &request.client, &request.token, request.hint()).await?;
    Ok(no_store(HttpResponse::Ok()).json(answer))
}
