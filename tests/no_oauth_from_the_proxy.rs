//! Hosts never start OAuth because of the proxy (DESIGN §12): the metadata they probe on
//! connect is answered by the proxy itself, no answer carries a `WWW-Authenticate` challenge,
//! and a 403 that says `invalid_token` is a refused token like a 401 (one refresh, one replay).

mod support;

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use support::Backend;
use support::api::{self, get};
use support::http::{self, Target};
use support::upstream::{Admit, Upstream};

const HEADER: &str = "X-Google-MCP-Token";

struct Proxied {
    backend: Backend,
    upstream: Upstream,
    proxy: Target,
    d: api::WithSocket,
}

async fn start() -> Proxied {
    let backend = Backend::start().await;
    let upstream = Upstream::start(&backend, HEADER, None).await;
    let address: SocketAddr = support::free_port("127.0.0.1");
    let sink = format!(
        "[[sink]]\ntype = \"proxy\"\nlisten = \"{address}\"\nupstream = \"{}/api\"\nheader = \"{HEADER}\"\n",
        upstream.url()
    );
    let d = api::start(&backend, &sink);
    let proxy = Target::Tcp(address);
    http::until_proxy_serves(&proxy, &d.daemon).await;
    Proxied { backend, upstream, proxy, d }
}

fn post(target: &Target, path: &str, body: &'static str) -> hyper::Request<Full<Bytes>> {
    http::request(target, "POST", path).body(Full::new(Bytes::from_static(body.as_bytes()))).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metadata_hosts_probe_is_answered_by_the_proxy_wherever_it_stands() {
    let p = start().await;
    let before = p.upstream.received().len();
    for path in [
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/oauth-authorization-server",
        "/.well-known/oauth-authorization-server/mcp",
        "/.well-known/openid-configuration",
        "/.well-known/openid-configuration/mcp",
        "/mcp/.well-known/openid-configuration",
        "/mcp/.well-known/oauth-authorization-server?x=1",
        "//.well-known//oauth-protected-resource",
        "/%2Ewell-known/oauth-protected-resource",
    ] {
        let reply = http::send(&p.proxy, http::get(&p.proxy, path)).await;
        assert_eq!(
            (reply.status, reply.json()["error"].as_str()),
            (404, Some("oauth_not_offered")),
            "{path}"
        );
    }
    assert_eq!(p.upstream.received().len(), before, "a metadata probe was forwarded");
    // Other well-known paths are the upstream's business.
    let reply = http::send(&p.proxy, http::get(&p.proxy, "/.well-known/security.txt")).await;
    assert_eq!(reply.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_answer_carries_a_challenge() {
    let p = start().await;
    let reply = http::send(&p.proxy, http::get(&p.proxy, "/challenge")).await;
    assert_eq!(reply.status, 200);
    assert!(!reply.headers.contains_key("www-authenticate"), "{:?}", reply.headers);
    // A plain 403 passes through, without its challenge.
    p.upstream.set_admit(Admit::Nobody);
    p.upstream.set_refusal(403, Some("Bearer error=\"insufficient_scope\", scope=\"admin\""));
    let reply = http::send(&p.proxy, post(&p.proxy, "/echo", "x")).await;
    assert_eq!(reply.status, 403);
    assert!(!reply.headers.contains_key("www-authenticate"), "{:?}", reply.headers);
    // Refused tokens become 503, never a 401, and carry no challenge either.
    p.upstream
        .set_refusal(401, Some("Bearer resource_metadata=\"http://x/.well-known/oauth-protected-resource\""));
    let reply = http::send(&p.proxy, post(&p.proxy, "/echo", "x")).await;
    assert_eq!(reply.status, 503);
    assert!(!reply.headers.contains_key("www-authenticate"), "{:?}", reply.headers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_403_saying_invalid_token_is_refreshed_and_replayed_like_a_401() {
    let p = start().await;
    for challenge in [
        "Bearer error=\"invalid_token\", error_description=\"expired\"",
        "Basic realm=\"x\", Bearer ERROR=invalid_token",
    ] {
        p.upstream.set_refusal(403, Some(challenge));
        p.backend.rotate();
        let before = p.backend.fetches();
        let requests: Vec<_> = (0..20)
            .map(|_| {
                let proxy = p.proxy.clone();
                tokio::spawn(async move { http::send(&proxy, post(&proxy, "/echo", "replayed")).await })
            })
            .collect();
        for request in requests {
            let reply = request.await.unwrap();
            assert_eq!((reply.status, reply.body.as_str()), (200, "replayed"), "{challenge}");
        }
        assert_eq!(p.backend.fetches() - before, 1, "{challenge}: twenty 403s share one fetch");
    }
    // Refused again after the refresh: 503, as for a 401.
    p.upstream.set_admit(Admit::Nobody);
    let reply = http::send(&p.proxy, post(&p.proxy, "/echo", "x")).await;
    assert_eq!((reply.status, reply.json()["error"].as_str()), (503, Some("upstream_rejected_token")));
    let metrics = get(&p.d.socket, "/metrics").await.body;
    assert!(metrics.contains("mcp_token_sync_proxy_replays_total"), "{metrics}");
}
