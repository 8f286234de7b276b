//! The loop at the centre: triggers → one fetch at a time → validate → publish.
//!
//! The engine owns the current token and is the only writer of the two `watch` channels that
//! sinks and the API read: [`TokenState`] (a new value per version) and [`EngineStatus`]
//! (health of fetching). Everything else talks to it through an [`EngineHandle`].
//!
//! Refresh is single-flight by construction: the fetch runs inside the engine's own loop, and
//! every trigger that arrives while it is in flight is answered with that fetch's result instead
//! of starting another. Whether a trigger still needs a fetch at all (a 401 on a version already
//! replaced does not) is decided here, once, for every kind of trigger.

use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::clock;
use crate::config::TokenConfig;
use crate::metrics::TokenMetrics;
use crate::schedule::{self, Fetched, LastFetch, Requested};
use crate::source::{Fetch, Source, SourceStatus};
use crate::state::StateFile;
use crate::systemd::Watchdog;
use crate::token::{CurrentToken, TokenState};
use crate::validate::{self, Candidate};

mod error;
mod handle;

pub use error::RefreshError;
pub use handle::EngineHandle;
use handle::{Message, Trigger};

/// The result every waiter of one fetch receives.
pub type RefreshResult = Result<Refreshed, Arc<RefreshError>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refreshed {
    /// The version held after the fetch.
    pub version: u64,
    /// Whether the held version is newer than the one the asker had: a new token from this
    /// fetch, or from one that finished before the request reached the engine.
    pub changed: bool,
    /// Whether a fetch answered; `false` when the held token already answered the request.
    pub fetched: bool,
}

/// How fetching is going; published for status and health.
#[derive(Debug, Clone)]
pub struct EngineStatus {
    pub last_success_at: Option<SystemTime>,
    pub next_refresh_at: Option<SystemTime>,
    pub last_error: Option<String>,
    pub consecutive_failures: u32,
    /// The last fetch failed in a way only a login mends (DESIGN §13).
    pub needs_login: bool,
    /// The source as of the last fetch.
    pub source: SourceStatus,
}

pub struct Engine {
    config: Arc<TokenConfig>,
    /// Shared with the fetch in flight, which must not borrow the engine.
    source: Arc<Source>,
    token: watch::Sender<TokenState>,
    status: watch::Sender<EngineStatus>,
    inbox: mpsc::Receiver<Message>,
    metrics: Arc<TokenMetrics>,
    watchdog: Watchdog,
    last: LastFetch,
    /// When the schedule wants the next fetch; `None` means now.
    next: Option<SystemTime>,
    next_cron: Option<SystemTime>,
    /// Who asked for a fetch (some, like signals, wait for no answer).
    requested: Requested,
    /// A trigger asked for one at once (`EngineHandle::refresh_now`).
    urgent: bool,
    /// Who waits for the next fetch's result.
    waiters: Vec<oneshot::Sender<RefreshResult>>,
    /// A configuration that arrived during a fetch, applied once it is over.
    pending: Option<(Arc<TokenConfig>, Box<Source>)>,
    /// `once`: this fetch is the only one, so nothing is said of the next.
    one_shot: bool,
}

impl Engine {
    /// An engine that starts out holding `initial` (restored from the state file, or empty).
    pub fn new(
        config: Arc<TokenConfig>,
        source: Source,
        initial: TokenState,
        metrics: Arc<TokenMetrics>,
    ) -> (Engine, EngineHandle) {
        metrics.token(initial.version(), initial.current().map(|c| c.expires_at));
        let (token, token_rx) = watch::channel(initial);
        let (status, status_rx) = watch::channel(EngineStatus {
            last_success_at: None,
            next_refresh_at: None,
            last_error: None,
            consecutive_failures: 0,
            needs_login: false,
            source: source.status(),
        });
        let (inbox_tx, inbox) = mpsc::channel(handle::TRIGGER_QUEUE);
        let watchdog = Watchdog::from_env();
        let handle =
            EngineHandle { inbox: inbox_tx, token: token_rx, status: status_rx, beats: watchdog.beats() };
        let next_cron = schedule::next_cron(&config.refresh.cron, SystemTime::now());
        let engine = Engine {
            config,
            source: Arc::new(source),
            token,
            status,
            inbox,
            metrics,
            watchdog,
            last: LastFetch::Never,
            next: None,
            next_cron,
            requested: Requested::No,
            urgent: false,
            waiters: Vec::new(),
            pending: None,
            one_shot: false,
        };
        (engine, handle)
    }

    /// Fetches until `cancel`: at once, then whenever the schedule or a trigger says.
    pub async fn run(mut self, cancel: CancellationToken) {
        self.watchdog.beat();
        loop {
            if !self.wait_until_due(&cancel).await {
                return;
            }
            let Some(result) = self.fetch_joined(&cancel).await else { return };
            // Every waiter has its answer; the loop only needs the schedule, already planned.
            let _ = self.settle(result);
        }
    }

    /// One fetch, published like any other, and its result (`mcp-token-sync once`).
    pub async fn fetch_once(mut self) -> Result<Refreshed, Arc<RefreshError>> {
        self.one_shot = true;
        let result = fetch_validated(&self.source, &self.config).await;
        self.settle(result)
    }

    /// Waits until a fetch is due, meanwhile taking messages, expiring the token and firing
    /// cron triggers. `false` when cancelled.
    async fn wait_until_due(&mut self, cancel: &CancellationToken) -> bool {
        while let Some(due) = self.next {
            let now = SystemTime::now();
            if now >= due {
                break;
            }
            let expiry = self.token.borrow().current().map(|c| c.expires_at);
            let wake = [Some(due), expiry, self.next_cron].into_iter().flatten().min().unwrap_or(due);
            tokio::select! {
                _ = cancel.cancelled() => return false,
                _ = self.watchdog.due() => self.watchdog.beat(),
                Some(message) = self.inbox.recv() => {
                    self.receive(message, false);
                    self.apply_pending();
                    self.plan();
                }
                _ = clock::wake_at(wake) => self.on_wake(SystemTime::now()),
            }
        }
        true
    }

    /// Runs one fetch; triggers that arrive meanwhile join it. `None` when cancelled.
    async fn fetch_joined(&mut self, cancel: &CancellationToken) -> Option<Result<Candidate, RefreshError>> {
        let (source, config) = (self.source.clone(), self.config.clone());
        let fetch = async move { fetch_validated(&source, &config).await };
        tokio::pin!(fetch);
        loop {
            tokio::select! {
                result = &mut fetch => return Some(result),
                Some(message) = self.inbox.recv() => self.receive(message, true),
                _ = self.watchdog.due() => self.watchdog.beat(),
                _ = cancel.cancelled() => return None,
            }
        }
    }

    /// Takes a message: a trigger already answered by the held token is answered at once; any
    /// other waits for the next fetch (the one in flight, if any). A configuration waits until
    /// no fetch is in flight.
    fn receive(&mut self, message: Message, in_flight: bool) {
        match message {
            Message::Refresh(trigger) => {
                let Some(trigger) = self.answer_if_superseded(trigger) else { return };
                if in_flight {
                    debug!("refresh requested by {} joins the fetch in flight", trigger.reason);
                } else {
                    info!("refresh requested by {}", trigger.reason);
                    let by = if trigger.client { Requested::Client } else { Requested::Operator };
                    self.requested = self.requested.max(by);
                }
                self.urgent |= trigger.urgent;
                self.waiters.extend(trigger.reply);
            }
            Message::Reconfigure(config, source) => self.pending = Some((config, source)),
        }
    }

    fn apply_pending(&mut self) {
        if let Some((config, source)) = self.pending.take() {
            self.next_cron = schedule::next_cron(&config.refresh.cron, SystemTime::now());
            let fetching = |c: &TokenConfig| (c.source.clone(), c.refresh.clone(), c.validate.clone());
            if fetching(&self.config) != fetching(&config) {
                info!(
                    "configuration reloaded: the changed source, schedule or rules apply from the next fetch"
                );
            }
            self.config = config;
            self.source = Arc::new(*source);
        }
    }

    /// Sets the next deadline from the last fetch and whether a trigger asked for one.
    fn plan(&mut self) {
        self.next = schedule::next_refresh(&self.last, self.requested, &self.config.refresh, rand::random());
        if self.urgent {
            self.next = Some(SystemTime::now());
        }
        self.status.send_modify(|s| s.next_refresh_at = self.next);
    }

    fn on_wake(&mut self, now: SystemTime) {
        self.expire_if_due(now);
        if self.next_cron.is_some_and(|at| now >= at) {
            // An extra trigger, held to min_interval like any other.
            info!("refresh requested by refresh.cron");
            self.next_cron = schedule::next_cron(&self.config.refresh.cron, now);
            self.requested = Requested::Operator;
            self.plan();
        }
    }

    /// Answers at once a trigger that the held token already answers (its version replaced by
    /// a newer valid token, or a fetch succeeded since its cutoff); hands back any other.
    fn answer_if_superseded(&self, trigger: Trigger) -> Option<Trigger> {
        let token = self.token.borrow();
        let (held, changed) = match (&*token, trigger.against, trigger.stale_before) {
            (TokenState::Valid(current), Some(against), _) if current.version > against => {
                (current.version, true)
            }
            (TokenState::Valid(current), None, Some(cutoff))
                if confirmed_at(&token, &self.status.borrow()) >= Some(cutoff) =>
            {
                (current.version, false)
            }
            _ => return Some(trigger),
        };
        debug!("refresh requested by {} is already answered by version {held}", trigger.reason);
        if let Some(reply) = trigger.reply {
            let _ = reply.send(Ok(Refreshed { version: held, changed, fetched: false }));
        }
        None
    }

    /// Publishes a fetch's outcome, tells the schedule and every waiter, and plans the next.
    fn settle(&mut self, result: Result<Candidate, RefreshError>) -> RefreshResult {
        let now = SystemTime::now();
        let (fetched, reply) = match result {
            Ok(candidate) => self.succeeded(candidate, now),
            Err(error) => self.failed(error),
        };
        self.last = self.last.then(fetched, now);
        self.requested = Requested::No;
        self.urgent = false;
        let (source, needs_login) = (self.source.status(), fetched == Fetched::NeedsLogin);
        self.status.send_modify(|s| {
            s.source = source;
            s.needs_login = needs_login;
        });
        self.metrics.needs_login(needs_login);
        let failures = self.last.consecutive_failures();
        let last_success = self.status.borrow().last_success_at;
        self.metrics.fetched(fetch_label(fetched), failures, last_success);
        for waiter in self.waiters.drain(..) {
            let _ = waiter.send(reply.clone());
        }
        self.apply_pending();
        self.plan();
        if let Some(at) = self.next.filter(|_| !self.one_shot) {
            let wait = clock::until(SystemTime::now(), at);
            match fetched {
                Fetched::NewToken { .. } => info!("next refresh in {wait}"),
                _ => debug!("next refresh in {wait}"),
            }
        }
        reply
    }

    fn succeeded(&mut self, candidate: Candidate, now: SystemTime) -> (Fetched, RefreshResult) {
        let failures = self.last.consecutive_failures();
        if failures > 0 {
            let attempts = if failures == 1 { "attempt" } else { "attempts" };
            info!("fetching works again after {failures} failed {attempts}");
        }
        let expires_at = candidate.expires_at;
        let refreshed = self.publish(candidate, now);
        self.status.send_modify(|s| {
            s.last_success_at = Some(now);
            s.last_error = None;
            s.consecutive_failures = 0;
        });
        let fetched = if refreshed.changed {
            Fetched::NewToken { expires_at }
        } else {
            Fetched::SameToken { expires_at }
        };
        (fetched, Ok(refreshed))
    }

    fn failed(&mut self, error: RefreshError) -> (Fetched, RefreshResult) {
        let error = error.masking(self.token.borrow().current().map(|c| c.token.expose()));
        let consecutive = self.last.consecutive_failures() + 1;
        let message = error.to_string();
        // Logged once per distinct error, not once per retry.
        if self.status.borrow().last_error.as_deref() == Some(message.as_str()) {
            debug!("fetch failed again ({consecutive} in a row): {message}");
        } else {
            let kept =
                if self.token.borrow().current().is_some() { "the current token is kept; " } else { "" };
            let next = if self.one_shot {
                "no retry (once)"
            } else if error.needs_login() {
                "waiting for a login (the store is looked at again once per refresh.backoff_max)"
            } else {
                "retrying with backoff"
            };
            warn!("fetch failed: {message}; {kept}{next}");
        }
        self.status.send_modify(|s| {
            s.last_error = Some(message);
            s.consecutive_failures = consecutive;
        });
        let fetched = if error.needs_login() { Fetched::NeedsLogin } else { Fetched::Failed };
        (fetched, Err(Arc::new(error)))
    }

    /// The one place a token becomes a version: a candidate equal to the held token (same
    /// string and expiry) keeps its version; anything else is the next one.
    fn publish(&mut self, candidate: Candidate, now: SystemTime) -> Refreshed {
        let held = self.token.borrow().clone();
        if let Some(current) = held.current()
            && current.token == candidate.token
            && current.expires_at == candidate.expires_at
        {
            info!("the source still answers {}", current.describe());
            return Refreshed { version: current.version, changed: false, fetched: true };
        }
        // Past any version another process on this state_dir saved meanwhile (`once` beside a
        // running daemon): one version number never names two tokens.
        let saved = StateFile::new(&self.config).saved_version().unwrap_or(0);
        let current = CurrentToken::new(
            Arc::from(self.config.name.as_str()),
            candidate.token,
            candidate.agent_name,
            candidate.expires_at,
            now,
            held.version().max(saved) + 1,
        );
        info!(
            "fetched new token {}, expires in {}",
            current.describe(),
            clock::until(now, current.expires_at)
        );
        let version = current.version;
        self.metrics.token(version, Some(current.expires_at));
        self.token.send_replace(TokenState::Valid(Arc::new(current)));
        Refreshed { version, changed: true, fetched: true }
    }

    fn expire_if_due(&mut self, now: SystemTime) {
        let expired = self.token.borrow().current().filter(|c| now >= c.expires_at).map(|c| c.version);
        if let Some(version) = expired {
            warn!(
                "token version {version} expired with no valid replacement; \
                 consumers get none until a fetch succeeds"
            );
            self.metrics.token(version + 1, None);
            self.token.send_replace(TokenState::Expired { version: version + 1 });
        }
    }
}

/// When the held token was last fetched or confirmed unchanged: the last successful fetch of
/// this run, else when the restored token was fetched.
fn confirmed_at(token: &TokenState, status: &EngineStatus) -> Option<SystemTime> {
    status.last_success_at.max(token.current().map(|c| c.fetched_at))
}

fn fetch_label(fetched: Fetched) -> &'static str {
    match fetched {
        Fetched::NewToken { .. } => "new",
        Fetched::SameToken { .. } => "unchanged",
        Fetched::Failed | Fetched::NeedsLogin => "failed",
    }
}

/// Fetch → validate (rules 1-5) → probe (rule 6).
async fn fetch_validated(source: &Source, config: &TokenConfig) -> Result<Candidate, RefreshError> {
    let default_lifetime = config.source.default_lifetime;
    let candidate = match source.fetch().await? {
        Fetch::Answer(answer) => validate::check_answer(
            &answer.body,
            answer.received_at,
            &config.source.fields,
            config.source.agent.as_deref(),
            default_lifetime,
            &config.validate,
        )?,
        Fetch::Text(answer) => {
            validate::check_text(answer.body, answer.received_at, default_lifetime, &config.validate)?
        }
        Fetch::Issued(issued) => validate::check_issued(
            issued.access_token,
            issued.expires_in,
            default_lifetime,
            issued.received_at,
            &config.validate,
        )?,
    };
    if let Some(probe) = &config.validate.probe {
        source.probe(probe, &candidate.token).await?;
    }
    Ok(candidate)
}
