//! What the client verbs show people: `status` as a summary (one token in full, or one line a
//! token when the daemon serves several), and `watch` events by version and fingerprint. Never
//! the token; every string from the daemon made printable first.

use std::time::SystemTime;

use serde_json::Value;

use crate::clock;
use crate::text::printable;
use crate::token::Fingerprint;

/// A string of the status JSON as a terminal may show it (the daemon's words, but a socket
/// is only as trusted as the check in `client`), or `absent`.
pub(super) fn shown(value: &Value, absent: &str) -> String {
    printable(value.as_str().unwrap_or(absent), 500)
}

/// `2026-…Z (in 5m)` for a time in the status JSON.
fn when(value: &Value, now: SystemTime) -> String {
    match value.as_str() {
        None => "-".into(),
        Some(text) => match clock::parse_rfc3339(text) {
            Some(t) if t >= now => format!("{text} (in {})", clock::until(now, t)),
            Some(t) => format!("{text} ({} ago)", clock::until(t, now)),
            None => printable(text, 100),
        },
    }
}

/// One token's status object in full.
pub(super) fn status_summary(s: &Value, now: SystemTime) -> String {
    let mut out = format!(
        "state      {} (version {}, fingerprint {})\n",
        shown(&s["state"], "?"),
        s["version"],
        shown(&s["fingerprint"], "-")
    );
    if s["source"]["type"] == "oauth2" {
        out += &format!(
            "source     oauth2, grant {}, token endpoint {}\n",
            shown(&s["source"]["grant"], "?"),
            shown(&s["source"]["token_endpoint"], "not found yet")
        );
    }
    if let Some(held) = s.get("refresh_token") {
        let state = shown(&held["state"], "?");
        let login = if state == "held" { "" } else { "; run `mcp-token-sync login`" };
        out += &format!(
            "refresh    {state} (fingerprint {}, rotated {}){login}\n",
            shown(&held["fingerprint"], "-"),
            when(&held["rotated_at"], now)
        );
    } else {
        out += &format!("agent      {}\n", shown(&s["agent_name"], "-"));
    }
    out += &format!("expires    {}\n", when(&s["expires_at"], now));
    out += &format!("fetched    {}\n", when(&s["fetched_at"], now));
    out += &format!("next fetch {}\n", when(&s["next_refresh_at"], now));
    match s["last_error"].as_str() {
        Some(error) => {
            out += &format!("failing    {} in a row: {}\n", s["consecutive_failures"], printable(error, 1000))
        }
        None => out += "failing    no\n",
    }
    for sink in s["sinks"].as_array().into_iter().flatten() {
        let health = match sink["error"].as_str() {
            Some(error) => format!("FAILING: {}", printable(error, 1000)),
            None if sink["last_written_at"].is_null() => "ok".into(),
            None => format!("ok, written {}", when(&sink["last_written_at"], now)),
        };
        out += &format!("sink       {} {}: {health}\n", shown(&sink["type"], "?"), shown(&sink["path"], "?"));
    }
    out
}

/// A daemon-wide status (`{"state","tokens":{NAME: status},"sinks"}`): one line a token, then
/// the daemon-wide sinks.
pub(super) fn tokens_summary(s: &Value, now: SystemTime) -> String {
    let tokens = s["tokens"].as_object().cloned().unwrap_or_default();
    let width = tokens.keys().map(|name| name.chars().count()).max().unwrap_or(0).max(5);
    let counted = if tokens.len() == 1 { "1 token".to_owned() } else { format!("{} tokens", tokens.len()) };
    let mut out = format!("{:width$}  {} ({counted})\n", "state", shown(&s["state"], "?"));
    for (name, t) in &tokens {
        let name = printable(name, 64);
        let failing = match t["last_error"].as_str() {
            Some(error) => format!(", failing: {}", printable(error, 200)),
            None => String::new(),
        };
        out += &format!(
            "{name:width$}  {} version {}, expires {}{failing}\n",
            shown(&t["state"], "?"),
            t["version"],
            when(&t["expires_at"], now)
        );
    }
    for sink in s["sinks"].as_array().into_iter().flatten() {
        let health = match sink["error"].as_str() {
            Some(error) => format!("FAILING: {}", printable(error, 1000)),
            None => "ok".into(),
        };
        out += &format!("sink       {} {}: {health}\n", shown(&sink["type"], "?"), shown(&sink["path"], "?"));
    }
    out
}

/// A watch event for humans: the version and fingerprint, never the token.
pub(super) fn watch_line(line: &[u8]) -> String {
    let Ok(event) = serde_json::from_slice::<Value>(line) else {
        return "(unreadable event)".into();
    };
    if event["event"] == "expired" {
        return format!("version {}: expired, no valid token", event["version"]);
    }
    let fingerprint = Fingerprint::of(event["token"].as_str().unwrap_or_default().as_bytes());
    format!(
        "version {}: token {fingerprint} for {}, expires {}",
        event["version"],
        shown(&event["agent_name"], "-"),
        when(&event["expires_at"], SystemTime::now())
    )
}
