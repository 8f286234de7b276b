//! Log output: human text on stderr by default, or one JSON object per line; switched on reload
//! when `[daemon] log_format` changes, unless `--log-format` fixed it.
//!
//! Logs name a token only by version and fingerprint; no code path formats the secret.
//!
//! Logging never blocks (DESIGN §12): lines go through a bounded queue to a writer thread
//! (tracing-appender's), so a stderr nobody reads (a busy journald, a stopped terminal) never
//! stalls a connection, a fetch or a signal. When the queue is full, lines are dropped and
//! counted (`/metrics`), and one line says how many once the queue has drained.

use std::io::{IsTerminal, Write};
use std::sync::OnceLock;

use tracing::info;
use tracing_appender::non_blocking::{ErrorCounter, NonBlocking, NonBlockingBuilder, WorkerGuard};

use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::layer::{Layer, Layered, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, reload};

use crate::config::LogFormat;

type Filtered = Layered<EnvFilter, Registry>;
type FormatLayer = Box<dyn Layer<Filtered> + Send + Sync>;

/// Lines waiting for the writer thread; more are dropped. A few seconds of a busy daemon's
/// debug output, a few MiB at most.
const QUEUE_LINES: usize = 16 * 1024;

/// The queue's count of dropped lines, once the logger is installed.
static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();

/// The installed logger, and what can still change about it.
pub struct Logging {
    /// Given on the command line: it wins over the config, at start and on reload.
    fixed: Option<LogFormat>,
    current: LogFormat,
    handle: reload::Handle<FormatLayer, Filtered>,
    writer: NonBlocking,
}

/// Writes out what is queued when dropped: held by the verb until the process ends.
pub struct Flush {
    _guard: WorkerGuard,
}

/// The span every log line about the token `name` is written in: text lines read
/// `token{token=NAME}: …`, JSON lines carry `"token":"NAME"` (DESIGN §15).
pub(crate) fn token_span(name: &str) -> tracing::Span {
    tracing::info_span!("token", token = %name)
}

/// Log lines dropped so far because the queue was full.
pub fn dropped_lines() -> u64 {
    DROPPED.get().map_or(0, |counter| counter.dropped_lines() as u64)
}

/// The writer thread's stderr: after each batch, once the queue is empty, it says how many
/// lines were dropped since it last said so.
struct Stderr {
    reported: usize,
}

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        std::io::stderr().write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        // tracing-appender's worker flushes when it has emptied the queue.
        let dropped = DROPPED.get().map_or(0, ErrorCounter::dropped_lines);
        if dropped > self.reported {
            tracing::warn!(
                "{} log line(s) were dropped: stderr was not read fast enough (total {dropped})",
                dropped - self.reported
            );
            self.reported = dropped;
        }
        std::io::stderr().flush()
    }
}

/// Installs the logger. `level` (from `--log-level`), else `MCP_TOKEN_SYNC_LOG`, is a filter such
/// as `debug` or `mcp_token_sync=debug`; the default shows this crate's info and everyone's
/// warnings.
pub(crate) fn init(fixed: Option<LogFormat>, configured: LogFormat, level: Option<&str>) -> (Logging, Flush) {
    let filter = level
        .map(EnvFilter::new)
        .or_else(|| EnvFilter::try_from_env("MCP_TOKEN_SYNC_LOG").ok())
        .unwrap_or_else(|| EnvFilter::new("warn,mcp_token_sync=info"));
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(QUEUE_LINES)
        .thread_name("mcp-token-sync-log")
        .finish(Stderr { reported: 0 });
    let _ = DROPPED.set(writer.error_counter());
    let current = fixed.unwrap_or(configured);
    let (format, handle) = reload::Layer::new(format_layer(current, writer.clone()));
    tracing_subscriber::registry().with(filter).with(format).init();
    (Logging { fixed, current, handle, writer }, Flush { _guard: guard })
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
            match self.handle.reload(format_layer(configured, self.writer.clone())) {
                Ok(()) => {
                    self.current = configured;
                    info!("logging as {configured:?} from now on (log_format)");
                }
                Err(e) => tracing::warn!("cannot switch log_format: {e}"),
            }
        }
    }
}

fn format_layer(format: LogFormat, writer: NonBlocking) -> FormatLayer {
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    // journald stamps each line itself.
    let under_journald = std::env::var_os("JOURNAL_STREAM").is_some();
    match format {
        LogFormat::Json => {
            let json =
                tracing_subscriber::fmt::format().json().with_current_span(false).with_span_list(false);
            layer.json().event_format(TokenField(json)).boxed()
        }
        LogFormat::Text if under_journald => layer.without_time().boxed(),
        LogFormat::Text => layer.boxed(),
    }
}

/// A JSON line with `"token":"NAME"` at its top level when it is about a token (written in
/// its [`token_span`]), beside what tracing-subscriber's JSON format writes.
struct TokenField<F>(F);

impl<S, N, F> FormatEvent<S, N> for TokenField<F>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        // The span's fields as the JSON field formatter stored them: `{"token":"calendar"}`.
        let fields = ctx.event_scope().and_then(|scope| {
            let span = scope.from_root().find(|span| span.name() == "token")?;
            let extensions = span.extensions();
            Some(extensions.get::<FormattedFields<N>>()?.fields.clone())
        });
        let token = fields
            .and_then(|f| serde_json::from_str::<serde_json::Value>(&f).ok())
            .and_then(|v| v.get("token").cloned());
        let Some(token) = token else { return self.0.format_event(ctx, writer, event) };
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&line) {
            Ok(mut object) => {
                object.insert("token".into(), token);
                writeln!(writer, "{}", serde_json::Value::Object(object))
            }
            Err(_) => writer.write_str(&line),
        }
    }
}
