//! The command line (DESIGN §8): the verbs' definitions (`args`), the daemon verbs
//! (`daemon`), the client verbs that talk to a running daemon (`client`) and the stdio bridge
//! (`bridge`), `login`, with their exit codes: 0 success, 1 runtime failure, 2 usage or configuration error.

mod args;
mod bridge;
mod client;
mod daemon;
mod login;
mod summary;

use std::process::ExitCode;

use clap::Parser;

use crate::config::LogFormat;
use args::{Cli, Command};
pub use args::{DEFAULT_CONFIG, DEFAULT_SOCKET};

const RUNTIME_FAILURE: u8 = 1;
const CONFIG_ERROR: u8 = 2;

/// A verb's outcome: `Err` carries the exit code, its message already printed.
type Outcome = Result<(), ExitCode>;

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let logs = daemon::LogChoice {
        format: cli.log_format.map(|f| if f == "json" { LogFormat::Json } else { LogFormat::Text }),
        level: cli.log_level,
    };
    let outcome = match cli.command {
        Command::Run(c) => daemon::run(&c.config, &logs),
        Command::Check(c) => daemon::check(&c.config),
        Command::Once { config, token } => daemon::once(&config.config, token.as_deref(), &logs),
        Command::Demo => daemon::demo(&logs),
        Command::Token { socket, json, fresh } => client::token(&socket, json, fresh.max_age),
        Command::Report401 { socket, version } => client::report_401(&socket, version),
        Command::Refresh(socket) => client::refresh(&socket),
        Command::Status { socket, json } => client::status(&socket, json),
        Command::Watch(socket) => client::watch(&socket),
        Command::Headers { socket, header, scheme, fresh } => {
            client::headers(&socket, &header, scheme, fresh.max_age)
        }
        Command::Login { socket, device, browser } => login::login(
            &socket,
            if device {
                Some("device")
            } else if browser {
                Some("browser")
            } else {
                None
            },
        ),
        Command::Bridge { headers, timeout, url } => bridge::bridge(&url, &headers, timeout, &logs),
    };
    outcome.err().unwrap_or(ExitCode::SUCCESS)
}

/// Prints `message` as the one line a failing verb says, and gives its exit code.
fn fail(code: u8, message: impl std::fmt::Display) -> ExitCode {
    eprintln!("mcp-token-sync: {message}");
    ExitCode::from(code)
}
