//! `mcp-token-sync bridge` as a host runs it: a child with its stdin and stdout piped, driven
//! line by line. Every line it prints is checked to be one compact JSON-RPC message.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

use super::binary::BIN;

/// What the bridge's stdin and stdout are.
#[derive(Clone, Copy, Debug)]
pub enum Wiring {
    /// Pipes, as Python's subprocess and Rust's `Command` give.
    Pipes,
    /// A socketpair each, as Node and Electron hosts (libuv) give.
    Sockets,
}

pub struct Bridge {
    child: Child,
    stdin: Option<Box<dyn Write + Send>>,
    lines: mpsc::Receiver<String>,
    /// The bridge's stderr, to look for what must never be there.
    pub stderr: tempfile::NamedTempFile,
}

impl Bridge {
    /// `mcp-token-sync bridge ARGS…` (the URL last), on pipes.
    pub fn start(args: &[&str]) -> Bridge {
        Bridge::wired(Wiring::Pipes, args)
    }

    pub fn wired(wiring: Wiring, args: &[&str]) -> Bridge {
        let stderr = tempfile::NamedTempFile::new().unwrap();
        let mut command = Command::new(BIN);
        command.arg("bridge").args(args).stderr(stderr.reopen().unwrap());
        let (child, stdin, stdout): (Child, Box<dyn Write + Send>, Box<dyn Read + Send>) = match wiring {
            Wiring::Pipes => {
                let mut child = command.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
                let (stdin, stdout) = (child.stdin.take().unwrap(), child.stdout.take().unwrap());
                (child, Box::new(stdin), Box::new(stdout))
            }
            Wiring::Sockets => {
                let (ours_in, theirs_in) = UnixStream::pair().unwrap();
                let (ours_out, theirs_out) = UnixStream::pair().unwrap();
                let child = command
                    .stdin(Stdio::from(OwnedFd::from(theirs_in)))
                    .stdout(Stdio::from(OwnedFd::from(theirs_out)))
                    .spawn()
                    .unwrap();
                (child, Box::new(ours_in), Box::new(ours_out))
            }
        };
        let stdout = BufReader::new(stdout);
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Bridge { stdin: Some(stdin), child, lines, stderr }
    }

    pub fn send(&mut self, message: &Value) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        stdin.write_all(format!("{message}\n").as_bytes()).unwrap();
        stdin.flush().unwrap();
    }

    pub fn send_raw(&mut self, text: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        stdin.write_all(text.as_bytes()).unwrap();
    }

    /// The next line on stdout, parsed; fails the test if it is not one compact JSON-RPC 2.0
    /// message or does not come within `limit`.
    pub fn next(&self, limit: Duration) -> Value {
        let line =
            self.lines.recv_timeout(limit).unwrap_or_else(|_| panic!("no line on stdout within {limit:?}"));
        let message: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("stdout carried {line:?}, not JSON: {e}"));
        assert_eq!(message["jsonrpc"], "2.0", "stdout carried {line:?}");
        assert!(!space_between_tokens(&line), "not compact: {line:?}");
        message
    }

    /// The answer to request `id`, skipping notifications and requests from the server.
    pub fn answer(&self, id: u64, limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let message = self.next(deadline.saturating_duration_since(Instant::now()));
            if message.get("method").is_none() {
                assert_eq!(message["id"], id, "an answer to another request: {message}");
                return message;
            }
        }
    }

    /// The host's handshake: `initialize` (id 1), its answer, `notifications/initialized`.
    pub fn open_session(&mut self, limit: Duration) -> Value {
        self.send(&initialize(1));
        let answer = self.answer(1, limit);
        self.send(&initialized());
        answer
    }

    /// Nothing more on stdout for `quiet`.
    pub fn assert_silent(&self, quiet: Duration) {
        if let Ok(line) = self.lines.recv_timeout(quiet) {
            panic!("stdout carried {line:?}");
        }
    }

    /// Closes the host's end of stdin.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    pub fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), signal).unwrap();
    }

    /// How it exited, and how long after this call; fails the test after `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> (ExitStatus, Duration) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status, started.elapsed());
            }
            assert!(started.elapsed() < limit, "the bridge still runs after {limit:?}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(self.stderr.path()).unwrap()
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `json` has whitespace outside its strings.
fn space_between_tokens(json: &str) -> bool {
    let (mut in_string, mut escaped) = (false, false);
    for c in json.chars() {
        match (in_string, escaped, c) {
            (true, true, _) => escaped = false,
            (true, false, '\\') => escaped = true,
            (true, false, '"') => in_string = false,
            (false, _, '"') => in_string = true,
            (false, _, ' ' | '\t' | '\r' | '\n') => return true,
            _ => {}
        }
    }
    false
}

/// The host's `initialize` request, as Claude Desktop sends it.
pub fn initialize(id: u64) -> Value {
    serde_json::json!({"jsonrpc": "2.0", "id": id, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "desktop", "version": "1"}}})
}

pub fn initialized() -> Value {
    serde_json::json!({"jsonrpc": "2.0", "method": "notifications/initialized"})
}

pub fn call_tool(id: u64, name: &str) -> Value {
    serde_json::json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": name, "arguments": {}}})
}
