//! The verbs that run the daemon's parts: `run`, `check`, `once`, `demo`.

use std::path::Path;
use std::process::ExitCode;

use super::{CONFIG_ERROR, Outcome, RUNTIME_FAILURE, fail};
use crate::config::{self, Config, LogFormat};
use crate::daemon::{self, Parts};
use crate::logging::{self, Flush, Logging};
use crate::{demo as demo_mod, process};

/// The most threads for blocking work at once, beside the two workers.
const BLOCKING_THREADS: usize = 32;

/// What the command line says about logging, applied over the config's choice.
pub(super) struct LogChoice {
    pub format: Option<LogFormat>,
    pub level: Option<String>,
}

/// Loads and fully checks the config, as every config-reading verb does.
fn load(path: &Path) -> Result<(Config, Parts), ExitCode> {
    let config = config::load(path).map_err(|e| fail(CONFIG_ERROR, e))?;
    let parts =
        Parts::build(config.clone()).map_err(|e| fail(CONFIG_ERROR, format!("{}: {e}", path.display())))?;
    Ok((config, parts))
}

/// What a verb that holds the token starts with. `flush` writes out the queued log lines
/// when dropped, so it is held until the verb returns.
struct Started {
    logging: Logging,
    flush: Flush,
    runtime: tokio::runtime::Runtime,
}

/// Common start of the verbs that hold the token: logs, process hardening, the runtime.
fn start(logs: &LogChoice, configured: LogFormat) -> Result<Started, ExitCode> {
    let (logging, flush) = logging::init(logs.format, configured, logs.level.as_deref());
    process::harden().map_err(|e| fail(RUNTIME_FAILURE, format!("cannot disable core dumps: {e}")))?;
    if let Err(e) = process::raise_fd_limit() {
        tracing::warn!("cannot raise the open-file limit, sockets may run out of descriptors: {e}");
    }
    // Blocking work (file writes, name lookups) is short, and idle threads end after 10 s; the
    // cap (tokio's default is 512) bounds what 100 tokens starting at once cost, while leaving
    // room for a few writes stuck on a hung filesystem without holding up the other sinks.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(BLOCKING_THREADS)
        .enable_all()
        .build()
        .expect("the tokio runtime starts");
    Ok(Started { logging, flush, runtime })
}

/// Runs a long-lived future, then gives blocking sink writes a moment before the process exits.
fn block_on_then_stop<T>(rt: tokio::runtime::Runtime, work: impl std::future::Future<Output = T>) -> T {
    let result = rt.block_on(work);
    rt.shutdown_timeout(std::time::Duration::from_millis(500));
    result
}

pub(super) fn run(path: &Path, logs: &LogChoice) -> Outcome {
    let (config, parts) = load(path)?;
    let Started { logging, flush, runtime } = start(logs, config.daemon.log_format)?;
    let result = block_on_then_stop(runtime, daemon::serve(path.to_owned(), parts, logging));
    drop(flush);
    result.map_err(|e| fail(RUNTIME_FAILURE, e))
}

pub(super) fn check(path: &Path) -> Outcome {
    let (config, _) = load(path)?;
    // Read a second time for the lines of what this user cannot write; load read it whole.
    let text = std::fs::read_to_string(path).unwrap_or_default();
    config::unwritable(&config, &text, path).map_err(|e| fail(CONFIG_ERROR, e))?;
    let mut resolved = toml::to_string(&config).expect("the config serializes");
    for token in config.tokens.iter().filter(|t| t.source.kind == crate::config::SourceKind::Oauth2) {
        // The current-token answer's fields mean nothing to an oauth2 source.
        let table = format!("[{}source.fields]\n", config.key_prefix(token));
        if let Some(start) = resolved.find(&table) {
            let end = resolved[start..].find("\n\n").map_or(resolved.len(), |at| start + at + 2);
            resolved.replace_range(start..end, "");
        }
    }
    let count = match config.tokens.len() {
        1 => String::new(),
        n => format!(
            " ({n} tokens: {})",
            config.tokens.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(", ")
        ),
    };
    println!("# {} is valid{count}. Resolved, with defaults:\n\n{resolved}", path.display());
    for token in &config.tokens {
        if let Some(note) = login_note(&config, token) {
            println!("{note}");
        }
    }
    Ok(())
}

/// What `check` adds for a token that logs in (DESIGN §13): the redirect URI a client
/// registered by hand needs, or why `login` cannot work with these keys.
fn login_note(config: &Config, token: &crate::config::TokenConfig) -> Option<String> {
    use crate::config::{Grant, SinkConfig, SourceKind};
    let source = &token.source;
    if source.kind != SourceKind::Oauth2 || source.grant.unwrap_or_default() != Grant::RefreshToken {
        return None;
    }
    let socket = token.sinks.iter().chain(&config.sinks).find_map(|sink| match sink {
        SinkConfig::Socket(socket) => Some(&socket.path),
        _ => None,
    });
    let Some(socket) = socket else {
        return Some(
            "# oauth2: `mcp-token-sync login` talks to the daemon through a socket sink, and this\n\
             # config has none: add [[sink]] type = \"socket\" (or seed source.refresh_token_file)."
                .into(),
        );
    };
    let mut command = if socket.as_os_str() == super::DEFAULT_SOCKET {
        "mcp-token-sync login".to_owned()
    } else {
        format!("mcp-token-sync login --socket {}", socket.display())
    };
    if config.named {
        command += &format!(" --token {}", token.name);
    }
    if source.issuer.is_none() && source.resource.is_none() {
        return Some(
            "# oauth2: `mcp-token-sync login` needs source.issuer or source.resource (the server's\n\
             # metadata); with source.token_endpoint alone, seed a refresh token with\n\
             # source.refresh_token_file instead."
                .into(),
        );
    }
    let client = match &source.client_id {
        Some(id) => format!("client {id:?} must allow the redirect URI"),
        None => "`login` registers a client where the server allows it (RFC 7591);\n\
                 # one registered by hand (source.client_id) must allow the redirect URI"
            .into(),
    };
    Some(format!(
        "# oauth2: log in with `{command}`. For a browser login, {client}\n\
         # http://127.0.0.1/callback (any port: RFC 8252 §7.3)."
    ))
}

pub(super) fn once(path: &Path, token: Option<&str>, logs: &LogChoice) -> Outcome {
    let (config, parts) = load(path)?;
    if let Some(name) = token
        && config.token(name).is_none()
    {
        let names: Vec<&str> = config.tokens.iter().map(|t| t.name.as_str()).collect();
        return Err(fail(
            CONFIG_ERROR,
            format!("--token {name:?}: no such token in {} (it has: {})", path.display(), names.join(", ")),
        ));
    }
    let Started { flush, runtime, .. } = start(logs, config.daemon.log_format)?;
    let result = runtime.block_on(daemon::once(parts, token));
    drop(flush);
    result.map_err(|e| fail(RUNTIME_FAILURE, e))
}

pub(super) fn demo(logs: &LogChoice) -> Outcome {
    let Started { logging, flush, runtime } = start(logs, LogFormat::Text)?;
    let result = block_on_then_stop(runtime, demo_mod::run(logging));
    drop(flush);
    result.map_err(|e| fail(RUNTIME_FAILURE, format!("demo: {e:#}")))
}
