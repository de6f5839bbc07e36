//! The stored login: `tokens.json` in the user's config directory, readable by the user alone.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use shared::client::Session;

/// What `tokens.json` holds: where the session belongs, whose it is, and the token pair.
#[derive(Clone, Serialize, Deserialize)]
pub struct Saved {
    pub url: String,
    pub username: String,
    #[serde(flatten)]
    pub session: Session,
}

pub struct TokenStore {
    dir: PathBuf,
    file: PathBuf,
}

impl TokenStore {
    /// `$AUTHBOOKS_CONFIG_DIR`, else `$XDG_CONFIG_HOME/authbooks`, else `~/.config/authbooks`.
    pub fn locate() -> Result<Self, String> {
        let non_empty = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        let dir = if let Some(dir) = non_empty("AUTHBOOKS_CONFIG_DIR") {
            PathBuf::from(dir)
        } else if let Some(config) = non_empty("XDG_CONFIG_HOME") {
            PathBuf::from(config).join("authbooks")
        } else if let Some(home) = non_empty("HOME") {
            PathBuf::from(home).join(".config").join("authbooks")
        } else {
            return Err("cannot find a config directory: set AUTHBOOKS_CONFIG_DIR or HOME".into());
        };
        Ok(TokenStore {
            file: dir.join("tokens.json"),
            dir,
        })
    }

    #[cfg(test)]
    fn path(&self) -> &Path {
        &self.file
    }

    /// The stored login, if any.
    pub fn load(&self) -> Result<Option<Saved>, String> {
        let bytes = match fs::read(&self.file) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot read {}: {e}", self.file.display())),
        };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            format!(
                "{} is damaged ({e}); delete it or run `authbooks login`",
                self.file.display()
            )
        })
    }

    /// Replaces the stored login. The file is written whole under a temporary name created
    /// with mode 0600, then renamed, so it is never readable by others nor half-written.
    pub fn save(&self, saved: &Saved) -> Result<(), String> {
        let fail = |what: &str, e: std::io::Error| format!("cannot {what}: {e}");
        create_private_dir(&self.dir)
            .map_err(|e| fail(&format!("create {}", self.dir.display()), e))?;
        let temporary = self
            .dir
            .join(format!(".tokens.json.{}", std::process::id()));
        let _ = fs::remove_file(&temporary);
        let body = serde_json::to_vec_pretty(saved).map_err(|e| e.to_string())?;
        let written = create_private_file(&temporary).and_then(|mut file| {
            file.write_all(&body)?;
            file.sync_all()
        });
        if let Err(e) = written.and_then(|()| fs::rename(&temporary, &self.file)) {
            let _ = fs::remove_file(&temporary);
            return Err(fail(&format!("write {}", self.file.display()), e));
        }
        Ok(())
    }

    /// Forgets the stored login; nothing stored is fine.
    pub fn delete(&self) -> Result<(), String> {
        match fs::remove_file(&self.file) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("cannot delete {}: {e}", self.file.display())),
        }
    }
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    fs::create_dir_all(dir)
}

#[cfg(unix)]
fn create_private_file(path: &Path) -> std::io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn create_private_file(path: &Path) -> std::io::Result<fs::File> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &Path) -> TokenStore {
        TokenStore {
            dir: dir.join("nested"),
            file: dir.join("nested").join("tokens.json"),
        }
    }

    fn saved(access: &str) -> Saved {
        Saved {
            url: "http://127.0.0.1:8080/".into(),
            username: "admin".into(),
            session: Session {
                access_token: access.into(),
                refresh_token: "r".into(),
            },
        }
    }

    #[test]
    fn saves_with_mode_0600_replaces_and_deletes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = store(dir.path());
        assert!(store.load().expect("readable").is_none());
        store.save(&saved("a1")).expect("saved");
        store.save(&saved("a2")).expect("saved again");
        let loaded = store.load().expect("readable").expect("stored");
        assert_eq!(loaded.session.access_token, "a2");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(store.path())
                .expect("exists")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        store.delete().expect("deleted");
        store.delete().expect("deleting nothing is fine");
        assert!(store.load().expect("readable").is_none());
    }

    #[test]
    fn a_damaged_file_is_reported_not_trusted() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = store(dir.path());
        fs::create_dir_all(dir.path().join("nested")).expect("dir");
        fs::write(store.path(), b"{not json").expect("written");
        assert!(store.load().is_err());
    }
}
