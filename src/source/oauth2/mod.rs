//! `[source] type = "oauth2"` (DESIGN §13): the daemon as the host's only OAuth 2.0 client for
//! its token. One file per concern, each opening with its RFC: `client_auth` (RFC 6749 §2.3,
//! RFC 7523), `discovery` (RFC 8414, OpenID Connect Discovery, RFC 9728), `token` (RFC 6749
//! §3.2, §5; RFC 8707), `store` (where the refresh token lives, and the lock every refresher
//! takes), `rotation` (the refresh under that lock), `login` (how a refresh token is got) and
//! `exchange` (RFC 8693: another token presented for this one).

pub mod client_auth;
mod discovery;
pub mod exchange;
pub mod login;
mod rotation;
pub(crate) mod store;
pub mod token;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use url::Url;

use crate::config::{AssertionAudience, Grant, SourceConfig};
use crate::token::Fingerprint;
use client_auth::ClientAuthentication;
use discovery::ServerMetadata;
use exchange::{Exchange, ExchangeError, SubjectFeed, SubjectStatus};
use token::{Issued, Target, TokenError};

/// An OAuth 2.0 source: where its authorization server is (found once, found again after a
/// failed request), and what it asks for.
pub(crate) struct OAuth2 {
    config: SourceConfig,
    metadata: tokio::sync::Mutex<Option<Arc<ServerMetadata>>>,
    /// Where the refresh token lives.
    store: store::Store,
    /// The daemon's `state_dir`: clients registered there, by issuer, are reused by every
    /// token on that issuer (`login::registration`).
    shared_dir: std::path::PathBuf,
    /// When the access token this process last got expires (Unix seconds): an older one in
    /// the store is not adopted.
    last_expiry: Mutex<Option<u64>>,
    /// What status shows, as of the last request.
    status: Mutex<OAuth2Status>,
    /// `grant = "token_exchange"`: the subject and the exchange's parameters.
    exchange: Option<Exchange>,
}

/// What `/v1/status` shows of an oauth2 source (DESIGN §13, "Status"). No secret.
#[derive(Debug, Clone)]
pub struct OAuth2Status {
    pub grant: Grant,
    /// As configured, or as discovered; `None` until found.
    pub token_endpoint: Option<Url>,
    /// For the refresh_token grant, once the store was read.
    pub refresh_token: Option<RefreshTokenStatus>,
    /// For the token_exchange grant: where the subject token comes from.
    pub subject_token: Option<SubjectStatus>,
}

/// The refresh token held, by fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshTokenStatus {
    pub state: RefreshTokenState,
    pub fingerprint: Option<Fingerprint>,
    /// When the held refresh token was stored.
    pub rotated_at: Option<SystemTime>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshTokenState {
    Held,
    Missing,
    /// The server refused it (`invalid_grant`); kept until a login or a new seed.
    Refused,
}

impl RefreshTokenState {
    pub fn name(self) -> &'static str {
        match self {
            RefreshTokenState::Held => "held",
            RefreshTokenState::Missing => "missing",
            RefreshTokenState::Refused => "refused",
        }
    }
}

/// Why the token endpoint issued no token.
#[derive(Debug, thiserror::Error)]
pub enum OAuth2Error {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    Discovery(#[from] discovery::DiscoveryError),
    #[error(transparent)]
    Exchange(#[from] ExchangeError),
    /// The store in state_dir could not be used (its message names the file).
    #[error("{0}")]
    Store(String),
    #[error("{0}")]
    Seed(String),
    /// No refresh token to present (DESIGN §13 `needs_login`).
    #[error("{}; run `mcp-token-sync login`", if *refused { "the stored refresh token was refused" } else { "no refresh token is held" })]
    NeedsLogin { refused: bool },
    /// The store holds tokens from another server (the config changed): not sent anywhere.
    #[error(
        "the stored refresh token is from {stored}, not from this source's {ours}: run `mcp-token-sync login` (or set a new source.refresh_token_file)"
    )]
    OtherServer { stored: String, ours: String },
    /// The server refused the refresh token (`invalid_grant`): it is kept, marked refused.
    #[error("{0}; the refresh token is kept, marked refused: run `mcp-token-sync login`")]
    Refused(TokenError),
}

impl OAuth2Error {
    /// Only a login (or a new `refresh_token_file`) helps.
    pub fn needs_login(&self) -> bool {
        matches!(
            self,
            OAuth2Error::NeedsLogin { .. } | OAuth2Error::Refused(_) | OAuth2Error::OtherServer { .. }
        )
    }
}

impl From<store::StoreError> for OAuth2Error {
    fn from(e: store::StoreError) -> OAuth2Error {
        OAuth2Error::Store(e.to_string())
    }
}

impl OAuth2 {
    /// `state_dir` is the token's own; `shared_dir` the daemon's. With the feed of a subject
    /// token of this daemon (`subject_token = "NAME"`), which the caller fills.
    pub fn new(
        config: &SourceConfig,
        state_dir: &std::path::Path,
        shared_dir: &std::path::Path,
    ) -> (OAuth2, Option<SubjectFeed>) {
        let status = OAuth2Status {
            grant: config.grant.unwrap_or_default(),
            token_endpoint: config.token_endpoint.clone(),
            refresh_token: None,
            subject_token: None,
        };
        let (exchange, feed) = match status.grant {
            Grant::TokenExchange => {
                let (exchange, feed) = Exchange::new(config);
                (Some(exchange), feed)
            }
            _ => (None, None),
        };
        let oauth2 = OAuth2 {
            config: config.clone(),
            metadata: tokio::sync::Mutex::new(None),
            store: store::Store::new(state_dir),
            shared_dir: shared_dir.to_owned(),
            last_expiry: Mutex::new(None),
            status: Mutex::new(status),
            exchange,
        };
        (oauth2, feed)
    }

    pub fn status(&self) -> OAuth2Status {
        let mut status = lock(&self.status).clone();
        status.subject_token = self.exchange.as_ref().map(Exchange::status);
        status
    }

    /// A token from the token endpoint, by the configured grant.
    pub async fn fetch(&self, http: &reqwest::Client) -> Result<Issued, OAuth2Error> {
        let endpoint = self.token_endpoint(http).await?;
        let target = self.target(&endpoint);
        let issuer = match self.config.assertion_audience {
            Some(AssertionAudience::Issuer) => Some(self.metadata(http).await?.issuer.clone()),
            _ => None,
        };
        let result = match self.config.grant.unwrap_or_default() {
            Grant::ClientCredentials => {
                let client = ClientAuthentication::new(&self.config, &endpoint, issuer.as_deref(), None);
                token::request(http, &target, &client, token::Grant::ClientCredentials)
                    .await
                    .map_err(OAuth2Error::from)
            }
            Grant::RefreshToken => self.refresh(http, &target, issuer.as_deref()).await,
            Grant::TokenExchange => {
                let exchange = self.exchange.as_ref().expect("built for the token_exchange grant");
                let presented = exchange.present(self.config.timeout).await?;
                let client = ClientAuthentication::new(&self.config, &endpoint, issuer.as_deref(), None);
                token::request(http, &target, &client, token::Grant::TokenExchange(&presented))
                    .await
                    .map_err(OAuth2Error::from)
            }
        };
        if let Err(OAuth2Error::Token(e)) = &result
            && !e.is_refusal()
        {
            // The server may have moved: look again before the next request.
            *self.metadata.lock().await = None;
        }
        result
    }

    /// `token_endpoint` as configured, else as the metadata names it.
    async fn token_endpoint(&self, http: &reqwest::Client) -> Result<Url, OAuth2Error> {
        match &self.config.token_endpoint {
            Some(url) => Ok(url.clone()),
            None => Ok(self.metadata(http).await?.token_endpoint.clone()),
        }
    }

    /// The authorization server's metadata, from `issuer` or `resource`; cached.
    async fn metadata(&self, http: &reqwest::Client) -> Result<Arc<ServerMetadata>, OAuth2Error> {
        let mut cached = self.metadata.lock().await;
        if let Some(found) = &*cached {
            return Ok(found.clone());
        }
        let c = &self.config;
        let found = Arc::new(
            discovery::discover(http, c.issuer.as_ref(), c.resource.as_ref(), c.timeout, c.allow_http)
                .await?,
        );
        if c.token_endpoint.is_none() {
            lock(&self.status).token_endpoint = Some(found.token_endpoint.clone());
        }
        *cached = Some(found.clone());
        Ok(found)
    }

    fn target<'a>(&'a self, endpoint: &'a Url) -> Target<'a> {
        Target {
            endpoint,
            resource: self.config.resource.as_ref(),
            scope: self.config.scope.as_deref(),
            timeout: self.config.timeout,
        }
    }

    /// Notes what the store holds, for status.
    fn show(&self, stored: &store::Stored) {
        let state = match (&stored.refresh_token, stored.refused) {
            (None, _) => RefreshTokenState::Missing,
            (Some(_), true) => RefreshTokenState::Refused,
            (Some(_), false) => RefreshTokenState::Held,
        };
        lock(&self.status).refresh_token = Some(RefreshTokenStatus {
            state,
            fingerprint: stored.refresh_token.as_ref().map(|t| Fingerprint::of(t.as_bytes())),
            rotated_at: stored
                .rotated_at
                .map(|at| SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(at)),
        });
    }

    fn lock_last(&self) -> MutexGuard<'_, Option<u64>> {
        lock(&self.last_expiry)
    }
}

/// A poisoned lock still holds a usable value: every writer leaves it whole.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
