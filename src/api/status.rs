//! `/v1/status` and `/v1/health`: what the daemon holds and how its parts are doing, never the
//! token itself.

use std::time::SystemTime;

use serde_json::{Value, json};

use super::Shared;
use crate::clock;
use crate::token::TokenState;

/// `fresh`, `expiring` (past the point where a refresh was due), `expired` or `empty`.
pub(super) fn state_name(state: &TokenState, fraction: f64, now: SystemTime) -> &'static str {
    match state {
        TokenState::Empty => "empty",
        TokenState::Expired { .. } => "expired",
        TokenState::Valid(current) => {
            let lifetime = current.expires_at.duration_since(current.fetched_at).unwrap_or_default();
            if now >= current.fetched_at + lifetime.mul_f64(fraction) { "expiring" } else { "fresh" }
        }
    }
}

pub(super) fn status(shared: &Shared) -> Value {
    let state = shared.engine.token().borrow().clone();
    let engine = shared.engine.status().borrow().clone();
    let time = |t: Option<SystemTime>| t.map(clock::rfc3339);
    let current = state.current();
    json!({
        "state": state_name(&state, shared.config.borrow().refresh.lifetime_fraction, SystemTime::now()),
        "version": state.version(),
        "agent_name": current.and_then(|c| c.agent_name.clone()),
        "fingerprint": current.map(|c| c.token.fingerprint().to_string()),
        "expires_at": time(current.map(|c| c.expires_at)),
        "fetched_at": time(current.map(|c| c.fetched_at)),
        "next_refresh_at": time(engine.next_refresh_at),
        "last_success_at": time(engine.last_success_at),
        "last_error": engine.last_error,
        "consecutive_failures": engine.consecutive_failures,
        "sinks": shared.sinks.borrow().iter().map(|report| {
            let r = report.borrow();
            let mut line = json!({
                "type": r.kind,
                "path": r.target,
                "ok": r.ok,
                "last_written_at": time(r.last_written_at),
                "error": r.error,
            });
            if let Some(upstream) = &r.upstream {
                line["upstream"] = json!(upstream);
            }
            line
        }).collect::<Vec<_>>(),
    })
}

/// Why the daemon is unhealthy; empty when it holds a valid token and every sink's last write
/// succeeded.
pub(super) fn health_problems(shared: &Shared) -> Vec<String> {
    let mut problems = Vec::new();
    match &*shared.engine.token().borrow() {
        TokenState::Valid(_) => {}
        TokenState::Empty => problems.push(no_token_reason(shared, "no token has been fetched yet")),
        TokenState::Expired { .. } => problems.push(no_token_reason(shared, "the token expired unreplaced")),
    }
    for report in shared.sinks.borrow().iter() {
        let r = report.borrow();
        if !r.ok {
            problems.push(format!(
                "sink {} {}: {}",
                r.kind,
                r.target,
                r.error.as_deref().unwrap_or("failed")
            ));
        }
    }
    problems
}

fn no_token_reason(shared: &Shared, what: &str) -> String {
    match &shared.engine.status().borrow().last_error {
        Some(error) => format!("{what}: {error}"),
        None => what.to_owned(),
    }
}

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
