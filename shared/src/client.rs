//! A typed client for the platform's HTTP contract (feature `client`), speaking to one base URL
//! with the gateway's paths (`/auth/*`, `/books*`).
//!
//! It holds one session (a token pair) and keeps it alive: a call answered `401 token_expired`
//! refreshes the pair and is retried once. Refreshes are single-flight: however many calls find
//! the access token expired at once, one `POST /auth/refresh` is sent and every call retries
//! with its result. A refresh token that is spent, expired or revoked ends the session, and
//! every call reports [`Error::LoggedOut`] instead of trying again.
//!
//! ```no_run
//! # async fn demo() -> Result<(), shared::client::Error> {
//! use shared::client::{BookInput, Client};
//!
//! let client = Client::new("http://127.0.0.1:8080")?;
//! client.login("admin", "password").await?;
//! let book = client
//!     .books()
//!     .create(&BookInput {
//!         title: "Dune".into(),
//!         author: "Frank Herbert".into(),
//!         ..BookInput::default()
//!     })
//!     .await?;
//! client.books().delete(&book.id, Some(book.version)).await?;
//! client.logout().await?;
//! # Ok(())
//! # }
//! ```

mod books;
mod error;
mod types;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, IF_MATCH, RETRY_AFTER};
use reqwest::{Method, Response, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::claims::Role;
use crate::error::ErrorBody;

pub use books::Books;
pub use error::{Error, SessionEnd};
use types::TokenPair;
pub use types::{
    AuditEvent, AuditPage, AuditQuery, Book, BookInput, BookPage, BookQuery, ServiceClient,
    Session, SessionInfo, TotpEnrolment, User, UserPage, UserQuery,
};

/// A client of the platform; cheap to clone, and clones share the session.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base: Url,
    state: Mutex<State>,
    /// Held for the whole of a refresh; remembers the last refresh's failure, if it failed.
    refresh_gate: Arc<tokio::sync::Mutex<Option<Error>>>,
    refresh_attempts: AtomicU64,
}

/// The session and a generation counter that moves on every change of it (login, refresh,
/// logout), so a caller can tell whether the tokens changed since it read them.
struct State {
    session: Option<Session>,
    generation: u64,
    ended: SessionEnd,
}

/// One request, kept so it can be sent again after a refresh.
#[derive(Clone)]
struct Call {
    method: Method,
    url: Url,
    body: Option<Vec<u8>>,
    if_match: Option<i64>,
}

impl Call {
    fn new(method: Method, url: Url) -> Self {
        Call {
            method,
            url,
            body: None,
            if_match: None,
        }
    }

    fn json(mut self, body: &impl Serialize) -> Result<Self, Error> {
        let bytes = serde_json::to_vec(body).map_err(|e| Error::Unexpected {
            status: None,
            message: format!("cannot encode the request body: {e}"),
        })?;
        self.body = Some(bytes);
        Ok(self)
    }

    fn if_match(mut self, version: Option<i64>) -> Self {
        self.if_match = version;
        self
    }
}

impl Client {
    /// A client of the platform at `base_url` (e.g. `http://127.0.0.1:8080`), not logged in.
    pub fn new(base_url: &str) -> Result<Self, Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            // Our API never redirects; following one could carry a token elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("authbooks-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(Error::transport)?;
        Self::with_http(base_url, http)
    }

    /// Like [`Client::new`] with a `reqwest::Client` of your own (timeouts, proxies, TLS roots).
    pub fn with_http(base_url: &str, http: reqwest::Client) -> Result<Self, Error> {
        let base = Url::parse(base_url.trim())
            .map_err(|e| Error::InvalidUrl(format!("{base_url:?}: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(Error::InvalidUrl(format!(
                "{base_url:?}: expected http://HOST[:PORT] or https://..."
            )));
        }
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                base,
                state: Mutex::new(State {
                    session: None,
                    generation: 0,
                    ended: SessionEnd::NotLoggedIn,
                }),
                refresh_gate: Arc::new(tokio::sync::Mutex::new(None)),
                refresh_attempts: AtomicU64::new(0),
            }),
        })
    }

    /// Resumes a session saved earlier from [`Client::session`].
    pub fn with_session(self, session: Session) -> Self {
        self.replace_session(Some(session), SessionEnd::NotLoggedIn);
        self
    }

    /// The current token pair, to save and resume later; `None` when logged out.
    pub fn session(&self) -> Option<Session> {
        self.state().session.clone()
    }

    /// The base URL, as given.
    pub fn base_url(&self) -> &str {
        self.inner.base.as_str()
    }

    /// How many `POST /auth/refresh` requests this client (and its clones) has sent.
    pub fn refresh_count(&self) -> u64 {
        self.inner.refresh_attempts.load(Ordering::SeqCst)
    }

    /// `POST /auth/register`: a new account with the role `user`. Does not log in.
    pub async fn register(&self, username: &str, password: &str) -> Result<User, Error> {
        let call = Call::new(Method::POST, self.url(&["auth", "register"]))
            .json(&serde_json::json!({ "username": username, "password": password }))?;
        json(self.execute(&call, None).await?).await
    }

    /// `POST /auth/login`: replaces the session with a fresh token pair.
    ///
    /// When the account has a second factor, the right password is answered with
    /// [`Error::MfaRequired`] and the session is left as it was: finish with
    /// [`Client::login_mfa`] and its `mfa_token` (single-use, valid 5 minutes).
    pub async fn login(&self, username: &str, password: &str) -> Result<(), Error> {
        let call = Call::new(Method::POST, self.url(&["auth", "login"]))
            .json(&serde_json::json!({ "username": username, "password": password }))?;
        let pair: TokenPair = json(self.execute(&call, None).await?).await?;
        self.replace_session(Some(pair.into()), SessionEnd::NotLoggedIn);
        Ok(())
    }

    /// `POST /auth/login/mfa`: the second step of a login answered [`Error::MfaRequired`],
    /// with a TOTP code or an unused recovery code; replaces the session like
    /// [`Client::login`]. A wrong, reused or expired code, or a spent `mfa_token`, is
    /// [`Error::InvalidMfaCode`] (an `mfa_token` takes 5 tries).
    pub async fn login_mfa(&self, mfa_token: &str, code: &str) -> Result<(), Error> {
        let call = Call::new(Method::POST, self.url(&["auth", "login", "mfa"]))
            .json(&serde_json::json!({ "mfa_token": mfa_token, "code": code }))?;
        let pair: TokenPair = json(self.execute(&call, None).await?).await?;
        self.replace_session(Some(pair.into()), SessionEnd::NotLoggedIn);
        Ok(())
    }

    /// Forgets the session without telling the server, for one the server has already ended
    /// (e.g. by [`Client::end_session`] of the current session). Calls then report
    /// [`Error::LoggedOut`].
    pub fn forget(&self) {
        self.replace_session(None, SessionEnd::LoggedOut);
    }

    /// `GET /auth/me`: the logged-in user, read from the database.
    pub async fn me(&self) -> Result<User, Error> {
        json(
            self.authed(Call::new(Method::GET, self.url(&["auth", "me"])))
                .await?,
        )
        .await
    }

    /// `PUT /auth/users/{id}/roles` (admin, fresh login): replaces a user's roles and ends
    /// that user's sessions.
    pub async fn set_roles(&self, user_id: &str, roles: &[Role]) -> Result<User, Error> {
        let url = self.url(&["auth", "users", segment(user_id, "user")?, "roles"]);
        let call = Call::new(Method::PUT, url).json(&serde_json::json!({ "roles": roles }))?;
        json(self.authed(call).await?).await
    }

    /// `GET /auth/users` (admin): one page of users, oldest account first.
    pub async fn users(&self, query: &UserQuery) -> Result<UserPage, Error> {
        let mut url = self.url(&["auth", "users"]);
        let pairs = query.pairs();
        if !pairs.is_empty() {
            url.query_pairs_mut().extend_pairs(pairs);
        }
        json(self.authed(Call::new(Method::GET, url)).await?).await
    }

    /// Every user matching `query`, following `next_cursor` page after page (admin).
    pub async fn all_users(&self, query: &UserQuery) -> Result<Vec<User>, Error> {
        let mut query = query.clone();
        let mut users = Vec::new();
        loop {
            let page = self.users(&query).await?;
            users.extend(page.items);
            match page.next_cursor {
                // A server repeating a cursor would otherwise keep us here forever.
                Some(next) if query.cursor.as_ref() != Some(&next) => query.cursor = Some(next),
                _ => return Ok(users),
            }
        }
    }

    /// The user of this name (exact, case-insensitive), if there is one (admin).
    pub async fn user_named(&self, username: &str) -> Result<Option<User>, Error> {
        if username.is_empty() {
            return Ok(None);
        }
        let query = UserQuery {
            username: Some(username.to_owned()),
            ..UserQuery::default()
        };
        let page = self.users(&query).await?;
        Ok(page
            .items
            .into_iter()
            .find(|user| user.username.eq_ignore_ascii_case(username)))
    }

    /// `GET /auth/users/{id}` (admin).
    pub async fn user(&self, id: &str) -> Result<User, Error> {
        let url = self.url(&["auth", "users", segment(id, "user")?]);
        json(self.authed(Call::new(Method::GET, url)).await?).await
    }

    /// `POST /auth/users/{id}/disable` (admin, fresh login): every session of the user ends,
    /// and login and refresh answer [`Error::AccountDisabled`] until enabled again. Disabling
    /// one's own account is [`Error::Conflict`].
    pub async fn disable_user(&self, id: &str) -> Result<User, Error> {
        let url = self.url(&["auth", "users", segment(id, "user")?, "disable"]);
        json(self.authed(Call::new(Method::POST, url)).await?).await
    }

    /// `POST /auth/users/{id}/enable` (admin, fresh login): the user may log in again; the old
    /// sessions stay ended.
    pub async fn enable_user(&self, id: &str) -> Result<User, Error> {
        let url = self.url(&["auth", "users", segment(id, "user")?, "enable"]);
        json(self.authed(Call::new(Method::POST, url)).await?).await
    }

    /// `GET /auth/users/{id}/sessions` (admin): the user's live sessions, newest first.
    pub async fn user_sessions(&self, id: &str) -> Result<Vec<SessionInfo>, Error> {
        let url = self.url(&["auth", "users", segment(id, "user")?, "sessions"]);
        let list: types::SessionList =
            json(self.authed(Call::new(Method::GET, url)).await?).await?;
        Ok(list.items)
    }

    /// `DELETE /auth/users/{id}/sessions` (admin, fresh login): ends every session of the
    /// user, everywhere.
    pub async fn end_user_sessions(&self, id: &str) -> Result<(), Error> {
        let url = self.url(&["auth", "users", segment(id, "user")?, "sessions"]);
        self.authed(Call::new(Method::DELETE, url)).await.map(drop)
    }

    /// `GET /auth/sessions`: the logged-in user's live sessions, newest first;
    /// [`SessionInfo::current`] marks this client's.
    pub async fn sessions(&self) -> Result<Vec<SessionInfo>, Error> {
        let call = Call::new(Method::GET, self.url(&["auth", "sessions"]));
        let list: types::SessionList = json(self.authed(call).await?).await?;
        Ok(list.items)
    }

    /// `DELETE /auth/sessions/{id}`: ends one of the logged-in user's sessions, everywhere.
    /// Ending this client's own session leaves it holding dead tokens: [`Client::forget`] them.
    pub async fn end_session(&self, id: &str) -> Result<(), Error> {
        let url = self.url(&["auth", "sessions", segment(id, "session")?]);
        self.authed(Call::new(Method::DELETE, url)).await.map(drop)
    }

    /// `GET /auth/audit` (admin): one page of the audit trail, newest first.
    pub async fn audit(&self, query: &AuditQuery) -> Result<AuditPage, Error> {
        let mut url = self.url(&["auth", "audit"]);
        let pairs = query.pairs();
        if !pairs.is_empty() {
            url.query_pairs_mut().extend_pairs(pairs);
        }
        json(self.authed(Call::new(Method::GET, url)).await?).await
    }

    /// `POST /auth/mfa/totp` (fresh login): starts TOTP enrolment with a new secret, which
    /// [`Client::confirm_totp`] turns on. A second call replaces an unconfirmed secret; with a
    /// factor already enrolled it is [`Error::Conflict`].
    pub async fn start_totp(&self) -> Result<TotpEnrolment, Error> {
        let call = Call::new(Method::POST, self.url(&["auth", "mfa", "totp"]));
        json(self.authed(call).await?).await
    }

    /// `POST /auth/mfa/totp/confirm` (fresh login): a code of the new secret turns the second
    /// factor on; the answer is the 10 recovery codes, shown this once.
    pub async fn confirm_totp(&self, code: &str) -> Result<Vec<String>, Error> {
        let call = Call::new(Method::POST, self.url(&["auth", "mfa", "totp", "confirm"]))
            .json(&serde_json::json!({ "code": code }))?;
        let codes: types::RecoveryCodes = json(self.authed(call).await?).await?;
        Ok(codes.recovery_codes)
    }

    /// `DELETE /auth/mfa/totp` (fresh login): removes the second factor and its recovery codes,
    /// given a current TOTP code or a recovery code.
    pub async fn remove_totp(&self, code: &str) -> Result<(), Error> {
        let call = Call::new(Method::DELETE, self.url(&["auth", "mfa", "totp"]))
            .json(&serde_json::json!({ "code": code }))?;
        self.authed(call).await.map(drop)
    }

    /// `POST /auth/clients`: a service account with these scopes (admin, fresh login); the
    /// answer carries its secret, shown this once.
    pub async fn create_client(
        &self,
        name: &str,
        scopes: &[String],
    ) -> Result<ServiceClient, Error> {
        let url = self.url(&["auth", "clients"]);
        let body = serde_json::json!({ "name": name, "scopes": scopes });
        let call = Call::new(Method::POST, url).json(&body)?;
        json(self.authed(call).await?).await
    }

    /// `GET /auth/clients` (admin).
    pub async fn clients(&self) -> Result<Vec<ServiceClient>, Error> {
        let call = Call::new(Method::GET, self.url(&["auth", "clients"]));
        let list: types::ServiceClientList = json(self.authed(call).await?).await?;
        Ok(list.items)
    }

    /// `DELETE /auth/clients/{id}`: the client and every token it holds end (admin, fresh).
    pub async fn delete_client(&self, id: &str) -> Result<(), Error> {
        let url = self.url(&["auth", "clients", segment(id, "client")?]);
        self.authed(Call::new(Method::DELETE, url)).await.map(drop)
    }

    /// `POST /auth/clients/{id}/secret`: a new secret (shown once); the old one and every token
    /// issued with it end (admin, fresh).
    pub async fn rotate_client_secret(&self, id: &str) -> Result<ServiceClient, Error> {
        let url = self.url(&["auth", "clients", segment(id, "client")?, "secret"]);
        json(self.authed(Call::new(Method::POST, url)).await?).await
    }

    /// The books API.
    pub fn books(&self) -> Books<'_> {
        Books::new(self)
    }

    /// Rotates the token pair now (single-flight with any refresh already under way).
    pub async fn refresh(&self) -> Result<(), Error> {
        let (_, generation) = self.current()?;
        self.refresh_after(generation).await
    }

    /// `POST /auth/logout` with the refresh token: ends this session on the server (both
    /// tokens and every token refreshed from them), then forgets it. A session the server had
    /// already ended is forgotten too; a transport failure keeps it, so the call can be retried.
    pub async fn logout(&self) -> Result<(), Error> {
        let url = self.url(&["auth", "logout"]);
        let result = self
            .authed_with(|session| {
                Call::new(Method::POST, url.clone())
                    .json(&serde_json::json!({ "refresh_token": session.refresh_token }))
            })
            .await;
        self.end_after(result)
    }

    /// `POST /auth/logout-all`: ends every session of the user, on every device, then forgets
    /// this one.
    pub async fn logout_all(&self) -> Result<(), Error> {
        let url = self.url(&["auth", "logout-all"]);
        let result = self.authed(Call::new(Method::POST, url)).await;
        self.end_after(result)
    }

    fn end_after(&self, result: Result<Response, Error>) -> Result<(), Error> {
        match result {
            Ok(_) | Err(Error::TokenRevoked(_) | Error::InvalidToken(_)) => {
                self.replace_session(None, SessionEnd::LoggedOut);
                Ok(())
            }
            // The refresh it needed found the session over: nothing is left to end.
            Err(Error::LoggedOut(end)) if end != SessionEnd::NotLoggedIn => Ok(()),
            Err(err) => Err(err),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The state is replaced whole under the lock, so a panic elsewhere cannot leave it torn.
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn replace_session(&self, session: Option<Session>, ended: SessionEnd) {
        let mut state = self.state();
        state.session = session;
        state.ended = ended;
        state.generation += 1;
    }

    /// The session and its generation, or why there is none.
    fn current(&self) -> Result<(Session, u64), Error> {
        let state = self.state();
        match &state.session {
            Some(session) => Ok((session.clone(), state.generation)),
            None => Err(Error::LoggedOut(state.ended)),
        }
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.inner.base.clone();
        // An http(s) URL always has a path to push onto; each segment is percent-encoded.
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    async fn execute(&self, call: &Call, token: Option<&str>) -> Result<Response, Error> {
        let mut request = self
            .inner
            .http
            .request(call.method.clone(), call.url.clone());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = &call.body {
            request = request
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        if let Some(version) = call.if_match {
            request = request.header(IF_MATCH, format!("\"{version}\""));
        }
        let response = request.send().await.map_err(Error::transport)?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(error_of(response).await)
        }
    }

    async fn authed(&self, call: Call) -> Result<Response, Error> {
        self.authed_with(|_| Ok(call.clone())).await
    }

    /// Sends the call with the access token; on `token_expired`, refreshes (single-flight) and
    /// sends it once more with the new token. Never more than one retry.
    async fn authed_with(
        &self,
        build: impl Fn(&Session) -> Result<Call, Error>,
    ) -> Result<Response, Error> {
        let (session, generation) = self.current()?;
        match self
            .execute(&build(&session)?, Some(&session.access_token))
            .await
        {
            Err(Error::TokenExpired(_)) => {
                self.refresh_after(generation).await?;
                let (session, _) = self.current()?;
                self.execute(&build(&session)?, Some(&session.access_token))
                    .await
            }
            other => other,
        }
    }

    /// Makes sure the session has moved past `seen` (the generation whose access token
    /// expired): by a refresh of its own, or by waiting for the one already under way.
    async fn refresh_after(&self, seen: u64) -> Result<(), Error> {
        let attempts_before = self.inner.refresh_attempts.load(Ordering::SeqCst);
        let gate = self.inner.refresh_gate.clone().lock_owned().await;
        if let Some(outcome) = self.settled_since(seen) {
            return outcome;
        }
        if self.inner.refresh_attempts.load(Ordering::SeqCst) != attempts_before {
            // A refresh ran while we waited and failed: share its answer instead of sending
            // another at once.
            if let Some(err) = gate.clone() {
                return Err(err);
            }
        }
        let (session, _) = self.current()?;
        self.inner.refresh_attempts.fetch_add(1, Ordering::SeqCst);
        // The refresh runs on its own task holding the gate, so a caller that gives up (a
        // timeout, a dropped future) cannot lose a rotated pair or let a second refresh start.
        let client = self.clone();
        let task = tokio::spawn(async move {
            let mut gate = gate;
            let outcome = client.rotate(seen, &session.refresh_token).await;
            *gate = outcome.as_ref().err().cloned();
            outcome
        });
        task.await.unwrap_or_else(|e| {
            Err(Error::Unexpected {
                status: None,
                message: format!("the refresh task failed: {e}"),
            })
        })
    }

    /// `Some` when the session changed since generation `seen`: go on with it, or it ended.
    fn settled_since(&self, seen: u64) -> Option<Result<(), Error>> {
        let state = self.state();
        (state.generation != seen).then(|| match state.session {
            Some(_) => Ok(()),
            None => Err(Error::LoggedOut(state.ended)),
        })
    }

    async fn rotate(&self, seen: u64, refresh_token: &str) -> Result<(), Error> {
        let call = Call::new(Method::POST, self.url(&["auth", "refresh"]));
        let answer = match self.execute(&call, Some(refresh_token)).await {
            Ok(response) => json::<TokenPair>(response).await,
            Err(err) => Err(err),
        };
        let mut state = self.state();
        if state.generation != seen {
            // A login or logout replaced the session meanwhile; it wins over this refresh.
            return match state.session {
                Some(_) => Ok(()),
                None => Err(Error::LoggedOut(state.ended)),
            };
        }
        match answer {
            Ok(pair) => {
                state.session = Some(pair.into());
                state.generation += 1;
                Ok(())
            }
            Err(err) => match err.ends_session() {
                Some(end) => {
                    state.session = None;
                    state.ended = end;
                    state.generation += 1;
                    Err(Error::LoggedOut(end))
                }
                None => Err(err),
            },
        }
    }
}

/// A path segment naming a resource; `.`/`..`/empty could only address something else.
fn segment<'a>(id: &'a str, what: &str) -> Result<&'a str, Error> {
    if matches!(id, "" | "." | "..") {
        return Err(Error::NotFound(format!("no such {what}: {id:?}")));
    }
    Ok(id)
}

async fn json<T: DeserializeOwned>(response: Response) -> Result<T, Error> {
    let status = response.status().as_u16();
    let bytes = response.bytes().await.map_err(Error::transport)?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Unexpected {
        status: Some(status),
        message: format!("the body does not match the contract: {e}"),
    })
}

/// The typed error of a non-2xx answer.
async fn error_of(response: Response) -> Error {
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    let bytes = match response.bytes().await {
        Ok(bytes) => bytes,
        Err(err) => return Error::transport(err),
    };
    match serde_json::from_slice::<ErrorBody>(&bytes) {
        Ok(body) => Error::from_body(body, retry_after),
        Err(_) => Error::Unexpected {
            status: Some(status),
            message: String::from_utf8_lossy(&bytes)
                .chars()
                .take(200)
                .collect::<String>(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_built_on_the_base_and_ids_are_encoded() {
        let client = Client::new("http://127.0.0.1:8080/").expect("valid");
        assert_eq!(
            client.url(&["books", "a/b?c"]).as_str(),
            "http://127.0.0.1:8080/books/a%2Fb%3Fc"
        );
        let prefixed = Client::new("https://example.com/api").expect("valid");
        assert_eq!(
            prefixed.url(&["auth", "login"]).as_str(),
            "https://example.com/api/auth/login"
        );
        assert!(segment("..", "book").is_err());
    }

    #[test]
    fn only_http_base_urls_are_accepted() {
        for bad in ["", "127.0.0.1:8080", "ftp://host", "mailto:a@b"] {
            assert!(
                matches!(Client::new(bad), Err(Error::InvalidUrl(_))),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn without_a_session_calls_report_not_logged_in() {
        let client = Client::new("http://127.0.0.1:9").expect("valid");
        assert_eq!(
            client.me().await,
            Err(Error::LoggedOut(SessionEnd::NotLoggedIn))
        );
        assert_eq!(client.refresh_count(), 0);
    }

    #[tokio::test]
    async fn an_unreachable_server_is_a_transport_error_and_keeps_the_session() {
        let session = Session {
            access_token: "a".into(),
            refresh_token: "r".into(),
        };
        let client = Client::new("http://127.0.0.1:9")
            .expect("valid")
            .with_session(session.clone());
        assert!(matches!(client.logout().await, Err(Error::Transport(_))));
        assert_eq!(client.session(), Some(session));
    }
}
