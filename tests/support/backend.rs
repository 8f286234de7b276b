//! A fake backend: a real HTTP/1.1 server on 127.0.0.1 that speaks the seed's protocol and can be
//! told to misbehave in every way the daemon must survive.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

pub const PATH: &str = "/api/calendars/google-mcp-tokens/current-token/";
/// An endpoint that, like the real API, accepts only the current token in `X-Google-MCP-Token`.
pub const PROBE_PATH: &str = "/api/calendars/";
pub const AGENT: &str = "google-calender-mcp";

/// How the backend answers the token endpoint.
#[derive(Clone, Debug)]
pub enum Reply {
    /// The current token, as the seed shows it.
    Token,
    /// A 200 with this JSON (build it from [`Backend::answer`] to vary one field).
    Json(Value),
    /// Any status and body.
    Raw { status: u16, body: Vec<u8> },
    /// A 200 of `size` bytes sent chunked, with no Content-Length to reject it up front.
    Stream { size: usize },
    /// A redirect to another URL.
    Redirect(String),
    /// The current token, after a delay (longer than the daemon's timeout, to test it).
    Slow(Duration),
}

struct State {
    token: String,
    expires_at: SystemTime,
    lifetime: Duration,
    reply: Reply,
    /// Issue a new token on every fetch.
    rotate_each_fetch: bool,
    /// A header (name, value) the token endpoint insists on, if any.
    required_header: Option<(String, String)>,
    serial: u64,
    /// When each token was first handed out.
    answered: HashMap<String, Instant>,
}

#[derive(Clone)]
pub struct Backend {
    addr: SocketAddr,
    scheme: &'static str,
    /// A state directory for daemons of this backend, so no test sees another's state file.
    state_dir: Arc<tempfile::TempDir>,
    state: Arc<Mutex<State>>,
    fetches: Arc<AtomicUsize>,
}

/// Tokens are long, fixed-length and distinctive, so a test can search any output for them.
fn token_for(serial: u64) -> String {
    format!("SECRET-tok-{serial:06}-{}", "x7Qz".repeat(12))
}

impl Backend {
    pub async fn start() -> Backend {
        Backend::start_with(None).await
    }

    /// An HTTPS backend, and the PEM of the CA that signed its certificate (for 127.0.0.1).
    pub async fn start_https() -> (Backend, String) {
        let (acceptor, ca_pem) = tls_acceptor();
        (Backend::start_with(Some(acceptor)).await, ca_pem)
    }

    async fn start_with(tls: Option<TlsAcceptor>) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1");
        let addr = listener.local_addr().unwrap();
        let lifetime = Duration::from_secs(3600);
        let state = Arc::new(Mutex::new(State {
            token: token_for(1),
            expires_at: SystemTime::now() + lifetime,
            lifetime,
            reply: Reply::Token,
            rotate_each_fetch: false,
            required_header: None,
            serial: 1,
            answered: HashMap::new(),
        }));
        let scheme = if tls.is_some() { "https" } else { "http" };
        let state_dir = Arc::new(tempfile::tempdir().unwrap());
        let backend = Backend { addr, scheme, state_dir, state, fetches: Arc::new(AtomicUsize::new(0)) };
        let server = backend.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let server = server.clone();
                let service = hyper::service::service_fn(move |req| {
                    let server = server.clone();
                    async move { server.respond(req).await }
                });
                let http = hyper::server::conn::http1::Builder::new();
                match &tls {
                    None => {
                        tokio::spawn(http.serve_connection(TokioIo::new(stream), service));
                    }
                    Some(acceptor) => {
                        let acceptor = acceptor.clone();
                        tokio::spawn(async move {
                            // A client that rejects the certificate ends the handshake: nothing to serve.
                            if let Ok(stream) = acceptor.accept(stream).await {
                                let _ = http.serve_connection(TokioIo::new(stream), service).await;
                            }
                        });
                    }
                }
            }
        });
        backend
    }

    pub fn url(&self) -> String {
        format!("{}://{}{PATH}", self.scheme, self.addr)
    }

    pub fn state_dir(&self) -> &std::path::Path {
        self.state_dir.path()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Requests that reached the token endpoint.
    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    pub fn token(&self) -> String {
        self.state.lock().unwrap().token.clone()
    }

    /// When each token was first handed out, by token.
    pub fn answered(&self) -> HashMap<String, Instant> {
        self.state.lock().unwrap().answered.clone()
    }

    pub fn expires_at(&self) -> SystemTime {
        self.state.lock().unwrap().expires_at
    }

    pub fn set_reply(&self, reply: Reply) {
        self.state.lock().unwrap().reply = reply;
    }

    /// Issues a new token valid for the configured lifetime from now; returns it.
    pub fn rotate(&self) -> String {
        let mut s = self.state.lock().unwrap();
        rotate(&mut s);
        s.token.clone()
    }

    /// Lifetime of tokens issued from now on (and re-issues the current one with it).
    pub fn set_lifetime(&self, lifetime: Duration) -> String {
        let mut s = self.state.lock().unwrap();
        s.lifetime = lifetime;
        rotate(&mut s);
        s.token.clone()
    }

    pub fn rotate_each_fetch(&self, on: bool) {
        self.state.lock().unwrap().rotate_each_fetch = on;
    }

    /// Answers 401 unless the request carries `name: value`.
    pub fn require_header(&self, name: &str, value: &str) {
        self.state.lock().unwrap().required_header = Some((name.into(), value.into()));
    }

    pub fn probe_url(&self) -> String {
        format!("http://{}{PROBE_PATH}", self.addr)
    }

    /// The seed's answer for the current token, to vary in [`Reply::Json`].
    pub fn answer(&self) -> Value {
        let s = self.state.lock().unwrap();
        seed_answer(&s)
    }

    async fn respond(
        &self,
        req: Request<hyper::body::Incoming>,
    ) -> Result<Response<BoxBody<Bytes, Infallible>>, Infallible> {
        if req.uri().path() == PROBE_PATH {
            let given = req.headers().get("x-google-mcp-token").and_then(|v| v.to_str().ok());
            let current = self.state.lock().unwrap().token.clone();
            return Ok(if given == Some(current.as_str()) {
                full(200, b"[]".to_vec())
            } else {
                full(401, Vec::new())
            });
        }
        if req.uri().path() != PATH {
            return Ok(full(404, b"{\"detail\":\"Not found.\"}".to_vec()));
        }
        self.fetches.fetch_add(1, Ordering::SeqCst);
        let reply = {
            let mut s = self.state.lock().unwrap();
            if let Some((name, expected)) = &s.required_header {
                let given = req.headers().get(name.as_str()).and_then(|v| v.to_str().ok());
                if given != Some(expected.as_str()) {
                    return Ok(full(
                        401,
                        b"{\"detail\":\"Authentication credentials were not provided.\"}".to_vec(),
                    ));
                }
            }
            if s.rotate_each_fetch {
                rotate(&mut s);
            }
            if matches!(s.reply, Reply::Token) {
                let token = s.token.clone();
                s.answered.entry(token).or_insert_with(Instant::now);
            }
            match &s.reply {
                Reply::Token => Reply::Json(seed_answer(&s)),
                other => other.clone(),
            }
        };
        Ok(match reply {
            Reply::Token => unreachable!("resolved above"),
            Reply::Json(value) => full(200, value.to_string().into_bytes()),
            Reply::Raw { status, body } => full(status, body),
            Reply::Stream { size } => {
                let chunk = Bytes::from(vec![b' '; 16 * 1024]);
                let frames = (0..size.div_ceil(chunk.len()))
                    .map(move |_| Ok::<_, Infallible>(Frame::data(chunk.clone())));
                let body = StreamBody::new(futures_util::stream::iter(frames));
                Response::new(BodyExt::boxed(body))
            }
            Reply::Redirect(to) => {
                let mut r = full(302, Vec::new());
                r.headers_mut().insert("location", to.parse().unwrap());
                r
            }
            Reply::Slow(delay) => {
                tokio::time::sleep(delay).await;
                let s = self.state.lock().unwrap();
                full(200, seed_answer(&s).to_string().into_bytes())
            }
        })
    }
}

fn rotate(s: &mut State) {
    s.serial += 1;
    s.token = token_for(s.serial);
    s.expires_at = SystemTime::now() + s.lifetime;
}

fn seed_answer(s: &State) -> Value {
    json!({
        "agent_name": AGENT,
        "token": s.token,
        "expires_at": mcp_token_sync::clock::rfc3339(s.expires_at),
        "valid": true,
        "message": "Current MCP token retrieved successfully",
    })
}

fn full(status: u16, body: Vec<u8>) -> Response<BoxBody<Bytes, Infallible>> {
    let mut r = Response::new(BodyExt::boxed(Full::new(Bytes::from(body))));
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    r
}

/// A fresh CA and a server certificate for 127.0.0.1 signed by it.
fn tls_acceptor() -> (TlsAcceptor, String) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "mcp-token-sync test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap().signed_by(&key, &ca).unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    (TlsAcceptor::from(Arc::new(config)), ca.pem())
}
