//! `type = "exec"`: runs a command after each new version (to restart a consumer that reads its
//! environment only at start, say).
//!
//! The token reaches the command only on stdin, as the `/v1/token` object: never in argv (seen by
//! every user in `ps`) nor in the environment (inherited by everything it starts). The
//! environment is cleared but for `PATH`, `HOME`, `LANG` and the version and expiry. The command
//! runs in a process group of its own, so a timeout kills whatever it started too.

use std::ffi::OsString;
use std::time::Duration;

use super::{Applied, SinkError};
use crate::child::{ChildError, Program};
use crate::clock;
use crate::config::ExecSinkConfig;
use crate::token::TokenState;

const KEPT_VARIABLES: [&str; 3] = ["PATH", "HOME", "LANG"];
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

#[derive(Debug, thiserror::Error)]
pub(crate) enum ExecError {
    #[error(transparent)]
    Run(#[from] ChildError),
    #[error("{program} {status}{stderr}")]
    Failed { program: String, status: std::process::ExitStatus, stderr: String },
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
        let mut env: Vec<(String, OsString)> = KEPT_VARIABLES
            .iter()
            .filter_map(|name| Some((name.to_string(), std::env::var_os(name)?)))
            .collect();
        if std::env::var_os("PATH").is_none() {
            env.push(("PATH".into(), DEFAULT_PATH.into()));
        }
        env.push(("MCP_TOKEN_SYNC_VERSION".into(), current.version.to_string().into()));
        env.push(("MCP_TOKEN_SYNC_EXPIRES_AT".into(), clock::rfc3339(current.expires_at).into()));
        let program = Program {
            argv: &self.command,
            env,
            stdin: Some(current.to_json()),
            stdout_limit: None,
            timeout: self.timeout,
            run_as: None,
        };
        let ran = program.run().await.map_err(ExecError::from)?;
        if ran.status.success() {
            return Ok(Applied::Ran);
        }
        let text = String::from_utf8_lossy(&ran.stderr).replace(current.token.expose(), "[token]");
        let stderr = match text.trim() {
            "" => String::new(),
            tail => format!("; stderr ends: {tail}"),
        };
        let program = self.program().to_owned();
        Err(ExecError::Failed { program, status: ran.status, stderr }.into())
    }
}
