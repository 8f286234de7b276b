//! One token and everything that serves it, running: its engine, one task per sink (files,
//! keyrings, hooks, its own sockets and proxies) and its state file. Every task runs in the
//! token's log span, so each line it writes names the token.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, Span, error, info, warn};

use super::parts::{Built, TokenParts};
use super::subject;
use crate::api::{self, Scope, Shared};
use crate::config::{OnExpiry, SinkConfig, TokenConfig};
use crate::engine::Engine;
use crate::metrics::Metrics;
use crate::proxy;
use crate::registry::{Registry, TokenHandle};
use crate::server::BindError;
use crate::sinks::{self, Sink, SinkReport};
use crate::source::SubjectFeed;
use crate::state::StateFile;
use crate::token::TokenState;

/// How long stopping waits for tasks to finish (DESIGN §9 allows 2 s in all).
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(1);

/// What a running task was started from: a configured sink, or the token's state file.
#[derive(PartialEq)]
enum Origin {
    Sink(Box<SinkConfig>),
    State(StateFile),
}

/// One running sink, socket, proxy or state file.
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

/// A running token.
pub(crate) struct Served {
    handle: Arc<TokenHandle>,
    config: watch::Sender<Arc<TokenConfig>>,
    cancel: CancellationToken,
    engine: JoinHandle<()>,
    running: Vec<Running>,
    reports: watch::Sender<Vec<watch::Receiver<SinkReport>>>,
    metrics: Arc<Metrics>,
    span: Span,
    /// Every token, for a source that exchanges another one's (`subject`).
    registry: Registry,
    /// Stops the task that feeds the source its subject token, when it has one.
    follower: Option<CancellationToken>,
}

impl Served {
    /// Restores the state file, binds the token's sockets and proxies, then starts everything:
    /// sockets listen and sinks hold a restored token before the first fetch, so clients are
    /// served while the source is still slow or down.
    pub(crate) fn start(
        parts: TokenParts,
        metrics: &Arc<Metrics>,
        registry: Registry,
    ) -> Result<Served, BindError> {
        let state = parts.state_file();
        let TokenParts { config, mut source, sinks } = parts;
        let feed = source.take_feed();
        let span = crate::logging::token_span(&config.name);
        let token_metrics = Arc::new(metrics.token(&config.name));
        let restored = span.in_scope(|| state.restore(SystemTime::now()));
        let (engine, engine_handle) = Engine::new(config.clone(), source, restored, token_metrics.clone());
        let (reports, reports_rx) = watch::channel(Vec::new());
        let (config_tx, config_rx) = watch::channel(config.clone());
        let handle = Arc::new(TokenHandle {
            name: config.name.clone(),
            engine: engine_handle,
            config: config_rx,
            sinks: reports_rx,
            metrics: token_metrics,
            login: Arc::default(),
        });
        let cancel = CancellationToken::new();
        let mut served = Served {
            handle,
            config: config_tx,
            engine: tokio::spawn(engine.run(cancel.clone()).instrument(span.clone())),
            cancel,
            running: Vec::new(),
            reports,
            metrics: metrics.clone(),
            span,
            registry,
            follower: None,
        };
        served.follow(feed);
        for (config, built) in sinks {
            if let Err(e) = served.launch(Origin::Sink(Box::new(config)), built) {
                served.cancel.cancel();
                return Err(e);
            }
        }
        served.launch(Origin::State(state.clone()), Built::Sink(Sink::State(state)))?;
        served.publish_reports();
        Ok(served)
    }

    pub(crate) fn handle(&self) -> &Arc<TokenHandle> {
        &self.handle
    }

    /// Feeds the source its subject token, when it exchanges another token of this daemon;
    /// a previous source's feeding stops.
    fn follow(&mut self, feed: Option<SubjectFeed>) {
        if let Some(old) = self.follower.take() {
            old.cancel();
        }
        let Some(feed) = feed else { return };
        let cancel = self.cancel.child_token();
        let task = subject::follow(feed, self.registry.clone(), self.handle.engine.clone(), cancel.clone());
        tokio::spawn(task.instrument(self.span.clone()));
        self.follower = Some(cancel);
    }

    fn launch(&mut self, origin: Origin, built: Built) -> Result<(), BindError> {
        let cancel = self.cancel.child_token();
        let token = &self.handle;
        let config = match &origin {
            Origin::Sink(config) => Some(&**config),
            Origin::State(_) => None,
        };
        // Spawned inside the span, each task (and the connections a server spawns) keeps it.
        let _entered = self.span.enter();
        let (task, report) = match (built, config) {
            (Built::Sink(sink), _) => {
                sinks::spawn(sink, token.engine.token(), token.metrics.clone(), cancel.clone())
            }
            (Built::Socket, Some(SinkConfig::Socket(socket))) => {
                // A token's own socket serves that token alone: its registry holds it alone.
                let only = Arc::new(BTreeMap::from([(token.name.clone(), token.clone())]));
                let shared = Arc::new(Shared {
                    scope: Scope::Token(token.name.clone()),
                    tokens: watch::channel(only).1,
                    sinks: watch::channel(Vec::new()).1,
                    metrics: self.metrics.clone(),
                });
                let server = api::server(socket, shared)?;
                let report = watch::channel(SinkReport::new("socket", server.listener.name())).1;
                (tokio::spawn(server.serve(cancel.clone()).in_current_span()), report)
            }
            (Built::Proxy(upstream), Some(SinkConfig::Proxy(config))) => {
                let (server, report) =
                    proxy::server(config, upstream, token.engine.clone(), token.metrics.clone())?;
                (tokio::spawn(server.serve(cancel.clone()).in_current_span()), report)
            }
            _ => unreachable!("TokenParts::build builds each sink from its own config"),
        };
        self.running.push(Running { origin, cancel, task, report });
        Ok(())
    }

    fn publish_reports(&self) {
        self.reports.send_replace(self.running.iter().map(|r| r.report.clone()).collect());
    }

    /// Applies the token's changed tables: the engine fetches with them from the next fetch on
    /// (same version, same watchers); sinks that are gone stop, new or changed ones start (and
    /// write the current token at once), unchanged ones carry on untouched. A state file that
    /// moves (a new `state_dir`) or now belongs to another source is written anew and the old
    /// one removed.
    pub(crate) async fn reload(&mut self, parts: TokenParts) {
        let state = parts.state_file();
        let TokenParts { config, mut source, sinks } = parts;
        let feed = source.take_feed();
        let (from, to) = (self.config.borrow().state_dir.clone(), config.state_dir.clone());
        if from != to {
            // Before the engine can fetch with the new source from the new place.
            relocate_oauth2(&from, &to, config.source.timeout).instrument(self.span.clone()).await;
        }
        self.handle.engine.reconfigure(config.clone(), source).await;
        self.follow(feed);
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
            self.handle.metrics.sink_stopped(&name);
            match running.origin {
                Origin::State(old) => moved_state = Some(old),
                Origin::Sink(_) => self.span.in_scope(|| info!("sink {name} stopped (removed or changed)")),
            }
        }
        for (origin, built) in to_launch {
            if let (Origin::State(new), Some(old)) = (&origin, &moved_state) {
                self.move_state(old, new).await;
            }
            let is_sink = matches!(origin, Origin::Sink(_));
            let launched = self.launch(origin, built);
            let _entered = self.span.enter();
            match launched {
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
        let (old, new, state) = (old.clone(), new.clone(), self.handle.engine.token().borrow().clone());
        let span = self.span.clone();
        let moved = tokio::task::spawn_blocking(move || {
            new.save(&state)?;
            if old.path != new.path {
                old.remove()?;
                span.in_scope(|| {
                    info!("state file moved from {} to {}", old.path.display(), new.path.display())
                });
            }
            Ok::<_, crate::fsutil::WriteError>(())
        });
        match moved.await.expect("saving the state file does not panic") {
            Ok(()) => {}
            Err(e) => {
                self.span.in_scope(|| warn!("reload: the state file was not moved, the old one stays: {e}"))
            }
        }
    }

    /// Tells every task to end, without waiting: a start that failed part way.
    pub(crate) fn abandon(self) {
        self.cancel.cancel();
    }

    /// Stops every task, waiting at most `STOP_GRACE`; a sink stuck in a blocking write is
    /// abandoned rather than allowed to hold up the exit.
    pub(crate) async fn stop(self) {
        self.cancel.cancel();
        let all = async {
            let _ = self.engine.await;
            for running in self.running {
                let _ = running.task.await;
            }
        };
        let _ = tokio::time::timeout(STOP_GRACE, all).await;
    }

    /// Stops the token because it left the config: its file sinks apply their `on_expiry` at
    /// once (DESIGN §15), its sinks' and its own gauges leave `/metrics`. Its state file and
    /// OAuth store stay, so adding it back continues its versions and its login.
    pub(crate) async fn remove(self) {
        let expired = TokenState::Expired { version: self.handle.engine.token().borrow().version() };
        let (metrics, span) = (self.handle.metrics.clone(), self.span.clone());
        let mut removing = Vec::new();
        for running in &self.running {
            metrics.sink_stopped(&running.name());
            if let Origin::Sink(config) = &running.origin
                && on_expiry(config) == Some(OnExpiry::Remove)
                && let Ok(sink) = Sink::new(config)
            {
                removing.push(sink);
            }
        }
        self.stop().await;
        for sink in removing {
            let name = sink.name();
            match Arc::new(sink).apply(expired.clone()).await {
                Ok(_) => span.in_scope(|| info!("sink {name}: removed (the token left the configuration)")),
                Err(e) => span.in_scope(|| warn!("sink {name}: {e}")),
            }
        }
        metrics.remove();
        span.in_scope(|| info!("stopped: the token left the configuration"));
    }
}

fn on_expiry(config: &SinkConfig) -> Option<OnExpiry> {
    match config {
        SinkConfig::File(c) => Some(c.target.on_expiry),
        SinkConfig::EnvFile(c) => Some(c.target.on_expiry),
        _ => None,
    }
}

/// An oauth2 source's refresh token moves with a new `state_dir` (DESIGN §13): left behind, the
/// new place would seed again from a refresh_token_file spent long ago, or need a new login.
async fn relocate_oauth2(from: &Path, to: &Path, wait: Duration) {
    if !from.join("oauth2.json").exists() {
        return;
    }
    match crate::source::oauth2::store::Store::new(from).relocate(to, wait).await {
        Ok(true) => info!("oauth2 store moved from {} to {}", from.display(), to.display()),
        Ok(false) => {}
        Err(e) => warn!("reload: the oauth2 store was not moved: {e}"),
    }
}
