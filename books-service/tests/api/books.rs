//! Book rules: validation, conflicts, conditional writes, pagination and filters.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{assert_error, book, spawn_stack, Backend};

both_backends!(
    invalid_books_are_422_with_every_field,
    duplicate_isbn_is_409,
    stale_if_match_is_412_and_writes_are_atomic,
    pages_follow_the_cursor_and_filters_apply,
    bad_requests_get_json_errors,
    pagination_is_complete_and_stable_while_books_are_added,
    bad_tokens_are_refused_with_their_codes,
);

async fn invalid_books_are_422_with_every_field(backend: Backend) {
    let stack = spawn_stack(backend).await;
    let editor = stack.user_with_roles("edith", "user,editor").await;

    let response = stack
        .create_book(
            &editor.access,
            &json!({ "title": "", "author": "a".repeat(101), "isbn": "978-0-306-40615-8", "published_year": 3000 }),
        )
        .await;

    let body = assert_error(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    let fields = body["fields"].as_object().unwrap();
    for name in ["title", "author", "isbn", "published_year"] {
        assert!(fields.contains_key(name), "{name} in {body}");
    }
    let listed: Value = stack
        .get(&editor.access, "/books")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"], json!([]), "nothing was stored");
}

async fn duplicate_isbn_is_409(backend: Backend) {
    let stack = spawn_stack(backend).await;
    let editor = stack.user_with_roles("edith", "user,editor").await;
    let first = json!({ "title": "A", "author": "B", "isbn": "0-8044-2957-X" });
    assert_eq!(
        stack.create_book(&editor.access, &first).await.status(),
        StatusCode::CREATED
    );

    let same_isbn_other_spelling = json!({ "title": "C", "author": "D", "isbn": "080442957x" });
    let response = stack
        .create_book(&editor.access, &same_isbn_other_spelling)
        .await;

    assert_error(response, StatusCode::CONFLICT, "conflict").await;
}

async fn stale_if_match_is_412_and_writes_are_atomic(backend: Backend) {
    let stack = spawn_stack(backend).await;
    let editor = stack.user_with_roles("edith", "user,editor,admin").await;
    let created: Value = stack
        .create_book(&editor.access, &book("Original", "Author"))
        .await
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();

    let updated = stack
        .replace_book(
            &editor.access,
            &id,
            Some("\"1\""),
            &book("Second", "Author"),
        )
        .await;
    assert_eq!(updated.status(), StatusCode::OK);
    let stale = stack
        .replace_book(
            &editor.access,
            &id,
            Some("\"1\""),
            &book("Lost update", "Author"),
        )
        .await;
    assert_error(
        stale,
        StatusCode::PRECONDITION_FAILED,
        "precondition_failed",
    )
    .await;
    let stale_delete = stack.delete_book(&editor.access, &id, Some("\"1\"")).await;
    assert_error(
        stale_delete,
        StatusCode::PRECONDITION_FAILED,
        "precondition_failed",
    )
    .await;

    let unchanged: Value = stack
        .get_book(&editor.access, &id)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        unchanged["title"], "Second",
        "a refused write changes nothing"
    );
    assert_eq!(unchanged["version"], 2);

    // Twenty writers holding the same ETag: exactly one wins.
    let writers = (0..20).map(|i| {
        let body = book(&format!("Writer {i}"), "Author");
        let (stack, token, id) = (&stack, editor.access.clone(), id.clone());
        async move {
            stack
                .replace_book(&token, &id, Some("\"2\""), &body)
                .await
                .status()
        }
    });
    let statuses = futures_util::future::join_all(writers).await;
    let wins = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    assert_eq!(wins, 1, "{statuses:?}");
    assert!(statuses
        .iter()
        .all(|s| *s == StatusCode::OK || *s == StatusCode::PRECONDITION_FAILED));
    let current = stack.get_book(&editor.access, &id).await;
    assert_eq!(current.headers()["etag"], "\"3\"");

    let unknown = uuid::Uuid::now_v7().to_string();
    let missing = stack
        .replace_book(&editor.access, &unknown, Some("\"1\""), &book("X", "Y"))
        .await;
    assert_error(missing, StatusCode::NOT_FOUND, "not_found").await;
}

async fn pages_follow_the_cursor_and_filters_apply(backend: Backend) {
    let stack = spawn_stack(backend).await;
    let editor = stack.user_with_roles("edith", "user,editor").await;
    let titles = [
        "Emma",
        "Persuasion",
        "Dune",
        "Children of Dune",
        "100% Pure",
    ];
    let authors = [
        "Jane Austen",
        "Jane Austen",
        "Frank Herbert",
        "Frank Herbert",
        "Someone",
    ];
    for (title, author) in titles.iter().zip(authors) {
        let created = stack
            .create_book(&editor.access, &book(title, author))
            .await;
        assert_eq!(created.status(), StatusCode::CREATED);
    }

    let mut seen = Vec::new();
    let mut path = "/books?limit=2".to_owned();
    loop {
        let page: Value = stack.get(&editor.access, &path).await.json().await.unwrap();
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        seen.extend(
            items
                .iter()
                .map(|b| b["title"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/books?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, titles, "every book once, in creation order");

    let by_author: Value = stack
        .get(&editor.access, "/books?author=jane%20austen")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(by_author["items"].as_array().unwrap().len(), 2);
    let by_title: Value = stack
        .get(&editor.access, "/books?q=DUNE")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(by_title["items"].as_array().unwrap().len(), 2);
    let literal_percent: Value = stack
        .get(&editor.access, "/books?q=%25")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(literal_percent["items"].as_array().unwrap().len(), 1);
}

async fn bad_requests_get_json_errors(backend: Backend) {
    let stack = spawn_stack(backend).await;
    let editor = stack.user_with_roles("edith", "user,editor").await;
    let token = &editor.access;

    for path in [
        "/books?limit=0",
        "/books?limit=101",
        "/books?limit=ten",
        "/books?cursor=zzz",
        "/books?color=red",
    ] {
        assert_error(
            stack.get(token, path).await,
            StatusCode::BAD_REQUEST,
            "bad_request",
        )
        .await;
    }
    assert_error(
        stack.get_book(token, "not-a-uuid").await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let not_json = stack
        .client
        .post(stack.books_url("/books"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_error(not_json, StatusCode::BAD_REQUEST, "bad_request").await;
    let patch = stack
        .client
        .patch(stack.books_url("/books"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_error(patch, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
    assert_error(
        stack.get(token, "/nothing").await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
}

async fn pagination_is_complete_and_stable_while_books_are_added(backend: Backend) {
    let stack = spawn_stack(backend).await;
    let editor = stack.user_with_roles("paige", "user,editor").await;
    let mut expected = Vec::new();
    for i in 0..45 {
        let created: Value = stack
            .create_book(&editor.access, &book(&format!("Book {i:02}"), "Author"))
            .await
            .json()
            .await
            .unwrap();
        expected.push(created["id"].as_str().unwrap().to_owned());
    }

    let mut seen = Vec::new();
    let mut path = "/books?limit=20".to_owned();
    let mut pages = 0;
    loop {
        let page: Value = stack.get(&editor.access, &path).await.json().await.unwrap();
        pages += 1;
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b["id"].as_str().unwrap().to_owned()),
        );
        // Someone adds a book between our pages.
        let added: Value = stack
            .create_book(&editor.access, &book(&format!("Added {pages}"), "Other"))
            .await
            .json()
            .await
            .unwrap();
        expected.push(added["id"].as_str().unwrap().to_owned());
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/books?limit=20&cursor={cursor}"),
            None => break,
        }
    }

    // Every book once, in creation order; books added meanwhile appear after the first 45, except
    // the one added after the last page was read.
    assert_eq!(seen.len(), expected.len() - 1);
    assert_eq!(seen, expected[..expected.len() - 1]);
    assert!(pages >= 3);
}

async fn bad_tokens_are_refused_with_their_codes(backend: Backend) {
    let stack = spawn_stack(backend).await;
    let tokens = stack.user_with_roles("quinn", "user").await;
    let key = signing_key(&stack.keys_dir);
    let claims = |edit: &dyn Fn(&mut Value)| {
        let mut claims = crate::helpers::payload(&tokens.access);
        edit(&mut claims);
        key.sign_jwt(claims.to_string().as_bytes()).unwrap()
    };
    let now = shared::now_unix();

    let genuine_copy = claims(&|_| {});
    assert_eq!(
        stack.get(&genuine_copy, "/books").await.status(),
        StatusCode::OK
    );
    let expired = claims(&|c| {
        c["iat"] = json!(now - 3600);
        c["nbf"] = json!(now - 3600);
        c["exp"] = json!(now - 600);
    });
    let other_audience = claims(&|c| c["aud"] = json!("someone-else"));
    let cases = [
        (tokens.refresh.clone(), "wrong_token_type"),
        (expired, "token_expired"),
        (other_audience, "invalid_token"),
        ("garbage".to_owned(), "invalid_token"),
        ("a.b.c".to_owned(), "invalid_token"),
    ];
    for (token, code) in cases {
        assert_error(
            stack.get(&token, "/books").await,
            StatusCode::UNAUTHORIZED,
            code,
        )
        .await;
    }
}

/// auth-service's own key, read from its keys directory, to mint tokens it would never issue.
fn signing_key(dir: &std::path::Path) -> auth_service::keys::SigningKey {
    let path = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "pem"))
        .unwrap();
    let pem = std::fs::read_to_string(&path).unwrap();
    auth_service::keys::SigningKey::from_pkcs8_pem(&pem, "test").unwrap()
}
