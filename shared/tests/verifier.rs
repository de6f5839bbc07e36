//! `TokenVerifier` against forged, mangled and stretched tokens: each must fail with the exact
//! `TokenError`, and so the exact API error code, and a good token must pass unchanged.
//!
//! Fixtures: `test_key.pem` is the issuer's key, published in `test_jwks.json` as `test-kid`;
//! `attacker_key.pem` (published only in `attacker_jwks.json`) is a key the verifier never trusts;
//! `weak_key.pem` is a 1024-bit key, too short to be loaded.

use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::AlgorithmParameters;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use shared::jwks::Jwks;
use shared::{Claims, KeySet, TokenError, TokenType, TokenVerifier, VerifierConfig};

const TEST_KEY: &str = include_str!("fixtures/test_key.pem");
const TEST_PUBLIC_KEY: &str = include_str!("fixtures/test_key.pub.pem");
const TEST_JWKS: &str = include_str!("fixtures/test_jwks.json");
const ATTACKER_KEY: &str = include_str!("fixtures/attacker_key.pem");
const ATTACKER_JWKS: &str = include_str!("fixtures/attacker_jwks.json");
/// An access token signed (openssl, RS256) by the 1024-bit `weak_key.pem`, published in
/// `weak_jwks.json` as `weak-kid`.
const WEAK_TOKEN: &str = include_str!("fixtures/weak_token.txt");
const WEAK_JWKS: &str = include_str!("fixtures/weak_jwks.json");

const ISSUER: &str = "authbooks";
const AUDIENCE: &str = "authbooks-api";
const LEEWAY: i64 = 30;
const KID: &str = "test-kid";
const ATTACKER_KID: &str = "attacker-kid";

fn jwks(json: &str) -> Jwks {
    serde_json::from_str(json).expect("fixture JWKS")
}

fn verifier_trusting(jwks: &Jwks) -> TokenVerifier {
    let config = VerifierConfig {
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
        leeway: LEEWAY as u64,
    };
    TokenVerifier::new(&config, KeySet::from_jwks(jwks))
}

fn verifier() -> TokenVerifier {
    verifier_trusting(&jwks(TEST_JWKS))
}

/// What auth-service puts in a token of `kind` ("access" or "refresh"), valid for 15 minutes.
fn claims(kind: &str) -> Value {
    let now = shared::now_unix();
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "42",
        "jti": "0192f6a4-7c1e-7b3a-9a51-3f2c1d0e8b77",
        "iat": now,
        "nbf": now,
        "exp": now + 900,
        "type": kind,
        "fresh": true,
        "roles": ["user"],
        "username": "alice",
    })
}

fn header(kid: Option<&str>) -> Value {
    let mut header = json!({ "alg": "RS256", "typ": "JWT" });
    if let Some(kid) = kid {
        header["kid"] = kid.into();
    }
    header
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// `header.payload.signature`, the segments taken as given and signed RS256 with `pem`.
fn sign_segments(header: &str, payload: &str, pem: &str) -> String {
    let message = format!("{header}.{payload}");
    let key = EncodingKey::from_rsa_pem(pem.as_bytes()).expect("fixture key");
    let signature =
        jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::RS256).expect("sign");
    format!("{message}.{signature}")
}

/// Signs raw JSON texts, so that duplicate members and odd types reach the verifier as written.
fn sign_json(header: &str, payload: &str, pem: &str) -> String {
    sign_segments(&b64(header), &b64(payload), pem)
}

fn sign(header: &Value, claims: &Value) -> String {
    sign_json(&header.to_string(), &claims.to_string(), TEST_KEY)
}

/// A correctly signed access token whose claims went through `edit`.
fn access_token_with(edit: impl FnOnce(&mut Value)) -> String {
    let mut claims = claims("access");
    edit(&mut claims);
    sign(&header(Some(KID)), &claims)
}

fn encode_with(alg: Algorithm, kid: &str, key: &EncodingKey) -> String {
    let header = Header {
        kid: Some(kid.into()),
        ..Header::new(alg)
    };
    jsonwebtoken::encode(&header, &claims("access"), key).expect("encode")
}

/// `verify_access` fails with exactly `expected`, which the API reports as `code`.
#[track_caller]
fn assert_rejected(token: &str, expected: TokenError, code: &str) {
    // The same with the cache of verified tokens books-service runs with.
    for verifier in [verifier(), verifier().with_verified_cache(16)] {
        let err = verifier
            .verify_access(token)
            .expect_err("the token must be rejected");
        assert_eq!(err, expected);
        assert_eq!(err.code().as_str(), code);
    }
}

#[track_caller]
fn assert_accepted(token: &str) {
    if let Err(err) = verifier().verify_access(token) {
        panic!("the token must be accepted, got {err:?}");
    }
    let cached = verifier().with_verified_cache(16);
    let first = cached.verify(token, TokenType::Access).expect("accepted");
    let again = cached
        .verify(token, TokenType::Access)
        .expect("accepted from the cache");
    assert_eq!(
        serde_json::to_value(first).unwrap(),
        serde_json::to_value(again).unwrap(),
        "the cache gives back the same claims"
    );
}

#[test]
fn fixture_jwks_is_the_public_half_of_the_test_key() {
    let key = EncodingKey::from_rsa_pem(TEST_KEY.as_bytes()).unwrap();
    let derived = jsonwebtoken::jwk::Jwk::from_encoding_key(&key, Algorithm::RS256).unwrap();
    let AlgorithmParameters::RSA(rsa) = derived.algorithm else {
        panic!("not an RSA key");
    };
    let published = &jwks(TEST_JWKS).keys[0];
    assert_eq!(published.rs256_components(), Some((KID, &*rsa.n, &*rsa.e)));
    assert!(KeySet::from_jwks(&jwks(TEST_JWKS)).contains(KID));
}

#[test]
fn valid_tokens_are_accepted_and_their_claims_round_trip() {
    let key = EncodingKey::from_rsa_pem(TEST_KEY.as_bytes()).unwrap();
    let header = Header {
        kid: Some(KID.into()),
        ..Header::new(Algorithm::RS256)
    };
    let verifier = verifier();

    let access = claims("access");
    let token = jsonwebtoken::encode(&header, &access, &key).unwrap();
    let verified = verifier.verify_access(&token).unwrap().into_inner();
    assert_eq!(verified, serde_json::from_value::<Claims>(access).unwrap());

    let refresh = claims("refresh");
    let token = jsonwebtoken::encode(&header, &refresh, &key).unwrap();
    let verified = verifier.verify_refresh(&token).unwrap().into_inner();
    assert_eq!(verified, serde_json::from_value::<Claims>(refresh).unwrap());
}

#[test]
fn alg_none_is_rejected_in_any_spelling() {
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = json!({ "alg": alg, "typ": "JWT", "kid": KID });
        let unsigned = format!(
            "{}.{}.",
            b64(header.to_string()),
            b64(claims("access").to_string())
        );
        assert_rejected(&unsigned, TokenError::Invalid("malformed"), "invalid_token");
    }
}

#[test]
fn hmac_keyed_with_public_key_material_is_rejected() {
    let jwk_json = serde_json::to_string(&jwks(TEST_JWKS).keys[0]).unwrap();
    let secrets: [&[u8]; 4] = [
        TEST_PUBLIC_KEY.as_bytes(),
        TEST_PUBLIC_KEY.trim_end().as_bytes(),
        jwk_json.as_bytes(),
        TEST_JWKS.as_bytes(),
    ];
    for secret in secrets {
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let token = encode_with(alg, KID, &EncodingKey::from_secret(secret));
            assert_rejected(
                &token,
                TokenError::Invalid("algorithm not allowed"),
                "invalid_token",
            );
        }
    }
}

#[test]
fn other_rsa_algorithms_with_the_right_key_are_rejected() {
    let key = EncodingKey::from_rsa_pem(TEST_KEY.as_bytes()).unwrap();
    for alg in [
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS512,
    ] {
        assert_rejected(
            &encode_with(alg, KID, &key),
            TokenError::Invalid("algorithm not allowed"),
            "invalid_token",
        );
    }
}

#[test]
fn tampered_payload_is_rejected() {
    let token = sign(&header(Some(KID)), &claims("access"));
    assert_accepted(&token);
    let (header, rest) = token.split_once('.').unwrap();
    let (_, signature) = rest.split_once('.').unwrap();

    let mut admin = claims("access");
    admin["roles"] = json!(["admin"]);
    let forged = format!("{header}.{}.{signature}", b64(admin.to_string()));
    assert_rejected(
        &forged,
        TokenError::Invalid("bad signature"),
        "invalid_token",
    );
}

#[test]
fn missing_or_stripped_signature_is_rejected() {
    let token = sign(&header(Some(KID)), &claims("access"));
    let message = &token[..token.rfind('.').unwrap()];

    let stripped = format!("{message}.");
    assert_rejected(
        &stripped,
        TokenError::Invalid("bad signature"),
        "invalid_token",
    );
    assert_rejected(message, TokenError::Invalid("malformed"), "invalid_token");
    let garbage = format!("{message}.AAAA");
    assert_rejected(
        &garbage,
        TokenError::Invalid("bad signature"),
        "invalid_token",
    );
    // Longer than any loaded key's signature (8192 bits): refused, not read past a buffer.
    let signature = token.rsplit_once('.').unwrap().1;
    let oversized = format!("{message}.{}", signature.repeat(6));
    assert!(
        URL_SAFE_NO_PAD
            .decode(oversized.rsplit_once('.').unwrap().1)
            .unwrap()
            .len()
            > 1024
    );
    assert_rejected(
        &oversized,
        TokenError::Invalid("bad signature"),
        "invalid_token",
    );
    let not_base64 = format!("{message}.{}*", &signature[1..]);
    assert_rejected(
        &not_base64,
        TokenError::Invalid("malformed"),
        "invalid_token",
    );
}

#[test]
fn unknown_or_missing_kid_is_rejected() {
    let unknown = sign(&header(Some("no-such-kid")), &claims("access"));
    assert_rejected(&unknown, TokenError::UnknownKid, "invalid_token");
    let empty = sign(&header(Some("")), &claims("access"));
    assert_rejected(&empty, TokenError::UnknownKid, "invalid_token");
    let missing = sign(&header(None), &claims("access"));
    assert_rejected(&missing, TokenError::Invalid("no kid"), "invalid_token");
}

#[test]
fn keys_offered_by_the_token_itself_are_never_used() {
    let attacker_jwk = serde_json::to_value(&jwks(ATTACKER_JWKS).keys[0]).unwrap();
    let jku = "https://attacker.example/.well-known/jwks.json";
    let forge = |header: Value| {
        sign_json(
            &header.to_string(),
            &claims("access").to_string(),
            ATTACKER_KEY,
        )
    };

    let via_jku = forge(json!({ "alg": "RS256", "kid": ATTACKER_KID, "jku": jku }));
    let via_jwk = forge(json!({ "alg": "RS256", "kid": ATTACKER_KID, "jwk": attacker_jwk }));
    let via_x5u = forge(json!({ "alg": "RS256", "kid": ATTACKER_KID, "x5u": jku }));
    // The forgeries are well made: a verifier that did trust the attacker's key would take them.
    let gullible = verifier_trusting(&jwks(ATTACKER_JWKS));
    for token in [&via_jku, &via_jwk, &via_x5u] {
        assert!(gullible.verify_access(token).is_ok());
        assert_rejected(token, TokenError::UnknownKid, "invalid_token");
    }

    let jwk_without_kid = forge(json!({ "alg": "RS256", "jwk": attacker_jwk }));
    assert_rejected(
        &jwk_without_kid,
        TokenError::Invalid("no kid"),
        "invalid_token",
    );

    // Claiming our kid does not help: the signature is checked against our key only.
    for header in [
        json!({ "alg": "RS256", "kid": KID }),
        json!({ "alg": "RS256", "kid": KID, "jku": jku }),
        json!({ "alg": "RS256", "kid": KID, "jwk": attacker_jwk }),
        json!({ "alg": "RS256", "kid": KID, "jku": jku, "jwk": attacker_jwk, "x5u": jku }),
    ] {
        assert_rejected(
            &forge(header),
            TokenError::Invalid("bad signature"),
            "invalid_token",
        );
    }
}

#[test]
fn wrong_issuer_or_audience_is_rejected() {
    let issuer = access_token_with(|c| c["iss"] = "evil-issuer".into());
    assert_rejected(
        &issuer,
        TokenError::Invalid("wrong issuer"),
        "invalid_token",
    );
    let audience = access_token_with(|c| c["aud"] = "some-other-api".into());
    assert_rejected(
        &audience,
        TokenError::Invalid("wrong audience"),
        "invalid_token",
    );
}

#[test]
fn expiry_is_enforced_with_the_configured_leeway() {
    let now = shared::now_unix();
    let expired = access_token_with(|c| {
        c["iat"] = (now - 1000).into();
        c["nbf"] = (now - 1000).into();
        c["exp"] = (now - LEEWAY - 60).into();
    });
    assert_rejected(&expired, TokenError::Expired, "token_expired");

    let within_leeway = access_token_with(|c| {
        c["iat"] = (now - 1000).into();
        c["nbf"] = (now - 1000).into();
        c["exp"] = (now - LEEWAY / 3).into();
    });
    assert_accepted(&within_leeway);
}

#[test]
fn not_before_is_enforced_with_the_configured_leeway() {
    let now = shared::now_unix();
    let future = access_token_with(|c| c["nbf"] = (now + LEEWAY + 60).into());
    assert_rejected(
        &future,
        TokenError::Invalid("not yet valid"),
        "invalid_token",
    );
    let within_leeway = access_token_with(|c| c["nbf"] = (now + LEEWAY / 3).into());
    assert_accepted(&within_leeway);
}

#[test]
fn time_claims_must_be_integers() {
    // A string `exp` must not read as "no expiry" (CVE-2026-25537).
    let cases = [
        ("exp", json!("9999999999")),
        ("exp", json!(9_999_999_999.5)),
        ("exp", json!(1e10)),
        ("exp", json!(null)),
        ("exp", json!([9_999_999_999_i64])),
        ("nbf", json!("0")),
        ("nbf", json!(0.5)),
    ];
    for (claim, value) in cases {
        let token = access_token_with(|c| c[claim] = value.clone());
        assert_rejected(
            &token,
            TokenError::Invalid("malformed claims"),
            "invalid_token",
        );
    }
}

/// A service token (client credentials) has no `username`, `sid` or refresh token: those are
/// optional, and a token without them is a service's, judged by its scopes.
#[test]
fn username_and_session_are_optional() {
    let token = access_token_with(|c| {
        let claims = c.as_object_mut().unwrap();
        claims.remove("username");
        claims.remove("sid");
        claims.insert("scope".into(), "books:read".into());
        claims.insert("client_id".into(), "42".into());
    });
    let claims = verifier().verify_access(&token).unwrap();
    assert!(claims.is_service());
    assert!(claims.has_scope(shared::Scope::BooksRead));
    assert!(!claims.has_scope(shared::Scope::BooksWrite));
}

#[test]
fn every_claim_is_required() {
    let required = [
        "iss", "aud", "sub", "jti", "iat", "nbf", "exp", "type", "fresh", "roles",
    ];
    for claim in required {
        let token = access_token_with(|c| {
            c.as_object_mut().unwrap().remove(claim);
        });
        assert_rejected(
            &token,
            TokenError::Invalid("malformed claims"),
            "invalid_token",
        );
    }
}

#[test]
fn mistyped_claims_are_rejected() {
    let cases = [
        ("sub", json!(42)),
        ("aud", json!([AUDIENCE])),
        ("roles", json!(["root"])),
        ("roles", json!("admin")),
        ("type", json!("id")),
        ("fresh", json!("true")),
    ];
    for (claim, value) in cases {
        let token = access_token_with(|c| c[claim] = value.clone());
        assert_rejected(
            &token,
            TokenError::Invalid("malformed claims"),
            "invalid_token",
        );
    }
}

#[test]
fn malformed_encoding_is_rejected() {
    let good_header = b64(header(Some(KID)).to_string());
    let good_payload = b64(claims("access").to_string());

    let bad_header = sign_segments("!!not*base64!!", &good_payload, TEST_KEY);
    assert_rejected(
        &bad_header,
        TokenError::Invalid("malformed"),
        "invalid_token",
    );
    let header_not_json = sign_segments(&b64("{\"alg\":"), &good_payload, TEST_KEY);
    assert_rejected(
        &header_not_json,
        TokenError::Invalid("malformed"),
        "invalid_token",
    );
    // Correctly signed, so only the payload's encoding is wrong.
    let bad_payload = sign_segments(&good_header, "@@not*base64@@", TEST_KEY);
    assert_rejected(
        &bad_payload,
        TokenError::Invalid("malformed"),
        "invalid_token",
    );
    let padded_payload = sign_segments(&good_header, &format!("{good_payload}=="), TEST_KEY);
    assert_rejected(
        &padded_payload,
        TokenError::Invalid("malformed"),
        "invalid_token",
    );
    let payload_not_json = sign_segments(&good_header, &b64("not json"), TEST_KEY);
    assert_rejected(
        &payload_not_json,
        TokenError::Invalid("malformed claims"),
        "invalid_token",
    );

    let token = sign(&header(Some(KID)), &claims("access"));
    for mangled in [
        String::new(),
        ".".into(),
        "..".into(),
        format!("{token}.extra"),
        format!(" {token}"),
    ] {
        assert_rejected(&mangled, TokenError::Invalid("malformed"), "invalid_token");
    }
}

#[test]
fn oversized_token_is_rejected_before_parsing() {
    let padding = "x".repeat(100 * 1024);
    let token = access_token_with(|c| c["padding"] = padding.into());
    assert!(token.len() > 100 * 1024);

    let started = Instant::now();
    assert_rejected(
        &token,
        TokenError::Invalid("token too large"),
        "invalid_token",
    );
    assert!(started.elapsed() < Duration::from_millis(50));
}

#[test]
fn token_types_are_not_interchangeable() {
    let verifier = verifier();
    let refresh = sign(&header(Some(KID)), &claims("refresh"));
    let err = verifier.verify_access(&refresh).unwrap_err();
    assert_eq!(err, TokenError::WrongType("an access"));
    assert_eq!(err.code().as_str(), "wrong_token_type");

    let access = sign(&header(Some(KID)), &claims("access"));
    let err = verifier.verify_refresh(&access).unwrap_err();
    assert_eq!(err, TokenError::WrongType("a refresh"));
    assert_eq!(err.code().as_str(), "wrong_token_type");
}

#[test]
fn duplicate_members_are_rejected() {
    let payload = claims("access").to_string();
    // Two parsers reading different `kid`s or `alg`s out of one header is a classic confusion.
    for header in [
        format!(r#"{{"alg":"RS256","kid":"{ATTACKER_KID}","kid":"{KID}"}}"#),
        format!(r#"{{"alg":"RS256","kid":"{KID}","kid":"{ATTACKER_KID}"}}"#),
        format!(r#"{{"alg":"none","alg":"RS256","kid":"{KID}"}}"#),
    ] {
        let token = sign_json(&header, &payload, TEST_KEY);
        assert_rejected(&token, TokenError::Invalid("malformed"), "invalid_token");
    }

    let body = payload.trim_end_matches('}');
    let header = header(Some(KID)).to_string();
    for extra in [
        r#""roles":["admin"]"#,
        r#""type":"refresh""#,
        r#""sub":"1""#,
    ] {
        let token = sign_json(&header, &format!("{body},{extra}}}"), TEST_KEY);
        assert_rejected(
            &token,
            TokenError::Invalid("malformed claims"),
            "invalid_token",
        );
    }
}

#[test]
fn keys_not_meant_for_rs256_signatures_are_not_loaded() {
    let token = sign(&header(Some(KID)), &claims("access"));
    // Not meant for RS256 signatures, or components that are not base64url (the key is never
    // built, so its kid is unknown rather than a key that verifies nothing).
    for (member, value) in [
        ("use", "enc"),
        ("alg", "RS512"),
        ("kty", "EC"),
        ("n", "!not-base64!"),
        ("e", "AQAB=="),
    ] {
        let mut set = serde_json::to_value(jwks(TEST_JWKS)).unwrap();
        set["keys"][0][member] = value.into();
        let set: Jwks = serde_json::from_value(set).unwrap();
        assert!(KeySet::from_jwks(&set).is_empty(), "{member}: {value}");
        let err = verifier_trusting(&set).verify_access(&token).unwrap_err();
        assert_eq!(err, TokenError::UnknownKid);
    }
}

#[test]
fn keys_under_2048_bits_verify_nothing() {
    use aws_lc_rs::signature::{
        RsaPublicKeyComponents, RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY,
    };
    let token = WEAK_TOKEN.trim();
    let set = jwks(WEAK_JWKS);
    // Well made: aws-lc's legacy parameters, which allow 1024-bit keys, take the signature.
    let (_, n, e) = set.keys[0].rs256_components().unwrap();
    let (message, signature) = token.rsplit_once('.').unwrap();
    let key = RsaPublicKeyComponents {
        n: URL_SAFE_NO_PAD.decode(n).unwrap(),
        e: URL_SAFE_NO_PAD.decode(e).unwrap(),
    };
    key.verify(
        &RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY,
        message.as_bytes(),
        &URL_SAFE_NO_PAD.decode(signature).unwrap(),
    )
    .expect("a correct 1024-bit signature");

    let err = verifier_trusting(&set).verify_access(token).unwrap_err();
    assert_eq!(err, TokenError::Invalid("bad signature"));
}

#[test]
fn replaced_keys_take_effect_at_once() {
    let verifier = verifier();
    let ours = sign(&header(Some(KID)), &claims("access"));
    assert!(verifier.verify_access(&ours).is_ok());

    verifier.replace_keys(KeySet::from_jwks(&jwks(ATTACKER_JWKS)));
    assert_eq!(
        verifier.verify_access(&ours).unwrap_err(),
        TokenError::UnknownKid
    );
}

/// RFC 7515 §4.1.11: a `crit` header naming an extension the recipient does not understand
/// MUST make the token invalid; we understand none, so any `crit` is refused.
#[test]
fn unknown_critical_header_is_rejected() {
    let header = format!(r#"{{"alg":"RS256","kid":"{KID}","crit":["x-unknown"],"x-unknown":"1"}}"#);
    let token = sign_json(&header, &claims("access").to_string(), TEST_KEY);
    assert_rejected(
        &token,
        TokenError::Invalid("unsupported header"),
        "invalid_token",
    );
}

/// A verifier with a leeway of 0 and the per-thread cache of verified tokens.
fn cached_verifier_without_leeway() -> TokenVerifier {
    let config = VerifierConfig {
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
        leeway: 0,
    };
    TokenVerifier::new(&config, KeySet::from_jwks(&jwks(TEST_JWKS))).with_verified_cache(16)
}

#[test]
fn a_cached_token_is_refused_once_it_expires() {
    let verifier = cached_verifier_without_leeway();
    let now = shared::now_unix();
    let token = access_token_with(|c| c["exp"] = (now + 1).into());
    verifier.verify_access(&token).expect("valid for a second");
    std::thread::sleep(Duration::from_millis(2100));
    assert_eq!(
        verifier.verify_access(&token).unwrap_err(),
        TokenError::Expired,
        "the cache checks the time on every use"
    );
}

#[test]
fn a_cached_token_is_refused_before_its_not_before() {
    let verifier = cached_verifier_without_leeway();
    let now = shared::now_unix();
    let token = access_token_with(|c| c["nbf"] = (now + 60).into());
    // Not cached while not yet valid; and a cached one is checked again (same rule, hit path).
    for _ in 0..2 {
        assert_eq!(
            verifier.verify_access(&token).unwrap_err(),
            TokenError::Invalid("not yet valid")
        );
    }
}

#[test]
fn a_cached_token_is_still_checked_for_its_type() {
    let verifier = verifier().with_verified_cache(16);
    let token = sign(&header(Some(KID)), &claims("access"));
    verifier.verify_access(&token).expect("an access token");
    assert_eq!(
        verifier.verify_refresh(&token).unwrap_err(),
        TokenError::WrongType("a refresh")
    );
    verifier
        .verify_access(&token)
        .expect("still an access token");
}

#[test]
fn new_keys_void_every_cached_verification() {
    let verifier = verifier().with_verified_cache(16);
    let token = sign(&header(Some(KID)), &claims("access"));
    verifier
        .verify_access(&token)
        .expect("signed by a trusted key");
    // The issuer's key is withdrawn (compromised, say): its tokens must stop passing at once.
    verifier.replace_keys(KeySet::from_jwks(&jwks(ATTACKER_JWKS)));
    assert_eq!(
        verifier.verify_access(&token).unwrap_err(),
        TokenError::UnknownKid
    );
}

#[test]
fn only_the_exact_token_is_taken_from_the_cache() {
    let verifier = verifier().with_verified_cache(16);
    let token = sign(&header(Some(KID)), &claims("access"));
    verifier.verify_access(&token).expect("valid");
    // The same header and payload with another signature: a forgery, however close.
    let (signed, signature) = token.rsplit_once('.').unwrap();
    let mut forged_signature = signature.to_owned().into_bytes();
    forged_signature[10] = if forged_signature[10] == b'A' {
        b'B'
    } else {
        b'A'
    };
    let forged = format!("{signed}.{}", String::from_utf8(forged_signature).unwrap());
    assert_eq!(
        verifier.verify_access(&forged).unwrap_err(),
        TokenError::Invalid("bad signature")
    );
    // And a token signed by a key the verifier never trusted, with the trusted kid.
    let attacker = sign_json(
        &header(Some(KID)).to_string(),
        &claims("access").to_string(),
        ATTACKER_KEY,
    );
    assert_eq!(
        verifier.verify_access(&attacker).unwrap_err(),
        TokenError::Invalid("bad signature")
    );
}

#[test]
fn a_full_cache_starts_again_and_keeps_verifying() {
    let verifier = verifier().with_verified_cache(2);
    let tokens: Vec<String> = (0..5)
        .map(|n| access_token_with(|c| c["jti"] = format!("jti-{n}").into()))
        .collect();
    for _ in 0..2 {
        for token in &tokens {
            let claims = verifier.verify(token, TokenType::Access).expect("valid");
            assert_eq!(claims.jti, format!("jti-{}", token_index(&tokens, token)));
        }
    }
}

fn token_index(tokens: &[String], token: &str) -> usize {
    tokens.iter().position(|t| t == token).unwrap()
}
