//! The device authorization grant (RFC 8628), for hosts without a browser: the server hands
//! out a user code and a verification URL, the person opens it anywhere, and the daemon polls
//! the token endpoint at the server's interval until they have approved or refused.
//!
//! The verification URIs are the server's words sent to a person: each must be https, or
//! plain http to a loopback listener of a trusted uid (looked up as the source's own
//! connections are, DESIGN §12), before anyone is told to open it; a `file:` or `javascript:`
//! URI never is.

use std::time::{Duration, SystemTime};

use serde::Deserialize;
use url::Url;
use zeroize::Zeroizing;

use super::{DEFAULT_WAIT, Flow, LoginError, Open};
use crate::config::SourceConfig;
use crate::source::oauth2::client_auth::ClientAuthentication;
use crate::source::oauth2::discovery::refused_url;
use crate::source::oauth2::token::{self, Grant, Issued, Target, TokenError};
use crate::text::printable;
use crate::trust::Trust;

/// RFC 8628 §3.2: without `interval`, 5 s.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// The shortest poll interval taken from a server.
const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// RFC 8628 §3.5: `slow_down` adds this to the interval for good.
const SLOW_DOWN: Duration = Duration::from_secs(5);

/// RFC 8628 §3.2.
#[derive(Deserialize)]
struct Authorization {
    device_code: String,
    user_code: String,
    verification_uri: Url,
    #[serde(default)]
    verification_uri_complete: Option<Url>,
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    interval: Option<u64>,
}

impl Drop for Authorization {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.device_code);
    }
}

pub(super) async fn login(flow: &Flow<'_>) -> Result<Issued, LoginError> {
    let Flow { http, config, metadata, target, client, open, .. } = *flow;
    let Some(endpoint) = &metadata.device_authorization_endpoint else {
        return Err(LoginError::NotOffered(format!(
            "{} offers no device authorization (RFC 8628); log in with --browser",
            metadata.issuer
        )));
    };
    let presented =
        client.present(SystemTime::now()).map_err(TokenError::from).map_err(LoginError::Refused)?;
    let mut form = Vec::new();
    if let Some(scope) = target.scope {
        form.push(("scope", scope));
    }
    let resource = target.resource.map(Url::as_str);
    if let Some(resource) = resource {
        form.push(("resource", resource));
    }
    let (status, body, _) = token::post_form(http, endpoint, form, &presented, target.timeout)
        .await
        .map_err(LoginError::Refused)?;
    if !status.is_success() {
        return Err(LoginError::Refused(token::refusal(endpoint, status, &body)));
    }
    let authorization: Authorization = serde_json::from_slice(&body).map_err(|e| {
        LoginError::Refused(TokenError::Malformed {
            endpoint: endpoint.clone(),
            reason: format!("not a device authorization answer: {e}"),
        })
    })?;
    let wait = authorization.expires_in.map(Duration::from_secs).unwrap_or(DEFAULT_WAIT);
    for (key, url) in [
        ("verification_uri", Some(&authorization.verification_uri)),
        ("verification_uri_complete", authorization.verification_uri_complete.as_ref()),
    ] {
        if let Some(url) = url {
            check_verification_uri(key, url, endpoint, config).await?;
        }
    }
    let _ = open
        .send(Open {
            url: authorization.verification_uri.clone(),
            // Printed on the person's terminal: no escape sequences from the server.
            user_code: Some(printable(&authorization.user_code, 64)),
            url_complete: authorization.verification_uri_complete.clone(),
            callback_port: None,
        })
        .await;
    let device_code = Zeroizing::new(authorization.device_code.clone());
    // RFC 8628 §3.2: the client waits at least this; a server's 0 would be a busy loop.
    let interval =
        authorization.interval.map(Duration::from_secs).unwrap_or(DEFAULT_INTERVAL).max(MIN_INTERVAL);
    tokio::time::timeout(wait, poll(http, target, client, &device_code, interval))
        .await
        .map_err(|_| LoginError::TimedOut(wait))?
}

/// Whether the person may be sent to `url`, the `key` of `endpoint`'s answer: https; plain
/// http only with `source.allow_http`, or to loopback where a trusted uid listens (checked by
/// connecting, as every plain-http connection of the source is).
async fn check_verification_uri(
    key: &str,
    url: &Url,
    endpoint: &Url,
    config: &SourceConfig,
) -> Result<(), LoginError> {
    let refused = |why: String| {
        LoginError::UnsafeUrl(format!(
            "the device authorization answer of {endpoint} gives the {key} {}, refused: {why}",
            printable(url.as_str(), 200)
        ))
    };
    if let Some(why) = refused_url(url, config.allow_http) {
        return Err(refused(why));
    }
    if url.scheme() != "http" || !crate::config::host_is_loopback(url) {
        return Ok(());
    }
    let addresses = url.socket_addrs(|| Some(80)).map_err(|e| refused(e.to_string()))?;
    let connected = tokio::time::timeout(config.timeout, tokio::net::TcpStream::connect(&*addresses))
        .await
        .map_err(|_| refused("no answer to a connection".into()))?
        .map_err(|e| refused(format!("cannot connect to it: {e}")))?;
    let (local, remote) = (connected.local_addr(), connected.peer_addr());
    let (local, remote) = local.and_then(|l| remote.map(|r| (l, r))).map_err(|e| refused(e.to_string()))?;
    Trust::new(&config.trust_uids, "source.trust_uids")
        .check(local, remote)
        .map_err(|e| refused(e.to_string()))
}

/// Asks the token endpoint every `interval` until the person has decided (RFC 8628 §3.4, §3.5).
async fn poll(
    http: &reqwest::Client,
    target: &Target<'_>,
    client: &ClientAuthentication,
    device_code: &str,
    mut interval: Duration,
) -> Result<Issued, LoginError> {
    loop {
        tokio::time::sleep(interval).await;
        match token::request(http, target, client, Grant::DeviceCode(device_code)).await {
            Ok(issued) => return Ok(issued),
            Err(pending) if pending.code() == Some("authorization_pending") => {}
            Err(slow) if slow.code() == Some("slow_down") => interval += SLOW_DOWN,
            // The network failed one poll; the next may pass, and the wait is bounded. An
            // untrusted listener (`TokenError::Untrusted`) will not go away: it ends the login.
            Err(TokenError::Request { .. }) => {}
            Err(other) => return Err(LoginError::Refused(other)),
        }
    }
}
