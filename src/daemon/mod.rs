//! The daemon as a whole: its parts built from a config ([`Parts`]), assembled and running
//! ([`Daemon`]: the engine and one task per sink, socket and proxy), reloaded and stopped.
//! [`serve`] runs it under signals and systemd; [`once`] runs the same parts a single time.

mod once;
mod supervisor;
mod watcher;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::api::{self, Shared};
use crate::config::{Config, SinkConfig};
use crate::engine::{Engine, EngineHandle};
use crate::metrics::Metrics;
use crate::proxy::{self, Upstream};
use crate::server::BindError;
use crate::sinks::{self, Sink, SinkReport, Unsupported};
use crate::source::{SetupError, Source};
use crate::state::StateFile;

pub use once::{OnceError, once};
pub use supervisor::{ServeError, serve};

/// How long stopping waits for tasks to finish (DESIGN §9 allows 2 s in all).
const STOP_GRACE: Duration = Duration::from_secs(1);

/// Problems found while building the parts: configuration errors the schema cannot see.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Source(#[from] SetupError),
    #[error("sink[{index}]: {error}")]
    Sink { index: usize, error: Unsupported },
    #[error("sink[{index}]: {error}")]
    Proxy { index: usize, error: proxy::SetupError },
}

/// A sink as built from its config, ready to start.
enum Built {
    Sink(Sink),
    /// Served by the socket API.
    Socket,
    Proxy(Upstream),
}

/// Everything a daemon is made of, built and checked but not yet running. `check` and reload
/// build this too, so they refuse exactly what `run` would.
pub struct Parts {
    config: Arc<Config>,
    source: Source,
    /// In config order.
    sinks: Vec<(SinkConfig, Built)>,
}

impl Parts {
    pub fn build(config: Config) -> Result<Parts, BuildError> {
        let source = Source::new(&config.source, config.validate.probe.as_ref(), &config.daemon.state_dir)?;
        let mut sinks = Vec::new();
        for (index, sink) in config.sinks.iter().enumerate() {
            let built = match sink {
                SinkConfig::Socket(_) => Built::Socket,
                SinkConfig::Proxy(c) => {
                    Built::Proxy(Upstream::new(c).map_err(|error| BuildError::Proxy { index, error })?)
                }
                other => Built::Sink(Sink::new(other).map_err(|error| BuildError::Sink { index, error })?),
            };
            sinks.push((sink.clone(), built));
        }
        Ok(Parts { config: Arc::new(config), source, sinks })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    fn state_file(&self) -> StateFile {
        StateFile::new(&self.config.daemon.state_dir, &self.config.source)
    }
}

/// What a running task was started from: a configured sink, or the daemon's own state file.
#[derive(PartialEq)]
enum Origin {
    Sink(Box<SinkConfig>),
    State(StateFile),
}

/// One running sink, socket or state file.
struct Running {
    origin: Origin,
    cancel: CancellationToken,
    task: JoinHandle<()>,
    report: watch::Receiver<SinkReport>,
}

impl Running {
    fn name(&self) -> String {
        let report = self.report.borrow();
        format!("{} {}", report.kind, report.target)
    }
}

/// A running daemon: the engine, and one task per sink, socket and the state file.
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
        let state = parts.state_file();
        let Parts { config, source, sinks } = parts;
        let metrics = Arc::new(Metrics::new());
        let (engine, handle) =
            Engine::new(config.clone(), source, state.restore(SystemTime::now()), metrics.clone());
        let (reports, reports_rx) = watch::channel(Vec::new());
        let (config_tx, config_rx) = watch::channel(config);
        let shared = Arc::new(Shared::new(handle.clone(), reports_rx, config_rx, metrics));
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
        for (config, built) in sinks {
            if let Err(e) = daemon.launch(Origin::Sink(Box::new(config)), built) {
                daemon.cancel.cancel();
                return Err(e);
            }
        }
        daemon.launch(Origin::State(state.clone()), Built::Sink(Sink::State(state)))?;
        daemon.publish_reports();
        Ok(daemon)
    }

    pub fn handle(&self) -> &EngineHandle {
        &self.handle
    }

    fn launch(&mut self, origin: Origin, built: Built) -> Result<(), BindError> {
        let cancel = self.cancel.child_token();
        let metrics = self.shared.metrics.clone();
        let config = match &origin {
            Origin::Sink(config) => Some(&**config),
            Origin::State(_) => None,
        };
        let (task, report) = match (built, config) {
            (Built::Sink(sink), _) => sinks::spawn(sink, self.handle.token(), metrics, cancel.clone()),
            (Built::Socket, Some(SinkConfig::Socket(socket))) => {
                let server = api::server(socket, self.shared.clone())?;
                let report = watch::channel(SinkReport::new("socket", server.listener.name())).1;
                (tokio::spawn(server.serve(cancel.clone())), report)
            }
            (Built::Proxy(upstream), Some(SinkConfig::Proxy(config))) => {
                let (server, report) = proxy::server(config, upstream, self.handle.clone(), metrics)?;
                (tokio::spawn(server.serve(cancel.clone())), report)
            }
            _ => unreachable!("Parts::build builds each sink from its own config"),
        };
        self.running.push(Running { origin, cancel, task, report });
        Ok(())
    }

    fn publish_reports(&self) {
        self.reports.send_replace(self.running.iter().map(|r| r.report.clone()).collect());
    }

    /// Applies a reloaded configuration: the engine fetches with it from the next fetch on;
    /// sinks that are gone stop, new or changed ones start (and write the current token at once),
    /// unchanged ones carry on untouched. A state file that moves (a new `state_dir`) or now
    /// belongs to another source is written anew and the old one removed.
    pub async fn reload(&mut self, parts: Parts) {
        let state = parts.state_file();
        let Parts { config, source, sinks } = parts;
        let (from, to) = (self.config.borrow().daemon.state_dir.clone(), config.daemon.state_dir.clone());
        if from != to {
            // Before the engine can fetch with the new source from the new place.
            relocate_oauth2(&from, &to, config.source.timeout).await;
        }
        self.handle.reconfigure(config.clone(), source).await;
        let mut wanted: Vec<(Origin, Built)> =
            sinks.into_iter().map(|(config, built)| (Origin::Sink(Box::new(config)), built)).collect();
        wanted.push((Origin::State(state.clone()), Built::Sink(Sink::State(state))));

        let mut old: Vec<Option<Running>> = std::mem::take(&mut self.running).into_iter().map(Some).collect();
        let mut to_launch = Vec::new();
        for (origin, built) in wanted {
            match old.iter_mut().find(|r| r.as_ref().is_some_and(|r| r.origin == origin)) {
                Some(slot) => self.running.push(slot.take().expect("found above")),
                None => to_launch.push((origin, built)),
            }
        }
        // Stopped before the new ones start, so a socket path is free again when it is re-bound.
        let mut moved_state = None;
        for running in old.into_iter().flatten() {
            let name = running.name();
            running.cancel.cancel();
            let _ = tokio::time::timeout(STOP_GRACE, running.task).await;
            self.shared.metrics.sink_stopped(&name);
            match running.origin {
                Origin::State(old) => moved_state = Some(old),
                Origin::Sink(_) => info!("sink {name} stopped (removed or changed)"),
            }
        }
        for (origin, built) in to_launch {
            if let (Origin::State(new), Some(old)) = (&origin, &moved_state) {
                self.move_state(old, new).await;
            }
            let is_sink = matches!(origin, Origin::Sink(_));
            match self.launch(origin, built) {
                // A changed sink was stopped above: say it runs again, with what it is now.
                Ok(()) if is_sink => {
                    info!("sink {} started", self.running.last().expect("just launched").name())
                }
                Ok(()) => {}
                Err(e) => error!("reload: {e}; that sink is not running"),
            }
        }
        self.config.send_replace(config);
        self.publish_reports();
    }

    /// Writes the held state to the new state file and, once that worked, removes the old one.
    async fn move_state(&self, old: &StateFile, new: &StateFile) {
        let (old, new, state) = (old.clone(), new.clone(), self.handle.token().borrow().clone());
        let moved = tokio::task::spawn_blocking(move || {
            new.save(&state)?;
            if old.path != new.path {
                old.remove()?;
                info!("state file moved from {} to {}", old.path.display(), new.path.display());
            }
            Ok::<_, crate::fsutil::WriteError>(())
        });
        match moved.await.expect("saving the state file does not panic") {
            Ok(()) => {}
            Err(e) => warn!("reload: the state file was not moved, the old one stays: {e}"),
        }
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

/// An oauth2 source's refresh token moves with a new `state_dir` (DESIGN §13): left behind, the
/// new place would seed again from a refresh_token_file spent long ago, or need a new login.
async fn relocate_oauth2(from: &std::path::Path, to: &std::path::Path, wait: Duration) {
    if !from.join("oauth2.json").exists() {
        return;
    }
    match crate::source::oauth2::store::Store::new(from).relocate(to, wait).await {
        Ok(true) => info!("oauth2 store moved from {} to {}", from.display(), to.display()),
        Ok(false) => {}
        Err(e) => warn!("reload: the oauth2 store was not moved: {e}"),
    }
}
