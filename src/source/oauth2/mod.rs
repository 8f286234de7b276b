//! `[source] type = "oauth2"` (DESIGN §13): the daemon as the host's only OAuth 2.0 client for
//! its token. One file per concern, each opening with its RFC: `client_auth` (RFC 6749 §2.3,
//! RFC 7523), `discovery` (RFC 8414, OpenID Connect Discovery), `token` (RFC 6749 §3.2, §5;
//! RFC 8707), and `store` (where the refresh token lives, and the lock every refresher takes).
//!
//! Work in progress (issue 19): `grant = "client_credentials"` with `token_endpoint` or
//! `issuer` works; the refresh-token grant with its rotation store, discovery from `resource`
//! (RFC 9728) and the login flows follow, and are refused at start until then; what they
//! will use is unused meanwhile.
#![allow(dead_code)]

pub mod client_auth;
mod discovery;
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
}

/// Why the token endpoint issued no token.
#[derive(Debug, thiserror::Error)]
pub enum OAuth2Error {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    Discovery(#[from] discovery::DiscoveryError),
}

impl OAuth2 {
    pub fn new(config: &SourceConfig) -> Result<OAuth2, SetupError> {
        if config.grant.unwrap_or_default() == Grant::RefreshToken {
            return Err(SetupError::NotBuilt("grant = \"refresh_token\""));
        }
        if config.token_endpoint.is_none() && config.issuer.is_none() {
            return Err(SetupError::NotBuilt("finding the authorization server from resource alone"));
        }
        let token_endpoint = OnceCell::new_with(config.token_endpoint.clone());
        Ok(OAuth2 { config: config.clone(), token_endpoint })
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
        Ok(token::request(http, &target, &client, token::Grant::ClientCredentials).await?)
    }
}
