//! The daemon as a whole: its parts built from a config ([`Parts`]: every token's, see
//! [`crate::tokens`]), assembled and running ([`Daemon`]: the running tokens, and the
//! daemon-wide sockets that serve them all), reloaded and stopped. [`serve`] runs it under
//! signals and systemd; [`once`] runs the same parts a single time.

mod once;
mod status_line;
mod supervisor;
mod watcher;

use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::api::{self, Scope, Shared};
use crate::config::{Config, SinkConfig, SocketSinkConfig};
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::server::BindError;
use crate::sinks::SinkReport;
use crate::tokens::{RunningTokens, STOP_GRACE, TokenParts};

pub use crate::tokens::BuildError;
pub use once::{OnceError, once};
pub use supervisor::{ServeError, serve};

/// Everything a daemon is made of, built and checked but not yet running. `check` and reload
/// build this too, so they refuse exactly what `run` would.
pub struct Parts {
    config: Arc<Config>,
    tokens: Vec<TokenParts>,
}

impl Parts {
    pub fn build(config: Config) -> Result<Parts, BuildError> {
        let tokens = config
            .tokens
            .iter()
            .map(|token| TokenParts::build(token, &config.key_prefix(token)))
            .collect::<Result<_, _>>()?;
        Ok(Parts { config: Arc::new(config), tokens })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }
}

/// One daemon-wide socket, running.
struct Socket {
    config: SocketSinkConfig,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

/// A running daemon: its tokens, and the sockets that serve them all.
pub struct Daemon {
    tokens: RunningTokens,
    sockets: Vec<Socket>,
    reports: watch::Sender<Vec<watch::Receiver<SinkReport>>>,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
}

impl Daemon {
    /// Starts every token, then binds the daemon-wide sockets: when they listen, every token is
    /// there to be asked for.
    pub fn start(parts: Parts) -> Result<Daemon, BindError> {
        let Parts { config, tokens } = parts;
        let metrics = Arc::new(Metrics::new());
        let tokens = RunningTokens::start(tokens, &metrics)?;
        let mut daemon = Daemon {
            tokens,
            sockets: Vec::new(),
            reports: watch::channel(Vec::new()).0,
            metrics,
            cancel: CancellationToken::new(),
        };
        for sink in &config.sinks {
            if let SinkConfig::Socket(socket) = sink
                && let Err(e) = daemon.listen(socket)
            {
                daemon.cancel.cancel();
                return Err(e);
            }
        }
        daemon.publish_reports();
        Ok(daemon)
    }

    /// The engine of a daemon's one token (a config with a top-level `[source]`).
    pub fn handle(&self) -> crate::engine::EngineHandle {
        let tokens = self.registry().borrow().clone();
        let only = tokens.values().next().filter(|_| tokens.len() == 1).expect("a daemon of one token");
        only.engine.clone()
    }

    /// Every token, by name: what signals and systemd's status use.
    pub fn registry(&self) -> Registry {
        self.tokens.registry()
    }

    fn listen(&mut self, config: &SocketSinkConfig) -> Result<(), BindError> {
        let shared = Arc::new(Shared {
            scope: Scope::All,
            tokens: self.tokens.registry(),
            sinks: self.reports.subscribe(),
            metrics: self.metrics.clone(),
        });
        let server = api::server(config, shared)?;
        let cancel = self.cancel.child_token();
        let task = tokio::spawn(server.serve(cancel.clone()));
        self.sockets.push(Socket { config: config.clone(), cancel, task });
        Ok(())
    }

    fn publish_reports(&self) {
        let reports = self
            .sockets
            .iter()
            .map(|s| watch::channel(SinkReport::new("socket", s.config.path.display().to_string())).1);
        self.reports.send_replace(reports.collect());
    }

    /// Applies a reloaded configuration: each token as its diff says (`RunningTokens::reload`),
    /// and daemon-wide sockets that are gone or changed stop, new ones start.
    pub async fn reload(&mut self, parts: Parts) {
        let Parts { config, tokens } = parts;
        let wanted: Vec<&SocketSinkConfig> = config
            .sinks
            .iter()
            .filter_map(|s| match s {
                SinkConfig::Socket(socket) => Some(socket),
                _ => None,
            })
            .collect();
        let (kept, gone): (Vec<Socket>, Vec<Socket>) =
            std::mem::take(&mut self.sockets).into_iter().partition(|s| wanted.contains(&&s.config));
        for socket in gone {
            socket.cancel.cancel();
            let _ = tokio::time::timeout(STOP_GRACE, socket.task).await;
            info!("socket {} stopped (removed or changed)", socket.config.path.display());
        }
        self.sockets = kept;
        self.tokens.reload(tokens).await;
        for socket in wanted {
            if self.sockets.iter().any(|s| &s.config == socket) {
                continue;
            }
            match self.listen(socket) {
                Ok(()) => info!("socket {} started", socket.path.display()),
                Err(e) => error!("reload: {e}; that socket is not running"),
            }
        }
        self.publish_reports();
    }

    /// Stops every token and socket, waiting at most `STOP_GRACE`.
    pub async fn stop(self) {
        self.cancel.cancel();
        let sockets = futures_util::future::join_all(self.sockets.into_iter().map(|s| s.task));
        let _ = tokio::join!(self.tokens.stop(), tokio::time::timeout(STOP_GRACE, sockets));
    }
}
