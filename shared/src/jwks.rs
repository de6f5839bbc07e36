//! The JSON Web Key Set published by auth-service and read by every verifier.

use serde::{Deserialize, Serialize};

/// One public key as published (RFC 7517). Only RSA signing keys are ever produced; other
/// members of a fetched set are tolerated and ignored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    pub kty: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    #[serde(rename = "use", default, skip_serializing_if = "Option::is_none")]
    pub key_use: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
}

impl Jwk {
    pub fn rsa_signing(kid: String, n: String, e: String) -> Self {
        Self {
            kty: "RSA".into(),
            kid: Some(kid),
            alg: Some("RS256".into()),
            key_use: Some("sig".into()),
            n: Some(n),
            e: Some(e),
        }
    }

    /// `(kid, n, e)` when this is an RSA key usable for RS256 signatures.
    pub fn rs256_components(&self) -> Option<(&str, &str, &str)> {
        let usable = self.kty == "RSA"
            && self.alg.as_deref().is_none_or(|alg| alg == "RS256")
            && self.key_use.as_deref().is_none_or(|u| u == "sig");
        if !usable {
            return None;
        }
        Some((self.kid.as_deref()?, self.n.as_deref()?, self.e.as_deref()?))
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}
