//! Service accounts for administrators: `/auth/clients`. Reads need role `admin`; writes a
//! fresh admin token. A secret appears in exactly two answers: creation and rotation.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use shared::{api_errors, AccessClaims, Role};

use crate::clients::{self, Client, WithSecret};
use crate::error::AuthError;
use crate::routes::origin;
use crate::state::AppState;

pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.route("/auth/clients", web::post().to(create_client))
        .route("/auth/clients", web::get().to(list_clients))
        .route("/auth/clients/{id}", web::delete().to(delete_client))
        .route("/auth/clients/{id}/secret", web::post().to(rotate_secret));
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct NewClient {
    /// 1-100 characters: what an administrator recognises the service by.
    name: String,
    /// At least one of `books:read`, `books:write`, `introspect`, `revocations:read`.
    scopes: Vec<String>,
}

/// A service account (never its secret).
#[derive(Serialize, utoipa::ToSchema)]
pub struct ClientBody {
    client_id: String,
    name: String,
    scopes: Vec<String>,
    /// RFC 3339.
    created_at: String,
}

impl ClientBody {
    fn of(client: &Client) -> Self {
        ClientBody {
            client_id: client.id.clone(),
            name: client.name.clone(),
            scopes: client
                .scopes
                .iter()
                .map(|s| s.as_str().to_owned())
                .collect(),
            created_at: crate::routes::dto::rfc3339(client.created_at),
        }
    }
}

/// A client with its secret: shown once.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ClientWithSecret {
    #[serde(flatten)]
    client: ClientBody,
    client_secret: String,
}

impl ClientWithSecret {
    fn of(created: &WithSecret) -> Self {
        ClientWithSecret {
            client: ClientBody::of(&created.client),
            client_secret: created.secret.clone(),
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ClientList {
    items: Vec<ClientBody>,
}

fn admin(claims: &AccessClaims, fresh: bool) -> Result<(), AuthError> {
    claims.require_role(Role::Admin)?;
    if fresh {
        claims.require_fresh()?;
    }
    Ok(())
}

api_errors!(
    CreateClientErrors: TOKEN + JSON_BODY + [FreshTokenRequired, InsufficientRole, CsrfFailed]
);

/// Create a service account (fresh admin token); the secret is in this answer only
#[utoipa::path(
    post,
    path = "/auth/clients",
    tag = "clients",
    security(("access_token" = []), ("access_cookie" = [], "csrf_header" = [])),
    request_body = NewClient,
    responses(
        (status = 201, description = "The client and its secret (shown once)", body = ClientWithSecret),
        CreateClientErrors,
    )
)]
async fn create_client(
    state: web::Data<AppState>,
    req: HttpRequest,
    claims: AccessClaims,
    body: web::Json<NewClient>,
) -> Result<HttpResponse, AuthError> {
    admin(&claims, true)?;
    let name = clients::parse_name(&body.name)?;
    let scopes = clients::parse_scopes(&body.scopes)?;
    let origin = origin(&req, &state);
    let by = clients::Actor {
        id: &claims.sub,
        origin: &origin,
    };
    let created = clients::create(&state, &by, name, scopes).await?;
    Ok(HttpResponse::Created()
        .insert_header(("Cache-Control", "no-store"))
        .json(ClientWithSecret::of(&created)))
}

api_errors!(ListClientsErrors: TOKEN + [InsufficientRole]);

/// Every service account (admin)
#[utoipa::path(
    get,
    path = "/auth/clients",
    tag = "clients",
    security(("access_token" = []), ("access_cookie" = [])),
    responses(
        (status = 200, description = "The clients, oldest first", body = ClientList),
        ListClientsErrors,
    )
)]
async fn list_clients(
    state: web::Data<AppState>,
    claims: AccessClaims,
) -> Result<HttpResponse, AuthError> {
    admin(&claims, false)?;
    let items = state.clients.store.list().await?;
    Ok(HttpResponse::Ok().json(ClientList {
        items: items.iter().map(ClientBody::of).collect(),
    }))
}

api_errors!(
    ClientWriteErrors: TOKEN + [FreshTokenRequired, InsufficientRole, CsrfFailed, NotFound]
);

/// Delete a service account and end every token it holds (fresh admin token)
#[utoipa::path(
    delete,
    path = "/auth/clients/{id}",
    tag = "clients",
    params(("id" = String, Path, description = "the client_id")),
    security(("access_token" = []), ("access_cookie" = [], "csrf_header" = [])),
    responses(
        (status = 204, description = "Deleted; its tokens are refused everywhere"),
        ClientWriteErrors,
    )
)]
async fn delete_client(
    state: web::Data<AppState>,
    req: HttpRequest,
    claims: AccessClaims,
    id: web::Path<String>,
) -> Result<HttpResponse, AuthError> {
    admin(&claims, true)?;
    let origin = origin(&req, &state);
    let by = clients::Actor {
        id: &claims.sub,
        origin: &origin,
    };
    clients::delete(&state, &by, id.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Give a service account a new secret and end every token it holds (fresh admin token)
#[utoipa::path(
    post,
    path = "/auth/clients/{id}/secret",
    tag = "clients",
    params(("id" = String, Path, description = "the client_id")),
    security(("access_token" = []), ("access_cookie" = [], "csrf_header" = [])),
    responses(
        (status = 200, description = "The new secret (shown once); the old one no longer works", body = ClientWithSecret),
        ClientWriteErrors,
    )
)]
async fn rotate_secret(
    state: web::Data<AppState>,
    req: HttpRequest,
    claims: AccessClaims,
    id: web::Path<String>,
) -> Result<HttpResponse, AuthError> {
    admin(&claims, true)?;
    let origin = origin(&req, &state);
    let by = clients::Actor {
        id: &claims.sub,
        origin: &origin,
    };
    let rotated = clients::rotate_secret(&state, &by, id.into_inner()).await?;
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(ClientWithSecret::of(&rotated)))
}
