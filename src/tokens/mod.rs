//! The tokens a daemon serves, running (DESIGN §15). A token is the unit: its engine and every
//! sink that serves it live in one [`Served`], built from its [`TokenParts`]; a reload applies
//! the [`diff`] of the old and new tables by name, so an unchanged token keeps running untouched
//! (same version, same watchers, same proxy connections, no fetch), a changed one is reloaded
//! alone, and added and removed ones start and stop. This module alone writes the
//! [`Registry`]; the API, signals and systemd's status only read it.

mod diff;
mod parts;
mod served;
mod subject;

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::watch;
use tracing::{error, info};

use crate::metrics::Metrics;
use crate::registry::{Registry, Tokens};
use crate::server::BindError;
pub(crate) use parts::Built;
pub use parts::{BuildError, TokenParts};
pub(crate) use served::STOP_GRACE;
use served::Served;

pub struct RunningTokens {
    served: BTreeMap<String, Served>,
    registry: watch::Sender<Tokens>,
    metrics: Arc<Metrics>,
}

impl RunningTokens {
    /// Starts every token; none runs if one cannot bind its sockets.
    pub fn start(parts: Vec<TokenParts>, metrics: &Arc<Metrics>) -> Result<RunningTokens, BindError> {
        let mut running = RunningTokens {
            served: BTreeMap::new(),
            registry: watch::channel(Tokens::default()).0,
            metrics: metrics.clone(),
        };
        for token in parts {
            let name = token.config.name.clone();
            match Served::start(token, metrics, running.registry.subscribe()) {
                Ok(served) => {
                    running.served.insert(name, served);
                }
                Err(e) => {
                    running.served.into_values().for_each(Served::abandon);
                    return Err(e);
                }
            }
        }
        running.publish();
        Ok(running)
    }

    pub fn registry(&self) -> Registry {
        self.registry.subscribe()
    }

    fn publish(&self) {
        let tokens = self.served.iter().map(|(name, served)| (name.clone(), served.handle().clone()));
        self.registry.send_replace(Arc::new(tokens.collect()));
    }

    /// Applies a reloaded config's tokens, all built: removed ones stop first (freeing their
    /// paths and ports), then changed ones reload, then added ones start.
    pub async fn reload(&mut self, parts: Vec<TokenParts>) {
        let old: Vec<_> =
            self.served.values().map(|s| (*s.handle().config.borrow()).as_ref().clone()).collect();
        let new: Vec<_> = parts.iter().map(|p| p.config.as_ref().clone()).collect();
        let diff = diff::diff(&old, &new);
        info!("reload: {}", diff.summary());
        for name in &diff.removed {
            if let Some(served) = self.served.remove(name) {
                served.remove().await;
            }
        }
        let mut parts: BTreeMap<String, TokenParts> =
            parts.into_iter().map(|p| (p.config.name.clone(), p)).collect();
        for name in &diff.changed {
            if let (Some(served), Some(token)) = (self.served.get_mut(name), parts.remove(name)) {
                served.reload(token).await;
            }
        }
        for name in &diff.added {
            let Some(token) = parts.remove(name) else { continue };
            match Served::start(token, &self.metrics, self.registry.subscribe()) {
                Ok(served) => {
                    self.served.insert(name.clone(), served);
                }
                Err(e) => crate::logging::token_span(name)
                    .in_scope(|| error!("reload: {e}; the token is not running")),
            }
        }
        self.publish();
    }

    /// Stops every token, waiting at most [`STOP_GRACE`] in all.
    pub async fn stop(self) {
        let all = futures_util::future::join_all(self.served.into_values().map(Served::stop));
        let _ = tokio::time::timeout(STOP_GRACE, all).await;
    }
}
