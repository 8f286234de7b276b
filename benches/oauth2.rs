//! The oauth2 source against a real authorization server (oidc-provider, as the tests run it).
//!
//! 1. Rotation: 64 clients call a resource through the proxy while access tokens live 2 s, for
//!    200 rotations; for each, the time from the old token's `lifetime_fraction` point to the
//!    new one being in every sink (the socket API and the proxy hold it when it is published;
//!    the file sink when its mtime says), p50/p99; failed client requests; refreshes per
//!    rotation; the daemon's RSS under load and idle.
//! 2. Client authentication: `POST /v1/refresh` 200 times with client_secret_basic and with
//!    private_key_jwt (RSA 2048, P-256); the difference of medians is what signing adds to a
//!    request (the key file read and parsed, the assertion signed).
//! 3. kill -9 at random moments across rotations, 100 times: how often a kill fell between the
//!    server's answer and the fsync (the restarted daemon presents a spent refresh token, and
//!    stops at needs_login), and that it then asked the server nothing more.
//!
//!     ./scripts/bench oauth2

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use support::load::quantiles;
use support::oauth::{OAuthDaemon, Provider, RESOURCE, kill_and_restart, seeded_source};
use support::resource::{Failures, Resource, caller};

const CLIENTS: usize = 64;
const ROTATIONS: usize = 200;
const REFRESHES: usize = 200;
const KILLS: usize = 100;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(rotation());
    runtime.block_on(client_authentication());
    kills();
}

fn seconds(text: &serde_json::Value) -> SystemTime {
    let time = chrono::DateTime::parse_from_rfc3339(text.as_str().unwrap()).unwrap();
    SystemTime::UNIX_EPOCH + Duration::from_nanos(time.timestamp_nanos_opt().unwrap() as u64)
}

async fn rotation() {
    let p = Provider::start(2);
    let resource = Resource::start(&p.issuer).await;
    let dir = tempfile::tempdir().unwrap();
    let (source, _) = seeded_source(&p, dir.path(), &resource.url(), false);
    let (d, proxy) = tokio::task::block_in_place(|| resource.behind_a_daemon(dir, &source));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_started = support::procfs::rss_kib(d.daemon.pid());
    let (stop, ok, failed) = (Arc::new(AtomicBool::new(false)), Arc::default(), Arc::<Failures>::default());
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| tokio::spawn(caller(proxy, stop.clone(), Arc::clone(&ok), failed.clone())))
        .collect();

    // Every version from the watch stream: (fetched_at, expires_at, in every sink at).
    let stream = tokio::net::UnixStream::connect(&d.socket).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(connection);
    let request =
        hyper::Request::get("/v1/watch").header("host", "localhost").body(Empty::<Bytes>::new()).unwrap();
    let mut body = sender.send_request(request).await.unwrap().into_body();
    let mut versions: Vec<(SystemTime, SystemTime, SystemTime)> = Vec::new();
    let mut pending = Vec::new();
    let mut rss_loaded = 0;
    let deadline = Instant::now() + Duration::from_secs(900);
    while versions.len() <= ROTATIONS && Instant::now() < deadline {
        let Some(Ok(frame)) = body.frame().await else { break };
        let Some(data) = frame.data_ref() else { continue };
        pending.extend_from_slice(data);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let event: serde_json::Value = serde_json::from_slice(&line).unwrap();
            let Some(token) = event["token"].as_str() else { continue };
            let published = SystemTime::now();
            // The file sink has it when its content is this token; its mtime says when.
            let written = loop {
                if std::fs::read_to_string(&d.file).ok().as_deref() == Some(token) {
                    break std::fs::metadata(&d.file).unwrap().modified().unwrap();
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            };
            versions.push((
                seconds(&event["fetched_at"]),
                seconds(&event["expires_at"]),
                published.max(written),
            ));
            if versions.len() == ROTATIONS / 2 {
                rss_loaded = support::procfs::rss_kib(d.daemon.pid());
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_idle = support::procfs::rss_kib(d.daemon.pid());
    let fraction = 0.6;
    let mut lateness: Vec<Duration> = versions
        .windows(2)
        .map(|pair| {
            let ((fetched, expires, _), (_, _, everywhere)) = (pair[0], pair[1]);
            let due = fetched + expires.duration_since(fetched).unwrap().mul_f64(fraction);
            everywhere.duration_since(due).unwrap_or_default()
        })
        .collect();
    let (p50, p99) = quantiles(&mut lateness);
    let stats = p.stats();
    println!(
        "rotation: {} rotations with {CLIENTS} clients on the proxy; lifetime_fraction point → new token in every sink: p50 {:.1} ms, p99 {:.1} ms",
        lateness.len(),
        p50 / 1e3,
        p99 / 1e3
    );
    println!(
        "rotation: client requests {} ok, {} failed; refreshes {} for {} versions; invalid_grant {}; refresh tokens presented twice {}; resource (accepted, refused and replayed by the proxy, introspected) {:?}",
        ok.load(Ordering::Relaxed),
        failed.count(),
        stats["grants"]["refresh_token"],
        versions.last().map(|_| d.status()["version"].clone()).unwrap_or_default(),
        stats["errors"]["invalid_grant"].as_u64().unwrap_or(0),
        stats["refresh_reused"],
        resource.counts()
    );
    println!(
        "rotation: daemon RSS {rss_started} KiB started (idle, a token held), {rss_loaded} KiB under load, {rss_idle} KiB idle after it"
    );
}

async fn client_authentication() {
    let p = Provider::start(300);
    let [basic, _, rsa, ec] = p.service_clients();
    let methods =
        [("client_secret_basic", basic), ("private_key_jwt RSA 2048", rsa), ("private_key_jwt P-256", ec)];
    let mut medians = Vec::new();
    for (name, keys) in methods {
        let source = format!(
            "issuer = \"{}\"\nresource = \"{RESOURCE}\"\ngrant = \"client_credentials\"\n{keys}\n\n[refresh]\nmin_interval = \"1ms\"\n",
            p.issuer
        );
        let d = tokio::task::block_in_place(|| {
            let d = OAuthDaemon::start_in(tempfile::tempdir().unwrap(), &source, "");
            d.wait_status("a first token", |s| s["version"].as_u64() >= Some(1));
            d
        });
        let mut times = Vec::new();
        for _ in 0..REFRESHES {
            let start = Instant::now();
            let reply = support::api::post(&d.socket, "/v1/refresh", b"").await;
            assert_eq!(reply.status, 200, "{}", reply.body);
            times.push(start.elapsed());
        }
        let (p50, p99) = quantiles(&mut times);
        let (p50, p99) = (p50 / 1e3, p99 / 1e3);
        println!(
            "client authentication: {name}: POST /v1/refresh p50 {p50:.2} ms, p99 {p99:.2} ms ({REFRESHES} requests)"
        );
        medians.push(p50);
    }
    println!(
        "client authentication: private_key_jwt adds {:.2} ms (RSA) and {:.2} ms (P-256) per request at the median",
        medians[1] - medians[0],
        medians[2] - medians[0]
    );
}

fn kills() {
    let p = Provider::start(2);
    let dir = tempfile::tempdir().unwrap();
    let (source, seed) = seeded_source(&p, dir.path(), RESOURCE, true);
    let mut d = OAuthDaemon::start_in(dir, &source, "");
    let (mut carried_on, mut window, mut asked_after) = (0, 0, 0);
    for _ in 0..KILLS {
        let status = kill_and_restart(&mut d, Duration::from_millis(2500));
        if status["state"] != "needs_login" {
            carried_on += 1;
            continue;
        }
        window += 1;
        let asked = p.stats()["grants"]["refresh_token"].as_u64().unwrap();
        std::thread::sleep(Duration::from_secs(3));
        asked_after += p.stats()["grants"]["refresh_token"].as_u64().unwrap() - asked;
        std::fs::write(&seed, p.refresh_token(RESOURCE)).unwrap();
    }
    println!(
        "kill -9: {KILLS} kills across rotations (every ~1.2 s): {carried_on} carried on from the stored refresh token, {window} fell between the server's answer and the fsync and stopped at needs_login; refresh requests in the 3 s after each of those: {asked_after}; {}",
        p.stats()
    );
}
