//! `[source] type = "oauth2"` (DESIGN §13): the daemon as the host's only OAuth 2.0 client for
//! its token. One file per concern, each opening with its RFC: `client_auth` (RFC 6749 §2.3,
//! RFC 7523), `discovery` (RFC 8414, OpenID Connect Discovery), `token` (RFC 6749 §3.2, §5;
//! RFC 8707), and `store` (where the refresh token lives, and the lock every refresher takes).
//!
//! Work in progress (issue 19): both grants with `token_endpoint` or `issuer` work, the refresh
//! token seeded by `refresh_token_file` and rotated under the store's lock (`rotation`);
//! discovery from `resource` (RFC 9728), `needs_login` as a state and the login flows follow.
#![allow(dead_code)]

pub mod client_auth;
mod discovery;
mod rotation;
pub(crate) mod store;
pub mod token;

use tokio::sync::OnceCell;
use url::Url;

use super::SetupError;
use crate::config::{Grant, SourceConfig};
use client_auth::ClientAuthentication;
use token::{Issued, Target, TokenError};

/// An OAuth 2.0 source: where its token endpoint is (found once), and what it asks for.
pub(crate) struct OAuth2 {
    config: SourceConfig,
    /// `token_endpoint` as configured, or as the issuer's metadata names it.
    token_endpoint: OnceCell<Url>,
    /// Where the refresh token lives.
    store: store::Store,
    /// When the access token this process last got expires (Unix seconds): an older one in
    /// the store is not adopted.
    last_expiry: std::sync::Mutex<Option<u64>>,
}

/// Why the token endpoint issued no token.
#[derive(Debug, thiserror::Error)]
pub enum OAuth2Error {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    Discovery(#[from] discovery::DiscoveryError),
    /// The store in state_dir could not be used (its message names the file).
    #[error("{0}")]
    Store(String),
    #[error("{0}")]
    Seed(String),
    /// No refresh token to present (DESIGN §13 `needs_login`).
    #[error("{}; run `mcp-token-sync login`", if *refused { "the stored refresh token was refused" } else { "no refresh token is held" })]
    NeedsLogin { refused: bool },
    /// The server refused the refresh token (`invalid_grant`): it is kept, marked refused.
    #[error("{0}; the refresh token is kept, marked refused: run `mcp-token-sync login`")]
    Refused(TokenError),
}

impl From<store::StoreError> for OAuth2Error {
    fn from(e: store::StoreError) -> OAuth2Error {
        OAuth2Error::Store(e.to_string())
    }
}

impl OAuth2 {
    pub fn new(config: &SourceConfig, state_dir: &std::path::Path) -> Result<OAuth2, SetupError> {
        if config.token_endpoint.is_none() && config.issuer.is_none() {
            return Err(SetupError::NotBuilt("finding the authorization server from resource alone"));
        }
        let token_endpoint = OnceCell::new_with(config.token_endpoint.clone());
        Ok(OAuth2 {
            config: config.clone(),
            token_endpoint,
            store: store::Store::new(state_dir),
            last_expiry: std::sync::Mutex::new(None),
        })
    }

    /// A token from the token endpoint, by the configured grant.
    pub async fn fetch(&self, http: &reqwest::Client) -> Result<Issued, OAuth2Error> {
        let issuer = self.config.issuer.as_ref();
        let endpoint = self
            .token_endpoint
            .get_or_try_init(|| async {
                let issuer = issuer.expect("OAuth2::new requires token_endpoint or issuer");
                discovery::token_endpoint(http, issuer, self.config.timeout).await
            })
            .await?;
        let client = ClientAuthentication::new(&self.config, endpoint);
        let target = Target {
            endpoint,
            resource: self.config.resource.as_ref(),
            scope: self.config.scope.as_deref(),
            timeout: self.config.timeout,
        };
        match self.config.grant.unwrap_or_default() {
            Grant::ClientCredentials => {
                Ok(token::request(http, &target, &client, token::Grant::ClientCredentials).await?)
            }
            Grant::RefreshToken => self.refresh(http, &target, &client).await,
        }
    }
}
