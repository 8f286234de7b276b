//! Assembling the daemon from its parts, running it under signals, and stopping it cleanly;
//! also `once`, which runs the same parts a single time.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::api::{self, BindError, Listener, Shared};
use crate::clock;
use crate::config::{Config, RefreshConfig, SinkConfig, SocketSinkConfig};
use crate::engine::{Engine, EngineHandle, RefreshError};
use crate::sinks::SinkReport;
use crate::sinks::{self, Sink, Unsupported};
use crate::source::SetupError;
use crate::token::{CurrentToken, TokenState};

/// How long stopping waits for tasks to finish (DESIGN §9 allows 2 s in all).
const STOP_GRACE: Duration = Duration::from_secs(1);

/// Problems found while building the parts: configuration errors the schema cannot see.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Source(#[from] SetupError),
    #[error("sink[{index}]: {error}")]
    Sink { index: usize, error: Unsupported },
    #[error("refresh.cron is not supported yet")]
    Cron,
}

/// Everything a daemon is made of, built and checked but not yet running. `check` builds this
/// too, so it refuses exactly what `run` would.
pub struct Parts {
    engine: Engine,
    handle: EngineHandle,
    sinks: Vec<Sink>,
    sockets: Vec<SocketSinkConfig>,
    refresh: RefreshConfig,
}

impl Parts {
    pub fn build(config: Config) -> Result<Parts, BuildError> {
        if !config.refresh.cron.is_empty() {
            return Err(BuildError::Cron);
        }
        let mut sinks = Vec::new();
        let mut sockets = Vec::new();
        for (index, sink) in config.sinks.iter().enumerate() {
            match sink {
                SinkConfig::Socket(socket) => sockets.push(socket.clone()),
                other => sinks.push(Sink::new(other).map_err(|error| BuildError::Sink { index, error })?),
            }
        }
        let refresh = config.refresh.clone();
        let (engine, handle) = Engine::new(Arc::new(config))?;
        Ok(Parts { engine, handle, sinks, sockets, refresh })
    }
}

/// A running daemon: the engine, one task per sink, one per socket.
pub struct Daemon {
    handle: EngineHandle,
    cancel: CancellationToken,
    tasks: JoinSet<()>,
}

impl Daemon {
    /// Binds every socket, then starts everything. Sockets listen before the first fetch, so
    /// clients can connect (and wait on `/v1/watch`) while the backend is still slow or down.
    pub fn start(parts: Parts) -> Result<Daemon, BindError> {
        let listeners = parts.sockets.into_iter().map(Listener::bind).collect::<Result<Vec<_>, _>>()?;
        let cancel = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let mut reports = sinks::spawn_all(&mut tasks, parts.sinks, &parts.handle.token(), &cancel);
        reports.extend(listeners.iter().map(|l| listening_report(l.path())));
        let shared = Arc::new(Shared::new(parts.handle.clone(), reports, parts.refresh));
        for listener in listeners {
            tasks.spawn(api::serve(listener, shared.clone(), cancel.clone()));
        }
        tasks.spawn(parts.engine.run(cancel.clone()));
        Ok(Daemon { handle: parts.handle, cancel, tasks })
    }

    pub fn handle(&self) -> &EngineHandle {
        &self.handle
    }

    /// Stops every task, waiting at most [`STOP_GRACE`]; a sink stuck in a blocking write is
    /// abandoned rather than allowed to hold up the exit.
    pub async fn stop(mut self) {
        self.cancel.cancel();
        let all_done = async { while self.tasks.join_next().await.is_some() {} };
        let _ = tokio::time::timeout(STOP_GRACE, all_done).await;
    }
}

/// A socket's line in status: it is healthy while it listens, which it does for its whole life.
fn listening_report(path: &std::path::Path) -> tokio::sync::watch::Receiver<SinkReport> {
    let report = SinkReport {
        kind: "socket",
        target: path.display().to_string(),
        ok: true,
        last_written_at: None,
        error: None,
        writes_ok: 0,
        writes_failed: 0,
    };
    tokio::sync::watch::channel(report).1
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot install signal handlers: {0}")]
    Signals(#[from] std::io::Error),
    #[error(transparent)]
    Bind(#[from] BindError),
}

/// Runs the daemon until SIGTERM or SIGINT; SIGUSR1 forces a refresh.
pub async fn serve(parts: Parts) -> Result<(), ServeError> {
    // Installed before anything starts: SIGUSR1's default action would kill the process.
    let mut usr1 = signal(SignalKind::user_defined1())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let daemon = Daemon::start(parts)?;
    info!("started; SIGUSR1 refreshes now, SIGTERM stops");
    loop {
        tokio::select! {
            _ = usr1.recv() => daemon.handle().request_refresh("SIGUSR1"),
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    info!("stopping");
    daemon.stop().await;
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum OnceError {
    #[error("fetch failed: {0}")]
    Fetch(#[from] RefreshError),
    #[error("{failed} of {total} sinks failed (see above)")]
    Sinks { failed: usize, total: usize },
}

/// One fetch → validate → write every sink, then stop (`mcp-token-sync once`).
pub async fn once(parts: Parts) -> Result<(), OnceError> {
    let candidate = parts.engine.fetch_once().await?;
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
    let mut failed = 0;
    let total = parts.sinks.len();
    for sink in parts.sinks {
        let sink = Arc::new(sink);
        match sink.clone().apply(state.clone()).await {
            Ok(_) => info!("sink {}: written", sink.name()),
            Err(e) => {
                tracing::error!("sink {}: {e}", sink.name());
                failed += 1;
            }
        }
    }
    if failed > 0 {
        return Err(OnceError::Sinks { failed, total });
    }
    Ok(())
}
