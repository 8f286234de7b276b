//! `mcp-token-sync once`: for every token (or the one named), one fetch through the engine's own
//! publish step, then every sink but sockets and proxies written once. Versions continue from
//! the state file, which records the result, so a `run` afterwards (or a client comparing
//! versions) sees the sequence go on.

use std::sync::Arc;
use std::time::SystemTime;

use tracing::{Instrument, error, info};

use super::Parts;
use crate::config::{SinkConfig, TokenConfig};
use crate::engine::{Engine, EngineHandle, RefreshError};
use crate::metrics::Metrics;
use crate::sinks::Sink;
use crate::source::SubjectFeed;
use crate::state::StateFile;
use crate::tokens::{Built, TokenParts};

#[derive(Debug, thiserror::Error)]
pub enum OnceError {
    #[error("no token named {0:?} in the config (it has: {1})")]
    Unknown(String, String),
    /// Each failed token, named.
    #[error("{}", .0.join("; "))]
    Failed(Vec<String>),
}

/// Why one token's run failed.
#[derive(Debug, thiserror::Error)]
enum TokenFailure {
    #[error("fetch failed: {0}")]
    Fetch(Arc<RefreshError>),
    #[error("{failed} of {total} sinks failed (see above)")]
    Sinks { failed: usize, total: usize },
}

/// Fetches and writes every token, or only `only`: all of them, each on its own, one's failure
/// not stopping another's.
pub async fn once(parts: Parts, only: Option<&str>) -> Result<(), OnceError> {
    let Parts { config, tokens } = parts;
    if let Some(name) = only
        && config.token(name).is_none()
    {
        let names: Vec<&str> = config.tokens.iter().map(|t| t.name.as_str()).collect();
        return Err(OnceError::Unknown(name.to_owned(), names.join(", ")));
    }
    let metrics = Arc::new(Metrics::new());
    let chosen = tokens.into_iter().filter(|t| only.is_none_or(|name| t.config.name == name));
    let mut started: Vec<Started> = chosen.map(|token| start(token, &metrics)).collect();
    // A token exchanged from another (DESIGN §16) gets that one's result of this run, or, when
    // it is not run, what its state file holds.
    let feeds: Vec<SubjectFeed> = started.iter_mut().filter_map(|s| s.feed.take()).collect();
    for feed in feeds {
        match started.iter().find(|s| s.config.name == feed.name) {
            Some(subject) => {
                let mut states = subject.handle.token();
                tokio::spawn(async move {
                    loop {
                        feed.feed.send_replace(states.borrow_and_update().clone());
                        if states.changed().await.is_err() {
                            break;
                        }
                    }
                });
            }
            None => {
                let subject =
                    config.token(&feed.name).expect("the config checks subject_token names a token");
                feed.feed.send_replace(crate::state::StateFile::new(subject).restore(SystemTime::now()));
            }
        }
    }
    let runs = started.into_iter().map(|token| {
        let name = token.config.name.clone();
        let span = crate::logging::token_span(&name);
        async move { one(token).await.map_err(|e| format!("token {name}: {e}")) }.instrument(span)
    });
    let failed: Vec<String> =
        futures_util::future::join_all(runs).await.into_iter().filter_map(Result::err).collect();
    if failed.is_empty() { Ok(()) } else { Err(OnceError::Failed(failed)) }
}

/// A token's engine, made but not yet fetching.
struct Started {
    config: Arc<TokenConfig>,
    engine: Engine,
    handle: EngineHandle,
    feed: Option<SubjectFeed>,
    state_file: StateFile,
    sinks: Vec<(SinkConfig, Built)>,
}

fn start(token: TokenParts, metrics: &Arc<Metrics>) -> Started {
    let state_file = token.state_file();
    let TokenParts { config, mut source, sinks } = token;
    let feed = source.take_feed();
    let restored =
        crate::logging::token_span(&config.name).in_scope(|| state_file.restore(SystemTime::now()));
    let token_metrics = Arc::new(metrics.token(&config.name));
    let (engine, handle) = Engine::new(config.clone(), source, restored, token_metrics);
    Started { config, engine, handle, feed, state_file, sinks }
}

async fn one(token: Started) -> Result<(), TokenFailure> {
    let Started { engine, handle, state_file, sinks, .. } = token;
    engine.fetch_once().await.map_err(TokenFailure::Fetch)?;
    let state = handle.token().borrow().clone();
    let sinks: Vec<Sink> = sinks
        .into_iter()
        .filter_map(|(_, built)| match built {
            Built::Sink(sink) => Some(sink),
            Built::Socket | Built::Proxy(_) => None,
        })
        .chain([Sink::State(state_file)])
        .collect();
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
        return Err(TokenFailure::Sinks { failed, total });
    }
    Ok(())
}
