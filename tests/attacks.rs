//! Another user on the host attacks the daemon (DESIGN §12): a request sent from a socket that
//! is already closed, a squatter on a loopback port the daemon connects to, web pages in a
//! browser, a client that breaks its own upload, a flood of refused connections, a stderr
//! nobody reads. Most need root, to act as other uids with `setpriv`.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::api::{self, get, metric};
use support::forge::{FORGE, TAKE_PORT, python_ready};
use support::http::{self, Target};
use support::squatter::Squatter;
use support::upstream::Upstream;
use support::{Backend, TestConfig, free_port, wait_for, wait_for_async};

const PATIENCE: Duration = Duration::from_secs(10);
const HEADER: &str = "X-Google-MCP-Token";
const NOBODY: u32 = 65534;

fn proxy_sink(listen: SocketAddr, upstream: &str, extra: &str) -> String {
    format!(
        "[[sink]]\ntype = \"proxy\"\nlisten = \"{listen}\"\nupstream = \"{upstream}\"\nheader = \"{HEADER}\"\n{extra}\n"
    )
}

/// Until the proxy at `address` forwards with a valid token.
async fn until_serving(address: SocketAddr, d: &api::WithSocket) {
    http::until_proxy_serves(&Target::Tcp(address), &d.daemon).await;
}

/// As `uid`: connects to `address`, sends one whole request for `path` and one byte more, and
/// closes at once. Returns the client's port.
fn send_and_close_as(uid: u32, address: SocketAddr, path: &str) -> u16 {
    let script = r#"
import socket, sys
host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
s.connect((host, port))
print(s.getsockname()[1], flush=True)
host_header = ("[%s]" % host if ":" in host else host) + ":%d" % port
s.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\n\r\nX" % (path, host_header)).encode())
s.close()
"#;
    let out = Command::new("setpriv")
        .args([&format!("--reuid={uid}"), &format!("--regid={uid}"), "--clear-groups"])
        .args([
            "/usr/bin/python3",
            "-c",
            script,
            &address.ip().to_string(),
            &address.port().to_string(),
            path,
        ])
        .output()
        .expect("setpriv and python3 are installed");
    String::from_utf8_lossy(&out.stdout).trim().parse().expect("the client printed its port")
}

/// The state `ss` shows for the TCP socket bound to `port`, if any.
fn tcp_state(port: u16) -> Option<String> {
    let out = Command::new("ss").args(["-Htan", &format!("sport = :{port}")]).output().ok()?;
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().map(str::to_owned)
}

/// Issue "Close the holes", item 1: the kernel reports a TIME_WAIT (or orphaned FIN-WAIT-2)
/// socket as uid 0. A refused user's request, looked up after the client closed, was served as
/// root's. Every slot is held by a stream and the accept loop waits for a slot for another
/// connection, so the attacker's is accepted and looked up only after it closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_from_a_socket_already_closed_is_refused_not_served_as_roots() {
    let test = "a_request_from_a_socket_already_closed_is_refused_not_served_as_roots";
    if !support::skip::as_root(test, "act as another uid") {
        return;
    }
    let backend = Backend::start().await;
    let upstream = Upstream::start(&backend, HEADER, None).await;
    let (v4, v6) = (free_port("127.0.0.1"), free_port("::1"));
    let url = format!("{}/api", upstream.url());
    let sinks = [v4, v6].map(|listen| proxy_sink(listen, &url, "max_connections = 1")).concat();
    let d = api::start(&backend, &sinks);
    for address in [v4, v6] {
        until_serving(address, &d).await;
        let target = Target::Tcp(address);
        // Root holds the listener's only slot with a stream, and a second connection of root's
        // waits for the slot: the accept loop waits with it, and the attacker's connection
        // waits in the kernel's queue until the slot is free.
        let stream = http::open(&target, http::get(&target, "/sse")).await;
        assert_eq!(stream.status(), 200);
        let _next_in_line = std::net::TcpStream::connect(address).unwrap();
        let refused_before = metric(&d.socket, "mcp_token_sync_refused_peers_total").await;
        let path = format!("/attack-{}", address.port());
        let port = tokio::task::block_in_place(|| send_and_close_as(NOBODY, address, &path));
        wait_for_async("the attacker's socket to be a kernel mini-socket", PATIENCE, || {
            tcp_state(port).filter(|s| s == "TIME-WAIT" || s == "FIN-WAIT-2")
        })
        .await;
        drop(stream); // the slot is free: the waiting connection is looked up now
        let deadline = Instant::now() + PATIENCE;
        while metric(&d.socket, "mcp_token_sync_refused_peers_total").await <= refused_before {
            assert!(Instant::now() < deadline, "the connection was never refused:\n{}", d.daemon.output());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let forwarded: Vec<_> =
            upstream.received().into_iter().filter(|r| r.path_and_query.contains(&path)).collect();
        assert!(forwarded.is_empty(), "{address}: a refused user's request went upstream with the token");
    }
    d.daemon.wait_output("no longer held by any process", PATIENCE);
}

/// One request on `stream`, kept alive: the status, or `None` if the connection was closed.
/// The helpers' attack on issue 26's fix: a refused user's request, sent and reset while it
/// waited in the accept queue, with the client's port then taken by root (a connection from
/// it, or a listener on it). The lookup by address pair found root's socket, and the request
/// went upstream with the token as root's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_client_reset_is_not_served_as_whoever_takes_its_port() {
    let test = "a_request_whose_client_reset_is_not_served_as_whoever_takes_its_port";
    if !support::skip::as_root(test, "act as another uid") {
        return;
    }
    let backend = Backend::start().await;
    let upstream = Upstream::start(&backend, HEADER, None).await;
    let listen = free_port("127.0.0.1");
    let d =
        api::start(&backend, &proxy_sink(listen, &format!("{}/api", upstream.url()), "max_connections = 1"));
    until_serving(listen, &d).await;
    let target = Target::Tcp(listen);
    let mut held = Vec::new();
    for taker in ["connection", "listener"] {
        // Root holds the only slot with a stream and a second connection waits for it: the
        // attacker's connection waits in the kernel's queue behind them.
        let stream = http::open(&target, http::get(&target, "/sse")).await;
        let _next_in_line = std::net::TcpStream::connect(listen).unwrap();
        let refused_before = metric(&d.socket, "mcp_token_sync_refused_peers_total").await;
        let (from, path) = (free_port("127.0.0.1").port().to_string(), format!("/attack-{taker}"));
        let url = format!("http://{listen}{path}");
        let forged = tokio::task::block_in_place(|| {
            Command::new("setpriv")
                .args([&format!("--reuid={NOBODY}"), &format!("--regid={NOBODY}"), "--clear-groups"])
                .args(["/usr/bin/python3", "-c", FORGE, &url, &from])
                .status()
                .unwrap()
        });
        assert!(forged.success());
        held.push(tokio::task::block_in_place(|| {
            python_ready(TAKE_PORT, &[taker, &from, &listen.port().to_string()])
        }));
        drop(stream); // the slot is free: the queue is worked through
        let deadline = Instant::now() + PATIENCE;
        while metric(&d.socket, "mcp_token_sync_refused_peers_total").await <= refused_before {
            assert!(Instant::now() < deadline, "{taker}: never refused:\n{}", d.daemon.output());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let forwarded: Vec<_> =
            upstream.received().into_iter().filter(|r| r.path_and_query.contains(&path)).collect();
        assert!(forwarded.is_empty(), "{taker}: a reset client's request went upstream as root's");
    }
    drop(held);
}

fn request_on(stream: &mut std::net::TcpStream, address: SocketAddr, path: &str) -> Option<u16> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let length: usize =
        head.lines().find_map(|l| l.strip_prefix("content-length:")).map_or(0, |n| n.trim().parse().unwrap());
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).ok()?;
    head.split_whitespace().nth(1)?.parse().ok()
}

/// With every slot taken, a newcomer gets one by closing the connection idle longest. A user the
/// listener refuses must not be that newcomer: it would close allowed users' connections at will.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_user_cannot_close_an_allowed_users_connection() {
    if !support::skip::as_root(
        "a_refused_user_cannot_close_an_allowed_users_connection",
        "act as another uid",
    ) {
        return;
    }
    let backend = Backend::start().await;
    let upstream = Upstream::start(&backend, HEADER, None).await;
    let address = free_port("127.0.0.1");
    let d =
        api::start(&backend, &proxy_sink(address, &format!("{}/api", upstream.url()), "max_connections = 1"));
    until_serving(address, &d).await;
    tokio::task::block_in_place(|| {
        // Root's keep-alive connection, idle between requests: the one that would give way.
        let mut kept = std::net::TcpStream::connect(address).unwrap();
        kept.set_read_timeout(Some(PATIENCE)).unwrap();
        assert_eq!(request_on(&mut kept, address, "/first"), Some(200));
        for _ in 0..3 {
            let status = support::binary::curl_as(NOBODY, &[&format!("http://{address}/attack")]);
            assert_eq!(status, "000", "a refused user was given a slot (and an answer)");
        }
        assert_eq!(
            request_on(&mut kept, address, "/second"),
            Some(200),
            "the refused user closed root's connection to make room"
        );
    });
    let refused = metric(&d.socket, "mcp_token_sync_refused_peers_total").await;
    assert!(refused >= 3.0, "refusals not counted: {refused}");
}

/// A `once` against a source on `url`, with `tweak` on the config: (succeeded, token file, output).
fn once(
    backend: &Backend,
    url: &str,
    tweak: impl FnOnce(TestConfig) -> TestConfig,
) -> (bool, Option<String>, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    let config = dir.path().join("config.toml");
    let text = tweak(TestConfig::new(backend).set("source", "url", &format!("{url:?}")))
        .sinks(&support::file_sink(&file, "raw"))
        .text();
    std::fs::write(&config, text).unwrap();
    let (status, output) = support::binary::run_verb(&["once", "--config", config.to_str().unwrap()]);
    (status.success(), std::fs::read_to_string(&file).ok(), output)
}

/// Issue "Close the holes", item 2, for the source: its answer becomes the token, and it gets
/// the backend credential. A listener of another uid gets neither, however the URL names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_squatter_on_the_sources_port_gets_no_request_and_chooses_no_token() {
    if !support::skip::as_root(
        "a_squatter_on_the_sources_port_gets_no_request_and_chooses_no_token",
        "act as another uid",
    ) {
        return;
    }
    let backend = Backend::start().await;
    let credential = backend.state_dir().join("backend-key");
    std::fs::write(&credential, "backend-credential").unwrap();
    let with_credential = |config: TestConfig| {
        config.sinks(&format!(
            "[source.auth]\ntype = \"bearer\"\ncredential_file = \"{}\"\n\n",
            credential.display()
        ))
    };
    tokio::task::block_in_place(|| {
        for host in ["127.0.0.1", "::1"] {
            let squatter = Squatter::start(NOBODY, host, support::backend::AGENT);
            // localhost too, where the resolver gives it this family.
            let localhost = ("localhost", 0).to_socket_addrs().unwrap().any(|a| a.ip().to_string() == host);
            let literal = if host == "::1" { "[::1]" } else { host };
            for name in std::iter::once(literal).chain(localhost.then_some("localhost")) {
                let url = format!("http://{name}:{}/current-token/", squatter.port);
                let (ok, file, output) = once(&backend, &url, with_credential);
                assert!(!ok, "{url}: once succeeded:\n{output}");
                assert_eq!(file, None, "{url}: a squatter's token was published");
                assert!(output.contains(&format!("belongs to uid {NOBODY}")), "{url}: {output}");
                assert!(output.contains("source.trust_uids"), "{output}");
                assert!(!output.contains("SQUATTER-CHOSEN"), "{output}");
            }
            assert_eq!(squatter.got(), Vec::<String>::new(), "the squatter got a request");

            // trust_uids names a uid that may serve: then it is the source.
            let url = format!("http://{literal}:{}/current-token/", squatter.port);
            let trusted = |c: TestConfig| c.set("source", "trust_uids", &format!("[{NOBODY}]"));
            let (ok, file, output) = once(&backend, &url, trusted);
            assert!(ok, "{output}");
            assert_eq!(file.as_deref(), Some("SQUATTER-CHOSEN-token"));
        }
        // A wildcard listener owned by root is trusted like any of root's.
        for wildcard in ["0.0.0.0", "::"] {
            let root = Squatter::start(0, wildcard, support::backend::AGENT);
            let (ok, file, output) = once(&backend, &format!("http://localhost:{}/t", root.port), |c| c);
            assert!(ok, "{wildcard}: {output}");
            assert_eq!(file.as_deref(), Some("SQUATTER-CHOSEN-token"));
        }
    });
}

/// Issue "Close the holes", item 2, for the proxy: a squatter on the upstream's port would get
/// every request with the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_squatter_on_the_proxys_upstream_gets_nothing_but_a_trusted_uid_does() {
    if !support::skip::as_root(
        "a_squatter_on_the_proxys_upstream_gets_nothing_but_a_trusted_uid_does",
        "act as another uid",
    ) {
        return;
    }
    let backend = Backend::start().await;
    let squatter = tokio::task::block_in_place(|| Squatter::start(NOBODY, "127.0.0.1", "x"));
    let upstream = format!("http://127.0.0.1:{}", squatter.port);
    let (refusing, trusting) = (free_port("127.0.0.1"), free_port("127.0.0.1"));
    let sinks = proxy_sink(refusing, &upstream, "")
        + &proxy_sink(trusting, &upstream, &format!("trust_uids = [{NOBODY}]"));
    let d = api::start(&backend, &sinks);
    api::get_until(&d.socket, "/v1/token", "a token", |r| r.status == 200).await;
    let target = Target::Tcp(refusing);
    wait_for_async("the proxy", PATIENCE, || std::net::TcpStream::connect(refusing).ok().map(drop)).await;
    let refused = http::send(&target, http::get(&target, "/mcp")).await;
    assert_eq!((refused.status, refused.json()["error"].as_str()), (502, Some("upstream_untrusted")));
    assert!(!refused.body.contains(&backend.token()));
    d.daemon.wait_output(&format!("belongs to uid {NOBODY}"), PATIENCE);
    assert!(squatter.got().is_empty(), "the squatter got {:?}", squatter.got());
    let metrics = get(&d.socket, "/metrics").await.body;
    assert!(metrics.contains("reason=\"untrusted\"} 1"), "{metrics}");

    let target = Target::Tcp(trusting);
    wait_for_async("the proxy", PATIENCE, || std::net::TcpStream::connect(trusting).ok().map(drop)).await;
    assert_eq!(http::send(&target, http::get(&target, "/mcp")).await.status, 200);
    let got = wait_for("the trusted upstream's request", PATIENCE, || squatter.got().pop());
    assert_eq!(got.trim(), "GOT GET /mcp HTTP/1.1 AUTH");
}

/// Issue "Close the holes", item 3, with curl's requests as a browser makes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_requests_from_other_sites_are_refused_and_the_listeners_own_origin_served() {
    let backend = Backend::start().await;
    let upstream = Upstream::start(&backend, HEADER, None).await;
    let address = free_port("127.0.0.1");
    let d = api::start(
        &backend,
        &proxy_sink(address, &format!("{}/api", upstream.url()), "allow_origins = [\"https://app.example\"]"),
    );
    until_serving(address, &d).await;
    let target = Target::Tcp(address);
    let send = |method: &str, path: &str, headers: &[(&str, String)]| {
        let mut request = http::request(&target, method, path);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        http::send(&target, request.body(Default::default()).unwrap())
    };
    let port = address.port();
    for (site, origin) in
        [("cross-site", None), ("same-site", None), ("cross-site", Some("https://evil.example"))]
    {
        let mut headers = vec![("sec-fetch-site", site.to_owned())];
        headers.extend(origin.map(|o| ("origin", o.to_owned())));
        let reply = send("GET", "/from-a-page", &headers).await;
        assert_eq!(reply.status, 403, "{site} {origin:?}: {}", reply.body);
    }
    // Found by trying: any case, any of several values, not only the first.
    let own = format!("http://127.0.0.1:{port}");
    for (headers, status) in [
        (vec![("sec-fetch-site", "CROSS-SITE".to_owned())], 403),
        (
            vec![("sec-fetch-site", "same-origin".to_owned()), ("sec-fetch-site", "cross-site".to_owned())],
            403,
        ),
        (vec![("origin", own.clone()), ("origin", "https://evil.example".to_owned())], 403),
        (vec![("host", "evil.example".to_owned())], 421),
    ] {
        let reply = send("GET", "/from-a-page", &headers).await;
        assert_eq!(reply.status, status, "{headers:?}: {}", reply.body);
    }
    for method in ["TRACE", "CONNECT", "trace"] {
        let reply = send(method, "/x", &[]).await;
        assert_eq!(reply.status, 405, "{method}");
        assert!(reply.headers["allow"].to_str().unwrap().contains("POST"));
    }
    assert!(
        upstream
            .received()
            .iter()
            .all(|r| !r.path_and_query.contains("from-a-page") && !r.method.eq_ignore_ascii_case("TRACE")),
        "a refused request was forwarded"
    );
    // The listener's own origin (the conformance suite's DNS-rebinding scenario sends it), an
    // allowed one even cross-site, and a person typing the URL (none) are served.
    for headers in [
        vec![("origin", format!("http://localhost:{port}"))],
        vec![("origin", format!("http://127.0.0.1:{port}")), ("sec-fetch-site", "same-origin".into())],
        vec![("origin", "https://app.example".into()), ("sec-fetch-site", "cross-site".into())],
        vec![("sec-fetch-site", "none".into())],
    ] {
        assert_eq!(send("POST", "/mcp", &headers).await.status, 200, "{headers:?}");
    }
}

/// Issue "Close the holes", item 3, with a real browser: a page on another site makes Chromium
/// send an image, a script, a stylesheet and a no-cors fetch to the proxy; none is forwarded,
/// while the same browser opening the proxy's URL itself is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_in_chromium_cannot_use_the_proxy() {
    let chromium = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|b| Command::new(b).arg("--version").output().is_ok());
    if !support::skip::unless_impossible(
        chromium.is_some(),
        "a_page_in_chromium_cannot_use_the_proxy",
        "no chromium installed",
    ) {
        return;
    }
    let chromium = chromium.unwrap();
    let backend = Backend::start().await;
    let upstream = Upstream::start(&backend, HEADER, None).await;
    let address = free_port("127.0.0.1");
    let d = api::start(&backend, &proxy_sink(address, &format!("{}/api", upstream.url()), ""));
    until_serving(address, &d).await;
    let proxy = format!("http://{address}");
    let page = format!(
        "<!doctype html><img src=\"{proxy}/from-img\"><script src=\"{proxy}/from-script\"></script>\
         <link rel=stylesheet href=\"{proxy}/from-style\"><script>fetch(\"{proxy}/from-fetch\", {{mode: \"no-cors\"}})\
         .finally(() => document.title = \"fetched\")</script>"
    );
    // Another site: 127.0.0.2 is loopback too, but not the proxy's host.
    let site = tokio::net::TcpListener::bind("127.0.0.2:0").await.unwrap();
    let site_url = format!("http://{}/", site.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = site.accept().await else { continue };
            let page = page.clone();
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    page.len()
                );
                let _ = stream.write_all((head + &page).as_bytes()).await;
            });
        }
    });
    let browse = |url: &str| {
        let out = Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--virtual-time-budget=3000",
            ])
            .arg(format!("--user-data-dir={}", d.dir.path().join("chromium").display()))
            .args(["--dump-dom", url])
            .stderr(Stdio::null())
            .output()
            .expect("chromium runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let dom = tokio::task::block_in_place(|| browse(&site_url));
    assert!(dom.contains("fetched"), "the page's fetch never finished: {dom}");
    tokio::task::block_in_place(|| browse(&format!("{proxy}/typed-by-a-person")));
    let paths: Vec<String> = upstream.received().into_iter().map(|r| r.path_and_query).collect();
    assert!(
        paths.iter().any(|p| p == "/api/typed-by-a-person"),
        "the browser never reached the proxy: {paths:?}"
    );
    assert!(!paths.iter().any(|p| p.contains("/from-")), "a page's request was forwarded: {paths:?}");
}

/// Issue "Close the holes", item 4: a client whose own upload breaks is not an upstream
/// failure, and does not turn health red.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_breaks_its_own_upload_is_not_an_upstream_failure() {
    let backend = Backend::start().await;
    let upstream = Upstream::start(&backend, HEADER, None).await;
    let address = free_port("127.0.0.1");
    let d = api::start(&backend, &proxy_sink(address, &format!("{}/api", upstream.url()), ""));
    until_serving(address, &d).await;
    // Malformed chunked framing, after a first good chunk.
    let mut client = std::net::TcpStream::connect(address).unwrap();
    write!(
        client,
        "POST /echo HTTP/1.1\r\nHost: {address}\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\nZZ\r\n"
    )
    .unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut answer = String::new();
    let _ = client.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("client_failed"), "{answer}");
    let counted = |metrics: &str| {
        metrics
            .lines()
            .any(|l| l.starts_with("mcp_token_sync_proxy_client_errors_total") && l.ends_with(" 1"))
    };
    api::get_until(&d.socket, "/metrics", "the client error counted", |r| counted(&r.body)).await;
    // An upload aborted halfway: the client closes with bytes still due. Whether the daemon
    // sees the broken body or the client gone first, it is not the upstream's failure.
    let mut client = std::net::TcpStream::connect(address).unwrap();
    write!(client, "POST /echo HTTP/1.1\r\nHost: {address}\r\nContent-Length: 100000\r\n\r\nonly a little")
        .unwrap();
    drop(client);
    let target = Target::Tcp(address);
    assert_eq!(http::send(&target, http::get(&target, "/after")).await.status, 200);
    let metrics = get(&d.socket, "/metrics").await.body;
    assert!(!metrics.contains("mcp_token_sync_proxy_upstream_errors_total{"), "{metrics}");
    let health = get(&d.socket, "/v1/health").await;
    assert_eq!(health.status, 200, "{}", health.body);
}

/// Issue "Close the holes", item 5: one refused user connecting 300 times makes one line now,
/// not 300.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_refused_connections_is_one_line_then_a_count() {
    if !support::skip::as_root(
        "a_flood_of_refused_connections_is_one_line_then_a_count",
        "act as another uid",
    ) {
        return;
    }
    let backend = Backend::start().await;
    let upstream = Upstream::start(&backend, HEADER, None).await;
    let address = free_port("127.0.0.1");
    let d = api::start(&backend, &proxy_sink(address, &upstream.url(), ""));
    until_serving(address, &d).await;
    let script = r#"
import socket, sys
for _ in range(300):
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    s.sendall(b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n")
    s.recv(1024)
    s.close()
"#;
    let status = Command::new("setpriv")
        .args([&format!("--reuid={NOBODY}"), &format!("--regid={NOBODY}"), "--clear-groups"])
        .args(["/usr/bin/python3", "-c", script, &address.port().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + PATIENCE;
    while metric(&d.socket, "mcp_token_sync_refused_peers_total").await < 300.0 {
        assert!(Instant::now() < deadline, "not every connection was refused");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let output = d.daemon.output();
    let lines = output.lines().filter(|l| l.contains("refused")).count();
    assert_eq!(lines, 1, "{output}");
}

/// Issue "Close the holes", item 6: a daemon whose stderr nobody reads keeps serving the proxy
/// and the socket API; the lines it could not write are counted, and said once stderr drains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stderr_nobody_reads_stalls_nothing() {
    let backend = Backend::start().await;
    let upstream = Upstream::start(&backend, HEADER, None).await;
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("api.sock");
    let address = free_port("127.0.0.1");
    let config = dir.path().join("config.toml");
    let sinks = format!("[[sink]]\ntype = \"socket\"\npath = \"{}\"\n", socket.display())
        + &proxy_sink(address, &upstream.url(), "");
    std::fs::write(&config, TestConfig::new(&backend).sinks(&sinks).text()).unwrap();
    // stderr is a pipe that nobody reads until the end: 64 KiB fill it.
    let mut daemon = support::binary::Killed(
        Command::new(support::binary::daemon_binary())
            .args(["run", "--config", config.to_str().unwrap(), "--log-level", "trace"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let target = Target::Tcp(address);
    wait_for_async("the socket", PATIENCE, || socket.exists().then_some(())).await;
    api::get_until(&socket, "/v1/token", "a token", |r| r.status == 200).await;
    wait_for_async("the proxy", PATIENCE, || std::net::TcpStream::connect(address).ok().map(drop)).await;
    // Until lines are dropped: then the pipe was full and the queue too, and every request
    // below was answered all the same.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut served = 0;
    loop {
        let proxied = tokio::time::timeout(PATIENCE, http::send(&target, http::get(&target, "/ping"))).await;
        assert!(proxied.is_ok(), "the proxy stalled after {served} requests");
        let status = tokio::time::timeout(PATIENCE, get(&socket, "/v1/status")).await;
        assert!(status.is_ok(), "the socket API stalled after {served} requests");
        assert_eq!(proxied.unwrap().status, 200);
        served += 1;
        if served % 500 == 0 && metric(&socket, "mcp_token_sync_log_lines_dropped_total").await > 0.0 {
            break;
        }
        assert!(Instant::now() < deadline, "no log line was dropped after {served} requests");
    }
    // Now stderr drains, and says what it lost.
    let mut stderr = daemon.0.stderr.take().unwrap();
    let (found, text) = tokio::task::block_in_place(|| {
        let mut text = Vec::new();
        let mut buf = [0u8; 65536];
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            let n = stderr.read(&mut buf).unwrap_or(0);
            if n == 0 {
                break;
            }
            text.extend_from_slice(&buf[..n]);
            if String::from_utf8_lossy(&text).contains("log line(s) were dropped") {
                return (true, String::new());
            }
        }
        (false, String::from_utf8_lossy(&text).into_owned())
    });
    drop(daemon);
    assert!(found, "no line about the dropped lines in:\n{}", &text[text.len().saturating_sub(4000)..]);
}
