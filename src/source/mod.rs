//! Where tokens come from: the backend's current-token answer over HTTP(S) (DESIGN §3), or an
//! OAuth 2.0 authorization server's token endpoint (`oauth2`, DESIGN §13).
//!
//! One `reqwest` client lives for the whole run (connection reuse, one TLS setup). The source
//! enforces the HTTP half of DESIGN §4 rule 1 — status 200, no redirects, at most
//! [`MAX_BODY_BYTES`] — and leaves the JSON to [`crate::validate`]; the live `probe` of rule 6
//! uses the same client.

pub mod oauth2;
mod probe;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use reqwest::header::{ACCEPT, HeaderName, HeaderValue};
use reqwest::{Client, StatusCode};
use url::Url;
use zeroize::Zeroizing;

use crate::config::{AuthConfig, AuthKind, TokenConfig, duration_display};
use crate::trust::{Trust, TrustLayer};

pub use probe::ProbeError;

pub const MAX_BODY_BYTES: usize = 64 * 1024;
const USER_AGENT: &str = concat!("mcp-token-sync/", env!("CARGO_PKG_VERSION"));
/// Connecting is a small part of the request: a backend that accepts no connection within this
/// is down, and the retry comes sooner than the whole `timeout` would allow.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A 200 answer's body, with the time it arrived (the origin of `expires_in`).
pub struct Answer {
    pub body: Zeroizing<Vec<u8>>,
    pub received_at: SystemTime,
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("cannot read the credential file {path}: {reason}")]
    Credential { path: PathBuf, reason: String },
    #[error("no answer from {url} within source.timeout ({timeout})")]
    Timeout { url: Url, timeout: String },
    #[error("request to {url} failed: {reason}")]
    Request { url: Url, reason: String },
    #[error("{0}")]
    Untrusted(String),
    #[error(
        "{url} answered a redirect (HTTP {status}{location}); redirects are not followed: set source.url to the final address"
    )]
    Redirect { url: Url, status: u16, location: String },
    #[error(
        "the backend refused the daemon's credential (HTTP {status}): check [source.auth] and its credential file"
    )]
    Unauthorized { status: u16 },
    #[error("{url} answered HTTP {status}{hint}")]
    Status { url: Url, status: u16, hint: &'static str },
    #[error("the answer is larger than {} KiB; is source.url the token endpoint?", MAX_BODY_BYTES / 1024)]
    TooLarge,
    #[error(transparent)]
    OAuth2(Box<oauth2::OAuth2Error>),
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("source.ca_file {path}: {reason}")]
    CaFile { path: PathBuf, reason: String },
    #[error("the HTTP client could not be set up: {0}")]
    Client(String),
}

pub struct Source {
    client: Client,
    kind: Kind,
    timeout: Duration,
}

enum Kind {
    /// The current-token endpoint, and the credential it wants.
    Endpoint {
        url: Url,
        auth: Option<AuthConfig>,
    },
    // Boxed: it holds the whole source config, the endpoint kind a URL.
    OAuth2(Box<oauth2::OAuth2>),
}

/// The source as status shows it.
#[derive(Debug, Clone)]
pub enum SourceStatus {
    Endpoint,
    OAuth2(oauth2::OAuth2Status),
}

/// What a fetch brought back, for validation.
pub enum Fetch {
    /// The current-token endpoint's answer (DESIGN §4 rules 1-5 apply to it).
    Answer(Answer),
    /// The token endpoint's access token (rules 3 and 5).
    Issued(oauth2::token::Issued),
}

impl Source {
    /// The source of `token`: the client for its `source.url` and its `validate.probe`, which
    /// shares it.
    pub fn new(token: &TokenConfig) -> Result<Source, SetupError> {
        let (config, probe) = (&token.source, token.validate.probe.as_ref());
        // The URLs this client goes to that the config names.
        let urls: Vec<&Url> = [&config.url, &config.token_endpoint, &config.issuer, &config.resource]
            .into_iter()
            .flatten()
            .chain(probe.map(|p| &p.url))
            .collect();
        let mut builder = Client::builder()
            .user_agent(USER_AGENT)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(MAX_CONNECT_TIMEOUT));
        // Plain http to loopback is checked for who listens (DESIGN §12); TLS proves it by the
        // certificate. One client serves both URLs, so a plain-http one has both checked. An
        // oauth2 source goes where metadata says too, which no config names: always checked.
        if config.url.is_none() || urls.iter().any(|url| url.scheme() == "http") {
            builder =
                builder.connector_layer(TrustLayer::new(Trust::new(&config.trust_uids, "source.trust_uids")));
        }
        let roots = crate::tls::roots(config.ca_file.as_deref()).map_err(|reason| SetupError::CaFile {
            path: config.ca_file.clone().unwrap_or_default(),
            reason,
        })?;
        builder = builder.use_preconfigured_tls(crate::tls::client_config(roots));
        let client = builder.build().map_err(|e| SetupError::Client(describe(&e)))?;
        let kind = match &config.url {
            Some(url) => Kind::Endpoint { url: url.clone(), auth: config.auth.clone() },
            None => {
                Kind::OAuth2(Box::new(oauth2::OAuth2::new(config, &token.state_dir, &token.shared_state_dir)))
            }
        };
        Ok(Source { client, kind, timeout: config.timeout })
    }

    pub async fn fetch(&self) -> Result<Fetch, FetchError> {
        match &self.kind {
            Kind::Endpoint { url, auth } => self.fetch_answer(url, auth.as_ref()).await.map(Fetch::Answer),
            Kind::OAuth2(oauth2) => oauth2
                .fetch(&self.client)
                .await
                .map(Fetch::Issued)
                .map_err(|e| FetchError::OAuth2(Box::new(e))),
        }
    }

    /// What status shows of the source (DESIGN §13, "Status").
    pub fn status(&self) -> SourceStatus {
        match &self.kind {
            Kind::Endpoint { .. } => SourceStatus::Endpoint,
            Kind::OAuth2(oauth2) => SourceStatus::OAuth2(oauth2.status()),
        }
    }

    /// Logs in (DESIGN §13 `login`); `None` when the source has nothing to log in to (a
    /// current-token endpoint, or client credentials).
    pub async fn login(
        &self,
        method: Option<oauth2::login::Method>,
        requester: oauth2::login::Requester,
        open: tokio::sync::mpsc::Sender<oauth2::login::Open>,
    ) -> Option<Result<(), oauth2::login::LoginError>> {
        match &self.kind {
            Kind::OAuth2(oauth2) if oauth2.status().grant == crate::config::Grant::RefreshToken => {
                Some(oauth2.login(&self.client, method, requester, open).await)
            }
            _ => None,
        }
    }

    async fn fetch_answer(&self, url: &Url, auth: Option<&AuthConfig>) -> Result<Answer, FetchError> {
        let mut request = self.client.get(url.clone()).header(ACCEPT, "application/json");
        if let Some(auth) = auth {
            request = authenticate(request, auth)?;
        }
        let mut response = request.send().await.map_err(|e| self.request_error(url, &e))?;
        let status = response.status();
        if status.is_redirection() {
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .map(|l| format!(" to {l}"))
                .unwrap_or_default();
            return Err(FetchError::Redirect { url: url.clone(), status: status.as_u16(), location });
        }
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(FetchError::Unauthorized { status: status.as_u16() });
        }
        if status != StatusCode::OK {
            let hint = match status.as_u16() {
                404 => ": is source.url right?",
                500..=599 => ": the backend is failing",
                _ => "",
            };
            return Err(FetchError::Status { url: url.clone(), status: status.as_u16(), hint });
        }
        if response.content_length().is_some_and(|len| len > MAX_BODY_BYTES as u64) {
            return Err(FetchError::TooLarge);
        }
        let body = read_limited(&mut response, MAX_BODY_BYTES)
            .await
            .map_err(|e| self.request_error(url, &e))?
            .ok_or(FetchError::TooLarge)?;
        Ok(Answer { body, received_at: SystemTime::now() })
    }

    fn request_error(&self, url: &Url, e: &reqwest::Error) -> FetchError {
        if let Some(untrusted) = crate::trust::untrusted(e) {
            FetchError::Untrusted(untrusted.to_string())
        } else if e.is_timeout() {
            FetchError::Timeout { url: url.clone(), timeout: duration_display(self.timeout) }
        } else {
            FetchError::Request { url: url.clone(), reason: describe(e) }
        }
    }
}

fn authenticate(
    request: reqwest::RequestBuilder,
    auth: &AuthConfig,
) -> Result<reqwest::RequestBuilder, FetchError> {
    let secret = read_credential(&auth.credential_file)?;
    let invalid = || FetchError::Credential {
        path: auth.credential_file.clone(),
        reason: "it holds characters that cannot go in an HTTP header".into(),
    };
    Ok(match auth.kind {
        AuthKind::Bearer => {
            let mut value =
                HeaderValue::try_from(format!("Bearer {}", secret.as_str())).map_err(|_| invalid())?;
            value.set_sensitive(true);
            request.header(reqwest::header::AUTHORIZATION, value)
        }
        AuthKind::Header => {
            let name = auth.header.as_deref().expect("config requires source.auth.header for type header");
            let name = HeaderName::from_bytes(name.as_bytes()).expect("config checked the header name");
            let mut value = HeaderValue::from_str(&secret).map_err(|_| invalid())?;
            value.set_sensitive(true);
            request.header(name, value)
        }
        AuthKind::Basic => {
            let user = auth.username.as_deref().expect("config requires source.auth.username for type basic");
            request.basic_auth(user, Some(secret.as_str()))
        }
    })
}

/// Read before every fetch, so a rotated bootstrap credential is picked up without a restart.
fn read_credential(path: &Path) -> Result<Zeroizing<String>, FetchError> {
    crate::fsutil::read_secret(path)
        .map_err(|reason| FetchError::Credential { path: path.to_owned(), reason })
}

/// A response's body, at most `limit` bytes; `None` when it is larger. In zeroized memory
/// reserved whole, so the buffer never reallocates: a reallocation would leave an unzeroed copy
/// of a secret behind.
pub(crate) async fn read_limited(
    response: &mut reqwest::Response,
    limit: usize,
) -> Result<Option<Zeroizing<Vec<u8>>>, reqwest::Error> {
    let mut body = Zeroizing::new(Vec::with_capacity(limit));
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > limit {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

/// A reqwest error by its causes: "error sending request for url (…)" alone says nothing, and
/// our messages name the URL already.
pub(crate) fn describe(e: &reqwest::Error) -> String {
    let causes: Vec<String> = std::iter::successors(std::error::Error::source(e), |cause| cause.source())
        .map(|c| c.to_string())
        .collect();
    if causes.is_empty() { e.to_string() } else { causes.join(": ") }
}
