//! The proxy sink (DESIGN §12) of the real binary: a client with no token, through the proxy, to
//! a fake upstream that accepts only the backend's current token and records what it got.

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use nix::sys::signal::Signal;
use support::api::Reply;
use support::api::{self, get};
use support::http::{self, Target};
use support::upstream::{Admit, Upstream};
use support::{Backend, free_port, wait_for_async};

const PATIENCE: Duration = Duration::from_secs(10);
const HEADER: &str = "X-Google-MCP-Token";

struct Proxied {
    backend: Backend,
    upstream: Upstream,
    proxy: Target,
    d: api::WithSocket,
}

/// A `[[sink]]` table for a proxy to `upstream`, plus `extra` keys.
fn proxy_sink(listen: &str, upstream: &Upstream, extra: &str) -> String {
    format!(
        "[[sink]]\ntype = \"proxy\"\nlisten = \"{listen}\"\nupstream = \"{}/api\"\nheader = \"{HEADER}\"\n{extra}\n",
        upstream.url()
    )
}

/// A daemon with a TCP proxy (and a socket, for status) in front of a fresh upstream.
async fn start(extra: &str) -> Proxied {
    let backend = Backend::start().await;
    let upstream = Upstream::start(&backend, HEADER, None).await;
    let address = free_port("127.0.0.1");
    let d = api::start(&backend, &proxy_sink(&address.to_string(), &upstream, extra));
    let proxy = Target::Tcp(address);
    let p = Proxied { backend, upstream, proxy, d };
    p.until_serving().await;
    p
}

impl Proxied {
    /// Until the proxy forwards with a valid token.
    async fn until_serving(&self) {
        answer_when(&self.proxy, "/ping", &self.d, |reply| reply.status == 200).await;
    }
}

/// The first answer to `GET path` that `done` accepts, once the listener is up; fails the test
/// after `PATIENCE`.
async fn answer_when(
    target: &Target,
    path: &str,
    d: &api::WithSocket,
    done: impl Fn(&Reply) -> bool,
) -> Reply {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let listening = match target {
            Target::Tcp(address) => tokio::net::TcpStream::connect(address).await.is_ok(),
            Target::Unix(path) => tokio::net::UnixStream::connect(path).await.is_ok(),
        };
        if listening {
            let reply = http::send(target, http::get(target, path)).await;
            if done(&reply) {
                return reply;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{target:?} never answered {path} as expected; the daemon said:\n{}",
            d.daemon.output()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn post(target: &Target, path: &str, body: impl Into<Bytes>) -> hyper::Request<Full<Bytes>> {
    http::request(target, "POST", path).body(Full::new(body.into())).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_reaches_the_upstream_with_the_token_and_all_else_as_sent() {
    let p = start("").await;
    let request = http::request(&p.proxy, "POST", "/mcp/echo?session=1&x=%2F")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", "session-42")
        .header("mcp-protocol-version", "2025-06-18")
        .header("last-event-id", "17")
        .header(HEADER, "a-token-the-client-made-up")
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "dropped")
        .header("te", "trailers")
        .header("proxy-authorization", "Basic c2VjcmV0")
        .body(Full::new(Bytes::from_static(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}")))
        .unwrap();
    let reply = http::send(&p.proxy, request).await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (200, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}")
    );

    let received = p.upstream.received().pop().unwrap();
    assert_eq!(received.method, "POST");
    assert_eq!(received.path_and_query, "/api/mcp/echo?session=1&x=%2F", "prefix, path and query");
    let h = &received.headers;
    let tokens: Vec<_> = h.get_all(HEADER).iter().collect();
    assert_eq!(tokens, [p.backend.token().as_str()], "the client's value is replaced, not forwarded");
    assert_eq!(h["host"], p.upstream.addr().to_string());
    for (name, value) in [
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
        ("mcp-session-id", "session-42"),
        ("mcp-protocol-version", "2025-06-18"),
        ("last-event-id", "17"),
    ] {
        assert_eq!(h[name], value, "{name}");
    }
    for hop in ["x-hop", "te", "proxy-authorization", "keep-alive"] {
        assert!(!h.contains_key(hop), "{hop} was forwarded");
    }
    let added: Vec<_> = h.keys().filter(|k| k.as_str().starts_with("x-forwarded") || *k == "via").collect();
    assert!(added.is_empty(), "the proxy added {added:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_sent_events_reach_the_client_as_they_are_sent() {
    let p = start("").await;
    let request = http::request(&p.proxy, "GET", "/mcp/sse")
        .header("accept", "text/event-stream")
        .body(Full::default())
        .unwrap();
    let response = http::open(&p.proxy, request).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.into_body();
    for i in 0..5 {
        let sent = wait_for_async("the stream to open upstream", PATIENCE, || {
            (p.upstream.send_event(&format!("event {i}")) > 0).then(Instant::now)
        })
        .await;
        // Each event must arrive while the stream stays open: a proxy that buffered would hold it.
        let frame =
            tokio::time::timeout(PATIENCE, body.frame()).await.expect("the event in time").unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), format!("data: event {i}\n\n"));
        assert!(sent.elapsed() < Duration::from_secs(2), "event {i} took {:?}", sent.elapsed());
    }
    drop(body);

    // A client that disconnects ends its upstream request.
    let Target::Tcp(address) = p.proxy else { unreachable!() };
    let closed = p.upstream.closed_streams();
    let mut client = tokio::net::TcpStream::connect(address).await.unwrap();
    let head = format!("GET /mcp/sse HTTP/1.1\r\nHost: {address}\r\nAccept: text/event-stream\r\n\r\n");
    tokio::io::AsyncWriteExt::write_all(&mut client, head.as_bytes()).await.unwrap();
    let mut answer = [0u8; 12];
    tokio::io::AsyncReadExt::read_exact(&mut client, &mut answer).await.unwrap();
    assert_eq!(&answer, b"HTTP/1.1 200");
    drop(client);
    wait_for_async("the upstream stream to end", PATIENCE, || {
        (p.upstream.closed_streams() > closed).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_mib_stream_up_and_down() {
    let p = start("").await;
    let upload: Vec<u8> = (0..2 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let reply = http::open(&p.proxy, post(&p.proxy, "/echo", upload.clone())).await;
    assert_eq!(reply.status(), 200);
    let echoed = reply.into_body().collect().await.unwrap().to_bytes();
    assert!(echoed == upload, "the 2 MiB body came back changed ({} bytes)", echoed.len());
    let download = http::open(&p.proxy, http::get(&p.proxy, "/bytes/2097152")).await;
    assert_eq!(download.into_body().collect().await.unwrap().to_bytes().len(), 2 * 1024 * 1024);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_requests_after_a_rotation_make_one_fetch_and_all_succeed() {
    let p = start("").await;
    p.backend.rotate();
    p.backend.set_reply(support::Reply::Slow(Duration::from_millis(300)));
    let before = p.backend.fetches();
    let requests: Vec<_> = (0..50)
        .map(|i| {
            let proxy = p.proxy.clone();
            tokio::spawn(
                async move { http::send(&proxy, post(&proxy, "/echo", format!("request {i}"))).await },
            )
        })
        .collect();
    for (i, request) in requests.into_iter().enumerate() {
        let reply = request.await.unwrap();
        assert_eq!((reply.status, reply.body), (200, format!("request {i}")), "request {i}");
    }
    assert_eq!(p.backend.fetches() - before, 1, "50 refused requests must share one fetch");
    let metrics = get(&p.d.socket, "/metrics").await.body;
    assert!(metrics.contains("mcp_token_sync_proxy_replays_total{token=\"default\",proxy=\""), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_refusing_every_token_gets_503_with_retry_after_then_recovers() {
    let p = start("").await;
    p.upstream.set_admit(Admit::Nobody);
    let reply = http::send(&p.proxy, post(&p.proxy, "/echo", "x")).await;
    assert_eq!(reply.status, 503, "never a 401, which sends MCP clients into OAuth discovery");
    assert_eq!(reply.json()["error"], "upstream_rejected_token");
    let retry: u64 = reply.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=300).contains(&retry), "Retry-After {retry}");
    assert!(!reply.body.contains("SECRET-tok"), "{}", reply.body);
    let status = get(&p.d.socket, "/v1/status").await.json();
    let entry = status["sinks"].as_array().unwrap().iter().find(|s| s["type"] == "proxy").unwrap().clone();
    assert_eq!(entry["ok"], false, "{entry}");

    p.upstream.set_admit(Admit::CurrentToken);
    let reply = http::send(&p.proxy, post(&p.proxy, "/echo", "again")).await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "again"));
    api::sink_status(&p.d.socket, "127.0.0.1", |e| e["ok"] == true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_valid_token_the_upstream_is_not_contacted() {
    let backend = Backend::start().await;
    backend.set_reply(support::Reply::Raw { status: 500, body: b"down".to_vec() });
    let upstream = Upstream::start(&backend, HEADER, None).await;
    let address = free_port("127.0.0.1");
    let d = api::start(&backend, &proxy_sink(&address.to_string(), &upstream, ""));
    let proxy = Target::Tcp(address);
    let reply = answer_when(&proxy, "/ping", &d, |_| true).await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.json()["error"], "no_valid_token");
    assert!(reply.headers.contains_key("retry-after"));
    assert!(upstream.received().is_empty(), "the upstream was contacted without a token");
    drop(d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_too_large_to_keep_is_not_replayed_but_the_token_is_refreshed() {
    let p = start("replay_limit = \"1KiB\"").await;
    let fresh = p.backend.rotate();
    let before = p.backend.fetches();
    let reply = http::send(&p.proxy, post(&p.proxy, "/echo", vec![b'x'; 4096])).await;
    assert_eq!(reply.status, 503);
    assert!(reply.json()["detail"].as_str().unwrap().contains("replay_limit"), "{}", reply.body);
    assert_eq!(p.backend.fetches() - before, 1);
    // The next request goes out with the fresh token at once.
    let reply = http::send(&p.proxy, post(&p.proxy, "/echo", "small")).await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "small"));
    assert_eq!(p.upstream.received().last().unwrap().headers[HEADER], fresh.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_passed_back_and_those_to_the_upstream_come_back_through_the_proxy() {
    let p = start("").await;
    let Target::Tcp(address) = p.proxy else { unreachable!() };
    let inside = format!("{}/api/next?page=2", p.upstream.url());
    let reply = http::send(&p.proxy, http::get(&p.proxy, &format!("/redirect?to={inside}"))).await;
    assert_eq!(reply.status, 302, "redirects are not followed");
    assert_eq!(reply.headers["location"], format!("http://{address}/next?page=2"));
    let relative = http::send(&p.proxy, http::get(&p.proxy, "/redirect?to=/api/other")).await;
    assert_eq!(relative.headers["location"], format!("http://{address}/other"));
    let outside = http::send(&p.proxy, http::get(&p.proxy, "/redirect?to=https://elsewhere.example/x")).await;
    assert_eq!(outside.headers["location"], "https://elsewhere.example/x");
    // The proxy's own origin is the one the client reached, even when its Connection names Host,
    // and by the host the gate checked: an absolute target's, not another Host beside it.
    let mut named = http::get(&p.proxy, "/redirect?to=/api/other");
    named.headers_mut().insert("connection", "host".parse().unwrap());
    assert_eq!(http::send(&p.proxy, named).await.headers["location"], format!("http://{address}/other"));
    let mut raw = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!(
        "GET http://{address}/redirect?to=/api/other HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n"
    );
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    raw.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    raw.read_to_string(&mut answer).await.unwrap();
    let location = answer.lines().find_map(|line| line.strip_prefix("location: "));
    assert_eq!(location, Some(format!("http://{address}/other").as_str()), "{answer}");
    assert_eq!(p.upstream.received().len(), 6, "one request each, nothing followed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_host_gets_421_and_a_foreign_origin_403_and_neither_is_forwarded() {
    let p = start("allow_origins = [\"http://localhost:6274\"]").await;
    let Target::Tcp(address) = p.proxy else { unreachable!() };
    let before = p.upstream.received().len();
    let with = |name: &str, value: &str| {
        let mut request = http::get(&p.proxy, "/ping");
        request
            .headers_mut()
            .insert(hyper::header::HeaderName::from_bytes(name.as_bytes()).unwrap(), value.parse().unwrap());
        request
    };
    // DNS rebinding: a page on evil.example resolved to 127.0.0.1.
    let rebound = http::send(&p.proxy, with("host", &format!("evil.example:{}", address.port()))).await;
    assert_eq!((rebound.status, rebound.json()["error"].as_str()), (421, Some("misdirected_request")));
    let other_port = http::send(&p.proxy, with("host", "127.0.0.1:1")).await;
    assert_eq!(other_port.status, 421);
    let page = http::send(&p.proxy, with("origin", "https://evil.example")).await;
    assert_eq!((page.status, page.json()["error"].as_str()), (403, Some("origin_not_allowed")));
    assert_eq!(p.upstream.received().len(), before, "a refused request was forwarded");

    for allowed in
        [with("host", &format!("localhost:{}", address.port())), with("origin", "http://localhost:6274")]
    {
        assert_eq!(http::send(&p.proxy, allowed).await.status, 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_upstream_is_502_and_a_silent_one_504() {
    let backend = Backend::start().await;
    let silent = Upstream::start(&backend, HEADER, None).await;
    let (gone, quiet) = (free_port("127.0.0.1"), free_port("127.0.0.1"));
    let sinks = format!(
        "[[sink]]\ntype = \"proxy\"\nlisten = \"{gone}\"\nupstream = \"http://127.0.0.1:1\"\nheader = \"{HEADER}\"\n\n{}",
        proxy_sink(&quiet.to_string(), &silent, "timeout = \"1s\"")
    );
    let d = api::start(&backend, &sinks);
    api::get_until(&d.socket, "/v1/health", "a token", |r| {
        r.json()["problems"].as_array().is_none_or(|p| p.is_empty())
    })
    .await;
    let unreachable = answer_when(&Target::Tcp(gone), "/x", &d, |_| true).await;
    assert_eq!(
        (unreachable.status, unreachable.json()["error"].as_str()),
        (502, Some("upstream_unreachable"))
    );
    let started = Instant::now();
    let timed_out = http::send(&Target::Tcp(quiet), http::get(&Target::Tcp(quiet), "/slow")).await;
    assert_eq!((timed_out.status, timed_out.json()["error"].as_str()), (504, Some("upstream_timeout")));
    assert!(started.elapsed() < Duration::from_secs(5), "the 504 took {:?}", started.elapsed());
    let metrics = get(&d.socket, "/metrics").await.body;
    for line in ["reason=\"unreachable\"} 1", "reason=\"timeout\"} 1", "class=\"5xx\"}"] {
        assert!(metrics.contains(line), "no {line} in:\n{metrics}");
    }
    let health = get(&d.socket, "/v1/health").await;
    assert_eq!(health.status, 503, "{}", health.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_uids_are_refused_over_tcp_and_over_a_unix_socket_unless_allowed() {
    if !support::skip::as_root(
        "other_uids_are_refused_over_tcp_and_over_a_unix_socket_unless_allowed",
        "act as other uids",
    ) {
        return;
    }
    let backend = Backend::start().await;
    let upstream = Upstream::start(&backend, HEADER, None).await;
    let address = free_port("127.0.0.1");
    let dir = tempfile::tempdir().unwrap();
    let unix = dir.path().join("proxy.sock");
    let sinks = format!(
        "{}{}",
        proxy_sink(&address.to_string(), &upstream, "allow_uids = [65533]"),
        proxy_sink(&unix.display().to_string(), &upstream, "allow_uids = [65533]\nmode = \"0666\"")
    );
    let d = api::start(&backend, &sinks);
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let p = Proxied { backend, upstream, proxy: Target::Tcp(address), d };
    p.until_serving().await;
    let url = format!("http://{address}/ping");
    let unix_args = ["--unix-socket", unix.to_str().unwrap(), "http://localhost/ping"];
    tokio::task::block_in_place(|| {
        assert_eq!(support::binary::curl_as(65534, &[&url]), "403", "TCP, a uid not allowed");
        assert_eq!(support::binary::curl_as(65533, &[&url]), "200", "TCP, a uid in allow_uids");
        assert_eq!(support::binary::curl_as(0, &[&url]), "200", "TCP, root");
        assert_eq!(support::binary::curl_as(65534, &unix_args), "403", "Unix socket, a uid not allowed");
        assert_eq!(support::binary::curl_as(65533, &unix_args), "200", "Unix socket, a uid in allow_uids");
    });
    p.d.daemon.wait_output("refused peer uid 65534", PATIENCE);
    assert_eq!(p.upstream.received().iter().filter(|r| r.path_and_query == "/api/ping").count(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_metrics_and_logs_name_the_proxy_never_the_token() {
    let p = start("").await;
    p.backend.rotate();
    assert_eq!(http::send(&p.proxy, post(&p.proxy, "/echo", "x")).await.status, 200);
    let status = get(&p.d.socket, "/v1/status").await.json();
    let entry = status["sinks"].as_array().unwrap().iter().find(|s| s["type"] == "proxy").unwrap().clone();
    let Target::Tcp(address) = p.proxy else { unreachable!() };
    assert_eq!(entry["path"], address.to_string());
    assert_eq!(entry["upstream"], format!("{}/api", p.upstream.url()));
    assert_eq!(entry["ok"], true);
    let metrics = get(&p.d.socket, "/metrics").await.body;
    let name = format!("token=\"default\",proxy=\"{address}\"");
    for line in [
        format!("mcp_token_sync_proxy_requests_total{{{name},class=\"2xx\"}}"),
        format!("mcp_token_sync_proxy_replays_total{{{name}}} 1"),
    ] {
        assert!(metrics.contains(&line), "no {line} in:\n{metrics}");
    }
    p.d.daemon.wait_output("POST /echo -> 200", PATIENCE);
    let output = p.d.daemon.output();
    assert!(output.contains("the upstream refused version 1"), "{output}");
    for text in [status.to_string(), metrics, output] {
        assert!(!text.contains("SECRET-tok"), "the token leaked:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_adds_changes_and_removes_proxies() {
    let p = start("").await;
    let Target::Tcp(first) = p.proxy else { unreachable!() };
    let second = free_port("127.0.0.1");
    let config = p.d.dir.path().join("config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let both = format!("{text}\n{}", proxy_sink(&second.to_string(), &p.upstream, ""));
    std::fs::write(&config, &both).unwrap();
    p.d.daemon.signal(Signal::SIGHUP);
    let added = Target::Tcp(second);
    wait_for_async("the new proxy", PATIENCE, || std::net::TcpStream::connect(second).ok().map(drop)).await;
    assert_eq!(http::send(&added, http::get(&added, "/ping")).await.status, 200);

    // Changed: the first proxy moves; its old address refuses connections, the other carries on.
    let moved = free_port("127.0.0.1");
    let changed =
        support::replaced(&both, &format!("listen = \"{first}\""), &format!("listen = \"{moved}\""));
    std::fs::write(&config, changed).unwrap();
    p.d.daemon.signal(Signal::SIGHUP);
    wait_for_async("the old proxy to stop", PATIENCE, || {
        std::net::TcpStream::connect(first).is_err().then_some(())
    })
    .await;
    wait_for_async("the moved proxy", PATIENCE, || std::net::TcpStream::connect(moved).ok().map(drop)).await;
    // The log says the changed proxy runs again, not only that the old one stopped.
    p.d.daemon.wait_output(&format!("sink proxy {moved} started"), PATIENCE);
    assert!(p.d.daemon.output().contains(&format!("sink proxy {first} stopped (removed or changed)")));
    let moved = Target::Tcp(moved);
    assert_eq!(http::send(&moved, http::get(&moved, "/ping")).await.status, 200);
    assert_eq!(
        http::send(&added, http::get(&added, "/ping")).await.status,
        200,
        "the unchanged proxy kept serving"
    );
}

/// The shipped unit runs the daemon as its own user: the TCP peer check must work without
/// privileges (sock_diag answers any process).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_without_privileges_still_knows_who_connects_over_tcp() {
    let test = "a_daemon_without_privileges_still_knows_who_connects_over_tcp";
    if !support::skip::as_root(test, "run the daemon and clients as other uids") {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    const DAEMON_UID: u32 = 65533;
    let backend = Backend::start().await;
    let upstream = Upstream::start(&backend, HEADER, None).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let home = dir.path().join("daemon");
    std::fs::create_dir(&home).unwrap();
    std::os::unix::fs::chown(&home, Some(DAEMON_UID), Some(DAEMON_UID)).unwrap();
    let address = free_port("127.0.0.1");
    let config = dir.path().join("config.toml");
    let text = support::TestConfig::new(&backend)
        .set("daemon", "state_dir", &format!("{:?}", home.join("state").display().to_string()))
        .sinks(&proxy_sink(&address.to_string(), &upstream, "allow_uids = [65532]"))
        .text();
    std::fs::write(&config, text).unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let daemon = support::DaemonProcess::spawn_as(DAEMON_UID, &["run", "--config", config.to_str().unwrap()]);
    let url = format!("http://{address}/ping");
    let deadline = Instant::now() + PATIENCE;
    while tokio::task::block_in_place(|| support::binary::curl_as(0, &[&url])) != "200" {
        assert!(Instant::now() < deadline, "the unprivileged daemon never served:\n{}", daemon.output());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::task::block_in_place(|| {
        assert_eq!(support::binary::curl_as(DAEMON_UID, &[&url]), "200", "the daemon's own uid");
        assert_eq!(support::binary::curl_as(65532, &[&url]), "200", "a uid in allow_uids");
        assert_eq!(support::binary::curl_as(65534, &[&url]), "403", "any other uid");
    });
    daemon.wait_output("refused peer uid 65534", PATIENCE);
    assert!(!daemon.output().contains("cannot be found"), "sock_diag failed:\n{}", daemon.output());
}
