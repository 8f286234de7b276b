//! Sinks: where the current token is published.
//!
//! Each sink runs as its own task, subscribed to the engine's [`TokenState`] channel. A sink
//! that is slow or failing only delays itself: it never blocks the engine (the channel keeps just
//! the latest value) or another sink. A failed write is retried with backoff until it succeeds
//! or a newer version supersedes it.

mod file;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::SinkConfig;
use crate::fsutil::WriteError;
use crate::token::TokenState;

pub use file::FileSink;

/// First retry delay after a failed write; doubles per failure up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
#[error("sink type {0:?} is not supported yet")]
pub struct Unsupported(pub &'static str);

pub enum Sink {
    File(FileSink),
}

/// What applying a state did, for the log.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    Wrote,
    Removed,
    Nothing,
}

impl Sink {
    pub fn new(config: &SinkConfig) -> Result<Sink, Unsupported> {
        match config {
            SinkConfig::File(c) => Ok(Sink::File(FileSink::new(c.clone()))),
            other => Err(Unsupported(other.type_name())),
        }
    }

    /// `file /run/mcp-token-sync/token`: how logs and status name the sink.
    pub fn name(&self) -> String {
        match self {
            Sink::File(s) => format!("file {}", s.path().display()),
        }
    }

    /// Brings the sink in line with `state`. Blocking: run it off the async runtime.
    pub fn apply(&self, state: &TokenState) -> Result<Applied, WriteError> {
        match self {
            Sink::File(s) => s.apply(state),
        }
    }
}

/// Starts one task per sink on `tasks`.
pub fn spawn_all(
    tasks: &mut JoinSet<()>,
    sinks: Vec<Sink>,
    token: &watch::Receiver<TokenState>,
    cancel: &CancellationToken,
) {
    for sink in sinks {
        tasks.spawn(run(Arc::new(sink), token.clone(), cancel.clone()));
    }
}

async fn run(sink: Arc<Sink>, mut token: watch::Receiver<TokenState>, cancel: CancellationToken) {
    let name = sink.name();
    let mut failures: u32 = 0;
    let mut last_error = String::new();
    loop {
        let state = token.borrow_and_update().clone();
        let version = state.version();
        let job = {
            let sink = sink.clone();
            tokio::task::spawn_blocking(move || sink.apply(&state))
        };
        let retry = match job.await.expect("a sink write does not panic") {
            Ok(applied) => {
                if failures > 0 {
                    info!("sink {name} works again after {failures} failed attempts");
                }
                failures = 0;
                last_error.clear();
                match applied {
                    Applied::Wrote => info!("sink {name}: wrote version {version}"),
                    Applied::Removed => info!("sink {name}: removed the expired token"),
                    Applied::Nothing => {}
                }
                None
            }
            Err(error) => {
                failures += 1;
                let message = error.to_string();
                // Once per distinct error, not once per retry.
                if message != last_error {
                    warn!("sink {name} failed to apply version {version}: {message}; retrying with backoff");
                    last_error = message;
                }
                Some(RETRY_FIRST.saturating_mul(1 << (failures - 1).min(16)).min(RETRY_MAX))
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
