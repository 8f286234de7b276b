//! Talking to the daemon's socket, and starting a daemon that has one.

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::Method;
use hyper::header::HeaderMap;
use mcp_token_sync::client::Client;

use super::{Backend, DaemonProcess, TestConfig, file_sink, wait_for};

/// A response as the tests look at it.
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

pub async fn request(socket: &std::path::Path, method: Method, path: &str, body: &[u8]) -> Reply {
    let response = Client::new(socket).open(method, path, body.to_vec()).await.expect("the daemon answers");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Reply { status, headers, body: String::from_utf8_lossy(&body).into_owned() }
}

/// A GET with one extra header.
pub async fn request_with(socket: &std::path::Path, path: &str, header: (&str, &str)) -> Reply {
    use hyper_util::rt::TokioIo;
    let stream = tokio::net::UnixStream::connect(socket).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(connection);
    let request = hyper::Request::get(path)
        .header("host", "localhost")
        .header(header.0, header.1)
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Reply { status, headers, body: String::from_utf8_lossy(&body).into_owned() }
}

/// GETs `path` until `accept` holds for the answer, and returns it; fails the test after 10 s.
pub async fn get_until(
    socket: &std::path::Path,
    path: &str,
    what: &str,
    accept: impl Fn(&Reply) -> bool,
) -> Reply {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let reply = get(socket, path).await;
        if accept(&reply) {
            return reply;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}; last answer {} {}",
            reply.status,
            reply.body
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The status entry of the sink whose path contains `needle`, once `ready` holds for it.
pub async fn sink_status(
    socket: &std::path::Path,
    needle: &str,
    ready: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let entry = |reply: &Reply| {
        reply.json()["sinks"]
            .as_array()?
            .iter()
            .find(|s| s["path"].as_str().is_some_and(|p| p.contains(needle)))
            .filter(|e| ready(e))
            .cloned()
    };
    let reply = get_until(socket, "/v1/status", &format!("sink {needle}"), |r| entry(r).is_some()).await;
    entry(&reply).expect("accepted above")
}

/// The value of an unlabelled metric.
pub async fn metric(socket: &std::path::Path, name: &str) -> f64 {
    let metrics = get(socket, "/metrics").await.body;
    let value = metrics.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' '));
    value.and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("no metric {name} in:\n{metrics}"))
}

pub async fn get(socket: &std::path::Path, path: &str) -> Reply {
    request(socket, Method::GET, path, b"").await
}

pub async fn post(socket: &std::path::Path, path: &str, body: &[u8]) -> Reply {
    request(socket, Method::POST, path, body).await
}

/// A daemon with a raw file sink and a socket, against `backend`.
pub struct WithSocket {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub file: PathBuf,
    pub daemon: DaemonProcess,
}

pub fn start(backend: &Backend, extra: &str) -> WithSocket {
    start_tweaked(backend, extra, |config| config)
}

/// Like [`start`], with the config changed by `tweak` first.
pub fn start_tweaked(
    backend: &Backend,
    extra: &str,
    tweak: impl FnOnce(TestConfig) -> TestConfig,
) -> WithSocket {
    start_logging(backend, extra, tweak, "debug")
}

/// Like [`start`], logging only warnings: what a benchmark measures, not what a test reads.
pub fn start_quiet(backend: &Backend, extra: &str) -> WithSocket {
    start_logging(backend, extra, |config| config, "warn")
}

fn start_logging(
    backend: &Backend,
    extra: &str,
    tweak: impl FnOnce(TestConfig) -> TestConfig,
    level: &str,
) -> WithSocket {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("api.sock");
    let file = dir.path().join("token");
    let config = dir.path().join("config.toml");
    let sinks = format!(
        "{}[[sink]]\ntype = \"socket\"\npath = \"{}\"\n{extra}",
        file_sink(&file, "raw"),
        socket.display()
    );
    fs::write(&config, tweak(TestConfig::new(backend).sinks(&sinks)).text()).unwrap();
    let args = ["run", "--config", config.to_str().unwrap()];
    let mut daemon = DaemonProcess::spawn_with_env(&args, &[("MCP_TOKEN_SYNC_LOG", level)]);
    wait_for("the socket", Duration::from_secs(10), || {
        if let Some(status) = daemon.exited() {
            panic!("the daemon exited ({status}):\n{}", daemon.output());
        }
        socket.exists().then_some(())
    });
    WithSocket { dir, socket, file, daemon }
}
