//! The verbs that talk to a running daemon over its socket: `token`, `report-401`, `refresh`,
//! `status`, `watch`, `headers`. Only `token`, `report-401` and `headers` print the token, and
//! only on stdout.
//!
//! With `--token NAME` (or `MCP_TOKEN_SYNC_TOKEN`) a verb asks about that token,
//! `/v1/tokens/NAME/…`; without, the socket's own (`/v1/…`). A daemon-wide socket answers the
//! unnamed paths about one token by naming the tokens to choose from, which the verb says as a
//! usage error; `refresh` and `status` without a name cover every token (DESIGN §15).

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use http_body_util::BodyExt;
use hyper::{Method, StatusCode};
use serde_json::Value;

use super::args::SocketPath;
use super::summary::{shown, status_summary, tokens_summary, watch_line};
use super::{CONFIG_ERROR, Outcome, RUNTIME_FAILURE, fail};
use crate::client::{Answer, Client};
use crate::text::printable;
use crate::token::secret_json;

/// The daemon a verb talks to, and the token it asks about.
pub(super) struct Asked {
    pub client: Client,
    pub token: Option<String>,
}

impl Asked {
    /// `/v1/TAIL` about the socket's own token, or `/v1/tokens/NAME/TAIL` about a named one
    /// (the token itself, `/v1/token`, is `/v1/tokens/NAME`).
    pub fn path(&self, tail: &str) -> String {
        let (tail, query) = tail.split_once('?').map_or((tail, None), |(t, q)| (t, Some(q)));
        let mut path = match (&self.token, tail) {
            (None, tail) => format!("/v1/{tail}"),
            (Some(name), "token") => format!("/v1/tokens/{name}"),
            (Some(name), tail) => format!("/v1/tokens/{name}/{tail}"),
        };
        if let Some(query) = query {
            path = format!("{path}?{query}");
        }
        path
    }

    async fn call(&self, method: Method, tail: &str, body: Vec<u8>) -> Result<Answer, ExitCode> {
        self.client.call(method, &self.path(tail), body).await.map_err(|e| fail(RUNTIME_FAILURE, e))
    }
}

/// Runs a client verb on a small runtime of its own.
pub(super) fn client_verb<F: std::future::Future<Output = Outcome>>(
    socket: &SocketPath,
    verb: impl FnOnce(Asked) -> F,
) -> Outcome {
    if let Some(name) = &socket.token
        && !valid_name(name)
    {
        return Err(fail(CONFIG_ERROR, format!("--token {name:?} is not a token name (a-z, 0-9, _ and -)")));
    }
    let rt =
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("the tokio runtime starts");
    let client = Client::new(&socket.socket).with_timeout(socket.timeout);
    rt.block_on(verb(Asked { client, token: socket.token.clone() }))
}

/// What a path segment may hold of a token name (the config allows no more).
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

pub(super) fn token(socket: &SocketPath, json: bool, max_age: Option<Duration>) -> Outcome {
    client_verb(socket, |d| token_verb(d, json, max_age))
}

pub(super) fn report_401(socket: &SocketPath, version: Option<u64>) -> Outcome {
    client_verb(socket, |d| report_401_verb(d, version))
}

pub(super) fn refresh(socket: &SocketPath) -> Outcome {
    client_verb(socket, refresh_verb)
}

pub(super) fn status(socket: &SocketPath, json: bool) -> Outcome {
    client_verb(socket, |d| status_verb(d, json))
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
    client_verb(socket, |d| headers_verb(d, header, scheme, max_age))
}

/// The token's tail with `format` and, when given, `max_age` (in milliseconds, which the
/// daemon reads exactly).
fn token_tail(raw: bool, max_age: Option<Duration>) -> String {
    let mut tail = String::from(if raw { "token?format=raw" } else { "token?format=json" });
    if let Some(age) = max_age {
        tail += &format!("&max_age={}ms", age.as_millis());
    }
    tail
}

/// Writes `bytes` (which hold the token) and a newline to stdout, as they are.
fn print_secret(bytes: &[u8]) -> Outcome {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush())
        .map_err(|e| fail(RUNTIME_FAILURE, format!("cannot write to stdout: {e}")))
}

/// `Ok` for a 200; a usage error (2) when the daemon needs a token's name or knows none of
/// that name; a runtime failure (1) otherwise.
pub(super) fn expect_ok(answer: &Answer, what: &str) -> Outcome {
    if answer.status == StatusCode::OK {
        return Ok(());
    }
    let body: Value = serde_json::from_slice(&answer.body).unwrap_or_default();
    match body["error"].as_str() {
        Some("token_name_required") => {
            let names: Vec<String> =
                body["tokens"].as_array().into_iter().flatten().map(|n| shown(n, "?")).collect();
            Err(fail(
                CONFIG_ERROR,
                format!(
                    "this daemon serves several tokens ({}): choose one with --token NAME (or MCP_TOKEN_SYNC_TOKEN)",
                    names.join(", ")
                ),
            ))
        }
        Some("unknown_token") => Err(fail(CONFIG_ERROR, answer.detail())),
        _ => Err(fail(RUNTIME_FAILURE, format!("{what}: {}", answer.detail()))),
    }
}

async fn token_verb(daemon: Asked, json: bool, max_age: Option<Duration>) -> Outcome {
    let answer = daemon.call(Method::GET, &token_tail(!json, max_age), Vec::new()).await?;
    expect_ok(&answer, "no valid token")?;
    print_secret(&answer.body)
}

/// `{"Authorization": "Bearer <token>"}`: what Claude Code's `headersHelper` reads.
async fn headers_verb(
    daemon: Asked,
    header: &str,
    scheme: Option<String>,
    max_age: Option<Duration>,
) -> Outcome {
    let answer = daemon.call(Method::GET, &token_tail(true, max_age), Vec::new()).await?;
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

async fn report_401_verb(daemon: Asked, version: Option<u64>) -> Outcome {
    let body =
        version.map(|v| serde_json::json!({ "version": v }).to_string().into_bytes()).unwrap_or_default();
    // The daemon waits for the refresh a second less than we wait for the daemon, so a slow
    // fetch is told as such, not as a silent daemon.
    let wait = daemon.client.timeout().saturating_sub(Duration::from_secs(1)).as_millis().max(1);
    let answer = daemon.call(Method::POST, &format!("report-401?wait={wait}ms"), body).await?;
    expect_ok(&answer, "no fresh token")?;
    let object: Value = serde_json::from_slice(&answer.body).map_err(|e| fail(RUNTIME_FAILURE, e))?;
    if object["changed"] == Value::Bool(false) {
        eprintln!(
            "mcp-token-sync: the backend still answers the same token; the 401 was probably not about the token"
        );
    }
    print_secret(object["token"].as_str().unwrap_or_default().as_bytes())
}

async fn refresh_verb(daemon: Asked) -> Outcome {
    let answer = daemon.call(Method::POST, "refresh", Vec::new()).await?;
    let result: Value = serde_json::from_slice(&answer.body).unwrap_or_default();
    let line = |result: &Value| {
        let what = if result["changed"] == Value::Bool(true) { "a new token" } else { "unchanged" };
        format!("version {}: {what}", result["version"])
    };
    // Every token, from a daemon-wide socket: a line each, failures too.
    if let Some(tokens) = result["tokens"].as_object() {
        for (name, result) in tokens {
            match result["detail"].as_str() {
                Some(detail) => println!("{}: FAILED: {}", printable(name, 64), printable(detail, 500)),
                None => println!("{}: {}", printable(name, 64), line(result)),
            }
        }
    }
    expect_ok(&answer, "refresh failed")?;
    if result.get("tokens").is_none() {
        println!("{}", line(&result));
    }
    Ok(())
}

async fn status_verb(daemon: Asked, json: bool) -> Outcome {
    let answer = daemon.call(Method::GET, "status", Vec::new()).await?;
    expect_ok(&answer, "status")?;
    let status: Value = serde_json::from_slice(&answer.body).map_err(|e| fail(RUNTIME_FAILURE, e))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&status).expect("a JSON value serializes"));
    } else if status.get("tokens").is_some() {
        print!("{}", tokens_summary(&status, SystemTime::now()));
    } else {
        print!("{}", status_summary(&status, SystemTime::now()));
    }
    match status["state"].as_str() {
        Some("fresh" | "expiring") => Ok(()),
        _ => Err(ExitCode::from(RUNTIME_FAILURE)),
    }
}

async fn watch_verb(daemon: Asked) -> Outcome {
    let response = daemon
        .client
        .open(Method::GET, &daemon.path("watch"), Vec::new())
        .await
        .map_err(|e| fail(RUNTIME_FAILURE, e))?;
    if response.status() != StatusCode::OK {
        let status = response.status();
        let body = response.into_body().collect().await.map(|c| c.to_bytes().to_vec()).unwrap_or_default();
        return expect_ok(&Answer { status, body: body.into() }, "watch");
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
