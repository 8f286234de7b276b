//! Replacing a file atomically: the one write path for file sinks, env files and the state file;
//! reading back a file only the daemon can have written; and reading a secret from a file.
//!
//! A reader opening the path sees the old content or the new, never a partial or empty file:
//! the new content goes to a temporary file in the same directory (same filesystem, so the
//! rename is atomic), is flushed to disk, gets its mode and owner, and only then is renamed over
//! the path. The directory is flushed last so the rename itself survives a crash.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::config::{Mode, Ownership};

#[derive(Debug, thiserror::Error)]
pub(crate) enum WriteError {
    #[error(
        "{0} is a symbolic link; refusing to write through it (remove it, or point the sink at the real path)"
    )]
    Symlink(PathBuf),
    #[error("{0} is a directory")]
    Directory(PathBuf),
    #[error("cannot {action} {path}: {source}")]
    Io { action: &'static str, path: PathBuf, source: io::Error },
}

fn io_error<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> WriteError + 'a {
    move |source| WriteError::Io { action, path: path.to_owned(), source }
}

/// Atomically replaces `path` with `contents`, with the given mode and ownership.
pub(crate) fn write_atomic(
    path: &Path,
    contents: &[u8],
    mode: Mode,
    ownership: Ownership,
) -> Result<(), WriteError> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => return Err(WriteError::Symlink(path.to_owned())),
        Ok(meta) if meta.is_dir() => return Err(WriteError::Directory(path.to_owned())),
        _ => {}
    }
    let dir = parent(path);
    let name = path.file_name().expect("config requires sink paths to name a file").to_string_lossy();
    let temp = dir.join(format!(".{name}.{}-{:08x}.tmp", std::process::id(), rand::random::<u32>()));

    // Created owner-only: the final mode is applied once the content is complete, so the file is
    // never more open than both modes allow.
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600 & mode.0)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(&temp)
        .map_err(io_error("create a file in", dir))?;
    let cleanup = RemoveOnDrop(&temp);
    file.write_all(contents).map_err(io_error("write", &temp))?;
    file.sync_all().map_err(io_error("flush", &temp))?;
    file.set_permissions(fs::Permissions::from_mode(mode.0)).map_err(io_error("set the mode of", &temp))?;
    if ownership.uid.is_some() || ownership.gid.is_some() {
        std::os::unix::fs::fchown(&file, ownership.uid, ownership.gid)
            .map_err(io_error("change the owner (needs CAP_CHOWN) of", &temp))?;
    }
    drop(file);
    fs::rename(&temp, path).map_err(io_error("rename a temporary file over", path))?;
    std::mem::forget(cleanup);
    sync_dir(dir)
}

/// The file's bytes, if it is one the daemon could have written ([`check_owned`]). Another user
/// who can write in `state_dir` (a misconfigured directory) must not be able to plant the token
/// the daemon restores and serves, nor the refresh token it presents. Opened without following
/// a symlink and without blocking: a FIFO planted at the path is refused, not waited on.
pub(crate) fn read_own(path: &Path) -> std::io::Result<zeroize::Zeroizing<Vec<u8>>> {
    use std::io::Read;
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| refused_link(path, e))?;
    let meta = file.metadata()?;
    check_owned(&meta, Kind::File)?;
    let mut bytes = zeroize::Zeroizing::new(Vec::with_capacity(meta.len() as usize));
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// What a path the daemon relies on must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    File,
    Directory,
}

/// DESIGN §13, "The store and its files are the daemon's": of the expected kind, owned by root
/// or the daemon's uid, and writable by no one else (no group or other write bit). The error
/// says what the path is instead; callers name the path.
pub(crate) fn check_owned(meta: &fs::Metadata, kind: Kind) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let (is, wanted) = match kind {
        Kind::File => (meta.file_type().is_file(), "a regular file"),
        Kind::Directory => (meta.file_type().is_dir(), "a directory"),
    };
    if !is {
        return Err(io::Error::other(format!("it is {}, not {wanted}", describe_type(meta))));
    }
    let own = nix::unistd::geteuid().as_raw();
    if (meta.uid() != own && meta.uid() != 0) || meta.mode() & 0o022 != 0 {
        return Err(io::Error::other(format!(
            "it belongs to uid {} with mode {:04o}: it must belong to root or the daemon's uid {own} \
             and be writable by its owner alone",
            meta.uid(),
            meta.mode() & 0o7777
        )));
    }
    Ok(())
}

/// `state_dir`, created (0700, with any missing parents) when it is missing, then checked as
/// [`check_owned`] says, and not a symbolic link: everything the daemon keeps there is only as
/// safe as the directory. Nor may any directory above it, as written or with its links
/// resolved, belong to another user or be writable by others unless sticky (as `/tmp` is):
/// whoever can rename entries there can put another directory in its place.
pub(crate) fn private_dir(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::DirBuilder::new().recursive(true).mode(0o700).create(path)?;
        }
        Err(e) => return Err(e),
        Ok(_) => {}
    }
    check_owned(&fs::symlink_metadata(path)?, Kind::Directory)?;
    let absolute = std::path::absolute(path)?;
    let resolved = fs::canonicalize(&absolute)?;
    for above in absolute.ancestors().skip(1).chain(resolved.ancestors().skip(1)) {
        let meta = fs::symlink_metadata(above)?;
        // A link is replaced only through the directory that holds it, itself checked here;
        // where it leads is checked with the resolved path.
        if !meta.file_type().is_symlink() {
            check_above(above, &meta)?;
        }
    }
    Ok(())
}

/// A directory above `state_dir`: root's or the daemon's, and not writable by others unless
/// sticky.
fn check_above(above: &Path, meta: &fs::Metadata) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let own = nix::unistd::geteuid().as_raw();
    if meta.uid() != 0 && meta.uid() != own {
        return Err(io::Error::other(format!(
            "{} above it belongs to uid {}, not root or the daemon's uid {own}: that user could put another \
             directory in its place",
            above.display(),
            meta.uid()
        )));
    }
    if meta.mode() & 0o022 != 0 && meta.mode() & 0o1000 == 0 {
        return Err(io::Error::other(format!(
            "{} above it is writable by others (mode {:04o}) and not sticky: they could put another \
             directory in its place",
            above.display(),
            meta.mode() & 0o7777
        )));
    }
    Ok(())
}

/// `O_NOFOLLOW` on a symlink fails with ELOOP, whose text ("too many levels of symbolic
/// links") would mislead.
fn refused_link(path: &Path, e: io::Error) -> io::Error {
    if e.raw_os_error() == Some(nix::libc::ELOOP) && path.is_symlink() {
        io::Error::other("it is a symbolic link, not a regular file")
    } else {
        e
    }
}

fn describe_type(meta: &fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let kind = meta.file_type();
    if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_symlink() {
        "a symbolic link"
    } else if kind.is_block_device() || kind.is_char_device() {
        "a device"
    } else {
        "a regular file"
    }
}

/// The secret in `path` (a credential, a client secret) in zeroized memory, without its final
/// line break; read before each use, so a rotated file is picked up without a restart. The
/// error is the reason alone: callers name the key.
pub(crate) fn read_secret(path: &Path) -> Result<zeroize::Zeroizing<String>, String> {
    let mut text = zeroize::Zeroizing::new(fs::read_to_string(path).map_err(|e| e.to_string())?);
    let kept = text.trim_end_matches(['\n', '\r']).len();
    text.truncate(kept);
    if text.is_empty() {
        return Err("the file is empty".into());
    }
    Ok(text)
}

/// Removes `path` if it exists (a symlink is removed itself, not its target).
pub(crate) fn remove(path: &Path) -> Result<bool, WriteError> {
    match fs::remove_file(path) {
        Ok(()) => sync_dir(parent(path)).map(|()| true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_error("remove", path)(e)),
    }
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// A rename is an update of the directory; without flushing it, a crash can bring back the old
/// file (or none) even though the new one's data was flushed.
fn sync_dir(dir: &Path) -> Result<(), WriteError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_error("flush the directory", dir))
}

struct RemoveOnDrop<'a>(&'a Path);

impl Drop for RemoveOnDrop<'_> {
    fn drop(&mut self) {
        let _ = fs::remove_file(self.0);
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    #[test]
    fn writes_content_with_the_mode_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        write_atomic(&path, b"first", Mode(0o640), Ownership::default()).unwrap();
        write_atomic(&path, b"second", Mode(0o640), Ownership::default()).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o640);
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["token"]);
    }

    #[test]
    fn mode_is_exact_whatever_the_umask() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        write_atomic(&path, b"x", Mode(0o660), Ownership::default()).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o660);
        write_atomic(&path, b"x", Mode(0o400), Ownership::default()).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o400);
    }

    #[test]
    fn refuses_a_symlink_at_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere");
        fs::write(&target, b"untouched").unwrap();
        let path = dir.path().join("token");
        std::os::unix::fs::symlink(&target, &path).unwrap();
        let err = write_atomic(&path, b"secret", Mode(0o600), Ownership::default()).unwrap_err();
        assert!(matches!(err, WriteError::Symlink(_)), "{err}");
        assert_eq!(fs::read(&target).unwrap(), b"untouched");
    }

    #[test]
    fn a_missing_directory_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent").join("token");
        let err = write_atomic(&path, b"x", Mode(0o600), Ownership::default()).unwrap_err().to_string();
        assert!(err.contains("absent"), "{err}");
    }

    #[test]
    fn chown_applies_the_ids() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let me = nix::unistd::geteuid().as_raw();
        let group = nix::unistd::getegid().as_raw();
        write_atomic(&path, b"x", Mode(0o600), Ownership { uid: Some(me), gid: Some(group) }).unwrap();
        let meta = fs::metadata(&path).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (me, group));
    }

    #[test]
    fn remove_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        fs::write(&path, b"x").unwrap();
        assert!(remove(&path).unwrap());
        assert!(!remove(&path).unwrap());
        assert!(!path.exists());
    }
}
