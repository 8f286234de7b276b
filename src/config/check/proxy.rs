//! The checks of a `proxy` sink (DESIGN §12): a listener only local users can reach, an upstream
//! the token may travel to, and a header it can go in.

use std::net::IpAddr;

use hyper::header::HeaderName;
use url::Url;

use super::{check_url, expand, resolve_sink_path};
use crate::config::{Environment, Listen, Problems, ProxySinkConfig};

/// Headers the proxy itself controls, which cannot carry the token.
const RESERVED: [&str; 12] = [
    "host",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "content-type",
    "origin",
    "proxy-authorization",
    "proxy-authenticate",
];

/// `prefix` names the sink, ending with the dot (`sink[3].`).
pub(in crate::config) fn resolve(
    c: &mut ProxySinkConfig,
    prefix: &str,
    env: &Environment,
    found: &mut Problems,
) {
    let key = |name: &str| format!("{prefix}{name}");
    match &mut c.listen {
        Listen::Tcp(address) => {
            if !address.ip().is_loopback() {
                found.add(
                    key("listen"),
                    format!(
                        "{address} is not a loopback address: anyone who reached it would get requests \
                         sent with the token; listen on 127.0.0.1, [::1] or an absolute socket path"
                    ),
                );
            }
            if address.port() == 0 {
                found.add(key("listen"), format!("{address} has no port; clients need one to connect to"));
            }
        }
        Listen::Unix(path) => {
            resolve_sink_path(path, &key("listen"), env, found);
            // sun_path holds 108 bytes with its NUL; binding happens next to the path.
            if path.as_os_str().len() > 100 {
                found.add(key("listen"), "is longer than a Unix socket path may be (100 bytes here)");
            }
        }
    }
    check_upstream(&c.upstream, c.allow_http, prefix, found);
    match HeaderName::from_bytes(c.header.as_bytes()) {
        Err(_) => found.add(key("header"), format!("{:?} is not a valid HTTP header name", c.header)),
        Ok(name) if RESERVED.contains(&name.as_str()) || name.as_str().starts_with("proxy-") => found.add(
            key("header"),
            format!(
                "{:?} is a header the proxy itself handles; the token needs a header of its own",
                c.header
            ),
        ),
        Ok(_) => {}
    }
    match &c.scheme {
        Some(scheme) if scheme.is_empty() || !scheme.bytes().all(|b| (0x21..=0x7e).contains(&b)) => found
            .add(
                key("scheme"),
                format!(
                    "{scheme:?} is not an authentication scheme: one word of visible ASCII, e.g. \"Bearer\""
                ),
            ),
        Some(_) => {}
        None if c.header.eq_ignore_ascii_case("authorization") => c.scheme = Some("Bearer".into()),
        None => {}
    }
    for (i, origin) in c.allow_origins.iter().enumerate() {
        let canonical = Url::parse(origin).ok().map(|url| url.origin().ascii_serialization());
        if canonical.as_deref() != Some(origin.as_str()) {
            found.add(
                format!("{prefix}allow_origins[{i}]"),
                format!("{origin:?} is not an origin as browsers send it, e.g. \"http://localhost:3000\""),
            );
        }
    }
    if c.timeout.is_zero() {
        found.add(key("timeout"), "must be longer than 0s");
    }
    if c.max_connections == 0 {
        found.add(key("max_connections"), "must be at least 1");
    }
    if let Some(ca) = &c.ca_file
        && let Some(expanded) = expand(found, &key("ca_file"), ca, env)
    {
        c.ca_file = Some(expanded);
    }
}

fn check_upstream(url: &Url, allow_http: bool, prefix: &str, found: &mut Problems) {
    let key = format!("{prefix}upstream");
    check_url(url, allow_http, &format!("{prefix}allow_http"), &key, found);
    if !url.username().is_empty() || url.password().is_some() {
        found.add(&key, "holds a user or password; the proxy sends only the token");
    }
    if url.query().is_some() || url.fragment().is_some() {
        found.add(
            &key,
            "has a query or fragment; give scheme://host[:port][/prefix], the request's own are appended",
        );
    }
    if let Some(url::Host::Ipv4(ip)) = url.host()
        && IpAddr::V4(ip).is_unspecified()
    {
        found.add(&key, "is 0.0.0.0, which is not an address to connect to");
    }
}
