//! The configuration file (DESIGN §3, §15): one place shared by `check`, `run`, `once` and
//! reload.
//!
//! Loading is three passes. serde turns the TOML into the `schema` sections and flat sink tables
//! (unknown keys, wrong types and malformed leaf `values` such as durations, modes and cron
//! expressions fail here, with toml's span); `tokens` makes either shape of the file (one
//! top-level `[source]`, or `[tokens.NAME]` tables) a list of [`TokenConfig`]s; then `check`
//! looks at what needs several keys at once or the environment (paths, users, cross-key
//! limits). Every pass reports problems as [`ConfigError`], which names the file, the key and
//! the line (`locate`).

mod check;
mod locate;
mod raw_sink;
mod schema;
mod sinks;
mod source;
mod tokens;
mod values;
mod writable;

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub(crate) use check::host_is_loopback;
pub use schema::{DaemonConfig, LogFormat, ProbeConfig, RefreshConfig, ValidateConfig};
pub use sinks::{
    EnvFileSinkConfig, ExecSinkConfig, FileFormat, FileSinkConfig, FileTarget, KeyringBackend,
    KeyringSinkConfig, OnExpiry, Ownership, ProxySinkConfig, SinkConfig, SocketSinkConfig,
};
pub use source::{
    AssertionAudience, AuthConfig, AuthKind, ClientAuth, ExpiryField, FieldsConfig, Format, Grant,
    SourceConfig, SourceKind,
};
pub use values::duration::{display as duration_display, parse as parse_duration};
pub use values::{ByteSize, CronExpr, Listen, Mode};
pub use writable::unwritable;

/// The name of the one token of a config with a top-level `[source]`.
pub const DEFAULT_TOKEN: &str = "default";

/// The whole configuration of one daemon: every token it serves (DESIGN §15).
#[derive(Debug, Clone)]
pub struct Config {
    pub daemon: DaemonConfig,
    /// By name. A config with a top-level `[source]` has the one token [`DEFAULT_TOKEN`].
    pub tokens: Vec<TokenConfig>,
    /// Daemon-wide sinks, sockets serving every token: a config with `[tokens.NAME]` tables
    /// only (with a top-level `[source]`, the top-level sinks are that token's own).
    pub sinks: Vec<SinkConfig>,
    /// Whether the file names its tokens (`[tokens.NAME]`): a daemon-wide socket then answers
    /// the unnamed paths of DESIGN §7 by asking for a name.
    pub named: bool,
}

/// One token: where it comes from, when and how it is checked, who may read it, and where it
/// goes. Everything a token's engine and sinks need, and nothing of another token.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenConfig {
    pub name: String,
    pub source: SourceConfig,
    pub refresh: RefreshConfig,
    pub validate: ValidateConfig,
    /// Narrow who may read the token through a daemon-wide socket (root and the daemon's uid
    /// always may); empty: whoever the socket serves.
    pub allow_uids: Vec<u32>,
    pub allow_gids: Vec<u32>,
    pub sinks: Vec<SinkConfig>,
    /// Where its state file and OAuth store live: `daemon.state_dir`, or
    /// `daemon.state_dir/tokens/NAME` for a named token other than `default`.
    pub state_dir: std::path::PathBuf,
    /// `daemon.state_dir`: where what tokens share is kept (OAuth client registrations, by
    /// issuer).
    pub shared_state_dir: std::path::PathBuf,
}

impl Config {
    pub fn token(&self, name: &str) -> Option<&TokenConfig> {
        self.tokens.iter().find(|t| t.name == name)
    }

    /// Where a token's keys are in the file, for messages: nothing for the one token of a
    /// top-level `[source]`, `tokens.NAME.` for a named one.
    pub fn key_prefix(&self, token: &TokenConfig) -> String {
        if self.named { format!("tokens.{}.", token.name) } else { String::new() }
    }
}

/// The file as serde reads it; [`tokens::assemble`] makes it a [`Config`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    source: Option<SourceConfig>,
    #[serde(default)]
    refresh: RefreshConfig,
    #[serde(default)]
    validate: ValidateConfig,
    #[serde(default)]
    daemon: DaemonConfig,
    #[serde(default)]
    sink: Vec<raw_sink::RawSink>,
    #[serde(default)]
    tokens: std::collections::BTreeMap<String, tokens::RawToken>,
}

/// A configuration problem, located in the file where possible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key, e.g. `refresh.min_interval` or `sink[2].mode`.
    pub key: Option<String>,
    /// 1-based line in the file.
    pub line: Option<usize>,
    pub message: String,
}

/// Every problem found in one configuration file.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub file: PathBuf,
    pub problems: Vec<Problem>,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}", self.file.display())?;
            if let Some(line) = p.line {
                write!(f, " line {line}")?;
            }
            if let Some(key) = &p.key {
                write!(f, ", key `{key}`")?;
            }
            write!(f, ": {}", p.message)?;
        }
        Ok(())
    }
}

/// What the checks need from the process environment, passed in so tests need not touch the
/// real environment: the directories a path may name as `${VARIABLE}`.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    /// `$CREDENTIALS_DIRECTORY`, set by systemd for units with `LoadCredential=`.
    pub credentials_directory: Option<PathBuf>,
    /// `$STATE_DIRECTORY`, set by systemd for units with `StateDirectory=` (the system service)
    /// and by the user service itself. A user running the daemon by hand gets where the user
    /// service keeps it: `~/.local/state/mcp-token-sync`.
    pub state_directory: Option<PathBuf>,
    /// `$RUNTIME_DIRECTORY`, set by systemd for units with `RuntimeDirectory=`; by hand, for a
    /// user, `$XDG_RUNTIME_DIR/mcp-token-sync`.
    pub runtime_directory: Option<PathBuf>,
}

impl Environment {
    pub fn from_process() -> Self {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        // systemd lists several directories with ':' when a unit names several; ours names one.
        let first = |name: &str| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.split(':').next().filter(|d| !d.is_empty()).map(PathBuf::from))
        };
        let user = !nix::unistd::geteuid().is_root();
        let ours = |dir: PathBuf| dir.join("mcp-token-sync");
        Environment {
            credentials_directory: var("CREDENTIALS_DIRECTORY"),
            state_directory: first("STATE_DIRECTORY")
                .or_else(|| user.then(|| var("HOME").map(|home| ours(home.join(".local/state")))).flatten()),
            runtime_directory: first("RUNTIME_DIRECTORY")
                .or_else(|| user.then(|| var("XDG_RUNTIME_DIR").map(ours)).flatten()),
        }
    }
}

/// Reads and checks the file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_owned(),
        problems: vec![Problem {
            key: None,
            line: None,
            message: format!("cannot read the configuration file: {e}"),
        }],
    })?;
    Config::parse(&text, path, &Environment::from_process())
}

impl Config {
    /// Parses and fully checks a configuration; `file` is only used in error messages.
    pub fn parse(text: &str, file: &Path, env: &Environment) -> Result<Config, ConfigError> {
        let fail = |problems| ConfigError { file: file.to_owned(), problems };
        let raw: RawConfig = toml::from_str(text).map_err(|e| fail(vec![locate::serde_problem(text, &e)]))?;
        let mut found = Problems::default();
        let mut config = tokens::assemble(raw, text, &mut found);
        check::resolve(&mut config, env, &mut found);
        let problems = found.problems;
        if problems.is_empty() { Ok(config) } else { Err(fail(locate::lines_for(text, problems))) }
    }
}

/// Problems found so far, each under its dotted key; lines are added once all are in.
#[derive(Default)]
struct Problems {
    problems: Vec<Problem>,
    /// Put before every key added: `tokens.calendar.` while a named token is checked.
    prefix: String,
}

impl Problems {
    fn add(&mut self, key: impl Into<String>, message: impl Into<String>) {
        let key = format!("{}{}", self.prefix, key.into());
        self.problems.push(Problem { key: Some(key), line: None, message: message.into() });
    }

    /// `key` as it will be recorded: under the current prefix.
    fn full_key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// Runs `check` with every key it adds under `prefix`: the checks of a token's tables name
    /// `source.url`, and a named token's problem is `tokens.NAME.source.url`.
    fn under<T>(&mut self, prefix: &str, check: impl FnOnce(&mut Problems) -> T) -> T {
        let outer = std::mem::replace(&mut self.prefix, prefix.to_owned());
        let result = check(self);
        self.prefix = outer;
        result
    }
}

#[cfg(test)]
mod tests;
