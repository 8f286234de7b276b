//! `type = "exec"`: runs a command after each new version (to restart a consumer that reads its
//! environment only at start, say).
//!
//! The token reaches the command only on stdin, as the `/v1/token` object: never in argv (seen by
//! every user in `ps`) nor in the environment (inherited by everything it starts). The
//! environment is cleared but for `PATH`, `HOME`, `LANG` and the version and expiry. The command
//! runs in a process group of its own, so a timeout kills whatever it started too.

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use super::{Applied, SinkError};
use crate::clock;
use crate::config::{ExecSinkConfig, duration_display};
use crate::token::TokenState;

/// How much of the command's stderr is kept for the log and status.
const STDERR_TAIL: usize = 2048;
const KEPT_VARIABLES: [&str; 3] = ["PATH", "HOME", "LANG"];
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

#[derive(Debug, thiserror::Error)]
pub(crate) enum ExecError {
    #[error("cannot start {program}: {source}")]
    Spawn { program: String, source: std::io::Error },
    #[error("{program} {status}{stderr}")]
    Failed { program: String, status: ExitStatus, stderr: String },
    #[error("{program} did not finish within {timeout} and was killed")]
    TimedOut { program: String, timeout: String },
    #[error("waiting for {program}: {source}")]
    Wait { program: String, source: std::io::Error },
}

pub(crate) struct ExecSink {
    command: Vec<String>,
    timeout: Duration,
}

impl ExecSink {
    pub(crate) fn new(c: &ExecSinkConfig) -> ExecSink {
        ExecSink { command: c.command.clone(), timeout: c.timeout }
    }

    pub(crate) fn program(&self) -> &str {
        &self.command[0]
    }

    pub(crate) async fn apply(&self, state: &TokenState) -> Result<Applied, SinkError> {
        let TokenState::Valid(current) = state else { return Ok(Applied::Nothing) };
        let program = self.program().to_owned();
        let mut command = Command::new(&program);
        command.args(&self.command[1..]).env_clear();
        for name in KEPT_VARIABLES {
            if let Some(value) = std::env::var_os(name) {
                command.env(name, value);
            }
        }
        if std::env::var_os("PATH").is_none() {
            command.env("PATH", DEFAULT_PATH);
        }
        command
            .env("MCP_TOKEN_SYNC_VERSION", current.version.to_string())
            .env("MCP_TOKEN_SYNC_EXPIRES_AT", clock::rfc3339(current.expires_at))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child =
            command.spawn().map_err(|source| ExecError::Spawn { program: program.clone(), source })?;
        let group = child.id().map(|id| Pid::from_raw(id as i32));
        let stdin = child.stdin.take();
        let stderr = child.stderr.take();
        let object = current.to_json();

        let run = async {
            if let Some(mut stdin) = stdin {
                // A command that does not read its stdin closes it: not an error of ours.
                let _ = stdin.write_all(&object).await;
            }
            let tail = match stderr {
                Some(stderr) => read_tail(stderr).await,
                None => Vec::new(),
            };
            (child.wait().await, tail)
        };
        let outcome = tokio::time::timeout(self.timeout, run).await;
        let Ok((status, tail)) = outcome else {
            if let Some(group) = group {
                let _ = killpg(group, Signal::SIGKILL);
            }
            let _ = child.wait().await;
            return Err(ExecError::TimedOut { program, timeout: duration_display(self.timeout) }.into());
        };
        let status = status.map_err(|source| ExecError::Wait { program: program.clone(), source })?;
        if status.success() {
            return Ok(Applied::Ran);
        }
        let text = String::from_utf8_lossy(&tail).replace(current.token.expose(), "[token]");
        let stderr = match text.trim() {
            "" => String::new(),
            tail => format!("; stderr ends: {tail}"),
        };
        Err(ExecError::Failed { program, status, stderr }.into())
    }
}

/// Reads to the end, keeping the last [`STDERR_TAIL`] bytes.
async fn read_tail(mut stream: impl tokio::io::AsyncRead + Unpin) -> Vec<u8> {
    let mut tail = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            break;
        }
        tail.extend_from_slice(&buf[..n]);
        if tail.len() > STDERR_TAIL {
            tail.drain(..tail.len() - STDERR_TAIL);
        }
    }
    tail
}
