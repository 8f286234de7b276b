//! The fuzz targets' corpora, replayed through the same checks the targets make (fuzz/checks/),
//! so an input that once found a bug fails `cargo test` if the bug comes back. No cargo-fuzz or
//! nightly needed: only the inputs and the properties.

use std::path::{Path, PathBuf};

#[path = "../fuzz/checks/backend_answer.rs"]
mod backend_answer;
#[path = "../fuzz/checks/config.rs"]
mod config;
#[path = "../fuzz/checks/held.rs"]
mod held;
#[path = "../fuzz/checks/proxy_request.rs"]
mod proxy_request;
#[path = "../fuzz/checks/socket_request.rs"]
mod socket_request;

/// Every input kept for `target`; a corpus that vanished is a failure, not an empty pass.
fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let inputs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect();
    assert!(inputs.len() >= 10, "{}: only {} inputs", dir.display(), inputs.len());
    inputs
}

/// Runs `check` on each input, naming the input that fails.
fn replay(target: &str, check: impl Fn(&[u8]) + std::panic::RefUnwindSafe) {
    for (path, input) in corpus(target) {
        if std::panic::catch_unwind(|| check(&input)).is_err() {
            panic!("{} breaks a property of the {target} target", path.display());
        }
    }
}

#[test]
fn backend_answers_of_the_corpus_keep_their_properties() {
    replay("backend_answer", backend_answer::check);
}

#[test]
fn config_files_of_the_corpus_keep_their_properties() {
    // libFuzzer hands the target only inputs that are UTF-8, as `&str`.
    replay("config", |bytes| {
        if let Ok(text) = std::str::from_utf8(bytes) {
            config::check(text);
        }
    });
}

/// Sends the target's kept inputs to a live server and checks each answer. In groups that run
/// at once, each group followed by a plain request that must be served: the 30 ms of quiet
/// each answer is given would make one at a time take a minute.
async fn replay_exchanges(
    target: &str,
    exchange: impl AsyncFn(&[u8]) -> Vec<u8>,
    check: fn(&[u8]),
    assert_serving: impl AsyncFn(),
) {
    const AT_ONCE: usize = 32;
    for group in corpus(target).chunks(AT_ONCE) {
        let answers =
            futures_util::future::join_all(group.iter().map(|(_, request)| exchange(request))).await;
        for ((path, _), answer) in group.iter().zip(answers) {
            if std::panic::catch_unwind(|| check(&answer)).is_err() {
                panic!("{} breaks a property of the {target} target", path.display());
            }
        }
        assert_serving().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_requests_of_the_corpus_keep_their_properties() {
    let harness = socket_request::Harness::start().await;
    replay_exchanges(
        "socket_request",
        async |request| harness.exchange(request, socket_request::QUIET).await,
        socket_request::check_answer,
        async || harness.assert_serving().await,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_requests_of_the_corpus_keep_their_properties() {
    let harness = proxy_request::Harness::start().await;
    replay_exchanges(
        "proxy_request",
        async |request| harness.exchange(request, proxy_request::QUIET).await,
        proxy_request::check_answer,
        async || harness.assert_serving().await,
    )
    .await;
}
