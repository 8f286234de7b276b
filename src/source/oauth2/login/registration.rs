//! Dynamic client registration (RFC 7591 §3), when no `client_id` is configured: the daemon
//! registers itself once per authorization server as a public native client (RFC 8252 §8.4)
//! with the loopback redirect, and keeps the client id in the token's store and, by issuer, in
//! `oauth2-clients.json` in the daemon's `state_dir`, where every token on that issuer finds it
//! (MCP 2026-07-28: client registrations keyed by issuer). A registration is never presented to
//! another issuer. Two first logins at once on one issuer may each register; the file keeps the
//! last, and each token keeps the one its refresh token was issued to.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

use super::LoginError;
use crate::config::{Mode, Ownership};
use crate::source::oauth2::discovery::ServerMetadata;
use crate::source::oauth2::store::RegisteredClient;

/// The daemon's registered clients, by issuer, in its `state_dir`.
const REGISTRATIONS: &str = "oauth2-clients.json";

/// The redirect URI registered: RFC 8252 §7.3 lets the port vary at each request.
pub(super) const REDIRECT_URI: &str = "http://127.0.0.1/callback";
const DEVICE_CODE: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// The most of a registration answer read: a few hundred bytes in practice.
const MAX_ANSWER: usize = 64 * 1024;

/// RFC 7591 §3.2.1, the fields used.
#[derive(Deserialize)]
struct Registered {
    client_id: String,
    #[serde(default)]
    client_secret: Option<String>,
}

pub(super) async fn register(
    http: &reqwest::Client,
    metadata: &ServerMetadata,
    scope: Option<&str>,
    timeout: Duration,
) -> Result<RegisteredClient, LoginError> {
    let Some(endpoint) = &metadata.registration_endpoint else {
        return Err(LoginError::NotOffered(format!(
            "source.client_id is not set and {} offers no client registration (RFC 7591): \
             register a client for redirect {REDIRECT_URI} by hand and set source.client_id",
            metadata.issuer
        )));
    };
    let fail = |reason: String| LoginError::Registration { endpoint: endpoint.clone(), reason };
    let mut grant_types = vec!["authorization_code", "refresh_token"];
    if metadata.device_authorization_endpoint.is_some() {
        grant_types.push(DEVICE_CODE);
    }
    let host = nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_default();
    let mut request = json!({
        "client_name": format!("mcp-token-sync on {host}"),
        "application_type": "native",
        "redirect_uris": [REDIRECT_URI],
        "grant_types": grant_types,
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    });
    if let Some(scope) = scope {
        request["scope"] = json!(scope);
    }
    let mut response = http
        .post(endpoint.clone())
        .timeout(timeout)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(reqwest::header::ACCEPT, "application/json")
        .body(request.to_string())
        .send()
        .await
        .map_err(|e| fail(crate::source::describe(&e)))?;
    let status = response.status();
    let body = crate::source::read_limited(&mut response, MAX_ANSWER)
        .await
        .map_err(|e| fail(crate::source::describe(&e)))?
        .ok_or_else(|| fail(format!("the answer is larger than {} KiB", MAX_ANSWER / 1024)))?;
    if !status.is_success() {
        // RFC 7591 §3.2.2: `error` and `error_description`.
        let explained = serde_json::from_slice::<serde_json::Value>(&body).ok().and_then(|v| {
            let code = v.get("error")?.as_str()?.to_owned();
            let description = v.get("error_description").and_then(|d| d.as_str()).unwrap_or_default();
            Some(crate::text::printable(format!("{code} {description}").trim_end(), 200))
        });
        return Err(fail(format!(
            "HTTP {status}{}",
            explained.map(|e| format!(": {e}")).unwrap_or_default()
        )));
    }
    let registered: Registered =
        serde_json::from_slice(&body).map_err(|e| fail(format!("not a registration answer: {e}")))?;
    if registered.client_secret.is_some() {
        // A confidential client's secret would have to live beside the refresh token; the
        // daemon asked for a public one and takes nothing else.
        return Err(fail(
            "the server registered a confidential client (with a secret), not the public one asked for"
                .into(),
        ));
    }
    Ok(RegisteredClient { client_id: registered.client_id, issuer: metadata.issuer.clone() })
}

/// The client registered with `issuer` by any token of the daemon, if any.
pub(super) fn known(shared_dir: &Path, issuer: &str) -> Option<RegisteredClient> {
    let bytes = crate::fsutil::read_own(&shared_dir.join(REGISTRATIONS)).ok()?;
    let known: Vec<RegisteredClient> = serde_json::from_slice(&bytes).ok()?;
    known.into_iter().find(|client| client.issuer == issuer)
}

/// Adds `client` to the daemon's registrations (replacing one for the same issuer). Failing to
/// remember only costs a registration later: logged, not fatal.
pub(super) fn remember(shared_dir: &Path, client: &RegisteredClient) {
    let path = shared_dir.join(REGISTRATIONS);
    let mut known: Vec<RegisteredClient> = crate::fsutil::read_own(&path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default();
    known.retain(|c| c.issuer != client.issuer);
    known.push(client.clone());
    let bytes = serde_json::to_vec_pretty(&known).expect("client ids serialize");
    if let Err(e) = crate::fsutil::write_atomic(&path, &bytes, Mode(0o600), Ownership::default()) {
        tracing::warn!("the client registered with {} is not kept for other tokens: {e}", client.issuer);
    }
}
