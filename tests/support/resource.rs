//! An MCP server's resource side as OAuth sees it: a real HTTP/1.1 server on 127.0.0.1 that
//! takes only access tokens the authorization server says are live (RFC 7662 introspection,
//! as client `upstream` of provider.mjs), publishes its protected-resource metadata (RFC 9728)
//! naming that server, and answers a 401 with `resource_metadata`.
//!
//! `GET /mcp` answers 200 `{"ok": true}` with a live token; a token is introspected once and
//! then taken until the `exp` the server gave it. `caller` is an MCP client calling it through
//! the proxy, over and over.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

pub struct Resource {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

struct Shared {
    issuer: String,
    metadata_url: String,
    http: reqwest::Client,
    /// Token → its `exp` (Unix seconds).
    live: Mutex<HashMap<String, u64>>,
    accepted: AtomicUsize,
    refused: AtomicUsize,
    introspected: AtomicUsize,
}

impl Resource {
    pub async fn start(issuer: &str) -> Resource {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            issuer: issuer.to_owned(),
            metadata_url: format!("http://{addr}/.well-known/oauth-protected-resource/mcp"),
            http: reqwest::Client::new(),
            live: Mutex::default(),
            accepted: AtomicUsize::new(0),
            refused: AtomicUsize::new(0),
            introspected: AtomicUsize::new(0),
        });
        let serving = shared.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let shared = serving.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(shared.answer(request).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Resource { addr, shared }
    }

    /// The resource identifier: `http://127.0.0.1:PORT/mcp`.
    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    /// (requests accepted, requests refused, introspections asked).
    pub fn counts(&self) -> (usize, usize, usize) {
        let s = &self.shared;
        (
            s.accepted.load(Ordering::Relaxed),
            s.refused.load(Ordering::Relaxed),
            s.introspected.load(Ordering::Relaxed),
        )
    }
}

impl Shared {
    async fn answer<B>(&self, request: Request<B>) -> Response<Full<Bytes>> {
        let path = request.uri().path();
        if path == "/.well-known/oauth-protected-resource/mcp" {
            let metadata = serde_json::json!({
                "resource": self.metadata_url.replace("/.well-known/oauth-protected-resource", ""),
                "authorization_servers": [self.issuer],
            });
            return reply(200, metadata.to_string(), None);
        }
        let token = request
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_owned);
        match token {
            Some(token) if path == "/mcp" && self.is_live(&token).await => {
                self.accepted.fetch_add(1, Ordering::Relaxed);
                reply(200, "{\"ok\":true}".into(), None)
            }
            _ => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                let challenge =
                    format!("Bearer error=\"invalid_token\", resource_metadata=\"{}\"", self.metadata_url);
                reply(401, "{\"error\":\"invalid_token\"}".into(), Some(challenge))
            }
        }
    }

    async fn is_live(&self, token: &str) -> bool {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        if self.live.lock().unwrap().get(token).is_some_and(|&exp| exp > now) {
            return true;
        }
        self.introspected.fetch_add(1, Ordering::Relaxed);
        // The server's verdict; a request that failed (a busy machine) is asked again.
        let mut body = serde_json::Value::Null;
        for _ in 0..5 {
            if let Some(answer) = self.introspect(token).await {
                body = answer;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        match (body["active"].as_bool(), body["exp"].as_u64()) {
            (Some(true), Some(exp)) if exp > now => {
                self.live.lock().unwrap().insert(token.to_owned(), exp);
                true
            }
            _ => false,
        }
    }
}

impl Shared {
    async fn introspect(&self, token: &str) -> Option<serde_json::Value> {
        let answer = self
            .http
            .post(format!("{}/token/introspection", self.issuer))
            .basic_auth("upstream", Some("upstream-secret-0123456789"))
            .form(&[("token", token)])
            .send()
            .await
            .ok()?;
        if !answer.status().is_success() {
            return None;
        }
        serde_json::from_slice(&answer.bytes().await.ok()?).ok()
    }
}

fn reply(status: u16, body: String, challenge: Option<String>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    response.headers_mut().insert(hyper::header::CONTENT_TYPE, "application/json".parse().unwrap());
    if let Some(challenge) = challenge {
        response.headers_mut().insert(hyper::header::WWW_AUTHENTICATE, challenge.parse().unwrap());
    }
    response
}

/// Failed calls: how many, and why the first few failed.
#[derive(Default)]
pub struct Failures {
    count: AtomicUsize,
    first: Mutex<Vec<String>>,
}

impl Failures {
    pub fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Why the first ten failed.
    pub fn reasons(&self) -> Vec<String> {
        self.first.lock().unwrap().clone()
    }

    fn record(&self, why: String) {
        self.count.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first.lock().unwrap();
        if first.len() < 10 {
            first.push(why);
        }
    }
}

/// One MCP client: a kept-alive connection to the proxy, `GET /mcp` until `stop`; failed calls
/// (anything but 200, or a broken connection) go in `failed`.
pub async fn caller(
    proxy: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failed: Arc<Failures>,
) {
    let mut sender = None;
    while !stop.load(Ordering::Relaxed) {
        if sender.is_none() {
            let stream = tokio::net::TcpStream::connect(proxy).await.unwrap();
            let (s, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
            tokio::spawn(connection);
            sender = Some(s);
        }
        let s = sender.as_mut().unwrap();
        let request = hyper::Request::get("/mcp")
            .header("host", proxy.to_string())
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        let failure = match s.send_request(request).await {
            Ok(response) => {
                let status = response.status();
                match response.into_body().collect().await {
                    Ok(_) if status == 200 => None,
                    Ok(body) => Some(format!("HTTP {status}: {}", String::from_utf8_lossy(&body.to_bytes()))),
                    Err(e) => Some(format!("HTTP {status}, body cut: {e}")),
                }
            }
            Err(e) => {
                sender = None;
                Some(format!("no answer: {e}"))
            }
        };
        match failure {
            None => {
                ok.fetch_add(1, Ordering::Relaxed);
            }
            Some(why) => failed.record(format!("{:?} {why}", SystemTime::now())),
        }
    }
}

impl Resource {
    /// A daemon with `source`'s keys in `dir` and a proxy sink to this resource, holding its
    /// first token: the daemon and the proxy's address. Blocking.
    pub fn behind_a_daemon(
        &self,
        dir: tempfile::TempDir,
        source: &str,
    ) -> (super::oauth::OAuthDaemon, SocketAddr) {
        let listen: SocketAddr =
            format!("127.0.0.1:{}", super::free_port("127.0.0.1").port()).parse().unwrap();
        let upstream = format!("http://{}", self.addr);
        let sinks = format!("[[sink]]\ntype = \"proxy\"\nlisten = \"{listen}\"\nupstream = \"{upstream}\"\n");
        let d = super::oauth::OAuthDaemon::start_in(dir, source, &sinks);
        d.wait_status("a first token", |status| status["version"].as_u64() >= Some(1));
        (d, listen)
    }
}
