//! The daemon binary as a child process, with its output captured for assertions.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

pub const BIN: &str = env!("CARGO_BIN_EXE_mcp-token-sync");

/// The daemon that [`DaemonProcess`] runs: `$MCP_TOKEN_SYNC_BIN` when set (`scripts/bench` sets
/// it to the release build, which the bench profile cannot reproduce: cargo builds benchmarks
/// with unwinding, the release profile aborts on panic), else [`BIN`].
pub fn daemon_binary() -> String {
    std::env::var("MCP_TOKEN_SYNC_BIN").unwrap_or_else(|_| BIN.to_owned())
}

pub struct DaemonProcess {
    child: Child,
    output: Arc<Mutex<String>>,
}

impl DaemonProcess {
    /// `mcp-token-sync run --config PATH`.
    pub fn run(config: &Path) -> DaemonProcess {
        DaemonProcess::spawn(&["run", "--config", config.to_str().unwrap()])
    }

    pub fn spawn(args: &[&str]) -> DaemonProcess {
        DaemonProcess::spawn_with_env(args, &[])
    }

    /// With extra environment variables.
    pub fn spawn_with_env(args: &[&str], env: &[(&str, &str)]) -> DaemonProcess {
        DaemonProcess::start(Command::new(daemon_binary()), args, env)
    }

    /// Run by `wrapper` (a command and its arguments, the daemon's path and `args` after them):
    /// a profiler, say.
    pub fn spawn_under(wrapper: &[&str], args: &[&str], env: &[(&str, &str)]) -> DaemonProcess {
        let mut command = Command::new(wrapper[0]);
        command.args(&wrapper[1..]).arg(daemon_binary());
        DaemonProcess::start(command, args, env)
    }

    /// As another user (and group of the same number, no other groups): needs root.
    pub fn spawn_as(uid: u32, args: &[&str]) -> DaemonProcess {
        let mut setpriv = Command::new("setpriv");
        setpriv
            .args([&format!("--reuid={uid}"), &format!("--regid={uid}"), "--clear-groups"])
            .arg(daemon_binary());
        DaemonProcess::start(setpriv, args, &[])
    }

    fn start(mut command: Command, args: &[&str], env: &[(&str, &str)]) -> DaemonProcess {
        let mut child = command
            .args(args)
            .env("MCP_TOKEN_SYNC_LOG", "debug")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the daemon binary");
        let output = Arc::new(Mutex::new(String::new()));
        for mut stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let output = output.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    output.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            });
        }
        DaemonProcess { child, output }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    pub fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), signal).expect("signal the daemon");
    }

    /// The exit status, if the process has ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// Waits for the process to exit, failing the test after `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        super::wait_for("the daemon to exit", limit, || self.child.try_wait().unwrap())
    }

    /// Waits until the output contains `text`.
    pub fn wait_output(&self, text: &str, limit: Duration) {
        super::wait_for(&format!("{text:?} in the daemon's output"), limit, || {
            self.output().contains(text).then_some(())
        });
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a verb to completion: (exit status, stdout + stderr).
pub fn run_verb(args: &[&str]) -> (ExitStatus, String) {
    let out = Command::new(BIN).args(args).stdin(Stdio::null()).output().expect("run the binary");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status, text)
}

/// `curl -s` with `args` as another user (and group of the same number, no other groups): the
/// HTTP status it got, as text. Needs root.
pub fn curl_as(uid: u32, args: &[&str]) -> String {
    let out = Command::new("setpriv")
        .args([&format!("--reuid={uid}"), &format!("--regid={uid}"), "--clear-groups"])
        .args(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .args(args)
        .output()
        .expect("setpriv and curl are installed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A child process of the test's (a server, a daemon whose pipes the test holds), killed when
/// the test ends however it ends.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
