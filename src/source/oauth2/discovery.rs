//! Where the token endpoint is, from the issuer's metadata: RFC 8414 §3
//! (`/.well-known/oauth-authorization-server`, inserted before the issuer's path), then OpenID
//! Connect Discovery 1.0 §4 (`/.well-known/openid-configuration`, appended to it). The metadata
//! must name the same issuer (RFC 8414 §3.3), so a document served elsewhere cannot redirect
//! the client's credentials.

use std::time::Duration;

use serde::Deserialize;
use url::Url;

/// The most of a metadata document read.
const MAX_METADATA: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
#[error("no authorization server metadata for source.issuer {issuer}: {reasons}")]
pub struct DiscoveryError {
    issuer: Url,
    reasons: String,
}

#[derive(Deserialize)]
struct Metadata {
    issuer: String,
    token_endpoint: Url,
}

/// The token endpoint `issuer`'s metadata names.
pub(super) async fn token_endpoint(
    http: &reqwest::Client,
    issuer: &Url,
    timeout: Duration,
) -> Result<Url, DiscoveryError> {
    let path = issuer.path().trim_end_matches('/');
    let mut rfc8414 = issuer.clone();
    rfc8414.set_path(&format!("/.well-known/oauth-authorization-server{path}"));
    let mut oidc = issuer.clone();
    oidc.set_path(&format!("{path}/.well-known/openid-configuration"));
    let mut reasons = Vec::new();
    for url in [rfc8414, oidc] {
        match metadata(http, &url, timeout).await {
            Ok(found) if found.issuer.trim_end_matches('/') == issuer.as_str().trim_end_matches('/') => {
                return Ok(found.token_endpoint);
            }
            Ok(found) => reasons.push(format!("{url} names another issuer, {:?}", found.issuer)),
            Err(reason) => reasons.push(format!("{url}: {reason}")),
        }
    }
    Err(DiscoveryError { issuer: issuer.clone(), reasons: reasons.join("; ") })
}

async fn metadata(http: &reqwest::Client, url: &Url, timeout: Duration) -> Result<Metadata, String> {
    let mut response = http
        .get(url.clone())
        .header(reqwest::header::ACCEPT, "application/json")
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| crate::source::describe(&e))?;
    if !response.status().is_success() {
        return Err(format!("HTTP {}", response.status()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| crate::source::describe(&e))? {
        if body.len() + chunk.len() > MAX_METADATA {
            return Err(format!("larger than {} KiB", MAX_METADATA / 1024));
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|e| format!("not authorization server metadata: {e}"))
}
