//! `shared::client` against the real platform: the local stack binary on a free port, with
//! short-lived tokens where a test needs them to expire.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};

use reqwest::StatusCode;
use shared::client::{BookInput, BookQuery, Client, Error, SessionEnd};
use shared::Role;

struct Stack {
    url: String,
    admin_password: String,
    _process: support::Process,
    _dir: tempfile::TempDir,
}

/// Starts `authbooks-local` on a free port with a fresh data directory and `settings`, and
/// waits until it is ready.
async fn start(settings: &[(&str, &str)]) -> Stack {
    let dir = tempfile::tempdir().expect("temp dir");
    let stack = support::LocalStack::start(dir.path(), "127.0.0.1:0", settings).await;
    Stack {
        url: stack.url,
        admin_password: stack
            .admin_password
            .expect("a first start creates the admin"),
        _process: stack.process,
        _dir: dir,
    }
}

/// A password the password policy accepts for `reader`.
const READER_PASSWORD: &str = "Lantern-orchid-Velvet-93";

/// Access tokens live 2 s and no leeway is granted, so they really expire during a test.
const SHORT_LIVED: [(&str, &str); 2] = [("ACCESS_TOKEN_TTL", "2"), ("JWT_LEEWAY", "0")];

impl Stack {
    async fn admin(&self) -> Client {
        let client = Client::new(&self.url).expect("client");
        client
            .login("admin", &self.admin_password)
            .await
            .expect("admin logs in");
        client
    }

    /// What the server says of `token` on `GET /books`, without any client logic.
    async fn raw_status(&self, token: &str) -> (StatusCode, String) {
        let response = reqwest::Client::new()
            .get(format!("{}/books", self.url))
            .bearer_auth(token)
            .send()
            .await
            .expect("answer");
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        (
            status,
            body["error"].as_str().unwrap_or_default().to_owned(),
        )
    }
}

/// A pass-through proxy in front of the stack that counts `POST /auth/refresh` requests: a
/// witness of the refreshes that does not rely on the client's own count.
struct CountingRelay {
    url: String,
    refreshes: Arc<AtomicU64>,
}

struct Upstream {
    base: String,
    http: reqwest::Client,
    refreshes: Arc<AtomicU64>,
}

async fn relay(upstream: web::Data<Upstream>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    if req.path() == "/auth/refresh" {
        upstream.refreshes.fetch_add(1, Ordering::SeqCst);
    }
    let method = reqwest::Method::from_bytes(req.method().as_str().as_bytes()).expect("method");
    let mut outgoing = upstream
        .http
        .request(method, format!("{}{}", upstream.base, req.uri()))
        .body(body);
    for (name, value) in req.headers() {
        if name != "host" && name != "connection" {
            outgoing = outgoing.header(name.as_str(), value.as_bytes());
        }
    }
    let answer = outgoing.send().await.expect("the stack answers");
    let mut response = HttpResponse::build(
        actix_web::http::StatusCode::from_u16(answer.status().as_u16()).expect("status"),
    );
    for (name, value) in answer.headers() {
        if name != "content-length" && name != "transfer-encoding" && name != "connection" {
            response.append_header((name.as_str(), value.as_bytes()));
        }
    }
    response.body(answer.bytes().await.expect("body"))
}

impl CountingRelay {
    fn start(base: &str) -> Self {
        let refreshes = Arc::new(AtomicU64::new(0));
        let upstream = web::Data::new(Upstream {
            base: base.to_owned(),
            http: reqwest::Client::new(),
            refreshes: refreshes.clone(),
        });
        let server = actix_web::HttpServer::new(move || {
            actix_web::App::new()
                .app_data(upstream.clone())
                .default_service(web::to(relay))
        })
        .workers(1)
        .bind("127.0.0.1:0")
        .expect("relay binds");
        let url = format!("http://{}", server.addrs()[0]);
        tokio::spawn(server.run());
        CountingRelay { url, refreshes }
    }

    fn refreshes(&self) -> u64 {
        self.refreshes.load(Ordering::SeqCst)
    }
}

fn dune() -> BookInput {
    BookInput {
        title: "Dune".into(),
        author: "Frank Herbert".into(),
        isbn: Some("978-0-441-17271-9".into()),
        published_year: Some(1965),
    }
}

/// Sleeps until every access token issued before now has expired (TTL 2 s, `exp` in seconds).
async fn outlive_access_tokens() {
    tokio::time::sleep(Duration::from_millis(3_200)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_access_token_that_expires_mid_session_is_refreshed_once_and_the_call_succeeds() {
    let stack = start(&SHORT_LIVED).await;
    let client = stack.admin().await;
    let book = client.books().create(&dune()).await.expect("created");
    let before = client.session().expect("logged in");

    outlive_access_tokens().await;
    assert_eq!(
        stack.raw_status(&before.access_token).await,
        (StatusCode::UNAUTHORIZED, "token_expired".to_owned()),
        "the old access token really has expired"
    );
    let fetched = client
        .books()
        .get(&book.id)
        .await
        .expect("refreshed and retried");

    assert_eq!(fetched, book);
    assert_eq!(client.refresh_count(), 1);
    let after = client.session().expect("still logged in");
    assert_ne!(after.access_token, before.access_token);
    assert_ne!(after.refresh_token, before.refresh_token, "rotated");
    client
        .books()
        .get(&book.id)
        .await
        .expect("the new token works");
    assert_eq!(
        client.refresh_count(),
        1,
        "no refresh while the token is valid"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_calls_with_an_expired_token_cause_exactly_one_refresh() {
    // Without a grace period a second refresh with the same token is `refresh_token_reused`
    // and revokes the whole session, so a duplicate refresh would also fail the calls.
    let stack = start(&[SHORT_LIVED[0], SHORT_LIVED[1], ("AUTH_REFRESH_GRACE", "0")]).await;
    let relay = CountingRelay::start(&stack.url);
    let client = Client::new(&relay.url).expect("client");
    client
        .login("admin", &stack.admin_password)
        .await
        .expect("admin logs in");
    let book = client.books().create(&dune()).await.expect("created");
    let expired = client.session().expect("logged in").access_token;
    outlive_access_tokens().await;
    assert_eq!(stack.raw_status(&expired).await.1, "token_expired");

    let calls: Vec<_> = (0..20)
        .map(|_| {
            let client = client.clone();
            let id = book.id.clone();
            tokio::spawn(async move { client.books().get(&id).await })
        })
        .collect();
    for call in calls {
        let fetched = call.await.expect("task").expect("every call succeeds");
        assert_eq!(fetched.id, book.id);
    }

    assert_eq!(
        relay.refreshes(),
        1,
        "one refresh reached the server for twenty calls"
    );
    assert_eq!(client.refresh_count(), 1);
    let session = client.session().expect("still logged in");
    assert_eq!(
        stack.raw_status(&session.access_token).await.0,
        StatusCode::OK,
        "the session was not revoked by a duplicate refresh"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_refresh_token_ends_the_session_cleanly() {
    let stack = start(&[SHORT_LIVED[0], SHORT_LIVED[1], ("AUTH_REFRESH_GRACE", "0")]).await;
    let victim = stack.admin().await;
    // Someone else holds a copy of the same tokens and refreshes first.
    let copy = Client::new(&stack.url)
        .expect("client")
        .with_session(victim.session().expect("logged in"));
    outlive_access_tokens().await;
    copy.books()
        .list(&BookQuery::default())
        .await
        .expect("the copy refreshes first");
    assert_eq!(copy.refresh_count(), 1);

    let ended = victim.books().list(&BookQuery::default()).await;

    assert_eq!(ended, Err(Error::LoggedOut(SessionEnd::RefreshTokenReused)));
    assert_eq!(victim.refresh_count(), 1, "one refresh attempt, no loop");
    assert_eq!(victim.session(), None);
    assert_eq!(
        victim.me().await,
        Err(Error::LoggedOut(SessionEnd::RefreshTokenReused)),
        "later calls fail at once"
    );
    assert_eq!(victim.refresh_count(), 1);
    // The server revoked the whole family, so the copy's fresh pair is dead as well.
    match copy.books().list(&BookQuery::default()).await {
        Err(Error::TokenRevoked(_) | Error::LoggedOut(_)) => {}
        other => panic!("the copy's session must be over too: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_refresh_token_reports_logged_out() {
    let stack = start(&[
        ("ACCESS_TOKEN_TTL", "1"),
        ("REFRESH_TOKEN_TTL", "2"),
        ("JWT_LEEWAY", "0"),
    ])
    .await;
    let client = stack.admin().await;
    outlive_access_tokens().await;

    let ended = client.me().await;

    assert_eq!(
        ended,
        Err(Error::LoggedOut(SessionEnd::RefreshTokenExpired))
    );
    assert_eq!(client.refresh_count(), 1);
    assert_eq!(client.session(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_and_its_typed_errors() {
    let stack = start(&[]).await;
    let admin = stack.admin().await;
    let me = admin.me().await.expect("me");
    assert_eq!(me.username, "admin");
    assert!(me.roles.contains(&Role::Admin));

    // Accounts and roles.
    let reader = Client::new(&stack.url).expect("client");
    match reader.register("reader", "reader-password").await {
        Err(Error::ValidationFailed { fields, .. }) => {
            assert_eq!(fields["password"], "must not contain the username")
        }
        other => panic!("the password policy's validation_failed expected: {other:?}"),
    }
    let user = reader
        .register("reader", READER_PASSWORD)
        .await
        .expect("registered");
    assert_eq!(user.roles, vec![Role::User]);
    assert!(matches!(
        reader.register("reader", READER_PASSWORD).await,
        Err(Error::Conflict(_))
    ));
    match reader.register("x", "short").await {
        Err(Error::ValidationFailed { fields, .. }) => {
            assert!(fields.contains_key("username") && fields.contains_key("password"))
        }
        other => panic!("validation_failed expected: {other:?}"),
    }
    assert!(matches!(
        reader.login("reader", "wrong-password").await,
        Err(Error::InvalidCredentials(_))
    ));
    reader
        .login("reader", READER_PASSWORD)
        .await
        .expect("reader logs in");
    assert!(matches!(
        reader.books().create(&dune()).await,
        Err(Error::InsufficientRole(_))
    ));
    let promoted = admin
        .set_roles(&user.id, &[Role::User, Role::Editor])
        .await
        .expect("roles set");
    assert_eq!(promoted.roles, vec![Role::User, Role::Editor]);
    assert!(
        matches!(reader.me().await, Err(Error::TokenRevoked(_))),
        "a role change ends the user's sessions"
    );
    reader
        .login("reader", READER_PASSWORD)
        .await
        .expect("logs in again");

    // Books.
    let book = reader
        .books()
        .create(&dune())
        .await
        .expect("editor creates");
    assert_eq!(book.version, 1);
    assert!(matches!(
        reader.books().create(&dune()).await,
        Err(Error::Conflict(_))
    ));
    let invalid = BookInput {
        title: String::new(),
        ..dune()
    };
    assert!(matches!(
        reader.books().create(&invalid).await,
        Err(Error::ValidationFailed { .. })
    ));
    let messiah = BookInput {
        title: "Dune Messiah".into(),
        isbn: None,
        ..dune()
    };
    let replaced = reader
        .books()
        .replace(&book.id, &messiah, Some(book.version))
        .await
        .expect("replaced");
    assert_eq!(
        (replaced.title.as_str(), replaced.version),
        ("Dune Messiah", 2)
    );
    assert!(matches!(
        reader
            .books()
            .replace(&book.id, &messiah, Some(book.version))
            .await,
        Err(Error::PreconditionFailed(_))
    ));
    let page = reader
        .books()
        .list(&BookQuery {
            q: Some("messiah".into()),
            ..BookQuery::default()
        })
        .await
        .expect("listed");
    assert_eq!(page.items, vec![replaced.clone()]);
    assert!(matches!(
        reader.books().delete(&book.id, None).await,
        Err(Error::InsufficientRole(_))
    ));
    admin
        .books()
        .delete(&book.id, Some(replaced.version))
        .await
        .expect("admin deletes");
    assert!(matches!(
        admin.books().get(&book.id).await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        admin.books().get("../auth/me").await,
        Err(Error::NotFound(_))
    ));

    // Logout ends the session on the server too.
    let access = reader.session().expect("logged in").access_token;
    reader.logout().await.expect("logged out");
    assert_eq!(reader.session(), None);
    assert_eq!(
        reader.me().await,
        Err(Error::LoggedOut(SessionEnd::LoggedOut))
    );
    assert_eq!(
        stack.raw_status(&access).await,
        (StatusCode::UNAUTHORIZED, "token_revoked".to_owned())
    );

    // Logout everywhere ends the other sessions of the user.
    let other_device = stack.admin().await;
    admin.logout_all().await.expect("logged out everywhere");
    assert!(matches!(
        other_device.me().await,
        Err(Error::TokenRevoked(_))
    ));
}

#[tokio::test]
async fn an_unreachable_platform_is_a_transport_error() {
    let port = shared::testing::free_port();
    let client = Client::new(&format!("http://127.0.0.1:{port}")).expect("client");
    assert!(matches!(
        client.login("admin", "password").await,
        Err(Error::Transport(_))
    ));
}
