//! A Streamable HTTP MCP server that does exactly what a test needs, and records every request
//! it gets: the bridge's own tests, where the SDK's server could not be made to fail on cue.
//!
//! `initialize` opens session `s1`, `s2`, …, answered as a pretty-printed JSON body;
//! other messages with another session id get 404; notifications and answers 202
//! (`notifications/initialized` after 100 ms), requests before it 400; `tools/call`
//! answers as an event stream whose `data:` spans several lines, except the tool `vanish`,
//! whose connection is closed once its request is read (the tool may have run), `rest`,
//! answered with JSON that is no JSON-RPC message, `stall`, never answered, `quirky`, whose
//! stream has what the SSE spec says to ignore before the answer, and `linger`, whose stream
//! stays open after the answer; any other
//! request `{"result": {}}`. GET 405 after 50 ms; DELETE 200.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
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

type Body = UnsyncBoxBody<Bytes, std::convert::Infallible>;

fn whole(bytes: Bytes) -> Body {
    Full::new(bytes).boxed_unsync()
}

/// `bytes`, and then a body that never ends.
fn open_after(bytes: Bytes) -> Body {
    let frames =
        futures_util::stream::once(std::future::ready(Ok::<_, std::convert::Infallible>(Frame::data(bytes))))
            .chain(futures_util::stream::pending());
    StreamBody::new(frames).boxed_unsync()
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
    /// `initialize` is answered on an event stream that stays open.
    lingering: bool,
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

    /// From now on, `initialize` is answered on an event stream left open after the answer.
    pub fn linger(&self) {
        self.state.lock().unwrap().lingering = true;
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

    async fn respond(&self, req: Request<hyper::body::Incoming>) -> Result<Response<Body>, Vanished> {
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
    ) -> Result<Response<Body>, Vanished> {
        let session = seen.session.clone();
        let tool = message["params"]["name"].as_str().map(str::to_owned);
        let rpc_method = seen.rpc_method.clone();
        let mut state = self.state.lock().unwrap();
        state.seen.push(seen);
        let answer =
            |status: StatusCode| Response::builder().status(status).body(whole(Bytes::new())).unwrap();
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
            if state.lingering {
                let event = format!("data: {}\n\n", body.replace('\n', ""));
                return Ok(Response::builder()
                    .header("content-type", "text/event-stream")
                    .header("mcp-session-id", opened)
                    .body(open_after(Bytes::from(event)))
                    .unwrap());
            }
            return Ok(Response::builder()
                .header("content-type", "application/json")
                .header("mcp-session-id", opened)
                .body(whole(Bytes::from(body)))
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
                .body(whole(Bytes::from_static(b"{\"calendars\": [1,\n 2]}")))
                .unwrap()),
            (Some("tools/call"), _) => {
                let event = format!(
                    "id: 1\ndata: {{\ndata:   \"jsonrpc\": \"2.0\",\ndata:   \"id\": {id},\n\
                     data:   \"result\": {{\"content\": [{{\"type\": \"text\", \"text\": \"two\\nlines\"}}]}}\ndata: }}\n\n"
                );
                let body = match tool.as_deref() {
                    // What the SSE spec says a client ignores: an unknown field, a field without
                    // a colon, a second event line, a retry that is not digits, invalid UTF-8 in a
                    // comment, an id no header can carry; then the answer.
                    Some("quirky") => whole(Bytes::from(
                        [b"foo: bar\ndata\nevent: x\nevent: message\nretry: 1.5s\n: \xff\xfe\nid: a\x01b\n".as_slice(), event.as_bytes()]
                            .concat(),
                    )),
                    // The answer, and then the stream stays open.
                    Some("linger") => open_after(Bytes::from(event)),
                    _ => whole(Bytes::from(event)),
                };
                Ok(Response::builder().header("content-type", "text/event-stream").body(body).unwrap())
            }
            _ => Ok(Response::builder()
                .header("content-type", "application/json")
                .body(whole(Bytes::from(format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{}}}}"#))))
                .unwrap()),
        }
    }
}
