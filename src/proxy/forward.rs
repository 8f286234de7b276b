//! What changes about a request and its answer on the way through (DESIGN §12): hop-by-hop
//! headers go, the token header is set, `Host` becomes the upstream's. Nothing else is added.

use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::http::{request, response};
use hyper::{Method, Request, StatusCode, Uri};

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1), besides those the
/// `Connection` header names and every `Proxy-*`.
const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes the hop-by-hop headers of `headers`.
pub(super) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|list| list.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
    let proxy: Vec<HeaderName> =
        headers.keys().filter(|name| name.as_str().starts_with("proxy-")).cloned().collect();
    for name in proxy {
        headers.remove(name);
    }
}

/// Frames the answer by what hyper decoded, never by a stale length: an upstream that sent
/// both `Content-Length` and `Transfer-Encoding: chunked` (RFC 9112 §6.3: chunked wins) would
/// otherwise leave the client waiting for bytes that never come. A length that matches the
/// decoded body exactly stays; so does the one of a HEAD or 304 answer, which has no body.
pub(super) fn reframe(parts: &mut response::Parts, method: &Method, body_length: Option<u64>) {
    if *method == Method::HEAD || parts.status == StatusCode::NOT_MODIFIED {
        return;
    }
    let declared =
        parts.headers.get(header::CONTENT_LENGTH).map(|v| v.to_str().ok().and_then(|v| v.parse().ok()));
    if let Some(declared) = declared
        && (declared != body_length || parts.headers.get_all(header::CONTENT_LENGTH).iter().count() > 1)
    {
        parts.headers.remove(header::CONTENT_LENGTH);
    }
}

/// The request the upstream gets for the client's `parts`: its method and end-to-end headers,
/// with `token` (name, value) in place of whatever the client sent under that name.
pub(super) fn upstream_request<B>(
    parts: &request::Parts,
    uri: Uri,
    host: &HeaderValue,
    token: (&HeaderName, &HeaderValue),
    body: B,
) -> Request<B> {
    let mut headers = parts.headers.clone();
    strip_hop_by_hop(&mut headers);
    headers.insert(header::HOST, host.clone());
    headers.insert(token.0.clone(), token.1.clone());
    let mut request = Request::new(body);
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = uri;
    *request.version_mut() = hyper::Version::HTTP_11;
    *request.headers_mut() = headers;
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap()))
            .collect()
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_go() {
        let mut h = headers(&[
            ("connection", "keep-alive, X-Hop"),
            ("keep-alive", "timeout=5"),
            ("x-hop", "1"),
            ("te", "trailers"),
            ("trailer", "x-checksum"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Basic x"),
            ("proxy-connection", "keep-alive"),
            ("mcp-session-id", "abc"),
            ("accept", "text/event-stream"),
            ("content-encoding", "gzip"),
        ]);
        strip_hop_by_hop(&mut h);
        let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["accept", "content-encoding", "mcp-session-id"]);
    }

    #[test]
    fn an_answer_is_framed_by_its_decoded_body_not_a_stale_length() {
        let parts = |length: &[&str]| {
            let mut builder = hyper::Response::builder();
            for value in length {
                builder = builder.header("content-length", *value);
            }
            builder.body(()).unwrap().into_parts().0
        };
        let mut exact = parts(&["5"]);
        reframe(&mut exact, &Method::GET, Some(5));
        assert_eq!(exact.headers["content-length"], "5");
        // Chunked as well as a length: hyper decoded chunks, the length goes.
        let mut both = parts(&["5"]);
        reframe(&mut both, &Method::GET, None);
        assert!(!both.headers.contains_key("content-length"));
        for malformed in [&["5", "6"][..], &["x"]] {
            let mut p = parts(malformed);
            reframe(&mut p, &Method::POST, Some(5));
            assert!(!p.headers.contains_key("content-length"), "{malformed:?}");
        }
        let mut head = parts(&["5"]);
        reframe(&mut head, &Method::HEAD, Some(0));
        assert_eq!(
            head.headers["content-length"], "5",
            "a HEAD answer keeps the length of what GET would send"
        );
    }

    #[test]
    fn the_token_header_replaces_the_clients_and_host_is_the_upstreams() {
        let (parts, ()) = Request::post("/mcp?x=1")
            .header("host", "127.0.0.1:8787")
            .header("authorization", "Bearer client-sent")
            .header("Authorization", "Bearer another")
            .header("mcp-protocol-version", "2025-06-18")
            .body(())
            .unwrap()
            .into_parts();
        let token = (&header::AUTHORIZATION, &HeaderValue::from_static("Bearer fresh"));
        let uri: Uri = "https://backend.example.com/base/mcp?x=1".parse().unwrap();
        let request = upstream_request(
            &parts,
            uri.clone(),
            &HeaderValue::from_static("backend.example.com"),
            token,
            (),
        );
        assert_eq!(request.method(), "POST");
        assert_eq!(request.uri(), &uri);
        let auth: Vec<_> = request.headers().get_all("authorization").iter().collect();
        assert_eq!(auth, ["Bearer fresh"]);
        assert_eq!(request.headers()["host"], "backend.example.com");
        assert_eq!(request.headers()["mcp-protocol-version"], "2025-06-18");
        assert_eq!(request.headers().len(), 3, "nothing else is added");
    }
}
