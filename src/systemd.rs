//! Talking to systemd (`Type=notify`): readiness, reloads, stopping, status and the watchdog.
//! Every call is a no-op when `NOTIFY_SOCKET` is unset, so the daemon runs the same outside
//! systemd.

use std::time::{Duration, SystemTime};

use sd_notify::NotifyState;
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

/// `WATCHDOG=1` at half of `WatchdogSec=`. Pinged from the engine's own loop, so an engine that
/// wedges stops pinging and systemd restarts it.
pub(crate) struct Watchdog {
    interval: Option<Duration>,
    next: Instant,
}

impl Watchdog {
    pub(crate) fn from_env() -> Watchdog {
        let interval = sd_notify::watchdog_enabled().map(|timeout| timeout / 2);
        Watchdog { interval, next: Instant::now() }
    }

    /// Completes when a ping is due (never, without a watchdog).
    pub(crate) async fn due(&self) {
        match self.interval {
            Some(_) => tokio::time::sleep_until(self.next).await,
            None => std::future::pending().await,
        }
    }

    pub(crate) fn ping(&mut self) {
        if let Some(interval) = self.interval {
            send(&[NotifyState::Watchdog]);
            self.next = Instant::now() + interval;
        }
    }
}
