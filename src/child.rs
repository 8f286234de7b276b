//! Running a program for the daemon: an exec sink's hook, a command source's helper (DESIGN §6,
//! §16). One way for both: argv without a shell; a cleared environment with only what is
//! given; its own process group, killed whole when the time is up (whatever it started dies
//! with it); stdout read up to a bound, stderr's end kept for the error; optionally as another
//! user, with that user's groups.

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::{Gid, Pid, Uid};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use zeroize::Zeroizing;

/// How much of stderr is kept.
const STDERR_TAIL: usize = 2048;

/// The user a program runs as, looked up before it starts.
#[derive(Debug, Clone)]
pub(crate) struct RunAs {
    pub uid: Uid,
    pub gid: Gid,
    pub groups: Vec<Gid>,
}

impl RunAs {
    /// `name`'s uid, primary group and every group it is in (the user database's).
    pub(crate) fn user(name: &str) -> Result<RunAs, String> {
        let user = nix::unistd::User::from_name(name)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("no user named {name:?}"))?;
        let c_name = std::ffi::CString::new(name).map_err(|e| e.to_string())?;
        let groups = nix::unistd::getgrouplist(&c_name, user.gid).map_err(|e| e.to_string())?;
        Ok(RunAs { uid: user.uid, gid: user.gid, groups })
    }
}

/// What to run, and how.
pub(crate) struct Program<'a> {
    pub argv: &'a [String],
    /// The whole environment it gets.
    pub env: Vec<(String, OsString)>,
    /// Written to its stdin, which is then closed; `None`: stdin is /dev/null.
    pub stdin: Option<Zeroizing<Vec<u8>>>,
    /// The most of stdout kept; `None`: stdout goes to /dev/null.
    pub stdout_limit: Option<usize>,
    pub timeout: Duration,
    pub run_as: Option<RunAs>,
}

/// How it ended.
pub(crate) struct Ran {
    pub status: ExitStatus,
    pub stdout: Zeroizing<Vec<u8>>,
    /// The last [`STDERR_TAIL`] bytes of stderr, zeroed on drop: a program may print a secret
    /// there.
    pub stderr: Zeroizing<Vec<u8>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ChildError {
    #[error("cannot start {program}: {source}")]
    Spawn { program: String, source: std::io::Error },
    #[error("{program} did not finish within {timeout} and was killed, with what it started")]
    TimedOut { program: String, timeout: String },
    #[error("{program} wrote more than {limit} KiB to stdout and was stopped")]
    TooMuch { program: String, limit: usize },
    #[error("waiting for {program}: {source}")]
    Wait { program: String, source: std::io::Error },
}

impl Program<'_> {
    pub(crate) async fn run(self) -> Result<Ran, ChildError> {
        let program = self.argv[0].clone();
        let mut command = Command::new(&program);
        command
            .args(&self.argv[1..])
            .env_clear()
            .envs(self.env)
            .stdin(if self.stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(if self.stdout_limit.is_some() { Stdio::piped() } else { Stdio::null() })
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        if let Some(user) = self.run_as {
            become_user(&mut command, user);
        }
        let mut child =
            command.spawn().map_err(|source| ChildError::Spawn { program: program.clone(), source })?;
        let group = child.id().map(|id| Pid::from_raw(id as i32));
        let (stdin, stdout, stderr) = (child.stdin.take(), child.stdout.take(), child.stderr.take());
        let input = self.stdin;
        let limit = self.stdout_limit.unwrap_or(0);
        let run = async {
            let write = async {
                if let (Some(mut stdin), Some(input)) = (stdin, input) {
                    // A program that does not read its stdin closes it: not an error of ours.
                    let _ = stdin.write_all(&input).await;
                }
            };
            let read = async {
                match stdout {
                    Some(stdout) => read_bounded(stdout, limit).await,
                    None => Some(Zeroizing::new(Vec::new())),
                }
            };
            let tail = async {
                match stderr {
                    Some(stderr) => read_tail(stderr).await,
                    None => Zeroizing::new(Vec::new()),
                }
            };
            let ((), out, err) = tokio::join!(write, read, tail);
            match out {
                Some(out) => Ok((child.wait().await, out, err)),
                None => Err(()),
            }
        };
        let outcome = tokio::time::timeout(self.timeout, run).await;
        let kill = || {
            if let Some(group) = group {
                let _ = killpg(group, Signal::SIGKILL);
            }
        };
        let (status, stdout, stderr) = match outcome {
            Ok(Ok(done)) => done,
            Ok(Err(())) => {
                kill();
                return Err(ChildError::TooMuch { program, limit: limit / 1024 });
            }
            Err(_) => {
                kill();
                let timeout = crate::config::duration_display(self.timeout);
                return Err(ChildError::TimedOut { program, timeout });
            }
        };
        let status = status.map_err(|source| ChildError::Wait { program, source })?;
        Ok(Ran { status, stdout, stderr })
    }
}

/// The exit as people say it: `exit status 3`, `killed by signal 9`.
pub(crate) fn exit_text(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        _ => status.to_string(),
    }
}

/// Drops to `user` (groups, then gid, then uid) in the child, before it runs the program:
/// std's own `uid()`/`gid()` run after `pre_exec` and clear the supplementary groups, which a
/// helper reading its user's files may need.
#[allow(unsafe_code)]
fn become_user(command: &mut Command, user: RunAs) {
    // SAFETY: the closure runs in the forked child before exec, and makes only the setgroups,
    // setgid and setuid system calls, which are async-signal-safe; it allocates nothing (the
    // groups were looked up before the fork) and touches no lock.
    unsafe {
        command.pre_exec(move || {
            nix::unistd::setgroups(&user.groups)?;
            nix::unistd::setgid(user.gid)?;
            nix::unistd::setuid(user.uid)?;
            Ok(())
        });
    }
}

/// Reads to the end, up to `limit` bytes; `None` when there is more.
async fn read_bounded(mut stream: impl AsyncRead + Unpin, limit: usize) -> Option<Zeroizing<Vec<u8>>> {
    // Reserved whole, so the buffer never reallocates and leaves a copy of a secret behind.
    let mut out = Zeroizing::new(Vec::with_capacity(limit + 1));
    let mut buf = Zeroizing::new([0u8; 4096]);
    loop {
        let n = stream.read(&mut buf[..]).await.unwrap_or(0);
        if n == 0 {
            return Some(out);
        }
        if out.len() + n > limit {
            return None;
        }
        out.extend_from_slice(&buf[..n]);
    }
}

/// Reads to the end, keeping the last [`STDERR_TAIL`] bytes.
async fn read_tail(mut stream: impl AsyncRead + Unpin) -> Zeroizing<Vec<u8>> {
    // Reserved whole (the tail never grows past it), so no reallocation leaves a copy behind.
    let mut tail = Zeroizing::new(Vec::with_capacity(STDERR_TAIL + 4096));
    let mut buf = Zeroizing::new([0u8; 4096]);
    while let Ok(n) = stream.read(&mut buf[..]).await {
        if n == 0 {
            break;
        }
        tail.extend_from_slice(&buf[..n]);
        let over = tail.len().saturating_sub(STDERR_TAIL);
        if over > 0 {
            // In place: drain moves the rest down, and the bytes beyond the new end are zeroed
            // when the buffer is (Zeroizing zeroes the whole capacity).
            tail.drain(..over);
        }
    }
    tail
}
