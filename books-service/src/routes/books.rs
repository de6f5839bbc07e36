//! `/books`: CRUD. Each handler states its access rule on its first line.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use shared::{AccessClaims, ErrorBody, ErrorCode};

use crate::access;

use crate::domain::BookRequest;
use crate::error::BooksError;
use crate::state::AppState;
use crate::store::{BookRow, ListFilter};
use shared::api_errors;

pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/books")
            .route(web::get().to(list))
            .route(web::post().to(create))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/books/{id}")
            .route(web::get().to(get))
            .route(web::put().to(replace))
            .route(web::delete().to(delete))
            .default_service(web::to(method_not_allowed)),
    );
}

async fn method_not_allowed() -> HttpResponse {
    ErrorBody::new(
        ErrorCode::MethodNotAllowed,
        "this method is not allowed on this path",
    )
    .into_response()
}

/// A book. `isbn` is stored without hyphens; `version` is the value of its `ETag`.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Book)]
struct BookBody {
    id: String,
    title: String,
    author: String,
    isbn: Option<String>,
    published_year: Option<i32>,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
    version: i64,
}

fn rfc3339(millis: i64) -> String {
    chrono::DateTime::from_timestamp_millis(millis)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl From<BookRow> for BookBody {
    fn from(row: BookRow) -> Self {
        BookBody {
            created_at: rfc3339(row.created_at),
            updated_at: rfc3339(row.updated_at),
            id: row.id,
            title: row.title,
            author: row.author,
            isbn: row.isbn,
            published_year: row.published_year,
            version: row.version,
        }
    }
}

fn etag(version: i64) -> (header::HeaderName, String) {
    (header::ETAG, format!("\"{version}\""))
}

/// `If-Match`: absent or `*` means any version; `"n"` (or `W/"n"`) means exactly `n`. Anything
/// else can never match the current version.
fn expected_version(req: &HttpRequest) -> Result<Option<i64>, BooksError> {
    let Some(value) = req.headers().get(header::IF_MATCH) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| BooksError::PreconditionFailed)?
        .trim();
    if value == "*" {
        return Ok(None);
    }
    value
        .trim_start_matches("W/")
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .and_then(|v| v.parse::<i64>().ok())
        .map(Some)
        .ok_or(BooksError::PreconditionFailed)
}

/// Ids are UUIDs; anything else cannot name a book.
fn book_id(raw: &str) -> Result<String, BooksError> {
    uuid::Uuid::parse_str(raw)
        .map(|id| id.to_string())
        .map_err(|_| BooksError::NotFound)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    limit: Option<String>,
    cursor: Option<String>,
    author: Option<String>,
    q: Option<String>,
}

/// One page of books in creation order; `next_cursor` is null on the last page.
#[derive(Serialize, utoipa::ToSchema)]
struct Page {
    items: Vec<BookBody>,
    next_cursor: Option<String>,
}

api_errors!(ListErrors: TOKEN + [BadRequest, InsufficientRole]);

/// List books, oldest first (any user; a service with `books:read`)
///
/// An unknown query parameter, a `limit` outside 1-100 or a `cursor` this service did not
/// issue is `bad_request`.
#[utoipa::path(
    get,
    path = "/books",
    tag = "books",
    params(
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 100,
            description = "page size, default 20"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
        ("author" = Option<String>, Query, description = "exact author, case-insensitive"),
        ("q" = Option<String>, Query,
            description = "substring of the title, case-insensitive (`%` and `_` literal)"),
    ),
    security(("access_token" = []), ("access_cookie" = [])),
    responses((status = 200, description = "A page", body = Page), ListErrors)
)]
async fn list(
    state: web::Data<AppState>,
    claims: AccessClaims,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, BooksError> {
    access::may_read(&claims)?;
    let query = query.into_inner();
    let limit = match query.limit.as_deref() {
        None => 20,
        Some(raw) => raw
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| BooksError::BadRequest("limit must be a number from 1 to 100".into()))?,
    };
    let after = match query.cursor.as_deref() {
        None | Some("") => None,
        Some(raw) => Some(decode_cursor(raw)?),
    };
    let filter = ListFilter {
        limit,
        after,
        author: query.author.filter(|a| !a.trim().is_empty()),
        q: query.q.filter(|q| !q.is_empty()),
    };
    let (rows, more) = state.books.list(filter).await?;
    let next_cursor = more
        .then(|| rows.last().map(|row| URL_SAFE_NO_PAD.encode(&row.id)))
        .flatten();
    Ok(HttpResponse::Ok().json(Page {
        items: rows.into_iter().map(BookBody::from).collect(),
        next_cursor,
    }))
}

fn decode_cursor(raw: &str) -> Result<String, BooksError> {
    URL_SAFE_NO_PAD
        .decode(raw)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .filter(|id| uuid::Uuid::parse_str(id).is_ok())
        .ok_or_else(|| BooksError::BadRequest("cursor is not one this service issued".into()))
}

api_errors!(GetErrors: TOKEN + [NotFound, InsufficientRole]);

/// One book (any user; a service with `books:read`)
#[utoipa::path(
    get,
    path = "/books/{id}",
    tag = "books",
    params(("id" = String, Path, description = "the book's id (a UUID)")),
    security(("access_token" = []), ("access_cookie" = [])),
    responses(
        (status = 200, description = "The book", body = BookBody,
            headers(("ETag" = String, description = "`\"<version>\"`"))),
        GetErrors,
    )
)]
async fn get(
    state: web::Data<AppState>,
    claims: AccessClaims,
    id: web::Path<String>,
) -> Result<HttpResponse, BooksError> {
    access::may_read(&claims)?;
    let row = state.books.get(book_id(&id)?).await?;
    Ok(HttpResponse::Ok()
        .insert_header(etag(row.version))
        .json(BookBody::from(row)))
}

api_errors!(CreateErrors: TOKEN + JSON_BODY + [InsufficientRole, CsrfFailed, Conflict]);

/// Add a book (`editor` or `admin`; a service with `books:write`)
///
/// `title` 1-200 and `author` 1-100 characters after trimming; `isbn` an ISBN-10 or ISBN-13
/// with a valid check digit, unique; `published_year` not in the future.
#[utoipa::path(
    post,
    path = "/books",
    tag = "books",
    request_body = BookRequest,
    security(("access_token" = []), ("access_cookie" = [], "csrf_header" = [])),
    responses(
        (status = 201, description = "Created", body = BookBody,
            headers(
                ("Location" = String, description = "`/books/{id}`"),
                ("ETag" = String, description = "`\"<version>\"`"),
            )),
        CreateErrors,
    )
)]
async fn create(
    state: web::Data<AppState>,
    claims: AccessClaims,
    body: web::Json<BookRequest>,
) -> Result<HttpResponse, BooksError> {
    access::may_write(&claims)?;
    let input = body.into_inner().parse().map_err(BooksError::Validation)?;
    let row = state.books.create(input).await?;
    state.metrics.inc("books_created_total");
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/books/{}", row.id)))
        .insert_header(etag(row.version))
        .json(BookBody::from(row)))
}

api_errors!(
    ReplaceErrors: TOKEN + JSON_BODY
        + [InsufficientRole, CsrfFailed, NotFound, Conflict, PreconditionFailed]
);

/// Replace a book entirely (`editor` or `admin`; a service with `books:write`)
///
/// With `If-Match`, only while the book is still at that version; of concurrent writers holding
/// the same ETag exactly one wins.
#[utoipa::path(
    put,
    path = "/books/{id}",
    tag = "books",
    params(
        ("id" = String, Path, description = "the book's id (a UUID)"),
        ("If-Match" = Option<String>, Header,
            description = "`\"<version>\"`, `W/\"<version>\"` or `*`"),
    ),
    request_body = BookRequest,
    security(("access_token" = []), ("access_cookie" = [], "csrf_header" = [])),
    responses(
        (status = 200, description = "The new version", body = BookBody,
            headers(("ETag" = String, description = "`\"<version>\"`"))),
        ReplaceErrors,
    )
)]
async fn replace(
    state: web::Data<AppState>,
    claims: AccessClaims,
    req: HttpRequest,
    id: web::Path<String>,
    body: web::Json<BookRequest>,
) -> Result<HttpResponse, BooksError> {
    access::may_write(&claims)?;
    let id = book_id(&id)?;
    let expected = expected_version(&req)?;
    let input = body.into_inner().parse().map_err(BooksError::Validation)?;
    let row = state.books.replace(id, expected, input).await?;
    Ok(HttpResponse::Ok()
        .insert_header(etag(row.version))
        .json(BookBody::from(row)))
}

api_errors!(
    DeleteErrors: TOKEN
        + [FreshTokenRequired, InsufficientRole, CsrfFailed, NotFound, PreconditionFailed]
);

/// Delete a book (`admin` with a fresh token; never a service)
#[utoipa::path(
    delete,
    path = "/books/{id}",
    tag = "books",
    params(
        ("id" = String, Path, description = "the book's id (a UUID)"),
        ("If-Match" = Option<String>, Header,
            description = "`\"<version>\"`, `W/\"<version>\"` or `*`"),
    ),
    security(("access_token" = []), ("access_cookie" = [], "csrf_header" = [])),
    responses((status = 204, description = "Deleted"), DeleteErrors)
)]
async fn delete(
    state: web::Data<AppState>,
    claims: AccessClaims,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, BooksError> {
    access::may_delete(&claims)?;
    let id = book_id(&id)?;
    let expected = expected_version(&req)?;
    state.books.delete(id, expected).await?;
    state.metrics.inc("books_deleted_total");
    Ok(HttpResponse::NoContent().finish())
}
