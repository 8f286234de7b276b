//! What the daemon costs and saves, measured on the release binary (issue 6):
//!
//! 1. the seed's pattern (fetch the token from the backend on every use) vs a socket read;
//! 2. a 401 storm: N reporters of one stale version → upstream fetches and time to the last answer;
//! 3. idle cost: context switches over a quiet minute, RSS idle and after 100,000 reads, binary size;
//! 4. start-up: process start to READY=1 and to the first token in a file;
//! 5. a flood: 10,000 connections held open (silent, half-sent heads, watchers and pipeliners
//!    that never read) and 1,000 reporters, while clients read the token: their latency, and
//!    the daemon's memory and open files.
//!
//!     cargo bench --bench operations                 # BENCH_IDLE_SECONDS=60 by default
//!
//! Only loopback and Unix sockets; every phase is bounded in count or time.

#[path = "../tests/support/mod.rs"]
mod support;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use support::api::{self, WithSocket};
use support::load::quantiles;
use support::procfs::{context_switches, cpu_time, open_files, rss_kib};
use support::{Backend, DaemonProcess, Reply, TestConfig, file_sink};
use tokio::net::{TcpStream, UnixStream};

/// A simulated upstream round trip for the storm: loopback alone would hide the coalescing.
const UPSTREAM_DELAY: Duration = Duration::from_millis(20);

fn main() {
    // The flood holds 10,000 sockets: raise the soft open-file limit to the hard one.
    mcp_token_sync::process::raise_fd_limit().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        seed_pattern_vs_socket().await;
        storm().await;
        idle_cost().await;
        startup().await;
        flood().await;
    });
}

/// The release daemon with a file sink and a socket, logging only warnings, serving its first
/// token; without jitter, so the next fetch after the first is 15 min (max_interval) away.
async fn daemon(backend: &Backend) -> WithSocket {
    let d = api::start_quiet(backend, "");
    let token = backend.token();
    api::get_until(&d.socket, "/v1/token?format=raw", "the first token", |r| r.body == token).await;
    d
}

/// A backend whose answers take `delay`, as a real one across a network would.
async fn backend(delay: Duration) -> Backend {
    let backend = Backend::start().await;
    if !delay.is_zero() {
        backend.set_reply(Reply::Slow(delay));
    }
    backend
}

async fn send<B: hyper::body::Body + Send + 'static>(
    sender: &mut hyper::client::conn::http1::SendRequest<B>,
    request: Request<B>,
) -> Bytes
where
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    sender.ready().await.unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    response.into_body().collect().await.unwrap().to_bytes()
}

async fn unix_sender(socket: &Path) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let (sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(UnixStream::connect(socket).await.unwrap()))
            .await
            .unwrap();
    tokio::spawn(connection);
    sender
}

fn get(path: &str) -> Request<Full<Bytes>> {
    Request::get(path).header("host", "localhost").body(Full::new(Bytes::new())).unwrap()
}

/// `POST /v1/report-401` for the daemon's first token.
fn report_version_1() -> Request<Full<Bytes>> {
    Request::post("/v1/report-401")
        .header("host", "localhost")
        .body(Full::new(Bytes::from_static(b"{\"version\": 1}")))
        .unwrap()
}

/// Section 1. Per use, the seed's `requests.get(backend)` (a new TCP connection and a JSON answer
/// to parse) against reading the daemon's socket (a new connection, and a kept-alive one).
async fn seed_pattern_vs_socket() {
    const READS: usize = 5000;
    let backend = backend(Duration::ZERO).await;
    let d = daemon(&backend).await;

    let mut seed = Vec::with_capacity(READS);
    for _ in 0..READS {
        let started = Instant::now();
        let stream = TcpStream::connect(backend.addr()).await.unwrap();
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(connection);
        let request = Request::get("/api/calendars/google-mcp-tokens/current-token/")
            .header("host", "backend")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let body = send(&mut sender, request).await;
        let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(answer["token"].is_string());
        seed.push(started.elapsed());
    }
    let mut fresh_connection = Vec::with_capacity(READS);
    for _ in 0..READS {
        let started = Instant::now();
        let mut sender = unix_sender(&d.socket).await;
        send(&mut sender, get("/v1/token?format=raw")).await;
        fresh_connection.push(started.elapsed());
    }
    let mut kept_alive = Vec::with_capacity(READS);
    let mut sender = unix_sender(&d.socket).await;
    for _ in 0..READS {
        let started = Instant::now();
        send(&mut sender, get("/v1/token?format=raw")).await;
        kept_alive.push(started.elapsed());
    }
    println!("## 1. The seed's pattern vs the daemon ({READS} reads each, one client)\n");
    println!("| how a client gets the token | p50 µs | p99 µs |\n|---|---:|---:|");
    for (name, mut samples) in [
        ("seed: GET the backend over TCP (loopback!), parse JSON", seed),
        ("daemon socket, new connection per read", fresh_connection),
        ("daemon socket, kept-alive connection", kept_alive),
    ] {
        let (p50, p99) = quantiles(&mut samples);
        println!("| {name} | {p50:.0} | {p99:.0} |");
    }
    println!();
}

/// Section 2. N clients got a 401 with version 1 at once; each reports it and waits for the new
/// token.
async fn storm() {
    println!("## 2. 401 storm (upstream answers after {} ms)\n", UPSTREAM_DELAY.as_millis());
    println!(
        "| reporters | upstream fetches | last reporter answered after | daemon CPU | same clients, token reads only | target |\n\
         |---:|---:|---:|---:|---:|---|"
    );
    for reporters in [10, 100, 1000] {
        let backend = backend(UPSTREAM_DELAY).await;
        let d = daemon(&backend).await;
        // The load's own floor: as many clients connecting at once for a plain read.
        let floor = at_once(reporters, &d.socket, || get("/v1/token?format=raw"), |_| {}).await;
        backend.rotate();
        let before = backend.fetches();
        let expected = backend.token();
        let cpu = cpu_time(d.daemon.pid());
        let elapsed = at_once(reporters, &d.socket, report_version_1, move |body| {
            let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(answer["token"], expected);
        })
        .await;
        let cpu = cpu_time(d.daemon.pid()) - cpu;
        let fetches = backend.fetches() - before;
        println!(
            "| {reporters} | {fetches} | {:.1} ms | {:.1} ms | {:.1} ms | 1 fetch; ≤ {} ms |",
            elapsed.as_secs_f64() * 1e3,
            cpu.as_secs_f64() * 1e3,
            floor.as_secs_f64() * 1e3,
            UPSTREAM_DELAY.as_millis() + 50
        );
    }
    println!();
}

/// `n` clients each open a connection and send one request at the same moment; the time until
/// the last has its answer (checked by `check`).
async fn at_once(
    n: usize,
    socket: &Path,
    request: impl Fn() -> Request<Full<Bytes>>,
    check: impl Fn(Bytes) + Clone + Send + Sync + 'static,
) -> Duration {
    let started = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (socket, request, check) = (socket.to_owned(), request(), check.clone());
            tokio::spawn(async move { check(send(&mut unix_sender(&socket).await, request).await) })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    started.elapsed()
}

/// Section 3. With a 1-hour token nothing should happen for minutes: count what the threads do
/// anyway.
async fn idle_cost() {
    let seconds: u64 = std::env::var("BENCH_IDLE_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    let backend = backend(Duration::ZERO).await;
    let d = daemon(&backend).await;
    // tokio's blocking threads (used by the file writes at start) exit after 10 s idle; start
    // counting once they have, so the window sees the daemon at rest.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let (before, rss_idle) = (context_switches(d.daemon.pid()), rss_kib(d.daemon.pid()));
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let after = context_switches(d.daemon.pid());
    let threads = after.len();
    let switches: u64 = after.iter().map(|(tid, n)| n - before.get(tid).copied().unwrap_or(0)).sum();

    const READS: usize = 100_000;
    let per_client = READS / 16;
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let socket = d.socket.clone();
            tokio::spawn(async move {
                let mut sender = unix_sender(&socket).await;
                for _ in 0..per_client {
                    send(&mut sender, get("/v1/token?format=raw")).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let rss_after = rss_kib(d.daemon.pid());
    let binary = std::fs::metadata(support::binary::daemon_binary()).unwrap().len();
    println!("## 3. Idle cost\n");
    println!("| measure | value | target |\n|---|---:|---|");
    println!(
        "| context switches, all {threads} threads, {seconds} s idle | {switches} ({:.1}/min) | ≤ 2/min |",
        switches as f64 * 60.0 / seconds as f64
    );
    println!("| RSS at idle | {:.1} MiB | ≤ 8 MiB |", rss_idle as f64 / 1024.0);
    println!("| RSS after {READS} socket reads | {:.1} MiB | ≤ 8 MiB |", rss_after as f64 / 1024.0);
    println!("| release binary | {:.1} MiB | — |", binary as f64 / (1024.0 * 1024.0));
    println!();
}

/// Section 4. From `exec` to READY=1 (what systemd waits for), and to the first token in a file.
async fn startup() {
    const RUNS: usize = 20;
    let backend = backend(Duration::ZERO).await;
    let mut to_ready = Vec::new();
    let mut to_token = Vec::new();
    for _ in 0..RUNS {
        // A state directory of its own each time: each start fetches, none restores.
        let dir = tempfile::tempdir().unwrap();
        let (notify_path, file, config) =
            (dir.path().join("notify"), dir.path().join("token"), dir.path().join("config.toml"));
        let text = TestConfig::new(&backend)
            .set("daemon", "state_dir", &format!("{:?}", dir.path().join("state").display().to_string()))
            .sinks(&file_sink(&file, "raw"))
            .text();
        std::fs::write(&config, text).unwrap();
        let notify = UnixDatagram::bind(&notify_path).unwrap();
        notify.set_nonblocking(true).unwrap();
        let started = Instant::now();
        let _daemon = DaemonProcess::spawn_with_env(
            &["run", "--config", config.to_str().unwrap()],
            &[("NOTIFY_SOCKET", notify_path.to_str().unwrap()), ("MCP_TOKEN_SYNC_LOG", "warn")],
        );
        let (mut ready, mut token) = (None, None);
        let mut buf = [0u8; 512];
        while ready.is_none() || token.is_none() {
            assert!(started.elapsed() < Duration::from_secs(10), "no start-up");
            if ready.is_none() && notify.recv(&mut buf).is_ok_and(|n| buf[..n].starts_with(b"READY=1")) {
                ready = Some(started.elapsed());
            }
            if token.is_none() && std::fs::read(&file).is_ok_and(|t| !t.is_empty()) {
                token = Some(started.elapsed());
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        to_ready.push(ready.unwrap());
        to_token.push(token.unwrap());
    }
    println!("## 4. Start-up ({RUNS} starts, backend on loopback)\n");
    println!("| from process start to | p50 ms | p99 ms |\n|---|---:|---:|");
    for (name, mut samples) in [("READY=1", to_ready), ("first token in the file sink", to_token)] {
        let (p50, p99) = quantiles(&mut samples);
        println!("| {name} | {:.1} | {:.1} |", p50 / 1e3, p99 / 1e3);
    }
    println!();
}

/// Section 5. Peers that hold connections and never finish (or never read), a 401 flood, and
/// clients that just want the token.
async fn flood() {
    use tokio::io::AsyncWriteExt;
    const HELD: usize = 10_000;
    // Within the default 1,024 slots beside the slow peers that keep theirs: with more clients
    // at once than slots, the ones that connected and have not spoken yet are fair game too.
    const REPORTERS: usize = 500;
    const READS: usize = 2000;
    let backend = backend(UPSTREAM_DELAY).await;
    let d = daemon(&backend).await;
    let rss_before = rss_kib(d.daemon.pid());

    let intake = Instant::now();
    let mut held = Vec::with_capacity(HELD);
    for i in 0..HELD {
        let mut stream = loop {
            match UnixStream::connect(d.socket.clone()).await {
                Ok(stream) => break stream,
                // The accept backlog is full: the daemon is still taking connections in.
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(intake.elapsed() < Duration::from_secs(60), "the daemon stopped accepting");
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err(e) => panic!("connect: {e}"),
            }
        };
        let sent: Vec<u8> = match i % 10 {
            0 => b"GET /v1/token HTTP/1.1\r\nHost: localhost\r\nX-Slow: ".to_vec(),
            1 => b"GET /v1/watch HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
            2 => b"GET /v1/token?format=raw HTTP/1.1\r\nHost: localhost\r\n\r\n".repeat(2000),
            _ => Vec::new(),
        };
        stream.write_all(&sent).await.unwrap();
        held.push(stream);
    }
    // Taken in once the daemon has closed all it has no room for.
    loop {
        let metrics = send(&mut unix_sender(&d.socket).await, get("/metrics")).await;
        let closed = String::from_utf8_lossy(&metrics)
            .lines()
            .find_map(|l| l.strip_prefix("mcp_token_sync_connections_closed_for_room_total ")?.parse().ok())
            .unwrap_or(0);
        if closed >= HELD - 1024 {
            break;
        }
        assert!(intake.elapsed() < Duration::from_secs(60), "the daemon stopped taking connections in");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let intake = intake.elapsed();

    backend.rotate();
    let reporters: Vec<_> = (0..REPORTERS)
        .map(|_| {
            let socket = d.socket.clone();
            tokio::spawn(async move {
                let mut sender = unix_sender(&socket).await;
                send(&mut sender, report_version_1()).await;
            })
        })
        .collect();
    let mut fresh = Vec::with_capacity(READS);
    let mut kept = Vec::with_capacity(READS);
    let mut sender = unix_sender(&d.socket).await;
    let mut reconnects = 0;
    for _ in 0..READS {
        let asked = Instant::now();
        send(&mut unix_sender(&d.socket).await, get("/v1/token?format=raw")).await;
        fresh.push(asked.elapsed());
        let asked = Instant::now();
        // As HTTP clients do when the server has closed an idle kept-alive connection: reconnect
        // and ask again, within the measured time.
        if sender.ready().await.is_err() {
            reconnects += 1;
            sender = unix_sender(&d.socket).await;
        }
        send(&mut sender, get("/v1/token?format=raw")).await;
        kept.push(asked.elapsed());
    }
    for reporter in reporters {
        reporter.await.unwrap();
    }
    let (rss_after, files) = (rss_kib(d.daemon.pid()), open_files(d.daemon.pid()));
    drop(held);

    println!("## 5. Flood: {HELD} connections held, {REPORTERS} reporters\n");
    println!(
        "{HELD} connections opened and taken in by the daemon in {:.2} s; then {READS} reads of each \
         kind, alongside the reporters.\n",
        intake.as_secs_f64()
    );
    println!("| served client | p50 µs | p99 µs | target |\n|---|---:|---:|---|");
    for (name, mut samples) in [("new connection per read", fresh), ("kept-alive connection", kept)] {
        let (p50, p99) = quantiles(&mut samples);
        println!("| {name} | {p50:.0} | {p99:.0} | p99 < 10 ms |");
    }
    println!("\n| daemon | before | during |\n|---|---:|---:|");
    println!("| RSS | {:.1} MiB | {:.1} MiB |", rss_before as f64 / 1024.0, rss_after as f64 / 1024.0);
    println!("| open files | — | {files} |");
    println!("\nThe kept-alive client found its connection closed for room {reconnects} times.");
    println!();
}
