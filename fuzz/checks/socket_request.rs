//! Whatever a client writes to the socket, the daemon answers with well-formed HTTP (no 5xx
//! but 503), never shows the token in an answer that is not a 200, and keeps serving the next
//! client. The real API server listens on a real Unix socket, holding a valid token; its engine
//! is not running, so refreshes fail at once with 503 instead of reaching a backend. Shared by
//! the fuzz target and the corpus replay in `cargo test`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::held::{self, contains};
use mcp_token_sync::api::{self, Scope, Shared};
use mcp_token_sync::config::SinkConfig;
use tokio::net::UnixStream;
use tokio::sync::watch;
use tokio_util::sync::{CancellationToken, DropGuard};

pub const TOKEN: &str = "fuzz-secret-token-4f1c9a7e2b";
/// How long an answer may pause before we take it as complete (a `/v1/watch` stream never ends).
pub const QUIET: Duration = Duration::from_millis(30);
/// For answers that must come, however slow the instrumented build.
const PATIENCE: Duration = Duration::from_secs(5);

pub struct Harness {
    socket: PathBuf,
    _stop: DropGuard,
    _dir: tempfile::TempDir,
}

impl Harness {
    /// Starts the API server on the current tokio runtime.
    pub async fn start() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("api.sock");
        let sink = format!("[[sink]]\ntype = \"socket\"\npath = \"{}\"\n", socket.display());
        let (config, token, metrics) = held::holding(TOKEN, &sink);
        let SinkConfig::Socket(socket_config) = config.sinks[0].clone() else { unreachable!() };
        let tokens = Arc::new(std::collections::BTreeMap::from([("default".to_owned(), token)]));
        let shared = Arc::new(Shared {
            scope: Scope::Token("default".into()),
            tokens: watch::channel(tokens).1,
            sinks: watch::channel(Vec::new()).1,
            metrics,
        });
        let stop = CancellationToken::new();
        tokio::spawn(api::server(&socket_config, shared).unwrap().serve(stop.clone()));
        let harness = Harness { socket, _stop: stop.drop_guard(), _dir: dir };
        // The harness itself works: a plain request through it is answered.
        let answer =
            harness.exchange(b"GET /v1/token?format=raw HTTP/1.1\r\nHost: x\r\n\r\n", PATIENCE).await;
        assert!(answer.starts_with(b"HTTP/1.1 200") && contains(&answer, TOKEN.as_bytes()));
        harness
    }

    /// Writes `request`, closes the writing side, and reads until the daemon is done, or quiet
    /// for `quiet`.
    pub async fn exchange(&self, request: &[u8], quiet: Duration) -> Vec<u8> {
        let stream = UnixStream::connect(&self.socket).await.expect("the daemon accepts");
        held::exchange(stream, request, true, quiet).await
    }

    /// Panics unless a plain request is answered.
    pub async fn assert_serving(&self) {
        let next = self.exchange(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n", PATIENCE).await;
        assert!(
            next.starts_with(b"HTTP/1.1 200"),
            "the next client got {:?}",
            String::from_utf8_lossy(&next)
        );
    }
}

/// Panics if an answer to any request breaks a property.
pub fn check_answer(answer: &[u8]) {
    for (code, text) in answers(answer) {
        assert!(
            matches!(code, 200 | 304 | 400..=499 | 503),
            "answered {code}: {}",
            String::from_utf8_lossy(text)
        );
        if code != 200 {
            assert!(!contains(text, TOKEN.as_bytes()), "a {code} answer shows the token");
        }
    }
}

/// Status codes of the answers in `stream`, each with the bytes up to the next answer. An answer
/// starts with `HTTP/1.1 NNN `; bodies without a final newline run straight into the next one,
/// and none of ours contains that text.
fn answers(stream: &[u8]) -> Vec<(u16, &[u8])> {
    const START: &[u8] = b"HTTP/1.1 ";
    let status_at = |i: usize| -> Option<u16> {
        let code = stream.get(i + START.len()..i + START.len() + 4)?;
        if !stream[i..].starts_with(START) || code[3] != b' ' {
            return None;
        }
        std::str::from_utf8(&code[..3]).ok()?.parse().ok()
    };
    let starts: Vec<(usize, u16)> =
        (0..stream.len()).filter_map(|i| status_at(i).map(|code| (i, code))).collect();
    starts
        .iter()
        .enumerate()
        .map(|(k, &(at, code))| {
            let end = starts.get(k + 1).map_or(stream.len(), |&(next, _)| next);
            (code, &stream[at..end])
        })
        .collect()
}
