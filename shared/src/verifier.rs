//! Token verification: the only code in the product that decides whether a JWT is good.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use aws_lc_rs::signature::{ParsedPublicKey, RsaPublicKeyComponents, RSA_PKCS1_2048_8192_SHA256};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, Header};

use crate::claims::{AccessClaims, Claims, RefreshClaims, TokenType};
use crate::error::TokenError;
use crate::jwks::Jwks;

/// Larger tokens are refused before any parsing: ours are well under 2 KB.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The longest RS256 signature a key we load can make (8192-bit modulus), in bytes.
const MAX_SIGNATURE_BYTES: usize = 1024;

#[derive(Clone, Debug)]
pub struct VerifierConfig {
    pub issuer: String,
    pub audience: String,
    /// Seconds of clock skew tolerated on `exp` and `nbf`.
    pub leeway: u64,
}

/// Verification keys by `kid`. The only way a key is chosen: an exact `kid` match in this set.
/// Each key is parsed once, here, into aws-lc's own form: building it from `n` and `e` for
/// every verification (as `jsonwebtoken::decode` does) costs a few microseconds each time.
#[derive(Clone, Default)]
pub struct KeySet {
    keys: HashMap<String, ParsedPublicKey>,
}

impl KeySet {
    /// Builds the set from a JWKS, keeping only RSA keys meant for RS256 signatures whose
    /// components decode and form a public key; a key outside 2048-8192 bits verifies nothing.
    pub fn from_jwks(jwks: &Jwks) -> Self {
        let keys = jwks
            .keys
            .iter()
            .filter_map(|jwk| {
                let (kid, n, e) = jwk.rs256_components()?;
                let n = URL_SAFE_NO_PAD.decode(n).ok()?;
                let e = URL_SAFE_NO_PAD.decode(e).ok()?;
                let key = RsaPublicKeyComponents { n: &n, e: &e }
                    .to_parsed_public_key(&RSA_PKCS1_2048_8192_SHA256)
                    .ok()?;
                Some((kid.to_owned(), key))
            })
            .collect();
        Self { keys }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn contains(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }
}

/// Verifies RS256 tokens against a replaceable key set. The algorithm is pinned: the header's
/// `alg` is only compared, never used to pick a verification method, and `jku`, `x5u`, `x5c` and
/// embedded `jwk` headers are ignored.
pub struct TokenVerifier {
    issuer: String,
    audience: String,
    keys: RwLock<Arc<KeySet>>,
    /// Names this verifier and its key set in the per-thread cache of verified tokens: a
    /// new key set (a key removed, say) makes every cached verification void.
    generation: AtomicU64,
    /// Entries of that cache per thread; 0: every token is verified every time.
    cache_size: usize,
    leeway: i64,
}

/// Tokens this thread has verified: the token's exact text and its claims, valid for the
/// verifier and key set `generation`. Per thread (actix workers are threads), so no lock is
/// taken on the request path. What is cached is a signature check only: time, type and
/// revocations are checked again on every use.
struct Verified {
    generation: u64,
    claims: HashMap<Box<str>, Claims>,
}

thread_local! {
    static VERIFIED: RefCell<Verified> = RefCell::new(Verified {
        generation: 0,
        claims: HashMap::new(),
    });
}

/// Gives each verifier (and each of its key sets) its own cache generation.
static GENERATIONS: AtomicU64 = AtomicU64::new(1);

fn next_generation() -> u64 {
    GENERATIONS.fetch_add(1, Ordering::Relaxed)
}

impl TokenVerifier {
    pub fn new(config: &VerifierConfig, keys: KeySet) -> Self {
        Self {
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            keys: RwLock::new(Arc::new(keys)),
            generation: AtomicU64::new(next_generation()),
            cache_size: 0,
            leeway: i64::try_from(config.leeway).unwrap_or(i64::MAX),
        }
    }

    /// Remembers up to `entries` verified tokens per thread, so a token used again skips the
    /// RSA signature check (about 20 µs; a client uses its access token for many requests).
    /// 0 turns it off.
    pub fn with_verified_cache(mut self, entries: usize) -> Self {
        self.cache_size = entries;
        self
    }

    pub fn replace_keys(&self, keys: KeySet) {
        let mut held = self.keys.write().unwrap_or_else(|e| e.into_inner());
        *held = Arc::new(keys);
        // Under the lock, so no verification against the old set is cached as the new one's.
        self.generation.store(next_generation(), Ordering::Release);
    }

    pub fn keys(&self) -> Arc<KeySet> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn verify_access(&self, token: &str) -> Result<AccessClaims, TokenError> {
        self.verify(token, TokenType::Access).map(AccessClaims)
    }

    pub fn verify_refresh(&self, token: &str) -> Result<RefreshClaims, TokenError> {
        self.verify(token, TokenType::Refresh).map(RefreshClaims)
    }

    /// Signature, algorithm, issuer, audience, time window and token type, in that order of
    /// evidence: nothing from the payload is trusted before the signature checks out.
    pub fn verify(&self, token: &str, expected: TokenType) -> Result<Claims, TokenError> {
        if self.cache_size == 0 {
            return self.verify_signed(token, expected);
        }
        let generation = self.generation.load(Ordering::Acquire);
        let cached = VERIFIED.with_borrow(|verified| {
            (verified.generation == generation)
                .then(|| verified.claims.get(token).cloned())
                .flatten()
        });
        if let Some(claims) = cached {
            return self.still_valid(claims, expected);
        }
        let claims = self.verify_signed(token, expected)?;
        VERIFIED.with_borrow_mut(|verified| {
            if verified.generation != generation || verified.claims.len() >= self.cache_size {
                // A new key set, or full: start again (bounded memory, no bookkeeping per hit).
                verified.claims.clear();
                verified.generation = generation;
            }
            verified.claims.insert(token.into(), claims.clone());
        });
        Ok(claims)
    }

    /// A cached verification, checked again for what changes with time or use: `exp` and
    /// `nbf` against the clock (with the leeway) and the type.
    fn still_valid(&self, claims: Claims, expected: TokenType) -> Result<Claims, TokenError> {
        self.check_time(&claims)?;
        check_type(claims, expected)
    }

    fn check_time(&self, claims: &Claims) -> Result<(), TokenError> {
        let now = crate::now_unix();
        if claims.exp < now.saturating_sub(self.leeway) {
            return Err(TokenError::Expired);
        }
        if claims.nbf > now.saturating_add(self.leeway) {
            return Err(TokenError::Invalid("not yet valid"));
        }
        Ok(())
    }

    /// The full check, each part of the token decoded and parsed exactly once: header (algorithm
    /// pinned, no critical extension, a known `kid`), then the signature over the first two parts,
    /// and only then the payload, its time window, issuer, audience and type. Every claim our
    /// tokens carry is required, typed and unique (`Claims`' deserialisation), so a string or
    /// fractional `exp` is malformed rather than absent.
    fn verify_signed(&self, token: &str, expected: TokenType) -> Result<Claims, TokenError> {
        const MALFORMED: TokenError = TokenError::Invalid("malformed");
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Invalid("token too large"));
        }
        let (message, signature) = token.rsplit_once('.').ok_or(MALFORMED)?;
        let (header, payload) = message.split_once('.').ok_or(MALFORMED)?;
        if payload.contains('.') {
            return Err(MALFORMED);
        }

        let header = URL_SAFE_NO_PAD.decode(header).map_err(|_| MALFORMED)?;
        // jsonwebtoken's own header type: an `alg` it does not know (`none` in any spelling) or
        // a member given twice is malformed.
        let header: Header = serde_json::from_slice(&header).map_err(|_| MALFORMED)?;
        if header.alg != Algorithm::RS256 {
            return Err(TokenError::Invalid("algorithm not allowed"));
        }
        // RFC 7515 4.1.11: we understand no critical extension, so any `crit` is a refusal. A JWE
        // or compressed token is never one of ours.
        if header.crit.is_some() || header.enc.is_some() || header.zip.is_some() {
            return Err(TokenError::Invalid("unsupported header"));
        }
        let kid = header.kid.ok_or(TokenError::Invalid("no kid"))?;
        let keys = self.keys();
        let key = keys.keys.get(&kid).ok_or(TokenError::UnknownKid)?;

        let mut signature_bytes = [0u8; MAX_SIGNATURE_BYTES];
        let signature = match URL_SAFE_NO_PAD.decode_slice(signature, &mut signature_bytes) {
            Ok(len) => &signature_bytes[..len],
            // Longer than any key we load could have made: it cannot verify.
            Err(base64::DecodeSliceError::OutputSliceTooSmall) => &[],
            Err(base64::DecodeSliceError::DecodeError(_)) => return Err(MALFORMED),
        };
        key.verify_sig(message.as_bytes(), signature)
            .map_err(|_| TokenError::Invalid("bad signature"))?;

        let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| MALFORMED)?;
        let claims: Claims = serde_json::from_slice(&payload)
            .map_err(|_| TokenError::Invalid("malformed claims"))?;
        self.check_time(&claims)?;
        if claims.iss != self.issuer {
            return Err(TokenError::Invalid("wrong issuer"));
        }
        if claims.aud != self.audience {
            return Err(TokenError::Invalid("wrong audience"));
        }
        check_type(claims, expected)
    }
}

fn check_type(claims: Claims, expected: TokenType) -> Result<Claims, TokenError> {
    if claims.token_type != expected {
        return Err(TokenError::WrongType(match expected {
            TokenType::Access => "an access",
            TokenType::Refresh => "a refresh",
        }));
    }
    Ok(claims)
}
