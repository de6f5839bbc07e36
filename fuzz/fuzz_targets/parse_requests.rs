//! Any bytes as the body of each request the services parse, taken the way the handlers take it:
//! the shared JSON extractor configuration, then the service's own parsing into domain input.
//! The outcome is a valid input or a 4xx with a contract error body, never a panic or a 5xx.
#![no_main]

use std::sync::OnceLock;

use actix_web::http::header::ContentType;
use actix_web::test::TestRequest;
use actix_web::{web, FromRequest, HttpResponse, ResponseError};
use auth_service::routes::account::{PasswordChange, RolesBody};
use auth_service::routes::auth::LogoutBody;
use auth_service::routes::dto::Credentials;
use books_service::domain::{BookInput, BookRequest};
use books_service::error::BooksError;
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use shared::error::rejections;
use shared::{ErrorBody, ErrorCode};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
    })
}

/// `web::Json<T>` with the services' `JsonConfig`, as in every handler that takes a JSON body.
fn extract<T: DeserializeOwned + 'static>(body: &[u8]) -> Option<T> {
    let (request, mut payload) = TestRequest::post()
        .insert_header(ContentType::json())
        .app_data(rejections::json_config())
        .set_payload(body.to_vec())
        .to_http_parts();
    match runtime().block_on(web::Json::<T>::from_request(&request, &mut payload)) {
        Ok(json) => Some(json.into_inner()),
        Err(error) => {
            assert_contract_rejection(error.error_response(), &[]);
            None
        }
    }
}

/// A 4xx whose body is an docs/api.md error of that status, naming only the request's own fields.
fn assert_contract_rejection(response: HttpResponse, fields: &[&str]) {
    let status = response.status();
    assert!(status.is_client_error(), "status {status}");
    let bytes = runtime()
        .block_on(actix_web::body::to_bytes(response.into_body()))
        .expect("body");
    let body: ErrorBody = serde_json::from_slice(&bytes).expect("a JSON error body");
    assert_eq!(body.error.status(), status, "{body:?}");
    assert!(ErrorCode::ALL.contains(&body.error));
    if let Some(named) = &body.fields {
        assert_eq!(body.error, ErrorCode::ValidationFailed);
        for name in named.keys() {
            assert!(
                name == "body" || fields.contains(&name.as_str()),
                "unexpected field {name}"
            );
        }
    }
}

fn check_book(book: BookInput) {
    let title = book.title.into_inner();
    assert_eq!(title.trim(), title);
    assert!((1..=200).contains(&title.chars().count()));
    let author = book.author.into_inner();
    assert!((1..=100).contains(&author.chars().count()));
    if let Some(isbn) = book.isbn {
        let isbn = isbn.into_inner();
        assert!(isbn.len() == 10 || isbn.len() == 13, "{isbn}");
        assert!(isbn.bytes().all(|b| b.is_ascii_digit() || b == b'X'));
    }
}

const BOOK_FIELDS: &[&str] = &["title", "author", "isbn", "published_year"];

fuzz_target!(|input: &[u8]| {
    let Some((&selector, body)) = input.split_first() else {
        return;
    };
    match selector % 5 {
        0 => {
            if let Some(request) = extract::<BookRequest>(body) {
                match request.parse() {
                    Ok(book) => check_book(book),
                    Err(fields) => assert_contract_rejection(
                        BooksError::Validation(fields).error_response(),
                        BOOK_FIELDS,
                    ),
                }
            }
        }
        1 => {
            if let Some(credentials) = extract::<Credentials>(body) {
                match credentials.into_new_account() {
                    Ok((username, password)) => {
                        let name = username.as_str();
                        assert!((3..=64).contains(&name.len()));
                        assert_eq!(name, name.to_ascii_lowercase());
                        assert!((8..=128).contains(&password.expose().chars().count()));
                    }
                    Err(e) => {
                        assert_contract_rejection(e.error_response(), &["username", "password"])
                    }
                }
            }
        }
        2 => {
            if let Some(change) = extract::<PasswordChange>(body) {
                if let Err(e) = change.parse() {
                    assert_contract_rejection(e.error_response(), &["new_password"]);
                }
            }
        }
        3 => {
            if let Some(request) = extract::<RolesBody>(body) {
                match request.parse() {
                    Ok(roles) => {
                        assert!(!roles.is_empty());
                        assert!(roles.windows(2).all(|pair| pair[0] < pair[1]));
                    }
                    Err(e) => assert_contract_rejection(e.error_response(), &["roles"]),
                }
            }
        }
        _ => {
            // `POST /auth/logout` reads raw bytes: its body is optional.
            if let Err(e) = LogoutBody::parse_optional(body) {
                assert_contract_rejection(e.error_response(), &["refresh_token"]);
            }
        }
    }
});
