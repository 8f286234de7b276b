//! Token reads over the socket against the fastest real server: the release daemon's
//! `GET /v1/token?format=raw` beside nginx (one worker) answering the same bytes from a fixed
//! `return 200` over a Unix socket. The same load generator (`oha`, keep-alive clients, one
//! request at a time each) measures both in the same run; each server runs as its own process.
//!
//!     scripts/bench socket_read              # 1, 16 and 64 clients, 5 s each
//!     BENCH_SECONDS=10 scripts/bench socket_read
//!
//! Also measured: the first second of load on a daemon that has served nothing yet, whose p99
//! is what a client meets right after a start. Only Unix sockets and loopback; every phase ends
//! after its fixed duration.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Duration;

use support::load::{Measured, To, oha};
use support::nginx::{Nginx, Ready};
use support::{Backend, api};

const CLIENTS: [usize; 3] = [1, 16, 64];
const PATH: &str = "/v1/token?format=raw";

fn main() {
    let seconds: u64 = std::env::var("BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    rt.block_on(run(Duration::from_secs(seconds)));
}

async fn run(duration: Duration) {
    let backend = Backend::start().await;
    let token = backend.token();
    let floor = Nginx::start(
        &format!(
            "server {{\n listen unix:{{DIR}}/floor.sock;\n location / {{ return 200 \"{token}\"; }}\n}}"
        ),
        &[Ready::Unix("floor.sock".into())],
    );
    let floor_socket = floor.dir().join("floor.sock");

    // The first second of a daemon that has served nothing yet.
    let cold = api::start_quiet(&backend, "");
    api::get_until(&cold.socket, PATH, "the first token", |r| r.body == token).await;
    let first_second = blocking(|| oha(To::Unix(&cold.socket, PATH), 16, Duration::from_secs(1)));
    let floor_first = blocking(|| oha(To::Unix(&floor_socket, "/"), 16, Duration::from_secs(1)));
    drop(cold);

    let daemon = api::start_quiet(&backend, "");
    api::get_until(&daemon.socket, PATH, "the first token", |r| r.body == token).await;
    println!("| server | clients | requests/s | p50 µs | p99 µs |");
    println!("|---|---:|---:|---:|---:|");
    print_row("nginx, fixed reply (first second)", 16, &floor_first);
    print_row("mcp-token-sync (first second after start)", 16, &first_second);
    let mut ratios = Vec::new();
    for clients in CLIENTS {
        let nginx = blocking(|| oha(To::Unix(&floor_socket, "/"), clients, duration));
        let ours = blocking(|| oha(To::Unix(&daemon.socket, PATH), clients, duration));
        print_row("nginx, fixed reply", clients, &nginx);
        print_row("mcp-token-sync", clients, &ours);
        assert_eq!(ours.errors + nginx.errors, 0, "errors under load");
        ratios.push((clients, ours.rps / nginx.rps, ours.p99_us));
    }
    println!();
    for (clients, ratio, p99) in ratios {
        println!("{clients} clients: daemon/nginx throughput {ratio:.2}, daemon p99 {p99:.0} µs");
    }
    println!("first second after start, 16 clients: daemon p99 {:.0} µs", first_second.p99_us);
}

fn print_row(name: &str, clients: usize, m: &Measured) {
    println!("| {name} | {clients} | {:.0} | {:.0} | {:.0} |", m.rps, m.p50_us, m.p99_us);
}

/// Runs the load generator off the runtime, which keeps serving the fake backend meanwhile.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}
