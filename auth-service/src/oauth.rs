//! The OAuth 2.0 endpoints' use cases for other services: client authentication (RFC 6749
//! §2.3.1), token revocation (RFC 7009) and introspection (RFC 7662). Issuing service tokens is
//! in `clients`.

use serde_json::{Map, Value};
use shared::{Claims, Scope, TokenType};

use crate::clients::{self, Client};
use crate::error::{AuthError, OAuthError};
use crate::state::AppState;

/// Client credentials as the request carried them, by one method only.
pub struct ClientCredentials {
    pub id: String,
    pub secret: String,
}

impl ClientCredentials {
    /// RFC 6749 §2.3.1: from `Authorization: Basic` (each part form-urlencoded before base64)
    /// or from the `client_id`/`client_secret` body fields; using both is `invalid_request`,
    /// neither is `invalid_client`.
    pub fn from_request(
        basic: Option<&str>,
        form_id: Option<&str>,
        form_secret: Option<&str>,
    ) -> Result<Self, AuthError> {
        match (basic, form_id, form_secret) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => Err(OAuthError::InvalidRequest(
                "use one client authentication method, not both".into(),
            )
            .into()),
            (Some(encoded), None, None) => Self::from_basic(encoded),
            (None, Some(id), Some(secret)) => Ok(Self {
                id: id.to_owned(),
                secret: secret.to_owned(),
            }),
            _ => Err(OAuthError::InvalidClient.into()),
        }
    }

    fn from_basic(encoded: &str) -> Result<Self, AuthError> {
        use base64::Engine;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()
            .and_then(|raw| String::from_utf8(raw).ok())
            .ok_or(OAuthError::InvalidClient)?;
        let (id, secret) = decoded.split_once(':').ok_or(OAuthError::InvalidClient)?;
        let unescape = |part: &str| -> Result<String, AuthError> {
            let wrapped = format!("v={part}");
            serde_urlencoded::from_str::<Vec<(String, String)>>(&wrapped)
                .ok()
                .and_then(|mut pairs| pairs.pop())
                .map(|(_, value)| value)
                .ok_or_else(|| OAuthError::InvalidClient.into())
        };
        Ok(Self {
            id: unescape(id)?,
            secret: unescape(secret)?,
        })
    }

    pub async fn authenticate(&self, state: &AppState) -> Result<Client, AuthError> {
        clients::authenticate(state, &self.id, &self.secret).await
    }
}

/// The token's claims whichever type it is (the hint only picks the order), or `None` for a
/// token we would not accept at all (bad signature, expired, malformed, unknown key).
fn verify_any(state: &AppState, token: &str, hint: Option<&str>) -> Option<Claims> {
    let order = match hint {
        Some("refresh_token") => [TokenType::Refresh, TokenType::Access],
        _ => [TokenType::Access, TokenType::Refresh],
    };
    order
        .into_iter()
        .find_map(|expected| state.auth.verifier.verify(token, expected).ok())
}

/// RFC 7009: an access token is revoked alone; a refresh token ends its whole session. A token
/// that is invalid already needs nothing and is not an error. A client may revoke its own
/// tokens and users' tokens (holding one already gives its power), never another client's.
pub async fn revoke(
    state: &AppState,
    caller: &Client,
    token: &str,
    hint: Option<&str>,
) -> Result<(), AuthError> {
    let Some(claims) = verify_any(state, token, hint) else {
        return Ok(());
    };
    if claims
        .client_id
        .as_deref()
        .is_some_and(|id| id != caller.id)
    {
        return Err(OAuthError::UnauthorizedClient(
            "a client may not revoke another client's tokens",
        )
        .into());
    }
    let mut entries = vec![state.lifetimes.token_entry(&claims)];
    if claims.token_type == TokenType::Refresh {
        if let Some(session) = &claims.sid {
            entries.push(state.lifetimes.session_entry(session, shared::now_unix()));
        }
    }
    state.ledger.revoke(entries).await?;
    if claims.token_type == TokenType::Refresh {
        crate::sessions::mark_ended(state, claims.sid.as_ref()).await;
    }
    state.metrics.inc("auth_oauth_revocations_total");
    Ok(())
}

/// RFC 7662: `{"active": false}` for anything our own services would refuse right now — bad,
/// expired, revoked (token, session or cut-off), a spent refresh token, a deleted client's — and
/// otherwise the token's claims plus `client_id`, `token_type` and `scope`. Only a client with
/// scope `introspect` may ask. A revocation store that cannot answer is a 503, never a guess.
pub async fn introspect(
    state: &AppState,
    caller: &Client,
    token: &str,
    hint: Option<&str>,
) -> Result<Value, AuthError> {
    if !caller.scopes.contains(&Scope::Introspect) {
        return Err(OAuthError::UnauthorizedClient("the client lacks scope introspect").into());
    }
    let inactive = serde_json::json!({ "active": false });
    let Some(claims) = verify_any(state, token, hint) else {
        return Ok(inactive);
    };
    if state.auth.revocations.is_revoked(&claims).await? {
        return Ok(inactive);
    }
    if claims.token_type == TokenType::Refresh && state.ledger.is_spent(&claims).await? {
        return Ok(inactive);
    }
    if let Some(client) = &claims.client_id {
        if state.clients.store.by_id(client.clone()).await?.is_none() {
            return Ok(inactive);
        }
    }
    let token_type = match claims.token_type {
        TokenType::Access => "Bearer",
        TokenType::Refresh => "refresh_token",
    };
    let mut body = match serde_json::to_value(&claims) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    };
    // The double-submit value of a cookie session is for the browser alone.
    body.remove("csrf");
    body.insert("active".into(), Value::Bool(true));
    body.insert("token_type".into(), token_type.into());
    body.insert(
        "client_id".into(),
        claims
            .client_id
            .clone()
            .unwrap_or_else(|| FIRST_PARTY_CLIENT.to_owned())
            .into(),
    );
    body.insert(
        "scope".into(),
        claims.scope.clone().unwrap_or_default().into(),
    );
    Ok(Value::Object(body))
}

/// The `client_id` introspection reports for users' tokens: they come from our own login, not
/// from a registered client.
pub const FIRST_PARTY_CLIENT: &str = "authbooks";
