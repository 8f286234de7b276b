//! `type = "command"` (DESIGN §16): a helper's output is the answer (`az account
//! get-access-token`, `gcloud auth print-access-token`, `op`, `vault`, a company script). The
//! helper runs as `child` runs every program: argv without a shell, stdin /dev/null, a cleared
//! environment (a `PATH`, the `HOME`, `USER` and `LOGNAME` of the user it runs as, `LANG`, and
//! `environment`), its own process group killed whole at `timeout`, stdout read up to 64 KiB. Exit
//! 0 is required; otherwise the fetch fails naming the exit and the first line of stderr,
//! printable and cut to 200 characters, and stderr goes nowhere else (a helper may print
//! secrets there).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::time::{Duration, SystemTime};

use super::{Answer, MAX_BODY_BYTES};
use crate::child::{ChildError, Program, RunAs, exit_text};
use crate::config::{Format, SourceConfig};

const PATH: &str = "/usr/local/bin:/usr/bin:/bin";
/// How much of stderr's first line a failure shows.
const STDERR_CHARS: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Run(ChildError),
    #[error("cannot run it as {user}: {reason}")]
    User { user: String, reason: String },
    #[error("{error} (run as {user})")]
    AsUser { user: String, error: ChildError },
    #[error("{program} ended with {status}{stderr}")]
    Failed { program: String, status: String, stderr: String },
}

pub(super) struct Command {
    argv: Vec<String>,
    user: Option<String>,
    environment: BTreeMap<String, String>,
    pub(super) format: Format,
}

impl Command {
    pub(super) fn new(config: &SourceConfig) -> Command {
        Command {
            argv: config.command.clone(),
            user: config.user.clone(),
            environment: config.environment.clone(),
            format: config.format.unwrap_or_default(),
        }
    }

    /// The program, as status shows it (argv[0]; the arguments may say too much).
    pub(super) fn program(&self) -> &str {
        &self.argv[0]
    }

    /// Runs the helper once; its stdout when it exits 0.
    pub(super) async fn fetch(&self, timeout: Duration) -> Result<Answer, CommandError> {
        let (run_as, name, home) = match &self.user {
            Some(user) => {
                let failed = |reason: String| CommandError::User { user: user.clone(), reason };
                let run_as = RunAs::user(user).map_err(failed)?;
                let home = nix::unistd::User::from_name(user).ok().flatten().map(|u| u.dir);
                (Some(run_as), user.clone(), home)
            }
            None => {
                let own = nix::unistd::User::from_uid(nix::unistd::geteuid()).ok().flatten();
                let name = own.as_ref().map(|u| u.name.clone()).unwrap_or_default();
                (None, name, own.map(|u| u.dir))
            }
        };
        let mut env: Vec<(String, OsString)> = vec![
            ("PATH".into(), PATH.into()),
            ("USER".into(), name.clone().into()),
            ("LOGNAME".into(), name.into()),
            ("LANG".into(), "C.UTF-8".into()),
        ];
        if let Some(home) = home {
            env.push(("HOME".into(), home.into_os_string()));
        }
        env.extend(self.environment.iter().map(|(k, v)| (k.clone(), v.into())));
        let program = Program {
            argv: &self.argv,
            env,
            stdin: None,
            stdout_limit: Some(MAX_BODY_BYTES),
            timeout,
            run_as,
        };
        let ran = program.run().await.map_err(|error| match &self.user {
            Some(user) => CommandError::AsUser { user: user.clone(), error },
            None => CommandError::Run(error),
        })?;
        if !ran.status.success() {
            let first = String::from_utf8_lossy(&ran.stderr);
            let first = first.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or_default();
            let first = mask_printed(first, &ran.stdout);
            let stderr = match crate::text::printable(&first, STDERR_CHARS) {
                line if line.is_empty() => String::new(),
                line => format!("; stderr: {line}"),
            };
            return Err(CommandError::Failed {
                program: self.program().to_owned(),
                status: exit_text(ran.status),
                stderr,
            });
        }
        Ok(Answer { body: ran.stdout, received_at: SystemTime::now() })
    }
}

/// The shortest run of stdout that is masked in stderr: a token is longer, a word may be shorter.
const MASKED_RUN: usize = 16;

/// `line` with every long run of what the helper printed on stdout masked: a helper that
/// printed a token and then failed may quote it in its error.
fn mask_printed(line: &str, stdout: &[u8]) -> String {
    let printed = std::str::from_utf8(stdout).unwrap_or_default();
    let runs = printed.split(|c: char| c.is_whitespace() || "\"',:;{}[]()=".contains(c));
    runs.filter(|run| run.len() >= MASKED_RUN)
        .fold(line.to_owned(), |line, run| line.replace(run, "[stdout]"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn what_the_helper_printed_is_masked_in_its_error() {
        let stdout = br#"{"accessToken": "eyJ0eXAiOiJKV1Qi.c2VjcmV0LXRva2Vu.c2ln", "tokenType": "Bearer"}"#;
        let line = "ERROR: token eyJ0eXAiOiJKV1Qi.c2VjcmV0LXRva2Vu.c2ln was refused (tokenType Bearer)";
        assert_eq!(super::mask_printed(line, stdout), "ERROR: token [stdout] was refused (tokenType Bearer)");
        assert_eq!(super::mask_printed(line, b"\xff\xfe"), line, "nothing printed, nothing masked");
    }
}
