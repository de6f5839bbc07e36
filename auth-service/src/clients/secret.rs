//! Client secrets: generated here with 256 bits from the OS generator, shown once, stored as
//! HMAC-SHA256 under a server key.
//!
//! Why a keyed hash and not argon2: a password is guessable, so its hash must be slow; a client
//! secret is 32 random bytes, so no guess ever finds it and slowness would only cost every
//! token request ~20 ms of CPU. The key (from `AUTH_CLIENT_SECRET_KEY`, or a file beside the
//! signing keys) means that a copy of the database alone cannot even confirm a leaked secret.
//! Comparison is constant time (`hmac::verify`).

use std::path::Path;

use aws_lc_rs::hmac;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::server_key;

/// The file, in the keys directory, holding the key when `AUTH_CLIENT_SECRET_KEY` is unset.
pub const KEY_FILE: &str = "client-secret.key";

/// Bytes of randomness in a secret, and the least a key may have.
const SECRET_BYTES: usize = server_key::KEY_BYTES;

pub struct SecretHasher {
    key: hmac::Key,
}

impl SecretHasher {
    /// From raw key bytes (at least 32).
    pub fn new(key: &[u8]) -> Result<Self, String> {
        if key.len() < SECRET_BYTES {
            return Err(format!("the key must have at least {SECRET_BYTES} bytes"));
        }
        Ok(Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, key),
        })
    }

    /// The configured key (base64url or standard base64 of at least 32 bytes), or the key file
    /// in `keys_dir`, created (0600) on first start (see [`crate::server_key`]). Every instance
    /// must use the same key: they share the keys directory already.
    pub fn load_or_create(configured: Option<&str>, keys_dir: &Path) -> Result<Self, String> {
        server_key::load_or_create(configured, keys_dir, KEY_FILE, Self::new)
    }

    /// A new secret and what to store for it.
    pub fn generate(&self) -> Result<(String, String), String> {
        let secret = URL_SAFE_NO_PAD.encode(server_key::random_bytes::<SECRET_BYTES>()?);
        let stored = self.hash(&secret);
        Ok((secret, stored))
    }

    pub fn hash(&self, secret: &str) -> String {
        URL_SAFE_NO_PAD.encode(hmac::sign(&self.key, secret.as_bytes()))
    }

    /// Whether `secret` is the one `stored` was made from, in constant time.
    pub fn verify(&self, secret: &str, stored: &str) -> bool {
        match URL_SAFE_NO_PAD.decode(stored) {
            Ok(tag) => hmac::verify(&self.key, secret.as_bytes(), &tag).is_ok(),
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_verifies_only_against_its_own_hash_and_key() {
        let hasher = SecretHasher::new(&[7u8; 32]).unwrap();
        let (secret, stored) = hasher.generate().unwrap();
        assert_eq!(secret.len(), 43);
        assert!(hasher.verify(&secret, &stored));
        assert!(!hasher.verify(&format!("{secret}x"), &stored));
        assert!(!hasher.verify(&secret, "not base64 !"));
        let other = SecretHasher::new(&[8u8; 32]).unwrap();
        assert!(!other.verify(&secret, &stored));
        assert!(SecretHasher::new(&[1u8; 16]).is_err());
    }

    #[test]
    fn the_key_file_is_created_once_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = SecretHasher::load_or_create(None, dir.path()).unwrap();
        let (secret, stored) = first.generate().unwrap();
        let again = SecretHasher::load_or_create(None, dir.path()).unwrap();
        assert!(again.verify(&secret, &stored));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let configured = URL_SAFE_NO_PAD.encode([9u8; 32]);
        let from_env = SecretHasher::load_or_create(Some(&configured), dir.path()).unwrap();
        assert!(!from_env.verify(&secret, &stored));
        assert!(SecretHasher::load_or_create(Some("short"), dir.path()).is_err());
    }
}
