//! Log output: human text on stderr by default, or one JSON object per line.
//!
//! Logs name a token only by version and fingerprint; no code path formats the secret.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// `level` (from `--log-level`), else `MCP_TOKEN_SYNC_LOG`, is a filter such as `debug` or
/// `mcp_token_sync=debug`; the default shows this crate's info and everyone's warnings.
pub fn init(format: LogFormat, level: Option<&str>) {
    let filter = level
        .map(EnvFilter::new)
        .or_else(|| EnvFilter::try_from_env("MCP_TOKEN_SYNC_LOG").ok())
        .unwrap_or_else(|| EnvFilter::new("warn,mcp_token_sync=info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    // journald stamps each line itself.
    let under_journald = std::env::var_os("JOURNAL_STREAM").is_some();
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text if under_journald => builder.without_time().init(),
        LogFormat::Text => builder.init(),
    }
}
