//! What the proxy refuses before anything is forwarded (DESIGN §12): methods it never
//! forwards, requests for another `Host` (DNS rebinding), web pages in a browser, and the OAuth
//! metadata that hosts probe on connect.

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};

use super::{Body, error};

/// Paths whose metadata would start a host's OAuth discovery (RFC 9728 §3, RFC 8414 §3,
/// OpenID Connect Discovery §4), wherever they stand in the path: hosts probe them as a prefix
/// (`/.well-known/openid-configuration/mcp`) and as a suffix (`/mcp/.well-known/...`).
const OAUTH_METADATA: [&str; 3] = [
    "/.well-known/oauth-protected-resource",
    "/.well-known/oauth-authorization-server",
    "/.well-known/openid-configuration",
];

/// Whether `path` asks for OAuth metadata as a lenient server may read it: percent-decoded,
/// in any case, repeated slashes collapsed (a base URL ending in `/` joined to
/// `/.well-known/...`). Paths that cannot be such are let through without an allocation.
fn asks_for_metadata(path: &str) -> bool {
    let plain = !path.contains('%');
    if plain && !path.as_bytes().windows(10).any(|w| w.eq_ignore_ascii_case(b"well-known")) {
        return false;
    }
    let decoded = percent_encoding::percent_decode_str(path).decode_utf8_lossy().to_ascii_lowercase();
    let mut collapsed = String::with_capacity(decoded.len());
    for c in decoded.chars() {
        if !(c == '/' && collapsed.ends_with('/')) {
            collapsed.push(c);
        }
    }
    OAUTH_METADATA.iter().any(|metadata| collapsed.contains(metadata))
}

/// The `Allow` of a 405 for TRACE and CONNECT: what the proxy forwards.
const FORWARDED_METHODS: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";

pub(super) struct Gate {
    /// On TCP, the `Host` values that name this listener; empty on a Unix socket.
    pub hosts: Vec<String>,
    /// Browser origins (`scheme://host[:port]`) whose requests are served.
    pub allow_origins: Vec<String>,
}

impl Gate {
    pub fn is_tcp(&self) -> bool {
        !self.hosts.is_empty()
    }

    /// The listener's own checks: a method it forwards, a `Host` that names it (on TCP), and
    /// for browsers an `Origin` and `Sec-Fetch-Site` it allows (DESIGN §12).
    pub fn refusal(&self, request: &Request<Incoming>) -> Option<Response<Body>> {
        // Methods are case-sensitive (RFC 9110 §9.1), but an upstream may not be: `trace` too.
        let method = request.method().as_str();
        if method.eq_ignore_ascii_case("TRACE") || method.eq_ignore_ascii_case("CONNECT") {
            // TRACE would echo the token back to whoever sent it; CONNECT opens a tunnel.
            let mut refused = error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                &format!("the proxy does not forward {}", request.method()),
            );
            refused.headers_mut().insert(header::ALLOW, HeaderValue::from_static(FORWARDED_METHODS));
            return Some(refused);
        }
        // One pass over the headers rather than a lookup for each name: every request pays it.
        let (mut hosts, mut host) = (0, None);
        let (mut has_origin, mut allowed, mut other_site) = (false, true, false);
        for (name, value) in request.headers() {
            if name == header::HOST {
                hosts += 1;
                host = host.or(Some(value));
            } else if name == header::ORIGIN {
                // Every value counts, not the first: an upstream may read another.
                has_origin = true;
                allowed &= self.origin_allowed(value.as_bytes());
            } else if name.as_str() == "sec-fetch-site" {
                // A page's <img>, link or form GET sends no Origin, but every current browser
                // sends Sec-Fetch-Site (Fetch Metadata): another site's page is refused unless
                // allowed.
                let site = value.as_bytes();
                other_site |=
                    site.eq_ignore_ascii_case(b"cross-site") || site.eq_ignore_ascii_case(b"same-site");
            }
        }
        if !self.hosts.is_empty() {
            let host =
                request.uri().authority().map(|a| a.as_str()).or_else(|| host.and_then(|h| h.to_str().ok()));
            // Two Host headers make the request invalid (RFC 9112 §3.2), and the upstream
            // might read the other one.
            let ours = hosts <= 1
                && host.is_some_and(|host| self.hosts.iter().any(|h| h.eq_ignore_ascii_case(host)));
            if !ours {
                return Some(error(
                    StatusCode::MISDIRECTED_REQUEST,
                    "misdirected_request",
                    &format!("this proxy answers only to Host {}", self.hosts.join(" or ")),
                ));
            }
        }
        let allowed = has_origin && allowed;
        if has_origin && !allowed {
            return Some(error(
                StatusCode::FORBIDDEN,
                "origin_not_allowed",
                "requests from this web origin are refused; see the proxy's allow_origins",
            ));
        }
        if other_site && !allowed {
            return Some(error(
                StatusCode::FORBIDDEN,
                "cross_site_refused",
                "requests from another site's page are refused; see the proxy's allow_origins",
            ));
        }
        // Answered here even when the upstream has metadata for other clients: a host that
        // found it would start OAuth instead of using the proxy's token.
        if asks_for_metadata(request.uri().path()) {
            return Some(error(
                StatusCode::NOT_FOUND,
                "oauth_not_offered",
                "this proxy adds the token to every request itself: there is no OAuth to discover here",
            ));
        }
        None
    }

    /// An `Origin` in `allow_origins`, or the listener's own (`http://127.0.0.1:PORT`,
    /// `http://localhost:PORT`, `http://[::1]:PORT`).
    fn origin_allowed(&self, origin: &[u8]) -> bool {
        let own = origin
            .strip_prefix(b"http://")
            .is_some_and(|host| self.hosts.iter().any(|h| h.as_bytes().eq_ignore_ascii_case(host)));
        own || self.allow_origins.iter().any(|allowed| origin == allowed.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_paths_are_found_however_a_client_spells_them() {
        for path in [
            "/.well-known/oauth-protected-resource",
            "//.well-known//oauth-protected-resource",
            "/%2Ewell-known/oauth-protected-resource",
            "/%2e%77ell-known/oauth-protected-resource",
            "/.well-known%2Foauth-authorization-server",
            "/.WELL-KNOWN/OPENID-CONFIGURATION",
            "/mcp/.well-known/openid-configuration",
        ] {
            assert!(asks_for_metadata(path), "{path}");
        }
        for path in ["/.well-known/security.txt", "/mcp", "/%41pi/x"] {
            assert!(!asks_for_metadata(path), "{path}");
        }
    }
}
