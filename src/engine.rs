//! The loop at the centre: triggers → one fetch at a time → validate → publish.
//!
//! The engine owns the current token and is the only writer of the two `watch` channels that
//! sinks and the API read: [`TokenState`] (a new value per version) and [`EngineStatus`]
//! (health of fetching). Everything else talks to it through an [`EngineHandle`].
//!
//! Refresh is single-flight by construction: the fetch runs inside the engine's own loop, and
//! every trigger that arrives while it is in flight is answered with that fetch's result instead
//! of starting another.

use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::clock;
use crate::config::Config;
use crate::schedule::{self, LastFetch};
use crate::source::{FetchError, Source};
use crate::systemd::Watchdog;
use crate::token::{CurrentToken, TokenState};
use crate::validate::{self, Candidate, Rejection};

/// Why a fetch produced no token.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("rejected the backend's answer: {0}")]
    Rejected(#[from] Rejection),
    #[error("the daemon is stopping")]
    Stopped,
}

/// The result every waiter of one fetch receives.
pub type RefreshResult = Result<Refreshed, Arc<RefreshError>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refreshed {
    /// The version held after the fetch.
    pub version: u64,
    /// Whether the fetch produced a new version.
    pub changed: bool,
}

/// How fetching is going; published for status, health and metrics.
#[derive(Debug, Clone, Default)]
pub struct EngineStatus {
    pub last_fetch_at: Option<SystemTime>,
    pub last_success_at: Option<SystemTime>,
    pub next_refresh_at: Option<SystemTime>,
    pub last_error: Option<String>,
    pub consecutive_failures: u32,
    /// Fetches since start, by result.
    pub fetches_new: u64,
    pub fetches_unchanged: u64,
    pub fetches_failed: u64,
}

struct Trigger {
    /// For the log: who asked ("SIGUSR1", "401 report", …).
    reason: &'static str,
    reply: Option<oneshot::Sender<RefreshResult>>,
    /// Wanted only while the held version is at most this: a 401 on version N is answered by any
    /// later token, fetched before the report reached the engine or not.
    against: Option<u64>,
}

enum Message {
    Refresh(Trigger),
    /// A reloaded configuration: used from the next fetch on.
    Reconfigure(Arc<Config>, Box<Source>),
}

/// Triggers queued beyond this are dropped by [`EngineHandle::request_refresh`]: a full queue
/// already guarantees a fetch.
const TRIGGER_QUEUE: usize = 1024;

#[derive(Clone)]
pub struct EngineHandle {
    inbox: mpsc::Sender<Message>,
    token: watch::Receiver<TokenState>,
    status: watch::Receiver<EngineStatus>,
}

impl EngineHandle {
    /// Asks for a fetch and waits for its result (joining one in flight, if any).
    pub async fn refresh(&self, reason: &'static str) -> RefreshResult {
        self.ask(reason, None).await
    }

    /// Asks for a token newer than `version` and waits for it: a fetch, unless one already
    /// replaced that version by the time the engine reads the request.
    pub async fn refresh_past(&self, version: u64, reason: &'static str) -> RefreshResult {
        self.ask(reason, Some(version)).await
    }

    async fn ask(&self, reason: &'static str, against: Option<u64>) -> RefreshResult {
        let (reply, result) = oneshot::channel();
        let stopped = || Arc::new(RefreshError::Stopped);
        let trigger = Trigger { reason, reply: Some(reply), against };
        if self.inbox.send(Message::Refresh(trigger)).await.is_err() {
            return Err(stopped());
        }
        result.await.unwrap_or_else(|_| Err(stopped()))
    }

    /// Asks for a fetch without waiting for it (signals).
    pub fn request_refresh(&self, reason: &'static str) {
        let _ = self.inbox.try_send(Message::Refresh(Trigger { reason, reply: None, against: None }));
    }

    /// Hands the engine a reloaded configuration and the source built from it.
    pub async fn reconfigure(&self, config: Arc<Config>, source: Source) {
        let _ = self.inbox.send(Message::Reconfigure(config, Box::new(source))).await;
    }

    pub fn token(&self) -> watch::Receiver<TokenState> {
        self.token.clone()
    }

    pub fn status(&self) -> watch::Receiver<EngineStatus> {
        self.status.clone()
    }
}

pub struct Engine {
    config: Arc<Config>,
    source: Source,
    /// `refresh.cron`, parsed (the config check already refused bad ones).
    crons: Vec<croner::Cron>,
    token: watch::Sender<TokenState>,
    status: watch::Sender<EngineStatus>,
    inbox: mpsc::Receiver<Message>,
    /// A configuration that arrived during a fetch, applied once it is over.
    pending: Option<(Arc<Config>, Box<Source>)>,
    watchdog: Watchdog,
}

fn parse_crons(config: &Config) -> Vec<croner::Cron> {
    config.refresh.cron.iter().filter_map(|c| schedule::parse_cron(c).ok()).collect()
}

impl Engine {
    /// An engine that starts out holding `initial` (restored from the state file, or empty).
    pub fn new(config: Arc<Config>, source: Source, initial: TokenState) -> (Engine, EngineHandle) {
        let (token, token_rx) = watch::channel(initial);
        let (status, status_rx) = watch::channel(EngineStatus::default());
        let (inbox_tx, inbox) = mpsc::channel(TRIGGER_QUEUE);
        let handle = EngineHandle { inbox: inbox_tx, token: token_rx, status: status_rx };
        let crons = parse_crons(&config);
        let engine = Engine {
            config,
            source,
            crons,
            token,
            status,
            inbox,
            pending: None,
            watchdog: Watchdog::from_env(),
        };
        (engine, handle)
    }

    fn reconfigure(&mut self, config: Arc<Config>, source: Source) {
        self.crons = parse_crons(&config);
        self.config = config;
        self.source = source;
        info!("configuration reloaded: source and schedule apply from the next fetch");
    }

    pub async fn run(mut self, cancel: CancellationToken) {
        let mut last = LastFetch::Never;
        let mut waiters: Vec<oneshot::Sender<RefreshResult>> = Vec::new();
        // A trigger asked for a fetch (some, like signals, wait for no answer).
        let mut requested = false;
        let mut next: Option<SystemTime> = None;
        let mut next_cron = schedule::next_cron(&self.crons, SystemTime::now());
        self.watchdog.ping();
        loop {
            if let Some(due) = next {
                let expiry = self.token.borrow().current().map(|c| c.expires_at);
                let wake = [Some(due), expiry, next_cron].into_iter().flatten().min().expect("due is set");
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = self.watchdog.due() => {
                        self.watchdog.ping();
                        continue;
                    }
                    Some(message) = self.inbox.recv() => {
                        match message {
                            Message::Refresh(trigger) => {
                                if let Some(trigger) = self.answer_if_superseded(trigger) {
                                    info!("refresh requested by {}", trigger.reason);
                                    waiters.extend(trigger.reply);
                                    requested = true;
                                }
                            }
                            Message::Reconfigure(config, source) => {
                                self.reconfigure(config, *source);
                                next_cron = schedule::next_cron(&self.crons, SystemTime::now());
                            }
                        }
                        next = schedule::next_refresh(&last, requested, &self.config.refresh, rand::random());
                        continue;
                    }
                    _ = clock::wake_at(wake) => {}
                }
                let now = SystemTime::now();
                self.expire_if_due(now);
                if next_cron.is_some_and(|at| now >= at) {
                    // An extra trigger, held to min_interval like any other.
                    info!("refresh requested by refresh.cron");
                    next_cron = schedule::next_cron(&self.crons, now);
                    requested = true;
                    next = schedule::next_refresh(&last, requested, &self.config.refresh, rand::random());
                    continue;
                }
                if now < due {
                    continue;
                }
            }

            let Some(result) = self.fetch_collecting(&mut waiters, &cancel).await else { return };
            requested = false;
            last = self.settle(result, &last, &mut waiters);
            if let Some((config, source)) = self.pending.take() {
                self.reconfigure(config, *source);
                next_cron = schedule::next_cron(&self.crons, SystemTime::now());
            }
            next = schedule::next_refresh(&last, false, &self.config.refresh, rand::random());
            self.status.send_modify(|s| s.next_refresh_at = next);
            match (last, next) {
                (LastFetch::First { .. } | LastFetch::NewToken { .. }, Some(at)) => {
                    info!("next refresh in {}", clock::until(SystemTime::now(), at));
                }
                (_, Some(at)) => debug!("next refresh in {}", clock::until(SystemTime::now(), at)),
                (_, None) => {}
            }
        }
    }

    /// Answers at once a trigger whose version a newer valid token already replaced; hands back
    /// any other.
    fn answer_if_superseded(&self, trigger: Trigger) -> Option<Trigger> {
        let held = match (&*self.token.borrow(), trigger.against) {
            (TokenState::Valid(current), Some(against)) if current.version > against => current.version,
            _ => return Some(trigger),
        };
        debug!("refresh requested by {} is already answered by version {held}", trigger.reason);
        if let Some(reply) = trigger.reply {
            let _ = reply.send(Ok(Refreshed { version: held, changed: true }));
        }
        None
    }

    /// Runs one fetch; triggers that arrive meanwhile join it. `None` when cancelled.
    async fn fetch_collecting(
        &mut self,
        waiters: &mut Vec<oneshot::Sender<RefreshResult>>,
        cancel: &CancellationToken,
    ) -> Option<Result<Candidate, RefreshError>> {
        let fetch = fetch_validated(&self.source, &self.config);
        tokio::pin!(fetch);
        loop {
            tokio::select! {
                result = &mut fetch => return Some(result),
                Some(message) = self.inbox.recv() => match message {
                    Message::Refresh(trigger) => {
                        debug!("refresh requested by {} joins the fetch in flight", trigger.reason);
                        waiters.extend(trigger.reply);
                    }
                    Message::Reconfigure(config, source) => self.pending = Some((config, source)),
                },
                _ = self.watchdog.due() => self.watchdog.ping(),
                _ = cancel.cancelled() => return None,
            }
        }
    }

    /// Publishes a fetch's outcome, answers its waiters and says what the schedule should know.
    fn settle(
        &mut self,
        result: Result<Candidate, RefreshError>,
        previous: &LastFetch,
        waiters: &mut Vec<oneshot::Sender<RefreshResult>>,
    ) -> LastFetch {
        let now = SystemTime::now();
        let (last, reply) = match result {
            Ok(candidate) => {
                let expires_at = candidate.expires_at;
                // The run's first success: the schedule spreads the next fetch over a full cycle.
                let first = {
                    let s = self.status.borrow();
                    s.fetches_new + s.fetches_unchanged == 0
                };
                let refreshed = self.publish(candidate, now);
                let failures = previous.consecutive_failures();
                if failures > 0 {
                    info!("fetching works again after {failures} failed attempts");
                }
                self.status.send_modify(|s| {
                    s.last_fetch_at = Some(now);
                    s.last_success_at = Some(now);
                    s.last_error = None;
                    s.consecutive_failures = 0;
                    if refreshed.changed {
                        s.fetches_new += 1;
                    } else {
                        s.fetches_unchanged += 1;
                    }
                });
                let last = if first {
                    LastFetch::First { at: now, expires_at }
                } else if refreshed.changed {
                    LastFetch::NewToken { at: now, expires_at }
                } else {
                    LastFetch::SameToken { at: now, expires_at }
                };
                (last, Ok(refreshed))
            }
            Err(error) => {
                let consecutive = previous.consecutive_failures() + 1;
                let message = error.to_string();
                let repeated = self.status.borrow().last_error.as_deref() == Some(message.as_str());
                // Logged once per distinct error, not once per retry.
                if repeated {
                    debug!("fetch failed again ({consecutive} in a row): {message}");
                } else {
                    let kept = if self.token.borrow().current().is_some() {
                        "the current token is kept; "
                    } else {
                        ""
                    };
                    warn!("fetch failed: {message}; {kept}retrying with backoff");
                }
                self.status.send_modify(|s| {
                    s.last_fetch_at = Some(now);
                    s.last_error = Some(message);
                    s.consecutive_failures = consecutive;
                    s.fetches_failed += 1;
                });
                (LastFetch::Failed { at: now, consecutive }, Err(Arc::new(error)))
            }
        };
        for waiter in waiters.drain(..) {
            let _ = waiter.send(reply.clone());
        }
        last
    }

    fn publish(&mut self, candidate: Candidate, now: SystemTime) -> Refreshed {
        let held = self.token.borrow().clone();
        if let Some(current) = held.current()
            && current.token == candidate.token
            && current.expires_at == candidate.expires_at
        {
            debug!("backend still answers {}", current.describe());
            return Refreshed { version: current.version, changed: false };
        }
        let current = CurrentToken {
            token: candidate.token,
            agent_name: candidate.agent_name,
            expires_at: candidate.expires_at,
            fetched_at: now,
            version: held.version() + 1,
        };
        info!(
            "fetched new token {}, expires in {}",
            current.describe(),
            clock::until(now, current.expires_at)
        );
        let version = current.version;
        self.token.send_replace(TokenState::Valid(Arc::new(current)));
        Refreshed { version, changed: true }
    }

    fn expire_if_due(&mut self, now: SystemTime) {
        let expired = self.token.borrow().current().filter(|c| now >= c.expires_at).map(|c| c.version);
        if let Some(version) = expired {
            warn!(
                "token version {version} expired with no valid replacement; \
                 consumers get none until a fetch succeeds"
            );
            self.token.send_replace(TokenState::Expired { version: version + 1 });
        }
    }
}

/// Fetch → validate (rules 1-5) → probe (rule 6). The engine's fetch, and `once`'s.
pub async fn fetch_validated(source: &Source, config: &Config) -> Result<Candidate, RefreshError> {
    let answer = source.fetch().await?;
    let candidate = validate::check_answer(
        &answer.body,
        answer.received_at,
        &config.source.fields,
        config.source.agent.as_deref(),
        &config.validate,
    )?;
    if let Some(probe) = &config.validate.probe {
        validate::probe(source.client(), probe, &candidate.token).await?;
    }
    Ok(candidate)
}
