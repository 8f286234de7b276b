//! How the rest of the daemon talks to the engine: triggers and reloads in, the token and
//! status channels out.

use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::{mpsc, oneshot, watch};

use super::{EngineStatus, RefreshError, RefreshResult};
use crate::config::TokenConfig;
use crate::source::Source;
use crate::token::TokenState;

pub(super) struct Trigger {
    /// For the log: who asked ("SIGUSR1", "401 report", …).
    pub reason: &'static str,
    pub reply: Option<oneshot::Sender<RefreshResult>>,
    /// Wanted only while the held version is at most this: a 401 on version N is answered by any
    /// later token, fetched before the report reached the engine or not.
    pub against: Option<u64>,
    /// Now, not after `min_interval`: a person just logged in and waits for the token.
    pub urgent: bool,
    /// Wanted only while the held token was last fetched or confirmed before this instant: a
    /// read with `max_age` is answered by any fetch that succeeded since (DESIGN §7).
    pub stale_before: Option<SystemTime>,
    /// Asked by a client (a 401 report, a `max_age` read), not an operator: after a failure it
    /// waits for the backoff.
    pub client: bool,
}

impl Trigger {
    /// A plain request: a fetch as soon as `min_interval` allows, nobody waiting.
    fn new(reason: &'static str) -> Trigger {
        Trigger { reason, reply: None, against: None, urgent: false, stale_before: None, client: false }
    }
}

pub(super) enum Message {
    Refresh(Trigger),
    /// A reloaded configuration: used from the next fetch on.
    Reconfigure(Arc<TokenConfig>, Box<Source>),
}

/// Triggers queued beyond this are dropped by [`EngineHandle::request_refresh`]: a full queue
/// already guarantees a fetch.
pub(super) const TRIGGER_QUEUE: usize = 1024;

#[derive(Clone)]
pub struct EngineHandle {
    pub(super) inbox: mpsc::Sender<Message>,
    pub(super) token: watch::Receiver<TokenState>,
    pub(super) status: watch::Receiver<EngineStatus>,
    /// When the engine's loop last beat for systemd's watchdog.
    pub(super) beats: watch::Receiver<tokio::time::Instant>,
}

impl EngineHandle {
    /// Asks for a fetch and waits for its result (joining one in flight, if any).
    pub async fn refresh(&self, reason: &'static str) -> RefreshResult {
        self.ask(Trigger::new(reason)).await
    }

    /// Asks for a fetch now, whatever `min_interval` says, and waits for its result: after a
    /// login, whose token the store already holds.
    pub async fn refresh_now(&self, reason: &'static str) -> RefreshResult {
        self.ask(Trigger { urgent: true, ..Trigger::new(reason) }).await
    }

    /// Asks for a token newer than `version` and waits for it: a fetch, unless one already
    /// replaced that version by the time the engine reads the request. A version the engine
    /// does not know (newer than its own) counts as the current one.
    pub async fn refresh_past(&self, version: u64, reason: &'static str) -> RefreshResult {
        self.ask(Trigger { against: Some(version), client: true, ..Trigger::new(reason) }).await
    }

    /// Asks for a fetch unless one succeeded at or after `cutoff` by the time the engine reads
    /// the request, and waits for its result (a read with `max_age`).
    pub async fn refresh_if_older(&self, cutoff: SystemTime, reason: &'static str) -> RefreshResult {
        self.ask(Trigger { stale_before: Some(cutoff), client: true, ..Trigger::new(reason) }).await
    }

    /// When the held token was last fetched or confirmed unchanged.
    pub fn confirmed_at(&self) -> Option<SystemTime> {
        super::confirmed_at(&self.token.borrow(), &self.status.borrow())
    }

    async fn ask(&self, mut trigger: Trigger) -> RefreshResult {
        let (reply, result) = oneshot::channel();
        let stopped = || Arc::new(RefreshError::Stopped);
        trigger.reply = Some(reply);
        if self.inbox.send(Message::Refresh(trigger)).await.is_err() {
            return Err(stopped());
        }
        result.await.unwrap_or_else(|_| Err(stopped()))
    }

    /// Asks for a fetch without waiting for it (signals).
    pub fn request_refresh(&self, reason: &'static str) {
        let _ = self.inbox.try_send(Message::Refresh(Trigger::new(reason)));
    }

    /// Hands the engine a reloaded configuration and the source built from it.
    pub async fn reconfigure(&self, config: Arc<TokenConfig>, source: Source) {
        let _ = self.inbox.send(Message::Reconfigure(config, Box::new(source))).await;
    }

    pub fn token(&self) -> watch::Receiver<TokenState> {
        self.token.clone()
    }

    pub fn status(&self) -> watch::Receiver<EngineStatus> {
        self.status.clone()
    }

    /// When the engine's loop last beat (at half of `WatchdogSec=`, when systemd set one).
    pub fn beats(&self) -> watch::Receiver<tokio::time::Instant> {
        self.beats.clone()
    }
}
