//! `STATUS=` for `systemctl status` (DESIGN §9, §15), kept current: one token's state as it
//! always was, several tokens counted by state.

use std::time::SystemTime;

use tokio::sync::watch;

use crate::registry::Registry;
use crate::systemd;
use crate::token::TokenState;

/// `STATUS=` for several tokens: how many are in each state, worst first (`3 fresh, 1
/// needs_login` reads as `1 needs_login, 3 fresh`), so the trouble is seen first.
pub(crate) fn count_line(states: &[&str]) -> String {
    const WORST_FIRST: [&str; 5] = ["expired", "needs_login", "empty", "expiring", "fresh"];
    let counts: Vec<String> = WORST_FIRST
        .iter()
        .filter_map(|state| {
            let n = states.iter().filter(|s| *s == state).count();
            (n > 0).then(|| format!("{n} {state}"))
        })
        .collect();
    if counts.is_empty() { "no tokens".into() } else { counts.join(", ") }
}

/// Sends `STATUS=` whenever a token changes or tokens come and go, until the registry closes:
/// one token's line as before several existed, several tokens counted by state.
pub(crate) async fn report_status(mut registry: Registry) {
    loop {
        let tokens = registry.borrow_and_update().clone();
        // Seen before the line is made: a change from here on wakes the loop.
        let mut watched: Vec<Change> = tokens
            .values()
            .flat_map(|t| {
                let (mut token, mut engine) = (t.engine.token(), t.engine.status());
                token.borrow_and_update();
                engine.borrow_and_update();
                [Change::Token(token), Change::Engine(engine)]
            })
            .collect();
        let now = SystemTime::now();
        let line = match tokens.values().collect::<Vec<_>>().as_slice() {
            [one] => systemd::status_line(&one.engine.token().borrow(), now),
            several => count_line(&several.iter().map(|t| t.state(now)).collect::<Vec<_>>()),
        };
        systemd::status(&line);
        let any_token = futures_util::future::select_all(watched.iter_mut().map(|w| Box::pin(w.changed())));
        tokio::select! {
            changed = registry.changed() => if changed.is_err() { return },
            _ = any_token, if !tokens.is_empty() => {}
        }
    }
}

/// A token's channel whose change makes a new `STATUS=` line.
enum Change {
    Token(watch::Receiver<TokenState>),
    Engine(watch::Receiver<crate::engine::EngineStatus>),
}

impl Change {
    async fn changed(&mut self) {
        let closed = match self {
            Change::Token(rx) => rx.changed().await.is_err(),
            Change::Engine(rx) => rx.changed().await.is_err(),
        };
        if closed {
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_tokens_are_counted_by_state_worst_first() {
        assert_eq!(count_line(&["fresh", "needs_login", "fresh", "fresh"]), "1 needs_login, 3 fresh");
        assert_eq!(count_line(&["expiring", "expired"]), "1 expired, 1 expiring");
        assert_eq!(count_line(&[]), "no tokens");
    }
}
