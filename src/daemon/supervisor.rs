//! Running the daemon under signals and systemd: SIGUSR1 refreshes every token, SIGHUP (or a
//! change to the file, with `watch_config`) reloads, SIGTERM and SIGINT stop.
//!
//! A reload checks the new file exactly as `check` does and swaps everything it configures,
//! `[daemon]` included: the log format switches, the file watcher starts or stops, each token
//! is started, reloaded, left alone or stopped as its tables say. An invalid file is logged and
//! the running one kept.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tracing::{error, info};

use super::{Daemon, Parts, watcher};
use crate::config::{self, Config};
use crate::logging::Logging;
use crate::registry::Registry;
use crate::server::BindError;
use crate::systemd;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot install signal handlers: {0}")]
    Signals(#[from] std::io::Error),
    #[error(transparent)]
    Bind(#[from] BindError),
}

type Watcher = notify_debouncer_mini::Debouncer<notify_debouncer_mini::notify::RecommendedWatcher>;

/// What the supervisor itself runs besides the daemon: the logger and the file watchers.
struct Surroundings {
    config_path: PathBuf,
    logging: Logging,
    watcher: Option<Watcher>,
    changed: mpsc::Sender<()>,
    /// Each oauth2 token's `source.refresh_token_file`, watched while configured: a new seed
    /// recovers a token that needs a login at once, not at its next try (DESIGN §13).
    seeds: BTreeMap<String, (PathBuf, Option<Watcher>)>,
    seed_changed: mpsc::Sender<String>,
}

impl Surroundings {
    /// Brings the logger and the watchers in line with the config.
    fn apply(&mut self, config: &Config) {
        let daemon = &config.daemon;
        let wanted: BTreeMap<&str, &PathBuf> = config
            .tokens
            .iter()
            .filter_map(|t| Some((t.name.as_str(), t.source.refresh_token_file.as_ref()?)))
            .collect();
        self.seeds.retain(|name, (path, _)| wanted.get(name.as_str()) == Some(&&*path));
        for (name, path) in wanted {
            if !self.seeds.contains_key(name) {
                let why = format!(
                    "{}source.refresh_token_file",
                    config.key_prefix(config.token(name).expect("listed above"))
                );
                let watch = crate::logging::token_span(name).in_scope(|| {
                    watcher::watch(path, self.seed_changed.clone(), name.to_owned(), &why, "SIGUSR1 reads it")
                });
                self.seeds.insert(name.to_owned(), (path.clone(), watch));
            }
        }
        self.logging.configure(daemon.log_format);
        match (daemon.watch_config, self.watcher.is_some()) {
            (true, false) => {
                self.watcher = watcher::watch(
                    &self.config_path,
                    self.changed.clone(),
                    (),
                    "watch_config",
                    "SIGHUP still reloads",
                )
            }
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
    let (seed_changed, mut new_seed) = mpsc::channel(16);
    let mut around =
        Surroundings { config_path, logging, watcher: None, changed, seeds: BTreeMap::new(), seed_changed };
    around.apply(parts.config());
    let mut daemon = Daemon::start(parts)?;
    tokio::spawn(super::status_line::report_status(daemon.registry()));
    let registry = daemon.registry();
    tokio::spawn(systemd::watchdog(move || registry.borrow().values().map(|t| t.engine.beats()).collect()));
    systemd::ready();
    info!("started; SIGUSR1 refreshes now, SIGHUP reloads, SIGTERM stops");
    loop {
        tokio::select! {
            _ = usr1.recv() => refresh_all(&daemon.registry()),
            _ = hup.recv() => reload(&mut daemon, &mut around, "SIGHUP").await,
            Some(()) = file_changed.recv() => reload(&mut daemon, &mut around, "a change to the file").await,
            Some(name) = new_seed.recv() => {
                if let Some(token) = daemon.registry().borrow().get(&name).cloned() {
                    tokio::spawn(async move {
                        token.engine.refresh_now("a change to source.refresh_token_file").await
                    });
                }
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    info!("stopping");
    systemd::stopping();
    daemon.stop().await;
    Ok(())
}

/// SIGUSR1: every token asks for a fetch (each coalesced and held to its `min_interval`).
fn refresh_all(registry: &Registry) {
    for token in registry.borrow().values() {
        token.engine.request_refresh("SIGUSR1");
    }
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
            around.apply(parts.config());
            daemon.reload(parts).await;
        }
        Err(e) => error!("reload refused, the running configuration stays: {e}"),
    }
    systemd::ready();
}
