//! Authentication as actix extractors: a handler that takes [`AccessClaims`] only runs for a
//! request carrying a valid, unrevoked access token. Authorisation stays in the handler, as a
//! visible `claims.require_role(..)?` call.

use std::sync::Arc;

use actix_web::dev::Payload;
use actix_web::http::{header, Method};
use actix_web::{web, FromRequest, HttpRequest};
use futures_util::future::LocalBoxFuture;

use crate::claims::{AccessClaims, Claims, RefreshClaims, TokenType};
use crate::error::TokenError;
use crate::jwks_cache::KeyRefresher;
use crate::revocation::RevocationCheck;
use crate::verifier::TokenVerifier;

pub const ACCESS_COOKIE: &str = "access_token_cookie";
pub const REFRESH_COOKIE: &str = "refresh_token_cookie";
pub const CSRF_COOKIE: &str = "csrf_access_token";
pub const CSRF_HEADER: &str = "X-CSRF-TOKEN";

/// Where the token of a request came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenSource {
    Header,
    Cookie,
}

/// Everything the extractors need, registered once as `web::Data<AuthContext>`.
pub struct AuthContext {
    pub verifier: Arc<TokenVerifier>,
    pub revocations: Arc<dyn RevocationCheck>,
    pub key_refresher: Option<Arc<dyn KeyRefresher>>,
    /// Accept tokens from cookies (with double-submit CSRF) when no `Authorization` header is sent.
    pub accept_cookies: bool,
}

impl AuthContext {
    /// Verifies a token of the expected type and checks it against the revocation store.
    pub async fn verify(&self, token: &str, expected: TokenType) -> Result<Claims, TokenError> {
        let claims = self.verify_unrevoked(token, expected).await?;
        self.check_revocations(claims).await
    }

    /// The claims back if no revocation matches them; fails closed when the store cannot answer.
    async fn check_revocations(&self, claims: Claims) -> Result<Claims, TokenError> {
        match self.revocations.is_revoked(&claims).await {
            Ok(false) => Ok(claims),
            Ok(true) => Err(TokenError::Revoked),
            Err(err) => {
                tracing::warn!(error = %err, "revocation check failed");
                Err(TokenError::Unavailable)
            }
        }
    }

    /// Signature, claims and type, fetching keys for an unknown `kid`; no revocation check.
    async fn verify_unrevoked(
        &self,
        token: &str,
        expected: TokenType,
    ) -> Result<Claims, TokenError> {
        Ok(match self.verifier.verify(token, expected) {
            Err(TokenError::UnknownKid) => match &self.key_refresher {
                Some(refresher) => {
                    let kid = jsonwebtoken::decode_header(token)
                        .ok()
                        .and_then(|h| h.kid)
                        .unwrap_or_default();
                    refresher.refresh_for_kid(&kid).await;
                    self.verifier.verify(token, expected)?
                }
                None => return Err(TokenError::UnknownKid),
            },
            other => other?,
        })
    }

    /// Finds, verifies, (for cookies on unsafe methods) CSRF-checks and then checks against
    /// revocations the request's token: the cheap local checks before the store's.
    pub async fn authenticate(
        &self,
        req: &HttpRequest,
        expected: TokenType,
    ) -> Result<(Claims, TokenSource), TokenError> {
        let (claims, source) = self.authenticate_unrevoked(req, expected).await?;
        Ok((self.check_revocations(claims).await?, source))
    }

    /// [`AuthContext::authenticate`] without the revocation check, for a caller that checks
    /// revocations itself in the same atomic step as it acts (the issuer's refresh rotation).
    async fn authenticate_unrevoked(
        &self,
        req: &HttpRequest,
        expected: TokenType,
    ) -> Result<(Claims, TokenSource), TokenError> {
        let (token, source) = find_token(req, expected, self.accept_cookies)?;
        let claims = self.verify_unrevoked(&token, expected).await?;
        if source == TokenSource::Cookie && !is_safe(req.method()) {
            check_csrf(req, &claims)?;
        }
        Ok((claims, source))
    }
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The bearer token from the header, else (when allowed) the cookie for this token type.
pub fn find_token(
    req: &HttpRequest,
    expected: TokenType,
    accept_cookies: bool,
) -> Result<(String, TokenSource), TokenError> {
    if let Some(value) = req.headers().get(header::AUTHORIZATION) {
        let value = value
            .to_str()
            .map_err(|_| TokenError::Invalid("malformed Authorization header"))?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(TokenError::Invalid(
                "expected 'Authorization: Bearer <token>'",
            ))?;
        return Ok((token.to_owned(), TokenSource::Header));
    }
    if accept_cookies {
        let name = match expected {
            TokenType::Access => ACCESS_COOKIE,
            TokenType::Refresh => REFRESH_COOKIE,
        };
        if let Some(cookie) = req.cookie(name) {
            return Ok((cookie.value().to_owned(), TokenSource::Cookie));
        }
    }
    Err(TokenError::Missing)
}

/// Double-submit check: the header must equal the `csrf` claim bound into the signed token.
fn check_csrf(req: &HttpRequest, claims: &Claims) -> Result<(), TokenError> {
    let sent = req
        .headers()
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or(TokenError::CsrfFailed)?;
    let bound = claims.csrf.as_deref().ok_or(TokenError::CsrfFailed)?;
    if constant_time_eq(sent.as_bytes(), bound.as_bytes()) {
        Ok(())
    } else {
        Err(TokenError::CsrfFailed)
    }
}

/// Compares without an early exit, so timing does not reveal how much of a secret matched.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn context(req: &HttpRequest) -> Result<web::Data<AuthContext>, TokenError> {
    req.app_data::<web::Data<AuthContext>>()
        .cloned()
        .ok_or_else(|| {
            tracing::error!("AuthContext is not registered as app data");
            TokenError::Unavailable
        })
}

impl FromRequest for AccessClaims {
    type Error = TokenError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let ctx = context(&req)?;
            let (claims, _) = ctx.authenticate(&req, TokenType::Access).await?;
            Ok(AccessClaims(claims))
        })
    }
}

impl FromRequest for RefreshClaims {
    type Error = TokenError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let ctx = context(&req)?;
            let (claims, _) = ctx.authenticate(&req, TokenType::Refresh).await?;
            Ok(RefreshClaims(claims))
        })
    }
}

/// A refresh token verified (signature, claims, type; CSRF for a cookie) but **not** checked
/// against revocations: only for auth-service's rotation, which checks every revocation in the
/// same atomic step as it spends the token, so a separate check would be a wasted round trip.
pub struct RefreshToRotate(pub Claims);

impl FromRequest for RefreshToRotate {
    type Error = TokenError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let ctx = context(&req)?;
            let (claims, _) = ctx.authenticate_unrevoked(&req, TokenType::Refresh).await?;
            Ok(RefreshToRotate(claims))
        })
    }
}

/// Optional authentication (Flask-JWT-Extended's `optional=True`): `None` when no token was sent,
/// but a token that is sent must be valid.
pub struct MaybeAccessClaims(pub Option<AccessClaims>);

impl FromRequest for MaybeAccessClaims {
    type Error = TokenError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let inner = AccessClaims::from_request(req, payload);
        Box::pin(async move {
            match inner.await {
                Ok(claims) => Ok(MaybeAccessClaims(Some(claims))),
                Err(TokenError::Missing) => Ok(MaybeAccessClaims(None)),
                Err(err) => Err(err),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn constant_time_eq_compares_whole_values() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
