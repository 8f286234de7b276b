//! Propagation: from the backend answering a fresh token to every sink holding it — the file,
//! the env file, the kernel keyring and a `/v1/watch` stream — over 1,000 forced rotations of
//! the release daemon.
//!
//!     cargo bench --bench propagation            # BENCH_ROTATIONS=1000 by default
//!
//! Files and the keyring are polled every 50 µs, which bounds the figures' resolution.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use nix::sys::signal::Signal;
use support::load::quantiles;
use support::{Backend, DaemonProcess, TestConfig};
use tokio::net::UnixStream;

const POLL: Duration = Duration::from_micros(50);

/// When each sink first held each token.
type Seen = Arc<Mutex<HashMap<(&'static str, String), Instant>>>;

fn main() {
    let rotations: usize = std::env::var("BENCH_ROTATIONS").ok().and_then(|s| s.parse().ok()).unwrap_or(1000);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(run(rotations));
}

async fn run(rotations: usize) {
    let backend = Backend::start().await;
    backend.rotate_each_fetch(true);
    let dir = tempfile::tempdir().unwrap();
    let (file, env_file, socket) =
        (dir.path().join("token"), dir.path().join("token.env"), dir.path().join("api.sock"));
    let account = format!("propagation-{}", std::process::id());
    let keyring =
        linux_keyutils::KeyRing::from_special_id(linux_keyutils::KeyRingIdentifier::User, false).is_ok();
    let config = dir.path().join("config.toml");
    let mut text = TestConfig::new(&backend)
        .set("daemon", "state_dir", &format!("{:?}", dir.path().join("state").display().to_string()))
        .set("daemon", "watch_config", "false")
        .sinks(&format!(
            "[[sink]]\ntype = \"file\"\npath = \"{}\"\n\n[[sink]]\ntype = \"env_file\"\npath = \"{}\"\nvariable = \"T\"\n\n\
             [[sink]]\ntype = \"socket\"\npath = \"{}\"\n",
            file.display(),
            env_file.display(),
            socket.display()
        ))
        .text();
    if keyring {
        text += &format!("\n[[sink]]\ntype = \"keyring\"\nbackend = \"keyutils\"\naccount = \"{account}\"\n");
    }
    std::fs::write(&config, text).unwrap();
    let daemon = DaemonProcess::spawn_with_env(
        &["run", "--config", config.to_str().unwrap()],
        &[("MCP_TOKEN_SYNC_LOG", "warn")],
    );

    let seen: Seen = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let pollers = {
        let (seen, stop, description) = (seen.clone(), stop.clone(), format!("mcp-token-sync:{account}"));
        let (file, env_file) = (file.clone(), env_file.clone());
        std::thread::spawn(move || poll_files(&file, &env_file, keyring.then_some(description), &seen, &stop))
    };
    while UnixStream::connect(&socket).await.is_err() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::spawn(watch(socket.clone(), seen.clone()));
    let sinks: Vec<&'static str> = if keyring {
        vec!["file", "env_file", "keyring", "watch"]
    } else {
        vec!["file", "env_file", "watch"]
    };

    // Until `count` tokens have been answered and every sink has held each of them.
    let everywhere = |count: usize| {
        let answered = backend.answered();
        let seen = seen.lock().unwrap();
        answered.len() >= count
            && answered.keys().all(|t| sinks.iter().all(|s| seen.contains_key(&(*s, t.clone()))))
    };
    for count in 1..=rotations + 1 {
        if count > 1 {
            daemon.signal(Signal::SIGUSR1);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while !everywhere(count) {
            assert!(Instant::now() < deadline, "token {count} never reached every sink");
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }
    stop.store(true, Ordering::SeqCst);
    pollers.join().unwrap();
    drop(daemon);

    let answered = backend.answered();
    let seen = seen.lock().unwrap();
    println!("| sink | p50 µs | p99 µs |\n|---|---:|---:|");
    let mut all = Vec::new();
    for sink in &sinks {
        let mut latencies: Vec<Duration> = answered
            .iter()
            .filter_map(|(t, at)| Some(seen.get(&(*sink, t.clone()))?.duration_since(*at)))
            .collect();
        all.push(latencies.clone());
        let (p50, p99) = quantiles(&mut latencies);
        println!("| {sink} | {p50:.0} | {p99:.0} |");
    }
    let mut slowest: Vec<Duration> =
        (0..all[0].len()).map(|i| all.iter().filter_map(|l| l.get(i)).max().copied().unwrap()).collect();
    let (p50, p99) = quantiles(&mut slowest);
    println!("| every sink (the slowest of each rotation) | {p50:.0} | {p99:.0} |");
    println!("\n{} rotations; the backend's answer is timed as it leaves the handler.", answered.len());
}

fn poll_files(file: &PathBuf, env_file: &PathBuf, key: Option<String>, seen: &Seen, stop: &AtomicBool) {
    let user = key.as_ref().map(|_| {
        linux_keyutils::KeyRing::from_special_id(linux_keyutils::KeyRingIdentifier::User, false).unwrap()
    });
    while !stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        let record = |sink: &'static str, token: Option<String>| {
            if let Some(token) = token.filter(|t| !t.is_empty()) {
                seen.lock().unwrap().entry((sink, token)).or_insert(now);
            }
        };
        record("file", std::fs::read_to_string(file).ok());
        record(
            "env_file",
            std::fs::read_to_string(env_file)
                .ok()
                .and_then(|t| Some(t.strip_prefix("T=")?.trim_end().to_owned())),
        );
        if let (Some(user), Some(key)) = (&user, &key) {
            let token = user
                .search(key)
                .ok()
                .and_then(|k| k.read_to_vec().ok())
                .and_then(|v| String::from_utf8(v).ok());
            record("keyring", token);
        }
        std::thread::sleep(POLL);
    }
}

async fn watch(socket: PathBuf, seen: Seen) {
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(UnixStream::connect(&socket).await.unwrap()))
            .await
            .unwrap();
    tokio::spawn(connection);
    let request =
        hyper::Request::get("/v1/watch").header("host", "localhost").body(Full::new(Bytes::new())).unwrap();
    let mut body = sender.send_request(request).await.unwrap().into_body();
    let mut pending = Vec::new();
    while let Some(Ok(frame)) = body.frame().await {
        let now = Instant::now();
        let Some(data) = frame.data_ref() else { continue };
        pending.extend_from_slice(data);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            if let Ok(event) = serde_json::from_slice::<serde_json::Value>(&line)
                && let Some(token) = event["token"].as_str()
            {
                seen.lock().unwrap().entry(("watch", token.to_owned())).or_insert(now);
            }
        }
    }
}
