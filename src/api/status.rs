//! `/v1/status` and `/v1/health`: what the daemon holds and how its parts are doing, never the
//! token itself.

use std::time::SystemTime;

use hyper::{Response, StatusCode};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::respond::{Body, json_response};
use crate::clock;
use crate::registry::TokenHandle;
use crate::sinks::SinkReport;
use crate::source::SourceStatus;
use crate::source::oauth2::exchange::SubjectStatus;
use crate::token::TokenState;

/// One token's status object (DESIGN §7, §13). Never the token.
pub(super) fn status(token: &TokenHandle) -> Value {
    let state = token.engine.token().borrow().clone();
    let engine = token.engine.status().borrow().clone();
    let time = |t: Option<SystemTime>| t.map(clock::rfc3339);
    let current = state.current();
    let state_name = token.state(SystemTime::now());
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
        "sinks": sinks(&token.sinks.borrow()),
    });
    source(&engine.source, &mut status);
    status
}

/// Sinks as status lists them.
pub(super) fn sinks(reports: &[watch::Receiver<SinkReport>]) -> Vec<Value> {
    let time = |t: Option<SystemTime>| t.map(clock::rfc3339);
    reports
        .iter()
        .map(|report| {
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
        })
        .collect()
}

/// `source` and, for the refresh_token grant, `refresh_token` (DESIGN §13 "Status", §16): the
/// kind, and where it gets the token — a command's program (never its arguments), a GitHub
/// App and its installation, an exchange's subject token.
fn source(source: &SourceStatus, status: &mut Value) {
    let time = |t: Option<SystemTime>| t.map(clock::rfc3339);
    let oauth2 = match source {
        SourceStatus::OAuth2(oauth2) => oauth2,
        SourceStatus::Endpoint { url } => {
            status["source"] = json!({"type": "endpoint", "url": url, "grant": null, "token_endpoint": null});
            return;
        }
        SourceStatus::Command { program } => {
            status["source"] = json!({"type": "command", "program": program});
            return;
        }
        SourceStatus::GithubApp { app, installation_id } => {
            status["source"] = json!({"type": "github_app", "app": app, "installation_id": installation_id});
            return;
        }
    };
    status["source"] = json!({
        "type": "oauth2",
        "grant": oauth2.grant.name(),
        "token_endpoint": oauth2.token_endpoint.as_ref().map(|u| u.as_str()),
    });
    match &oauth2.subject_token {
        Some(SubjectStatus::File(path)) => status["source"]["subject_token"] = json!({"file": path}),
        Some(SubjectStatus::Token { name, waiting }) => {
            status["source"]["subject_token"] = json!({"token": name, "waiting": waiting})
        }
        None => {}
    }
    if let Some(held) = &oauth2.refresh_token {
        status["refresh_token"] = json!({
            "state": held.state.name(),
            "fingerprint": held.fingerprint.map(|f| f.to_string()),
            "rotated_at": time(held.rotated_at),
        });
    }
}

/// `/v1/health` for one token: 200, or 503 with its problems.
pub(super) fn health(token: &TokenHandle) -> Response<Body> {
    let problems = health_problems(token);
    if problems.is_empty() {
        json_response(StatusCode::OK, &json!({"status": "ok"}))
    } else {
        json_response(StatusCode::SERVICE_UNAVAILABLE, &json!({"status": "unhealthy", "problems": problems}))
    }
}

/// Why the token is unhealthy; empty when it is held valid and every sink's last write
/// succeeded.
pub(super) fn health_problems(token: &TokenHandle) -> Vec<String> {
    let mut problems = Vec::new();
    let engine = token.engine.status().borrow().clone();
    if engine.needs_login {
        let why = engine.last_error.as_deref().unwrap_or("run `mcp-token-sync login`");
        problems.push(format!("needs_login: {why}"));
    }
    match &*token.engine.token().borrow() {
        TokenState::Valid(_) => {}
        TokenState::Empty => problems.push(no_token_reason(token, "no token has been fetched yet")),
        TokenState::Expired { .. } => problems.push(no_token_reason(token, "the token expired unreplaced")),
    }
    for report in token.sinks.borrow().iter() {
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
fn no_token_reason(token: &TokenHandle, what: &str) -> String {
    let engine = token.engine.status().borrow().clone();
    match &engine.last_error {
        Some(error) if !engine.needs_login => format!("{what}: {error}"),
        _ => what.to_owned(),
    }
}
