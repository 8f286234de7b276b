//! A daemon that accepts connections but never answers (stopped with SIGSTOP, or wedged): every
//! client verb gives up after `--timeout`, exits 1 with one line on stderr and nothing on
//! stdout, so an MCP host that runs `headers` as its headersHelper does not hang with it.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::{Backend, api};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_verb_gives_up_on_a_stopped_daemon() {
    let backend = Backend::start().await;
    let d = api::start(&backend, "");
    api::get_until(&d.socket, "/v1/token", "a token", |r| r.status == 200).await;
    d.daemon.signal(Signal::SIGSTOP);
    let socket = d.socket.to_str().unwrap();
    for verb in [
        &["token"][..],
        &["token", "--json"],
        &["headers"],
        &["status"],
        &["refresh"],
        &["report-401"],
        &["watch"],
    ] {
        let started = Instant::now();
        let out = tokio::task::block_in_place(|| {
            Command::new(support::binary::BIN)
                .args(verb)
                .args(["--socket", socket, "--timeout", "1s"])
                .stdin(Stdio::null())
                .output()
                .unwrap()
        });
        let took = started.elapsed();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{verb:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{verb:?} printed {:?}", String::from_utf8_lossy(&out.stdout));
        assert!(stderr.contains("did not answer within 1s"), "{verb:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{verb:?}: {stderr}");
        assert!(took < Duration::from_secs(5), "{verb:?} took {took:?}");
    }
    d.daemon.signal(Signal::SIGCONT);
    // Awake again, the same verbs answer.
    let (status, output) = support::binary::run_verb(&["token", "--socket", socket, "--timeout", "5s"]);
    assert!(status.success(), "{output}");
}

#[test]
fn the_timeout_must_be_a_duration() {
    for bad in ["10", "ten", "0s", "1h"] {
        let (status, output) = support::binary::run_verb(&["token", "--timeout", bad]);
        assert_eq!(status.code(), Some(2), "{bad}: {output}");
    }
}
