//! A freshness bound on reads (DESIGN §7 `max_age`, §8 `--max-age`): a host that runs
//! `headers` only when it connects (Claude Code's headersHelper) must not be handed a token the
//! backend replaced early, behind the daemon's back, just because no client reported a 401
//! since. Against the real binary and the in-process backend of the seed's protocol.

mod support;

use std::time::Duration;

use futures_util::future::join_all;
use support::api::{self, get};
use support::binary::run_verb;
use support::{Backend, Reply};

/// A daemon serving the backend's first token, fetched once (its schedule is the token's hour).
async fn fetched_once() -> (Backend, api::WithSocket) {
    let backend = Backend::start().await;
    let d = api::start(&backend, "");
    api::get_until(&d.socket, "/v1/token?format=raw", "the first token", |r| {
        r.status == 200 && r.body == backend.token()
    })
    .await;
    assert_eq!(backend.fetches(), 1);
    (backend, d)
}

/// `mcp-token-sync ARGS… --socket S`, off the runtime's thread: (exit code, output).
async fn verb(d: &api::WithSocket, args: &[&str]) -> (Option<i32>, String) {
    let socket = d.socket.to_str().unwrap().to_owned();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).chain(["--socket".into(), socket]).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (status, out) = run_verb(&args);
        (status.code(), out)
    })
    .await
    .unwrap()
}

/// Lets the held token grow older than a 1 s bound: the scenario is about time passing.
async fn older_than_a_second() {
    tokio::time::sleep(Duration::from_millis(1100)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_with_max_age_fetch_a_token_rotated_behind_the_daemons_back() {
    let (backend, d) = fetched_once().await;
    let old = backend.token();
    let new = backend.rotate();
    older_than_a_second().await;

    // Without the bound nothing changes: the held token, no fetch.
    let (code, out) = verb(&d, &["headers"]).await;
    assert_eq!((code, out.trim()), (Some(0), format!("{{\"Authorization\":\"Bearer {old}\"}}").as_str()));
    assert_eq!(backend.fetches(), 1);

    let (code, out) = verb(&d, &["headers", "--max-age", "1s"]).await;
    assert_eq!((code, out.trim()), (Some(0), format!("{{\"Authorization\":\"Bearer {new}\"}}").as_str()));
    assert_eq!(backend.fetches(), 2, "exactly one fetch");

    // Confirmed a moment ago: a second helper run asks the backend nothing.
    let (code, out) = verb(&d, &["token", "--max-age", "1s"]).await;
    assert_eq!((code, out.trim()), (Some(0), new.as_str()));
    assert_eq!(backend.fetches(), 2);
    assert!(!d.daemon.output().contains(&new), "the token in the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_reads_with_max_age_at_once_make_one_fetch() {
    let (backend, d) = fetched_once().await;
    let new = backend.rotate();
    older_than_a_second().await;
    // Slow enough that every read arrives while the one fetch is in flight.
    backend.set_reply(Reply::Slow(Duration::from_millis(300)));
    let reads = (0..100).map(|_| get(&d.socket, "/v1/token?format=raw&max_age=1s"));
    let replies = join_all(reads).await;
    for reply in &replies {
        assert_eq!((reply.status, reply.body.as_str()), (200, new.as_str()));
    }
    assert_eq!(backend.fetches(), 2, "one fetch for 100 reads");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fetch_leaves_the_read_as_it_was_without_max_age() {
    let (backend, d) = fetched_once().await;
    let held = backend.token();
    older_than_a_second().await;
    backend.set_reply(Reply::Raw { status: 500, body: b"down".to_vec() });
    let (code, out) = verb(&d, &["token", "--max-age", "1s"]).await;
    assert_eq!((code, out.trim()), (Some(0), held.as_str()), "the held token, exit 0");
    // Asked at the read; the engine retries a failed fetch on its own backoff after that.
    assert!(backend.fetches() >= 2, "it was asked");

    // A malformed bound is the client's mistake.
    let reply = get(&d.socket, "/v1/token?max_age=soon").await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(reply.body.contains("max_age"), "{}", reply.body);
    let (code, out) = verb(&d, &["headers", "--max-age", "0s"]).await;
    assert_eq!(code, Some(2), "{out}");
}
