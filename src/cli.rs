//! The command line (DESIGN §8): verbs, their exit codes, and the hand-off to the library.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use clap::{Args, Parser, Subcommand};
use http_body_util::BodyExt;
use hyper::{Method, StatusCode};
use serde_json::Value;

use crate::client::{Answer, Client};
use crate::config::{self, Config, LogFormat};
use crate::daemon::{self, Parts};
use crate::token::Fingerprint;
use crate::{clock, demo, logging, process};

#[derive(Parser)]
#[command(
    name = "mcp-token-sync",
    version,
    about = "Keeps a short-lived API token fresh and hands it to the programs that need it"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log as "text" or "json" (one object per line); overrides [daemon] log_format.
    #[arg(long, global = true, value_parser = ["text", "json"])]
    log_format: Option<String>,
    /// Log filter, e.g. "debug" or "mcp_token_sync=debug"; overrides MCP_TOKEN_SYNC_LOG.
    #[arg(long, global = true)]
    log_level: Option<String>,
}

/// What the command line says about logging, applied over the config's choice.
struct LogChoice {
    format: Option<LogFormat>,
    level: Option<String>,
}

impl LogChoice {
    fn init(&self, configured: LogFormat) {
        logging::init(self.format.unwrap_or(configured), self.level.as_deref());
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon.
    Run(ConfigPath),
    /// Validate the config and print what it resolves to.
    Check(ConfigPath),
    /// Fetch once, validate, write every non-socket sink, and exit.
    Once(ConfigPath),
    /// A self-contained demo: a built-in backend that rotates its token every 20 s, the daemon,
    /// and sinks in a temporary directory.
    Demo,
    /// Print the current token (for scripts and credential helpers).
    Token {
        #[command(flatten)]
        socket: SocketPath,
        /// Print the token object instead of the token alone.
        #[arg(long)]
        json: bool,
    },
    /// Report that the backend rejected the token; print the fresh one.
    #[command(name = "report-401")]
    Report401 {
        #[command(flatten)]
        socket: SocketPath,
        /// The version that was rejected (default: the current one).
        #[arg(long)]
        version: Option<u64>,
    },
    /// Force a fetch now.
    Refresh(SocketPath),
    /// A short summary of the daemon's state, or the /v1/status JSON.
    Status {
        #[command(flatten)]
        socket: SocketPath,
        #[arg(long)]
        json: bool,
    },
    /// Print each new version as it arrives (never the token itself).
    Watch(SocketPath),
}

#[derive(Args)]
struct SocketPath {
    /// The daemon's socket.
    #[arg(long, env = "MCP_TOKEN_SYNC_SOCKET", default_value = "/run/mcp-token-sync/api.sock")]
    socket: PathBuf,
}

#[derive(Args)]
struct ConfigPath {
    /// The configuration file.
    #[arg(long, env = "MCP_TOKEN_SYNC_CONFIG", default_value = config::DEFAULT_PATH)]
    config: PathBuf,
}

/// DESIGN §8: 0 success, 1 runtime failure, 2 usage or configuration error.
const RUNTIME_FAILURE: u8 = 1;
const CONFIG_ERROR: u8 = 2;

/// A verb's outcome: `Err` carries the exit code, its message already printed.
type Outcome = Result<(), ExitCode>;

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let logs = LogChoice {
        format: cli.log_format.map(|f| if f == "json" { LogFormat::Json } else { LogFormat::Text }),
        level: cli.log_level,
    };
    let outcome = match cli.command {
        Command::Run(c) => run(&c.config, &logs),
        Command::Check(c) => check(&c.config),
        Command::Once(c) => once(&c.config, &logs),
        Command::Demo => demo(&logs),
        Command::Token { socket, json } => client_verb(&socket.socket, |c| token(c, json)),
        Command::Report401 { socket, version } => client_verb(&socket.socket, |c| report_401(c, version)),
        Command::Refresh(socket) => client_verb(&socket.socket, refresh),
        Command::Status { socket, json } => client_verb(&socket.socket, |c| status(c, json)),
        Command::Watch(socket) => client_verb(&socket.socket, watch),
    };
    outcome.err().unwrap_or(ExitCode::SUCCESS)
}

fn fail(code: u8, message: impl std::fmt::Display) -> ExitCode {
    eprintln!("mcp-token-sync: {message}");
    ExitCode::from(code)
}

/// Loads and fully checks the config, as every config-reading verb does.
fn load(path: &Path) -> Result<(Config, Parts), ExitCode> {
    let config = config::load(path).map_err(|e| fail(CONFIG_ERROR, e))?;
    let parts =
        Parts::build(config.clone()).map_err(|e| fail(CONFIG_ERROR, format!("{}: {e}", path.display())))?;
    Ok((config, parts))
}

/// Common start of the verbs that hold the token: logs, process hardening, the runtime.
fn start(logs: &LogChoice, configured: LogFormat) -> Result<tokio::runtime::Runtime, ExitCode> {
    logs.init(configured);
    process::harden().map_err(|e| fail(RUNTIME_FAILURE, format!("cannot disable core dumps: {e}")))?;
    if let Err(e) = process::raise_fd_limit() {
        tracing::warn!("cannot raise the open-file limit, sockets may run out of descriptors: {e}");
    }
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("the tokio runtime starts"))
}

/// Runs a long-lived future, then gives blocking sink writes a moment before the process exits.
fn block_on_then_stop<T>(rt: tokio::runtime::Runtime, work: impl std::future::Future<Output = T>) -> T {
    let result = rt.block_on(work);
    rt.shutdown_timeout(std::time::Duration::from_millis(500));
    result
}

fn run(path: &Path, logs: &LogChoice) -> Outcome {
    let (config, parts) = load(path)?;
    let rt = start(logs, config.daemon.log_format)?;
    block_on_then_stop(rt, daemon::serve(path.to_owned(), parts)).map_err(|e| fail(RUNTIME_FAILURE, e))
}

fn check(path: &Path) -> Outcome {
    let (config, _) = load(path)?;
    let resolved = toml::to_string(&config).expect("the config serializes");
    println!("# {} is valid. Resolved, with defaults:\n\n{resolved}", path.display());
    Ok(())
}

fn once(path: &Path, logs: &LogChoice) -> Outcome {
    let (config, parts) = load(path)?;
    let rt = start(logs, config.daemon.log_format)?;
    rt.block_on(daemon::once(parts)).map_err(|e| fail(RUNTIME_FAILURE, e))
}

fn demo(logs: &LogChoice) -> Outcome {
    let rt = start(logs, LogFormat::Text)?;
    block_on_then_stop(rt, demo::run()).map_err(|e| fail(RUNTIME_FAILURE, format!("demo: {e:#}")))
}

/// Runs a client verb on a small runtime of its own.
fn client_verb<F: std::future::Future<Output = Outcome>>(
    socket: &Path,
    verb: impl FnOnce(Client) -> F,
) -> Outcome {
    let rt =
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("the tokio runtime starts");
    rt.block_on(verb(Client::new(socket)))
}

async fn call(client: &Client, method: Method, path: &str, body: Vec<u8>) -> Result<Answer, ExitCode> {
    client.call(method, path, body).await.map_err(|e| fail(RUNTIME_FAILURE, e))
}

/// Writes the answer's body (which holds the token) and a newline to stdout, as it is.
fn print_secret(answer: &Answer) -> Outcome {
    let mut out = std::io::stdout().lock();
    out.write_all(&answer.body)
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

async fn token(client: Client, json: bool) -> Outcome {
    let path = if json { "/v1/token" } else { "/v1/token?format=raw" };
    let answer = call(&client, Method::GET, path, Vec::new()).await?;
    expect_ok(&answer, "no valid token")?;
    print_secret(&answer)
}

async fn report_401(client: Client, version: Option<u64>) -> Outcome {
    let body =
        version.map(|v| serde_json::json!({ "version": v }).to_string().into_bytes()).unwrap_or_default();
    let answer = call(&client, Method::POST, "/v1/report-401", body).await?;
    expect_ok(&answer, "no fresh token")?;
    let object: Value = serde_json::from_slice(&answer.body).map_err(|e| fail(RUNTIME_FAILURE, e))?;
    if object["changed"] == Value::Bool(false) {
        eprintln!(
            "mcp-token-sync: the backend still answers the same token; the 401 was probably not about the token"
        );
    }
    let token = object["token"].as_str().unwrap_or_default();
    let mut out = std::io::stdout().lock();
    writeln!(out, "{token}").map_err(|e| fail(RUNTIME_FAILURE, format!("cannot write to stdout: {e}")))
}

async fn refresh(client: Client) -> Outcome {
    let answer = call(&client, Method::POST, "/v1/refresh", Vec::new()).await?;
    expect_ok(&answer, "refresh failed")?;
    let result: Value = serde_json::from_slice(&answer.body).map_err(|e| fail(RUNTIME_FAILURE, e))?;
    let what = if result["changed"] == Value::Bool(true) { "a new token" } else { "unchanged" };
    println!("version {}: {what}", result["version"]);
    Ok(())
}

async fn status(client: Client, json: bool) -> Outcome {
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

/// `2026-…Z (in 5m)` for a time in the status JSON.
fn when(value: &Value, now: SystemTime) -> String {
    match value.as_str() {
        None => "-".into(),
        Some(text) => match clock::parse_rfc3339(text) {
            Some(t) if t >= now => format!("{text} (in {})", clock::until(now, t)),
            Some(t) => format!("{text} ({} ago)", clock::until(t, now)),
            None => text.into(),
        },
    }
}

fn status_summary(s: &Value, now: SystemTime) -> String {
    let mut out = format!(
        "state      {} (version {}, fingerprint {})\n",
        s["state"].as_str().unwrap_or("?"),
        s["version"],
        s["fingerprint"].as_str().unwrap_or("-")
    );
    out += &format!("agent      {}\n", s["agent_name"].as_str().unwrap_or("-"));
    out += &format!("expires    {}\n", when(&s["expires_at"], now));
    out += &format!("fetched    {}\n", when(&s["fetched_at"], now));
    out += &format!("next fetch {}\n", when(&s["next_refresh_at"], now));
    match s["last_error"].as_str() {
        Some(error) => out += &format!("failing    {} in a row: {error}\n", s["consecutive_failures"]),
        None => out += "failing    no\n",
    }
    for sink in s["sinks"].as_array().into_iter().flatten() {
        let health = match sink["error"].as_str() {
            Some(error) => format!("FAILING: {error}"),
            None if sink["last_written_at"].is_null() => "ok".into(),
            None => format!("ok, written {}", when(&sink["last_written_at"], now)),
        };
        out += &format!(
            "sink       {} {}: {health}\n",
            sink["type"].as_str().unwrap_or("?"),
            sink["path"].as_str().unwrap_or("?")
        );
    }
    out
}

async fn watch(client: Client) -> Outcome {
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
        event["agent_name"].as_str().unwrap_or("-"),
        when(&event["expires_at"], SystemTime::now())
    )
}
