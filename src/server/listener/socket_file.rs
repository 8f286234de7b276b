//! The socket file: created with its final mode and no wider window, refusing to take over a
//! live socket, and removed when the daemon stops.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use super::BindError;
use crate::config::Mode;

/// The socket's file; removed on drop if it is still ours.
pub struct SocketFile {
    path: PathBuf,
    /// (device, inode) of the socket we created, so a file someone else put there later is
    /// left alone.
    identity: (u64, u64),
}

impl SocketFile {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if let Ok(meta) = fs::symlink_metadata(&self.path)
            && (meta.dev(), meta.ino()) == self.identity
        {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Binds the socket in a private (0700) directory beside `path`, sets its mode, then renames it
/// into place: nobody can connect before the mode is right, and a stale socket from a crashed
/// run is replaced atomically.
pub(super) fn bind(path: &Path, mode: Mode) -> Result<(UnixListener, SocketFile), BindError> {
    let fail = |source: io::Error| BindError::Io { address: path.display().to_string(), source };
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if UnixStream::connect(path).is_ok() {
                return Err(BindError::InUse(path.to_owned()));
            }
        }
        Ok(_) => return Err(BindError::NotASocket(path.to_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(fail(e)),
    }
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let private = tempfile::Builder::new().prefix(".mcp-token-sync-").tempdir_in(dir).map_err(fail)?;
    let staged = private.path().join("s");
    let listener = UnixListener::bind(&staged).map_err(fail)?;
    fs::set_permissions(&staged, fs::Permissions::from_mode(mode.0)).map_err(fail)?;
    fs::rename(&staged, path).map_err(fail)?;
    listener.set_nonblocking(true).map_err(fail)?;
    let meta = fs::symlink_metadata(path).map_err(fail)?;
    Ok((listener, SocketFile { path: path.to_owned(), identity: (meta.dev(), meta.ino()) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_socket_gets_its_mode_and_is_removed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.sock");
        let socket = bind(&path, Mode(0o660)).unwrap();
        let meta = fs::metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.mode() & 0o777, 0o660);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "the staging directory is gone");
        drop(socket);
        assert!(!path.exists());
    }

    #[test]
    fn a_stale_socket_is_replaced_and_a_live_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.sock");
        drop(UnixListener::bind(&path).unwrap()); // a crashed run leaves its file behind
        let live = bind(&path, Mode(0o600)).expect("a stale socket is replaced");
        assert!(matches!(bind(&path, Mode(0o600)), Err(BindError::InUse(_))));
        drop(live);
    }

    #[test]
    fn a_regular_file_at_the_path_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.sock");
        fs::write(&path, "important").unwrap();
        assert!(matches!(bind(&path, Mode(0o600)), Err(BindError::NotASocket(_))));
        assert_eq!(fs::read_to_string(&path).unwrap(), "important");
    }

    #[test]
    fn a_file_replaced_by_someone_else_is_not_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.sock");
        let socket = bind(&path, Mode(0o600)).unwrap();
        fs::remove_file(&path).unwrap();
        fs::write(&path, "someone else's").unwrap();
        drop(socket);
        assert!(path.exists());
    }
}
