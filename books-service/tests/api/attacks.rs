//! jwt_tool's playbook over real HTTP, against a real auth-service and books-service on
//! PostgreSQL + Redis: every forged, mangled or misplaced token is sent to three routes of each
//! service (as a bearer header, and as a cookie where it is a token), and every answer must be a
//! 4xx of docs/api.md with a JSON `ErrorBody` carrying the code the attack deserves. None is 2xx or
//! 5xx, an attacker's key server is never contacted, and both services still serve afterwards.
//!
//! The one answer that is not JSON: a request head over actix-http's 128 KiB buffer (the 1 MB
//! `Authorization` header) is refused by the HTTP codec before any application code runs, with
//! `431 Request Header Fields Too Large` and an empty body, or the connection is closed while the
//! client is still writing. actix offers no hook to shape that answer; it is a 4xx and harmless.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use actix_web::{web, App, HttpResponse, HttpServer};
use auth_service::keys::{generate_key_file, SigningKey};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey};
use reqwest::header::{HeaderValue, AUTHORIZATION, COOKIE};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{book, payload, spawn_stack, Backend, Stack, Tokens};

/// docs/api.md's error codes and their statuses.
const API_CODES: [(&str, u16); 18] = [
    ("bad_request", 400),
    ("missing_token", 401),
    ("invalid_token", 401),
    ("token_expired", 401),
    ("token_revoked", 401),
    ("wrong_token_type", 401),
    ("fresh_token_required", 401),
    ("refresh_token_reused", 401),
    ("invalid_credentials", 401),
    ("insufficient_role", 403),
    ("csrf_failed", 403),
    ("not_found", 404),
    ("conflict", 409),
    ("precondition_failed", 412),
    ("payload_too_large", 413),
    ("validation_failed", 422),
    ("rate_limited", 429),
    ("unavailable", 503),
];

const INVALID: &[&str] = &["invalid_token"];

/// The routes attacked: three of each service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Me,
    Refresh,
    Logout,
    ListBooks,
    CreateBook,
    DeleteBook,
}

const TARGETS: [Target; 6] = [
    Target::Me,
    Target::Refresh,
    Target::Logout,
    Target::ListBooks,
    Target::CreateBook,
    Target::DeleteBook,
];

/// Which routes an attack is aimed at: a real refresh token is a valid credential on
/// `/auth/refresh`, a real access token everywhere else.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Aim {
    Everywhere,
    AccessRoutes,
    RefreshRoute,
}

/// A change to the victim's claims before they are signed with the real key.
type Edit = Box<dyn Fn(&mut Value)>;

struct Attack {
    name: String,
    /// The `Authorization` header as sent.
    header: HeaderValue,
    /// The bare token, when there is one, to send as a cookie too.
    token: Option<String>,
    expect: &'static [&'static str],
    aim: Aim,
}

impl Attack {
    fn bearer(name: impl Into<String>, token: String, expect: &'static [&'static str]) -> Self {
        Attack {
            name: name.into(),
            header: HeaderValue::from_str(&format!("Bearer {token}")).expect("header value"),
            token: Some(token),
            expect,
            aim: Aim::Everywhere,
        }
    }

    fn raw(name: impl Into<String>, header: &[u8]) -> Self {
        Attack {
            name: name.into(),
            header: HeaderValue::from_bytes(header).expect("header value"),
            token: None,
            expect: INVALID,
            aim: Aim::Everywhere,
        }
    }

    fn aimed(mut self, aim: Aim) -> Self {
        self.aim = aim;
        self
    }

    fn applies_to(&self, target: Target) -> bool {
        match self.aim {
            Aim::Everywhere => true,
            Aim::AccessRoutes => target != Target::Refresh,
            Aim::RefreshRoute => target == Target::Refresh,
        }
    }
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// `header.payload` from raw JSON texts, so duplicate members and odd types arrive as written.
fn message(header: &str, payload: &str) -> String {
    format!("{}.{}", b64(header), b64(payload))
}

fn rs256(key: &SigningKey, header: &str, payload: &str) -> String {
    let message = message(header, payload);
    let signature = key.sign(message.as_bytes()).expect("sign");
    format!("{message}.{}", b64(signature))
}

fn hmac(alg: Algorithm, secret: &[u8], header: &str, payload: &str) -> String {
    let message = message(header, payload);
    let signature =
        jsonwebtoken::crypto::sign(message.as_bytes(), &EncodingKey::from_secret(secret), alg)
            .expect("hmac");
    format!("{message}.{signature}")
}

/// DER: tag, length, content.
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    match content.len() {
        n if n < 0x80 => out.push(n as u8),
        n if n < 0x100 => out.extend([0x81, n as u8]),
        n => out.extend([0x82, (n >> 8) as u8, n as u8]),
    }
    out.extend_from_slice(content);
    out
}

fn der_uint(big_endian: &[u8]) -> Vec<u8> {
    let mut bytes = big_endian.to_vec();
    if bytes[0] & 0x80 != 0 {
        bytes.insert(0, 0);
    }
    der(0x02, &bytes)
}

fn pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

/// The published key as an attacker would hold it: PKCS#1 and SPKI DER from the JWKS `n`, `e`.
struct PublicKeyForms {
    pkcs1: Vec<u8>,
    spki: Vec<u8>,
}

fn public_key_forms(jwk: &Value) -> PublicKeyForms {
    let n = URL_SAFE_NO_PAD.decode(jwk["n"].as_str().unwrap()).unwrap();
    let e = URL_SAFE_NO_PAD.decode(jwk["e"].as_str().unwrap()).unwrap();
    let pkcs1 = der(0x30, &[der_uint(&n), der_uint(&e)].concat());
    let rsa_encryption = [
        0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let algorithm = der(0x30, &rsa_encryption);
    let bit_string = der(0x03, &[&[0u8][..], &pkcs1].concat());
    let spki = der(0x30, &[algorithm, bit_string].concat());
    PublicKeyForms { pkcs1, spki }
}

/// A key server the attacker controls; counts every request it gets.
async fn attacker_server(jwks: Value) -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = HttpServer::new(move || {
        let counter = counter.clone();
        let jwks = jwks.clone();
        App::new().default_service(web::to(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            let jwks = jwks.clone();
            async move { HttpResponse::Ok().json(jwks) }
        }))
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    (url, hits)
}

/// Everything the attacks are built from.
struct Arsenal {
    real_key: SigningKey,
    real_pem: String,
    real_kid: String,
    attacker_key: SigningKey,
    attacker_url: String,
    attacker_hits: Arc<AtomicUsize>,
    jwks_body: String,
    jwk: Value,
    access: String,
    /// A non-fresh access token, from a refresh.
    stale_access: String,
    refresh: String,
    other_sub: String,
}

impl Arsenal {
    fn header(&self) -> String {
        json!({ "alg": "RS256", "typ": "JWT", "kid": self.real_kid }).to_string()
    }

    fn claims(&self) -> Value {
        payload(&self.access)
    }

    /// The victim's access claims after `edit`, signed with the issuer's real key.
    fn real_signed(&self, edit: impl FnOnce(&mut Value)) -> String {
        let mut claims = self.claims();
        edit(&mut claims);
        self.real_key
            .sign_jwt(claims.to_string().as_bytes())
            .unwrap()
    }

    fn attacks(&self) -> Vec<Attack> {
        let mut attacks = Vec::new();
        let claims = self.claims().to_string();
        let admin_claims = {
            let mut c = self.claims();
            c["roles"] = json!(["user", "editor", "admin"]);
            c["fresh"] = json!(true);
            c.to_string()
        };
        let kid = &self.real_kid;

        // alg none, in any spelling, with and without the empty signature segment.
        for alg in ["none", "None", "NONE", "nOnE"] {
            let header = json!({ "alg": alg, "typ": "JWT", "kid": kid }).to_string();
            attacks.push(Attack::bearer(
                format!("alg {alg}"),
                format!("{}.", message(&header, &admin_claims)),
                INVALID,
            ));
            attacks.push(Attack::bearer(
                format!("alg {alg}, two segments"),
                message(&header, &admin_claims),
                INVALID,
            ));
        }

        // RS256 -> HS256 confusion: HMAC keyed with the public key in every form it is found.
        let forms = public_key_forms(&self.jwk);
        let spki_pem = pem("PUBLIC KEY", &forms.spki);
        let pkcs1_pem = pem("RSA PUBLIC KEY", &forms.pkcs1);
        // The attacker's copies are the real public key: each verifies a real token.
        let (signed, signature) = self.access.rsplit_once('.').unwrap();
        for copy in [&spki_pem, &pkcs1_pem] {
            let key = jsonwebtoken::DecodingKey::from_rsa_pem(copy.as_bytes()).unwrap();
            let verified =
                jsonwebtoken::crypto::verify(signature, signed.as_bytes(), &key, Algorithm::RS256);
            assert!(verified.unwrap(), "a wrong copy of the public key");
        }
        let secrets: Vec<(&str, Vec<u8>)> = vec![
            ("SPKI PEM", spki_pem.clone().into_bytes()),
            (
                "SPKI PEM, no newline",
                spki_pem.trim_end().as_bytes().to_vec(),
            ),
            ("PKCS#1 PEM", pkcs1_pem.into_bytes()),
            ("SPKI DER", forms.spki.clone()),
            ("JWK", self.jwk.to_string().into_bytes()),
            ("JWKS document", self.jwks_body.clone().into_bytes()),
            ("JWK n", self.jwk["n"].as_str().unwrap().as_bytes().to_vec()),
        ];
        for (form, secret) in &secrets {
            for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
                let header = json!({ "alg": format!("{alg:?}"), "typ": "JWT", "kid": kid });
                attacks.push(Attack::bearer(
                    format!("{alg:?} keyed with the public key ({form})"),
                    hmac(alg, secret, &header.to_string(), &admin_claims),
                    INVALID,
                ));
            }
        }

        // kid path traversal, injection and mistyped kids.
        let kids = [
            json!("../../../../../../../../dev/null"),
            json!("/dev/null"),
            json!("../../../../../../../../etc/passwd"),
            json!(format!("../keys/{kid}")),
            json!("....//....//....//dev/null"),
            json!("x' UNION SELECT 'attacker';--"),
            json!("' OR '1'='1"),
            json!(format!("{kid}' --")),
            json!("1; DROP TABLE users; --"),
            json!("|/usr/bin/id"),
            json!(""),
            json!(null),
            json!(0),
            json!([kid]),
            json!({ "kid": kid }),
        ];
        for bad_kid in kids {
            let hs = json!({ "alg": "HS256", "typ": "JWT", "kid": bad_kid }).to_string();
            for secret in [&b""[..], b"attacker", b"\n"] {
                attacks.push(Attack::bearer(
                    format!("kid {bad_kid}, HS256 keyed {secret:?}"),
                    hmac(Algorithm::HS256, secret, &hs, &admin_claims),
                    INVALID,
                ));
            }
            let rs = json!({ "alg": "RS256", "typ": "JWT", "kid": bad_kid }).to_string();
            attacks.push(Attack::bearer(
                format!("kid {bad_kid}, RS256 by the attacker"),
                rs256(&self.attacker_key, &rs, &admin_claims),
                INVALID,
            ));
        }

        // Keys named by the token itself: jku, x5u, embedded jwk, all the attacker's.
        let attacker_jwk = serde_json::to_value(self.attacker_key.jwk()).unwrap();
        let attacker_kid = self.attacker_key.kid();
        let jku = format!("{}/.well-known/jwks.json", self.attacker_url);
        let x5u = format!("{}/cert.pem", self.attacker_url);
        let headers = [
            (
                "jku, attacker kid",
                json!({ "alg": "RS256", "kid": attacker_kid, "jku": jku }),
            ),
            (
                "jku, real kid",
                json!({ "alg": "RS256", "kid": kid, "jku": jku }),
            ),
            (
                "x5u, attacker kid",
                json!({ "alg": "RS256", "kid": attacker_kid, "x5u": x5u }),
            ),
            (
                "x5u, real kid",
                json!({ "alg": "RS256", "kid": kid, "x5u": x5u }),
            ),
            (
                "jwk, attacker kid",
                json!({ "alg": "RS256", "kid": attacker_kid, "jwk": attacker_jwk }),
            ),
            (
                "jwk, real kid",
                json!({ "alg": "RS256", "kid": kid, "jwk": attacker_jwk }),
            ),
            (
                "jwk, no kid",
                json!({ "alg": "RS256", "jwk": attacker_jwk }),
            ),
            (
                "attacker key with the real kid",
                json!({ "alg": "RS256", "typ": "JWT", "kid": kid }),
            ),
            (
                "attacker key, its own kid",
                json!({ "alg": "RS256", "typ": "JWT", "kid": attacker_kid }),
            ),
        ];
        for (name, header) in headers {
            attacks.push(Attack::bearer(
                name,
                rs256(&self.attacker_key, &header.to_string(), &admin_claims),
                INVALID,
            ));
        }

        // Other algorithms with the real key, and a `crit` extension.
        let real_encoding = EncodingKey::from_rsa_pem(self.real_pem.as_bytes()).unwrap();
        for (alg, named) in [
            (Algorithm::PS256, "PS256"),
            (Algorithm::RS512, "RS512"),
            (Algorithm::PS256, "RS256"),
        ] {
            let header = json!({ "alg": named, "typ": "JWT", "kid": kid }).to_string();
            let message = message(&header, &admin_claims);
            let signature =
                jsonwebtoken::crypto::sign(message.as_bytes(), &real_encoding, alg).unwrap();
            attacks.push(Attack::bearer(
                format!("{alg:?} by the real key, header says {named}"),
                format!("{message}.{signature}"),
                INVALID,
            ));
        }
        let crit = json!({ "alg": "RS256", "kid": kid, "crit": ["exp"], "exp": 1 }).to_string();
        attacks.push(Attack::bearer(
            "crit header",
            rs256(&self.real_key, &crit, &claims),
            INVALID,
        ));

        // Signatures stripped, emptied, truncated, altered or borrowed.
        let (signed, signature) = self.access.rsplit_once('.').unwrap();
        let mut flipped = URL_SAFE_NO_PAD.decode(signature).unwrap();
        flipped[100] ^= 0x01;
        let (_, refresh_signature) = self.refresh.rsplit_once('.').unwrap();
        for (name, token) in [
            ("stripped signature", format!("{signed}.")),
            ("no signature segment", signed.to_owned()),
            (
                "truncated signature",
                format!("{signed}.{}", &signature[..signature.len() - 4]),
            ),
            (
                "half a signature",
                format!("{signed}.{}", &signature[..signature.len() / 2]),
            ),
            ("one bit flipped", format!("{signed}.{}", b64(&flipped))),
            ("padded signature", format!("{signed}.{signature}==")),
            (
                "standard base64 signature",
                format!(
                    "{signed}.{}",
                    STANDARD.encode(URL_SAFE_NO_PAD.decode(signature).unwrap())
                ),
            ),
            (
                "another token's signature",
                format!("{signed}.{refresh_signature}"),
            ),
            ("four segments", format!("{}.extra", self.access)),
            ("five segments (JWE shape)", format!("{}.a.b", self.access)),
            (
                "empty header",
                format!(".{}", self.access.split_once('.').unwrap().1),
            ),
            ("empty token parts", "..".to_owned()),
        ] {
            attacks.push(Attack::bearer(name, token, INVALID));
        }

        // Payload tampering under the original signature.
        let (header_part, rest) = self.access.split_once('.').unwrap();
        let (_, signature) = rest.split_once('.').unwrap();
        let tamper = |edit: &dyn Fn(&mut Value)| {
            let mut claims = self.claims();
            edit(&mut claims);
            format!("{header_part}.{}.{signature}", b64(claims.to_string()))
        };
        let other = self.other_sub.clone();
        let stale_header = self.stale_access.split('.').next().unwrap().to_owned();
        let stale_signature = self.stale_access.rsplit('.').next().unwrap().to_owned();
        let mut fresh = payload(&self.stale_access);
        fresh["fresh"] = json!(true);
        for (name, token) in [
            (
                "roles tampered to admin",
                tamper(&|c| c["roles"] = json!(["user", "editor", "admin"])),
            ),
            ("sub tampered", tamper(&|c| c["sub"] = json!(other))),
            (
                "type tampered to refresh",
                tamper(&|c| c["type"] = json!("refresh")),
            ),
            (
                "username tampered",
                tamper(&|c| c["username"] = json!("admin")),
            ),
            (
                "exp extended",
                tamper(&|c| c["exp"] = json!(c["exp"].as_i64().unwrap() + 86_400)),
            ),
            (
                "fresh tampered to true",
                format!(
                    "{stale_header}.{}.{stale_signature}",
                    b64(fresh.to_string())
                ),
            ),
        ] {
            attacks.push(Attack::bearer(name, token, INVALID));
        }

        // Time claims, iss and aud: signed with the real key, each breaking one rule.
        let now = shared::now_unix();
        let timed: [(&str, Edit, &'static [&'static str]); 14] = [
            (
                "exp as a string",
                Box::new(|c| c["exp"] = json!("9999999999")),
                INVALID,
            ),
            (
                "exp as a float",
                Box::new(|c| c["exp"] = json!(9_999_999_999.5)),
                INVALID,
            ),
            ("exp 1e19", Box::new(|c| c["exp"] = json!(1e19)), INVALID),
            (
                "exp past i64",
                Box::new(|c| c["exp"] = json!(9_223_372_036_854_775_808u64)),
                INVALID,
            ),
            ("exp null", Box::new(|c| c["exp"] = Value::Null), INVALID),
            (
                "exp missing",
                Box::new(|c| {
                    c.as_object_mut().unwrap().remove("exp");
                }),
                INVALID,
            ),
            (
                "exp an hour ago",
                Box::new(move |c| c["exp"] = json!(now - 3600)),
                &["token_expired"],
            ),
            (
                "nbf in an hour",
                Box::new(move |c| c["nbf"] = json!(now + 3600)),
                INVALID,
            ),
            (
                "nbf as a string",
                Box::new(|c| c["nbf"] = json!("0")),
                INVALID,
            ),
            (
                "wrong iss",
                Box::new(|c| c["iss"] = json!("https://attacker.example")),
                INVALID,
            ),
            (
                "iss missing",
                Box::new(|c| {
                    c.as_object_mut().unwrap().remove("iss");
                }),
                INVALID,
            ),
            (
                "wrong aud",
                Box::new(|c| c["aud"] = json!("some-other-api")),
                INVALID,
            ),
            (
                "aud as a list",
                Box::new(|c| c["aud"] = json!(["some-other-api", c["aud"].clone()])),
                INVALID,
            ),
            (
                "roles as a string",
                Box::new(|c| c["roles"] = json!("admin")),
                INVALID,
            ),
        ];
        for (name, edit, expect) in timed {
            attacks.push(Attack::bearer(name, self.real_signed(edit), expect));
        }

        // A token of the other type.
        attacks.push(
            Attack::bearer(
                "a refresh token as access",
                self.refresh.clone(),
                &["wrong_token_type"],
            )
            .aimed(Aim::AccessRoutes),
        );
        attacks.push(
            Attack::bearer(
                "an access token as refresh",
                self.access.clone(),
                &["wrong_token_type"],
            )
            .aimed(Aim::RefreshRoute),
        );

        // Duplicate JSON members, signed with the real key.
        let body = claims.trim_start_matches('{');
        let duplicates = [
            (
                "duplicate alg in header (none last)",
                format!(r#"{{"alg":"RS256","typ":"JWT","kid":"{kid}","alg":"none"}}"#),
                claims.clone(),
            ),
            (
                "duplicate alg in header (none first)",
                format!(r#"{{"alg":"none","alg":"RS256","typ":"JWT","kid":"{kid}"}}"#),
                claims.clone(),
            ),
            (
                "duplicate kid in header",
                format!(r#"{{"alg":"RS256","kid":"{attacker_kid}","kid":"{kid}"}}"#),
                claims.clone(),
            ),
            (
                "duplicate roles in payload",
                self.header(),
                format!(r#"{{"roles":["user","editor","admin"],{body}"#),
            ),
            (
                "duplicate type in payload",
                self.header(),
                format!(r#"{{"type":"refresh",{body}"#),
            ),
            (
                "duplicate sub in payload",
                self.header(),
                format!(r#"{{"sub":"{other}",{body}"#),
            ),
            (
                "duplicate exp in payload",
                self.header(),
                format!(r#"{{"exp":99999999999,{body}"#),
            ),
        ];
        for (name, header, payload) in duplicates {
            attacks.push(Attack::bearer(
                name,
                rs256(&self.real_key, &header, &payload),
                INVALID,
            ));
        }

        // Oversized and malformed headers.
        let padded = self.real_signed(|c| c["pad"] = json!("x".repeat(8 * 1024)));
        attacks.push(Attack::bearer(
            "real signature, over 8 KiB",
            padded,
            INVALID,
        ));
        attacks.push(Attack::raw(
            "8 KB header",
            format!("Bearer {}", "A".repeat(8 * 1024)).as_bytes(),
        ));
        attacks.push(Attack::raw(
            "64 KB header",
            format!("Bearer {}", "A".repeat(64 * 1024)).as_bytes(),
        ));
        let mut non_utf8 = format!("Bearer {}", self.access).into_bytes();
        non_utf8.insert(20, 0xff);
        attacks.push(Attack::raw("non-UTF-8 byte in a real token", &non_utf8));
        attacks.push(Attack::raw(
            "only non-UTF-8 bytes",
            b"Bearer \x80\xfe\xff\xc3\x28",
        ));
        attacks.push(Attack::raw("Latin-1 scheme", b"B\xe9arer x.y.z"));
        attacks.push(Attack::raw("scheme only", b"Bearer"));
        attacks.push(Attack::raw("Basic credentials", b"Basic YWRtaW46YWRtaW4="));
        attacks.push(Attack::raw(
            "another scheme with the real token",
            format!("Token {}", self.access).as_bytes(),
        ));
        attacks.push(Attack::raw(
            "trailing garbage",
            format!("Bearer {} x", self.access).as_bytes(),
        ));
        attacks.push(Attack::raw("not a JWT", b"Bearer not-a-jwt"));
        attacks.push(Attack::raw(
            "base64 of JSON nonsense",
            format!("Bearer {}.{}.{}", b64("[]"), b64("null"), b64("x")).as_bytes(),
        ));
        attacks
    }
}

async fn send(
    stack: &Stack,
    target: Target,
    book_id: &str,
    credential: Credential<'_>,
) -> reqwest::Result<reqwest::Response> {
    let (method, url) = match target {
        Target::Me => (Method::GET, format!("{}/auth/me", stack.auth)),
        Target::Refresh => (Method::POST, format!("{}/auth/refresh", stack.auth)),
        Target::Logout => (Method::POST, format!("{}/auth/logout", stack.auth)),
        Target::ListBooks => (Method::GET, stack.books_url("/books")),
        Target::CreateBook => (Method::POST, stack.books_url("/books")),
        Target::DeleteBook => (
            Method::DELETE,
            stack.books_url(&format!("/books/{book_id}")),
        ),
    };
    let mut request = stack.client.request(method, url);
    request = match credential {
        Credential::Header(value) => request.header(AUTHORIZATION, value.clone()),
        Credential::Cookie(token) => {
            let name = if target == Target::Refresh {
                "refresh_token_cookie"
            } else {
                "access_token_cookie"
            };
            // A CSRF header too, so only the token can be what is refused.
            request
                .header(COOKIE, format!("{name}={token}; csrf_access_token=x"))
                .header("X-CSRF-TOKEN", "x")
        }
    };
    if target == Target::CreateBook {
        request = request.json(&book("Forged", "Mallory"));
    }
    request.send().await
}

#[derive(Clone, Copy)]
enum Credential<'a> {
    Header(&'a HeaderValue),
    Cookie(&'a str),
}

/// The answer is a 4xx of docs/api.md with a JSON body whose `error` is one `expect`ed.
async fn assert_refused(
    response: reqwest::Response,
    expect: &[&str],
    what: &str,
    failures: &mut Vec<String>,
) {
    let status = response.status();
    let body = response.bytes().await.unwrap_or_default();
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let code = parsed
        .as_ref()
        .and_then(|b| b["error"].as_str())
        .unwrap_or_default();
    let documented = API_CODES
        .iter()
        .any(|(c, s)| *c == code && *s == status.as_u16());
    let has_message = parsed
        .as_ref()
        .is_some_and(|b| b["message"].as_str().is_some_and(|m| !m.is_empty()));
    if !status.is_client_error() || !documented || !has_message || !expect.contains(&code) {
        failures.push(format!(
            "{what}: {status} {} (expected {expect:?})",
            String::from_utf8_lossy(&body)
        ));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forged_and_misused_tokens_are_refused_by_both_services() {
    let stack = spawn_stack(Backend::Postgres).await;
    let victim = stack.user_with_roles("victim", "user").await;
    let admin = stack.user_with_roles("boss", "user,editor,admin").await;
    // A live pair whose access token is not fresh, from a rotation.
    let rotated = stack.refresh(&victim.refresh).await;
    let created = stack
        .create_book(&admin.access, &book("Dune", "Frank Herbert"))
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let book_id = created.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let mut arsenal = arsenal(&stack, &victim, &admin).await;
    arsenal.stale_access = rotated.access.clone();
    arsenal.refresh = rotated.refresh.clone();
    let attacks = arsenal.attacks();
    let mut failures = Vec::new();
    let mut sent = 0;
    for attack in &attacks {
        for target in TARGETS.into_iter().filter(|t| attack.applies_to(*t)) {
            let what = format!("{} -> {target:?}", attack.name);
            match send(&stack, target, &book_id, Credential::Header(&attack.header)).await {
                Ok(response) => assert_refused(response, attack.expect, &what, &mut failures).await,
                Err(err) => failures.push(format!("{what}: no answer: {err}")),
            }
            sent += 1;
            if let Some(token) = &attack.token {
                let what = format!("{what} (cookie)");
                match send(&stack, target, &book_id, Credential::Cookie(token)).await {
                    Ok(response) => {
                        assert_refused(response, attack.expect, &what, &mut failures).await
                    }
                    Err(err) => failures.push(format!("{what}: no answer: {err}")),
                }
                sent += 1;
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {sent} answers broke the contract:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(attacks.len() > 150, "only {} attacks", attacks.len());

    // 1 MB: refused by the HTTP codec (see the module comment), never served, never a 5xx.
    let huge = HeaderValue::from_str(&format!("Bearer {}", "A".repeat(1024 * 1024))).unwrap();
    for target in TARGETS {
        if let Ok(response) = send(&stack, target, &book_id, Credential::Header(&huge)).await {
            assert_eq!(
                response.status(),
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "1 MB header -> {target:?}"
            );
        }
    }

    // Nobody fetched the attacker's keys; both services are up and unharmed.
    assert_eq!(
        arsenal.attacker_hits.load(Ordering::SeqCst),
        0,
        "the attacker's key server was contacted"
    );
    for base in [&stack.auth, &stack.books] {
        let health = stack
            .client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap();
        assert_eq!(health.status(), StatusCode::OK, "{base}/healthz");
    }
    assert_eq!(
        stack.get(&victim.access, "/books").await.status(),
        StatusCode::OK
    );
    let me = stack
        .client
        .get(format!("{}/auth/me", stack.auth))
        .bearer_auth(&victim.access)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), StatusCode::OK);
    let books: Value = stack
        .get(&admin.access, "/books")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(books["items"].as_array().map(Vec::len), Some(1), "{books}");
    assert_eq!(
        stack.get_book(&admin.access, &book_id).await.status(),
        StatusCode::OK
    );
}

/// What an attacker can gather, plus the issuer's real key to sign claims that break a rule.
async fn arsenal(stack: &Stack, victim: &Tokens, admin: &Tokens) -> Arsenal {
    let key_file = std::fs::read_dir(&stack.keys_dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.extension().is_some_and(|e| e == "pem"))
        .expect("auth-service's key");
    let real_pem = std::fs::read_to_string(&key_file).unwrap();
    let real_key = SigningKey::from_pkcs8_pem(&real_pem, "real").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let attacker_key = tokio::task::spawn_blocking(move || {
        let path = generate_key_file(dir.path()).unwrap();
        SigningKey::from_pkcs8_pem(&std::fs::read_to_string(path).unwrap(), "attacker").unwrap()
    })
    .await
    .unwrap();
    let (attacker_url, attacker_hits) =
        attacker_server(json!({ "keys": [attacker_key.jwk()] })).await;
    let jwks_body = stack
        .client
        .get(format!("{}/.well-known/jwks.json", stack.auth))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let jwks: Value = serde_json::from_str(&jwks_body).unwrap();
    let jwk = jwks["keys"][0].clone();
    assert_eq!(jwk["kid"], real_key.kid());
    Arsenal {
        real_kid: real_key.kid().to_owned(),
        real_key,
        real_pem,
        attacker_key,
        attacker_url,
        attacker_hits,
        jwks_body,
        jwk,
        access: victim.access.clone(),
        stale_access: String::new(),
        refresh: victim.refresh.clone(),
        other_sub: payload(&admin.access)["sub"].as_str().unwrap().to_owned(),
    }
}
