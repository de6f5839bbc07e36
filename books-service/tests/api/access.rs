//! The seed tutorials' whole flow, and who may do what.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{assert_error, book, spawn_stack, Backend};

both_backends!(
    the_whole_flow_register_login_crud_refresh_logout,
    users_read_editors_write_fresh_admins_delete,
    requests_without_a_valid_token_are_refused,
    services_read_and_write_by_scope_and_never_delete,
);

async fn services_read_and_write_by_scope_and_never_delete(backend: Backend) {
    let stack = spawn_stack(backend).await;
    let editor = stack.user_with_roles("erin", "user,editor").await;
    let created: Value = stack
        .create_book(&editor.access, &book("Dune", "Frank Herbert"))
        .await
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let reader = stack.service_token(&["books:read"]).await;
    let writer = stack.service_token(&["books:write"]).await;
    let everything = stack
        .service_token(&[
            "books:read",
            "books:write",
            "introspect",
            "revocations:read",
        ])
        .await;

    // books:read reads, and nothing else.
    assert_eq!(stack.get_book(&reader, &id).await.status(), StatusCode::OK);
    assert_eq!(stack.get(&reader, "/books").await.status(), StatusCode::OK);
    assert_error(
        stack
            .create_book(&reader, &book("Emma", "Jane Austen"))
            .await,
        StatusCode::FORBIDDEN,
        "insufficient_role",
    )
    .await;
    // books:write creates and replaces, but does not read.
    assert_eq!(
        stack
            .create_book(&writer, &book("Emma", "Jane Austen"))
            .await
            .status(),
        StatusCode::CREATED
    );
    assert_eq!(
        stack
            .replace_book(&writer, &id, None, &book("Dune", "F. Herbert"))
            .await
            .status(),
        StatusCode::OK
    );
    assert_error(
        stack.get_book(&writer, &id).await,
        StatusCode::FORBIDDEN,
        "insufficient_role",
    )
    .await;
    // No service ever deletes, whatever its scopes: that needs a person, an admin, fresh.
    for token in [&reader, &writer, &everything] {
        assert_error(
            stack.delete_book(token, &id, None).await,
            StatusCode::FORBIDDEN,
            "insufficient_role",
        )
        .await;
    }
    assert_eq!(
        stack.get_book(&everything, &id).await.status(),
        StatusCode::OK
    );
}

async fn the_whole_flow_register_login_crud_refresh_logout(backend: Backend) {
    let stack = spawn_stack(backend).await;
    let tokens = stack.user_with_roles("alice", "user,editor,admin").await;

    let created = stack
        .create_book(
            &tokens.access,
            &json!({ "title": "Dune", "author": "Frank Herbert", "isbn": "978-0-441-17271-9", "published_year": 1965 }),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    assert_eq!(created.headers()["etag"], "\"1\"");
    let location = created.headers()["location"].to_str().unwrap().to_owned();
    let created: Value = created.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/books/{id}"));
    assert_eq!(created["isbn"], "9780441172719");
    assert_eq!(created["version"], 1);

    let list: Value = stack
        .get(&tokens.access, "/books")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["next_cursor"], Value::Null);

    let fetched = stack.get_book(&tokens.access, &id).await;
    assert_eq!(fetched.status(), StatusCode::OK);
    assert_eq!(fetched.json::<Value>().await.unwrap()["title"], "Dune");

    let replaced = stack
        .replace_book(
            &tokens.access,
            &id,
            Some("\"1\""),
            &book("Dune Messiah", "Frank Herbert"),
        )
        .await;
    assert_eq!(replaced.status(), StatusCode::OK);
    assert_eq!(replaced.headers()["etag"], "\"2\"");
    let replaced: Value = replaced.json().await.unwrap();
    assert_eq!(replaced["title"], "Dune Messiah");
    assert_eq!(replaced["isbn"], Value::Null, "PUT replaces the whole book");

    let refreshed = stack.refresh(&tokens.refresh).await;
    assert_eq!(
        stack.get_book(&refreshed.access, &id).await.status(),
        StatusCode::OK
    );
    let not_fresh = stack.delete_book(&refreshed.access, &id, None).await;
    assert_error(not_fresh, StatusCode::UNAUTHORIZED, "fresh_token_required").await;

    let fresh = stack.login("alice").await;
    let deleted = stack.delete_book(&fresh.access, &id, Some("\"2\"")).await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert_error(
        stack.get_book(&fresh.access, &id).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;

    assert_eq!(stack.logout(&fresh).await.status(), StatusCode::NO_CONTENT);
    let after_logout = stack.get(&fresh.access, "/books").await;
    assert_error(after_logout, StatusCode::UNAUTHORIZED, "token_revoked").await;
}

async fn users_read_editors_write_fresh_admins_delete(backend: Backend) {
    let stack = spawn_stack(backend).await;
    let user = stack.user_with_roles("uma", "user").await;
    let editor = stack.user_with_roles("eddie", "user,editor").await;
    let admin = stack.user_with_roles("ada", "user,admin").await;

    let by_user = stack
        .create_book(&user.access, &book("Emma", "Jane Austen"))
        .await;
    assert_error(by_user, StatusCode::FORBIDDEN, "insufficient_role").await;

    let by_editor = stack
        .create_book(&editor.access, &book("Emma", "Jane Austen"))
        .await;
    assert_eq!(by_editor.status(), StatusCode::CREATED);
    let id = by_editor.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        stack.get_book(&user.access, &id).await.status(),
        StatusCode::OK
    );
    let replaced = stack
        .replace_book(&editor.access, &id, None, &book("Emma", "J. Austen"))
        .await;
    assert_eq!(replaced.status(), StatusCode::OK);
    let by_user = stack
        .replace_book(&user.access, &id, None, &book("X", "Y"))
        .await;
    assert_error(by_user, StatusCode::FORBIDDEN, "insufficient_role").await;

    let editor_delete = stack.delete_book(&editor.access, &id, None).await;
    assert_error(editor_delete, StatusCode::FORBIDDEN, "insufficient_role").await;
    let stale_admin = stack.refresh(&admin.refresh).await;
    let not_fresh = stack.delete_book(&stale_admin.access, &id, None).await;
    assert_error(not_fresh, StatusCode::UNAUTHORIZED, "fresh_token_required").await;
    let fresh_admin = stack.delete_book(&admin.access, &id, None).await;
    assert_eq!(fresh_admin.status(), StatusCode::NO_CONTENT);
}

async fn requests_without_a_valid_token_are_refused(backend: Backend) {
    let stack = spawn_stack(backend).await;
    let tokens = stack.user_with_roles("trent", "user").await;

    let missing = stack
        .client
        .get(stack.books_url("/books"))
        .send()
        .await
        .unwrap();
    let www = missing.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(www.contains("invalid_request"), "{www}");
    assert_error(missing, StatusCode::UNAUTHORIZED, "missing_token").await;

    let refresh_as_access = stack.get(&tokens.refresh, "/books").await;
    assert_error(
        refresh_as_access,
        StatusCode::UNAUTHORIZED,
        "wrong_token_type",
    )
    .await;

    let mut tampered = tokens.access.clone();
    tampered.pop();
    tampered.push(if tokens.access.ends_with('A') {
        'B'
    } else {
        'A'
    });
    assert_error(
        stack.get(&tampered, "/books").await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
}
