//! Where the refresh token lives (DESIGN §13, "Rotation"): `oauth2.json` in `state_dir`, owner-only
//! (0600), replaced atomically and fsync'd with its directory, and `oauth2.lock`, whose exclusive
//! lock (flock(2)) a refresher holds from reading the stored tokens until it has stored what the
//! server answered. A second daemon on the same directory, `once` and `login` take the same
//! lock, so a rotating refresh token is presented once and its successor is on disk before
//! anyone can present the next one.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use crate::config::{Mode, Ownership};
use crate::fsutil;

const STORE: &str = "oauth2.json";
const LOCK: &str = "oauth2.lock";

/// What is stored. The tokens are zeroed when it is dropped.
#[derive(Default, Serialize, Deserialize)]
pub(crate) struct Stored {
    /// The refresh token to present next.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// The server refused `refresh_token` (`invalid_grant`): kept, shown as refused, never
    /// presented again until a login or a new seed replaces it.
    #[serde(default)]
    pub refused: bool,
    /// When the refresh token was last replaced (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotated_at: Option<u64>,
    /// The access token last issued, and when it expires (Unix seconds): a holder that finds a
    /// newer one here adopts it instead of refreshing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_expires_at: Option<u64>,
    /// The SHA-256 (hex) of `refresh_token_file` when it last seeded the store: a changed file
    /// seeds again, an unchanged one does not override a rotated token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<String>,
    /// The server the tokens are from (`OAuth2::server`): another one is never sent them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// The client `login` registered (RFC 7591), when none is configured: reused by every
    /// later login and refresh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<RegisteredClient>,
}

/// A client registered at an authorization server (RFC 7591 §3.2.1). A public client: no
/// secret is kept.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct RegisteredClient {
    pub client_id: String,
    /// The issuer it was registered with: another server needs its own registration.
    pub issuer: String,
}

impl Drop for Stored {
    fn drop(&mut self) {
        self.refresh_token.zeroize();
        self.access_token.zeroize();
    }
}

/// Why the store could not be used; names the file.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    #[error("cannot lock {path}: {reason}")]
    Lock { path: PathBuf, reason: String },
    #[error("cannot read {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error(transparent)]
    Write(#[from] fsutil::WriteError),
}

/// The store in one `state_dir`.
pub(crate) struct Store {
    dir: PathBuf,
}

/// The store, held exclusively until dropped.
pub(crate) struct Locked {
    _lock: Flock<File>,
    path: PathBuf,
}

impl Store {
    pub fn new(state_dir: &Path) -> Store {
        Store { dir: state_dir.to_owned() }
    }

    /// Waits for the exclusive lock (on a blocking thread: flock(2) blocks).
    pub async fn lock(&self) -> Result<Locked, StoreError> {
        let store = Store { dir: self.dir.clone() };
        tokio::task::spawn_blocking(move || store.lock_blocking())
            .await
            .map_err(|e| StoreError::Lock { path: self.dir.join(LOCK), reason: e.to_string() })?
    }

    /// Moves what is stored to `to` (a reloaded config's new state_dir) unless `to` holds a
    /// store already: otherwise the new place would seed again from a refresh_token_file that
    /// was spent long ago, or lose the login. `true` when something moved. Blocking.
    pub fn relocate(&self, to: &Path) -> Result<bool, StoreError> {
        let (old, new) = (self.lock_blocking()?, Store::new(to).lock_blocking()?);
        if old.path == new.path || new.path.exists() || !old.path.exists() {
            return Ok(false);
        }
        new.write(&old.read()?)?;
        std::fs::remove_file(&old.path).map_err(|e| StoreError::Read {
            path: old.path.clone(),
            reason: format!("moved, but not removed: {e}"),
        })?;
        Ok(true)
    }

    fn lock_blocking(&self) -> Result<Locked, StoreError> {
        let lock_path = self.dir.join(LOCK);
        let path = self.dir.join(STORE);
        let fail = |reason: String| StoreError::Lock { path: lock_path.clone(), reason };
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&lock_path)
            .map_err(|e| fail(e.to_string()))?;
        let lock =
            Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| fail(errno.to_string()))?;
        Ok(Locked { _lock: lock, path })
    }
}

impl Locked {
    /// What is stored; nothing yet is the default. Only a file the daemon's uid alone can
    /// write is read (`fsutil::read_own`).
    pub fn read(&self) -> Result<Stored, StoreError> {
        let fail = |reason: String| StoreError::Read { path: self.path.clone(), reason };
        match fsutil::read_own(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| fail(e.to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Stored::default()),
            Err(e) => Err(fail(e.to_string())),
        }
    }

    /// Replaces what is stored: on disk, fsync'd, before this returns.
    pub fn write(&self, stored: &Stored) -> Result<(), StoreError> {
        let bytes = Zeroizing::new(serde_json::to_vec(stored).expect("the store serializes"));
        fsutil::write_atomic(&self.path, &bytes, Mode(0o600), Ownership::default())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn what_is_written_is_read_back_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let locked = store.lock().await.unwrap();
        assert!(locked.read().unwrap().refresh_token.is_none());
        let mut stored = Stored::default();
        stored.refresh_token = Some("rt-1".into());
        stored.rotated_at = Some(7);
        locked.write(&stored).unwrap();
        let back = locked.read().unwrap();
        assert_eq!((back.refresh_token.as_deref(), back.rotated_at), (Some("rt-1"), Some(7)));
        let mode = std::fs::metadata(dir.path().join(STORE)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn a_store_moves_to_a_new_state_dir_unless_one_is_there() {
        let (from, to) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let store = Store::new(from.path());
        let mut stored = Stored::default();
        stored.refresh_token = Some("rt-9".into());
        store.lock_blocking().unwrap().write(&stored).unwrap();
        assert!(store.relocate(to.path()).unwrap());
        assert!(!from.path().join(STORE).exists(), "two copies would diverge");
        let moved = Store::new(to.path()).lock_blocking().unwrap().read().unwrap();
        assert_eq!(moved.refresh_token.as_deref(), Some("rt-9"));
        // Back again onto a place that now holds one: nothing is overwritten.
        store.lock_blocking().unwrap().write(&Stored::default()).unwrap();
        assert!(!Store::new(to.path()).relocate(from.path()).unwrap());
    }

    #[tokio::test]
    async fn one_holder_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let (first, second) = (Store::new(dir.path()), Store::new(dir.path()));
        let held = first.lock().await.unwrap();
        let waiting = tokio::spawn(async move { second.lock().await.map(drop) });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!waiting.is_finished(), "two holders at once");
        drop(held);
        tokio::time::timeout(Duration::from_secs(10), waiting).await.unwrap().unwrap().unwrap();
    }
}
