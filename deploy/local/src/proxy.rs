//! The front door of the local stack: the gateway's routing (`/auth/*`, `/.well-known/*`, `/oauth/*`, `/revocations*` to
//! auth-service, `/books*` to books-service) in a few lines of actix + reqwest, and the browser
//! page (`deploy/web`) at `/`.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use shared::error::rejections::BODY_LIMIT;
use shared::{ErrorBody, ErrorCode};

pub struct Upstreams {
    pub auth: String,
    pub books: String,
    pub client: reqwest::Client,
}

/// `GET /readyz` of the stack: both services ready.
pub async fn ready(upstreams: web::Data<Upstreams>) -> HttpResponse {
    for base in [&upstreams.auth, &upstreams.books] {
        let ok = upstreams
            .client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if !ok {
            return ErrorBody::new(ErrorCode::Unavailable, "not ready yet").into_response();
        }
    }
    HttpResponse::Ok().json(serde_json::json!({ "status": "ready" }))
}

/// The browser page, compiled in: the same three files the gateway serves at the same paths,
/// with the same content types and security headers (`deploy/nginx.conf.template`).
const PAGE_FILES: [(&str, &str, &str); 3] = [
    (
        "/",
        "text/html; charset=utf-8",
        include_str!("../../web/index.html"),
    ),
    (
        "/app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/app.js"),
    ),
    (
        "/app.css",
        "text/css; charset=utf-8",
        include_str!("../../web/app.css"),
    ),
];

/// The page loads its own script and style and talks to its own origin; nothing else, and it
/// cannot be framed (its delete button must not be clickjacked). Images may also be `data:` URLs:
/// the enrolment QR code, an SVG drawn by auth-service, is shown as an `<img>` of one (an image
/// runs no script and adds no markup to the page).
pub const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; \
    frame-ancestors 'none'";

/// `GET`/`HEAD` of the page's files; any other method on those paths is a JSON 405.
pub fn page_routes(cfg: &mut web::ServiceConfig) {
    for (path, content_type, body) in PAGE_FILES {
        let serve = move || async move {
            HttpResponse::Ok()
                .content_type(content_type)
                .insert_header(("Cache-Control", "no-cache"))
                .insert_header(("X-Content-Type-Options", "nosniff"))
                .insert_header(("Referrer-Policy", "no-referrer"))
                .insert_header(("Content-Security-Policy", PAGE_CSP))
                .body(body)
        };
        cfg.service(
            web::resource(path)
                .route(web::get().to(serve))
                .route(web::head().to(serve))
                .default_service(web::to(|| async {
                    ErrorBody::new(
                        ErrorCode::MethodNotAllowed,
                        "this method is not allowed on this path",
                    )
                    .into_response()
                })),
        );
    }
}

/// Headers that describe one hop, not the message (RFC 9110 section 7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn upstream<'a>(upstreams: &'a Upstreams, path: &str) -> Option<&'a str> {
    if path.starts_with("/auth/")
        || path.starts_with("/.well-known/")
        || path.starts_with("/oauth/")
        || path == "/revocations"
        || path.starts_with("/revocations/")
    {
        Some(&upstreams.auth)
    } else if path == "/books" || path.starts_with("/books/") {
        Some(&upstreams.books)
    } else {
        None
    }
}

/// The body, unless it is over the contract's 64 KiB.
async fn read_body(mut payload: web::Payload) -> Result<web::Bytes, HttpResponse> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| {
            ErrorBody::new(ErrorCode::BadRequest, "the request body could not be read")
                .into_response()
        })?;
        if body.len() + chunk.len() > BODY_LIMIT {
            return Err(ErrorBody::new(
                ErrorCode::PayloadTooLarge,
                "the request body is larger than 64 KiB",
            )
            .into_response());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

pub async fn forward(
    upstreams: web::Data<Upstreams>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let body = match read_body(payload).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let Some(base) = upstream(&upstreams, req.path()) else {
        return ErrorBody::new(ErrorCode::NotFound, "no such resource").into_response();
    };
    let url = match req.uri().query() {
        Some(query) => format!("{base}{}?{query}", req.path()),
        None => format!("{base}{}", req.path()),
    };
    let Ok(method) = reqwest::Method::from_bytes(req.method().as_str().as_bytes()) else {
        return ErrorBody::new(ErrorCode::BadRequest, "unsupported method").into_response();
    };
    let mut outgoing = upstreams.client.request(method, url).body(body);
    for (name, value) in req.headers() {
        // The client's own X-Forwarded-For is dropped, not appended to: this proxy is the first
        // hop, and auth-service trusts it, so whatever it forwards is taken as the client.
        if !HOP_BY_HOP.contains(&name.as_str()) && name != "host" && name != "x-forwarded-for" {
            outgoing = outgoing.header(name.as_str(), value.as_bytes());
        }
    }
    if let Some(peer) = req.peer_addr() {
        outgoing = outgoing.header("x-forwarded-for", peer.ip().to_string());
    }
    if let Some(host) = req.headers().get("host") {
        outgoing = outgoing.header("host", host.as_bytes());
    }
    let response = match outgoing.send().await {
        Ok(response) => response,
        Err(err) => {
            tracing::warn!(error = %err, "upstream unreachable");
            return ErrorBody::new(ErrorCode::Unavailable, "the service is unavailable")
                .into_response();
        }
    };
    let status =
        StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut answer = HttpResponse::build(status);
    for (name, value) in response.headers() {
        if !HOP_BY_HOP.contains(&name.as_str()) && name != "content-length" {
            answer.append_header((name.as_str(), value.as_bytes()));
        }
    }
    // Server-Sent Events pass through as they come; everything else is read whole, so a
    // failure midway is still a JSON 503.
    let event_stream = response
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if event_stream {
        return answer.streaming(
            response
                .bytes_stream()
                .map(|chunk| chunk.map_err(actix_web::error::ErrorBadGateway)),
        );
    }
    match response.bytes().await {
        Ok(bytes) => answer.body(bytes),
        Err(_) => {
            ErrorBody::new(ErrorCode::Unavailable, "the service is unavailable").into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use actix_web::http::{Method, StatusCode};
    use actix_web::{test, App};

    use super::*;

    #[actix_web::test]
    async fn serves_the_page_files_with_their_types_and_refuses_other_methods() {
        let app = test::init_service(App::new().configure(page_routes)).await;
        for (path, content_type) in [
            ("/", "text/html; charset=utf-8"),
            ("/app.js", "text/javascript; charset=utf-8"),
            ("/app.css", "text/css; charset=utf-8"),
        ] {
            let response =
                test::call_service(&app, test::TestRequest::get().uri(path).to_request()).await;
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            let get = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok());
            assert_eq!(get("content-type"), Some(content_type), "{path}");
            assert_eq!(get("content-security-policy"), Some(PAGE_CSP), "{path}");
            assert_eq!(get("x-content-type-options"), Some("nosniff"), "{path}");
            assert!(!test::read_body(response).await.is_empty(), "{path}");

            let head = test::TestRequest::default().method(Method::HEAD).uri(path);
            let response = test::call_service(&app, head.to_request()).await;
            assert_eq!(response.status(), StatusCode::OK, "HEAD {path}");

            let post = test::TestRequest::post().uri(path).to_request();
            let response = test::call_service(&app, post).await;
            assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED, "{path}");
            let body: serde_json::Value = test::read_body_json(response).await;
            assert_eq!(body["error"], "method_not_allowed");
        }
    }

    #[actix_web::test]
    async fn the_peer_replaces_the_clients_forwarded_for() {
        // An upstream that answers with the X-Forwarded-For lines it was sent.
        let upstream = actix_web::HttpServer::new(|| {
            App::new().default_service(web::to(|req: HttpRequest| async move {
                let lines: Vec<String> = req
                    .headers()
                    .get_all("x-forwarded-for")
                    .map(|line| String::from_utf8_lossy(line.as_bytes()).into_owned())
                    .collect();
                HttpResponse::Ok().json(lines)
            }))
        })
        .workers(1)
        .bind("127.0.0.1:0")
        .unwrap();
        let base = format!("http://{}", upstream.addrs()[0]);
        actix_web::rt::spawn(upstream.run());
        let upstreams = web::Data::new(Upstreams {
            auth: base.clone(),
            books: base,
            client: reqwest::Client::new(),
        });
        let app = test::init_service(
            App::new()
                .app_data(upstreams)
                .default_service(web::to(forward)),
        )
        .await;
        let request = test::TestRequest::post()
            .uri("/auth/login")
            .peer_addr("203.0.113.7:40000".parse().unwrap())
            .append_header(("x-forwarded-for", "6.6.6.6"))
            .append_header(("x-forwarded-for", "7.7.7.7, 8.8.8.8"))
            .to_request();

        let seen: Vec<String> = test::call_and_read_body_json(&app, request).await;

        assert_eq!(seen, ["203.0.113.7"]);
    }
}
