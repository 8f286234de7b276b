//! `type = "proxy"`: a local reverse proxy that adds the current token to every request it
//! forwards (DESIGN §12), so a client that takes only a static URL (an MCP host) needs no token
//! and no refresh logic of its own.
//!
//! One request, in order: the listener's checks (the peer's uid, in `crate::server`; then
//! `gate`: the method, the `Host` on TCP against DNS rebinding, a browser's `Origin` and
//! `Sec-Fetch-Site`), the held token (none: 503, the
//! upstream is not contacted), the upstream request (`forward`) with a body that can be sent
//! again (`replay`), and the answer. An upstream 401 (or a 403 that says `invalid_token`,
//! `challenge`) asks the engine for a token newer than
//! the one sent, the same coalesced refresh as a client's 401 report, and the request is
//! replayed once with it; it never reaches the client as a 401, which would send an MCP client
//! into OAuth discovery.

mod challenge;
mod forward;
mod gate;
mod pool;
mod replay;
mod upstream;
mod upstream_io;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper::body::Body as _;
use hyper::body::Incoming;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::http::request;
use hyper::http::uri::PathAndQuery;
use hyper::{Request, Response, StatusCode};
use tokio::sync::watch;
use tracing::{debug, info, warn};
use zeroize::Zeroizing;

use crate::config::{Listen, ProxySinkConfig};
use crate::engine::{EngineHandle, EngineStatus};
use crate::metrics::{ProxyRequests, TokenMetrics};
use crate::server::{Acl, BindError, BoxError, Handler, Listener, Peer, Server};
use crate::sinks::SinkReport;
use crate::token::TokenState;
use gate::Gate;
use pool::UpstreamBody;
use replay::Kept;
use upstream::SendError;
pub use upstream::{SetupError, Upstream};

pub type Body = BoxBody<Bytes, BoxError>;

/// How the engine names a refresh the proxy asks for.
const REFRESH_REASON: &str = "a 401 from a proxied request";
/// `Retry-After` when the engine has no next fetch planned.
const RETRY_AFTER_DEFAULT: Duration = Duration::from_secs(5);

pub struct Proxy {
    /// The listen address or path, as logs, status and metrics name the proxy.
    name: String,
    upstream: Upstream,
    header: HeaderName,
    scheme: Option<String>,
    gate: Gate,
    replay_limit: u64,
    timeout: Duration,
    engine: EngineHandle,
    token: watch::Receiver<TokenState>,
    status: watch::Receiver<EngineStatus>,
    metrics: Arc<TokenMetrics>,
    requests: ProxyRequests,
    report: watch::Sender<SinkReport>,
    /// The token header for the version held, built once per version.
    credential: Mutex<Option<(u64, HeaderValue)>>,
}

/// Binds the proxy's listener; needs a running tokio runtime. Also returns its status line.
pub fn server(
    config: &ProxySinkConfig,
    upstream: Upstream,
    engine: EngineHandle,
    metrics: Arc<TokenMetrics>,
) -> Result<(Server<Proxy>, watch::Receiver<SinkReport>), BindError> {
    let (listener, hosts) = match &config.listen {
        Listen::Tcp(address) => {
            let port = address.port();
            let own = match address {
                std::net::SocketAddr::V4(v4) => format!("{}:{port}", v4.ip()),
                std::net::SocketAddr::V6(v6) => format!("[{}]:{port}", v6.ip()),
            };
            let mut hosts = vec![own, format!("localhost:{port}")];
            if port == 80 {
                hosts.extend([address.ip().to_string(), "localhost".into()]);
            }
            (Listener::tcp(*address)?, hosts)
        }
        Listen::Unix(path) => {
            let mode = config.mode.expect("the config gives a Unix listener its mode");
            (Listener::unix(path, mode)?, Vec::new())
        }
    };
    let name = listener.name();
    let mut report = SinkReport::new("proxy", name.clone());
    report.upstream = Some(config.upstream.to_string());
    let (report, report_rx) = watch::channel(report);
    let proxy = Proxy {
        requests: metrics.proxy_requests(&name),
        name,
        upstream,
        header: HeaderName::from_bytes(config.header.as_bytes()).expect("the config checked the header"),
        scheme: config.scheme.clone(),
        gate: Gate { hosts, allow_origins: config.allow_origins.clone() },
        replay_limit: config.replay_limit.0,
        timeout: config.timeout,
        token: engine.token(),
        status: engine.status(),
        engine,
        metrics: metrics.clone(),
        report,
        credential: Mutex::new(None),
    };
    let server = Server {
        listener,
        acl: Acl::new(&config.allow_uids, &config.allow_gids),
        handler: Arc::new(proxy),
        max_connections: config.max_connections,
        streams_give_way: false,
        // A client that goes away must end its upstream request, streams included.
        half_close: false,
        metrics: metrics.daemon().clone(),
    };
    Ok((server, report_rx))
}

impl Handler for Proxy {
    type Body = Body;

    async fn handle(&self, request: Request<Incoming>, _peer: Peer) -> Response<Body> {
        // Cheap to keep: a method and a URI share the request's bytes.
        let (method, uri) = (request.method().clone(), request.uri().clone());
        // On the heap, where it is built once: hyper moves the future that holds it, twice a
        // request, and 1.5 KiB copies cost more than an allocation.
        let response = Box::pin(self.forward(request)).await;
        let status = response.status().as_u16();
        self.requests.count(status);
        debug!("proxy {}: {method} {} -> {status}", self.name, uri.path());
        response
    }

    /// Idle upstream connections are closed: nobody has used the proxy for a while, and they
    /// would time out soon anyway (`pool::IDLE_TIMEOUT`); their buffers go back with them.
    fn quiet(&self) {
        self.upstream.close_idle();
    }

    fn forbidden(&self) -> Response<Body> {
        error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this user may not use the proxy; see its allow_uids/allow_gids",
        )
    }
}

/// Why the proxy answered 503 instead of the upstream's answer.
enum Unavailable {
    NoValidToken,
    Rejected(String),
}

impl Proxy {
    async fn forward(&self, request: Request<Incoming>) -> Response<Body> {
        if let Some(refusal) = self.gate.refusal(&request) {
            return refusal;
        }
        let (mut parts, body) = request.into_parts();
        let target = match parts.uri.path_and_query().map(|pq| self.upstream.target(pq)) {
            Some(Ok(target)) => target,
            Some(Err(why)) => return error(StatusCode::BAD_REQUEST, "bad_request", why),
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "the proxy forwards requests for a path",
                );
            }
        };
        let Some((version, credential)) = self.credential() else {
            return self.unavailable(Unavailable::NoValidToken);
        };
        // The host the client reached, as the gate checked it, before `Connection` may name it.
        let host = parts.headers.get(header::HOST).cloned();
        forward::strip_hop_by_hop(&mut parts.headers);
        let (kept, body) = replay::keep(body, self.replay_limit);
        let response = match self.send(&parts, &target, &credential, &kept, body.boxed()).await {
            Ok(response) => response,
            Err(refusal) => return refusal,
        };
        if !challenge::refuses_token(response.status(), response.headers()) {
            kept.release();
            return self.answer(response, &parts, &target, host.as_ref());
        }
        drop(response);

        info!(
            "proxy {}: {} {}: the upstream refused version {version}; refreshing",
            self.name,
            parts.method,
            parts.uri.path()
        );
        let Some((fresh, credential)) = self.refreshed(version).await else {
            return self.unavailable(Unavailable::Rejected(format!(
                "the upstream refused token version {version} and no newer token could be had; see /v1/status"
            )));
        };
        let Some(body) = kept.replay() else {
            return self.unavailable(Unavailable::Rejected(format!(
                "the upstream refused token version {version}; version {fresh} is held now, but the request body \
                 was larger than replay_limit, so it was not sent again: send the request again"
            )));
        };
        self.metrics.proxy_replay(&self.name);
        let response = match self.send(&parts, &target, &credential, &kept, body.boxed()).await {
            Ok(response) => response,
            Err(refusal) => return refusal,
        };
        if challenge::refuses_token(response.status(), response.headers()) {
            return self.unavailable(Unavailable::Rejected(format!(
                "the upstream refused token version {version}, and the fresh version {fresh} too"
            )));
        }
        kept.release();
        self.answer(response, &parts, &target, host.as_ref())
    }

    /// The version held and the header value that carries it; `None` without a valid token.
    fn credential(&self) -> Option<(u64, HeaderValue)> {
        let state = self.token.borrow();
        let current = state.current()?;
        let mut cached = self.credential.lock().expect("never poisoned");
        if let Some((version, value)) = &*cached
            && *version == current.version
        {
            return Some((*version, value.clone()));
        }
        // Built in a buffer that is zeroed once the last request using it is gone.
        let token = current.token.expose();
        let text = Zeroizing::new(match &self.scheme {
            Some(scheme) => format!("{scheme} {token}").into_bytes(),
            None => token.as_bytes().to_vec(),
        });
        let mut value = HeaderValue::from_maybe_shared(Bytes::from_owner(text))
            .expect("a scheme and a token of visible ASCII are a valid header value");
        value.set_sensitive(true);
        *cached = Some((current.version, value.clone()));
        Some((current.version, value))
    }

    /// A token newer than `version`, after the engine's coalesced refresh.
    async fn refreshed(&self, version: u64) -> Option<(u64, HeaderValue)> {
        match tokio::time::timeout(self.timeout, self.engine.refresh_past(version, REFRESH_REASON)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => debug!("proxy {}: the refresh failed: {e}", self.name),
            Err(_) => debug!("proxy {}: the refresh did not finish within the proxy's timeout", self.name),
        }
        self.credential().filter(|(held, _)| *held > version)
    }

    /// Sends one request upstream and waits, at most `timeout`, for the response head. `kept`
    /// gives the body again if the request must go once more on a new connection.
    async fn send(
        &self,
        parts: &request::Parts,
        target: &PathAndQuery,
        credential: &HeaderValue,
        kept: &Kept<Incoming>,
        body: pool::RequestBody,
    ) -> Result<Response<UpstreamBody>, Response<Body>> {
        let build = |body| {
            forward::upstream_request(parts, target, &self.upstream.host, (&self.header, credential), body)
        };
        let again = || kept.replay().map(|body| build(body.boxed()));
        // On the heap: the exchange's state is 3 KiB, which every future holding it would
        // otherwise copy each time it moves (into the timeout, and on up to hyper's
        // dispatcher), more than the allocation costs.
        let exchange = Box::pin(self.upstream.send(build(body), again));
        let outcome = tokio::time::timeout(self.timeout, exchange).await;
        let (status, code, kind, detail) = match outcome {
            Ok(Ok(response)) => {
                self.set_health(None);
                return Ok(response);
            }
            Err(_) => (
                StatusCode::GATEWAY_TIMEOUT,
                "upstream_timeout",
                "timeout",
                format!(
                    "the upstream sent no answer within {}",
                    crate::config::duration_display(self.timeout)
                ),
            ),
            Ok(Err(e)) if client_failed(e.cause()).is_some() => {
                let detail = client_failed(e.cause()).map(ToString::to_string).unwrap_or_default();
                info!("proxy {}: {} {}: {detail}", self.name, parts.method, parts.uri.path());
                self.metrics.proxy_client_error(&self.name);
                return Err(error(StatusCode::BAD_REQUEST, "client_failed", &detail));
            }
            Ok(Err(e)) => match crate::trust::untrusted(e.cause()) {
                Some(untrusted) => {
                    (StatusCode::BAD_GATEWAY, "upstream_untrusted", "untrusted", untrusted.to_string())
                }
                None if matches!(e, SendError::Connect(_)) => (
                    StatusCode::BAD_GATEWAY,
                    "upstream_unreachable",
                    "unreachable",
                    format!("cannot connect to the upstream: {}", causes(e.cause())),
                ),
                None => (
                    StatusCode::BAD_GATEWAY,
                    "upstream_failed",
                    "failed",
                    format!("the upstream exchange failed: {}", causes(e.cause())),
                ),
            },
        };
        self.metrics.proxy_upstream_error(&self.name, kind);
        self.set_health(Some(&detail));
        Err(error(status, code, &detail))
    }

    /// The upstream's answer to the client's `request` (whose `Host` was `host`), as the client
    /// gets it: hop-by-hop headers gone, a redirect to the upstream pointed back at the proxy,
    /// the body streamed as it comes.
    fn answer(
        &self,
        response: Response<UpstreamBody>,
        request: &request::Parts,
        target: &PathAndQuery,
        host: Option<&HeaderValue>,
    ) -> Response<Body> {
        let (mut parts, body) = response.into_parts();
        // The version is the connection's, not the message's (RFC 9110 §6.2): an HTTP/1.0
        // upstream's would close a 1.1 client's connection. hyper answers a 1.0 client in 1.0.
        parts.version = hyper::Version::HTTP_11;
        forward::strip_hop_by_hop(&mut parts.headers);
        forward::reframe(&mut parts, &request.method, body.size_hint().exact());
        // A challenge invites a host to start OAuth discovery; the proxy holds the token.
        parts.headers.remove(header::WWW_AUTHENTICATE);
        if parts.status.is_redirection()
            && let Some(location) = parts.headers.get(header::LOCATION).and_then(|l| l.to_str().ok())
            && let Some(rewritten) =
                self.upstream.rewrite_location(location, target, &self.proxy_origin(request, host))
            && let Ok(value) = HeaderValue::from_str(&rewritten)
        {
            parts.headers.insert(header::LOCATION, value);
        }
        Response::from_parts(parts, body.map_err(BoxError::from).boxed())
    }

    /// `http://host:port` as the client reached a TCP listener, by the host the gate checked
    /// (an absolute request target's, else `Host`); empty for a Unix one.
    fn proxy_origin(&self, request: &request::Parts, host: Option<&HeaderValue>) -> String {
        let host = request.uri.authority().map(|a| a.as_str()).or_else(|| host.and_then(|h| h.to_str().ok()));
        match host {
            Some(host) if self.gate.is_tcp() => format!("http://{host}"),
            _ => String::new(),
        }
    }

    fn unavailable(&self, why: Unavailable) -> Response<Body> {
        let (code, detail) = match why {
            Unavailable::NoValidToken => {
                ("no_valid_token", "the daemon holds no valid token; see /v1/status for why".to_owned())
            }
            Unavailable::Rejected(detail) => {
                self.set_health(Some(&detail));
                ("upstream_rejected_token", detail)
            }
        };
        self.metrics.proxy_unavailable(&self.name, code);
        let mut response = error(StatusCode::SERVICE_UNAVAILABLE, code, &detail);
        let retry =
            self.status.borrow().next_refresh_at.and_then(|at| at.duration_since(SystemTime::now()).ok());
        let seconds = retry.unwrap_or(RETRY_AFTER_DEFAULT).as_secs().clamp(1, 300);
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        response
    }

    /// Records whether the upstream exchange works, for status and health; logs a new failure.
    fn set_health(&self, error: Option<&str>) {
        self.report.send_if_modified(|report| {
            if report.error.as_deref() == error {
                return false;
            }
            match error {
                Some(e) if report.ok => warn!("proxy {}: {e}", self.name),
                None if !report.ok => info!("proxy {}: the upstream answers again", self.name),
                _ => {}
            }
            report.ok = error.is_none();
            report.error = error.map(str::to_owned);
            true
        });
    }
}

/// The client's own failure in an upstream exchange's error chain, if that is why it failed.
fn client_failed<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a replay::ClientBodyFailed> {
    std::iter::successors(Some(e), |e| e.source()).find_map(|e| e.downcast_ref())
}

/// A hyper client error by its causes: "client error (Connect)" alone says nothing.
fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let chain: Vec<String> = std::iter::successors(Some(e), |e| e.source()).map(|e| e.to_string()).collect();
    chain.join(": ")
}

fn error(status: StatusCode, code: &str, detail: &str) -> Response<Body> {
    crate::api::error(status, code, detail).map(|body| body.map_err(|never| match never {}).boxed())
}
