//! Where a proxy forwards to: the upstream's origin and path prefix, and a pooled HTTP/1.1
//! client for it (hyper-util's, over rustls for https). The client streams bodies both ways as
//! they come, and follows no redirect.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper::Uri;
use hyper::header::HeaderValue;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use url::Url;

use crate::config::ProxySinkConfig;
use crate::server::BoxError;
use crate::trust::{Checked, Trust};

/// Connecting is a small part of a request: an upstream that accepts no connection within this
/// is down, and the client hears 502 sooner than the whole `timeout` would allow.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle pooled connections are closed after this; upstreams close theirs sooner or later too.
const POOL_IDLE: Duration = Duration::from_secs(60);

pub(super) type RequestBody = BoxBody<Bytes, BoxError>;

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
    pub client: Client<Checked<HttpsConnector<HttpConnector>>, RequestBody>,
}

impl Upstream {
    pub fn new(config: &ProxySinkConfig) -> Result<Upstream, SetupError> {
        let url = &config.upstream;
        let roots =
            if url.scheme() == "https" { roots(config.ca_file.as_deref())? } else { RootCertStore::empty() };
        let tls =
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("ring supports the default TLS versions")
                .with_root_certificates(roots)
                .with_no_client_auth();
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
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE)
            .build(connector);
        let authority = &url[url::Position::BeforeHost..url::Position::AfterPort];
        Ok(Upstream {
            scheme: url.scheme().parse().expect("http or https, as the config checked"),
            host: HeaderValue::from_str(authority).expect("a URL's host and port are a valid header"),
            authority: authority.parse().expect("a URL's host and port are an authority"),
            prefix: url.path().trim_end_matches('/').to_owned(),
            origin: url.origin(),
            client,
        })
    }

    /// The upstream URI for a request's path and query.
    pub fn uri(&self, path_and_query: &str) -> Result<Uri, hyper::http::Error> {
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(format!("{}{path_and_query}", self.prefix))
            .build()
    }

    /// A redirect's `Location` as the client should follow it: back through the proxy when it
    /// points at the upstream under its prefix (relative to `base`, the request's upstream URI),
    /// as it is otherwise. `proxy_origin` is `http://host:port` for a TCP listener, empty for a
    /// Unix one (a path-absolute reference, resolved against whatever the client used).
    pub fn rewrite_location(&self, location: &str, base: &Uri, proxy_origin: &str) -> Option<String> {
        let base = Url::parse(&base.to_string()).ok()?;
        let target = base.join(location).ok()?;
        if target.origin() != self.origin {
            return None;
        }
        let path = target.path().strip_prefix(self.prefix.as_str())?;
        if !(path.is_empty() || path.starts_with('/')) {
            return None;
        }
        let path = if path.is_empty() { "/" } else { path };
        let query = target.query().map(|q| format!("?{q}")).unwrap_or_default();
        let fragment = target.fragment().map(|f| format!("#{f}")).unwrap_or_default();
        Some(format!("{proxy_origin}{path}{query}{fragment}"))
    }
}

/// The system's roots and `ca_file`'s certificates.
fn roots(ca_file: Option<&Path>) -> Result<RootCertStore, SetupError> {
    let mut roots = RootCertStore::empty();
    // Unreadable system certificates are skipped, as reqwest does for the source.
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if let Some(path) = ca_file {
        let fail = |reason: String| SetupError { path: path.to_owned(), reason };
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .map_err(|e| fail(e.to_string()))?
            .collect::<Result<_, _>>()
            .map_err(|e| fail(e.to_string()))?;
        if certs.is_empty() {
            return Err(fail("holds no PEM certificate".into()));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| fail(e.to_string()))?;
        }
    }
    Ok(roots)
}
