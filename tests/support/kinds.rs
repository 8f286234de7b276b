//! A daemon with one token from a source of DESIGN §16 (a helper command, a GitHub App, a
//! metadata server, a token exchange), published end to end as users do: into a raw file
//! sink, through a proxy to an upstream that records what it was sent, and on a socket.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::fake_http::{Answer, FakeHttp};
use super::http::{self, Target};
use super::{DaemonProcess, free_port, wait_for};

pub const PATIENCE: Duration = Duration::from_secs(20);

pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub file: PathBuf,
    pub proxy: SocketAddr,
    /// The proxy's upstream: it answers 200 and records each request.
    pub upstream: FakeHttp,
    pub daemon: DaemonProcess,
}

impl Daemon {
    /// A daemon whose `[source]` (with any subtables) is `source`; `extra` is more TOML.
    pub fn start(source: &str, extra: &str) -> Daemon {
        Daemon::start_in(tempfile::tempdir().unwrap(), source, extra)
    }

    /// As [`Daemon::start`], in `dir` (which the source's files may be in already).
    pub fn start_in(dir: tempfile::TempDir, source: &str, extra: &str) -> Daemon {
        let upstream = FakeHttp::start(|_| Answer::json(200, serde_json::json!({"ok": true})));
        let (socket, file, proxy) =
            (dir.path().join("api.sock"), dir.path().join("token"), free_port("127.0.0.1"));
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                "[daemon]\nstate_dir = \"{state}\"\n\n[refresh]\njitter = 0.0\nmin_interval = \"1ms\"\n\
                 backoff_max = \"200ms\"\n\n[validate]\nmin_remaining = \"1s\"\n\n{source}\n\
                 [[sink]]\ntype = \"socket\"\npath = \"{socket}\"\n\n\
                 [[sink]]\ntype = \"file\"\npath = \"{file}\"\nformat = \"raw\"\n\n\
                 [[sink]]\ntype = \"proxy\"\nlisten = \"{proxy}\"\nupstream = \"{upstream}\"\n\n{extra}\n",
                state = dir.path().join("state").display(),
                socket = socket.display(),
                file = file.display(),
                upstream = upstream.url(),
            ),
        )
        .unwrap();
        let daemon = DaemonProcess::run(&config);
        wait_for("the socket", PATIENCE, || socket.exists().then_some(()));
        Daemon { dir, socket, file, proxy, upstream, daemon }
    }

    /// The token in the file sink, once it is there and not `not`.
    pub fn token(&self, not: Option<&str>) -> String {
        wait_for("the token file", PATIENCE, || super::read_new(&self.file, not).filter(|t| !t.is_empty()))
    }

    /// A request through the proxy: the Authorization header the upstream got with it.
    pub async fn through_proxy(&self) -> String {
        let target = Target::Tcp(self.proxy);
        let reply = http::send(&target, http::get(&target, "/mcp")).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        let seen = self.upstream.seen();
        let last = seen.last().expect("the upstream got the request");
        last.header("authorization").unwrap_or_default().to_owned()
    }

    /// `/v1/status`, once `accept` holds for it.
    pub async fn status_until(
        &self,
        what: &str,
        accept: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        super::api::get_until(&self.socket, "/v1/status", what, |r| accept(&r.json())).await.json()
    }

    /// The daemon's output holds none of `secrets`; nor does any file in its state directory
    /// but the state file, which keeps the token by design (DESIGN §10).
    pub fn keeps_secret(&self, secrets: &[&str]) {
        let output = self.daemon.output();
        for secret in secrets {
            assert!(!output.contains(secret), "the daemon logged a secret: {output}");
        }
        for entry in walk(&self.dir.path().join("state")) {
            if entry.file_name().is_some_and(|n| n == "state.json") {
                continue;
            }
            let text = std::fs::read_to_string(&entry).unwrap_or_default();
            for secret in secrets {
                assert!(!text.contains(secret), "{} holds a secret", entry.display());
            }
        }
    }
}

/// Every file below `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() { files.extend(walk(&path)) } else { files.push(path) }
    }
    files
}

/// An executable script at `path` (mode 0755).
pub fn script(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}
