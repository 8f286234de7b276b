//! Watching a file: the config, so that saving it reloads the daemon (`watch_config`), and
//! an oauth2 source's `refresh_token_file`, so that a new seed is used at once (DESIGN §13).

use std::path::Path;

use notify_debouncer_mini::notify::{RecommendedWatcher, RecursiveMode};
use notify_debouncer_mini::{DebounceEventResult, Debouncer};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tracing::{info, warn};

/// Editors save in several steps; one reload after the last of them.
const DEBOUNCE: std::time::Duration = std::time::Duration::from_millis(300);

/// Sends `message` on `changed` after each change to `path`'s content; stops when dropped. `None` (with a
/// warning naming `otherwise`, what still works) where the host cannot watch files. `why` names
/// the key that asks for the watch, for the log.
///
/// Watches the file's directory, not the file: editors save by renaming a new file over the old
/// one, which a watch on the old inode would miss. Only a change of content counts: the
/// watcher's inotify mask includes opening and closing a file unwritten, so a mere read (`cat`,
/// `check`, the daemon's own read at a reload or a refresh) would otherwise be a change, and a
/// reload that reads the file would set off the next, forever.
pub(super) fn watch<T: Clone + Send + 'static>(
    path: &Path,
    changed: mpsc::Sender<T>,
    message: T,
    why: &str,
    otherwise: &str,
) -> Option<Debouncer<RecommendedWatcher>> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_owned();
    let name = path.file_name()?.to_owned();
    let file = path.to_owned();
    let mut last = digest(&file);
    let debouncer = notify_debouncer_mini::new_debouncer(DEBOUNCE, move |events: DebounceEventResult| {
        if let Ok(events) = events
            && events.iter().any(|e| e.path.file_name() == Some(name.as_os_str()))
        {
            let now = digest(&file);
            if std::mem::replace(&mut last, now) != now {
                let _ = changed.try_send(message.clone());
            }
        }
    });
    let mut debouncer = match debouncer {
        Ok(d) => d,
        Err(e) => {
            warn!("cannot watch {} for changes ({e}); {otherwise}", path.display());
            return None;
        }
    };
    if let Err(e) = debouncer.watcher().watch(&dir, RecursiveMode::NonRecursive) {
        warn!("cannot watch {} for changes ({e}); {otherwise}", dir.display());
        return None;
    }
    info!("watching {} for changes ({why})", path.display());
    Some(debouncer)
}

/// The SHA-256 of the file's content (`None`: unreadable or gone). The file may hold a secret
/// (a refresh token): it is read into memory zeroed after.
fn digest(path: &Path) -> Option<[u8; 32]> {
    let bytes = zeroize::Zeroizing::new(std::fs::read(path).ok()?);
    Some(Sha256::digest(&*bytes).into())
}
