//! Whatever a client writes to a proxy, it answers with well-formed HTTP, never shows the token
//! to the client, and keeps serving the next client. The real proxy listens on loopback TCP in
//! front of a small upstream that answers 200, 302 (`/redirect…`) or 401 (`/401…`); the engine
//! holds a valid token but does not run, so a refresh after a 401 fails at once (503). Shared
//! by the fuzz target and the corpus replay in `cargo test`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use super::held::{self, contains};
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use mcp_token_sync::config::SinkConfig;
use mcp_token_sync::proxy::{self, Upstream};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::{CancellationToken, DropGuard};

pub const TOKEN: &str = "fuzz-proxy-secret-9c2e51d0";
/// How long an answer may pause before we take it as complete.
pub const QUIET: Duration = Duration::from_millis(30);
/// For answers that must come, however slow the instrumented build.
const PATIENCE: Duration = Duration::from_secs(5);

pub struct Harness {
    proxy: SocketAddr,
    _stop: DropGuard,
}

/// An upstream that answers by path and never repeats what it was sent.
async fn upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let service = hyper::service::service_fn(|request: Request<hyper::body::Incoming>| async move {
                let path = request.uri().path();
                let mut response = Response::new(Full::new(Bytes::from_static(b"{\"ok\":true}")));
                if path.starts_with("/401") {
                    *response.status_mut() = hyper::StatusCode::UNAUTHORIZED;
                } else if path.starts_with("/redirect") {
                    *response.status_mut() = hyper::StatusCode::FOUND;
                    response.headers_mut().insert("location", "/elsewhere".parse().unwrap());
                }
                Ok::<_, Infallible>(response)
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    address
}

impl Harness {
    /// Starts the upstream and the proxy on the current tokio runtime.
    pub async fn start() -> Harness {
        let upstream_address = upstream().await;
        let listen = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let sink = format!(
            "[[sink]]\ntype = \"proxy\"\nlisten = \"{listen}\"\nupstream = \"http://{upstream_address}/api\"\n\
             timeout = \"2s\"\nallow_origins = [\"http://localhost:3000\"]\n"
        );
        let (config, token, _) = held::holding(TOKEN, &sink);
        let SinkConfig::Proxy(proxy_config) = config.sinks[0].clone() else { unreachable!() };
        let upstream = Upstream::new(&proxy_config).unwrap();
        let (server, _report) =
            proxy::server(&proxy_config, upstream, token.engine.clone(), token.metrics.clone()).unwrap();
        let stop = CancellationToken::new();
        tokio::spawn(server.serve(stop.clone()));
        let harness = Harness { proxy: listen, _stop: stop.drop_guard() };
        harness.assert_serving().await;
        harness
    }

    /// Writes `request` and reads until the proxy is done, or quiet for `quiet`. The writing side
    /// stays open: the proxy takes a client that closes it as gone, as nginx does. `PORT` in the
    /// request becomes the proxy's port, so kept inputs can name the proxy in their `Host` and
    /// reach the upstream wherever the proxy listens.
    pub async fn exchange(&self, request: &[u8], quiet: Duration) -> Vec<u8> {
        let port = self.proxy.port().to_string();
        let request = replace(request, b"PORT", port.as_bytes());
        let stream = TcpStream::connect(self.proxy).await.expect("the proxy accepts");
        held::exchange(stream, &request, false, quiet).await
    }

    /// Panics unless a plain request is answered by the upstream through the proxy.
    pub async fn assert_serving(&self) {
        let request = format!("GET /ping HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", self.proxy);
        let next = self.exchange(request.as_bytes(), PATIENCE).await;
        assert!(
            next.starts_with(b"HTTP/1.1 200"),
            "the next client got {:?}",
            String::from_utf8_lossy(&next)
        );
    }
}

/// Panics if an answer to any request breaks a property.
pub fn check_answer(answer: &[u8]) {
    assert!(
        !contains(answer, TOKEN.as_bytes()),
        "an answer shows the token: {}",
        String::from_utf8_lossy(answer)
    );
    for code in statuses(answer) {
        assert!(
            matches!(code, 200 | 302 | 400..=499 | 502 | 503 | 504),
            "answered {code}: {}",
            String::from_utf8_lossy(answer)
        );
    }
}

fn replace(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut rest = haystack;
    while let Some(at) = rest.windows(from.len()).position(|w| w == from) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(to);
        rest = &rest[at + from.len()..];
    }
    out.extend_from_slice(rest);
    out
}

/// The status codes of the answers in `stream` (each starts with `HTTP/1.1 NNN `).
fn statuses(stream: &[u8]) -> Vec<u16> {
    const START: &[u8] = b"HTTP/1.1 ";
    (0..stream.len())
        .filter(|&i| stream[i..].starts_with(START))
        .filter_map(|i| {
            let code = stream.get(i + START.len()..i + START.len() + 4)?;
            (code[3] == b' ').then_some(())?;
            std::str::from_utf8(&code[..3]).ok()?.parse().ok()
        })
        .collect()
}
