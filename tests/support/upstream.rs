//! A fake upstream API behind the proxy: a real HTTP/1.1 server on 127.0.0.1 that, like the
//! seed's backend, accepts only the backend's current token in one header, and records every
//! request it gets so tests can check what crossed the proxy.
//!
//! Paths: `/echo` answers the request's body; `/bytes/N` answers N bytes; `/sse` streams
//! server-sent events as the test releases them; `/challenge` answers 200 with a
//! `WWW-Authenticate` header; `/redirect?to=URL` answers 302; `/slow` never
//! answers; anything else 200 `{"path": …}`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::header::HeaderMap;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::Backend;

/// One request as the upstream received it.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    pub path_and_query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Whom the upstream lets in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// The backend's current token only.
    CurrentToken,
    /// Nobody: 401 to every request.
    Nobody,
}

struct State {
    received: Vec<Received>,
    admit: Admit,
    /// Released events for open `/sse` streams, one sender per stream.
    events: Vec<mpsc::UnboundedSender<String>>,
    /// Set when an `/sse` stream's client went away (its body was dropped).
    closed_streams: usize,
    /// How a token is refused: the status and a `WWW-Authenticate` challenge, if any.
    refusal: (u16, Option<String>),
}

#[derive(Clone)]
pub struct Upstream {
    addr: SocketAddr,
    header: &'static str,
    scheme: Option<&'static str>,
    backend: Backend,
    state: Arc<Mutex<State>>,
}

impl Upstream {
    /// An upstream that wants `backend`'s current token in `header` (after `scheme` and a space).
    pub async fn start(backend: &Backend, header: &'static str, scheme: Option<&'static str>) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream = Upstream {
            addr: listener.local_addr().unwrap(),
            header,
            scheme,
            backend: backend.clone(),
            state: Arc::new(Mutex::new(State {
                received: Vec::new(),
                admit: Admit::CurrentToken,
                events: Vec::new(),
                closed_streams: 0,
                refusal: (401, Some("Bearer resource_metadata=\"http://127.0.0.1:1/.well-known/oauth-protected-resource\"".into())),
            })),
        };
        let served = upstream.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let served = served.clone();
                let service = hyper::service::service_fn(move |req| {
                    let served = served.clone();
                    async move { Ok::<_, Infallible>(served.respond(req).await) }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        upstream
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    pub fn set_admit(&self, admit: Admit) {
        self.state.lock().unwrap().admit = admit;
    }

    /// Sends `data` as one event on every open `/sse` stream; returns how many got it.
    pub fn send_event(&self, data: &str) -> usize {
        let mut state = self.state.lock().unwrap();
        state.events.retain(|events| events.send(format!("data: {data}\n\n")).is_ok());
        state.events.len()
    }

    /// Refuse tokens with `status` and, if given, a `WWW-Authenticate` challenge.
    pub fn set_refusal(&self, status: u16, challenge: Option<&str>) {
        self.state.lock().unwrap().refusal = (status, challenge.map(str::to_owned));
    }

    /// `/sse` streams whose client went away.
    pub fn closed_streams(&self) -> usize {
        self.state.lock().unwrap().closed_streams
    }

    async fn respond(&self, req: Request<hyper::body::Incoming>) -> Response<BoxBody<Bytes, Infallible>> {
        let (parts, body) = req.into_parts();
        let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let path_and_query = parts.uri.path_and_query().map(|pq| pq.to_string()).unwrap_or_default();
        let (admitted, refusal) = {
            let mut state = self.state.lock().unwrap();
            state.received.push(Received {
                method: parts.method.to_string(),
                path_and_query: path_and_query.clone(),
                headers: parts.headers.clone(),
                body: body.clone(),
            });
            let expected = match self.scheme {
                Some(scheme) => format!("{scheme} {}", self.backend.token()),
                None => self.backend.token(),
            };
            let admitted = state.admit == Admit::CurrentToken
                && parts.headers.get(self.header).and_then(|v| v.to_str().ok()) == Some(expected.as_str());
            (admitted, state.refusal.clone())
        };
        if !admitted {
            let mut response = full(refusal.0, "{\"detail\":\"Invalid or expired MCP token\"}");
            if let Some(challenge) = refusal.1 {
                response.headers_mut().insert("www-authenticate", challenge.parse().unwrap());
            }
            return response;
        }
        let path = parts.uri.path();
        if path.ends_with("/echo") {
            return full(200, body);
        }
        if let Some(n) = path.rsplit("/bytes/").next().filter(|_| path.contains("/bytes/")) {
            return full(200, vec![b'x'; n.parse().unwrap()]);
        }
        if path.ends_with("/sse") {
            return self.event_stream();
        }
        if path.ends_with("/challenge") {
            let mut response = full(200, "{}");
            response.headers_mut().insert("www-authenticate", "Bearer realm=\"upstream\"".parse().unwrap());
            return response;
        }
        if path.ends_with("/redirect") {
            let to = parts.uri.query().and_then(|q| q.strip_prefix("to=")).unwrap_or("/");
            let mut response = full(302, "");
            response.headers_mut().insert("location", to.parse().unwrap());
            return response;
        }
        if path.ends_with("/slow") {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        full(200, serde_json::json!({"path": path_and_query}).to_string())
    }

    fn event_stream(&self) -> Response<BoxBody<Bytes, Infallible>> {
        let (events, mut released) = mpsc::unbounded_channel::<String>();
        self.state.lock().unwrap().events.push(events);
        let state = self.state.clone();
        let (frames, body) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(1);
        tokio::spawn(async move {
            // Until the proxy drops the stream (its client went away), noticed with or without an
            // event to send.
            loop {
                tokio::select! {
                    event = released.recv() => {
                        let Some(event) = event else { break };
                        if frames.send(Ok(Frame::data(Bytes::from(event)))).await.is_err() {
                            break;
                        }
                    }
                    _ = frames.closed() => break,
                }
            }
            state.lock().unwrap().closed_streams += 1;
        });
        let mut response = Response::new(BodyExt::boxed(StreamBody::new(tokio_stream(body))));
        response.headers_mut().insert("content-type", "text/event-stream".parse().unwrap());
        response
    }
}

/// A `Stream` of what arrives on `receiver`.
fn tokio_stream<T: Send + 'static>(
    mut receiver: mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send {
    futures_util::stream::poll_fn(move |cx| receiver.poll_recv(cx))
}

fn full(status: u16, body: impl Into<Bytes>) -> Response<BoxBody<Bytes, Infallible>> {
    let mut r = Response::new(BodyExt::boxed(Full::new(body.into())));
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    r
}
