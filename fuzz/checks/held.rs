//! What the socket and proxy harnesses share: a daemon's state holding a valid token with no
//! engine running (so a refresh fails at once, 503, instead of reaching a backend), and one
//! exchange with a server read until it is done or quiet.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mcp_token_sync::config::{Config, Environment, TokenConfig};
use mcp_token_sync::engine::Engine;
use mcp_token_sync::metrics::Metrics;
use mcp_token_sync::registry::TokenHandle;
use mcp_token_sync::source::Source;
use mcp_token_sync::token::{CurrentToken, Token, TokenState};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

/// The one token `sinks` (TOML) describe, held by a token handle holding `token` for a year.
pub fn holding(token: &str, sinks: &str) -> (Arc<TokenConfig>, Arc<TokenHandle>, Arc<Metrics>) {
    let text = format!("[source]\nurl = \"http://127.0.0.1:9/current-token/\"\n\n{sinks}");
    let config = Config::parse(&text, Path::new("fuzz.toml"), &Environment::default()).unwrap();
    let config = Arc::new(config.tokens.into_iter().next().unwrap());
    let source = Source::new(&config).unwrap();
    let now = SystemTime::now();
    let held = TokenState::Valid(Arc::new(CurrentToken::new(
        Arc::from("default"),
        Token::new(token.to_owned()),
        Some("fuzz".into()),
        now + Duration::from_secs(365 * 24 * 3600),
        now,
        3,
    )));
    let metrics = Arc::new(Metrics::new());
    let token_metrics = Arc::new(metrics.token("default"));
    // No engine runs: a refresh fails at once instead of reaching a backend.
    let (_, engine) = Engine::new(config.clone(), source, held, token_metrics.clone());
    let handle = Arc::new(TokenHandle {
        name: "default".into(),
        engine,
        config: watch::channel(config.clone()).1,
        sinks: watch::channel(Vec::new()).1,
        metrics: token_metrics,
        login: Arc::default(),
    });
    (config, handle, metrics)
}

/// Writes `request` (then closes the writing side, if `half_close`) and reads until the server
/// is done, or quiet for `quiet`. The server may close early on garbage; what it answered is
/// still read.
pub async fn exchange(
    mut stream: impl AsyncRead + AsyncWrite + Unpin,
    request: &[u8],
    half_close: bool,
    quiet: Duration,
) -> Vec<u8> {
    let _ = stream.write_all(request).await;
    if half_close {
        let _ = stream.shutdown().await;
    }
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(Ok(n @ 1..)) = tokio::time::timeout(quiet, stream.read(&mut buf)).await {
        answer.extend_from_slice(&buf[..n]);
    }
    answer
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
