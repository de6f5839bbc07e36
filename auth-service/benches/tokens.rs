//! What a token costs: raw RSA-2048 PKCS#1 v1.5 signing against `SigningKey::sign_jwt`,
//! `jsonwebtoken::encode` and `TokenVerifier::verify_access`.
//!
//! `cargo bench -p auth-service --bench tokens` (set `TOKEN_BENCH_ITERS` to change N).

use std::hint::black_box;
use std::time::{Duration, Instant};

use auth_service::keys::{generate_key_file, SigningKey};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use shared::jwks::Jwks;
use shared::{Claims, KeySet, Role, TokenType, TokenVerifier, VerifierConfig};

const WARM_UP: usize = 200;
const DEFAULT_ITERS: usize = 2000;
const ISSUER: &str = "authbooks";
const AUDIENCE: &str = "authbooks-api";

struct Stats {
    mean: Duration,
    median: Duration,
    p99: Duration,
}

impl Stats {
    fn micros(d: Duration) -> f64 {
        d.as_secs_f64() * 1e6
    }
}

/// Runs `op` `WARM_UP` times unmeasured, then `iters` times, timing each call.
fn measure(iters: usize, mut op: impl FnMut()) -> Stats {
    for _ in 0..WARM_UP {
        op();
    }
    let mut samples = Vec::with_capacity(iters);
    let total = Instant::now();
    for _ in 0..iters {
        let start = Instant::now();
        op();
        samples.push(start.elapsed());
    }
    let mean = total.elapsed() / iters as u32;
    samples.sort_unstable();
    Stats {
        mean,
        median: samples[iters / 2],
        p99: samples[(iters * 99 / 100).min(iters - 1)],
    }
}

fn pem_to_der(pem: &str) -> Vec<u8> {
    let body: String = pem
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    STANDARD.decode(body).expect("PEM body is base64")
}

fn claims(now: i64) -> Claims {
    Claims {
        iss: ISSUER.into(),
        aud: AUDIENCE.into(),
        sub: "0192f6a4-7c1e-7b3a-9a51-3f2c1d0e8b77".into(),
        jti: uuid::Uuid::new_v4().to_string(),
        iat: now,
        nbf: now,
        exp: now + 900,
        token_type: TokenType::Access,
        fresh: true,
        roles: vec![Role::User, Role::Editor],
        username: "alice.librarian".into(),
        sid: Some(uuid::Uuid::new_v4().to_string()),
        csrf: None,
        scope: None,
        client_id: None,
    }
}

fn main() {
    let iters = std::env::var("TOKEN_BENCH_ITERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(DEFAULT_ITERS);

    let dir = tempfile::tempdir().expect("temp dir");
    let path = generate_key_file(dir.path()).expect("key generation");
    let pem = std::fs::read_to_string(&path).expect("read key");
    let key = SigningKey::from_pkcs8_pem(&pem, "bench").expect("load key");
    let pair = RsaKeyPair::from_pkcs8(&pem_to_der(&pem)).expect("parse key");
    let rng = SystemRandom::new();

    let claims = claims(shared::now_unix());
    let payload = serde_json::to_vec(&claims).expect("claims JSON");
    let token = key.sign_jwt(&payload).expect("sign");
    let signing_input = token[..token.rfind('.').expect("compact JWS")].to_owned();

    let header = Header {
        kid: Some(key.kid().to_owned()),
        ..Header::new(Algorithm::RS256)
    };
    let reused_key = EncodingKey::from_rsa_pem(pem.as_bytes()).expect("jsonwebtoken key");
    let verifier = TokenVerifier::new(
        &VerifierConfig {
            issuer: ISSUER.into(),
            audience: AUDIENCE.into(),
            leeway: 30,
        },
        KeySet::from_jwks(&Jwks {
            keys: vec![key.jwk().clone()],
        }),
    );
    // Both signers must produce tokens the verifier takes, or the comparison means nothing.
    let jwt_token = jsonwebtoken::encode(&header, &claims, &reused_key).expect("encode");
    assert_eq!(
        verifier.verify_access(&token).expect("verify").jti,
        claims.jti
    );
    assert_eq!(
        verifier.verify_access(&jwt_token).expect("verify").jti,
        claims.jti
    );

    // One raw RS256 signature of the token's signing input into `signature`.
    let raw_sign = |signature: &mut [u8]| {
        pair.sign(
            &RSA_PKCS1_SHA256,
            &rng,
            black_box(signing_input.as_bytes()),
            signature,
        )
        .expect("raw sign");
        black_box(signature);
    };
    // `cargo bench -p auth-service --bench tokens -- --ceiling sign|argon2`: that all-cores
    // ceiling alone, as one JSON line. deploy/bench.py measures each right before and right after
    // the phase it bounds, so that the shared machine's drift over minutes (the argon2 ceiling
    // read 94, 113 and 130 hashes/s in one hour here) is in both sides of the ratio.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let password = auth_service::domain::Password::parse("benchmark password").expect("password");
    let hash_one = |_: &mut ()| {
        black_box(auth_service::password::hash(black_box(&password)).expect("hash"));
    };
    let new_signature = || vec![0; pair.public_modulus_len()];
    if let Some(ceiling) = std::env::args().skip_while(|a| a != "--ceiling").nth(1) {
        let per_s = match ceiling.as_str() {
            "sign" => all_cores_rate(cores, new_signature, |s| raw_sign(s)),
            "argon2" => all_cores_rate(
                cores,
                auth_service::password::reuse_memory_on_this_thread,
                hash_one,
            ),
            other => panic!("unknown ceiling {other:?}: sign or argon2"),
        };
        println!(
            "{}",
            serde_json::json!({ "ceiling": ceiling, "per_s": per_s })
        );
        return;
    }
    let raw = measure(iters, || {
        let mut signature = vec![0; pair.public_modulus_len()];
        raw_sign(&mut signature);
    });
    let sign_jwt = measure(iters, || {
        black_box(key.sign_jwt(black_box(&payload)).expect("sign_jwt"));
    });
    let encode_pem = measure(iters, || {
        let key = EncodingKey::from_rsa_pem(black_box(pem.as_bytes())).expect("key");
        black_box(jsonwebtoken::encode(&header, black_box(&claims), &key).expect("encode"));
    });
    let encode_reused = measure(iters, || {
        black_box(jsonwebtoken::encode(&header, black_box(&claims), &reused_key).expect("encode"));
    });
    let verify = measure(iters, || {
        black_box(verifier.verify_access(black_box(&token)).expect("verify"));
    });

    println!(
        "RSA-2048 RS256, {iters} iterations after {WARM_UP} warm-up, token {} bytes, payload {} bytes\n",
        token.len(),
        payload.len()
    );
    println!(
        "{:<44} {:>10} {:>10} {:>10} {:>9}",
        "operation", "mean µs", "median µs", "p99 µs", "× raw"
    );
    let ratio = |s: &Stats| s.mean.as_secs_f64() / raw.mean.as_secs_f64();
    let rows = [
        ("(a) aws-lc-rs RsaKeyPair::sign (pre-parsed)", &raw),
        ("(b) SigningKey::sign_jwt", &sign_jwt),
        ("(c) jsonwebtoken::encode + from_rsa_pem", &encode_pem),
        ("(c') jsonwebtoken::encode, key reused", &encode_reused),
        ("(d) TokenVerifier::verify_access", &verify),
    ];
    for (name, stats) in rows {
        println!(
            "{:<44} {:>10.1} {:>10.1} {:>10.1} {:>9.2}",
            name,
            Stats::micros(stats.mean),
            Stats::micros(stats.median),
            Stats::micros(stats.p99),
            ratio(stats)
        );
    }
    println!();
    println!("sign_jwt / raw sign:               {:.3}", ratio(&sign_jwt));
    println!(
        "jsonwebtoken encode / raw sign:    {:.3}",
        ratio(&encode_pem)
    );
    println!(
        "  (EncodingKey reused / raw sign): {:.3}",
        ratio(&encode_reused)
    );
    println!(
        "verify_access:                     {:.1} µs ({:.0} verifications/s per core)",
        Stats::micros(verify.mean),
        1.0 / verify.mean.as_secs_f64()
    );

    // The ceiling of a login: argon2id hashes with the service's parameters, one thread per core
    // hashing at once (they share memory bandwidth), each reusing its memory like the service's
    // pool threads.
    let argon2_runs = 20;
    auth_service::password::reuse_memory_on_this_thread();
    let started = Instant::now();
    for _ in 0..argon2_runs {
        black_box(auth_service::password::hash(black_box(&password)).expect("hash"));
    }
    let argon2 = started.elapsed() / argon2_runs;
    let argon2_all_cores = all_cores_rate(
        cores,
        auth_service::password::reuse_memory_on_this_thread,
        hash_one,
    );
    println!(
        "argon2id (m=19456, t=2, p=1):      {:.1} ms ({:.1} hashes/s on one core, {:.1} on all {cores})",
        argon2.as_secs_f64() * 1e3,
        1.0 / argon2.as_secs_f64(),
        argon2_all_cores,
    );

    // The ceiling of a refresh: raw signatures with every core signing at once, measured like
    // argon2's rather than assumed to be one core's rate times the cores (two virtual cores
    // need not sign twice as fast as one).
    let sign_all_cores = all_cores_rate(cores, new_signature, |s| raw_sign(s));
    println!(
        "raw sign, all {cores} cores at once:    {sign_all_cores:.0} signatures/s ({:.2}x one core's rate)",
        sign_all_cores * raw.mean.as_secs_f64(),
    );

    // For deploy/bench.py, which compares the services' rates with these ceilings.
    let figures = serde_json::json!({
        "raw_sign_us": Stats::micros(raw.mean),
        "sign_jwt_us": Stats::micros(sign_jwt.mean),
        "jsonwebtoken_encode_us": Stats::micros(encode_pem.mean),
        "verify_us": Stats::micros(verify.mean),
        "argon2_ms": argon2.as_secs_f64() * 1e3,
        "argon2_all_cores_per_s": argon2_all_cores,
        "raw_sign_all_cores_per_s": sign_all_cores,
    });
    let dir = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let path = std::path::Path::new(&dir).join("bench-tokens.json");
    match std::fs::write(&path, figures.to_string()) {
        Ok(()) => println!("figures written to {}", path.display()),
        Err(err) => eprintln!("could not write {}: {err}", path.display()),
    }
}

/// How long each all-cores ceiling is measured: as long as the services' load phases
/// (`BENCH_SECONDS` of deploy/bench.py, 10 s by default), so that a quiet or busy moment of a
/// shared machine weighs no more in a ceiling than in the rate compared with it. (Measured over
/// 20 hashes, the argon2 ceiling ranged 94-113 hashes/s between two runs on one machine.)
fn ceiling_window() -> Duration {
    let seconds = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    Duration::from_secs(seconds)
}

/// Operations per second with one thread per core running `operation` at once for
/// [`ceiling_window`], each on its own state from `prepare`.
fn all_cores_rate<S>(
    cores: usize,
    prepare: impl Fn() -> S + Sync,
    operation: impl Fn(&mut S) + Sync,
) -> f64 {
    let window = ceiling_window();
    let started = Instant::now();
    let done: u64 = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..cores)
            .map(|_| {
                scope.spawn(|| {
                    let mut state = prepare();
                    let mut done = 0u64;
                    while started.elapsed() < window {
                        operation(&mut state);
                        done += 1;
                    }
                    done
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|thread| thread.join().expect("a measuring thread"))
            .sum()
    });
    done as f64 / started.elapsed().as_secs_f64()
}
