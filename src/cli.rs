//! The command line (DESIGN §8): verbs, their exit codes, and the hand-off to the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::{self, Config, LogFormat};
use crate::daemon::{self, Parts};
use crate::{demo, logging, process};

#[derive(Parser)]
#[command(
    name = "mcp-token-sync",
    version,
    about = "Keeps a short-lived API token fresh and hands it to the programs that need it"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
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
    let outcome = match Cli::parse().command {
        Command::Run(c) => run(&c.config),
        Command::Check(c) => check(&c.config),
        Command::Once(c) => once(&c.config),
        Command::Demo => demo(),
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
fn start(format: LogFormat) -> Result<tokio::runtime::Runtime, ExitCode> {
    logging::init(format);
    process::harden().map_err(|e| fail(RUNTIME_FAILURE, format!("cannot disable core dumps: {e}")))?;
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

fn run(path: &Path) -> Outcome {
    let (config, parts) = load(path)?;
    let rt = start(config.daemon.log_format)?;
    block_on_then_stop(rt, daemon::serve(parts))
        .map_err(|e| fail(RUNTIME_FAILURE, format!("cannot install signal handlers: {e}")))
}

fn check(path: &Path) -> Outcome {
    let (config, _) = load(path)?;
    let resolved = toml::to_string(&config).expect("the config serializes");
    println!("# {} is valid. Resolved, with defaults:\n\n{resolved}", path.display());
    Ok(())
}

fn once(path: &Path) -> Outcome {
    let (config, parts) = load(path)?;
    let rt = start(config.daemon.log_format)?;
    rt.block_on(daemon::once(parts)).map_err(|e| fail(RUNTIME_FAILURE, e))
}

fn demo() -> Outcome {
    let rt = start(LogFormat::Text)?;
    block_on_then_stop(rt, demo::run()).map_err(|e| fail(RUNTIME_FAILURE, format!("demo: {e:#}")))
}
