//! Any bytes as a token: the verifier must answer Ok or a TokenError, never panic, and never
//! accept anything (its key set holds a key no input can have been signed with).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use shared::jwks::{Jwk, Jwks};
use shared::{KeySet, TokenType, TokenVerifier, VerifierConfig};

fn verifier() -> &'static TokenVerifier {
    static VERIFIER: OnceLock<TokenVerifier> = OnceLock::new();
    VERIFIER.get_or_init(|| {
        // RFC 7638's example public key: nobody has its private half.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        let jwks = Jwks {
            keys: vec![Jwk::rsa_signing("fuzz-kid".into(), n.into(), "AQAB".into())],
        };
        TokenVerifier::new(
            &VerifierConfig {
                issuer: "authbooks".into(),
                audience: "authbooks-api".into(),
                leeway: 30,
            },
            KeySet::from_jwks(&jwks),
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let token = String::from_utf8_lossy(data);
    for expected in [TokenType::Access, TokenType::Refresh] {
        assert!(
            verifier().verify(&token, expected).is_err(),
            "forged token accepted"
        );
    }
});
