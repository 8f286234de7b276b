//! The stdio bridge against `mcp-remote` (npm, run by Node as hosts run it), in one run, both
//! relaying to the same Streamable HTTP server (`support::fake_mcp`, a Rust server whose own
//! time is small and steady, so what is measured is the bridges):
//!
//! 1. spawn → the initialize answer on stdout, the host's first line written at spawn; beside
//!    it, the server's own time for that initialize (a fresh connection, a direct client);
//! 2. a tool call's latency through each bridge (p50/p99), against the same call sent directly
//!    over one keep-alive connection: the bridge's added cost;
//! 3. resident memory after 100 tool calls.
//!
//!     scripts/bench bridge                   # BENCH_CALLS=1000 by default
//!
//! Only loopback; every phase is bounded in count.

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use support::fake_mcp::FakeMcp;
use support::load::quantiles;
use support::procfs;

/// Spawns per bridge for the start time.
const STARTS: usize = 20;
/// Tool calls before memory is read.
const WARM_CALLS: usize = 100;

fn main() {
    let calls: usize = std::env::var("BENCH_CALLS").ok().and_then(|s| s.parse().ok()).unwrap_or(1000);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let fake = runtime.block_on(FakeMcp::start());
    let url = fake.url();
    let ours = support::binary::daemon_binary();
    let mcp_remote = which("mcp-remote").expect("mcp-remote on PATH (scripts/bench installs it from npm)");
    let bridges: [(&str, Vec<String>); 2] = [
        ("mcp-token-sync bridge", vec![ours, "bridge".into(), url.clone()]),
        // As Claude Desktop runs it once npx has it: Node on mcp-remote's script. (npx itself
        // adds its own start on top of this.)
        ("mcp-remote", vec![mcp_remote, url.clone()]),
    ];

    println!("# The stdio bridge against mcp-remote, one run, the same server\n");
    let server_init = runtime.block_on(direct_initializes(&fake, STARTS));
    println!("server's own initialize (direct, new connection): p50 {:.2} ms\n", server_init.0 / 1e3);

    println!(
        "| bridge | spawn → initialize answer p50 / max (ms) | tool call p50 / p99 (µs) | RSS after {WARM_CALLS} calls |"
    );
    println!("|---|---|---|---|");
    let direct = runtime.block_on(direct_calls(&fake, calls));
    for (name, argv) in &bridges {
        let mut starts: Vec<Duration> = (0..STARTS).map(|_| spawn_to_initialized(argv).1).collect();
        let (start_p50, _) = quantiles(&mut starts);
        let start_max = starts.iter().max().unwrap().as_secs_f64() * 1e3;
        let connected = fake.connections();
        let (mut bridge, _) = spawn_to_initialized(argv);
        bridge.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        for n in 0..WARM_CALLS {
            bridge.call(n);
        }
        let rss = procfs::rss_kib(bridge.child.id());
        let mut latencies: Vec<Duration> = (0..calls).map(|n| bridge.call(WARM_CALLS + n)).collect();
        let (p50, p99) = quantiles(&mut latencies);
        eprintln!("{name}: {} connections for {} calls", fake.connections() - connected, WARM_CALLS + calls);
        println!(
            "| {name} | {:.1} / {start_max:.1} | {p50:.0} / {p99:.0} | {:.1} MiB |",
            start_p50 / 1e3,
            rss as f64 / 1024.0
        );
    }
    println!("| (direct HTTP client, one keep-alive connection) | | {:.0} / {:.0} | |", direct.0, direct.1);
}

/// A bridge child with its stdin and stdout.
struct Running {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Running {
    fn send(&mut self, line: &str) {
        self.stdin.write_all(line.as_bytes()).unwrap();
        self.stdin.write_all(b"\n").unwrap();
        self.stdin.flush().unwrap();
    }

    /// The next line that is not a notification.
    fn answer(&mut self) -> String {
        loop {
            let mut line = String::new();
            assert!(self.stdout.read_line(&mut line).unwrap() > 0, "the bridge closed stdout");
            if !line.contains("\"method\"") {
                return line;
            }
        }
    }

    /// One tools/call, from writing it to reading its answer.
    fn call(&mut self, n: usize) -> Duration {
        let started = Instant::now();
        self.send(&call(n + 10));
        let answer = self.answer();
        let took = started.elapsed();
        assert!(answer.contains("two\\nlines"), "{answer}");
        took
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn call(id: usize) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo","arguments":{{}}}}}}"#
    )
}

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}"#;

/// Spawns `argv`, writes the initialize request at once, and times the answer's arrival.
fn spawn_to_initialized(argv: &[String]) -> (Running, Duration) {
    let started = Instant::now();
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .env("HOME", std::env::temp_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut running = Running {
        stdin: child.stdin.take().unwrap(),
        stdout: BufReader::new(child.stdout.take().unwrap()),
        child,
    };
    running.send(INITIALIZE);
    let answer = running.answer();
    let took = started.elapsed();
    assert!(answer.contains("protocolVersion"), "{answer}");
    (running, took)
}

/// The server's own time for an initialize on a fresh connection: p50 and p99 in µs.
async fn direct_initializes(fake: &FakeMcp, count: usize) -> (f64, f64) {
    let mut times = Vec::new();
    for _ in 0..count {
        let started = Instant::now();
        let mut sender = connect(fake).await;
        let (answer, _) = post(&mut sender, INITIALIZE.to_owned(), None).await;
        times.push(started.elapsed());
        assert!(answer.contains("protocolVersion"));
    }
    quantiles(&mut times)
}

/// Tool calls sent directly, one after another on one keep-alive connection: p50 and p99 in µs.
async fn direct_calls(fake: &FakeMcp, count: usize) -> (f64, f64) {
    let mut sender = connect(fake).await;
    let (answer, session) = post(&mut sender, INITIALIZE.to_owned(), None).await;
    assert!(answer.contains("protocolVersion"));
    post(&mut sender, r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.into(), session.clone())
        .await;
    let mut times = Vec::new();
    for n in 0..WARM_CALLS + count {
        let started = Instant::now();
        let (answer, _) = post(&mut sender, call(n + 10), session.clone()).await;
        if n >= WARM_CALLS {
            times.push(started.elapsed());
        }
        assert!(answer.contains("two\\nlines"), "{answer}");
    }
    quantiles(&mut times)
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(fake: &FakeMcp) -> Sender {
    let stream = tokio::net::TcpStream::connect(fake.addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
    tokio::spawn(connection);
    sender
}

/// The answer's body, and its `Mcp-Session-Id`.
async fn post(sender: &mut Sender, body: String, session: Option<String>) -> (String, Option<String>) {
    let mut request = hyper::Request::post("/mcp")
        .header("host", "127.0.0.1")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    if let Some(session) = session {
        request = request.header("mcp-session-id", session).header("mcp-protocol-version", "2025-06-18");
    }
    sender.ready().await.unwrap();
    let response = sender.send_request(request.body(Full::new(Bytes::from(body))).unwrap()).await.unwrap();
    let session = response.headers().get("mcp-session-id").map(|v| v.to_str().unwrap().to_owned());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (String::from_utf8_lossy(&bytes).into_owned(), session)
}

fn which(program: &str) -> Option<String> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| std::path::Path::new(dir).join(program))
        .find(|path| path.is_file())
        .map(|path| path.display().to_string())
}
