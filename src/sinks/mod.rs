//! Sinks: where the current token is published.
//!
//! Each sink runs as its own task, subscribed to the engine's [`TokenState`] channel. A sink
//! that is slow or failing only delays itself: it never blocks the engine (the channel keeps just
//! the latest value) or another sink. A failed write is retried with backoff until it succeeds
//! or a newer version supersedes it.

mod env;
mod exec;
mod file;
mod keyutils;
#[cfg(feature = "secret-service")]
mod secret_service;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::backoff::Backoff;
use crate::config::{KeyringBackend, SinkConfig};
use crate::fsutil::WriteError;
use crate::metrics::TokenMetrics;
use crate::state::StateFile;
use crate::token::TokenState;

use exec::ExecSink;
use file::FileSink;
use keyutils::KeyutilsSink;

/// Retries of a failed write.
const RETRY: Backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));

#[derive(Debug, thiserror::Error)]
#[error("sink type {0} is not supported {1}")]
pub struct Unsupported(pub String, pub &'static str);

/// Why a sink could not apply a state. Messages never contain the token.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SinkError {
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error(transparent)]
    Env(#[from] env::Unsafe),
    #[error("{0}")]
    Keyring(String),
    #[error(transparent)]
    Exec(#[from] exec::ExecError),
}

pub(crate) enum Sink {
    /// `file` and `env_file`.
    File(FileSink),
    Keyutils(KeyutilsSink),
    #[cfg(feature = "secret-service")]
    SecretService(secret_service::SecretServiceSink),
    Exec(ExecSink),
    /// The daemon's own state file, written like any sink.
    State(StateFile),
}

/// How a sink is doing, published on its own `watch` channel for status, health and metrics.
#[derive(Debug, Clone)]
pub struct SinkReport {
    pub kind: &'static str,
    /// The path, or another name for sinks without one.
    pub target: String,
    /// The last attempt succeeded (or none was needed yet).
    pub ok: bool,
    pub last_written_at: Option<SystemTime>,
    pub error: Option<String>,
    /// Where a proxy forwards to.
    pub upstream: Option<String>,
}

impl SinkReport {
    /// A sink that has not written yet: healthy until a write fails.
    pub fn new(kind: &'static str, target: String) -> SinkReport {
        SinkReport { kind, target, ok: true, last_written_at: None, error: None, upstream: None }
    }
}

/// What applying a state did, for the log.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Applied {
    Wrote,
    Removed,
    /// An exec sink's command ran and succeeded.
    Ran,
    Nothing,
}

impl Sink {
    pub(crate) fn new(config: &SinkConfig) -> Result<Sink, Unsupported> {
        Ok(match config {
            SinkConfig::File(c) => Sink::File(FileSink::file(c)),
            SinkConfig::EnvFile(c) => Sink::File(FileSink::env_file(c)),
            SinkConfig::Keyring(c) => match c.backend {
                KeyringBackend::Keyutils => {
                    Sink::Keyutils(KeyutilsSink { description: format!("{}:{}", c.service, c.account) })
                }
                #[cfg(feature = "secret-service")]
                KeyringBackend::SecretService => Sink::SecretService(secret_service::SecretServiceSink {
                    service: c.service.clone(),
                    account: c.account.clone(),
                }),
                #[cfg(not(feature = "secret-service"))]
                KeyringBackend::SecretService => {
                    return Err(Unsupported(
                        "keyring (secret-service)".into(),
                        "by this build (feature secret-service)",
                    ));
                }
            },
            SinkConfig::Exec(c) => Sink::Exec(ExecSink::new(c)),
            SinkConfig::Socket(_) | SinkConfig::Proxy(_) => {
                unreachable!("sockets and proxies are served, not built as sinks")
            }
        })
    }

    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Sink::File(s) => s.kind(),
            Sink::Keyutils(_) => "keyring",
            #[cfg(feature = "secret-service")]
            Sink::SecretService(_) => "keyring",
            Sink::Exec(_) => "exec",
            Sink::State(_) => "state",
        }
    }

    /// The path it writes, or another name where it has none.
    pub(crate) fn target(&self) -> String {
        match self {
            Sink::File(s) => s.target.path.display().to_string(),
            Sink::Keyutils(s) => format!("keyutils {}", s.description),
            #[cfg(feature = "secret-service")]
            Sink::SecretService(s) => format!("secret-service {}/{}", s.service, s.account),
            Sink::Exec(s) => s.program().to_owned(),
            Sink::State(s) => s.path.display().to_string(),
        }
    }

    /// `file /run/mcp-token-sync/token`: how logs name the sink.
    pub(crate) fn name(&self) -> String {
        format!("{} {}", self.kind(), self.target())
    }

    /// Brings the sink in line with `state`; blocking work runs off the async runtime.
    pub(crate) async fn apply(self: Arc<Self>, state: TokenState) -> Result<Applied, SinkError> {
        match &*self {
            Sink::File(_) | Sink::Keyutils(_) | Sink::State(_) => {
                let sink = self.clone();
                tokio::task::spawn_blocking(move || match &*sink {
                    Sink::File(s) => s.apply(&state),
                    Sink::Keyutils(s) => s.apply(&state),
                    Sink::State(s) => match state {
                        TokenState::Empty => Ok(Applied::Nothing),
                        _ => s.save(&state).map(|()| Applied::Wrote).map_err(SinkError::from),
                    },
                    _ => unreachable!("matched above"),
                })
                .await
                .expect("a sink write does not panic")
            }
            #[cfg(feature = "secret-service")]
            Sink::SecretService(s) => s.apply(&state).await,
            Sink::Exec(s) => s.apply(&state).await,
        }
    }
}

/// Starts the sink's task; returns it and the sink's report channel.
pub(crate) fn spawn(
    sink: Sink,
    token: watch::Receiver<TokenState>,
    metrics: Arc<TokenMetrics>,
    cancel: CancellationToken,
) -> (tokio::task::JoinHandle<()>, watch::Receiver<SinkReport>) {
    let (report, receiver) = watch::channel(SinkReport::new(sink.kind(), sink.target()));
    metrics.sink_started(&sink.name());
    // In the span it is started in: the token's, so its lines name the token.
    let task = tokio::spawn(tracing::Instrument::in_current_span(run(
        Arc::new(sink),
        token,
        report,
        metrics,
        cancel,
    )));
    (task, receiver)
}

async fn run(
    sink: Arc<Sink>,
    mut token: watch::Receiver<TokenState>,
    report: watch::Sender<SinkReport>,
    metrics: Arc<TokenMetrics>,
    cancel: CancellationToken,
) {
    let name = sink.name();
    let mut failures: u32 = 0;
    let mut last_error = String::new();
    loop {
        let state = token.borrow_and_update().clone();
        let version = state.version();
        let retry = match sink.clone().apply(state).await {
            Ok(applied) => {
                if failures > 0 {
                    info!("sink {name} works again after {failures} failed attempts");
                }
                failures = 0;
                last_error.clear();
                report.send_modify(|r| {
                    r.ok = true;
                    r.error = None;
                    if applied != Applied::Nothing {
                        r.last_written_at = Some(SystemTime::now());
                    }
                });
                if applied != Applied::Nothing {
                    metrics.sink_write(&name, true);
                }
                match applied {
                    Applied::Wrote => info!("sink {name}: wrote version {version}"),
                    Applied::Ran => info!("sink {name}: ran for version {version}, exit 0"),
                    Applied::Removed => info!("sink {name}: removed the expired token"),
                    Applied::Nothing => debug!("sink {name}: nothing to do for version {version}"),
                }
                None
            }
            Err(error) => {
                failures += 1;
                let message = error.to_string();
                report.send_modify(|r| {
                    r.ok = false;
                    r.error = Some(message.clone());
                });
                metrics.sink_write(&name, false);
                // Once per distinct error, not once per retry.
                if message != last_error {
                    warn!("sink {name} failed to apply version {version}: {message}; retrying with backoff");
                    last_error = message;
                }
                Some(RETRY.after(failures))
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            changed = token.changed() => if changed.is_err() { return },
            _ = sleep_or_forever(retry) => {}
        }
    }
}

async fn sleep_or_forever(delay: Option<Duration>) {
    match delay {
        Some(delay) => tokio::time::sleep(delay).await,
        None => std::future::pending().await,
    }
}
