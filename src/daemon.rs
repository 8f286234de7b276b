//! Assembling the daemon from its parts, running it under signals and systemd, reloading it,
//! and stopping it cleanly; also `once`, which runs the same parts a single time.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::api::{self, BindError, Listener, Shared};
use crate::clock;
use crate::config::{self, Config, SinkConfig};
use crate::engine::{self, Engine, EngineHandle, RefreshError};
use crate::sinks::{self, Sink, SinkReport, Unsupported};
use crate::source::{SetupError, Source};
use crate::state::StateFile;
use crate::systemd;
use crate::token::{CurrentToken, TokenState};

/// How long stopping waits for tasks to finish (DESIGN §9 allows 2 s in all).
const STOP_GRACE: Duration = Duration::from_secs(1);
/// Editors save in several steps; one reload after the last of them.
const CONFIG_DEBOUNCE: Duration = Duration::from_millis(300);

/// Problems found while building the parts: configuration errors the schema cannot see.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Source(#[from] SetupError),
    #[error("sink[{index}]: {error}")]
    Sink { index: usize, error: Unsupported },
}

/// Everything a daemon is made of, built and checked but not yet running. `check` and reload
/// build this too, so they refuse exactly what `run` would.
pub struct Parts {
    config: Arc<Config>,
    source: Source,
    /// In config order; `None` for sockets, which the API serves.
    sinks: Vec<(SinkConfig, Option<Sink>)>,
}

impl Parts {
    pub fn build(config: Config) -> Result<Parts, BuildError> {
        let source = Source::new(&config.source)?;
        let mut sinks = Vec::new();
        for (index, sink) in config.sinks.iter().enumerate() {
            let built = match sink {
                SinkConfig::Socket(_) => None,
                other => Some(Sink::new(other).map_err(|error| BuildError::Sink { index, error })?),
            };
            sinks.push((sink.clone(), built));
        }
        Ok(Parts { config: Arc::new(config), source, sinks })
    }
}

/// One running sink or socket.
struct Running {
    /// What it was started from; `None` for the state file, which belongs to the daemon itself.
    config: Option<SinkConfig>,
    cancel: CancellationToken,
    task: JoinHandle<()>,
    report: watch::Receiver<SinkReport>,
}

/// A running daemon: the engine, and one task per sink and per socket.
pub struct Daemon {
    handle: EngineHandle,
    cancel: CancellationToken,
    engine: JoinHandle<()>,
    running: Vec<Running>,
    shared: Arc<Shared>,
    reports: watch::Sender<Vec<watch::Receiver<SinkReport>>>,
    config: watch::Sender<Arc<Config>>,
}

impl Daemon {
    /// Restores the state file, binds every socket, then starts everything. Sockets listen and
    /// sinks hold a restored token before the first fetch, so clients are served while the
    /// backend is still slow or down.
    pub fn start(parts: Parts) -> Result<Daemon, BindError> {
        let Parts { config, source, sinks } = parts;
        let state = StateFile::new(&config.daemon.state_dir, &config.source);
        let (engine, handle) = Engine::new(config.clone(), source, state.restore(SystemTime::now()));
        let (reports, reports_rx) = watch::channel(Vec::new());
        let (config_tx, config_rx) = watch::channel(config.clone());
        let shared = Arc::new(Shared::new(handle.clone(), reports_rx, config_rx));
        let cancel = CancellationToken::new();
        let mut daemon = Daemon {
            handle,
            engine: tokio::spawn(engine.run(cancel.clone())),
            cancel,
            running: Vec::new(),
            shared,
            reports,
            config: config_tx,
        };
        for (config, sink) in sinks {
            if let Err(e) = daemon.launch(config, sink) {
                daemon.cancel.cancel();
                return Err(e);
            }
        }
        let cancel = daemon.cancel.child_token();
        let (task, report) = sinks::spawn(Sink::State(state), daemon.handle.token(), cancel.clone());
        daemon.running.push(Running { config: None, cancel, task, report });
        daemon.publish_reports();
        Ok(daemon)
    }

    pub fn handle(&self) -> &EngineHandle {
        &self.handle
    }

    fn launch(&mut self, config: SinkConfig, sink: Option<Sink>) -> Result<(), BindError> {
        let cancel = self.cancel.child_token();
        let (task, report) = match (sink, &config) {
            (Some(sink), _) => sinks::spawn(sink, self.handle.token(), cancel.clone()),
            (None, SinkConfig::Socket(socket)) => {
                let listener = Listener::bind(socket.clone())?;
                let report = api::listening_report(listener.path());
                (tokio::spawn(api::serve(listener, self.shared.clone(), cancel.clone())), report)
            }
            (None, _) => unreachable!("Parts::build builds every sink but sockets"),
        };
        self.running.push(Running { config: Some(config), cancel, task, report });
        Ok(())
    }

    fn publish_reports(&self) {
        self.reports.send_replace(self.running.iter().map(|r| r.report.clone()).collect());
    }

    /// Applies a reloaded configuration: the engine fetches with it from the next fetch on;
    /// sinks that are gone stop, new or changed ones start (and write the current token at once),
    /// unchanged ones carry on untouched.
    pub async fn reload(&mut self, parts: Parts) {
        let Parts { config, source, sinks } = parts;
        self.handle.reconfigure(config.clone(), source).await;
        let mut old: Vec<Option<Running>> = std::mem::take(&mut self.running).into_iter().map(Some).collect();
        let mut to_launch = Vec::new();
        for (sink_config, sink) in sinks {
            let same =
                old.iter_mut().find(|r| r.as_ref().is_some_and(|r| r.config.as_ref() == Some(&sink_config)));
            match same {
                Some(slot) => self.running.push(slot.take().expect("found above")),
                None => to_launch.push((sink_config, sink)),
            }
        }
        // Stopped before the new ones start, so a socket path is free again when it is re-bound.
        for running in old.into_iter().flatten() {
            if running.config.is_none() {
                self.running.push(running);
                continue;
            }
            running.cancel.cancel();
            let _ = tokio::time::timeout(STOP_GRACE, running.task).await;
            info!(
                "sink {} {} stopped (no longer configured)",
                running.report.borrow().kind,
                running.report.borrow().target
            );
        }
        for (sink_config, sink) in to_launch {
            if let Err(e) = self.launch(sink_config, sink) {
                error!("reload: {e}; that sink is not running");
            }
        }
        self.config.send_replace(config);
        self.publish_reports();
    }

    /// Stops every task, waiting at most `STOP_GRACE`; a sink stuck in a blocking write is
    /// abandoned rather than allowed to hold up the exit.
    pub async fn stop(self) {
        self.cancel.cancel();
        let all = async {
            let _ = self.engine.await;
            for running in self.running {
                let _ = running.task.await;
            }
        };
        let _ = tokio::time::timeout(STOP_GRACE, all).await;
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot install signal handlers: {0}")]
    Signals(#[from] std::io::Error),
    #[error(transparent)]
    Bind(#[from] BindError),
}

/// Runs the daemon until SIGTERM or SIGINT. SIGUSR1 refreshes now; SIGHUP, or a change to the
/// config file when `watch_config` is on, reloads `config_path`.
pub async fn serve(config_path: PathBuf, parts: Parts) -> Result<(), ServeError> {
    // Installed before anything starts: SIGUSR1's and SIGHUP's default action kills the process.
    let mut usr1 = signal(SignalKind::user_defined1())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let watch_config = parts.config.daemon.watch_config;
    let mut daemon = Daemon::start(parts)?;
    let (changed_tx, mut changed) = mpsc::channel(1);
    let _watcher = if watch_config { watch_file(&config_path, changed_tx) } else { None };
    tokio::spawn(systemd::report_status(daemon.handle().token()));
    systemd::ready();
    info!("started; SIGUSR1 refreshes now, SIGHUP reloads, SIGTERM stops");
    loop {
        tokio::select! {
            _ = usr1.recv() => daemon.handle().request_refresh("SIGUSR1"),
            _ = hup.recv() => reload(&mut daemon, &config_path, "SIGHUP").await,
            Some(()) = changed.recv() => reload(&mut daemon, &config_path, "a change to the file").await,
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    info!("stopping");
    systemd::stopping();
    daemon.stop().await;
    Ok(())
}

async fn reload(daemon: &mut Daemon, path: &Path, why: &str) {
    systemd::reloading();
    info!("reloading {} after {why}", path.display());
    let parts = config::load(path)
        .map_err(|e| e.to_string())
        .and_then(|c| Parts::build(c).map_err(|e| format!("{}: {e}", path.display())));
    match parts {
        Ok(parts) => daemon.reload(parts).await,
        Err(e) => error!("reload refused, the running configuration stays: {e}"),
    }
    systemd::ready();
}

/// Watches the file's directory, not the file: editors save by renaming a new file over the
/// old one, which a watch on the old inode would miss.
fn watch_file(
    path: &Path,
    changed: mpsc::Sender<()>,
) -> Option<notify_debouncer_mini::Debouncer<notify_debouncer_mini::notify::RecommendedWatcher>> {
    use notify_debouncer_mini::notify::RecursiveMode;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_owned();
    let name = path.file_name()?.to_owned();
    let debouncer = notify_debouncer_mini::new_debouncer(
        CONFIG_DEBOUNCE,
        move |events: notify_debouncer_mini::DebounceEventResult| {
            if let Ok(events) = events
                && events.iter().any(|e| e.path.file_name() == Some(name.as_os_str()))
            {
                let _ = changed.try_send(());
            }
        },
    );
    let mut debouncer = match debouncer {
        Ok(d) => d,
        Err(e) => {
            warn!("cannot watch {} for changes ({e}); SIGHUP still reloads", path.display());
            return None;
        }
    };
    if let Err(e) = debouncer.watcher().watch(&dir, RecursiveMode::NonRecursive) {
        warn!("cannot watch {} for changes ({e}); SIGHUP still reloads", dir.display());
        return None;
    }
    Some(debouncer)
}

#[derive(Debug, thiserror::Error)]
pub enum OnceError {
    #[error("fetch failed: {0}")]
    Fetch(#[from] RefreshError),
    #[error("{failed} of {total} sinks failed (see above)")]
    Sinks { failed: usize, total: usize },
}

/// One fetch → validate → write every sink but sockets, then stop (`mcp-token-sync once`).
pub async fn once(parts: Parts) -> Result<(), OnceError> {
    let candidate = engine::fetch_validated(&parts.source, &parts.config).await?;
    let now = SystemTime::now();
    let current = CurrentToken {
        token: candidate.token,
        agent_name: candidate.agent_name,
        expires_at: candidate.expires_at,
        fetched_at: now,
        version: 1,
    };
    info!("fetched {}, expires in {}", current.describe(), clock::until(now, current.expires_at));
    let state = TokenState::Valid(Arc::new(current));
    let sinks: Vec<Sink> = parts.sinks.into_iter().filter_map(|(_, sink)| sink).collect();
    let total = sinks.len();
    let mut failed = 0;
    for sink in sinks {
        let sink = Arc::new(sink);
        match sink.clone().apply(state.clone()).await {
            Ok(_) => info!("sink {}: written", sink.name()),
            Err(e) => {
                error!("sink {}: {e}", sink.name());
                failed += 1;
            }
        }
    }
    if failed > 0 {
        return Err(OnceError::Sinks { failed, total });
    }
    Ok(())
}
