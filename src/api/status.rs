//! `/v1/status` and `/v1/health`: what the daemon holds and how its parts are doing, never the
//! token itself.

use std::time::SystemTime;

use serde_json::{Value, json};

use super::Shared;
use crate::clock;
use crate::config::Grant;
use crate::source::SourceStatus;
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
    let state_name = if engine.needs_login {
        "needs_login"
    } else {
        state_name(&state, shared.config.borrow().refresh.lifetime_fraction, SystemTime::now())
    };
    let mut status = json!({
        "state": state_name,
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
    });
    source(&engine.source, &mut status);
    status
}

/// `source` and, for the refresh_token grant, `refresh_token` (DESIGN §13, "Status").
fn source(source: &SourceStatus, status: &mut Value) {
    let time = |t: Option<SystemTime>| t.map(clock::rfc3339);
    let SourceStatus::OAuth2(oauth2) = source else {
        status["source"] = json!({"type": "endpoint", "grant": null, "token_endpoint": null});
        return;
    };
    let grant = match oauth2.grant {
        Grant::RefreshToken => "refresh_token",
        Grant::ClientCredentials => "client_credentials",
    };
    status["source"] = json!({
        "type": "oauth2",
        "grant": grant,
        "token_endpoint": oauth2.token_endpoint.as_ref().map(|u| u.as_str()),
    });
    if let Some(held) = &oauth2.refresh_token {
        status["refresh_token"] = json!({
            "state": held.state.name(),
            "fingerprint": held.fingerprint.map(|f| f.to_string()),
            "rotated_at": time(held.rotated_at),
        });
    }
}

/// Why the daemon is unhealthy; empty when it holds a valid token and every sink's last write
/// succeeded.
pub(super) fn health_problems(shared: &Shared) -> Vec<String> {
    let mut problems = Vec::new();
    let engine = shared.engine.status().borrow().clone();
    if engine.needs_login {
        let why = engine.last_error.as_deref().unwrap_or("run `mcp-token-sync login`");
        problems.push(format!("needs_login: {why}"));
    }
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

/// Why no token is held: the last error, unless the needs_login problem says it already.
fn no_token_reason(shared: &Shared, what: &str) -> String {
    let engine = shared.engine.status().borrow().clone();
    match &engine.last_error {
        Some(error) if !engine.needs_login => format!("{what}: {error}"),
        _ => what.to_owned(),
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
