//! A Streamable HTTP MCP server that does exactly what a test needs, and records every request
//! it gets: the bridge's own tests, where the SDK's server could not be made to fail on cue.
//!
//! `initialize` opens session `s1`, `s2`, …, answered as a pretty-printed JSON body;
//! other messages with another session id get 404; notifications and answers 202
//! (`notifications/initialized` after 100 ms), requests before it 400; `tools/call`
//! answers as an event stream whose `data:` spans several lines, except the tool `vanish`,
//! whose connection is closed once its request is read (the tool may have run), `rest`,
//! answered with JSON that is no JSON-RPC message, and `stall`, never answered; any other
//! request `{"result": {}}`. GET 405 after 50 ms; DELETE 200.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;

/// One request as the fake received it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub http_method: String,
    /// The JSON-RPC method, or `None` for an answer or a body-less request.
    pub rpc_method: Option<String>,
    pub session: Option<String>,
    pub protocol_version: Option<String>,
    /// The `X-Team` header, which tests send with `--header`.
    pub team: Option<String>,
}

/// The service's failure: the connection closes with no answer.
#[derive(Debug)]
pub struct Vanished;

impl std::fmt::Display for Vanished {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("vanished on purpose")
    }
}

impl std::error::Error for Vanished {}

#[derive(Default)]
struct State {
    seen: Vec<Seen>,
    sessions_opened: usize,
    /// The session the fake knows; `None` after `forget`.
    current: Option<String>,
    /// Forgets each session as soon as it is opened.
    amnesia: bool,
    /// The current session's `notifications/initialized` has been taken.
    initialized: bool,
    /// TCP connections accepted.
    connections: usize,
}

#[derive(Clone)]
pub struct FakeMcp {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl FakeMcp {
    pub async fn start() -> FakeMcp {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fake = FakeMcp { addr: listener.local_addr().unwrap(), state: Arc::default() };
        let served = fake.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                served.state.lock().unwrap().connections += 1;
                let served = served.clone();
                let service = hyper::service::service_fn(move |req| {
                    let served = served.clone();
                    async move { served.respond(req).await }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        fake
    }

    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.lock().unwrap().connections
    }

    /// As a server restart does: the session is unknown from now on.
    pub fn forget(&self) {
        self.state.lock().unwrap().current = None;
    }

    /// From now on, every session is forgotten as soon as it is opened.
    pub fn forget_always(&self) {
        let mut state = self.state.lock().unwrap();
        state.current = None;
        state.amnesia = true;
    }

    async fn respond(&self, req: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Vanished> {
        let header = |name: &str| req.headers().get(name).map(|v| v.to_str().unwrap().to_owned());
        let mut seen = Seen {
            http_method: req.method().to_string(),
            rpc_method: None,
            session: header("mcp-session-id"),
            protocol_version: header("mcp-protocol-version"),
            team: header("x-team"),
        };
        let method = req.method().clone();
        let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let message: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        seen.rpc_method = message["method"].as_str().map(str::to_owned);
        if method == hyper::Method::GET {
            // Slow to answer, and recorded when it answers: a request sent before the answer
            // shows in `seen` before the GET.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        if message["params"]["name"] == "stall" {
            // Never answers.
            futures_util::future::pending::<()>().await;
        }
        if seen.rpc_method.as_deref() == Some("notifications/initialized") {
            // Slow to take it, so a request the host wrote next would overtake it if the
            // bridge let it.
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        self.decide(&method, &message, seen)
    }

    fn decide(
        &self,
        method: &hyper::Method,
        message: &Value,
        seen: Seen,
    ) -> Result<Response<Full<Bytes>>, Vanished> {
        let session = seen.session.clone();
        let tool = message["params"]["name"].as_str().map(str::to_owned);
        let rpc_method = seen.rpc_method.clone();
        let mut state = self.state.lock().unwrap();
        state.seen.push(seen);
        let answer = |status: StatusCode| Response::builder().status(status).body(Full::default()).unwrap();
        if *method == hyper::Method::GET {
            return Ok(answer(StatusCode::METHOD_NOT_ALLOWED));
        }
        if *method == hyper::Method::DELETE {
            return Ok(answer(StatusCode::OK));
        }
        let id = message["id"].to_string();
        if rpc_method.as_deref() == Some("initialize") {
            state.sessions_opened += 1;
            let opened = format!("s{}", state.sessions_opened);
            state.current = (!state.amnesia).then(|| opened.clone());
            state.initialized = false;
            let body = format!(
                "{{\n  \"jsonrpc\": \"2.0\",\n  \"id\": {id},\n  \"result\": {{\n    \"protocolVersion\": \"2025-06-18\",\n    \
                 \"capabilities\": {{}},\n    \"serverInfo\": {{\"name\": \"fake\", \"version\": \"1\"}}\n  }}\n}}\n"
            );
            return Ok(Response::builder()
                .header("content-type", "application/json")
                .header("mcp-session-id", opened)
                .body(Full::new(Bytes::from(body)))
                .unwrap());
        }
        if session.is_none() || session != state.current {
            return Ok(answer(StatusCode::NOT_FOUND));
        }
        if rpc_method.as_deref() == Some("notifications/initialized") {
            state.initialized = true;
            return Ok(answer(StatusCode::ACCEPTED));
        }
        if message.get("id").is_none() || rpc_method.is_none() {
            return Ok(answer(StatusCode::ACCEPTED));
        }
        // As the SDK's servers do: no request but ping before initialization is complete.
        if !state.initialized && rpc_method.as_deref() != Some("ping") {
            return Ok(answer(StatusCode::BAD_REQUEST));
        }
        drop(state);
        match (rpc_method.as_deref(), tool.as_deref()) {
            // hyper closes the connection of a service that fails, with no answer.
            (Some("tools/call"), Some("vanish")) => Err(Vanished),
            // What a REST API at a wrong URL would answer: JSON, but no JSON-RPC message.
            (Some("tools/call"), Some("rest")) => Ok(Response::builder()
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from_static(b"{\"calendars\": [1,\n 2]}")))
                .unwrap()),
            (Some("tools/call"), _) => {
                let event = format!(
                    "id: 1\ndata: {{\ndata:   \"jsonrpc\": \"2.0\",\ndata:   \"id\": {id},\n\
                     data:   \"result\": {{\"content\": [{{\"type\": \"text\", \"text\": \"two\\nlines\"}}]}}\ndata: }}\n\n"
                );
                Ok(Response::builder()
                    .header("content-type", "text/event-stream")
                    .body(Full::new(Bytes::from(event)))
                    .unwrap())
            }
            _ => Ok(Response::builder()
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{}}}}"#))))
                .unwrap()),
        }
    }
}
