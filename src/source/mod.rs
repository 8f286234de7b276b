//! Where tokens come from (DESIGN §3, §13, §16): a current-token endpoint over HTTP(S) (the
//! seed's backend, a cloud metadata server), an OAuth 2.0 authorization server's token
//! endpoint (`oauth2`), a helper command (`command`), or a GitHub App (`github_app`).
//!
//! One `reqwest` client lives for the whole run (connection reuse, one TLS setup). The source
//! enforces the transport half of DESIGN §4 rule 1 — an HTTP 200 or a helper's exit 0, no
//! redirects, at most [`MAX_BODY_BYTES`] — and leaves the answer to [`crate::validate`]; the
//! live `probe` of rule 6 uses the same client.

mod command;
mod endpoint;
mod github_app;
pub mod oauth2;
mod probe;

use std::time::{Duration, SystemTime};

use reqwest::Client;
use url::Url;
use zeroize::Zeroizing;

use crate::config::{Format, SourceKind, TokenConfig};
use crate::trust::{Trust, TrustLayer};

pub use command::CommandError;
pub use github_app::GithubAppError;
pub use oauth2::exchange::SubjectFeed;
pub use probe::ProbeError;

pub const MAX_BODY_BYTES: usize = 64 * 1024;
const USER_AGENT: &str = concat!("mcp-token-sync/", env!("CARGO_PKG_VERSION"));
/// Connecting is a small part of the request: a backend that accepts no connection within this
/// is down, and the retry comes sooner than the whole `timeout` would allow.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// An answer's body (a 200's, a helper's stdout), with the time it arrived (the origin of
/// `expires_in`).
pub struct Answer {
    pub body: Zeroizing<Vec<u8>>,
    pub received_at: SystemTime,
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("cannot read the credential file {path}: {reason}")]
    Credential { path: std::path::PathBuf, reason: String },
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
        "the backend refused the request (HTTP {status}): check [source.auth] and its credential file, and \
         source.headers"
    )]
    Unauthorized { status: u16 },
    #[error("{url} answered HTTP {status}{hint}")]
    Status { url: Url, status: u16, hint: &'static str },
    #[error("the answer is larger than {} KiB; is the source the token's?", MAX_BODY_BYTES / 1024)]
    TooLarge,
    #[error(transparent)]
    OAuth2(Box<oauth2::OAuth2Error>),
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error(transparent)]
    GithubApp(#[from] GithubAppError),
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("source.ca_file {path}: {reason}")]
    CaFile { path: std::path::PathBuf, reason: String },
    #[error("the HTTP client could not be set up: {0}")]
    Client(String),
}

pub struct Source {
    client: Client,
    kind: Kind,
    timeout: Duration,
    /// A subject token of this daemon that the runner feeds (`subject_token = "NAME"`), until
    /// taken.
    feed: Option<SubjectFeed>,
}

enum Kind {
    Endpoint(endpoint::Endpoint),
    // Boxed: it holds the whole source config.
    OAuth2(Box<oauth2::OAuth2>),
    Command(command::Command),
    GithubApp(github_app::GithubApp),
}

/// The source as status shows it (DESIGN §13, §16). No secret, no argument of a command.
#[derive(Debug, Clone)]
pub enum SourceStatus {
    /// Where it is: scheme, host and path (no query, no credentials).
    Endpoint {
        url: String,
    },
    OAuth2(oauth2::OAuth2Status),
    /// The helper's program (argv[0]).
    Command {
        program: String,
    },
    /// The app (its client id, or app id) and the installation.
    GithubApp {
        app: String,
        installation_id: u64,
    },
}

/// What a fetch brought back, for validation.
pub enum Fetch {
    /// A JSON answer (DESIGN §4 rules 1-5 apply to it).
    Answer(Answer),
    /// A text answer: the token itself (`format = "text"`, DESIGN §16).
    Text(Answer),
    /// The token endpoint's access token (rules 3 and 5).
    Issued(oauth2::token::Issued),
}

impl Source {
    /// The source of `token`: the client for its URLs and its `validate.probe`, which shares
    /// it.
    pub fn new(token: &TokenConfig) -> Result<Source, SetupError> {
        let (config, probe) = (&token.source, token.validate.probe.as_ref());
        // The URLs this client goes to that the config names.
        let urls: Vec<&Url> =
            [&config.url, &config.token_endpoint, &config.issuer, &config.resource, &config.api_url]
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
        // certificate. One client serves every URL, so a plain-http one has all checked. An
        // oauth2 source goes where metadata says too, which no config names: always checked.
        if config.kind == SourceKind::Oauth2 || urls.iter().any(|url| url.scheme() == "http") {
            builder =
                builder.connector_layer(TrustLayer::new(Trust::new(&config.trust_uids, "source.trust_uids")));
        }
        let roots = crate::tls::roots(config.ca_file.as_deref()).map_err(|reason| SetupError::CaFile {
            path: config.ca_file.clone().unwrap_or_default(),
            reason,
        })?;
        builder = builder.use_preconfigured_tls(crate::tls::client_config(roots));
        let client = builder.build().map_err(|e| SetupError::Client(describe(&e)))?;
        let mut feed = None;
        let kind = match config.kind {
            SourceKind::Endpoint => {
                let url = config.url.as_ref().expect("the config requires source.url for an endpoint");
                Kind::Endpoint(endpoint::Endpoint::new(config, url))
            }
            SourceKind::Oauth2 => {
                let (oauth2, subject) =
                    oauth2::OAuth2::new(config, &token.state_dir, &token.shared_state_dir);
                feed = subject;
                Kind::OAuth2(Box::new(oauth2))
            }
            SourceKind::Command => Kind::Command(command::Command::new(config)),
            SourceKind::GithubApp => Kind::GithubApp(github_app::GithubApp::new(config)),
        };
        Ok(Source { client, kind, timeout: config.timeout, feed })
    }

    /// The feed of the subject token this source exchanges, when it is another token of this
    /// daemon (DESIGN §16): whoever runs the tokens takes it once, sends that token's states
    /// in and asks for an exchange on each new version.
    pub fn take_feed(&mut self) -> Option<SubjectFeed> {
        self.feed.take()
    }

    pub async fn fetch(&self) -> Result<Fetch, FetchError> {
        let by_format = |format: Format, answer: Answer| match format {
            Format::Json => Fetch::Answer(answer),
            Format::Text => Fetch::Text(answer),
        };
        match &self.kind {
            Kind::Endpoint(endpoint) => {
                let answer = endpoint.fetch(&self.client, self.timeout).await?;
                Ok(by_format(endpoint.format, answer))
            }
            Kind::OAuth2(oauth2) => oauth2
                .fetch(&self.client)
                .await
                .map(Fetch::Issued)
                .map_err(|e| FetchError::OAuth2(Box::new(e))),
            Kind::Command(command) => {
                let answer = command.fetch(self.timeout).await?;
                Ok(by_format(command.format, answer))
            }
            Kind::GithubApp(app) => app.fetch(&self.client, self.timeout).await.map(Fetch::Answer),
        }
    }

    /// What status shows of the source (DESIGN §13 "Status", §16).
    pub fn status(&self) -> SourceStatus {
        match &self.kind {
            Kind::Endpoint(endpoint) => SourceStatus::Endpoint { url: endpoint.shown_url() },
            Kind::OAuth2(oauth2) => SourceStatus::OAuth2(oauth2.status()),
            Kind::Command(command) => SourceStatus::Command { program: command.program().to_owned() },
            Kind::GithubApp(app) => {
                SourceStatus::GithubApp { app: app.app().to_owned(), installation_id: app.installation_id }
            }
        }
    }

    /// Logs in (DESIGN §13 `login`); `None` when the source has nothing to log in to (any
    /// source but an oauth2 one with the refresh_token grant).
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
