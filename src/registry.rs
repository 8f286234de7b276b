//! The tokens a daemon serves, by name (DESIGN §15): what the socket API, the signals and
//! systemd's status see of each one. The daemon's `tokens` module alone writes it, a new
//! snapshot whenever a token starts or stops; everything else looks a token up here and never
//! knows how many there are, nor how one is built.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::watch;

use crate::config::TokenConfig;
use crate::engine::EngineHandle;
use crate::metrics::TokenMetrics;
use crate::server::Peer;
use crate::server::peer::{own_uid, permits};
use crate::sinks::SinkReport;
use crate::token::TokenState;

/// One token as the rest of the daemon sees it. The same for the token's whole life: a reload
/// that changes its tables sends them on `config`, and its sinks' reports on `sinks`.
pub struct TokenHandle {
    pub name: String,
    pub engine: EngineHandle,
    pub config: watch::Receiver<Arc<TokenConfig>>,
    /// Its own sinks' reports (sockets, proxies and the state file included).
    pub sinks: watch::Receiver<Vec<watch::Receiver<SinkReport>>>,
    pub metrics: Arc<TokenMetrics>,
    /// Held while a login runs for it: one at a time.
    pub login: Arc<tokio::sync::Mutex<()>>,
}

impl TokenHandle {
    /// `fresh`, `expiring` (past the point where a refresh was due), `expired`, `empty`, or
    /// `needs_login` (DESIGN §7, §13).
    pub fn state(&self, now: SystemTime) -> &'static str {
        if self.engine.status().borrow().needs_login {
            return "needs_login";
        }
        state_name(&self.engine.token().borrow(), self.config.borrow().refresh.lifetime_fraction, now)
    }

    /// Whether `peer` may read, report, refresh or watch it through a daemon-wide socket: the
    /// token's `allow_uids`/`allow_gids` when set (root and the daemon's uid always), else
    /// anyone the socket serves.
    pub fn readable_by(&self, peer: &Peer) -> bool {
        let config = self.config.borrow();
        if config.allow_uids.is_empty() && config.allow_gids.is_empty() {
            return true;
        }
        permits(own_uid(), &config.allow_uids, &config.allow_gids, peer)
    }
}

/// A held token's state by the time `now`, for a token refreshed at `fraction` of its lifetime.
pub fn state_name(state: &TokenState, fraction: f64, now: SystemTime) -> &'static str {
    match state {
        TokenState::Empty => "empty",
        TokenState::Expired { .. } => "expired",
        TokenState::Valid(current) => {
            let lifetime = current.expires_at.duration_since(current.fetched_at).unwrap_or_default();
            if now >= current.fetched_at + lifetime.mul_f64(fraction) { "expiring" } else { "fresh" }
        }
    }
}

/// Every token, by name: one snapshot.
pub type Tokens = Arc<BTreeMap<String, Arc<TokenHandle>>>;

/// The current snapshot, followed as tokens start and stop.
pub type Registry = watch::Receiver<Tokens>;

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::token::{CurrentToken, Token};

    #[test]
    fn a_token_past_its_refresh_point_is_expiring() {
        let fetched = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let state = TokenState::Valid(Arc::new(CurrentToken::new(
            Arc::from("default"),
            Token::new("t".into()),
            None,
            fetched + Duration::from_secs(100),
            fetched,
            1,
        )));
        assert_eq!(state_name(&state, 0.6, fetched + Duration::from_secs(59)), "fresh");
        assert_eq!(state_name(&state, 0.6, fetched + Duration::from_secs(60)), "expiring");
        assert_eq!(state_name(&TokenState::Expired { version: 2 }, 0.6, fetched), "expired");
        assert_eq!(state_name(&TokenState::Empty, 0.6, fetched), "empty");
    }
}
