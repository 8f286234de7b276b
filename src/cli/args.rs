// The command line's definition (DESIGN §8), and nothing else: the build script includes this
// file to generate the man page and shell completions, so they cannot drift from `--help`.
// It may use only `clap` and `std`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Where `--config` points unless it or `$MCP_TOKEN_SYNC_CONFIG` says otherwise.
pub const DEFAULT_CONFIG: &str = "/etc/mcp-token-sync/config.toml";
/// Where client verbs look for the daemon unless `--socket` or `$MCP_TOKEN_SYNC_SOCKET` say.
pub const DEFAULT_SOCKET: &str = "/run/mcp-token-sync/api.sock";

/// `--version`: the version and the optional cargo features built in.
#[cfg(feature = "secret-service")]
pub(crate) const LONG_VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\nfeatures: +secret-service");
#[cfg(not(feature = "secret-service"))]
pub const LONG_VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\nfeatures: -secret-service");

#[derive(Parser)]
#[command(
    name = "mcp-token-sync",
    version,
    long_version = LONG_VERSION,
    about = "Keeps a short-lived API token fresh and hands it to the programs that need it",
    long_about = "Keeps a short-lived API token fresh and hands it to the programs that need it.\n\n\
        One daemon per host fetches each of its tokens before it expires — from a current-token \
        endpoint, an OAuth 2.0 server, a helper command (az, gcloud, op, vault), a GitHub App, a \
        token exchange (RFC 8693) or a cloud metadata server — validates it, and publishes it to \
        files, env files, keyrings, a Unix-socket API, exec hooks, and local proxies that add it to \
        any client's requests. See /usr/share/doc/mcp-token-sync/README.md."
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log as "text" or "json" (one object per line); overrides [daemon] log_format.
    #[arg(long, global = true, value_parser = ["text", "json"])]
    pub log_format: Option<String>,
    /// Log filter, e.g. "debug" or "mcp_token_sync=debug"; overrides MCP_TOKEN_SYNC_LOG.
    #[arg(long, global = true)]
    pub log_level: Option<String>,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Run the daemon.
    Run(ConfigPath),
    /// Validate the config and print what it resolves to.
    Check(ConfigPath),
    /// Fetch once, validate, write every non-socket sink, and exit: every token, or one.
    Once {
        #[command(flatten)]
        config: ConfigPath,
        /// Only this token (DESIGN §15).
        #[arg(long)]
        token: Option<String>,
    },
    /// A self-contained demo: a built-in backend that rotates its token every 20 s, the daemon,
    /// a proxy, and sinks in a temporary directory.
    Demo,
    /// Print the current token (for scripts and credential helpers).
    Token {
        #[command(flatten)]
        socket: SocketPath,
        /// Print the token object instead of the token alone.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        fresh: MaxAge,
    },
    /// Report that the backend rejected the token; print the fresh one.
    #[command(name = "report-401")]
    Report401 {
        #[command(flatten)]
        socket: SocketPath,
        /// The version that was rejected (default: the current one).
        #[arg(long)]
        version: Option<u64>,
    },
    /// Force a fetch now.
    Refresh(SocketPath),
    /// A short summary of the daemon's state, or the /v1/status JSON.
    Status {
        #[command(flatten)]
        socket: SocketPath,
        /// Print the /v1/status JSON instead of the summary.
        #[arg(long)]
        json: bool,
    },
    /// Print each new version as it arrives (never the token itself).
    Watch(SocketPath),
    /// Print {"HEADER": "SCHEME <token>"} as one JSON object: a headersHelper for MCP hosts.
    Headers {
        #[command(flatten)]
        socket: SocketPath,
        /// The header's name.
        #[arg(long, default_value = "Authorization")]
        header: String,
        /// Written before the token; default "Bearer" for Authorization, none for other headers.
        #[arg(long)]
        scheme: Option<String>,
        #[command(flatten)]
        fresh: MaxAge,
    },
    /// Log the daemon in to its OAuth authorization server: prints the URL (and code) to open,
    /// waits until the daemon holds a token.
    Login {
        #[command(flatten)]
        socket: SocketPath,
        /// The device authorization grant: a code to enter on any device (the default when
        /// the server offers it).
        #[arg(long, conflicts_with = "browser")]
        device: bool,
        /// The authorization code grant in a browser, redirected to the daemon on 127.0.0.1.
        #[arg(long)]
        browser: bool,
    },
    /// A stdio MCP server for hosts that speak only stdio (Claude Desktop): relays each message
    /// to the Streamable HTTP endpoint URL, usually a proxy sink, which adds the token.
    #[command(
        after_help = "Claude Desktop: {\"command\": \"mcp-token-sync\", \"args\": [\"bridge\", \"http://127.0.0.1:8787/mcp\"]}\n\
        stdout carries only MCP messages, one a line; logs go to stderr."
    )]
    Bridge {
        /// An extra header on every request, as 'Name: value' (repeatable). The token belongs in
        /// the proxy, not here: argv is readable by every user of the host.
        #[arg(long = "header", value_name = "NAME: VALUE")]
        headers: Vec<String>,
        /// Give up on a message whose answer has not begun after this long and answer the host
        /// with an error: "60s", "500ms", "5m". An answer that has begun (a stream) is not cut.
        #[arg(long, default_value = "60s", value_parser = duration_arg)]
        timeout: Duration,
        /// The MCP server's Streamable HTTP endpoint, e.g. http://127.0.0.1:8787/mcp.
        url: String,
    },
}

#[derive(Args)]
pub(crate) struct MaxAge {
    /// Fetch first if the token was fetched (or last confirmed unchanged) longer ago than this:
    /// "30s" for a helper a host runs only when it connects. A failed fetch still prints the
    /// token held.
    #[arg(long, value_parser = duration_arg)]
    pub max_age: Option<Duration>,
}

#[derive(Args)]
pub(crate) struct SocketPath {
    /// The daemon's socket. Only one served by root, your own user, or the daemon's user
    /// (mcp-token-sync, or the one MCP_TOKEN_SYNC_DAEMON_USER names) is talked to.
    #[arg(long, env = "MCP_TOKEN_SYNC_SOCKET", default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// The token to ask about, by name, on a daemon that serves several. Without it, refresh
    /// and status cover every token; the other verbs name the tokens to choose from.
    #[arg(long = "token", env = "MCP_TOKEN_SYNC_TOKEN", value_name = "NAME")]
    pub token: Option<String>,
    /// Give up after this long without an answer (a stopped or wedged daemon), exit 1: "10s",
    /// "500ms", "2m". For watch, until the stream opens.
    #[arg(long, default_value = "10s", value_parser = duration_arg)]
    pub timeout: Duration,
}

/// `--timeout` and `--max-age`: a whole number with a unit, `ms`, `s` or `m`.
fn duration_arg(text: &str) -> Result<Duration, String> {
    let digits = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let number: u64 =
        number.parse().map_err(|_| format!("{text:?} is not a duration; write e.g. \"10s\""))?;
    let seconds = |per: u64| number.checked_mul(per).map(Duration::from_secs);
    let limit = match unit {
        "ms" => Some(Duration::from_millis(number)),
        "s" => seconds(1),
        "m" => seconds(60),
        _ => return Err(format!("{text:?} is not a duration; write e.g. \"10s\", \"500ms\" or \"2m\"")),
    };
    match limit {
        Some(limit) if !limit.is_zero() => Ok(limit),
        Some(_) => Err("the duration must be longer than zero".into()),
        None => Err(format!("{text:?} is too long")),
    }
}

#[derive(Args)]
pub(crate) struct ConfigPath {
    /// The configuration file.
    #[arg(long, env = "MCP_TOKEN_SYNC_CONFIG", default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
}
