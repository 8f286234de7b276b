//! Token reads over the socket: the daemon's `GET /v1/token?format=raw` beside the floor, a
//! minimal hyper server on a Unix socket that answers a fixed body. Both run as processes of
//! their own; the same load generator (keep-alive connections, one request at a time each)
//! measures them in the same run.
//!
//!     cargo bench --bench socket_read              # 1, 16 and 64 clients, 3 s each
//!     BENCH_SECONDS=10 cargo bench --bench socket_read
//!
//! Only loopback and Unix sockets; every phase ends after its fixed duration.

use std::convert::Infallible;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, UnixListener, UnixStream};

const DAEMON: &str = env!("CARGO_BIN_EXE_mcp-token-sync");
const TOKEN: &str = "CN8F-U3ycBSaEQKtS2sDAhJNAhTHFcNP4Qi-ljp5wJC-qZKgr3NKVPc";
const CLIENTS: [usize; 3] = [1, 16, 64];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--floor") {
        return floor_server(Path::new(&args[i + 1]));
    }
    let seconds: u64 = std::env::var("BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(run(Duration::from_secs(seconds)));
}

async fn run(duration: Duration) {
    let dir = tempfile::tempdir().unwrap();
    let backend = start_backend().await;

    let daemon_socket = dir.path().join("api.sock");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[source]\nurl = \"http://{backend}/t\"\n\n[[sink]]\ntype = \"socket\"\npath = \"{}\"\n",
            daemon_socket.display()
        ),
    )
    .unwrap();
    let daemon = Guard(
        Command::new(DAEMON)
            .args(["run", "--config", config.to_str().unwrap()])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let floor_socket = dir.path().join("floor.sock");
    let floor = Guard(
        Command::new(std::env::current_exe().unwrap())
            .args(["--floor", floor_socket.to_str().unwrap()])
            .spawn()
            .unwrap(),
    );
    wait_until_serving(&daemon_socket, "/v1/token?format=raw").await;
    wait_until_serving(&floor_socket, "/").await;
    // Unrecorded warm-up, so neither server is measured cold.
    load(&floor_socket, "/", 16, Duration::from_secs(1)).await;
    load(&daemon_socket, "/v1/token?format=raw", 16, Duration::from_secs(1)).await;

    println!("| server | clients | requests/s | p50 µs | p99 µs |");
    println!("|---|---:|---:|---:|---:|");
    let mut results = Vec::new();
    for clients in CLIENTS {
        let floor_result = load(&floor_socket, "/", clients, duration).await;
        let daemon_result = load(&daemon_socket, "/v1/token?format=raw", clients, duration).await;
        for (name, r) in [("floor (fixed reply)", &floor_result), ("mcp-token-sync", &daemon_result)] {
            println!("| {name} | {clients} | {:.0} | {:.0} | {:.0} |", r.rps, r.p50_us, r.p99_us);
        }
        results.push((clients, daemon_result.rps / floor_result.rps, daemon_result.p99_us));
    }
    println!();
    for (clients, ratio, p99) in results {
        println!("{clients} clients: daemon/floor throughput {ratio:.2}, daemon p99 {p99:.0} µs");
    }
    drop((daemon, floor));
}

struct Measured {
    rps: f64,
    p50_us: f64,
    p99_us: f64,
}

/// `clients` keep-alive connections, each sending one request at a time for `duration`.
async fn load(socket: &Path, path: &'static str, clients: usize, duration: Duration) -> Measured {
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let socket = socket.to_owned();
            tokio::spawn(async move {
                let mut sender = connect(&socket).await;
                let mut latencies = Vec::with_capacity(100_000);
                while started.elapsed() < duration {
                    let sent = Instant::now();
                    sender.ready().await.expect("the connection stays up");
                    let response = sender.send_request(get(path)).await.expect("an answer");
                    assert!(response.status().is_success());
                    response.into_body().collect().await.unwrap();
                    latencies.push(sent.elapsed().as_nanos() as u64);
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_unstable();
    let quantile = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)] as f64 / 1000.0;
    Measured { rps: all.len() as f64 / elapsed, p50_us: quantile(0.50), p99_us: quantile(0.99) }
}

fn get(path: &'static str) -> Request<Empty<Bytes>> {
    Request::get(path).header("host", "localhost").body(Empty::new()).unwrap()
}

async fn connect(socket: &Path) -> hyper::client::conn::http1::SendRequest<Empty<Bytes>> {
    let stream = UnixStream::connect(socket).await.unwrap();
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(connection);
    sender
}

async fn wait_until_serving(socket: &Path, path: &'static str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(stream) = UnixStream::connect(socket).await
            && let Ok((mut sender, connection)) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
        {
            tokio::spawn(connection);
            if sender.send_request(get(path)).await.is_ok_and(|r| r.status().is_success()) {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{} never served {path}", socket.display());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The floor: hyper over a Unix socket, answering every request with the token bytes.
fn floor_server(socket: &Path) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let listener = UnixListener::bind(socket).unwrap();
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let service = hyper::service::service_fn(|_req| async {
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(TOKEN.as_bytes()))))
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service),
            );
        }
    });
}

/// A backend on 127.0.0.1 with one long-lived token.
async fn start_backend() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let expires = mcp_token_sync::clock::rfc3339(SystemTime::now() + Duration::from_secs(24 * 3600));
    let body = Bytes::from(format!(r#"{{"token":"{TOKEN}","expires_at":"{expires}","valid":true}}"#));
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let body = body.clone();
            let service = hyper::service::service_fn(move |_req| {
                let body = body.clone();
                async move { Ok::<_, Infallible>(Response::new(Full::new(body))) }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    addr
}

/// Kills the child process when dropped, so the bench leaves nothing running.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
