//! Talking to systemd (`Type=notify`): readiness, reloads, stopping, status and the watchdog.
//! Every call is a no-op when `NOTIFY_SOCKET` is unset, so the daemon runs the same outside
//! systemd.

use std::time::{Duration, SystemTime};

use sd_notify::NotifyState;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::debug;

use crate::clock;
use crate::token::TokenState;

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        debug!("sd_notify failed: {e}");
    }
}

/// The socket listens and signals are handled: clients can connect.
pub(crate) fn ready() {
    send(&[NotifyState::Ready]);
}

/// A reload begins; `ready()` ends it.
pub(crate) fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(e) => debug!("cannot read the monotonic clock: {e}"),
    }
}

pub(crate) fn stopping() {
    send(&[NotifyState::Stopping]);
}

/// `STATUS=` for `systemctl status`: the token's state, never the token.
pub(crate) fn status_line(state: &TokenState, now: SystemTime) -> String {
    match state {
        TokenState::Empty => "no token yet".into(),
        TokenState::Expired { version } => format!("version {version}: expired, no valid token"),
        TokenState::Valid(current) => format!(
            "version {} (fingerprint {}), expires in {}",
            current.version,
            current.token.fingerprint(),
            clock::until(now, current.expires_at)
        ),
    }
}

/// `STATUS=` for `systemctl status`.
pub(crate) fn status(line: &str) {
    send(&[NotifyState::Status(line)]);
}

/// The watchdog's beat: half of `WatchdogSec=`. Each engine beats at this pace from its own
/// loop (`beat`), and `WATCHDOG=1` is sent only while every engine beats (`daemon`'s status
/// task, [`watchdog`]): one token's engine that wedges stops the pings, and systemd restarts the
/// daemon, however many other tokens still turn.
pub(crate) struct Watchdog {
    interval: Option<Duration>,
    next: Instant,
    /// When this engine last beat.
    beats: watch::Sender<Instant>,
}

impl Watchdog {
    pub(crate) fn from_env() -> Watchdog {
        let interval = sd_notify::watchdog_enabled().map(|timeout| timeout / 2);
        Watchdog { interval, next: Instant::now(), beats: watch::channel(Instant::now()).0 }
    }

    /// Completes when a beat is due (never, without a watchdog).
    pub(crate) async fn due(&self) {
        match self.interval {
            Some(_) => tokio::time::sleep_until(self.next).await,
            None => std::future::pending().await,
        }
    }

    pub(crate) fn beat(&mut self) {
        if let Some(interval) = self.interval {
            self.beats.send_replace(Instant::now());
            self.next = Instant::now() + interval;
        }
    }

    /// When the engine last beat, for [`watchdog`].
    pub(crate) fn beats(&self) -> watch::Receiver<Instant> {
        self.beats.subscribe()
    }
}

/// Sends `WATCHDOG=1` every beat while every engine whose beats `engines` gives has beaten
/// within `WatchdogSec=`; returns at once without a watchdog.
pub(crate) async fn watchdog(engines: impl Fn() -> Vec<watch::Receiver<Instant>>) {
    let Some(interval) = sd_notify::watchdog_enabled().map(|timeout| timeout / 2) else { return };
    let mut every = tokio::time::interval(interval);
    loop {
        every.tick().await;
        let now = Instant::now();
        if engines().iter().all(|beat| now.duration_since(*beat.borrow()) < interval * 2) {
            send(&[NotifyState::Watchdog]);
        }
    }
}
