//! Where the authorization server is and what it offers.
//!
//! From `issuer`: RFC 8414 §3 (`/.well-known/oauth-authorization-server`, inserted before the
//! issuer's path), then OpenID Connect Discovery 1.0 §4 (`/.well-known/openid-configuration`,
//! appended to it). The metadata must name the same issuer (RFC 8414 §3.3), so a document
//! served elsewhere cannot redirect the client's credentials.
//!
//! From `resource` alone: its protected-resource metadata (RFC 9728) names the authorization
//! server. It is found, as MCP clients find it (MCP authorization, "Protected Resource Metadata
//! Discovery"), at the `resource_metadata` of the resource's 401 `WWW-Authenticate` (RFC 9728
//! §5.1), else at `/.well-known/oauth-protected-resource` inserted before the resource's path,
//! else at that path on its own (§3.1). The document's `resource` must be ours or a prefix of
//! it on the same origin (§3.3 asks for identity; servers that protect a whole origin publish
//! the origin).
//!
//! Every URL found on the way (the 401's `resource_metadata`, the authorization server a
//! resource names, the endpoints its metadata names) gets the checks a configured URL gets
//! ([`refused_url`], DESIGN §13 "Every endpoint, however found"): a document cannot send the
//! daemon, or its refresh token, somewhere plain http would expose.

use std::time::Duration;

use serde::Deserialize;
use url::Url;

/// The most of a metadata document read.
const MAX_METADATA: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
#[error("no authorization server metadata for {origin}: {reasons}")]
pub struct DiscoveryError {
    /// Which key it started from, and its value.
    origin: String,
    reasons: String,
}

/// An authorization server's metadata (RFC 8414 §2), the fields the daemon uses.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ServerMetadata {
    pub issuer: String,
    pub token_endpoint: Url,
    #[serde(default)]
    pub authorization_endpoint: Option<Url>,
    /// RFC 8628 §4.
    #[serde(default)]
    pub device_authorization_endpoint: Option<Url>,
    /// RFC 7591 §3.
    #[serde(default)]
    pub registration_endpoint: Option<Url>,
    /// RFC 9207 §3: every authorization response carries `iss`.
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
    /// RFC 8414 §2.
    #[serde(default)]
    pub scopes_supported: Option<Vec<String>>,
}

impl ServerMetadata {
    /// The first endpoint that [`refused_url`] refuses, and why.
    fn insecure_endpoint(&self, allow_http: bool) -> Option<(&Url, String)> {
        [
            Some(&self.token_endpoint),
            self.authorization_endpoint.as_ref(),
            self.device_authorization_endpoint.as_ref(),
            self.registration_endpoint.as_ref(),
        ]
        .into_iter()
        .flatten()
        .find_map(|url| refused_url(url, allow_http).map(|why| (url, why)))
    }
}

/// Why `url` may not be used, if it may not: it must be https, or plain http to loopback
/// (whose listener the client's trust check vets before sending anything, DESIGN §12), or
/// plain http anywhere with `source.allow_http`. Any other scheme (`file:`, `javascript:`) is
/// refused whatever the config says.
pub(crate) fn refused_url(url: &Url, allow_http: bool) -> Option<String> {
    match url.scheme() {
        "https" => None,
        "http" if allow_http || crate::config::host_is_loopback(url) => None,
        "http" => Some("plain http off loopback (use https, or set source.allow_http = true)".into()),
        other => Some(format!("its scheme is {other:?}, not https")),
    }
}

/// RFC 9728 §2, the fields the daemon uses.
#[derive(Deserialize)]
struct ResourceMetadata {
    resource: Url,
    #[serde(default)]
    authorization_servers: Vec<Url>,
}

/// The metadata of `issuer`, or of the first authorization server `resource` names.
/// Every endpoint it names must be https, or plain http to loopback (whose listener the
/// client's trust check vets) or with `allow_http`: the checks a configured URL gets.
pub(crate) async fn discover(
    http: &reqwest::Client,
    issuer: Option<&Url>,
    resource: Option<&Url>,
    timeout: Duration,
    allow_http: bool,
) -> Result<ServerMetadata, DiscoveryError> {
    let issuer = match (issuer, resource) {
        (Some(issuer), _) => issuer.clone(),
        (None, Some(resource)) => authorization_server(http, resource, timeout, allow_http).await?,
        (None, None) => {
            return Err(DiscoveryError {
                origin: "the source".into(),
                reasons: "set source.issuer or source.resource".into(),
            });
        }
    };
    let path = issuer.path().trim_end_matches('/');
    let mut rfc8414 = issuer.clone();
    rfc8414.set_path(&format!("/.well-known/oauth-authorization-server{path}"));
    let mut oidc = issuer.clone();
    oidc.set_path(&format!("{path}/.well-known/openid-configuration"));
    let mut reasons = Vec::new();
    for url in [rfc8414, oidc] {
        match document::<ServerMetadata>(http, &url, timeout).await {
            Ok(found) if found.issuer.trim_end_matches('/') == issuer.as_str().trim_end_matches('/') => {
                match found.insecure_endpoint(allow_http) {
                    None => return Ok(found),
                    Some((endpoint, why)) => reasons.push(format!("{url} names {endpoint}, refused: {why}")),
                }
            }
            Ok(found) => reasons.push(format!("{url} names another issuer, {:?}", found.issuer)),
            Err(reason) => reasons.push(format!("{url}: {reason}")),
        }
    }
    Err(DiscoveryError { origin: format!("issuer {issuer}"), reasons: reasons.join("; ") })
}

/// The authorization server `resource`'s metadata names first.
async fn authorization_server(
    http: &reqwest::Client,
    resource: &Url,
    timeout: Duration,
    allow_http: bool,
) -> Result<Url, DiscoveryError> {
    let mut reasons = Vec::new();
    let mut candidates = Vec::new();
    match challenge(http, resource, timeout).await {
        Ok(Some(url)) => match refused_url(&url, allow_http) {
            None => candidates.push(url),
            Some(why) => reasons.push(format!("the 401 of {resource} names {url}, refused: {why}")),
        },
        Ok(None) => {}
        Err(reason) => reasons.push(format!("{resource}: {reason}")),
    }
    let path = resource.path().trim_end_matches('/');
    let mut inserted = resource.clone();
    inserted.set_path(&format!("/.well-known/oauth-protected-resource{path}"));
    inserted.set_query(None);
    candidates.push(inserted.clone());
    if !path.is_empty() {
        let mut root = inserted;
        root.set_path("/.well-known/oauth-protected-resource");
        candidates.push(root);
    }
    for url in candidates {
        match document::<ResourceMetadata>(http, &url, timeout).await {
            Ok(found) if !covers(&found.resource, resource) => {
                reasons.push(format!("{url} describes another resource, {}", found.resource));
            }
            Ok(found) => match found.authorization_servers.into_iter().next() {
                Some(issuer) => match refused_url(&issuer, allow_http) {
                    None => return Ok(issuer),
                    Some(why) => {
                        reasons.push(format!("{url} names the authorization server {issuer}, refused: {why}"))
                    }
                },
                None => reasons.push(format!("{url} names no authorization_servers")),
            },
            Err(reason) => reasons.push(format!("{url}: {reason}")),
        }
    }
    Err(DiscoveryError { origin: format!("resource {resource}"), reasons: reasons.join("; ") })
}

/// The `resource_metadata` URL of the 401 the resource answers a request without a token
/// (RFC 9728 §5.1); `None` when it answers otherwise or names none.
async fn challenge(http: &reqwest::Client, resource: &Url, timeout: Duration) -> Result<Option<Url>, String> {
    let response = http
        .get(resource.clone())
        .header(reqwest::header::ACCEPT, "application/json, text/event-stream")
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| crate::source::describe(&e))?;
    if response.status() != reqwest::StatusCode::UNAUTHORIZED {
        return Ok(None);
    }
    Ok(response
        .headers()
        .get_all(reqwest::header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find_map(|value| parameter(value, "resource_metadata"))
        .and_then(|url| Url::parse(&url).ok()))
}

/// A parameter of any challenge in a `WWW-Authenticate` value (RFC 9110 §11.6.1).
fn parameter(header: &str, name: &str) -> Option<String> {
    http_auth::parser::ChallengeParser::new(header).filter_map(Result::ok).find_map(|challenge| {
        challenge
            .params
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.to_unescaped())
    })
}

/// Whether protected-resource metadata for `described` applies to `ours`: the same origin, and
/// a path that is ours or a parent of it.
fn covers(described: &Url, ours: &Url) -> bool {
    let parent = described.path().trim_end_matches('/');
    let path = ours.path();
    described.origin() == ours.origin()
        && (path.trim_end_matches('/') == parent || path.starts_with(&format!("{parent}/")))
}

async fn document<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: &Url,
    timeout: Duration,
) -> Result<T, String> {
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
    let body = crate::source::read_limited(&mut response, MAX_METADATA)
        .await
        .map_err(|e| crate::source::describe(&e))?
        .ok_or_else(|| format!("larger than {} KiB", MAX_METADATA / 1024))?;
    serde_json::from_slice(&body).map_err(|e| format!("not the metadata asked for: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_metadata_is_read_from_any_challenge_of_the_header() {
        let header = r#"Bearer error="invalid_token", resource_metadata="https://mcp.example/.well-known/oauth-protected-resource/mcp""#;
        assert_eq!(
            parameter(header, "resource_metadata").as_deref(),
            Some("https://mcp.example/.well-known/oauth-protected-resource/mcp")
        );
        assert_eq!(
            parameter(
                r#"Basic realm=x, Bearer scope=calendar, Resource_Metadata="https://a.example/m""#,
                "resource_metadata"
            )
            .as_deref(),
            Some("https://a.example/m")
        );
        assert_eq!(parameter(r#"Bearer x_resource_metadata="https://evil""#, "resource_metadata"), None);
        assert_eq!(parameter(r#"Bearer realm="a\"b""#, "realm").as_deref(), Some("a\"b"));
        assert_eq!(parameter("Bearer", "resource_metadata"), None);
    }

    #[test]
    fn metadata_naming_plain_http_off_loopback_is_refused() {
        let metadata = |token: &str, device: &str| ServerMetadata {
            issuer: "https://a.example".into(),
            token_endpoint: Url::parse(token).unwrap(),
            authorization_endpoint: None,
            device_authorization_endpoint: Some(Url::parse(device).unwrap()),
            registration_endpoint: None,
            authorization_response_iss_parameter_supported: false,
            scopes_supported: None,
        };
        let good = metadata("https://a.example/token", "http://127.0.0.1:9/device");
        assert!(good.insecure_endpoint(false).is_none());
        let bad = metadata("http://192.0.2.1/token", "https://a.example/device");
        assert_eq!(bad.insecure_endpoint(false).map(|(url, _)| url.as_str()), Some("http://192.0.2.1/token"));
        assert!(bad.insecure_endpoint(true).is_none(), "allow_http allows it");
        assert!(metadata("https://a.example/t", "ftp://a.example/d").insecure_endpoint(true).is_some());
        for url in ["file:///etc/passwd", "javascript:alert(1)", "data:text/html,x"] {
            let why = refused_url(&Url::parse(url).unwrap(), true).expect("refused whatever allow_http says");
            assert!(why.contains("scheme"), "{url}: {why}");
        }
    }

    #[test]
    fn metadata_covers_its_resource_and_the_paths_below_it() {
        let url = |s: &str| Url::parse(s).unwrap();
        assert!(covers(&url("https://mcp.example/mcp"), &url("https://mcp.example/mcp")));
        assert!(covers(&url("https://mcp.example/"), &url("https://mcp.example/mcp")));
        assert!(covers(&url("https://mcp.example"), &url("https://mcp.example/mcp/x")));
        assert!(!covers(&url("https://mcp.example/mc"), &url("https://mcp.example/mcp")));
        assert!(!covers(&url("https://other.example/mcp"), &url("https://mcp.example/mcp")));
        assert!(!covers(&url("http://mcp.example/mcp"), &url("https://mcp.example/mcp")));
    }
}
