//! `mcp-token-sync login` (DESIGN §13): how the daemon gets its first refresh token, or a new
//! one after the server refused the last. The daemon runs the flow, so the refresh token is
//! written once, by the process that uses it: a client registered when none is configured
//! (`registration`, RFC 7591), then the device authorization grant (`device`, RFC 8628) when
//! the server offers it, else the authorization code grant with PKCE and a loopback redirect
//! (`browser`, RFC 6749 §4.1, RFC 7636, RFC 8252).

mod browser;
mod device;
mod registration;

use std::time::Duration;

use tokio::sync::mpsc;
use url::Url;

use super::client_auth::ClientAuthentication;
use super::discovery::ServerMetadata;
use super::token::{Issued, Target, TokenError};
use super::{OAuth2, OAuth2Error};

/// How long a browser login waits for its redirect, and a device login whose server names no
/// `expires_in`.
const DEFAULT_WAIT: Duration = Duration::from_secs(600);

/// Which flow; the server's offer decides when the command does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Device,
    Browser,
}

/// What the person logging in must do (the `open` event of `POST /v1/login`, DESIGN §7).
#[derive(Debug, Clone)]
pub struct Open {
    /// The verification URI (device) or the authorization request (browser).
    pub url: Url,
    /// Device: the code to type, and the URL that carries it.
    pub user_code: Option<String>,
    pub url_complete: Option<Url>,
    /// Browser: the loopback port the redirect comes to (for `ssh -L`).
    pub callback_port: Option<u16>,
}

/// Who asked for a login, and so whose browser may bring its redirect back (DESIGN §13, "A
/// login on a shared host"): root, the uid that asked (the `login` command's peer on the API
/// socket), and a uid that a root caller named for its browser (`sudo mcp-token-sync login`
/// names the user it runs for). Every other local user can read the authorization URL from the
/// browser's command line, and reach the loopback port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requester {
    pub uid: u32,
    pub browser_uid: Option<u32>,
}

impl Requester {
    /// Whether a connection from `uid` may deliver the redirect.
    pub fn may_deliver(&self, uid: u32) -> bool {
        uid == 0 || uid == self.uid || self.browser_uid == Some(uid)
    }
}

/// What a flow works with: the server, where and for what tokens are asked, the client, whom
/// to tell what the person must open, and who that person is.
#[derive(Clone, Copy)]
struct Flow<'a> {
    http: &'a reqwest::Client,
    config: &'a crate::config::SourceConfig,
    metadata: &'a ServerMetadata,
    target: &'a Target<'a>,
    client: &'a ClientAuthentication,
    open: &'a mpsc::Sender<Open>,
    requester: Requester,
}

/// Why a login ended without a token. `code()` is the `error` of the `failed` event.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error(
        "login needs the authorization server's metadata: set source.issuer or source.resource \
         (source.token_endpoint alone does not say where to log in)"
    )]
    NoMetadata,
    #[error(transparent)]
    Source(#[from] OAuth2Error),
    #[error(
        "client registration at {endpoint} failed: {reason}; set source.client_id to a client registered by hand"
    )]
    Registration { endpoint: Url, reason: String },
    #[error("{0}")]
    NotOffered(String),
    /// The server refused (RFC 6749 §4.1.2.1, §5.2; RFC 8628 §3.5).
    #[error(transparent)]
    Refused(TokenError),
    #[error("no answer within {} s; run `mcp-token-sync login` again", .0.as_secs())]
    TimedOut(Duration),
    #[error("{0}")]
    Callback(String),
    /// A URL the server handed out for the person to open is not one to send them to.
    #[error("{0}")]
    UnsafeUrl(String),
    #[error(
        "the server issued no refresh token; the daemon could not keep the login (ask for a scope such as offline_access in source.scope)"
    )]
    NoRefreshToken,
    /// The redirect's `iss` is not the server's (RFC 9207): nothing was exchanged.
    #[error("{0}")]
    Issuer(String),
}

impl LoginError {
    /// A short name: the server's own error code when it refused.
    pub fn code(&self) -> &str {
        match self {
            LoginError::Refused(refused) => refused.code().unwrap_or("login_failed"),
            LoginError::TimedOut(_) => "timeout",
            LoginError::NoMetadata | LoginError::NotOffered(_) => "login_unavailable",
            LoginError::Registration { .. } => "registration_failed",
            LoginError::NoRefreshToken => "no_refresh_token",
            LoginError::UnsafeUrl(_) => "unsafe_url",
            LoginError::Issuer(_) => "iss_mismatch",
            _ => "login_failed",
        }
    }
}

impl OAuth2 {
    /// Logs in by `method` (or what the server offers) for `requester`, telling `open` what
    /// the person must do; stores the refresh token and access token the server issues.
    /// Cancelled by dropping.
    pub async fn login(
        &self,
        http: &reqwest::Client,
        method: Option<Method>,
        requester: Requester,
        open: mpsc::Sender<Open>,
    ) -> Result<(), LoginError> {
        if self.config.issuer.is_none() && self.config.resource.is_none() {
            return Err(LoginError::NoMetadata);
        }
        // Before the person approves anything: a store that cannot be kept would lose the
        // tokens the server issues for it.
        self.store.prepare().map_err(OAuth2Error::from)?;
        drop(
            self.store
                .lock(self.config.timeout)
                .await
                .map_err(OAuth2Error::from)?
                .read()
                .map_err(OAuth2Error::from)?,
        );
        let metadata = self.metadata(http).await?;
        let registered = match &self.config.client_id {
            Some(_) => None,
            None => Some(self.registered_client(http, &metadata).await?),
        };
        let endpoint = self.config.token_endpoint.clone().unwrap_or_else(|| metadata.token_endpoint.clone());
        let client =
            ClientAuthentication::new(&self.config, &endpoint, Some(&metadata.issuer), registered.as_deref());
        let scope = login_scope(self.config.scope.as_deref(), &metadata);
        let target = Target { scope: scope.as_deref(), ..self.target(&endpoint) };
        let method = match method {
            Some(method) => method,
            None if metadata.device_authorization_endpoint.is_some() => Method::Device,
            None => Method::Browser,
        };
        let flow = Flow {
            http,
            config: &self.config,
            metadata: &metadata,
            target: &target,
            client: &client,
            open: &open,
            requester,
        };
        let issued = match method {
            Method::Device => device::login(&flow).await?,
            Method::Browser => browser::login(&flow).await?,
        };
        self.keep_login(issued).await
    }

    /// The registered client for this server: this token's own, else one another token of
    /// the daemon registered with the same issuer (MCP 2026-07-28: client registrations are
    /// kept per issuer), else a new registration, remembered for both.
    async fn registered_client(
        &self,
        http: &reqwest::Client,
        metadata: &ServerMetadata,
    ) -> Result<String, LoginError> {
        let stored = self
            .store
            .lock(self.config.timeout)
            .await
            .map_err(OAuth2Error::from)?
            .read()
            .map_err(OAuth2Error::from)?;
        if let Some(client) = stored.client.as_ref().filter(|c| c.issuer == metadata.issuer) {
            return Ok(client.client_id.clone());
        }
        drop(stored);
        let client = match registration::known(&self.shared_dir, &metadata.issuer) {
            Some(client) => client,
            None => {
                let scope = login_scope(self.config.scope.as_deref(), metadata);
                let client =
                    registration::register(http, metadata, scope.as_deref(), self.config.timeout).await?;
                registration::remember(&self.shared_dir, &client);
                client
            }
        };
        let locked = self.store.lock(self.config.timeout).await.map_err(OAuth2Error::from)?;
        let mut stored = locked.read().map_err(OAuth2Error::from)?;
        stored.client = Some(client.clone());
        locked.write(&stored).map_err(OAuth2Error::from)?;
        Ok(client.client_id)
    }

    /// Stores the login's tokens under the lock: the new refresh token replaces any refused or
    /// spent one, and the access token is there for the engine to adopt.
    async fn keep_login(&self, issued: Issued) -> Result<(), LoginError> {
        if issued.refresh_token.is_none() {
            return Err(LoginError::NoRefreshToken);
        }
        let locked = self.store.lock(self.config.timeout).await.map_err(OAuth2Error::from)?;
        let mut stored = locked.read().map_err(OAuth2Error::from)?;
        if let Some(before) = &stored.refresh_token {
            let state = if stored.refused { "refused" } else { "held" };
            tracing::info!(
                "the login replaces the refresh token {state} before (fingerprint {})",
                crate::token::Fingerprint::of(before.as_bytes())
            );
        }
        self.keep(&locked, &mut stored, &issued)?;
        Ok(())
    }
}

/// The scope a login asks for: `source.scope`, with `offline_access` added when the server
/// lists it in `scopes_supported` (RFC 8414 §2) and it is not there already: OpenID servers
/// issue a refresh token only for it (OpenID Connect Core §11), and without one the login
/// cannot be kept.
fn login_scope(configured: Option<&str>, metadata: &ServerMetadata) -> Option<String> {
    const OFFLINE: &str = "offline_access";
    let listed = metadata.scopes_supported.as_ref().is_some_and(|s| s.iter().any(|s| s == OFFLINE));
    match configured {
        Some(scope) if listed && !scope.split_whitespace().any(|s| s == OFFLINE) => {
            Some(format!("{scope} {OFFLINE}"))
        }
        Some(scope) => Some(scope.to_owned()),
        None => listed.then(|| OFFLINE.to_owned()),
    }
}

/// A random value for PKCE's verifier and the redirect's `state`: 32 bytes of the thread's
/// CSPRNG (ChaCha, seeded by the OS), base64url without padding (RFC 7636 §4.1: 43 characters).
fn random_value() -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_asks_for_offline_access_when_the_server_lists_it() {
        let metadata = |scopes: Option<&[&str]>| ServerMetadata {
            issuer: "https://as.example".into(),
            token_endpoint: "https://as.example/token".parse().unwrap(),
            authorization_endpoint: None,
            device_authorization_endpoint: None,
            registration_endpoint: None,
            authorization_response_iss_parameter_supported: false,
            scopes_supported: scopes.map(|s| s.iter().map(|s| s.to_string()).collect()),
        };
        let openid = metadata(Some(&["openid", "offline_access"]));
        assert_eq!(login_scope(Some("openid mcp"), &openid).as_deref(), Some("openid mcp offline_access"));
        assert_eq!(
            login_scope(Some("offline_access openid"), &openid).as_deref(),
            Some("offline_access openid")
        );
        assert_eq!(login_scope(None, &openid).as_deref(), Some("offline_access"));
        let plain = metadata(Some(&["mcp"]));
        assert_eq!(login_scope(Some("mcp"), &plain).as_deref(), Some("mcp"));
        assert_eq!(login_scope(None, &metadata(None)), None);
    }

    #[test]
    fn only_root_the_requester_and_the_browser_it_named_may_deliver_the_redirect() {
        let asked = Requester { uid: 990, browser_uid: None };
        assert!(asked.may_deliver(0) && asked.may_deliver(990));
        assert!(!asked.may_deliver(1000) && !asked.may_deliver(65534));
        let through_sudo = Requester { uid: 0, browser_uid: Some(1000) };
        assert!(through_sudo.may_deliver(1000) && !through_sudo.may_deliver(65534));
    }
}
