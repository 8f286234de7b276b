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

pub fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Run(c) => run(&c.config),
        Command::Check(c) => check(&c.config),
        Command::Once(c) => once(&c.config),
        Command::Demo => demo(),
    }
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

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("the tokio runtime starts")
}

/// Common start of the verbs that hold the token.
fn start(format: LogFormat) -> Result<tokio::runtime::Runtime, ExitCode> {
    logging::init(format);
    process::harden().map_err(|e| fail(RUNTIME_FAILURE, format!("cannot disable core dumps: {e}")))?;
    Ok(runtime())
}

fn run(path: &Path) -> ExitCode {
    let (config, parts) = match load(path) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let rt = match start(config.daemon.log_format) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let result = rt.block_on(daemon::serve(parts));
    rt.shutdown_timeout(std::time::Duration::from_millis(500));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(RUNTIME_FAILURE, format!("cannot install signal handlers: {e}")),
    }
}

fn check(path: &Path) -> ExitCode {
    let (config, _) = match load(path) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let resolved = toml::to_string(&config).expect("the config serializes");
    println!("# {} is valid. Resolved, with defaults:\n\n{resolved}", path.display());
    ExitCode::SUCCESS
}

fn once(path: &Path) -> ExitCode {
    let (config, _) = match load(path) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let rt = match start(config.daemon.log_format) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match rt.block_on(daemon::once(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(RUNTIME_FAILURE, e),
    }
}

fn demo() -> ExitCode {
    let rt = match start(LogFormat::Text) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let result = rt.block_on(demo::run());
    rt.shutdown_timeout(std::time::Duration::from_millis(500));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(RUNTIME_FAILURE, format!("demo: {e:#}")),
    }
}
