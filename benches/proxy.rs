//! The proxy sink against what an operator would use instead: nginx (one worker) as a reverse
//! proxy that adds the same header with `proxy_set_header`, with upstream keep-alive. The
//! upstream is nginx too (one worker, a fixed answer). All measured in one run by the same load
//! generator (`oha`, keep-alive clients):
//!
//! 1. throughput and latency: the upstream directly, nginx in front, our proxy in front; at
//!    16 clients five rounds with nginx and ours back to back, on an idle machine and with
//!    another process keeping one core busy (the tail is what an MCP host feels);
//! 2. server-sent events: from the upstream sending an event to the client reading it;
//! 3. a 401 storm: 1,000 requests at once just after the token rotated;
//! 4. the daemon's memory with its proxies idle;
//! 5. instructions per request, ours and nginx's, counted by callgrind: what requests per second
//!    on a shared two-core host only estimates.
//!
//!     scripts/bench proxy                    # BENCH_SECONDS=5 by default
//!
//! Only loopback; every phase is bounded in count or time.

#[path = "../tests/support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use support::http::{self, Target};
use support::load::{Measured, To, oha, quantiles};
use support::nginx::{Nginx, Ready};
use support::upstream::Upstream;
use support::{Backend, api, free_port};

const HEADER: &str = "X-Google-MCP-Token";
/// What the upstream answers: the size of a small MCP answer.
const ANSWER: &str = r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"list_calendars"}]}}"#;
/// Rounds of the 16-client comparison, on an idle machine and again with one core kept busy.
const ROUNDS: usize = 5;
/// A simulated round trip to the token backend for the storm.
const FETCH_TIME: Duration = Duration::from_millis(20);

fn main() {
    let seconds: u64 = std::env::var("BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let backend = Backend::start().await;
        throughput(&backend, Duration::from_secs(seconds)).await;
        events(&backend).await;
        storm().await;
        instructions(&backend).await;
    });
}

/// nginx as an operator would put it in front of `upstream`: keep-alive to it, the token header
/// set, listening on `listen`.
fn nginx_in_front(upstream: SocketAddr, listen: SocketAddr, token: &str) -> String {
    format!(
        "upstream backend {{ server {upstream}; keepalive 32; }}\n\
         server {{\n listen {listen};\n location / {{\n  proxy_pass http://backend;\n\
           proxy_http_version 1.1;\n  proxy_set_header Connection \"\";\n\
           proxy_set_header {HEADER} \"{token}\";\n }}\n}}"
    )
}

fn proxy_sink(listen: SocketAddr, upstream: &str) -> String {
    format!(
        "[[sink]]\ntype = \"proxy\"\nlisten = \"{listen}\"\nupstream = \"{upstream}\"\nheader = \"{HEADER}\"\n"
    )
}

/// Sections 1 and 4.
async fn throughput(backend: &Backend, duration: Duration) {
    let (upstream, nginx_proxy, ours) =
        (free_port("127.0.0.1"), free_port("127.0.0.1"), free_port("127.0.0.1"));
    let token = backend.token();
    let _upstream = Nginx::start(
        &format!("server {{\n listen {upstream};\n location / {{ return 200 '{ANSWER}'; }}\n}}"),
        &[Ready::Tcp(upstream)],
    );
    let nginx = Nginx::start(&nginx_in_front(upstream, nginx_proxy, &token), &[Ready::Tcp(nginx_proxy)]);
    let daemon = api::start_quiet(backend, &proxy_sink(ours, &format!("http://{upstream}")));
    api::get_until(&daemon.socket, "/v1/token?format=raw", "a token", |r| r.body == token).await;
    let rss_started = support::procfs::rss_kib(daemon.daemon.pid());

    let url = |address: SocketAddr| format!("http://{address}/mcp");
    let servers = [
        ("upstream, directly", upstream),
        ("nginx in front", nginx_proxy),
        ("mcp-token-sync in front", ours),
    ];
    // Unrecorded warm-up, so nothing is measured cold.
    for (_, address) in servers {
        blocking(|| oha(To::Url(&url(address)), 16, Duration::from_secs(1)));
    }
    println!("## 1. Throughput and latency ({}s per run, one worker each for nginx)\n", duration.as_secs());
    println!("| path | clients | requests/s | p50 µs | p99 µs |\n|---|---:|---:|---:|---:|");
    let run = |name: &str, address: SocketAddr, clients: usize| {
        let m = blocking(|| oha(To::Url(&url(address)), clients, duration));
        assert_eq!(m.errors, 0, "{name}: errors under load");
        print_row(name, clients, &m);
        m
    };
    let [direct, nginx_one, ours_one] = servers.map(|(name, address)| run(name, address, 1));
    // The host's noise moves figures from run to run: five rounds at 16 clients, each pair run
    // back to back, idle and then with one core taken by a busy loop, as on a host that does
    // other work.
    for loaded in [false, true] {
        let _busy = loaded.then(BusyCore::start);
        let load = if loaded { "one core busy" } else { "idle" };
        println!("\n16 clients, {load}:\n");
        println!("| round | nginx req/s | ours req/s | ours / nginx | nginx p99 µs | ours p99 µs |");
        println!("|---:|---:|---:|---:|---:|---:|");
        let mut ratios = Vec::new();
        for round in 1..=ROUNDS {
            let theirs = blocking(|| oha(To::Url(&url(nginx_proxy)), 16, duration));
            let mine = blocking(|| oha(To::Url(&url(ours)), 16, duration));
            assert_eq!((theirs.errors, mine.errors), (0, 0), "errors under load");
            ratios.push(mine.rps / theirs.rps);
            println!(
                "| {round} | {:.0} | {:.0} | {:.2} | {:.0} | {:.0} |",
                theirs.rps,
                mine.rps,
                mine.rps / theirs.rps,
                theirs.p99_us,
                mine.p99_us
            );
        }
        ratios.sort_by(f64::total_cmp);
        println!(
            "\n- {load}: ours / nginx's throughput, lowest {:.2}, median {:.2}",
            ratios[0],
            ratios[ROUNDS / 2]
        );
    }
    println!(
        "- added latency over direct at p50, one client: ours {:.0} µs, nginx {:.0} µs",
        ours_one.p50_us - direct.p50_us,
        nginx_one.p50_us - direct.p50_us
    );

    // Idle: a few seconds without connections, as a daemon between clients' bursts spends most
    // of its life.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_idle = support::procfs::rss_kib(daemon.daemon.pid());
    println!("\n## 4. Memory\n");
    println!("| daemon with a proxy, a socket and a file sink | RSS |\n|---|---:|");
    println!("| started, first token written | {:.1} MiB |", rss_started as f64 / 1024.0);
    println!("| idle (3 s) after the runs above | {:.1} MiB |\n", rss_idle as f64 / 1024.0);
    drop(nginx);
}

/// Section 2. Events sent one at a time; each is timed from the upstream's send to the client's
/// read, through the proxy and directly.
async fn events(backend: &Backend) {
    const EVENTS: usize = 500;
    println!("## 2. Server-sent events ({EVENTS} events, one at a time)\n");
    println!("| path | p50 µs | p99 µs |\n|---|---:|---:|");
    for through_proxy in [false, true] {
        // An upstream of its own per path, so each counts only its own stream.
        let upstream = Upstream::start(backend, HEADER, None).await;
        let ours = free_port("127.0.0.1");
        let daemon = api::start_quiet(backend, &proxy_sink(ours, &upstream.url()));
        api::get_until(&daemon.socket, "/v1/token?format=raw", "a token", |r| r.status == 200).await;
        let (name, target) = if through_proxy {
            ("through mcp-token-sync", Target::Tcp(ours))
        } else {
            ("upstream, directly", Target::Tcp(upstream.addr()))
        };
        let request = http::request(&target, "GET", "/sse")
            .header("accept", "text/event-stream")
            .header(HEADER, backend.token())
            .body(Full::<Bytes>::default())
            .unwrap();
        let mut body = http::open(&target, request).await.into_body();
        let mut delays = Vec::with_capacity(EVENTS);
        for i in 0..EVENTS {
            let sent = loop {
                let at = Instant::now();
                if upstream.send_event(&format!("{i}")) > 0 {
                    break at;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            };
            body.frame().await.unwrap().unwrap();
            delays.push(sent.elapsed());
        }
        let (p50, p99) = quantiles(&mut delays);
        println!("| {name} | {p50:.0} | {p99:.0} |");
    }
    println!();
}

/// Section 3. The token rotates at the backend; 1,000 requests with the old one reach the
/// upstream at once, get 401, and wait for one refresh.
async fn storm() {
    const REQUESTS: usize = 1000;
    let backend = Backend::start().await;
    let upstream = Upstream::start(&backend, HEADER, None).await;
    let ours = free_port("127.0.0.1");
    let daemon = api::start_quiet(&backend, &proxy_sink(ours, &upstream.url()));
    api::get_until(&daemon.socket, "/v1/token?format=raw", "a token", |r| r.status == 200).await;
    let target = Target::Tcp(ours);
    // The load's own floor: the same requests at once, with a token the upstream takes.
    let floor = at_once(&target, REQUESTS).await;
    backend.rotate();
    backend.set_reply(support::Reply::Slow(FETCH_TIME));
    let before = backend.fetches();
    let elapsed = at_once(&target, REQUESTS).await;
    println!(
        "## 3. A 401 storm: {REQUESTS} requests at once after a rotation (a fetch takes {} ms)\n",
        FETCH_TIME.as_millis()
    );
    println!("| fetches | last answer after | same requests, no rotation | target |\n|---:|---:|---:|---|");
    println!(
        "| {} | {:.1} ms | {:.1} ms | 1 fetch; within the fetch time + 100 ms |\n",
        backend.fetches() - before,
        elapsed.as_secs_f64() * 1e3,
        floor.as_secs_f64() * 1e3
    );
}

/// Section 5. nginx in front and ours in front, each run by callgrind, the same requests to the
/// same upstream nginx: the user-space instructions each spends per request.
async fn instructions(backend: &Backend) {
    const REQUESTS: usize = 20_000;
    let Some(callgrind) = support::callgrind::Callgrind::new() else { return };
    let (upstream, nginx_proxy, ours) =
        (free_port("127.0.0.1"), free_port("127.0.0.1"), free_port("127.0.0.1"));
    let _upstream = Nginx::start(
        &format!("server {{\n listen {upstream};\n location / {{ return 200 '{ANSWER}'; }}\n}}"),
        &[Ready::Tcp(upstream)],
    );
    let wrapper = callgrind.wrapper("nginx");
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    let nginx = Nginx::start_under(&wrapper, &nginx_in_front(upstream, nginx_proxy, &backend.token()), &[]);
    let config = tempfile::NamedTempFile::new().unwrap();
    let text =
        support::TestConfig::new(backend).sinks(&proxy_sink(ours, &format!("http://{upstream}"))).text();
    std::fs::write(config.path(), text).unwrap();
    let wrapper = callgrind.wrapper("ours");
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    let daemon = support::DaemonProcess::spawn_under(
        &wrapper,
        &["run", "--config", config.path().to_str().unwrap()],
        &[("MCP_TOKEN_SYNC_LOG", "warn")],
    );
    // Both start slowly under valgrind.
    for address in [nginx_proxy, ours] {
        let serves = http::serves(&Target::Tcp(address), "/mcp", Duration::from_secs(60)).await;
        assert!(serves, "{address} never served under callgrind:\n{}", daemon.output());
    }
    let url = |address: SocketAddr| format!("http://{address}/mcp");
    let theirs = blocking(|| callgrind.per_request("nginx", nginx.pid(), &url(nginx_proxy), REQUESTS));
    let mine = blocking(|| callgrind.per_request("ours", daemon.pid(), &url(ours), REQUESTS));
    println!("## 5. Instructions per request (callgrind, {REQUESTS} requests, 16 clients)\n");
    println!("| proxy | instructions per request |\n|---|---:|");
    println!("| nginx in front | {theirs:.0} |\n| mcp-token-sync in front | {mine:.0} |");
    println!("\n- ours / nginx's: {:.2}\n", mine / theirs);
}

/// `n` clients each open a connection and send one request at the same moment; the time until
/// the last has its answer, which must be a 200.
async fn at_once(target: &Target, n: usize) -> Duration {
    let started = Instant::now();
    let requests: Vec<_> = (0..n)
        .map(|_| {
            let target = target.clone();
            tokio::spawn(async move { http::send(&target, http::get(&target, "/storm")).await.status })
        })
        .collect();
    for request in requests {
        assert_eq!(request.await.unwrap(), 200);
    }
    started.elapsed()
}

fn print_row(name: &str, clients: usize, m: &Measured) {
    println!("| {name} | {clients} | {:.0} | {:.0} | {:.0} |", m.rps, m.p50_us, m.p99_us);
}

/// Another process spinning on one core for as long as this lives: a host with other work.
struct BusyCore(std::process::Child);

impl BusyCore {
    fn start() -> BusyCore {
        let child = std::process::Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .spawn()
            .expect("sh runs a busy loop");
        BusyCore(child)
    }
}

impl Drop for BusyCore {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the load generator off the runtime, which keeps serving the fake backend meanwhile.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}
