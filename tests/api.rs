//! The socket API of the real binary, over a real Unix socket (DESIGN §7).

mod support;

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::api::{self, get, post};
use support::{Backend, Reply, read_new, wait_for};

const PATIENCE: Duration = Duration::from_secs(10);

/// Waits until `/v1/token` serves `token`.
async fn serving(socket: &std::path::Path, token: &str) {
    api::get_until(socket, "/v1/token?format=raw", "the socket to serve the token", |r| {
        r.status == 200 && r.body == token
    })
    .await;
}

/// A daemon with a socket, serving the backend's first token.
async fn serving_daemon() -> (Backend, api::WithSocket) {
    let backend = Backend::start().await;
    let d = api::start(&backend, "");
    serving(&d.socket, &backend.token()).await;
    (backend, d)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_object_has_its_fields_an_etag_and_no_store() {
    let (backend, d) = serving_daemon().await;
    let reply = get(&d.socket, "/v1/token").await;
    assert_eq!(reply.status, 200);
    let object = reply.json();
    assert_eq!(object["token"], backend.token());
    assert_eq!(object["agent_name"], "google-calender-mcp");
    assert_eq!(object["version"], 1);
    assert!(object["expires_at"].as_str().unwrap().ends_with('Z') && object["fetched_at"].is_string());
    assert_eq!(reply.headers["etag"], "\"1\"");
    assert_eq!(reply.headers["cache-control"], "no-store");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_none_match_on_the_current_version_gets_304() {
    let (_backend, d) = serving_daemon().await;
    let not_modified = api::request_with(&d.socket, "/v1/token", ("if-none-match", "\"1\"")).await;
    assert_eq!((not_modified.status, not_modified.body.as_str()), (304, ""));
    assert_eq!(api::request_with(&d.socket, "/v1/token", ("if-none-match", "\"0\"")).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn format_raw_is_the_token_as_text_and_other_formats_are_400() {
    let (backend, d) = serving_daemon().await;
    let raw = get(&d.socket, "/v1/token?format=raw").await;
    assert_eq!((raw.status, raw.body.as_str()), (200, backend.token().as_str()));
    assert!(raw.headers["content-type"].to_str().unwrap().starts_with("text/plain"));
    assert_eq!(get(&d.socket, "/v1/token?format=xml").await.status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_has_every_documented_field_and_each_sink() {
    let (_backend, d) = serving_daemon().await;
    let status = get(&d.socket, "/v1/status").await;
    assert_eq!(status.status, 200);
    let s = status.json();
    assert_eq!((s["state"].as_str(), s["version"].as_u64()), (Some("fresh"), Some(1)));
    for key in [
        "agent_name",
        "expires_at",
        "fetched_at",
        "next_refresh_at",
        "last_error",
        "consecutive_failures",
        "sinks",
    ] {
        assert!(s.get(key).is_some(), "status lacks {key}: {s}");
    }
    let sinks = s["sinks"].as_array().unwrap();
    let kinds: Vec<&str> = sinks.iter().map(|x| x["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["file", "socket", "state"]);
    assert!(sinks.iter().all(|x| x["ok"] == true && x["type"].is_string() && x["path"].is_string()), "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_200_with_a_token_and_healthy_sinks() {
    let (_backend, d) = serving_daemon().await;
    api::sink_status(&d.socket, "token", |e| e["last_written_at"].is_string()).await;
    assert_eq!(get(&d.socket, "/v1/health").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_answers_the_version_and_whether_it_changed() {
    let (backend, d) = serving_daemon().await;
    let refreshed = post(&d.socket, "/v1/refresh", b"").await;
    assert_eq!(refreshed.status, 200);
    assert_eq!(refreshed.json(), serde_json::json!({"version": 1, "changed": false}));
    backend.rotate();
    assert_eq!(
        post(&d.socket, "/v1/refresh", b"").await.json(),
        serde_json::json!({"version": 2, "changed": true})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_current_token_endpoint_needs_no_login() {
    let (_backend, d) = serving_daemon().await;
    let reply = post(&d.socket, "/v1/login", b"").await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(reply.body.contains("login_not_needed"), "{}", reply.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_fetches_versions_sinks_and_requests() {
    let (_backend, d) = serving_daemon().await;
    api::sink_status(&d.socket, "token", |e| e["last_written_at"].is_string()).await;
    let metrics = get(&d.socket, "/metrics").await;
    assert_eq!(metrics.status, 200);
    for line in [
        "mcp_token_sync_fetches_total{token=\"default\",result=\"new\"} 1",
        "mcp_token_sync_token_version{token=\"default\"} 1",
        "mcp_token_sync_token_valid{token=\"default\"} 1",
        "mcp_token_sync_consecutive_failures{token=\"default\"} 0",
        "mcp_token_sync_token_expiry_timestamp_seconds{token=\"default\"}",
        "mcp_token_sync_last_success_timestamp_seconds{token=\"default\"}",
        "mcp_token_sync_sink_writes_total{token=\"default\",sink=\"file",
        "mcp_token_sync_sink_ok{token=\"default\",sink=\"file",
        "mcp_token_sync_socket_requests_total{route=\"/v1/token\",code=\"200\"}",
    ] {
        assert!(metrics.body.contains(line), "metrics lack {line}:\n{}", metrics.body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_method_gets_405_with_allow() {
    let (_backend, d) = serving_daemon().await;
    let wrong = post(&d.socket, "/v1/token", b"").await;
    assert_eq!(wrong.status, 405);
    assert_eq!(wrong.headers["allow"], "GET");
    assert_eq!(get(&d.socket, "/v1/refresh").await.status, 405);
    assert_eq!(get(&d.socket, "/v1/report-401").await.status, 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_path_gets_404() {
    let (_backend, d) = serving_daemon().await;
    assert_eq!(get(&d.socket, "/v2/token").await.status, 404);
    assert_eq!(get(&d.socket, "/").await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_report_gets_400_and_a_large_one_413() {
    let (backend, d) = serving_daemon().await;
    let fetches = backend.fetches();
    assert_eq!(post(&d.socket, "/v1/report-401", b"{not json").await.status, 400);
    assert_eq!(post(&d.socket, "/v1/report-401", b"{\"version\": \"one\"}").await.status, 400);
    assert_eq!(post(&d.socket, "/v1/report-401?wait=forever", b"").await.status, 400);
    assert_eq!(post(&d.socket, "/v1/report-401", &vec![b' '; 5000]).await.status, 413);
    assert_eq!(backend.fetches(), fetches, "a refused report fetched");
    assert_eq!(get(&d.socket, "/v1/health").await.status, 200, "the daemon still serves");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_metrics_and_logs_never_show_the_token() {
    let (_backend, d) = serving_daemon().await;
    assert_eq!(post(&d.socket, "/v1/report-401", b"").await.status, 200);
    for (what, body) in [
        ("status", get(&d.socket, "/v1/status").await.body),
        ("metrics", get(&d.socket, "/metrics").await.body),
        ("health", get(&d.socket, "/v1/health").await.body),
    ] {
        assert!(!body.contains("SECRET-tok"), "{what} contains the token:\n{body}");
    }
    assert!(!d.daemon.output().contains("SECRET-tok"), "the logs contain the token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_the_api_says_so_with_503() {
    let backend = Backend::start().await;
    backend.set_reply(Reply::Raw { status: 500, body: b"down".to_vec() });
    let d = api::start(&backend, "");
    // The socket listens before the first fetch; wait until that fetch has failed.
    api::get_until(&d.socket, "/v1/status", "the first fetch to fail", |r| {
        r.json()["consecutive_failures"] != 0
    })
    .await;
    let reply = get(&d.socket, "/v1/token").await;
    assert_eq!((reply.status, reply.json()["error"].as_str()), (503, Some("no_valid_token")));
    assert_eq!(get(&d.socket, "/v1/token?format=raw").await.status, 503);
    let health = get(&d.socket, "/v1/health").await;
    assert_eq!(health.status, 503);
    assert!(health.body.contains("HTTP 500"), "{}", health.body);
    let refreshed = post(&d.socket, "/v1/refresh", b"").await;
    assert_eq!(refreshed.status, 503);
    assert!(refreshed.json()["detail"].as_str().unwrap().contains("HTTP 500"));
    assert_eq!(post(&d.socket, "/v1/report-401", b"").await.status, 503);
    assert_eq!(get(&d.socket, "/v1/status").await.json()["state"], "empty");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_served_as_503_token_expired() {
    let backend = Backend::start().await;
    backend.set_lifetime(Duration::from_secs(2));
    let d = api::start(&backend, "");
    serving(&d.socket, &backend.token()).await;
    backend.set_reply(Reply::Raw { status: 502, body: b"gone".to_vec() });
    let reply = api::get_until(&d.socket, "/v1/token", "the token to expire", |r| r.status == 503).await;
    assert_eq!(reply.json()["error"], "token_expired");
    assert_eq!(get(&d.socket, "/v1/status").await.json()["state"], "expired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_reports_of_one_version_make_one_fetch() {
    let backend = Backend::start().await;
    let d = api::start(&backend, "");
    serving(&d.socket, &backend.token()).await;

    // The backend has rotated; every client got a 401 with version 1 at once.
    let fresh = backend.rotate();
    backend.set_reply(Reply::Slow(Duration::from_millis(400)));
    let before = backend.fetches();
    let reporters: Vec<_> = (0..200)
        .map(|_| {
            let socket = d.socket.clone();
            tokio::spawn(async move { post(&socket, "/v1/report-401", b"{\"version\": 1}").await })
        })
        .collect();
    for reporter in reporters {
        let reply = reporter.await.unwrap();
        assert_eq!(reply.status, 200, "{}", reply.body);
        let object = reply.json();
        assert_eq!((object["token"].as_str(), object["version"].as_u64()), (Some(fresh.as_str()), Some(2)));
        assert_eq!(object["changed"], true);
    }
    assert_eq!(backend.fetches() - before, 1, "200 reports of one version must share one fetch");

    // A late reporter of the old version is answered at once, with no fetch.
    let fetches = backend.fetches();
    let stale = post(&d.socket, "/v1/report-401", b"{\"version\": 1}").await;
    assert_eq!((stale.status, stale.json()["version"].as_u64()), (200, Some(2)));
    assert_eq!(stale.json()["changed"], true);
    assert_eq!(backend.fetches(), fetches, "a stale report fetched");

    // A reporter whose report reached the daemon only after the fetch counts as stale.
    let refreshed =
        api::metric(&d.socket, "mcp_token_sync_reports_401_total{token=\"default\",outcome=\"refreshed\"}")
            .await;
    let stale =
        api::metric(&d.socket, "mcp_token_sync_reports_401_total{token=\"default\",outcome=\"stale\"}").await;
    assert_eq!((refreshed + stale, stale >= 1.0), (201.0, true), "{refreshed} refreshed, {stale} stale");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_when_the_token_did_not_change_says_changed_false() {
    let backend = Backend::start().await;
    let d = api::start(&backend, "");
    serving(&d.socket, &backend.token()).await;
    let reply = post(&d.socket, "/v1/report-401", b"").await;
    assert_eq!(reply.status, 200);
    assert_eq!((reply.json()["changed"].as_bool(), reply.json()["version"].as_u64()), (Some(false), Some(1)));
    // A version from the future is a report on the current one.
    let reply = post(&d.socket, "/v1/report-401", b"{\"version\": 99}").await;
    assert_eq!((reply.status, reply.json()["version"].as_u64()), (200, Some(1)));
    d.daemon.wait_output("not about the token", PATIENCE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_interval_holds_under_a_flood_of_reports() {
    let backend = Backend::start().await;
    // min_interval is 1s here (the other tests use 1ms).
    let d = api::start_tweaked(&backend, "", |text| {
        text.set("refresh", "min_interval", "\"1s\"").set("refresh", "backoff_max", "\"2s\"")
    });
    let socket = d.socket.clone();
    serving(&socket, &backend.token()).await;

    let before = backend.fetches();
    let started = Instant::now();
    let flood: Vec<_> = (0..8)
        .map(|_| {
            let socket = socket.clone();
            tokio::spawn(async move {
                let mut sent = 0;
                while started.elapsed() < Duration::from_millis(2500) {
                    let reply = post(&socket, "/v1/report-401?wait=0s", b"").await;
                    assert_eq!(reply.status, 200);
                    sent += 1;
                }
                sent
            })
        })
        .collect();
    let mut sent = 0;
    for client in flood {
        sent += client.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let fetched = backend.fetches() - before;
    assert!(sent > 50, "the flood was too small to mean anything ({sent})");
    assert!(
        fetched as f64 <= elapsed.ceil() + 1.0,
        "{fetched} fetches in {elapsed:.1}s with min_interval = 1s under {sent} reports"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_uid_outside_the_group_is_served_if_allowed_and_refused_if_not() {
    if !support::skip::as_root(
        "a_uid_outside_the_group_is_served_if_allowed_and_refused_if_not",
        "act as other uids",
    ) {
        return;
    }
    let backend = Backend::start().await;
    // World-connectable, as the D-Bus system bus: the peer check is the gate.
    let allowed = api::start(&backend, "mode = \"0666\"\nallow_uids = [65533]\n");
    let refused_socket = allowed.socket.clone();
    serving(&refused_socket, &backend.token()).await;
    assert_eq!(fs::metadata(&refused_socket).unwrap().permissions().mode() & 0o777, 0o666);
    // The test's own directory is private; open it so only the socket's mode and the ACL count.
    fs::set_permissions(allowed.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();

    let socket = refused_socket.to_str().unwrap();
    let as_user = |uid| {
        let args = ["--unix-socket", socket, "http://localhost/v1/token?format=raw"];
        tokio::task::block_in_place(|| support::binary::curl_as(uid, &args))
    };
    assert_eq!(as_user(65534), "403");
    allowed.daemon.wait_output("refused peer uid 65534", PATIENCE);
    assert_eq!(as_user(65533), "200");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_clients_do_not_disturb_the_others() {
    let backend = Backend::start().await;
    let d = api::start(&backend, "");
    let token = backend.token();
    serving(&d.socket, &token).await;

    // 50 clients that send half a request and wait.
    let half_sent: Vec<UnixStream> = (0..50)
        .map(|_| {
            let mut s = UnixStream::connect(&d.socket).unwrap();
            s.write_all(b"GET /v1/token HTTP/1.1\r\nHost: local").unwrap();
            s
        })
        .collect();

    // Garbage: answered 400, connection closed.
    let garbage = tokio::task::block_in_place(|| exchange(&d.socket, b"\x00\x01\x02garbage\r\n\r\n"));
    assert!(garbage.starts_with("HTTP/1.1 400"), "{garbage:?}");

    // A 100 KB request line: refused, never buffered whole.
    let mut huge = b"GET /".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 100 * 1024));
    huge.extend_from_slice(b" HTTP/1.1\r\nHost: x\r\n\r\n");
    let answer = tokio::task::block_in_place(|| exchange(&d.socket, &huge));
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 4"), "{answer:?}");

    // Meanwhile, a normal client is served at once.
    let reply = tokio::time::timeout(Duration::from_secs(2), get(&d.socket, "/v1/token?format=raw"))
        .await
        .expect("served promptly");
    assert_eq!((reply.status, reply.body.as_str()), (200, token.as_str()));
    drop(half_sent);
    assert_eq!(get(&d.socket, "/v1/health").await.status, 200, "the daemon survived");
}

/// Writes `request` on a fresh connection and reads until the daemon closes it (or 5 s pass).
fn exchange(socket: &std::path::Path, request: &[u8]) -> String {
    let mut s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(request);
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_delivers_each_version_in_order_and_the_expiry() {
    let backend = Backend::start().await;
    backend.rotate_each_fetch(true);
    let d = api::start(&backend, "");
    wait_for("the first token", PATIENCE, || read_new(&d.file, None));

    let response = mcp_token_sync::client::Client::new(&d.socket)
        .open(hyper::Method::GET, "/v1/watch", Vec::new())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let mut lines = Lines::new(response.into_body());
    let mut previous = lines.next().await;
    assert_eq!(previous["version"], 1);
    for expected in 2..=6u64 {
        d.daemon.signal(Signal::SIGUSR1);
        let event = lines.next().await;
        assert_eq!(event["version"], expected, "{event}");
        assert_ne!(event["token"], previous["token"], "each version carries a new token");
        previous = event;
    }

    // The backend goes down and the token expires unreplaced.
    backend.set_reply(Reply::Raw { status: 503, body: Vec::new() });
    backend.rotate_each_fetch(false);
    backend.set_lifetime(Duration::from_secs(2));
    backend.set_reply(Reply::Token);
    d.daemon.signal(Signal::SIGUSR1);
    let short = lines.next().await;
    assert_eq!(short["version"], 7);
    backend.set_reply(Reply::Raw { status: 503, body: Vec::new() });
    let expired = lines.next().await;
    assert_eq!(expired, serde_json::json!({"event": "expired", "version": 8}));
}

/// NDJSON lines from a streaming body.
struct Lines {
    body: hyper::body::Incoming,
    pending: Vec<u8>,
}

impl Lines {
    fn new(body: hyper::body::Incoming) -> Lines {
        Lines { body, pending: Vec::new() }
    }

    async fn next(&mut self) -> serde_json::Value {
        use http_body_util::BodyExt;
        loop {
            if let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                return serde_json::from_slice(&line).expect("each line is JSON");
            }
            let frame = tokio::time::timeout(PATIENCE, self.body.frame()).await.expect("a line in time");
            let frame = frame.expect("the stream stays open").expect("no stream error");
            if let Some(data) = frame.data_ref() {
                self.pending.extend_from_slice(data);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_that_never_read_do_not_grow_memory() {
    const WATCHERS: usize = 20;
    const ROTATIONS: usize = 3000;
    let backend = Backend::start().await;
    let d = api::start(&backend, "");
    serving(&d.socket, &backend.token()).await;
    backend.rotate_each_fetch(true);

    // Watchers that ask and then never read a byte.
    let stalled: Vec<UnixStream> = (0..WATCHERS)
        .map(|_| {
            let mut s = UnixStream::connect(&d.socket).unwrap();
            s.write_all(b"GET /v1/watch HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
            s
        })
        .collect();
    let before = support::procfs::rss_kib(d.daemon.pid());
    // Every version would be ~220 bytes per watcher if they were queued: 20 × 3000 × 220 ≈ 13 MB.
    for _ in 0..ROTATIONS {
        let reply = post(&d.socket, "/v1/refresh", b"").await;
        assert_eq!(reply.status, 200, "others are still served: {}", reply.body);
    }
    let after = support::procfs::rss_kib(d.daemon.pid());
    assert_eq!(get(&d.socket, "/v1/status").await.json()["version"], ROTATIONS as u64 + 1);
    assert!(after < before + 4096, "RSS grew from {before} KiB to {after} KiB with stalled watchers");
    drop(stalled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_client_verbs_work_against_the_daemon() {
    let backend = Backend::start().await;
    let d = api::start(&backend, "");
    let token = backend.token();
    serving(&d.socket, &token).await;
    let socket = d.socket.to_str().unwrap().to_owned();
    let verb = |args: &[&str]| {
        let out = Command::new(support::binary::BIN)
            .args(args)
            .env("MCP_TOKEN_SYNC_SOCKET", &socket)
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
    };
    let run = |args: &'static [&'static str]| tokio::task::block_in_place(|| verb(args));

    // `token` prints the token and a newline, nothing else: usable as a credential helper.
    assert_eq!(run(&["token"]), (Some(0), format!("{token}\n"), String::new()));
    let (code, out, _) = run(&["token", "--json"]);
    assert_eq!(code, Some(0));
    assert_eq!(serde_json::from_str::<serde_json::Value>(&out).unwrap()["token"], token);

    let (code, out, _) = run(&["status"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("fresh") && out.contains("version 1") && !out.contains(&token), "{out}");
    let (code, out, _) = run(&["status", "--json"]);
    assert_eq!(code, Some(0));
    assert_eq!(serde_json::from_str::<serde_json::Value>(&out).unwrap()["state"], "fresh");

    assert_eq!(run(&["refresh"]).1, "version 1: unchanged\n");

    let fresh = backend.rotate();
    let (code, out, _) = run(&["report-401", "--version", "1"]);
    assert_eq!((code, out), (Some(0), format!("{fresh}\n")));

    // `watch` shows versions by fingerprint, never the token.
    let mut watch = Command::new(support::binary::BIN)
        .arg("watch")
        .env("MCP_TOKEN_SYNC_SOCKET", &socket)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first_line = String::new();
    let mut stdout = std::io::BufReader::new(watch.stdout.take().unwrap());
    tokio::task::block_in_place(|| std::io::BufRead::read_line(&mut stdout, &mut first_line)).unwrap();
    watch.kill().unwrap();
    watch.wait().unwrap();
    let fingerprint = mcp_token_sync::token::Fingerprint::of(fresh.as_bytes()).to_string();
    assert!(first_line.starts_with("version 2: token ") && first_line.contains(&fingerprint), "{first_line}");
    assert!(!first_line.contains(&fresh));
}

#[test]
fn client_verbs_exit_1_with_one_line_when_the_daemon_is_unreachable() {
    for args in [&["token"][..], &["status"], &["refresh"], &["report-401"], &["watch"], &["headers"]] {
        let out = Command::new(support::binary::BIN)
            .args(args)
            .args(["--socket", "/nonexistent/api.sock"])
            .output()
            .unwrap();
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.contains("/nonexistent/api.sock") && stderr.contains("cannot reach"),
            "{args:?}: {stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_verb_exits_1_without_a_valid_token() {
    let backend = Backend::start().await;
    backend.set_reply(Reply::Raw { status: 500, body: Vec::new() });
    let d = api::start(&backend, "");
    let out = tokio::task::block_in_place(|| {
        Command::new(support::binary::BIN)
            .args(["token", "--socket", d.socket.to_str().unwrap()])
            .output()
            .unwrap()
    });
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no valid token"));
    let headers = tokio::task::block_in_place(|| {
        Command::new(support::binary::BIN)
            .args(["headers", "--socket", d.socket.to_str().unwrap()])
            .output()
            .unwrap()
    });
    assert_eq!(headers.status.code(), Some(1));
    assert!(headers.stdout.is_empty(), "a headers helper prints nothing it cannot stand behind");
}

/// `mcp-token-sync headers`, as Claude Code's `headersHelper` runs it: one JSON object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_headers_verb_prints_one_json_object_of_headers() {
    let backend = Backend::start().await;
    let d = api::start(&backend, "");
    let token = backend.token();
    serving(&d.socket, &token).await;
    let headers = |args: &[&str]| {
        let out = tokio::task::block_in_place(|| {
            Command::new(support::binary::BIN)
                .arg("headers")
                .args(args)
                .env("MCP_TOKEN_SYNC_SOCKET", &d.socket)
                .output()
                .unwrap()
        });
        (out.status.code(), String::from_utf8(out.stdout).unwrap())
    };
    let object = |text: &str| serde_json::from_str::<serde_json::Value>(text).unwrap();
    let (code, out) = headers(&[]);
    assert_eq!(code, Some(0));
    assert_eq!(object(&out), serde_json::json!({"Authorization": format!("Bearer {token}")}));
    let (_, out) = headers(&["--header", "X-Google-MCP-Token"]);
    assert_eq!(object(&out), serde_json::json!({"X-Google-MCP-Token": token}));
    let (_, out) = headers(&["--header", "X-Google-MCP-Token", "--scheme", "Token"]);
    assert_eq!(object(&out), serde_json::json!({"X-Google-MCP-Token": format!("Token {token}")}));
    assert_eq!(headers(&["--header", "not a header"]), (Some(2), String::new()));
}

/// `printf 'GET …' | nc -N -U api.sock` and the like close their sending side after the request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_half_closes_after_its_request_still_gets_the_answer() {
    let backend = Backend::start().await;
    let d = api::start(&backend, "");
    let token = backend.token();
    serving(&d.socket, &token).await;
    for _ in 0..200 {
        let mut s = UnixStream::connect(&d.socket).unwrap();
        s.write_all(b"GET /v1/token?format=raw HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with(&token), "{answer:?}");
    }
}

/// A kept-alive connection that has answered its request.
fn served_and_kept(socket: &std::path::Path) -> UnixStream {
    let mut s = UnixStream::connect(socket).unwrap();
    s.write_all(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut head = [0u8; 1024];
    let n = s.read(&mut head).unwrap();
    assert!(head[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&head[..n]));
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_max_connections_the_longest_idle_connection_makes_room() {
    let backend = Backend::start().await;
    let d = api::start(&backend, "max_connections = 2\n");
    let token = backend.token();
    serving(&d.socket, &token).await;
    let mut oldest = served_and_kept(&d.socket);
    let mut newer = served_and_kept(&d.socket);

    let reply = tokio::time::timeout(PATIENCE, get(&d.socket, "/v1/token?format=raw")).await.unwrap();
    assert_eq!((reply.status, reply.body), (200, token));
    oldest.set_read_timeout(Some(PATIENCE)).unwrap();
    assert_eq!(oldest.read(&mut [0u8; 64]).unwrap(), 0, "the longest idle connection is closed");
    newer.write_all(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut head = [0u8; 12];
    newer.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 200", "the other kept-alive connection still works");
    assert!(api::metric(&d.socket, "mcp_token_sync_connections_closed_for_room_total").await >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_in_a_request_are_never_closed_for_room_newcomers_wait() {
    let backend = Backend::start().await;
    let d = api::start(&backend, "max_connections = 2\n");
    let token = backend.token();
    serving(&d.socket, &token).await;
    backend.set_reply(Reply::Slow(Duration::from_millis(900)));
    // Both slots in a request: a refresh waiting on the slow backend, and one joining it.
    let refresh = || {
        let socket = d.socket.clone();
        tokio::spawn(async move { post(&socket, "/v1/refresh", b"").await })
    };
    let first = refresh();
    d.daemon.wait_output("refresh requested by POST /v1/refresh", PATIENCE);
    let second = refresh();
    d.daemon.wait_output("POST /v1/refresh joins the fetch in flight", PATIENCE);
    let refreshes = [first, second];
    let socket = d.socket.clone();
    let third = tokio::spawn(async move { get(&socket, "/v1/token?format=raw").await });
    d.daemon.wait_output("a new one waits for a slot", PATIENCE);
    assert!(!third.is_finished(), "a third connection was served beyond max_connections = 2");
    for refresh in refreshes {
        assert_eq!(refresh.await.unwrap().status, 200, "a request in progress was cut off");
    }
    let reply = tokio::time::timeout(PATIENCE, third).await.expect("served once a slot frees").unwrap();
    assert_eq!((reply.status, reply.body), (200, token));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_sockets_serve_side_by_side_and_are_removed_on_stop() {
    let backend = Backend::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (dir.path().join("first.sock"), dir.path().join("second.sock"));
    let config = dir.path().join("c.toml");
    let sockets = format!(
        "[[sink]]\ntype = \"socket\"\npath = \"{}\"\n\n[[sink]]\ntype = \"socket\"\npath = \"{}\"\nmode = \"0600\"\nallow_uids = [65534]\n",
        first.display(),
        second.display()
    );
    fs::write(&config, support::config_text(&backend, &sockets)).unwrap();
    let mut daemon = support::DaemonProcess::run(&config);
    wait_for("both sockets", PATIENCE, || (first.exists() && second.exists()).then_some(()));
    serving(&first, &backend.token()).await;
    serving(&second, &backend.token()).await;
    assert_eq!(fs::metadata(&first).unwrap().permissions().mode() & 0o777, 0o660);
    assert_eq!(fs::metadata(&second).unwrap().permissions().mode() & 0o777, 0o600);

    daemon.signal(Signal::SIGTERM);
    assert!(daemon.wait_exit(PATIENCE).success());
    assert!(!first.exists() && !second.exists(), "socket files left behind");
}
