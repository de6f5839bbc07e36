//! Signing keys: RSA-2048 PKCS#8 PEM files in `AUTH_KEYS_DIR`, parsed once into aws-lc-rs key
//! pairs. RustCrypto `rsa` is used only to generate a missing key (its private-key operations are
//! not constant-time, RUSTSEC-2023-0071, so it never signs).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use aws_lc_rs::digest;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{KeyPair, RsaKeyPair, RSA_PKCS1_SHA256};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use shared::jwks::{Jwk, Jwks};

const PEM_BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
const PEM_END: &str = "-----END PRIVATE KEY-----";
const MIN_MODULUS_BYTES: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read keys directory {0}: {1}")]
    Io(String, #[source] std::io::Error),
    #[error("{0} is not an RSA PKCS#8 PEM private key of at least 2048 bits")]
    BadKey(String),
    #[error("key generation failed: {0}")]
    Generate(String),
}

/// One private key, parsed once. Deliberately without `Debug`.
pub struct SigningKey {
    kid: String,
    pair: RsaKeyPair,
    jwk: Jwk,
    /// `base64url({"alg":"RS256","typ":"JWT","kid":...})`, the same for every token.
    encoded_header: String,
    rng: SystemRandom,
}

impl SigningKey {
    pub fn from_pkcs8_pem(pem: &str, name: &str) -> Result<Self, KeyError> {
        let der = pem_to_der(pem).ok_or_else(|| KeyError::BadKey(name.into()))?;
        let pair = RsaKeyPair::from_pkcs8(&der).map_err(|_| KeyError::BadKey(name.into()))?;
        if pair.public_modulus_len() < MIN_MODULUS_BYTES {
            return Err(KeyError::BadKey(name.into()));
        }
        let public = pair.public_key();
        let n = URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero());
        let e = URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero());
        let kid = thumbprint(&n, &e);
        let header = serde_json::json!({ "alg": "RS256", "typ": "JWT", "kid": kid });
        let encoded_header = URL_SAFE_NO_PAD.encode(header.to_string());
        Ok(Self {
            jwk: Jwk::rsa_signing(kid.clone(), n, e),
            kid,
            pair,
            encoded_header,
            rng: SystemRandom::new(),
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn jwk(&self) -> &Jwk {
        &self.jwk
    }

    /// A compact JWS of `payload` (already JSON): header and payload base64url-encoded, signed
    /// RS256 with the pre-parsed key.
    pub fn sign_jwt(&self, payload: &[u8]) -> Result<String, KeyError> {
        let mut token = String::with_capacity(self.encoded_header.len() + payload.len() * 2 + 350);
        token.push_str(&self.encoded_header);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(payload, &mut token);
        let signature = self.sign(token.as_bytes())?;
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&signature, &mut token);
        Ok(token)
    }

    /// RSASSA-PKCS1-v1_5 with SHA-256 over `message`.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let mut signature = vec![0; self.pair.public_modulus_len()];
        self.pair
            .sign(&RSA_PKCS1_SHA256, &self.rng, message, &mut signature)
            .map_err(|_| KeyError::Generate("signing failed".into()))?;
        Ok(signature)
    }
}

/// RFC 7638 thumbprint: SHA-256 over the required members in lexicographic order, no spaces.
pub fn thumbprint(n: &str, e: &str) -> String {
    let canonical = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, canonical.as_bytes()))
}

fn pem_to_der(pem: &str) -> Option<Vec<u8>> {
    let start = pem.find(PEM_BEGIN)? + PEM_BEGIN.len();
    let end = pem[start..].find(PEM_END)? + start;
    let body: String = pem[start..end].split_whitespace().collect();
    STANDARD.decode(body).ok()
}

/// A key file and when it was made (from its name `key-<unix millis>-...`, else its mtime).
struct RingKey {
    created_ms: i64,
    key: SigningKey,
}

/// Every key in the directory, all published in the JWKS so tokens signed by any of them verify.
/// The key that signs is the newest one that has been published for at least the activation
/// delay (the JWKS max-age), so every verifier's cached JWKS already holds it; before any key is
/// that old, the oldest signs.
pub struct KeyRing {
    keys: Vec<RingKey>,
    files: Vec<PathBuf>,
}

impl KeyRing {
    /// Loads `*.pem` from `dir`, generating a first key when there is none.
    pub async fn load_or_generate(dir: &Path) -> Result<Self, KeyError> {
        let io = |e| KeyError::Io(dir.display().to_string(), e);
        tokio::fs::DirBuilder::new()
            .recursive(true)
            .mode(PRIVATE_DIR)
            .create(dir)
            .await
            .map_err(io)?;
        if pem_files(dir)?.is_empty() {
            let dir = dir.to_owned();
            tokio::task::spawn_blocking(move || generate_key_file(&dir))
                .await
                .map_err(|e| KeyError::Generate(e.to_string()))??;
        }
        Self::load(dir).await
    }

    async fn load(dir: &Path) -> Result<Self, KeyError> {
        let io = |e| KeyError::Io(dir.display().to_string(), e);
        let files = pem_files(dir)?;
        let mut keys = Vec::new();
        for path in &files {
            let name = path.display().to_string();
            let pem = tokio::fs::read_to_string(path).await.map_err(io)?;
            keys.push(RingKey {
                created_ms: created_ms(path),
                key: SigningKey::from_pkcs8_pem(&pem, &name)?,
            });
        }
        if keys.is_empty() {
            return Err(KeyError::Io(
                dir.display().to_string(),
                std::io::Error::new(std::io::ErrorKind::NotFound, "no *.pem key"),
            ));
        }
        keys.sort_by_key(|k| k.created_ms);
        Ok(Self { keys, files })
    }

    /// The key to sign with at `now_ms`.
    pub fn signing_key(&self, now_ms: i64, activation_delay_ms: i64) -> &SigningKey {
        let active = self
            .keys
            .iter()
            .rev()
            .find(|k| k.created_ms + activation_delay_ms <= now_ms);
        &active.unwrap_or(&self.keys[0]).key
    }

    /// Every key on file, retired or not.
    pub fn jwks(&self) -> Jwks {
        Jwks {
            keys: self.keys.iter().map(|k| k.key.jwk().clone()).collect(),
        }
    }

    /// The keys that may still verify a live token: a key is retired once its successor has
    /// been signing for longer than the longest token life, so nothing it signed is still valid.
    pub fn published_jwks(&self, now_ms: i64, activation_delay_ms: i64, max_life_ms: i64) -> Jwks {
        let signing = self
            .signing_key(now_ms, activation_delay_ms)
            .kid()
            .to_owned();
        let keys = self
            .keys
            .iter()
            .enumerate()
            .filter(|(i, k)| {
                let superseded_at = self
                    .keys
                    .get(i + 1)
                    .map(|next| next.created_ms + activation_delay_ms);
                k.key.kid() == signing || superseded_at.is_none_or(|at| now_ms <= at + max_life_ms)
            })
            .map(|(_, k)| k.key.jwk().clone())
            .collect();
        Jwks { keys }
    }
}

/// When keys start signing and how long what they signed can live.
#[derive(Clone, Copy, Debug)]
pub struct KeyPolicy {
    /// A new key signs only after it has been published this long (the JWKS max-age).
    pub activation_delay_ms: i64,
    /// The longest a token can be accepted: refresh lifetime plus leeway.
    pub max_token_life_ms: i64,
}

fn created_ms(path: &Path) -> i64 {
    let from_name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.strip_prefix("key-"))
        .and_then(|s| s.split('-').next())
        .and_then(|ms| ms.parse::<i64>().ok());
    from_name.unwrap_or_else(|| {
        std::fs::metadata(path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    })
}

/// The current ring, reloaded from the directory when its files change, so a key added by
/// `generate_key_file` (or another instance) is published without a restart.
pub struct KeyStore {
    dir: PathBuf,
    policy: KeyPolicy,
    ring: std::sync::RwLock<std::sync::Arc<KeyRing>>,
}

impl KeyStore {
    pub async fn open(dir: &Path, policy: KeyPolicy) -> Result<Self, KeyError> {
        let ring = KeyRing::load_or_generate(dir).await?;
        warn_about_loose_permissions(dir);
        Ok(Self {
            dir: dir.to_owned(),
            policy,
            ring: std::sync::RwLock::new(std::sync::Arc::new(ring)),
        })
    }

    pub fn policy(&self) -> KeyPolicy {
        self.policy
    }

    /// The JWKS to publish now (retired keys left out).
    pub fn published_jwks(&self) -> Jwks {
        let now_ms = chrono::Utc::now().timestamp_millis();
        self.current().published_jwks(
            now_ms,
            self.policy.activation_delay_ms,
            self.policy.max_token_life_ms,
        )
    }

    pub fn current(&self) -> std::sync::Arc<KeyRing> {
        self.ring.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Re-reads the directory when its files changed.
    pub async fn reload(&self) -> Result<(), KeyError> {
        if pem_files(&self.dir)? == self.current().files {
            return Ok(());
        }
        let ring = KeyRing::load(&self.dir).await?;
        let count = ring.keys.len();
        *self.ring.write().unwrap_or_else(|e| e.into_inner()) = std::sync::Arc::new(ring);
        tracing::info!(keys = count, "signing keys reloaded");
        Ok(())
    }
}

/// Mode of a keys directory we create: the service's user alone may list it.
const PRIVATE_DIR: u32 = 0o700;
/// Permission bits that let the group or others read (a directory: list).
const READABLE_BY_OTHERS: u32 = 0o044;

/// The keys directory and the key files in it that the group or others can read, with their
/// permission bits. A private key should be readable by the service's user alone.
pub fn loose_permissions(dir: &Path) -> Result<Vec<(PathBuf, u32)>, KeyError> {
    use std::os::unix::fs::PermissionsExt;
    let mut loose = Vec::new();
    for path in std::iter::once(dir.to_owned()).chain(pem_files(dir)?) {
        let mode = std::fs::metadata(&path)
            .map_err(|e| KeyError::Io(path.display().to_string(), e))?
            .permissions()
            .mode()
            & 0o777;
        if mode & READABLE_BY_OTHERS != 0 {
            loose.push((path, mode));
        }
    }
    Ok(loose)
}

/// Logs each path [`loose_permissions`] finds (the path and its mode, never the contents).
/// Only a warning: a mounted Secret's modes are the orchestrator's, not ours to change.
fn warn_about_loose_permissions(dir: &Path) {
    match loose_permissions(dir) {
        Ok(paths) => {
            for (path, mode) in paths {
                tracing::warn!(
                    path = %path.display(),
                    mode = format!("{mode:04o}"),
                    "signing key material is readable by group or others; chmod 0700 the keys directory and 0600 its key files"
                );
            }
        }
        Err(err) => tracing::warn!(error = %err, "cannot check the keys directory's permissions"),
    }
}

fn pem_files(dir: &Path) -> Result<Vec<PathBuf>, KeyError> {
    let read = std::fs::read_dir(dir).map_err(|e| KeyError::Io(dir.display().to_string(), e))?;
    let mut files: Vec<PathBuf> = read
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|p| p.extension().is_some_and(|ext| ext == "pem"))
        .collect();
    files.sort();
    Ok(files)
}

/// Generates an RSA-2048 key and writes it with mode 0600, via a temporary file and a rename so
/// a concurrent reader never sees half a key. Slow (hundreds of ms): run on a blocking thread.
pub fn generate_key_file(dir: &Path) -> Result<PathBuf, KeyError> {
    generate_key_file_made_at(dir, chrono::Utc::now().timestamp_millis())
}

/// [`generate_key_file`] with the creation time its name states (what activation counts from).
fn generate_key_file_made_at(dir: &Path, created_ms: i64) -> Result<PathBuf, KeyError> {
    use rsa::pkcs8::{EncodePrivateKey, LineEnding};
    let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)
        .map_err(|e| KeyError::Generate(e.to_string()))?;
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| KeyError::Generate(e.to_string()))?;
    let name = format!(
        "key-{}-{}.pem",
        created_ms,
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let path = dir.join(&name);
    let tmp = dir.join(format!(".{name}.tmp"));
    let io = |e| KeyError::Io(dir.display().to_string(), e);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    file.write_all(pem.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(io)?;
    tracing::info!(file = %path.display(), "generated a new RSA-2048 signing key");
    Ok(path)
}

/// `auth-service keys rotate`: adds a new key to the directory. Every instance publishes it at
/// its next reload and signs with it once the activation delay has passed; the old key stays
/// published until everything it signed has expired.
pub fn rotate(dir: &Path, activation_delay_secs: u64) -> Result<serde_json::Value, KeyError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR)
        .create(dir)
        .map_err(|e| KeyError::Io(dir.display().to_string(), e))?;
    let path = generate_key_file(dir)?;
    let pem =
        std::fs::read_to_string(&path).map_err(|e| KeyError::Io(path.display().to_string(), e))?;
    let key = SigningKey::from_pkcs8_pem(&pem, &path.display().to_string())?;
    let signs_from = chrono::Utc::now() + chrono::Duration::seconds(activation_delay_secs as i64);
    Ok(serde_json::json!({
        "kid": key.kid(),
        "file": path.display().to_string(),
        "signs_from": signs_from.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    }))
}

/// Where `keys rotate --emergency` moves the keys it retires: out of the ring, kept for the
/// investigation.
pub const RETIRED_DIR: &str = "retired";

/// `auth-service keys rotate --emergency`, for a key that may be compromised: adds a new key that
/// signs at once (its stated creation time is back-dated by the activation delay) and moves every
/// other key to `retired/`. Within `AUTH_KEYS_RELOAD_SECS` every instance drops the old keys from
/// its JWKS and its own verifier, so every token they signed is refused by auth-service
/// (users log in again) and by every verifier once it re-fetches the JWKS.
pub fn rotate_emergency(
    dir: &Path,
    activation_delay_secs: u64,
) -> Result<serde_json::Value, KeyError> {
    use std::os::unix::fs::DirBuilderExt;
    let io = |path: &Path, e| KeyError::Io(path.display().to_string(), e);
    let retired_dir = dir.join(RETIRED_DIR);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR)
        .create(&retired_dir)
        .map_err(|e| io(&retired_dir, e))?;
    let old = pem_files(dir)?;
    let now_ms = chrono::Utc::now().timestamp_millis();
    let path = generate_key_file_made_at(dir, now_ms - activation_delay_secs as i64 * 1000 - 1)?;
    let mut retired = Vec::new();
    for file in old {
        let pem = std::fs::read_to_string(&file).map_err(|e| io(&file, e))?;
        if let Ok(key) = SigningKey::from_pkcs8_pem(&pem, &file.display().to_string()) {
            retired.push(key.kid().to_owned());
        }
        let target = retired_dir.join(file.file_name().unwrap_or_default());
        std::fs::rename(&file, &target).map_err(|e| io(&file, e))?;
    }
    let pem = std::fs::read_to_string(&path).map_err(|e| io(&path, e))?;
    let key = SigningKey::from_pkcs8_pem(&pem, &path.display().to_string())?;
    tracing::warn!(kid = key.kid(), retired = ?retired, "emergency key rotation");
    Ok(serde_json::json!({
        "kid": key.kid(),
        "file": path.display().to_string(),
        "signs_from": "now",
        "retired": retired,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_emergency_rotation_signs_at_once_and_retires_every_other_key() {
        let dir = tempfile::tempdir().unwrap();
        let first = KeyRing::load_or_generate(dir.path()).await.unwrap();
        let old_kid = first.jwks().keys[0].kid.clone().unwrap();
        let delay_ms = 900_000;

        let report = rotate_emergency(dir.path(), 900).unwrap();

        let ring = KeyRing::load(dir.path()).await.unwrap();
        let now_ms = chrono::Utc::now().timestamp_millis();
        let kids: Vec<_> = ring.jwks().keys.into_iter().filter_map(|k| k.kid).collect();
        assert_eq!(kids, vec![report["kid"].as_str().unwrap().to_owned()]);
        assert_eq!(ring.signing_key(now_ms, delay_ms).kid(), report["kid"]);
        assert_eq!(report["retired"], serde_json::json!([old_kid]));
        assert_eq!(pem_files(&dir.path().join(RETIRED_DIR)).unwrap().len(), 1);
    }

    #[test]
    fn rfc7638_example_thumbprint() {
        // The example key of RFC 7638, section 3.1.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        assert_eq!(
            thumbprint(n, "AQAB"),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn generated_keys_are_private_and_sign_verifiable_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let path = generate_key_file(dir.path()).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );

        let pem = std::fs::read_to_string(&path).unwrap();
        let key = SigningKey::from_pkcs8_pem(&pem, "test").unwrap();
        let token = key.sign_jwt(br#"{"sub":"1"}"#).unwrap();
        let jwk = key.jwk();
        let decoding = jsonwebtoken::DecodingKey::from_rsa_components(
            jwk.n.as_deref().unwrap(),
            jwk.e.as_deref().unwrap(),
        )
        .unwrap();
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_aud = false;
        let data =
            jsonwebtoken::decode::<serde_json::Value>(&token, &decoding, &validation).unwrap();
        assert_eq!(data.claims["sub"], "1");
        assert_eq!(data.header.kid.as_deref(), Some(key.kid()));
    }

    #[tokio::test]
    async fn a_generated_keys_dir_is_private_and_a_loose_key_is_reported() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("keys");
        KeyRing::load_or_generate(&dir).await.unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(loose_permissions(&dir).unwrap(), vec![]);

        let key = pem_files(&dir).unwrap().remove(0);
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o750)).unwrap();
        assert_eq!(
            loose_permissions(&dir).unwrap(),
            vec![(dir.clone(), 0o750), (key, 0o644)]
        );
    }

    #[tokio::test]
    async fn a_new_key_signs_only_after_the_activation_delay() {
        let dir = tempfile::tempdir().unwrap();
        let pem = std::fs::read_to_string(generate_key_file(dir.path()).unwrap()).unwrap();
        let other = tempfile::tempdir().unwrap();
        let newer = std::fs::read_to_string(generate_key_file(other.path()).unwrap()).unwrap();
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            std::fs::remove_file(entry.unwrap().path()).unwrap();
        }
        std::fs::write(dir.path().join("key-1000-a.pem"), &pem).unwrap();
        std::fs::write(dir.path().join("key-2000-b.pem"), &newer).unwrap();

        let ring = KeyRing::load(dir.path()).await.unwrap();
        let kids: Vec<String> = ring.jwks().keys.into_iter().filter_map(|k| k.kid).collect();
        assert_eq!(kids.len(), 2, "both keys are published");
        let (old, new) = (&kids[0], &kids[1]);

        assert_eq!(
            ring.signing_key(2500, 1000).kid(),
            old,
            "new key not yet active"
        );
        assert_eq!(
            ring.signing_key(3000, 1000).kid(),
            new,
            "active after the delay"
        );
        assert_eq!(ring.signing_key(2000, 0).kid(), new);
        assert_eq!(
            ring.signing_key(1500, 1000).kid(),
            old,
            "none active: the oldest"
        );
    }

    #[tokio::test]
    async fn old_keys_leave_the_jwks_once_their_tokens_have_expired() {
        let dir = tempfile::tempdir().unwrap();
        let scratch = tempfile::tempdir().unwrap();
        for name in ["key-1000-a.pem", "key-2000-b.pem"] {
            let pem = std::fs::read_to_string(generate_key_file(scratch.path()).unwrap()).unwrap();
            std::fs::write(dir.path().join(name), pem).unwrap();
        }
        let ring = KeyRing::load(dir.path()).await.unwrap();
        let published = |now| ring.published_jwks(now, 100, 5000).keys.len();

        // b signs from 2100; what a signed lives until 2100 + 5000.
        assert_eq!(published(2050), 2);
        assert_eq!(published(7100), 2);
        assert_eq!(published(7101), 1);
        assert_eq!(
            ring.published_jwks(7101, 100, 5000).keys[0].kid.as_deref(),
            Some(ring.signing_key(7101, 100).kid())
        );
    }

    #[test]
    fn garbage_is_not_a_key() {
        assert!(SigningKey::from_pkcs8_pem("not a key", "x").is_err());
        let bogus = format!("{PEM_BEGIN}\nAAAA\n{PEM_END}\n");
        assert!(SigningKey::from_pkcs8_pem(&bogus, "x").is_err());
    }
}
