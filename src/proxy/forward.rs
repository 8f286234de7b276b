//! What changes about a request and its answer on the way through (DESIGN §12): hop-by-hop
//! headers go, the token header is set, `Host` becomes the upstream's. Nothing else is added.

use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::http::uri::PathAndQuery;
use hyper::http::{request, response};
use hyper::{Method, Request, StatusCode, Uri};

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1), besides those the
/// `Connection` header names and every `Proxy-*`. `Connection` first. Compared as text: every
/// header of every message goes through [`hop_by_hop`], and a text comparison checks the length
/// first.
const HOP_BY_HOP: [&str; 6] = ["connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade"];

/// `name`'s place in [`HOP_BY_HOP`].
fn hop_by_hop(name: &HeaderName) -> Option<usize> {
    let name = name.as_str();
    HOP_BY_HOP.iter().position(|hop| *hop == name)
}

/// Removes the hop-by-hop headers of `headers`. One pass over the names finds which are
/// there, so a message pays a lookup only for each it has: an answer with `Connection:
/// keep-alive`, the most common case, costs two and allocates nothing.
pub(super) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let mut present = [false; HOP_BY_HOP.len()];
    let mut proxy = false;
    for name in headers.keys() {
        match hop_by_hop(name) {
            Some(i) => present[i] = true,
            None => proxy |= name.as_str().starts_with("proxy-"),
        }
    }
    if present[0] {
        // What `Connection` names, read before it goes; a second `Connection` header is rare.
        let mut values = headers.get_all(header::CONNECTION).iter();
        let first = values.next().cloned();
        let rest: Vec<HeaderValue> = values.cloned().collect();
        for value in first.iter().chain(&rest) {
            // Token by token: one that is not text (no header's name) must not hide the others.
            let names = value.as_bytes().split(|&b| b == b',').map(<[u8]>::trim_ascii);
            for name in
                names.filter_map(|name| std::str::from_utf8(name).ok()).filter(|name| !name.is_empty())
            {
                headers.remove(name);
            }
        }
    }
    for (hop, _) in HOP_BY_HOP.into_iter().zip(present).filter(|(_, there)| *there) {
        headers.remove(hop);
    }
    if proxy {
        let named: Vec<HeaderName> =
            headers.keys().filter(|name| name.as_str().starts_with("proxy-")).cloned().collect();
        for name in named {
            headers.remove(name);
        }
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

/// The request the upstream gets for the client's `parts`, whose hop-by-hop headers are gone
/// already ([`strip_hop_by_hop`]): its method and headers, `target` as the request line's
/// (origin-form, RFC 9112 §3.2.1), with `token` (name, value) in place of whatever the client
/// sent under that name.
pub(super) fn upstream_request<B>(
    parts: &request::Parts,
    target: &PathAndQuery,
    host: &HeaderValue,
    token: (&HeaderName, &HeaderValue),
    body: B,
) -> Request<B> {
    let mut headers = parts.headers.clone();
    headers.insert(header::HOST, host.clone());
    headers.insert(token.0.clone(), token.1.clone());
    let mut request = Request::new(body);
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = Uri::from(target.clone());
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
    fn one_hop_by_hop_header_alone_is_found_and_a_message_without_any_is_kept_whole() {
        for hop in ["connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade", "proxy-x"] {
            let mut h = headers(&[(hop, "x-named"), ("x-named", "1"), ("accept", "*/*")]);
            strip_hop_by_hop(&mut h);
            let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
            left.sort_unstable();
            let expected: &[&str] = if hop == "connection" { &["accept"] } else { &["accept", "x-named"] };
            assert_eq!(left, expected, "{hop}");
        }
        // A token that is not text does not hide the others.
        let mut odd = HeaderMap::new();
        odd.insert(header::CONNECTION, HeaderValue::from_bytes(b"close, X-B, X-\xe9").unwrap());
        odd.insert("x-b", HeaderValue::from_static("leak"));
        strip_hop_by_hop(&mut odd);
        assert!(odd.is_empty(), "{odd:?}");
        let mut clean = headers(&[("x-named", "1"), ("accept", "*/*"), ("mcp-session-id", "abc")]);
        strip_hop_by_hop(&mut clean);
        assert_eq!(clean.len(), 3);
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
        let (mut parts, ()) = Request::post("/mcp?x=1")
            .header("host", "127.0.0.1:8787")
            .header("authorization", "Bearer client-sent")
            .header("Authorization", "Bearer another")
            .header("mcp-protocol-version", "2025-06-18")
            .body(())
            .unwrap()
            .into_parts();
        strip_hop_by_hop(&mut parts.headers);
        let token = (&header::AUTHORIZATION, &HeaderValue::from_static("Bearer fresh"));
        let target = PathAndQuery::from_static("/base/mcp?x=1");
        let request =
            upstream_request(&parts, &target, &HeaderValue::from_static("backend.example.com"), token, ());
        assert_eq!(request.method(), "POST");
        assert_eq!(request.uri(), "/base/mcp?x=1");
        let auth: Vec<_> = request.headers().get_all("authorization").iter().collect();
        assert_eq!(auth, ["Bearer fresh"]);
        assert_eq!(request.headers()["host"], "backend.example.com");
        assert_eq!(request.headers()["mcp-protocol-version"], "2025-06-18");
        assert_eq!(request.headers().len(), 3, "nothing else is added");
    }
}
