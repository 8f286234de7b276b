//! A small HTTP/1.1 server on 127.0.0.1 whose every answer a test decides, for services that
//! cannot run here (an authorization server that misbehaves, a resource's metadata naming
//! somewhere else): it records each request and answers what the handler returns. It runs on
//! a thread of its own, so sync tests can use it, and stops when dropped.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// One request as it arrived.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path and query.
    pub target: String,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Seen {
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// An answer: status, headers, body.
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(status: u16, value: serde_json::Value) -> Answer {
        Answer {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: value.to_string().into_bytes(),
        }
    }

    pub fn text(status: u16, text: &str) -> Answer {
        Answer { status, headers: vec![("content-type".into(), "text/plain".into())], body: text.into() }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Answer {
        self.headers.push((name.into(), value.into()));
        self
    }
}

type Handler = dyn Fn(&Seen) -> Answer + Send + Sync;

pub struct FakeHttp {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeHttp {
    /// Serves `handler`'s answers on a free port of 127.0.0.1.
    pub fn start(handler: impl Fn(&Seen) -> Answer + Send + Sync + 'static) -> FakeHttp {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (handler, record): (Arc<Handler>, _) = (Arc::new(handler), seen.clone());
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let serve = async {
                    while let Ok((stream, _)) = listener.accept().await {
                        let (handler, record) = (handler.clone(), record.clone());
                        tokio::spawn(async move {
                            let service =
                                hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                                    let (handler, record) = (handler.clone(), record.clone());
                                    async move {
                                        let (parts, body) = request.into_parts();
                                        let body =
                                            body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                                        let seen = Seen {
                                            method: parts.method.to_string(),
                                            target: parts
                                                .uri
                                                .path_and_query()
                                                .map(|p| p.to_string())
                                                .unwrap_or_default(),
                                            headers: parts.headers,
                                            body,
                                        };
                                        let answer = handler(&seen);
                                        record.lock().unwrap().push(seen);
                                        let mut response = Response::new(Full::new(Bytes::from(answer.body)));
                                        *response.status_mut() =
                                            hyper::StatusCode::from_u16(answer.status).unwrap();
                                        for (name, value) in answer.headers {
                                            response.headers_mut().append(
                                                hyper::header::HeaderName::from_bytes(name.as_bytes())
                                                    .unwrap(),
                                                value.parse().unwrap(),
                                            );
                                        }
                                        Ok::<_, Infallible>(response)
                                    }
                                });
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        });
                    }
                };
                tokio::select! {
                    _ = serve => {}
                    _ = stopped => {}
                }
            });
        });
        FakeHttp { addr, seen, stop: Some(stop), thread: Some(thread) }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for FakeHttp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
