//! A plain HTTP/1.1 client for tests that must control every header (`Host`, `Origin`, hop-by-hop
//! ones): hyper's connection API over TCP or a Unix socket, one connection per request.

use std::net::SocketAddr;
use std::path::PathBuf;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

use super::api::Reply;

#[derive(Clone, Debug)]
pub enum Target {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

/// Sends `request` on a new connection; the answer with its body still streaming.
pub async fn open(target: &Target, request: Request<Full<Bytes>>) -> Response<Incoming> {
    macro_rules! over {
        ($stream:expr) => {{
            let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new($stream))
                .await
                .expect("an HTTP connection");
            tokio::spawn(connection);
            sender.send_request(request).await.expect("an answer")
        }};
    }
    match target {
        Target::Tcp(address) => over!(tokio::net::TcpStream::connect(address).await.expect("connect")),
        Target::Unix(path) => over!(tokio::net::UnixStream::connect(path).await.expect("connect")),
    }
}

/// Sends `request` and reads the whole answer.
pub async fn send(target: &Target, request: Request<Full<Bytes>>) -> Reply {
    let response = open(target, request).await;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.expect("the whole body").to_bytes();
    Reply { status, headers, body: String::from_utf8_lossy(&body).into_owned() }
}

/// A request with `Host` set as a client of `target` would.
pub fn request(target: &Target, method: &str, path: &str) -> hyper::http::request::Builder {
    let host = match target {
        Target::Tcp(address) => address.to_string(),
        Target::Unix(_) => "localhost".to_owned(),
    };
    Request::builder().method(method).uri(path).header("host", host)
}

/// A GET with no other header.
pub fn get(target: &Target, path: &str) -> Request<Full<Bytes>> {
    request(target, "GET", path).body(Full::new(Bytes::new())).unwrap()
}

/// Until the proxy at `target` forwards `GET /ping` with a 200 (the listener up, a token held);
/// fails the test after 10 s with the daemon's output.
pub async fn until_proxy_serves(target: &Target, daemon: &super::DaemonProcess) {
    let serves = serves(target, "/ping", std::time::Duration::from_secs(10)).await;
    assert!(serves, "the proxy never served:\n{}", daemon.output());
}

/// Whether `target` answers `GET path` with a 200 within `limit`, asked every 10 ms.
pub async fn serves(target: &Target, path: &str, limit: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let listening = match target {
            Target::Tcp(address) => tokio::net::TcpStream::connect(address).await.is_ok(),
            Target::Unix(socket) => tokio::net::UnixStream::connect(socket).await.is_ok(),
        };
        if listening && send(target, get(target, path)).await.status == 200 {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}
