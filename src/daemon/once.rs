//! `mcp-token-sync once`: one fetch through the engine's own publish step, then every sink but
//! sockets written once. The version continues from the state file, which records the result,
//! so a `run` afterwards (or a client comparing versions) sees the sequence go on.

use std::sync::Arc;
use std::time::SystemTime;

use tracing::{error, info};

use super::{Built, Parts};
use crate::engine::{Engine, RefreshError};
use crate::metrics::Metrics;
use crate::sinks::Sink;

#[derive(Debug, thiserror::Error)]
pub enum OnceError {
    #[error("fetch failed: {0}")]
    Fetch(Arc<RefreshError>),
    #[error("{failed} of {total} sinks failed (see above)")]
    Sinks { failed: usize, total: usize },
}

pub async fn once(parts: Parts) -> Result<(), OnceError> {
    let state_file = parts.state_file();
    let Parts { config, source, sinks } = parts;
    let restored = state_file.restore(SystemTime::now());
    let (engine, handle) = Engine::new(config, source, restored, Arc::new(Metrics::new()));
    engine.fetch_once().await.map_err(OnceError::Fetch)?;
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
        return Err(OnceError::Sinks { failed, total });
    }
    Ok(())
}
