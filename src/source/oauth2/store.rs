//! Where the refresh token lives (DESIGN §13, "Rotation"): `oauth2.json` in `state_dir`, owner-only
//! (0600), replaced atomically and fsync'd with its directory, and `oauth2.lock`, whose exclusive
//! lock (flock(2)) a refresher holds from reading the stored tokens until it has stored what the
//! server answered. A second daemon on the same directory, `once` and `login` take the same
//! lock, so a rotating refresh token is presented once and its successor is on disk before
//! anyone can present the next one.
//!
//! Both files, and `state_dir` itself, must be the daemon's (DESIGN §13, "The store and its
//! files are the daemon's", `fsutil::check_owned`): anything else is refused naming the path,
//! never opened for waiting. The lock is waited for at most the source's `timeout`, and a
//! failure names the process that holds it when the kernel says (`/proc/locks`).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use crate::backoff::Backoff;
use crate::config::{Mode, Ownership};
use crate::fsutil;

const STORE: &str = "oauth2.json";
const LOCK: &str = "oauth2.lock";
/// How often a held lock is tried again: soon at first (a refresh takes a second or so).
const RETRY: Backoff = Backoff::new(Duration::from_millis(2), Duration::from_millis(100));

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
    #[error(
        "{path} is locked by {holder} and was not released within {} (source.timeout): is another \
         mcp-token-sync (a daemon on the same state_dir, `once`) stuck?",
        crate::config::duration_display(*.waited)
    )]
    Held { path: PathBuf, holder: String, waited: Duration },
    #[error("refusing {path}: {reason}")]
    Unsafe { path: PathBuf, reason: String },
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

    /// `state_dir`, created when missing and checked: a login asks this before the person
    /// approves anything, so a store that cannot be written fails it before tokens are issued.
    pub fn prepare(&self) -> Result<(), StoreError> {
        fsutil::private_dir(&self.dir)
            .map_err(|e| StoreError::Unsafe { path: self.dir.clone(), reason: e.to_string() })
    }

    /// Waits for the exclusive lock, at most `wait`.
    pub async fn lock(&self, wait: Duration) -> Result<Locked, StoreError> {
        let give_up = Instant::now() + wait;
        let mut file = self.open_lock()?;
        for attempt in 1.. {
            file = match self.try_lock(file, give_up, wait)? {
                Ok(locked) => return Ok(locked),
                Err(file) => file,
            };
            tokio::time::sleep(RETRY.after(attempt)).await;
        }
        unreachable!("the loop returns")
    }

    /// Moves what is stored to `to` (a reloaded config's new state_dir) unless `to` holds a
    /// store already: otherwise the new place would seed again from a refresh_token_file that
    /// was spent long ago, or lose the login. `true` when something moved. Waits at most
    /// `wait` for each lock.
    pub async fn relocate(&self, to: &Path, wait: Duration) -> Result<bool, StoreError> {
        let (old, new) = (self.lock(wait).await?, Store::new(to).lock(wait).await?);
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

    /// The lock file, in a checked `state_dir`, itself checked; never a FIFO waited on.
    fn open_lock(&self) -> Result<File, StoreError> {
        self.prepare()?;
        let path = self.dir.join(LOCK);
        let unsafe_path =
            |e: std::io::Error| StoreError::Unsafe { path: path.clone(), reason: e.to_string() };
        // Looked at before opening, so a FIFO is named as one (opening it fails with ENXIO).
        if let Ok(meta) = std::fs::symlink_metadata(&path) {
            fsutil::check_owned(&meta, fsutil::Kind::File).map_err(unsafe_path)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
            .open(&path)
            .map_err(|e| StoreError::Lock { path: path.clone(), reason: e.to_string() })?;
        let meta =
            file.metadata().map_err(|e| StoreError::Lock { path: path.clone(), reason: e.to_string() })?;
        fsutil::check_owned(&meta, fsutil::Kind::File).map_err(unsafe_path)?;
        // flock(2) needs only a file opened for reading: one others may read, others may hold.
        let mode = std::os::unix::fs::MetadataExt::mode(&meta) & 0o7777;
        if mode & 0o077 != 0 {
            return Err(unsafe_path(std::io::Error::other(format!(
                "its mode is {mode:04o}: others could open it and hold its lock; make it 0600"
            ))));
        }
        Ok(file)
    }

    /// One try: the lock, or the file back to try again; an error once `give_up` has passed.
    fn try_lock(
        &self,
        file: File,
        give_up: Instant,
        wait: Duration,
    ) -> Result<Result<Locked, File>, StoreError> {
        let lock_path = self.dir.join(LOCK);
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(Ok(Locked { _lock: lock, path: self.dir.join(STORE) })),
            Err((file, Errno::EWOULDBLOCK)) if Instant::now() < give_up => Ok(Err(file)),
            Err((file, Errno::EWOULDBLOCK)) => {
                let holder = holder(&file).map_or("another process".into(), |pid| format!("pid {pid}"));
                Err(StoreError::Held { path: lock_path, holder, waited: wait })
            }
            Err((_, errno)) => Err(StoreError::Lock { path: lock_path, reason: errno.to_string() }),
        }
    }
}

/// The pid holding a flock(2) on `file`, from `/proc/locks` (`1: FLOCK ADVISORY WRITE PID
/// MAJ:MIN:INODE 0 EOF`, device numbers in hex); `None` when the kernel does not say. A pid in
/// another pid namespace is shown as the kernel gives it.
fn holder(file: &File) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let meta = file.metadata().ok()?;
    let dev = meta.dev();
    // glibc's major()/minor() of a Linux dev_t.
    let (major, minor) =
        (((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff), (dev & 0xff) | ((dev >> 12) & !0xff));
    let wanted = format!("{major:02x}:{minor:02x}:{}", meta.ino());
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // A waiter's line reads "N: -> FLOCK …": it does not hold the lock.
        match fields.as_slice() {
            [_, "FLOCK", _, _, pid, id, ..] if *id == wanted => pid.parse().ok(),
            _ => None,
        }
    })
}

impl Locked {
    /// What is stored; nothing yet is the default. Only a file that is the daemon's is read
    /// (`fsutil::read_own`).
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

    const WAIT: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn what_is_written_is_read_back_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let locked = store.lock(WAIT).await.unwrap();
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

    #[tokio::test]
    async fn a_store_moves_to_a_new_state_dir_unless_one_is_there() {
        let (from, to) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let store = Store::new(from.path());
        let mut stored = Stored::default();
        stored.refresh_token = Some("rt-9".into());
        store.lock(WAIT).await.unwrap().write(&stored).unwrap();
        assert!(store.relocate(to.path(), WAIT).await.unwrap());
        assert!(!from.path().join(STORE).exists(), "two copies would diverge");
        let moved = Store::new(to.path()).lock(WAIT).await.unwrap().read().unwrap();
        assert_eq!(moved.refresh_token.as_deref(), Some("rt-9"));
        // Back again onto a place that now holds one: nothing is overwritten.
        store.lock(WAIT).await.unwrap().write(&Stored::default()).unwrap();
        assert!(!Store::new(to.path()).relocate(from.path(), WAIT).await.unwrap());
    }

    #[tokio::test]
    async fn one_holder_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let (first, second) = (Store::new(dir.path()), Store::new(dir.path()));
        let held = first.lock(WAIT).await.unwrap();
        let waiting = tokio::spawn(async move { second.lock(WAIT).await.map(drop) });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!waiting.is_finished(), "two holders at once");
        drop(held);
        tokio::time::timeout(Duration::from_secs(10), waiting).await.unwrap().unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_held_lock_is_waited_for_at_most_the_timeout_and_its_holder_named() {
        let dir = tempfile::tempdir().unwrap();
        let _held = Store::new(dir.path()).lock(WAIT).await.unwrap();
        let started = Instant::now();
        let error = Store::new(dir.path()).lock(Duration::from_millis(300)).await.err().unwrap();
        assert!(started.elapsed() < Duration::from_secs(5), "waited {:?}", started.elapsed());
        let text = error.to_string();
        assert!(matches!(error, StoreError::Held { .. }), "{text}");
        // Two opens of one file in one process are two holders to flock(2); the kernel names us.
        assert!(text.contains(&format!("pid {}", std::process::id())), "{text}");
        assert!(text.contains("oauth2.lock") && text.contains("300ms"), "{text}");
    }

    #[tokio::test]
    async fn a_fifo_planted_at_the_lock_or_the_store_is_refused_not_waited_on() {
        let dir = tempfile::tempdir().unwrap();
        nix::unistd::mkfifo(&dir.path().join(LOCK), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let refused = Store::new(dir.path()).lock(WAIT).await.err().unwrap().to_string();
        assert!(refused.contains("oauth2.lock") && refused.contains("FIFO"), "{refused}");

        let dir = tempfile::tempdir().unwrap();
        nix::unistd::mkfifo(&dir.path().join(STORE), nix::sys::stat::Mode::from_bits_truncate(0o600))
            .unwrap();
        let locked = tokio::time::timeout(WAIT, Store::new(dir.path()).lock(WAIT)).await.unwrap().unwrap();
        let refused = tokio::task::spawn_blocking(move || locked.read().err().unwrap().to_string());
        let refused = tokio::time::timeout(WAIT, refused).await.expect("not waited on").unwrap();
        assert!(refused.contains("oauth2.json") && refused.contains("FIFO"), "{refused}");
    }

    #[tokio::test]
    async fn a_missing_state_dir_is_made_private_and_a_loose_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let state_dir = dir.path().join("a/b");
        Store::new(&state_dir).prepare().unwrap();
        let mode = std::fs::metadata(&state_dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        std::fs::set_permissions(&state_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let refused = Store::new(&state_dir).lock(WAIT).await.err().unwrap().to_string();
        assert!(refused.contains("a/b") && refused.contains("mode 0777"), "{refused}");
        assert!(!state_dir.join(LOCK).exists(), "nothing is made in a loose directory");
    }

    #[tokio::test]
    async fn a_symlinked_state_dir_a_loose_parent_and_a_lock_others_can_open_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = dir.path().join("another-store");
        Store::new(&elsewhere).prepare().unwrap();
        let link = dir.path().join("state");
        std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
        let refused = Store::new(&link).lock(WAIT).await.err().unwrap().to_string();
        assert!(refused.contains("symbolic link"), "{refused}");
        assert!(!elsewhere.join(LOCK).exists(), "nothing is made where the link points");

        let loose = dir.path().join("loose");
        std::fs::create_dir(&loose).unwrap();
        std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o777)).unwrap();
        let refused = Store::new(&loose.join("state")).prepare().unwrap_err().to_string();
        assert!(refused.contains("loose") && refused.contains("not sticky"), "{refused}");
        std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o1777)).unwrap();
        Store::new(&loose.join("state")).prepare().expect("a sticky directory, as /tmp, is fine");

        let held = Store::new(&elsewhere).lock(WAIT).await.unwrap();
        drop(held);
        std::fs::set_permissions(elsewhere.join(LOCK), std::fs::Permissions::from_mode(0o644)).unwrap();
        let refused = Store::new(&elsewhere).lock(WAIT).await.err().unwrap().to_string();
        assert!(refused.contains("0644") && refused.contains("hold its lock"), "{refused}");
    }

    #[tokio::test]
    async fn a_store_another_user_owns_is_refused() {
        if !nix::unistd::geteuid().is_root() {
            return; // only root can give a file away (CI runs as root)
        }
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let mut stored = Stored::default();
        stored.refresh_token = Some("planted".into());
        store.lock(WAIT).await.unwrap().write(&stored).unwrap();
        let nobody = Some(nix::unistd::Uid::from_raw(65534));
        nix::unistd::chown(&dir.path().join(STORE), nobody, None).unwrap();
        let refused = store.lock(WAIT).await.unwrap().read().err().unwrap().to_string();
        assert!(refused.contains("uid 65534"), "{refused}");
        nix::unistd::chown(&dir.path().join(LOCK), nobody, None).unwrap();
        let refused = store.lock(WAIT).await.err().unwrap().to_string();
        assert!(refused.contains("oauth2.lock") && refused.contains("uid 65534"), "{refused}");
    }

    /// Found by attacking the daemon: a state_dir below a directory another user owns (0755)
    /// was taken, and that user could rename the store away and back (a spent refresh token
    /// rolled back); a link above it into such a directory was not seen either.
    #[tokio::test]
    async fn a_state_dir_below_another_users_directory_is_refused_however_reached() {
        if !nix::unistd::geteuid().is_root() {
            return; // only root can give a directory away (CI runs as root)
        }
        let dir = tempfile::tempdir().unwrap();
        let theirs = dir.path().join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o755)).unwrap();
        nix::unistd::chown(&theirs, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
        let refused = Store::new(&theirs.join("state")).prepare().unwrap_err().to_string();
        assert!(refused.contains("theirs") && refused.contains("belongs to uid 65534"), "{refused}");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&theirs, &link).unwrap();
        let refused = Store::new(&link.join("state")).prepare().unwrap_err().to_string();
        assert!(refused.contains("belongs to uid 65534"), "{refused}");
        // Control: the same, ours.
        nix::unistd::chown(&theirs, Some(nix::unistd::geteuid()), None).unwrap();
        Store::new(&link.join("state")).prepare().expect("a link into our own directory is fine");
    }
}
