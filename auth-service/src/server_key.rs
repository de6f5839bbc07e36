//! Symmetric server keys (the client-secret key, the second-factor key): from a variable, or else
//! from a file in the keys directory, created (0600) with 32 random bytes on first start. Every
//! instance must use the same key: they share the keys directory already.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// Bytes of a generated key, and the least a configured one may have.
pub const KEY_BYTES: usize = 32;

/// The configured key (base64url or standard base64), or the file `file_name` in `keys_dir`,
/// created (0600, base64url of [`KEY_BYTES`] random bytes) when missing, turned into `T` by
/// `make` (which checks the length). Errors from the file name its path.
pub fn load_or_create<T>(
    configured: Option<&str>,
    keys_dir: &Path,
    file_name: &str,
    make: impl Fn(&[u8]) -> Result<T, String>,
) -> Result<T, String> {
    if let Some(encoded) = configured {
        return make(&decode(encoded)?);
    }
    let path = keys_dir.join(file_name);
    match std::fs::read_to_string(&path) {
        Ok(encoded) => decode(encoded.trim())
            .and_then(|key| make(&key))
            .map_err(|e| format!("{}: {e}", path.display())),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let key: [u8; KEY_BYTES] = random_bytes()?;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
            file.write_all(URL_SAFE_NO_PAD.encode(key).as_bytes())
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            make(&key)
        }
        Err(err) => Err(format!("cannot read {}: {e}", path.display(), e = err)),
    }
}

/// Base64url (padded or not) or standard base64.
pub fn decode(encoded: &str) -> Result<Vec<u8>, String> {
    URL_SAFE_NO_PAD
        .decode(encoded.trim_end_matches('='))
        .or_else(|_| base64::engine::general_purpose::STANDARD.decode(encoded))
        .map_err(|_| "expected base64 of at least 32 random bytes".to_owned())
}

/// `N` bytes from the OS generator.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], String> {
    let mut bytes = [0u8; N];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| "the OS random generator failed".to_owned())?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at_least_32(key: &[u8]) -> Result<Vec<u8>, String> {
        if key.len() < KEY_BYTES {
            return Err("too short".into());
        }
        Ok(key.to_vec())
    }

    #[test]
    fn a_created_file_is_private_reused_and_errors_name_it() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(None, dir.path(), "x.key", at_least_32).unwrap();
        assert_eq!(first.len(), KEY_BYTES);
        let again = load_or_create(None, dir.path(), "x.key", at_least_32).unwrap();
        assert_eq!(first, again);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("x.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);

        std::fs::write(dir.path().join("bad.key"), "!!").unwrap();
        let err = load_or_create(None, dir.path(), "bad.key", at_least_32).unwrap_err();
        assert!(err.contains("bad.key: expected base64"), "{err}");
        std::fs::write(
            dir.path().join("short.key"),
            URL_SAFE_NO_PAD.encode([1u8; 8]),
        )
        .unwrap();
        let err = load_or_create(None, dir.path(), "short.key", at_least_32).unwrap_err();
        assert!(err.contains("short.key: too short"), "{err}");
    }

    #[test]
    fn a_configured_key_wins_in_either_base64_alphabet() {
        let dir = tempfile::tempdir().unwrap();
        let key = [0xfbu8; 32];
        for encoded in [
            URL_SAFE_NO_PAD.encode(key),
            base64::engine::general_purpose::URL_SAFE.encode(key),
            base64::engine::general_purpose::STANDARD.encode(key),
        ] {
            let got = load_or_create(Some(&encoded), dir.path(), "x.key", at_least_32).unwrap();
            assert_eq!(got, key);
        }
        assert!(!dir.path().join("x.key").exists());
        assert!(load_or_create(Some("short"), dir.path(), "x.key", at_least_32).is_err());
    }
}
