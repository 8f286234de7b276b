//! Several tokens in one daemon (issue 28), measured on the release binary:
//!
//! 1. RSS and threads of one daemon holding 1, 10 and 100 tokens (each with a file sink), and
//!    the time from start to every token published; against 100 single-token daemons;
//! 2. isolation under load: one token read at full speed over the daemon-wide socket (oha, 16
//!    clients) while a 401 storm of 200 reporters hits another token, round after round: that
//!    read's p50/p99 with and without the storm, and the fetches the storm made.
//!
//!     cargo bench --bench tokens            # scripts/bench tokens
//!
//! Only loopback and Unix sockets; every phase is bounded in count or time.

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use support::load::{To, oha};
use support::procfs::{rss_kib, status_field};
use support::{Backend, DaemonProcess, Reply, wait_for};

const PATIENCE: Duration = Duration::from_secs(60);
/// How long each read measurement runs.
const READ_FOR: Duration = Duration::from_secs(5);
/// How long after the start memory and threads are read: tokio ends a blocking thread after
/// 10 s without work, so the figures are the daemon's steady state.
const SETTLE: Duration = Duration::from_secs(11);
/// Rounds of the isolation measurement, each pace of storms in turn.
const ROUNDS: usize = 5;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let backend = Backend::start().await;
        memory(&backend).await;
        isolation().await;
    });
}

/// A config of `count` tokens (`t000`, `t001`, …) from `backend`, each with a file sink, and a
/// daemon-wide socket, all in `dir`.
fn tokens_config(backend: &Backend, dir: &Path, count: usize) -> String {
    let mut text = format!(
        "[daemon]\nstate_dir = \"{}\"\nwatch_config = false\n\n[refresh]\njitter = 0.0\n\n\
         [[sink]]\ntype = \"socket\"\npath = \"{}\"\n\n",
        dir.join("state").display(),
        dir.join("api.sock").display()
    );
    for i in 0..count {
        text += &format!(
            "[tokens.t{i:03}.source]\nurl = \"{}\"\n[[tokens.t{i:03}.sink]]\ntype = \"file\"\npath = \"{}\"\n\n",
            backend.url(),
            dir.join(format!("t{i:03}")).display()
        );
    }
    text
}

/// The one token of the seed's shape, with a file sink and a socket.
fn single_config(backend: &Backend, dir: &Path) -> String {
    format!(
        "[source]\nurl = \"{}\"\n[daemon]\nstate_dir = \"{}\"\nwatch_config = false\n[refresh]\njitter = 0.0\n\
         [[sink]]\ntype = \"file\"\npath = \"{}\"\n[[sink]]\ntype = \"socket\"\npath = \"{}\"\n",
        backend.url(),
        dir.join("state").display(),
        dir.join("token").display(),
        dir.join("api.sock").display()
    )
}

/// Starts the release daemon on `config` (text) in `dir`, logging only warnings.
fn start(dir: &Path, config: &str) -> DaemonProcess {
    let path = dir.join("config.toml");
    std::fs::write(&path, config).unwrap();
    DaemonProcess::spawn_with_env(
        &["run", "--config", path.to_str().unwrap()],
        &[("MCP_TOKEN_SYNC_LOG", "warn")],
    )
}

/// Waits until every file in `files` holds a token.
fn published(files: &[PathBuf]) {
    wait_for("every token published", PATIENCE, || {
        files.iter().all(|f| std::fs::metadata(f).is_ok_and(|m| m.len() > 0)).then_some(())
    });
}

/// Section 1.
async fn memory(backend: &Backend) {
    println!("## 1. Memory and threads: one daemon with N tokens, against N daemons\n");
    println!(
        "| daemons × tokens | start to every token published | RSS in all | RSS per token | threads in all |"
    );
    println!("|---|---|---|---|---|");
    for count in [1, 10, 100] {
        let dir = tempfile::tempdir().unwrap();
        let started = Instant::now();
        let daemon = start(dir.path(), &tokens_config(backend, dir.path(), count));
        let files: Vec<PathBuf> = (0..count).map(|i| dir.path().join(format!("t{i:03}"))).collect();
        published(&files);
        let ready = started.elapsed();
        // Settled: tokio ends a blocking thread after 10 s without work.
        tokio::time::sleep(SETTLE).await;
        let (rss, threads) = (rss_kib(daemon.pid()), status_field(daemon.pid(), "Threads:"));
        println!(
            "| 1 × {count} | {:.0} ms | {:.1} MiB | {:.0} KiB | {threads} |",
            ready.as_secs_f64() * 1e3,
            rss as f64 / 1024.0,
            rss as f64 / count as f64
        );
        daemon.signal(nix::sys::signal::Signal::SIGTERM);
    }
    let dirs: Vec<tempfile::TempDir> = (0..100).map(|_| tempfile::tempdir().unwrap()).collect();
    let started = Instant::now();
    let daemons: Vec<DaemonProcess> =
        dirs.iter().map(|d| start(d.path(), &single_config(backend, d.path()))).collect();
    let files: Vec<PathBuf> = dirs.iter().map(|d| d.path().join("token")).collect();
    published(&files);
    let ready = started.elapsed();
    tokio::time::sleep(SETTLE).await;
    let rss: u64 = daemons.iter().map(|d| rss_kib(d.pid())).sum();
    let threads: u64 = daemons.iter().map(|d| status_field(d.pid(), "Threads:")).sum();
    println!(
        "| 100 × 1 | {:.0} ms | {:.1} MiB | {:.0} KiB | {threads} |\n",
        ready.as_secs_f64() * 1e3,
        rss as f64 / 1024.0,
        rss as f64 / 100.0
    );
    for daemon in &daemons {
        daemon.signal(nix::sys::signal::Signal::SIGTERM);
    }
}

/// Section 2.
async fn isolation() {
    println!("## 2. A 401 storm on one token while another is read at full speed\n");
    // The stormed token's backend answers in 20 ms, as one across a network would.
    let (stormed, read) = (Backend::start().await, Backend::start().await);
    stormed.set_reply(Reply::Slow(Duration::from_millis(20)));
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[daemon]\nstate_dir = \"{state}\"\nwatch_config = false\n[refresh]\njitter = 0.0\nmin_interval = \"1ms\"\n\
         [[sink]]\ntype = \"socket\"\npath = \"{socket}\"\nmax_connections = 4096\n\
         [tokens.stormed.source]\nurl = \"{a}\"\n[tokens.read.source]\nurl = \"{b}\"\n",
        state = dir.path().join("state").display(),
        socket = dir.path().join("api.sock").display(),
        a = stormed.url(),
        b = read.url()
    );
    let daemon = start(dir.path(), &config);
    let socket = dir.path().join("api.sock");
    wait_for("the socket", PATIENCE, || socket.exists().then_some(()));
    support::api::get_until(&socket, "/v1/tokens/read?format=raw", "the read token", |r| r.status == 200)
        .await;
    support::api::get_until(&socket, "/v1/tokens/stormed?format=raw", "the stormed token", |r| {
        r.status == 200
    })
    .await;
    println!("| round | storms | read p50 | read p99 | reads/s | stormed fetches |");
    println!("|---|---|---|---|---|---|");
    // None; one storm a second (a rotation every client notices at once); back to back (the
    // stress case: 200 reporters as fast as they are answered).
    let paces = [None, Some(Duration::from_secs(1)), Some(Duration::ZERO)];
    let mut p99s: [Vec<f64>; 3] = Default::default();
    for round in 0..ROUNDS * paces.len() {
        let which = round % paces.len();
        let fetches = stormed.fetches();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reporters = paces[which]
            .map(|pace| tokio::spawn(storm_until(socket.clone(), stormed.clone(), pace, stop.clone())));
        let measured = {
            let socket = socket.clone();
            tokio::task::spawn_blocking(move || {
                oha(To::Unix(&socket, "/v1/tokens/read?format=raw"), 16, READ_FOR)
            })
            .await
            .unwrap()
        };
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let storms = match reporters {
            Some(task) => task.await.unwrap(),
            None => 0,
        };
        let made = stormed.fetches() - fetches;
        let what = ["none", "200 reporters, 1/s", "200 reporters, back to back"][which];
        println!(
            "| {round} | {what} | {:.0} µs | {:.0} µs | {:.0} | {made} for {storms} storms |",
            measured.p50_us, measured.p99_us, measured.rps
        );
        assert_eq!(measured.errors, 0);
        p99s[which].push(measured.p99_us);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let [quiet, paced, back_to_back] = p99s.map(|mut v| median(&mut v));
    println!(
        "\nmedian read p99: {quiet:.0} µs without storms; {paced:.0} µs with one a second ({:+.1} %); \
         {back_to_back:.0} µs back to back ({:+.1} %)\n",
        (paced / quiet - 1.0) * 100.0,
        (back_to_back / quiet - 1.0) * 100.0
    );
    daemon.signal(nix::sys::signal::Signal::SIGTERM);
}

/// Storms every `pace` (at once after the last, for zero) until `stop`: the backend rotates,
/// then 200 reporters of the held version at once, answered by one fetch. Returns how many
/// storms ran.
async fn storm_until(
    socket: PathBuf,
    backend: Backend,
    pace: Duration,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> usize {
    let mut storms = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let next = tokio::time::Instant::now() + pace;
        let held = support::api::get(&socket, "/v1/tokens/stormed").await.json()["version"].as_u64().unwrap();
        backend.rotate();
        let body = format!("{{\"version\": {held}}}");
        let reports =
            (0..200).map(|_| support::api::post(&socket, "/v1/tokens/stormed/report-401", body.as_bytes()));
        for reply in join_all(reports).await {
            assert_eq!(reply.status, 200, "{}", reply.body);
        }
        storms += 1;
        tokio::time::sleep_until(next).await;
    }
    storms
}
