//! One token built from its tables and checked, not yet running: its source and every sink, so
//! `check`, `run`, `once` and reload refuse exactly the same things.

use std::sync::Arc;

use crate::config::{SinkConfig, TokenConfig};
use crate::proxy::{self, Upstream};
use crate::sinks::{Sink, Unsupported};
use crate::source::{SetupError, Source};
use crate::state::StateFile;

/// Problems found while building a token: configuration errors the schema cannot see.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The error names its key (`source.ca_file`); `prefix` puts it under its token.
    #[error("{prefix}{error}")]
    Source { prefix: String, error: SetupError },
    #[error("{key}: {error}")]
    Sink { key: String, error: Unsupported },
    #[error("{key}: {error}")]
    Proxy { key: String, error: proxy::SetupError },
}

/// A sink as built from its config, ready to start.
pub(crate) enum Built {
    Sink(Sink),
    /// Served by the socket API.
    Socket,
    Proxy(Upstream),
}

/// A token's parts: its tables, its source, and its sinks in config order.
pub struct TokenParts {
    pub(crate) config: Arc<TokenConfig>,
    pub(crate) source: Source,
    pub(crate) sinks: Vec<(SinkConfig, Built)>,
}

impl TokenParts {
    /// `prefix` is where the token's keys are in the file (`tokens.NAME.`, or nothing), for
    /// the errors.
    pub fn build(config: &TokenConfig, prefix: &str) -> Result<TokenParts, BuildError> {
        let source =
            Source::new(config).map_err(|error| BuildError::Source { prefix: prefix.to_owned(), error })?;
        let mut sinks = Vec::new();
        for (index, sink) in config.sinks.iter().enumerate() {
            let key = format!("{prefix}sink[{index}]");
            let built = match sink {
                SinkConfig::Socket(_) => Built::Socket,
                SinkConfig::Proxy(c) => {
                    Built::Proxy(Upstream::new(c).map_err(|error| BuildError::Proxy { key, error })?)
                }
                other => Built::Sink(Sink::new(other).map_err(|error| BuildError::Sink { key, error })?),
            };
            sinks.push((sink.clone(), built));
        }
        Ok(TokenParts { config: Arc::new(config.clone()), source, sinks })
    }

    pub(crate) fn state_file(&self) -> StateFile {
        StateFile::new(&self.config)
    }
}
