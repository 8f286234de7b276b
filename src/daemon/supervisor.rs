//! Running the daemon under signals and systemd: SIGUSR1 refreshes, SIGHUP (or a change to the
//! file, with `watch_config`) reloads, SIGTERM and SIGINT stop.
//!
//! A reload checks the new file exactly as `check` does and swaps everything it configures,
//! `[daemon]` included: the log format switches, the file watcher starts or stops, the state
//! file moves to the new `state_dir`. An invalid file is logged and the running one kept.

use std::path::{Path, PathBuf};

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tracing::{error, info};

use super::{Daemon, Parts, watcher};
use crate::config::{self, DaemonConfig};
use crate::logging::Logging;
use crate::server::BindError;
use crate::systemd;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot install signal handlers: {0}")]
    Signals(#[from] std::io::Error),
    #[error(transparent)]
    Bind(#[from] BindError),
}

/// What the supervisor itself runs besides the daemon: the logger and the file watcher.
struct Surroundings {
    config_path: PathBuf,
    logging: Logging,
    watcher: Option<notify_debouncer_mini::Debouncer<notify_debouncer_mini::notify::RecommendedWatcher>>,
    changed: mpsc::Sender<()>,
}

impl Surroundings {
    /// Brings the logger and the watcher in line with `[daemon]`.
    fn apply(&mut self, daemon: &DaemonConfig) {
        self.logging.configure(daemon.log_format);
        match (daemon.watch_config, self.watcher.is_some()) {
            (true, false) => self.watcher = watcher::watch(&self.config_path, self.changed.clone()),
            (false, true) => {
                self.watcher = None;
                info!("no longer watching {} (watch_config = false)", self.config_path.display());
            }
            _ => {}
        }
    }
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn serve(config_path: PathBuf, parts: Parts, logging: Logging) -> Result<(), ServeError> {
    // Installed before anything starts: SIGUSR1's and SIGHUP's default action kills the process.
    let mut usr1 = signal(SignalKind::user_defined1())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let (changed, mut file_changed) = mpsc::channel(1);
    let mut around = Surroundings { config_path, logging, watcher: None, changed };
    around.apply(&parts.config().daemon);
    let mut daemon = Daemon::start(parts)?;
    tokio::spawn(systemd::report_status(daemon.handle().token()));
    systemd::ready();
    info!("started; SIGUSR1 refreshes now, SIGHUP reloads, SIGTERM stops");
    loop {
        tokio::select! {
            _ = usr1.recv() => daemon.handle().request_refresh("SIGUSR1"),
            _ = hup.recv() => reload(&mut daemon, &mut around, "SIGHUP").await,
            Some(()) = file_changed.recv() => reload(&mut daemon, &mut around, "a change to the file").await,
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    info!("stopping");
    systemd::stopping();
    daemon.stop().await;
    Ok(())
}

async fn reload(daemon: &mut Daemon, around: &mut Surroundings, why: &str) {
    systemd::reloading();
    let path: &Path = &around.config_path;
    info!("reloading {} after {why}", path.display());
    let parts = config::load(path)
        .map_err(|e| e.to_string())
        .and_then(|c| Parts::build(c).map_err(|e| format!("{}: {e}", path.display())));
    match parts {
        Ok(parts) => {
            around.apply(&parts.config().daemon);
            daemon.reload(parts).await;
        }
        Err(e) => error!("reload refused, the running configuration stays: {e}"),
    }
    systemd::ready();
}
