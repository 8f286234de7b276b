//! Log output: human text on stderr by default, or one JSON object per line; switched on reload
//! when `[daemon] log_format` changes, unless `--log-format` fixed it.
//!
//! Logs name a token only by version and fingerprint; no code path formats the secret.

use std::io::IsTerminal;

use tracing::info;
use tracing_subscriber::layer::{Layer, Layered, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, reload};

use crate::config::LogFormat;

type Filtered = Layered<EnvFilter, Registry>;
type FormatLayer = Box<dyn Layer<Filtered> + Send + Sync>;

/// The installed logger, and what can still change about it.
pub struct Logging {
    /// Given on the command line: it wins over the config, at start and on reload.
    fixed: Option<LogFormat>,
    current: LogFormat,
    handle: reload::Handle<FormatLayer, Filtered>,
}

/// Installs the logger. `level` (from `--log-level`), else `MCP_TOKEN_SYNC_LOG`, is a filter such
/// as `debug` or `mcp_token_sync=debug`; the default shows this crate's info and everyone's
/// warnings.
pub(crate) fn init(fixed: Option<LogFormat>, configured: LogFormat, level: Option<&str>) -> Logging {
    let filter = level
        .map(EnvFilter::new)
        .or_else(|| EnvFilter::try_from_env("MCP_TOKEN_SYNC_LOG").ok())
        .unwrap_or_else(|| EnvFilter::new("warn,mcp_token_sync=info"));
    let current = fixed.unwrap_or(configured);
    let (format, handle) = reload::Layer::new(format_layer(current));
    tracing_subscriber::registry().with(filter).with(format).init();
    Logging { fixed, current, handle }
}

impl Logging {
    /// Follows a reloaded `[daemon] log_format`.
    pub fn configure(&mut self, configured: LogFormat) {
        if let Some(fixed) = self.fixed {
            if configured != fixed {
                info!("log_format {configured:?} in the config is overridden by --log-format {fixed:?}");
            }
            return;
        }
        if configured != self.current {
            match self.handle.reload(format_layer(configured)) {
                Ok(()) => {
                    self.current = configured;
                    info!("logging as {configured:?} from now on (log_format)");
                }
                Err(e) => tracing::warn!("cannot switch log_format: {e}"),
            }
        }
    }
}

fn format_layer(format: LogFormat) -> FormatLayer {
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    // journald stamps each line itself.
    let under_journald = std::env::var_os("JOURNAL_STREAM").is_some();
    match format {
        LogFormat::Json => layer.json().boxed(),
        LogFormat::Text if under_journald => layer.without_time().boxed(),
        LogFormat::Text => layer.boxed(),
    }
}
