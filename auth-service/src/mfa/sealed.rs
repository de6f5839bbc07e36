//! TOTP secrets at rest: AES-256-GCM under a server key, bound to their user.
//!
//! Unlike a password or a recovery code, the server needs the TOTP secret itself to check a
//! code, so it cannot be hashed: it is encrypted. The key comes from `AUTH_MFA_KEY` (base64 of at
//! least 32 random bytes), or else from the file `mfa.key` in the keys directory, created (0600)
//! on first start, exactly as the client-secret key ([`crate::server_key`]). A copy of the
//! database alone then holds no usable secret.
//!
//! Sealed form: `v1.<key id>.<base64url(nonce || ciphertext || tag)>`, where the key id is the
//! first 8 hex digits of the SHA-256 of the key (it names the key, and 32 bits of the hash of a
//! 256-bit random key tell nothing about it). The nonce is 96 random bits per seal. The caller's
//! AAD (the user id) is authenticated, so a sealed secret copied into another user's row does
//! not open.
//!
//! Rotation: a new `AUTH_MFA_KEY`, the old one moved to `AUTH_MFA_PREVIOUS_KEYS` (comma-separated).
//! Previous keys only open; [`Sealer::open`] says when a value was sealed under one, and the
//! caller seals it again under the current key (on the user's next successful use). The key id
//! in each stored value shows which rows still need a previous key (docs/operating.md).
//!
//! Each key is used through two subkeys derived with HKDF-SHA256 (one for AES-256-GCM, one for
//! the recovery codes' HMAC, [`super::recovery`]), so no key serves two algorithms.

use std::fmt;
use std::path::Path;

use aws_lc_rs::aead::{Aad, Nonce, RandomizedNonceKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::{digest, hkdf, hmac};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use super::totp::TotpSecret;
use crate::server_key::{self, KEY_BYTES};

/// The variable holding the current key.
pub const KEY_VAR: &str = "AUTH_MFA_KEY";
/// The variable holding the previous keys (open only), comma-separated.
pub const PREVIOUS_KEYS_VAR: &str = "AUTH_MFA_PREVIOUS_KEYS";
/// The file, in the keys directory, holding the key when `AUTH_MFA_KEY` is unset.
pub const KEY_FILE: &str = "mfa.key";

const VERSION: &str = "v1";
const TAG_LEN: usize = 16;
const HKDF_SALT: &[u8] = b"authbooks mfa key v1";
const AEAD_INFO: &[u8] = b"totp secret aes-256-gcm";
const RECOVERY_INFO: &[u8] = b"recovery code hmac-sha256";

/// One key, ready for use. Holds no raw key bytes.
pub(super) struct MfaKey {
    pub(super) id: String,
    aead: RandomizedNonceKey,
    pub(super) recovery: hmac::Key,
}

impl MfaKey {
    fn new(key: &[u8]) -> Result<Self, String> {
        if key.len() < KEY_BYTES {
            return Err(format!("the key must have at least {KEY_BYTES} bytes"));
        }
        let hash = digest::digest(&digest::SHA256, key);
        let id = hash.as_ref()[..4]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, HKDF_SALT).extract(key);
        let failed = |_| "key derivation failed".to_owned();
        let mut aead_key = [0u8; 32];
        prk.expand(&[AEAD_INFO], &AES_256_GCM)
            .and_then(|okm| okm.fill(&mut aead_key))
            .map_err(failed)?;
        let aead = RandomizedNonceKey::new(&AES_256_GCM, &aead_key).map_err(failed)?;
        let recovery = prk
            .expand(&[RECOVERY_INFO], hmac::HMAC_SHA256)
            .map(hmac::Key::from)
            .map_err(failed)?;
        Ok(Self { id, aead, recovery })
    }
}

/// Seals and opens TOTP secrets, and hashes recovery codes ([`super::recovery`]), under the
/// current key; opens and checks under the previous ones too. Its `Debug` shows key ids only.
pub struct Sealer {
    current: MfaKey,
    previous: Vec<MfaKey>,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer")
            .field("key_id", &self.current.id)
            .field("previous_key_ids", &self.previous_key_ids())
            .finish()
    }
}

/// Why a sealed value did not open. None of them says more than that to a client.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("not a sealed value")]
    Malformed,
    /// Sealed under a key that is neither current nor previous: it was dropped too early.
    #[error("sealed under key {0}, which is not configured")]
    UnknownKey(String),
    /// Another user's value, or an altered one.
    #[error("the sealed value does not open")]
    Invalid,
    #[error("the OS random generator failed")]
    Random,
}

impl Sealer {
    /// From raw keys (each at least 32 bytes).
    pub fn new(current: &[u8], previous: &[&[u8]]) -> Result<Self, String> {
        Ok(Self {
            current: MfaKey::new(current)?,
            previous: previous
                .iter()
                .map(|key| MfaKey::new(key))
                .collect::<Result<_, _>>()?,
        })
    }

    /// `configured` (`AUTH_MFA_KEY`), or else the file [`KEY_FILE`] in `keys_dir`, created on
    /// first start; `previous` is `AUTH_MFA_PREVIOUS_KEYS`. An error starts with the name of the
    /// variable it is about.
    pub fn load_or_create(
        configured: Option<&str>,
        previous: Option<&str>,
        keys_dir: &Path,
    ) -> Result<Self, String> {
        let current = server_key::load_or_create(configured, keys_dir, KEY_FILE, MfaKey::new)
            .map_err(|e| format!("{KEY_VAR}: {e}"))?;
        let previous = previous
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|encoded| !encoded.is_empty())
            .enumerate()
            .map(|(i, encoded)| {
                server_key::decode(encoded)
                    .and_then(|key| MfaKey::new(&key))
                    .map_err(|e| format!("{PREVIOUS_KEYS_VAR}: key {}: {e}", i + 1))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { current, previous })
    }

    /// The id of the key new values are sealed under.
    pub fn key_id(&self) -> &str {
        &self.current.id
    }

    pub fn previous_key_ids(&self) -> Vec<&str> {
        self.previous.iter().map(|k| k.id.as_str()).collect()
    }

    /// `plaintext` sealed under the current key, bound to `aad` (the user id).
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<String, SealError> {
        let mut in_out = plaintext.to_vec();
        let nonce = self
            .current
            .aead
            .seal_in_place_append_tag(Aad::from(aad), &mut in_out)
            .map_err(|_| SealError::Random)?;
        let mut payload = Vec::with_capacity(NONCE_LEN + in_out.len());
        payload.extend_from_slice(nonce.as_ref());
        payload.extend_from_slice(&in_out);
        Ok(format!(
            "{VERSION}.{}.{}",
            self.current.id,
            URL_SAFE_NO_PAD.encode(payload)
        ))
    }

    /// The plaintext of `sealed` if it was sealed with `aad`, and whether it was sealed under a
    /// previous key (then seal it again with [`Self::seal`] and store that).
    pub fn open(&self, sealed: &str, aad: &[u8]) -> Result<(Vec<u8>, bool), SealError> {
        let mut parts = sealed.splitn(3, '.');
        let (Some(VERSION), Some(id), Some(payload)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(SealError::Malformed);
        };
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| SealError::Malformed)?;
        if payload.len() < NONCE_LEN + TAG_LEN {
            return Err(SealError::Malformed);
        }
        let mut keys = self.keys_named(id).peekable();
        if keys.peek().is_none() {
            return Err(SealError::UnknownKey(id.chars().take(16).collect()));
        }
        let (nonce, ciphertext) = payload.split_at(NONCE_LEN);
        for (key, is_current) in keys {
            let nonce =
                Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Malformed)?;
            let mut in_out = ciphertext.to_vec();
            if let Ok(plaintext) = key.aead.open_in_place(nonce, Aad::from(aad), &mut in_out) {
                return Ok((plaintext.to_vec(), !is_current));
            }
        }
        Err(SealError::Invalid)
    }

    /// A TOTP secret sealed for `user` (the bytes of the user id).
    pub fn seal_totp_secret(&self, secret: &TotpSecret, user: &[u8]) -> Result<String, SealError> {
        self.seal(secret.as_bytes(), user)
    }

    /// [`Self::open`] for a TOTP secret: the secret, and whether to seal it again.
    pub fn open_totp_secret(
        &self,
        sealed: &str,
        user: &[u8],
    ) -> Result<(TotpSecret, bool), SealError> {
        let (bytes, needs_reseal) = self.open(sealed, user)?;
        let secret = TotpSecret::from_bytes(&bytes).map_err(|_| SealError::Invalid)?;
        Ok((secret, needs_reseal))
    }

    pub(super) fn current(&self) -> &MfaKey {
        &self.current
    }

    /// The keys with this id, current first, each with whether it is the current one. Almost
    /// always one; two keys could share an id by a 1-in-4-billion chance, so all are tried.
    pub(super) fn keys_named<'a>(
        &'a self,
        id: &'a str,
    ) -> impl Iterator<Item = (&'a MfaKey, bool)> + 'a {
        std::iter::once((&self.current, true))
            .chain(self.previous.iter().map(|k| (k, false)))
            .filter(move |(k, _)| k.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const USER: &[u8] = b"0190f3b2-6d1e-7c4a-9f00-000000000001";
    const OTHER: &[u8] = b"0190f3b2-6d1e-7c4a-9f00-000000000002";

    fn sealer(key: u8) -> Sealer {
        Sealer::new(&[key; 32], &[]).unwrap()
    }

    #[test]
    fn seal_then_open_round_trips_with_a_fresh_nonce_each_time() {
        let s = sealer(1);
        let a = s.seal(b"twenty secret bytes!", USER).unwrap();
        let b = s.seal(b"twenty secret bytes!", USER).unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with(&format!("v1.{}.", s.key_id())), "{a}");
        assert_eq!(s.key_id().len(), 8);
        assert!(!a.contains("twenty"));
        assert_eq!(
            s.open(&a, USER).unwrap(),
            (b"twenty secret bytes!".to_vec(), false)
        );
        assert_eq!(s.open(&b, USER).unwrap().0, b"twenty secret bytes!");
    }

    #[test]
    fn another_users_aad_does_not_open() {
        let s = sealer(1);
        let sealed = s.seal(b"secret", USER).unwrap();
        assert_eq!(s.open(&sealed, OTHER), Err(SealError::Invalid));
        assert_eq!(s.open(&sealed, b""), Err(SealError::Invalid));
    }

    #[test]
    fn a_previous_key_opens_and_asks_for_a_reseal() {
        let old = sealer(1);
        let sealed = old.seal(b"secret", USER).unwrap();
        let rotated = Sealer::new(&[2; 32], &[&[9; 32], &[1; 32]]).unwrap();
        assert_ne!(rotated.key_id(), old.key_id());
        assert_eq!(rotated.previous_key_ids()[1], old.key_id());
        let (plaintext, needs_reseal) = rotated.open(&sealed, USER).unwrap();
        assert_eq!((plaintext.as_slice(), needs_reseal), (&b"secret"[..], true));
        let resealed = rotated.seal(&plaintext, USER).unwrap();
        assert!(!rotated.open(&resealed, USER).unwrap().1);
        // Once the old key is dropped, what was not resealed names the missing key.
        let dropped = sealer(2);
        assert_eq!(
            dropped.open(&sealed, USER),
            Err(SealError::UnknownKey(old.key_id().to_owned()))
        );
        assert!(dropped.open(&resealed, USER).is_ok());
        // The old configuration cannot open what the new key sealed.
        assert!(old.open(&resealed, USER).is_err());
    }

    #[test]
    fn an_altered_value_does_not_open() {
        let s = sealer(1);
        let sealed = s.seal(b"secret", USER).unwrap();
        let (head, payload) = sealed.rsplit_once('.').unwrap();
        let mut bytes = URL_SAFE_NO_PAD.decode(payload).unwrap();
        for i in [0, NONCE_LEN, bytes.len() - 1] {
            bytes[i] ^= 1;
            let altered = format!("{head}.{}", URL_SAFE_NO_PAD.encode(&bytes));
            assert_eq!(s.open(&altered, USER), Err(SealError::Invalid), "byte {i}");
            bytes[i] ^= 1;
        }
        let truncated = format!(
            "{head}.{}",
            URL_SAFE_NO_PAD.encode(&bytes[..bytes.len() - 1])
        );
        assert_eq!(s.open(&truncated, USER), Err(SealError::Invalid));
        for malformed in ["", "v1", "v1.x", "v2.", &sealed.replacen("v1", "v2", 1)] {
            assert_eq!(
                s.open(malformed, USER),
                Err(SealError::Malformed),
                "{malformed}"
            );
        }
        let short = format!("{head}.{}", URL_SAFE_NO_PAD.encode([0u8; 27]));
        assert_eq!(s.open(&short, USER), Err(SealError::Malformed));
        let renamed = sealed.replacen(s.key_id(), "00000000", 1);
        assert!(matches!(
            s.open(&renamed, USER),
            Err(SealError::UnknownKey(_))
        ));
    }

    #[test]
    fn totp_secrets_seal_for_their_user() {
        let s = sealer(3);
        let secret = TotpSecret::generate().unwrap();
        let sealed = s.seal_totp_secret(&secret, USER).unwrap();
        let (opened, needs_reseal) = s.open_totp_secret(&sealed, USER).unwrap();
        assert_eq!(opened.as_bytes(), secret.as_bytes());
        assert!(!needs_reseal);
        assert!(s.open_totp_secret(&sealed, OTHER).is_err());
    }

    #[test]
    fn keys_load_from_the_variables_or_a_created_file_and_errors_name_the_variable() {
        let dir = tempfile::tempdir().unwrap();
        let from_file = Sealer::load_or_create(None, None, dir.path()).unwrap();
        assert!(dir.path().join(KEY_FILE).exists());
        let again = Sealer::load_or_create(None, Some(" "), dir.path()).unwrap();
        assert_eq!(again.key_id(), from_file.key_id());
        let sealed = from_file.seal(b"secret", USER).unwrap();
        assert!(again.open(&sealed, USER).is_ok());

        let file_key = std::fs::read_to_string(dir.path().join(KEY_FILE)).unwrap();
        let new_key = base64::engine::general_purpose::STANDARD.encode([5u8; 32]);
        let rotated = Sealer::load_or_create(
            Some(&new_key),
            Some(&format!(
                "{file_key}, {}",
                URL_SAFE_NO_PAD.encode([6u8; 32])
            )),
            dir.path(),
        )
        .unwrap();
        assert_eq!(rotated.key_id(), sealer(5).key_id());
        assert_eq!(rotated.previous_key_ids().len(), 2);
        assert!(rotated.open(&sealed, USER).unwrap().1);

        let err = Sealer::load_or_create(Some("not base64!"), None, dir.path()).unwrap_err();
        assert!(err.starts_with("AUTH_MFA_KEY: "), "{err}");
        let short = URL_SAFE_NO_PAD.encode([1u8; 16]);
        let err = Sealer::load_or_create(Some(&short), None, dir.path()).unwrap_err();
        assert!(err.starts_with("AUTH_MFA_KEY: "), "{err}");
        let err = Sealer::load_or_create(None, Some(&format!("{file_key},{short}")), dir.path())
            .unwrap_err();
        assert!(err.starts_with("AUTH_MFA_PREVIOUS_KEYS: key 2: "), "{err}");
    }

    #[test]
    fn debug_shows_key_ids_only() {
        let s = Sealer::new(&[0xab; 32], &[&[0xcd; 32]]).unwrap();
        let expected = format!(
            "Sealer {{ key_id: {:?}, previous_key_ids: [{:?}] }}",
            s.key_id(),
            s.previous_key_ids()[0]
        );
        assert_eq!(format!("{s:?}"), expected);
    }
}
