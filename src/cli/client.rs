//! The verbs that talk to a running daemon over its socket: `token`, `report-401`, `refresh`,
//! `status`, `watch`, `headers`. Only `token`, `report-401` and `headers` print the token, and
//! only on stdout.

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use http_body_util::BodyExt;
use hyper::{Method, StatusCode};
use serde_json::Value;

use super::args::SocketPath;
use super::{CONFIG_ERROR, Outcome, RUNTIME_FAILURE, fail};
use crate::client::{Answer, Client};
use crate::clock;
use crate::text::printable;
use crate::token::{Fingerprint, secret_json};

/// Runs a client verb on a small runtime of its own.
fn client_verb<F: std::future::Future<Output = Outcome>>(
    socket: &SocketPath,
    verb: impl FnOnce(Client) -> F,
) -> Outcome {
    let rt =
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("the tokio runtime starts");
    rt.block_on(verb(Client::new(&socket.socket).with_timeout(socket.timeout)))
}

pub(super) fn token(socket: &SocketPath, json: bool, max_age: Option<Duration>) -> Outcome {
    client_verb(socket, |c| token_verb(c, json, max_age))
}

pub(super) fn report_401(socket: &SocketPath, version: Option<u64>) -> Outcome {
    client_verb(socket, |c| report_401_verb(c, version))
}

pub(super) fn refresh(socket: &SocketPath) -> Outcome {
    client_verb(socket, refresh_verb)
}

pub(super) fn status(socket: &SocketPath, json: bool) -> Outcome {
    client_verb(socket, |c| status_verb(c, json))
}

pub(super) fn watch(socket: &SocketPath) -> Outcome {
    client_verb(socket, watch_verb)
}

pub(super) fn headers(
    socket: &SocketPath,
    header: &str,
    scheme: Option<String>,
    max_age: Option<Duration>,
) -> Outcome {
    // Checked before asking the daemon, so a typo is a usage error (2), not a runtime one.
    if hyper::header::HeaderName::from_bytes(header.as_bytes()).is_err() {
        return Err(fail(CONFIG_ERROR, format!("--header {header:?} is not an HTTP header name")));
    }
    let scheme = scheme.or_else(|| header.eq_ignore_ascii_case("authorization").then(|| "Bearer".into()));
    client_verb(socket, |c| headers_verb(c, header, scheme, max_age))
}

/// `/v1/token` with `format` and, when given, `max_age` (in milliseconds, which the daemon
/// reads exactly).
fn token_path(raw: bool, max_age: Option<Duration>) -> String {
    let mut path = String::from(if raw { "/v1/token?format=raw" } else { "/v1/token?format=json" });
    if let Some(age) = max_age {
        path += &format!("&max_age={}ms", age.as_millis());
    }
    path
}

async fn call(client: &Client, method: Method, path: &str, body: Vec<u8>) -> Result<Answer, ExitCode> {
    client.call(method, path, body).await.map_err(|e| fail(RUNTIME_FAILURE, e))
}

/// Writes `bytes` (which hold the token) and a newline to stdout, as they are.
fn print_secret(bytes: &[u8]) -> Outcome {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush())
        .map_err(|e| fail(RUNTIME_FAILURE, format!("cannot write to stdout: {e}")))
}

fn expect_ok(answer: &Answer, what: &str) -> Outcome {
    if answer.status == StatusCode::OK {
        Ok(())
    } else {
        Err(fail(RUNTIME_FAILURE, format!("{what}: {}", answer.detail())))
    }
}

async fn token_verb(client: Client, json: bool, max_age: Option<Duration>) -> Outcome {
    let answer = call(&client, Method::GET, &token_path(!json, max_age), Vec::new()).await?;
    expect_ok(&answer, "no valid token")?;
    print_secret(&answer.body)
}

/// `{"Authorization": "Bearer <token>"}`: what Claude Code's `headersHelper` reads.
async fn headers_verb(
    client: Client,
    header: &str,
    scheme: Option<String>,
    max_age: Option<Duration>,
) -> Outcome {
    let answer = call(&client, Method::GET, &token_path(true, max_age), Vec::new()).await?;
    expect_ok(&answer, "no valid token")?;
    let token =
        std::str::from_utf8(&answer.body).map_err(|_| fail(RUNTIME_FAILURE, "the token is not text"))?;
    let value = zeroize::Zeroizing::new(match &scheme {
        Some(scheme) => format!("{scheme} {token}"),
        None => token.to_owned(),
    });
    let object = std::collections::BTreeMap::from([(header, value.as_str())]);
    print_secret(&secret_json(&object))
}

async fn report_401_verb(client: Client, version: Option<u64>) -> Outcome {
    let body =
        version.map(|v| serde_json::json!({ "version": v }).to_string().into_bytes()).unwrap_or_default();
    // The daemon waits for the refresh a second less than we wait for the daemon, so a slow
    // fetch is told as such, not as a silent daemon.
    let wait = client.timeout().saturating_sub(std::time::Duration::from_secs(1)).as_millis().max(1);
    let path = format!("/v1/report-401?wait={wait}ms");
    let answer = call(&client, Method::POST, &path, body).await?;
    expect_ok(&answer, "no fresh token")?;
    let object: Value = serde_json::from_slice(&answer.body).map_err(|e| fail(RUNTIME_FAILURE, e))?;
    if object["changed"] == Value::Bool(false) {
        eprintln!(
            "mcp-token-sync: the backend still answers the same token; the 401 was probably not about the token"
        );
    }
    print_secret(object["token"].as_str().unwrap_or_default().as_bytes())
}

async fn refresh_verb(client: Client) -> Outcome {
    let answer = call(&client, Method::POST, "/v1/refresh", Vec::new()).await?;
    expect_ok(&answer, "refresh failed")?;
    let result: Value = serde_json::from_slice(&answer.body).map_err(|e| fail(RUNTIME_FAILURE, e))?;
    let what = if result["changed"] == Value::Bool(true) { "a new token" } else { "unchanged" };
    println!("version {}: {what}", result["version"]);
    Ok(())
}

async fn status_verb(client: Client, json: bool) -> Outcome {
    let answer = call(&client, Method::GET, "/v1/status", Vec::new()).await?;
    expect_ok(&answer, "status")?;
    let status: Value = serde_json::from_slice(&answer.body).map_err(|e| fail(RUNTIME_FAILURE, e))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&status).expect("a JSON value serializes"));
    } else {
        print!("{}", status_summary(&status, SystemTime::now()));
    }
    match status["state"].as_str() {
        Some("fresh" | "expiring") => Ok(()),
        _ => Err(ExitCode::from(RUNTIME_FAILURE)),
    }
}

/// A string of the status JSON as a terminal may show it (the daemon's words, but a socket
/// is only as trusted as the check in `client`), or `absent`.
fn shown(value: &Value, absent: &str) -> String {
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

fn status_summary(s: &Value, now: SystemTime) -> String {
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

async fn watch_verb(client: Client) -> Outcome {
    let response =
        client.open(Method::GET, "/v1/watch", Vec::new()).await.map_err(|e| fail(RUNTIME_FAILURE, e))?;
    if response.status() != StatusCode::OK {
        return Err(fail(RUNTIME_FAILURE, format!("watch: HTTP {}", response.status())));
    }
    let mut body = response.into_body();
    let mut pending = zeroize::Zeroizing::new(Vec::new());
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| fail(RUNTIME_FAILURE, format!("watch: {e}")))?;
        let Some(data) = frame.data_ref() else { continue };
        pending.extend_from_slice(data);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            println!("{}", watch_line(&zeroize::Zeroizing::new(line)));
        }
    }
    Err(fail(RUNTIME_FAILURE, "the daemon closed the watch"))
}

/// A watch event for humans: the version and fingerprint, never the token.
fn watch_line(line: &[u8]) -> String {
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
