//! `mcp-token-sync login` (DESIGN §8, §13): asks the daemon to log in (`POST /v1/login`),
//! prints what the person must open (stdout) and the progress (stderr), and waits until the
//! daemon holds a token. Ctrl-C closes the connection, which ends the daemon's flow too.
//!
//! Run through `sudo`, it names the user sudo runs for as the browser's (`browser_uid`): the
//! daemon lets only the login's own user, or that one, bring the redirect back. Everything the
//! daemon says is made printable before it reaches the terminal, and only an http(s) URL is
//! handed to `xdg-open`.

use std::process::Stdio;

use http_body_util::BodyExt;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};

use super::args::SocketPath;
use super::client::Asked;
use super::{Outcome, RUNTIME_FAILURE, fail};
use crate::client::Answer;
use crate::text::printable;

pub(super) fn login(socket: &SocketPath, method: Option<&'static str>) -> Outcome {
    super::client::client_verb(socket, |daemon| async move {
        tokio::select! {
            outcome = login_verb(daemon, method) => outcome,
            _ = tokio::signal::ctrl_c() => Err(fail(RUNTIME_FAILURE, "login cancelled; the daemon ended its flow")),
        }
    })
}

async fn login_verb(daemon: Asked, method: Option<&'static str>) -> Outcome {
    let mut asked = serde_json::Map::new();
    if let Some(method) = method {
        asked.insert("method".into(), json!(method));
    }
    if let Some(uid) = sudo_user() {
        asked.insert("browser_uid".into(), json!(uid));
    }
    let body = if asked.is_empty() { Vec::new() } else { Value::Object(asked).to_string().into_bytes() };
    let response = daemon
        .client
        .open(Method::POST, &daemon.path("login"), body)
        .await
        .map_err(|e| fail(RUNTIME_FAILURE, e))?;
    let status = response.status();
    let mut body = response.into_body();
    if status != StatusCode::OK {
        let collected = body.collect().await.map(|c| c.to_bytes().to_vec()).unwrap_or_default();
        let answer = Answer { status, body: collected.into() };
        let code = serde_json::from_slice::<Value>(&answer.body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned));
        if code.as_deref() == Some("login_not_needed") {
            eprintln!("mcp-token-sync: no login needed: {}", answer.detail());
            return Ok(());
        }
        return super::client::expect_ok(&answer, "login");
    }
    let mut pending = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| fail(RUNTIME_FAILURE, format!("login: {e}")))?;
        let Some(data) = frame.data_ref() else { continue };
        pending.extend_from_slice(data);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let event: Value = serde_json::from_slice(&line).unwrap_or_default();
            if let Some(outcome) = show(&event) {
                return outcome;
            }
        }
    }
    Err(fail(RUNTIME_FAILURE, "the daemon closed the login without an answer; see its log"))
}

/// The user `sudo` runs this command for, when root runs it through sudo: their browser
/// brings the redirect back.
fn sudo_user() -> Option<u32> {
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    std::env::var("SUDO_UID").ok()?.parse().ok().filter(|&uid| uid != 0)
}

/// Shows one event; `Some` when the login is over.
fn show(event: &Value) -> Option<Outcome> {
    let text = |key: &str| printable(event[key].as_str().unwrap_or_default(), 2000);
    match event["event"].as_str() {
        Some("open") if event["method"] == "device" => {
            println!("Open {} and enter the code {}", text("url"), text("user_code"));
            if let Some(complete) = event["url_complete"].as_str() {
                println!("or open {}", printable(complete, 2000));
            }
            eprintln!("waiting for the login to be approved (Ctrl-C cancels)…");
            None
        }
        Some("open") => {
            let url = text("url");
            println!("Open this URL in a browser to log in:\n{url}");
            if let Some(port) = event["callback_port"].as_u64()
                && std::env::var_os("SSH_CONNECTION").is_some()
            {
                let host = nix::unistd::gethostname()
                    .ok()
                    .and_then(|h| h.into_string().ok())
                    .unwrap_or("HOST".into());
                println!(
                    "Over SSH, forward the redirect first, from the machine with the browser:\n\
                     ssh -N -L {port}:127.0.0.1:{port} {host}"
                );
            }
            open_in_browser(&url);
            eprintln!("waiting for the browser's redirect (Ctrl-C cancels)…");
            None
        }
        Some("done") => {
            println!("logged in: token version {}, expires {}", event["version"], text("expires_at"));
            Some(Ok(()))
        }
        Some("failed") => {
            let (detail, code) = (text("detail"), text("error"));
            let code = if detail.contains(&code) { String::new() } else { format!(" ({code})") };
            Some(Err(fail(RUNTIME_FAILURE, format!("login failed: {detail}{code}"))))
        }
        _ => None,
    }
}

/// `xdg-open` when there is a display to open it on, and the URL is one a browser should open;
/// the URL is printed anyway.
fn open_in_browser(url: &str) {
    if std::env::var_os("DISPLAY").is_none() && std::env::var_os("WAYLAND_DISPLAY").is_none() {
        return;
    }
    let opens = url::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "https" | "http"));
    if !opens || url.starts_with('-') {
        return;
    }
    let _ = std::process::Command::new("xdg-open")
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}
