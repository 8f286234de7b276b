//! Where a proxy forwards to: the upstream's origin and path prefix, and how a request gets
//! there: on an idle connection of the [`Pool`] or a new one (hyper-util's connector, rustls
//! for https, the loopback trust check), driven by the request itself. Bodies stream both ways
//! as they come; no redirect is followed.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper::header::HeaderValue;
use hyper::http::uri::PathAndQuery;
use hyper::{Method, Request, Response, Uri};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::RootCertStore;
use url::Url;

use super::pool::{Conn, ExchangeError, Pool, RequestBody, UpstreamBody};
use super::upstream_io::{ClosedBeforeWrite, UpstreamIo};
use crate::config::ProxySinkConfig;
use crate::server::BoxError;
use crate::trust::{Checked, Trust};

/// Connecting is a small part of a request: an upstream that accepts no connection within this
/// is down, and the client hears 502 sooner than the whole `timeout` would allow.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a request that failed on a reused connection waits for the reset that proves the
/// upstream did not read it: a round trip on loopback or a LAN, with room for a busy host.
const RESET_WAIT: Duration = Duration::from_millis(50);

/// Why a request got no answer from the upstream; the proxy's message says which.
#[derive(Debug)]
pub(super) enum SendError {
    Connect(BoxError),
    Exchange(hyper::Error),
}

impl SendError {
    /// The error itself, whose chain holds the reason (a refused listener, a client's body).
    pub fn cause(&self) -> &(dyn std::error::Error + 'static) {
        match self {
            SendError::Connect(e) => e.as_ref(),
            SendError::Exchange(e) => e,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("ca_file {path}: {reason}")]
pub struct SetupError {
    path: PathBuf,
    reason: String,
}

/// Built with the config (so `check` refuses what `run` would), then shared by the proxy's
/// connections.
pub struct Upstream {
    /// `scheme://authority`, what requests go to.
    scheme: hyper::http::uri::Scheme,
    authority: hyper::http::uri::Authority,
    /// The path prefix without its trailing slash; empty for none.
    prefix: String,
    /// The upstream's origin, to tell a redirect that stays on it.
    origin: url::Origin,
    /// `Host` as the upstream expects it.
    pub host: HeaderValue,
    connector: Checked<HttpsConnector<HttpConnector>>,
    pool: Arc<Pool>,
}

impl Upstream {
    pub fn new(config: &ProxySinkConfig) -> Result<Upstream, SetupError> {
        let url = &config.upstream;
        let roots = match (url.scheme(), &config.ca_file) {
            ("https", ca_file) => crate::tls::roots(ca_file.as_deref())
                .map_err(|reason| SetupError { path: config.ca_file.clone().unwrap_or_default(), reason })?,
            _ => Arc::new(RootCertStore::empty()),
        };
        let tls = crate::tls::client_config(roots);
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        // Requests and answers are small and written whole: no reason to hold them back.
        http.set_nodelay(true);
        http.set_connect_timeout(Some(config.timeout.min(MAX_CONNECT_TIMEOUT)));
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        // Plain http is checked for who listens (DESIGN §12); TLS proves it by the certificate.
        let trust =
            (url.scheme() == "http").then(|| Trust::new(&config.trust_uids, "the proxy's trust_uids"));
        let connector = Checked::new(connector, trust);
        let authority = &url[url::Position::BeforeHost..url::Position::AfterPort];
        Ok(Upstream {
            scheme: url.scheme().parse().expect("http or https, as the config checked"),
            host: HeaderValue::from_str(authority).expect("a URL's host and port are a valid header"),
            authority: authority.parse().expect("a URL's host and port are an authority"),
            prefix: url.path().trim_end_matches('/').to_owned(),
            origin: url.origin(),
            connector,
            pool: Arc::default(),
        })
    }

    /// Sends `request` on an idle connection or a new one, and returns the answer once its
    /// head has arrived. A request that failed before any answer on a connection taken from
    /// the pool goes once more on a new connection when that is safe: hyper never wrote it,
    /// the upstream had closed before it was written or reset the connection with it unread
    /// (any method), or it is idempotent (RFC 9110 §9.2.2); `again` builds it anew (its body
    /// kept for replay), `None` if it cannot.
    pub(super) async fn send(
        &self,
        request: Request<RequestBody>,
        again: impl FnOnce() -> Option<Request<RequestBody>>,
    ) -> Result<Response<UpstreamBody>, SendError> {
        let conn = match self.pool.take() {
            Some(conn) => conn,
            None => self.connect().await?,
        };
        let reused = conn.reused;
        let idempotent = matches!(
            *request.method(),
            Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
        );
        // Only a request that is not idempotent needs the proof a reset gives.
        let wait_for_reset = if idempotent { Duration::ZERO } else { RESET_WAIT };
        let request = match conn.exchange(request, wait_for_reset).await {
            Ok((response, conn)) => return Ok(self.streamed(response, conn)),
            Err(ExchangeError::NotSent(request, _)) => *request,
            Err(ExchangeError::Failed { error, reset })
                if reused && (idempotent || reset || never_written(&error)) =>
            {
                match again() {
                    Some(request) => request,
                    None => return Err(SendError::Exchange(error)),
                }
            }
            Err(ExchangeError::Failed { error, .. }) => return Err(SendError::Exchange(error)),
        };
        tracing::debug!("{}: sending again on a new connection", self.authority);
        let conn = self.connect().await?;
        match conn.exchange(request, Duration::ZERO).await {
            Ok((response, conn)) => Ok(self.streamed(response, conn)),
            Err(ExchangeError::NotSent(_, error) | ExchangeError::Failed { error, .. }) => {
                Err(SendError::Exchange(error))
            }
        }
    }

    /// Closes every idle connection.
    pub fn close_idle(&self) {
        self.pool.clear();
    }

    fn streamed(
        &self,
        response: Response<hyper::body::Incoming>,
        conn: Option<Conn>,
    ) -> Response<UpstreamBody> {
        response.map(|incoming| UpstreamBody::new(incoming, conn, self.pool.clone()))
    }

    /// A new connection (the connect timeout and the trust check are the connector's).
    async fn connect(&self) -> Result<Conn, SendError> {
        use tower_service::Service;
        let mut connector = self.connector.clone();
        std::future::poll_fn(|cx| connector.poll_ready(cx)).await.map_err(SendError::Connect)?;
        let origin = Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query("/")
            .build()
            .expect("a scheme and an authority make a URI");
        let stream = connector.call(origin).await.map_err(SendError::Connect)?;
        let (io, shared) = UpstreamIo::new(stream);
        Conn::open(io, shared).await.map_err(SendError::Exchange)
    }

    /// The upstream's request target for a client's path and query: the prefix before it. A
    /// request line has no room for an authority (RFC 9112 §3.2.1: origin-form; it is in `Host`);
    /// `OPTIONS *` stays `*` (§3.2.4). Refused, with why: a target that is not a path, and under
    /// a prefix one with a `.` or `..` segment, however encoded, which an upstream that resolves
    /// them would take outside the prefix (RFC 3986 §5.2.4).
    pub fn target(&self, path_and_query: &PathAndQuery) -> Result<PathAndQuery, &'static str> {
        if self.prefix.is_empty() || path_and_query.as_str() == "*" {
            return Ok(path_and_query.clone());
        }
        let decoded = percent_encoding::percent_decode_str(path_and_query.path()).decode_utf8_lossy();
        if decoded.split(['/', '\\']).any(|segment| segment == "." || segment == "..") {
            return Err(
                "a path with . or .. segments could leave the upstream's path prefix: send it resolved",
            );
        }
        PathAndQuery::try_from(format!("{}{path_and_query}", self.prefix))
            .map_err(|_| "the proxy forwards requests for a path")
    }

    /// A redirect's `Location` as the client should follow it: back through the proxy when it
    /// points at the upstream under its prefix (relative to `target`, the request's upstream
    /// target); to the upstream itself, made absolute, when it points at its origin outside the
    /// prefix (the proxy cannot reach that path); as it is otherwise. `proxy_origin` is
    /// `http://host:port` for a TCP listener, empty for a Unix one (a path-absolute reference,
    /// resolved against whatever the client used). `None`: leave it as it is.
    pub fn rewrite_location(
        &self,
        location: &str,
        target: &PathAndQuery,
        proxy_origin: &str,
    ) -> Option<String> {
        let base = Url::parse(&format!("{}://{}{target}", self.scheme, self.authority)).ok()?;
        let to = base.join(location).ok()?;
        if to.origin() != self.origin {
            return None;
        }
        let path = match to.path().strip_prefix(self.prefix.as_str()) {
            Some(path) if path.is_empty() || path.starts_with('/') => path,
            _ => return Some(to.into()),
        };
        let path = match path {
            "" => "/",
            // Alone, `//host/…` would be a network-path reference (RFC 3986 §4.2) to another
            // host; `/.` before it keeps it a path on the proxy, as the WHATWG URL standard does.
            path if path.starts_with("//") && proxy_origin.is_empty() => &format!("/.{path}"),
            path => path,
        };
        let query = to.query().map(|q| format!("?{q}")).unwrap_or_default();
        let fragment = to.fragment().map(|f| format!("#{f}")).unwrap_or_default();
        Some(format!("{proxy_origin}{path}{query}{fragment}"))
    }
}

/// The upstream cannot have read a request that failed this way: the connection was closed
/// before the first byte was written ([`ClosedBeforeWrite`]).
fn never_written(error: &hyper::Error) -> bool {
    // hyper keeps the IO error as a cause, and the IO error keeps ours inside it.
    std::iter::successors(Some(error as &(dyn std::error::Error + 'static)), |e| e.source()).any(|e| {
        e.is::<ClosedBeforeWrite>()
            || e.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .is_some_and(|inner| inner.is::<ClosedBeforeWrite>())
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::{Config, Environment, SinkConfig};

    fn upstream(url: &str) -> Upstream {
        let text = format!(
            "[source]\nurl = \"https://backend.example.com/token\"\n\
             [[sink]]\ntype = \"proxy\"\nlisten = \"/run/x/proxy.sock\"\nupstream = \"{url}\"\n"
        );
        let config = Config::parse(&text, Path::new("test.toml"), &Environment::default()).unwrap();
        let SinkConfig::Proxy(proxy) = &config.tokens[0].sinks[0] else { panic!("a proxy sink") };
        Upstream::new(proxy).unwrap()
    }

    #[test]
    fn a_redirect_stays_where_the_upstream_meant_it() {
        let up = upstream("https://mcp.example.com/base/");
        let target = PathAndQuery::from_static("/base/a/b?x=1");
        let tcp = "http://127.0.0.1:8787";
        let rewrite = |location, origin| up.rewrite_location(location, &target, origin);
        // Under the prefix: back through the proxy, relative or absolute.
        assert_eq!(rewrite("next?p=2", tcp).as_deref(), Some("http://127.0.0.1:8787/a/next?p=2"));
        assert_eq!(rewrite("https://mcp.example.com/base/c", "").as_deref(), Some("/c"));
        // A path that would read as another host on a Unix listener stays a path on the proxy,
        // however the upstream spelled it.
        for location in [
            "/base//evil.example/x",
            "https://mcp.example.com/base//evil.example/x",
            "/base/\\evil.example/x",
        ] {
            assert_eq!(rewrite(location, "").as_deref(), Some("/.//evil.example/x"), "{location}");
            assert_eq!(rewrite(location, tcp).as_deref(), Some("http://127.0.0.1:8787//evil.example/x"));
        }
        // The upstream's origin outside the prefix: the proxy cannot reach it, the client must
        // be sent to the upstream itself, not to a path of the proxy's.
        assert_eq!(rewrite("/basement", tcp).as_deref(), Some("https://mcp.example.com/basement"));
        assert_eq!(rewrite("/", "").as_deref(), Some("https://mcp.example.com/"));
        // Another origin: as it is.
        assert_eq!(rewrite("https://elsewhere.example/x", tcp), None);
    }

    #[test]
    fn a_target_goes_under_the_prefix_and_cannot_climb_out_of_it() {
        let up = upstream("https://mcp.example.com/base/");
        let target = |pq: &'static str| up.target(&PathAndQuery::from_static(pq));
        assert_eq!(target("/mcp?x=%2F..").unwrap(), "/base/mcp?x=%2F..", "a query is not a path");
        assert_eq!(target("*").unwrap(), "*");
        for climbing in ["/../secret", "/a/./b", "/a/..", "/%2e%2E/secret", "/a\\..\\secret"] {
            assert!(target(climbing).unwrap_err().contains(".. segments"), "{climbing}");
        }
        assert_eq!(target("/a..b/.c").unwrap(), "/base/a..b/.c", "dots inside a segment are a name");
        // Without a prefix there is nothing to climb out of: the path goes as the client sent it.
        let bare = upstream("https://mcp.example.com");
        assert_eq!(bare.target(&PathAndQuery::from_static("/a/../b")).unwrap(), "/a/../b");
    }
}
