//! Real MCP parts for the tests: the official Python SDK's scripts in `tests/mcp/` as child
//! processes, and a FastMCP server that accepts only the backend's current token behind a
//! daemon's proxy sink.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::{Backend, api, wait_for};

pub const PATIENCE: Duration = Duration::from_secs(30);

/// A process of the test's (the MCP server, a client, the bridge), killed when the test ends
/// however it ends.
pub struct Process(pub Child);

impl Process {
    pub fn python(script: &str, args: &[&str]) -> Process {
        let child = Command::new("python3")
            .arg(script_path(script))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 with the MCP SDK (scripts/test installs it: pip install \"mcp<2\" uvicorn)");
        Process(child)
    }

    pub fn io(&mut self) -> (ChildStdin, BufReader<ChildStdout>) {
        (self.0.stdin.take().unwrap(), BufReader::new(self.0.stdout.take().unwrap()))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn script_path(script: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mcp").join(script)
}

/// The next JSON line a child prints (an empty line: it exited; its stderr is the test's).
pub fn next_line(lines: &mut BufReader<ChildStdout>) -> Value {
    let mut line = String::new();
    lines.read_line(&mut line).unwrap();
    serde_json::from_str(&line).unwrap_or_else(|_| panic!("the MCP client said {line:?}"))
}

/// The official SDK's MCP server, accepting only the backend's current token, and a daemon with
/// a proxy in front of it.
pub struct McpBehindProxy {
    pub backend: Backend,
    /// Where the server reads the token it accepts.
    pub token_file: PathBuf,
    pub proxy_url: String,
    pub d: api::WithSocket,
    server: Option<Process>,
    server_script: &'static str,
    server_args: Vec<String>,
    pub server_port: u16,
    pub dir: tempfile::TempDir,
}

impl McpBehindProxy {
    pub async fn start() -> McpBehindProxy {
        McpBehindProxy::refusing_with(401).await
    }

    /// With a server that refuses a stale token with `status` (401, or 403 with a Bearer
    /// `invalid_token` challenge).
    pub async fn refusing_with(status: u16) -> McpBehindProxy {
        McpBehindProxy::serving("server.py", &[&status.to_string()]).await
    }

    /// With `script` (in tests/mcp/) as the server, started as `script TOKEN_FILE PORT args…`.
    pub async fn serving(script: &'static str, args: &[&str]) -> McpBehindProxy {
        let backend = Backend::start().await;
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("current-token");
        std::fs::write(&token_file, backend.token()).unwrap();
        let server_port = super::free_port("127.0.0.1").port();
        let proxy_port = super::free_port("127.0.0.1").port();
        let d = api::start(
            &backend,
            &format!(
                "[[sink]]\ntype = \"proxy\"\nlisten = \"127.0.0.1:{proxy_port}\"\n\
                 upstream = \"http://127.0.0.1:{server_port}\"\nheader = \"X-Google-MCP-Token\"\n"
            ),
        );
        api::get_until(&d.socket, "/v1/token?format=raw", "a token", |r| r.status == 200).await;
        let proxy_url = format!("http://127.0.0.1:{proxy_port}/mcp");
        let mut m = McpBehindProxy {
            backend,
            token_file,
            proxy_url,
            d,
            server: None,
            server_script: script,
            server_args: args.iter().map(|a| a.to_string()).collect(),
            server_port,
            dir,
        };
        m.start_server();
        m
    }

    /// Starts the MCP server (again: a new process that knows no session of the old one's).
    pub fn start_server(&mut self) {
        self.server = None;
        let mut args = vec![self.token_file.display().to_string(), self.server_port.to_string()];
        args.extend(self.server_args.iter().cloned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.server = Some(Process::python(self.server_script, &args));
        let port = self.server_port;
        wait_for("the MCP server", PATIENCE, || std::net::TcpStream::connect(("127.0.0.1", port)).ok());
    }

    /// Stops the MCP server; its port refuses connections until `start_server`.
    pub fn stop_server(&mut self) {
        self.server = None;
    }

    /// The backend issues a new token, and the MCP server accepts only that one from now on.
    /// Returns the backend's fetches so far.
    pub fn rotate(&self) -> usize {
        let fresh = self.backend.rotate();
        std::fs::write(&self.token_file, &fresh).unwrap();
        self.backend.fetches()
    }
}
