//! Service accounts: clients that get tokens of their own with the client-credentials grant.
//!
//! A client's tokens end whenever its credentials do: deleting the client or rotating its
//! secret cuts off every token issued to it so far (the session ledger's per-user cut-off, with
//! the client id as the subject), and a token request that was already past authentication when
//! that happened is covered too (see [`issue_token`]).

mod secret;
mod store;

use shared::Scope;

use crate::audit::{Event, EventKind};
use crate::error::{AuthError, OAuthError};
use crate::origin::RequestOrigin;
use crate::sessions::end_all;
use crate::state::AppState;

pub use secret::{SecretHasher, KEY_FILE};
pub use store::{encode_scopes, Client, ClientStore};

/// How many times a token request retries when a cut-off lands while it is issuing.
const ISSUE_ATTEMPTS: usize = 5;

pub struct ServiceAccounts {
    pub store: ClientStore,
    pub secrets: SecretHasher,
}

/// A client as just created or just given a new secret: the only moment the secret exists.
pub struct WithSecret {
    pub client: Client,
    pub secret: String,
}

/// A client's name: what an administrator recognises it by.
pub fn parse_name(raw: &str) -> Result<String, AuthError> {
    let name = raw.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(AuthError::field(
            "name",
            "must be 1-100 characters without control characters",
        ));
    }
    Ok(name.to_owned())
}

/// Known scopes, at least one, without duplicates, sorted.
pub fn parse_scopes(names: &[String]) -> Result<Vec<Scope>, AuthError> {
    let mut scopes = Vec::new();
    for name in names {
        let scope = Scope::parse(name).ok_or_else(|| {
            AuthError::field(
                "scopes",
                &format!(
                    "unknown scope {name:?}; expected books:read, books:write, introspect or \
                     revocations:read"
                ),
            )
        })?;
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }
    if scopes.is_empty() {
        return Err(AuthError::field("scopes", "must name at least one scope"));
    }
    scopes.sort();
    Ok(scopes)
}

pub async fn create(
    state: &AppState,
    by: &Actor<'_>,
    name: String,
    scopes: Vec<Scope>,
) -> Result<WithSecret, AuthError> {
    let (secret, stored) = state
        .clients
        .secrets
        .generate()
        .map_err(|e| AuthError::unexpected("generating a client secret", e))?;
    let client = state.clients.store.create(name, scopes, stored).await?;
    state.metrics.inc("auth_clients_created_total");
    by.record(state, EventKind::ClientCreated, &client.id, &client.name)
        .await;
    Ok(WithSecret { client, secret })
}

/// Deletes a client and ends every token it holds.
pub async fn delete(state: &AppState, by: &Actor<'_>, id: String) -> Result<(), AuthError> {
    if !state.clients.store.delete(id.clone()).await? {
        return Err(AuthError::NotFound("no such client"));
    }
    if let Err(err) = end_all(state, &id, None).await {
        return Err(AuthError::Incomplete {
            done: "the client was deleted and can get no new token, but the tokens it holds \
                   may stay valid until they expire: delete it again once the service is back",
            cause: Box::new(err),
        });
    }
    by.record(state, EventKind::ClientDeleted, &id, "every token ended")
        .await;
    Ok(())
}

/// Gives a client a new secret (the old one stops working) and ends every token it holds.
pub async fn rotate_secret(
    state: &AppState,
    by: &Actor<'_>,
    id: String,
) -> Result<WithSecret, AuthError> {
    let (secret, stored) = state
        .clients
        .secrets
        .generate()
        .map_err(|e| AuthError::unexpected("generating a client secret", e))?;
    if !state
        .clients
        .store
        .set_secret_hash(id.clone(), stored)
        .await?
    {
        return Err(AuthError::NotFound("no such client"));
    }
    if let Err(err) = end_all(state, &id, None).await {
        return Err(AuthError::Incomplete {
            done: "the secret was changed, but the tokens issued with the old one may stay \
                   valid until they expire: rotate again once the service is back",
            cause: Box::new(err),
        });
    }
    let client = state
        .clients
        .store
        .by_id(id)
        .await?
        .ok_or(AuthError::NotFound("no such client"))?;
    by.record(
        state,
        EventKind::ClientSecretRotated,
        &client.id,
        "every token ended",
    )
    .await;
    Ok(WithSecret { client, secret })
}

/// The administrator changing a client, for the audit trail.
pub struct Actor<'a> {
    pub id: &'a str,
    pub origin: &'a RequestOrigin,
}

impl Actor<'_> {
    async fn record(&self, state: &AppState, kind: EventKind, client: &str, detail: &str) {
        let event = Event::success(kind)
            .actor(self.id)
            .subject(client)
            .from(self.origin)
            .detail(detail);
        state.audit.record(event).await;
    }
}

/// The client these credentials belong to, or `invalid_client` (the same answer for an unknown
/// id and a wrong secret; the secret is checked in constant time either way).
pub async fn authenticate(state: &AppState, id: &str, secret: &str) -> Result<Client, AuthError> {
    let client = match uuid::Uuid::parse_str(id) {
        Ok(_) => state.clients.store.by_id(id.to_owned()).await?,
        Err(_) => None,
    };
    let stored = client.as_ref().map(|c| c.secret_hash.as_str());
    // An unknown id still costs one HMAC, so timing does not tell ids apart.
    let valid = state
        .clients
        .secrets
        .verify(secret, stored.unwrap_or("AAAA"));
    match client {
        Some(client) if valid => Ok(client),
        _ => Err(OAuthError::InvalidClient.into()),
    }
}

/// A service token granted to the client these credentials authenticate.
pub struct ServiceToken {
    pub access_token: String,
    pub expires_in: u64,
    pub scope: String,
}

/// RFC 6749 §4.4: authenticate, narrow the scope, sign. Like a login, the client's generation is
/// read before its row and the issue is recorded only if no cut-off came in between, so a token
/// can never outlive a deletion or a secret rotation that raced it.
pub async fn issue_token(
    state: &AppState,
    id: &str,
    secret: &str,
    requested: Option<&str>,
) -> Result<ServiceToken, AuthError> {
    for _ in 0..ISSUE_ATTEMPTS {
        let generation = state.ledger.generation(id).await?;
        let client = authenticate(state, id, secret).await?;
        let scopes = grant_scopes(&client.scopes, requested)?;
        let scope = encode_scopes(&scopes);
        let (access_token, claims) = state.tokens.issue_service(&client.id, &scope)?;
        if state
            .ledger
            .record_issue(id, generation, claims.issued_at_ms())
            .await?
        {
            state.metrics.inc("auth_service_tokens_total");
            return Ok(ServiceToken {
                access_token,
                expires_in: state.tokens.access_ttl,
                scope,
            });
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    Err(AuthError::unavailable(
        "issuing a service token",
        "the client's tokens kept being ended while issuing",
    ))
}

/// The scopes to grant: all of the client's when none are asked for; otherwise exactly those
/// asked for, each of which the client must hold (`invalid_scope` otherwise).
fn grant_scopes(held: &[Scope], requested: Option<&str>) -> Result<Vec<Scope>, AuthError> {
    let Some(requested) = requested else {
        return Ok(held.to_vec());
    };
    let mut scopes = Vec::new();
    for name in requested.split(' ').filter(|s| !s.is_empty()) {
        match Scope::parse(name) {
            Some(scope) if held.contains(&scope) => {
                if !scopes.contains(&scope) {
                    scopes.push(scope);
                }
            }
            _ => {
                return Err(OAuthError::InvalidScope(format!(
                    "the client may not ask for scope {name:?}"
                ))
                .into())
            }
        }
    }
    if scopes.is_empty() {
        return Err(OAuthError::InvalidScope("the scope parameter names no scope".into()).into());
    }
    scopes.sort();
    Ok(scopes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_default_to_all_held_and_never_widen() {
        let held = [Scope::BooksRead, Scope::Introspect];
        assert_eq!(grant_scopes(&held, None).unwrap(), held.to_vec());
        assert_eq!(
            grant_scopes(&held, Some("introspect books:read introspect")).unwrap(),
            held.to_vec()
        );
        for bad in ["books:write", "books:read admin", "", "   "] {
            assert!(
                matches!(
                    grant_scopes(&held, Some(bad)),
                    Err(AuthError::OAuth(OAuthError::InvalidScope(_)))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn names_and_scopes_are_validated() {
        assert_eq!(parse_name("  reports  ").unwrap(), "reports");
        assert!(parse_name("").is_err());
        assert!(parse_name("a\nb").is_err());
        assert!(parse_scopes(&[]).is_err());
        assert!(parse_scopes(&["root".into()]).is_err());
        assert_eq!(
            parse_scopes(&[
                "introspect".into(),
                "books:read".into(),
                "introspect".into()
            ])
            .unwrap(),
            vec![Scope::BooksRead, Scope::Introspect]
        );
    }
}
