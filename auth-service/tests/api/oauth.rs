//! Service accounts and the OAuth 2.0 endpoints (RFC 6749 §4.4 client credentials, RFC 7009
//! revocation, RFC 7662 introspection), over real HTTP with form bodies, as OAuth libraries
//! send them.

use reqwest::{Response, StatusCode};
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{assert_error, payload, spawn_app_with, tokens, Backend, TestApp, Tokens};

both_backends!(
    client_credentials_with_basic_and_with_post,
    invalid_client_is_401_with_www_authenticate_basic,
    bad_requests_get_rfc_6749_errors,
    scope_defaults_to_all_and_never_widens,
    introspection_is_inactive_for_each_way_a_token_dies,
    introspection_needs_the_introspect_scope,
    revoking_a_refresh_token_ends_its_session,
    revocation_of_invalid_tokens_is_200_and_of_another_clients_is_refused,
    deleting_or_rotating_a_client_ends_its_tokens,
    clients_are_administered_by_fresh_admins_and_secrets_are_shown_once,
);

const ADMIN: &str = "root";
const ADMIN_PASSWORD: &str = "bootstrap-password";

async fn spawn(backend: Backend) -> TestApp {
    spawn_app_with(
        backend,
        &[
            ("AUTH_BOOTSTRAP_ADMIN_USERNAME", ADMIN),
            ("AUTH_BOOTSTRAP_ADMIN_PASSWORD", ADMIN_PASSWORD),
        ],
    )
    .await
}

pub struct ClientCredentials {
    pub id: String,
    pub secret: String,
}

pub async fn admin_token(app: &TestApp) -> String {
    tokens(app.login(ADMIN, ADMIN_PASSWORD).await).await.access
}

pub async fn create_client(app: &TestApp, admin: &str, scopes: &[&str]) -> ClientCredentials {
    let response = app
        .client
        .post(app.url("/auth/clients"))
        .bearer_auth(admin)
        .json(&json!({ "name": "reports", "scopes": scopes }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    ClientCredentials {
        id: body["client_id"].as_str().unwrap().to_owned(),
        secret: body["client_secret"].as_str().unwrap().to_owned(),
    }
}

/// A form POST authenticated with HTTP Basic (`client_secret_basic`).
pub async fn post_form(
    app: &TestApp,
    path: &str,
    client: &ClientCredentials,
    form: &[(&str, &str)],
) -> Response {
    app.client
        .post(app.url(path))
        .basic_auth(&client.id, Some(&client.secret))
        .form(form)
        .send()
        .await
        .unwrap()
}

pub async fn service_token(app: &TestApp, client: &ClientCredentials) -> String {
    let response = post_form(
        app,
        "/oauth/token",
        client,
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

async fn introspect(app: &TestApp, client: &ClientCredentials, token: &str) -> Value {
    let response = post_form(app, "/oauth/introspect", client, &[("token", token)]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    response.json().await.unwrap()
}

async fn assert_oauth_error(response: Response, status: StatusCode, error: &str) -> Value {
    assert_eq!(response.status(), status);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], error, "{body}");
    assert!(body["error_description"].is_string(), "{body}");
    body
}

async fn client_credentials_with_basic_and_with_post(backend: Backend) {
    let app = spawn(backend).await;
    let admin = admin_token(&app).await;
    let client = create_client(&app, &admin, &["books:read", "introspect"]).await;

    let basic = post_form(
        &app,
        "/oauth/token",
        &client,
        &[("grant_type", "client_credentials")],
    )
    .await;
    let post = app
        .client
        .post(app.url("/oauth/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client.id.as_str()),
            ("client_secret", client.secret.as_str()),
        ])
        .send()
        .await
        .unwrap();

    for response in [basic, post] {
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["cache-control"], "no-store");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 900);
        assert_eq!(body["scope"], "books:read introspect");
        assert!(body.get("refresh_token").is_none());
        let claims = payload(body["access_token"].as_str().unwrap());
        assert_eq!(claims["sub"], client.id);
        assert_eq!(claims["client_id"], client.id);
        assert_eq!(claims["scope"], "books:read introspect");
        assert_eq!(claims["roles"], json!([]));
        assert_eq!(claims["type"], "access");
        assert_eq!(claims["fresh"], false);
        assert_eq!(claims["iss"], "http://127.0.0.1:8081");
        assert!(claims.get("username").is_none() && claims.get("sid").is_none());
    }
}

async fn invalid_client_is_401_with_www_authenticate_basic(backend: Backend) {
    let app = spawn(backend).await;
    let admin = admin_token(&app).await;
    let client = create_client(&app, &admin, &["books:read"]).await;
    let grant = [("grant_type", "client_credentials")];
    let wrong_secret = ClientCredentials {
        id: client.id.clone(),
        secret: format!("{}x", client.secret),
    };
    let unknown = ClientCredentials {
        id: uuid::Uuid::now_v7().to_string(),
        secret: client.secret.clone(),
    };

    let answers = [
        post_form(&app, "/oauth/token", &wrong_secret, &grant).await,
        post_form(&app, "/oauth/token", &unknown, &grant).await,
        app.client
            .post(app.url("/oauth/token"))
            .form(&grant)
            .send()
            .await
            .unwrap(),
        post_form(&app, "/oauth/introspect", &wrong_secret, &[("token", "x")]).await,
        post_form(&app, "/oauth/revoke", &wrong_secret, &[("token", "x")]).await,
    ];

    for response in answers {
        let challenge = response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(challenge.starts_with("Basic realm="), "{challenge}");
        let body = assert_oauth_error(response, StatusCode::UNAUTHORIZED, "invalid_client").await;
        assert_eq!(body["error_description"], "client authentication failed");
    }
}

async fn bad_requests_get_rfc_6749_errors(backend: Backend) {
    let app = spawn(backend).await;
    let admin = admin_token(&app).await;
    let client = create_client(&app, &admin, &["books:read"]).await;

    let unsupported = post_form(
        &app,
        "/oauth/token",
        &client,
        &[("grant_type", "password"), ("username", "root")],
    )
    .await;
    assert_oauth_error(
        unsupported,
        StatusCode::BAD_REQUEST,
        "unsupported_grant_type",
    )
    .await;
    let missing = post_form(&app, "/oauth/token", &client, &[("scope", "books:read")]).await;
    assert_oauth_error(missing, StatusCode::BAD_REQUEST, "invalid_request").await;
    let repeated = post_form(
        &app,
        "/oauth/token",
        &client,
        &[
            ("grant_type", "client_credentials"),
            ("grant_type", "client_credentials"),
        ],
    )
    .await;
    assert_oauth_error(repeated, StatusCode::BAD_REQUEST, "invalid_request").await;
    let json_body = app
        .client
        .post(app.url("/oauth/token"))
        .basic_auth(&client.id, Some(&client.secret))
        .json(&json!({ "grant_type": "client_credentials" }))
        .send()
        .await
        .unwrap();
    assert_oauth_error(json_body, StatusCode::BAD_REQUEST, "invalid_request").await;
    let both_methods = app
        .client
        .post(app.url("/oauth/token"))
        .basic_auth(&client.id, Some(&client.secret))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client.id.as_str()),
            ("client_secret", client.secret.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_oauth_error(both_methods, StatusCode::BAD_REQUEST, "invalid_request").await;
    let no_token = post_form(&app, "/oauth/revoke", &client, &[]).await;
    assert_oauth_error(no_token, StatusCode::BAD_REQUEST, "invalid_request").await;
}

async fn scope_defaults_to_all_and_never_widens(backend: Backend) {
    let app = spawn(backend).await;
    let admin = admin_token(&app).await;
    let client = create_client(&app, &admin, &["books:read", "revocations:read"]).await;

    let narrowed = post_form(
        &app,
        "/oauth/token",
        &client,
        &[
            ("grant_type", "client_credentials"),
            ("scope", "books:read"),
        ],
    )
    .await;
    assert_eq!(narrowed.status(), StatusCode::OK);
    let body: Value = narrowed.json().await.unwrap();
    assert_eq!(body["scope"], "books:read");
    assert_eq!(
        payload(body["access_token"].as_str().unwrap())["scope"],
        "books:read"
    );

    for asked in ["books:write", "books:read introspect", "admin"] {
        let response = post_form(
            &app,
            "/oauth/token",
            &client,
            &[("grant_type", "client_credentials"), ("scope", asked)],
        )
        .await;
        assert_oauth_error(response, StatusCode::BAD_REQUEST, "invalid_scope").await;
    }
}

async fn introspection_is_inactive_for_each_way_a_token_dies(backend: Backend) {
    let app = spawn_app_with(
        backend,
        &[
            ("AUTH_BOOTSTRAP_ADMIN_USERNAME", ADMIN),
            ("AUTH_BOOTSTRAP_ADMIN_PASSWORD", ADMIN_PASSWORD),
            // Reuse is reuse at once, even from the same client.
            ("AUTH_REFRESH_GRACE", "0"),
        ],
    )
    .await;
    let admin = admin_token(&app).await;
    let inspector = create_client(&app, &admin, &["introspect"]).await;
    let inactive = json!({ "active": false });

    // Alive: the claims plus client_id, token_type and scope.
    let alive = app.signed_up("ursula").await;
    let answer = introspect(&app, &inspector, &alive.access).await;
    assert_eq!(answer["active"], true);
    assert_eq!(answer["username"], "ursula");
    assert_eq!(answer["sub"], payload(&alive.access)["sub"]);
    assert_eq!(answer["token_type"], "Bearer");
    assert_eq!(answer["client_id"], "authbooks");
    assert_eq!(answer["scope"], "");
    assert_eq!(answer["iss"], "http://127.0.0.1:8081");
    let refresh = introspect(&app, &inspector, &alive.refresh).await;
    assert_eq!(refresh["active"], true);
    assert_eq!(refresh["token_type"], "refresh_token");
    let service = service_token(&app, &inspector).await;
    let answer = introspect(&app, &inspector, &service).await;
    assert_eq!(answer["active"], true);
    assert_eq!(answer["client_id"], inspector.id);
    assert_eq!(answer["scope"], "introspect");

    // Bad: not a JWT, tampered, signed by another issuer's key.
    assert_eq!(introspect(&app, &inspector, "not-a-token").await, inactive);
    let mut tampered = alive.access.clone();
    tampered.insert(tampered.len() - 4, 'A');
    tampered.truncate(alive.access.len());
    assert_eq!(introspect(&app, &inspector, &tampered).await, inactive);
    let stranger = spawn_app_with(backend, &[]).await;
    let foreign = stranger.signed_up("ursula").await;
    assert_eq!(
        introspect(&app, &inspector, &foreign.access).await,
        inactive
    );

    // Revoked: logout (the token), refresh reuse (the session), logout-all (a cut-off).
    let logged_out = app.signed_up("victor").await;
    assert_eq!(
        app.logout(&logged_out).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        introspect(&app, &inspector, &logged_out.access).await,
        inactive
    );
    assert_eq!(
        introspect(&app, &inspector, &logged_out.refresh).await,
        inactive
    );

    let rotated = tokens(app.login("ursula", crate::helpers::PASSWORD).await).await;
    let next = tokens(app.refresh(&rotated.refresh).await).await;
    // Spent by the rotation: presenting it again would be reuse.
    assert_eq!(
        introspect(&app, &inspector, &rotated.refresh).await,
        inactive
    );
    assert_eq!(
        introspect(&app, &inspector, &next.refresh).await["active"],
        true
    );
    assert_eq!(
        app.refresh(&rotated.refresh).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(introspect(&app, &inspector, &next.access).await, inactive);
    assert_eq!(introspect(&app, &inspector, &next.refresh).await, inactive);

    let everywhere = tokens(app.login("ursula", crate::helpers::PASSWORD).await).await;
    let ended = app
        .client
        .post(app.url("/auth/logout-all"))
        .bearer_auth(&everywhere.access)
        .send()
        .await
        .unwrap();
    assert_eq!(ended.status(), StatusCode::NO_CONTENT);
    assert_eq!(introspect(&app, &inspector, &alive.access).await, inactive);
    assert_eq!(
        introspect(&app, &inspector, &everywhere.refresh).await,
        inactive
    );

    // A deleted client's token.
    let doomed = create_client(&app, &admin, &["books:read"]).await;
    let doomed_token = service_token(&app, &doomed).await;
    assert_eq!(
        introspect(&app, &inspector, &doomed_token).await["active"],
        true
    );
    delete_client(&app, &admin, &doomed.id).await;
    assert_eq!(introspect(&app, &inspector, &doomed_token).await, inactive);

    // Expired: an instance sharing the keys and database, with 1 s tokens and no leeway.
    let short = app
        .another_instance_with(&[("ACCESS_TOKEN_TTL", "1"), ("JWT_LEEWAY", "0")])
        .await;
    let expiring = short.signed_up("wendy").await;
    assert_eq!(
        introspect(&short, &inspector, &expiring.access).await["active"],
        true
    );
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(
        introspect(&short, &inspector, &expiring.access).await,
        inactive
    );
}

async fn introspection_needs_the_introspect_scope(backend: Backend) {
    let app = spawn(backend).await;
    let admin = admin_token(&app).await;
    let reader = create_client(&app, &admin, &["books:read"]).await;

    let response = post_form(&app, "/oauth/introspect", &reader, &[("token", &admin)]).await;

    assert_oauth_error(response, StatusCode::BAD_REQUEST, "unauthorized_client").await;
}

async fn revoking_a_refresh_token_ends_its_session(backend: Backend) {
    let app = spawn(backend).await;
    let admin = admin_token(&app).await;
    let client = create_client(&app, &admin, &["books:read"]).await;
    let session = app.signed_up("xavier").await;
    let other_session = tokens(app.login("xavier", crate::helpers::PASSWORD).await).await;

    let response = post_form(
        &app,
        "/oauth/revoke",
        &client,
        &[
            ("token", session.refresh.as_str()),
            ("token_type_hint", "refresh_token"),
        ],
    )
    .await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_error(
        app.refresh(&session.refresh).await,
        StatusCode::UNAUTHORIZED,
        "token_revoked",
    )
    .await;
    // Its access token too: the whole session ended.
    assert_error(
        app.me(&session.access).await,
        StatusCode::UNAUTHORIZED,
        "token_revoked",
    )
    .await;
    // The user's other session lives on.
    assert_eq!(app.me(&other_session.access).await.status(), StatusCode::OK);
    // An access token alone: just that token.
    let response = post_form(
        &app,
        "/oauth/revoke",
        &client,
        &[("token", &other_session.access)],
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_error(
        app.me(&other_session.access).await,
        StatusCode::UNAUTHORIZED,
        "token_revoked",
    )
    .await;
    assert_eq!(
        app.refresh(&other_session.refresh).await.status(),
        StatusCode::OK
    );
}

async fn revocation_of_invalid_tokens_is_200_and_of_another_clients_is_refused(backend: Backend) {
    let app = spawn(backend).await;
    let admin = admin_token(&app).await;
    let mine = create_client(&app, &admin, &["books:read"]).await;
    let theirs = create_client(&app, &admin, &["introspect"]).await;
    let their_token = service_token(&app, &theirs).await;

    for junk in ["garbage", "a.b.c"] {
        let response = post_form(&app, "/oauth/revoke", &mine, &[("token", junk)]).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    let response = post_form(&app, "/oauth/revoke", &mine, &[("token", &their_token)]).await;
    assert_oauth_error(response, StatusCode::BAD_REQUEST, "unauthorized_client").await;
    assert_eq!(
        introspect(&app, &theirs, &their_token).await["active"],
        true
    );

    let response = post_form(&app, "/oauth/revoke", &theirs, &[("token", &their_token)]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        introspect(&app, &theirs, &service_token(&app, &theirs).await).await["active"],
        true
    );
    assert_eq!(
        introspect(&app, &theirs, &their_token).await["active"],
        false
    );
}

async fn delete_client(app: &TestApp, admin: &str, id: &str) {
    let response = app
        .client
        .delete(app.url(&format!("/auth/clients/{id}")))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
}

async fn deleting_or_rotating_a_client_ends_its_tokens(backend: Backend) {
    let app = spawn(backend).await;
    let admin = admin_token(&app).await;
    let inspector = create_client(&app, &admin, &["introspect"]).await;
    let rotated = create_client(&app, &admin, &["books:read"]).await;
    let before = service_token(&app, &rotated).await;

    let response = app
        .client
        .post(app.url(&format!("/auth/clients/{}/secret", rotated.id)))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["client_id"], rotated.id);
    let renewed = ClientCredentials {
        id: rotated.id.clone(),
        secret: body["client_secret"].as_str().unwrap().to_owned(),
    };
    assert_ne!(renewed.secret, rotated.secret);
    assert_eq!(introspect(&app, &inspector, &before).await["active"], false);
    let old_secret = post_form(
        &app,
        "/oauth/token",
        &rotated,
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_oauth_error(old_secret, StatusCode::UNAUTHORIZED, "invalid_client").await;
    let after = service_token(&app, &renewed).await;
    assert_eq!(introspect(&app, &inspector, &after).await["active"], true);

    delete_client(&app, &admin, &renewed.id).await;

    assert_eq!(introspect(&app, &inspector, &after).await["active"], false);
    let gone = post_form(
        &app,
        "/oauth/token",
        &renewed,
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_oauth_error(gone, StatusCode::UNAUTHORIZED, "invalid_client").await;
    let again = app
        .client
        .delete(app.url(&format!("/auth/clients/{}", renewed.id)))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_error(again, StatusCode::NOT_FOUND, "not_found").await;
}

async fn post_client(app: &TestApp, token: &str, scopes: Value) -> Response {
    app.client
        .post(app.url("/auth/clients"))
        .bearer_auth(token)
        .json(&json!({ "name": "x", "scopes": scopes }))
        .send()
        .await
        .unwrap()
}

async fn clients_are_administered_by_fresh_admins_and_secrets_are_shown_once(backend: Backend) {
    let app = spawn(backend).await;
    let admin_pair = tokens(app.login(ADMIN, ADMIN_PASSWORD).await).await;
    let client = create_client(&app, &admin_pair.access, &["books:write", "books:read"]).await;
    let user: Tokens = app.signed_up("yvonne").await;
    let stale_admin = tokens(app.refresh(&admin_pair.refresh).await).await;

    let as_user = post_client(&app, &user.access, json!(["books:read"])).await;
    assert_error(as_user, StatusCode::FORBIDDEN, "insufficient_role").await;
    let not_fresh = post_client(&app, &stale_admin.access, json!(["books:read"])).await;
    assert_error(not_fresh, StatusCode::UNAUTHORIZED, "fresh_token_required").await;
    let unknown_scope = post_client(&app, &admin_pair.access, json!(["root"])).await;
    assert_eq!(unknown_scope.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = unknown_scope.json().await.unwrap();
    assert!(body["fields"]["scopes"].is_string());

    // Listing needs admin but not a fresh token, and never shows a secret.
    let listed = app
        .client
        .get(app.url("/auth/clients"))
        .bearer_auth(&stale_admin.access)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), StatusCode::OK);
    let text = listed.text().await.unwrap();
    assert!(!text.contains(&client.secret));
    let listed: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(listed["items"][0]["client_id"], client.id);
    assert_eq!(
        listed["items"][0]["scopes"],
        json!(["books:read", "books:write"])
    );
    assert!(listed["items"][0].get("client_secret").is_none());
    // Stored as a keyed hash, not the secret.
    let stored = app.query_string("SELECT secret_hash AS value FROM clients");
    assert!(!stored.contains(&client.secret));
    assert_eq!(stored.len(), 43);
}
