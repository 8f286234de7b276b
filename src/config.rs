//! The configuration file (DESIGN §3): schema, defaults, and the checks that `check`, `run`,
//! `once` and reload all share.
//!
//! Loading is two passes. serde turns the TOML into these structs (unknown keys, wrong types and
//! malformed leaf values such as durations fail here, with toml's span); then `Config::resolve`
//! checks what needs several keys at once or the environment (paths, users, cross-key limits).
//! Either pass reports problems as [`ConfigError`], which names the file, the key and the line.

mod locate;
mod sink;
mod values;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;

pub use values::Mode;
use values::duration;
pub use values::duration::{display as duration_display, parse as parse_duration};

pub const DEFAULT_PATH: &str = "/etc/mcp-token-sync/config.toml";

/// The whole configuration of one daemon instance (one token).
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    pub source: SourceConfig,
    pub refresh: RefreshConfig,
    pub validate: ValidateConfig,
    pub daemon: DaemonConfig,
    #[serde(rename = "sink")]
    pub sinks: Vec<SinkConfig>,
}

/// The file as serde reads it; sinks become [`SinkConfig`] in [`Config::parse`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    source: SourceConfig,
    #[serde(default)]
    refresh: RefreshConfig,
    #[serde(default)]
    validate: ValidateConfig,
    #[serde(default)]
    daemon: DaemonConfig,
    #[serde(default)]
    sink: Vec<sink::RawSink>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    pub url: Url,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    #[serde(default = "defaults::timeout", with = "duration")]
    pub timeout: Duration,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub allow_http: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthConfig>,
    #[serde(default)]
    pub fields: FieldsConfig,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    #[serde(rename = "type")]
    pub kind: AuthKind,
    pub credential_file: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthKind {
    Bearer,
    Header,
    Basic,
}

/// JSON Pointers (RFC 6901) into the backend's answer.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FieldsConfig {
    #[serde(default = "defaults::token_field")]
    pub token: String,
    /// Filled with the default by `Config::resolve` unless `expires_in` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<String>,
    #[serde(default = "defaults::valid_field")]
    pub valid: String,
    #[serde(default = "defaults::agent_field")]
    pub agent: String,
}

/// Where the expiry comes from, once `expires_at`/`expires_in` are resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpiryField<'a> {
    /// An RFC 3339 time.
    At(&'a str),
    /// Seconds counted from the response's arrival.
    In(&'a str),
}

impl FieldsConfig {
    pub fn expiry(&self) -> ExpiryField<'_> {
        match (&self.expires_at, &self.expires_in) {
            (_, Some(pointer)) => ExpiryField::In(pointer),
            (Some(pointer), None) => ExpiryField::At(pointer),
            (None, None) => ExpiryField::At(defaults::EXPIRES_AT_FIELD),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshConfig {
    #[serde(default = "defaults::lifetime_fraction")]
    pub lifetime_fraction: f64,
    #[serde(default = "defaults::jitter")]
    pub jitter: f64,
    #[serde(default = "defaults::min_interval", with = "duration")]
    pub min_interval: Duration,
    #[serde(default = "defaults::max_interval", with = "duration")]
    pub max_interval: Duration,
    #[serde(default = "defaults::backoff_max", with = "duration")]
    pub backoff_max: Duration,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cron: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ValidateConfig {
    #[serde(default = "defaults::min_remaining", with = "duration")]
    pub min_remaining: Duration,
    #[serde(default = "defaults::max_lifetime", with = "duration")]
    pub max_lifetime: Duration,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<ProbeConfig>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeConfig {
    pub url: Url,
    #[serde(default = "defaults::probe_header")]
    pub header: String,
    #[serde(default = "defaults::probe_expect")]
    pub expect: Vec<u16>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonConfig {
    #[serde(default = "defaults::state_dir")]
    pub state_dir: PathBuf,
    #[serde(default = "defaults::yes")]
    pub watch_config: bool,
    #[serde(default)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SinkConfig {
    File(FileSinkConfig),
    EnvFile(EnvFileSinkConfig),
    Keyring(KeyringSinkConfig),
    Socket(SocketSinkConfig),
    Exec(ExecSinkConfig),
}

impl SinkConfig {
    pub fn type_name(&self) -> &'static str {
        match self {
            SinkConfig::File(_) => "file",
            SinkConfig::EnvFile(_) => "env_file",
            SinkConfig::Keyring(_) => "keyring",
            SinkConfig::Socket(_) => "socket",
            SinkConfig::Exec(_) => "exec",
        }
    }

    /// The filesystem path this sink owns, if it writes one.
    pub fn path(&self) -> Option<&Path> {
        match self {
            SinkConfig::File(c) => Some(&c.path),
            SinkConfig::EnvFile(c) => Some(&c.path),
            SinkConfig::Socket(c) => Some(&c.path),
            SinkConfig::Keyring(_) | SinkConfig::Exec(_) => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileSinkConfig {
    pub path: PathBuf,
    pub format: FileFormat,
    pub mode: Mode,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// `owner`/`group` resolved to ids.
    #[serde(skip)]
    pub ids: Ownership,
    pub on_expiry: OnExpiry,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileFormat {
    /// The token alone, no newline.
    #[default]
    Raw,
    /// The `/v1/token` object.
    Json,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnExpiry {
    #[default]
    Keep,
    Remove,
}

/// Numeric owner and group of a written file; `None` leaves the writer's own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ownership {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EnvFileSinkConfig {
    pub path: PathBuf,
    pub variable: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_variable: Option<String>,
    pub mode: Mode,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(skip)]
    pub ids: Ownership,
    pub on_expiry: OnExpiry,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeyringSinkConfig {
    pub backend: KeyringBackend,
    pub service: String,
    pub account: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyringBackend {
    Keyutils,
    SecretService,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SocketSinkConfig {
    pub path: PathBuf,
    pub mode: Mode,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allow_uids: Vec<u32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allow_gids: Vec<u32>,
    /// Connections served at once; more wait in the kernel's backlog.
    pub max_connections: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExecSinkConfig {
    pub command: Vec<String>,
    #[serde(with = "duration")]
    pub timeout: Duration,
}

impl Default for FieldsConfig {
    fn default() -> Self {
        FieldsConfig {
            token: defaults::token_field(),
            expires_at: None,
            expires_in: None,
            valid: defaults::valid_field(),
            agent: defaults::agent_field(),
        }
    }
}

impl Default for RefreshConfig {
    fn default() -> Self {
        RefreshConfig {
            lifetime_fraction: defaults::lifetime_fraction(),
            jitter: defaults::jitter(),
            min_interval: defaults::min_interval(),
            max_interval: defaults::max_interval(),
            backoff_max: defaults::backoff_max(),
            cron: Vec::new(),
        }
    }
}

impl Default for ValidateConfig {
    fn default() -> Self {
        ValidateConfig {
            min_remaining: defaults::min_remaining(),
            max_lifetime: defaults::max_lifetime(),
            probe: None,
        }
    }
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig { state_dir: defaults::state_dir(), watch_config: true, log_format: LogFormat::Text }
    }
}

mod defaults {
    use super::Mode;
    use std::path::PathBuf;
    use std::time::Duration;

    pub const EXPIRES_AT_FIELD: &str = "/expires_at";

    pub fn timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub fn token_field() -> String {
        "/token".into()
    }
    pub fn valid_field() -> String {
        "/valid".into()
    }
    pub fn agent_field() -> String {
        "/agent_name".into()
    }
    pub fn lifetime_fraction() -> f64 {
        0.6
    }
    pub fn jitter() -> f64 {
        0.1
    }
    pub fn min_interval() -> Duration {
        Duration::from_secs(5)
    }
    pub fn max_interval() -> Duration {
        Duration::from_secs(15 * 60)
    }
    pub fn backoff_max() -> Duration {
        Duration::from_secs(120)
    }
    pub fn min_remaining() -> Duration {
        Duration::from_secs(10)
    }
    pub fn max_lifetime() -> Duration {
        Duration::from_secs(30 * 24 * 3600)
    }
    pub fn probe_header() -> String {
        "X-Google-MCP-Token".into()
    }
    pub fn probe_expect() -> Vec<u16> {
        vec![200]
    }
    pub fn state_dir() -> PathBuf {
        "/var/lib/mcp-token-sync".into()
    }
    pub fn yes() -> bool {
        true
    }
    pub const PRIVATE_MODE: Mode = Mode(0o600);
    pub const SOCKET_MODE: Mode = Mode(0o660);
    pub const MAX_CONNECTIONS: usize = 1024;
    pub const KEYRING_SERVICE: &str = "mcp-token-sync";
    pub const EXEC_TIMEOUT: Duration = Duration::from_secs(30);
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

/// What `Config::resolve` needs from the process environment, passed in so tests need not
/// touch the real environment.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    /// `$CREDENTIALS_DIRECTORY`, set by systemd for units with `LoadCredential=`.
    pub credentials_directory: Option<PathBuf>,
}

impl Environment {
    pub fn from_process() -> Self {
        Environment { credentials_directory: std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from) }
    }
}

/// The path of the configuration file: `--config`, else `$MCP_TOKEN_SYNC_CONFIG` (both handled
/// by clap), else the default.
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
        let sinks =
            raw.sink.into_iter().enumerate().filter_map(|(i, raw)| raw.into_config(i, &mut found)).collect();
        let mut config = Config {
            source: raw.source,
            refresh: raw.refresh,
            validate: raw.validate,
            daemon: raw.daemon,
            sinks,
        };
        config.resolve(env, &mut found);
        let problems = found.0;
        if problems.is_empty() { Ok(config) } else { Err(fail(locate::lines_for(text, problems))) }
    }

    /// Checks what serde cannot see on its own and fills resolved values (expanded paths,
    /// owner ids, the default expiry field), recording every problem found.
    fn resolve(&mut self, env: &Environment, found: &mut Problems) {
        self.resolve_source(env, found);
        self.check_refresh(found);
        self.check_validate(found);
        if let Some(dir) = found.path("daemon.state_dir", &self.daemon.state_dir, env) {
            self.daemon.state_dir = dir;
        }
        self.resolve_sinks(env, found);
    }

    fn resolve_source(&mut self, env: &Environment, found: &mut Problems) {
        let source = &mut self.source;
        check_url(&source.url, source.allow_http, "source.url", found);
        if source.timeout.is_zero() {
            found.add("source.timeout", "must be longer than 0s");
        }
        if let Some(agent) = &source.agent
            && agent.is_empty()
        {
            found.add("source.agent", "is empty; remove the key to accept any agent_name");
        }
        if let Some(ca) = &source.ca_file
            && let Some(expanded) = found.path("source.ca_file", ca, env)
        {
            source.ca_file = Some(expanded);
        }
        if let Some(auth) = &mut source.auth {
            if let Some(expanded) = found.path("source.auth.credential_file", &auth.credential_file, env) {
                auth.credential_file = expanded;
            }
            match auth.kind {
                AuthKind::Header => match &auth.header {
                    None => found
                        .add("source.auth.header", "is required when type = \"header\" (e.g. \"X-Api-Key\")"),
                    Some(name) if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() => {
                        found.add("source.auth.header", format!("{name:?} is not a valid HTTP header name"))
                    }
                    Some(_) => {}
                },
                AuthKind::Basic => match &auth.username {
                    None => found.add("source.auth.username", "is required when type = \"basic\""),
                    Some(user) if user.contains(':') => {
                        found.add("source.auth.username", "must not contain ':' (HTTP basic auth separator)")
                    }
                    Some(_) => {}
                },
                AuthKind::Bearer => {}
            }
            if auth.kind != AuthKind::Header && auth.header.is_some() {
                found.add("source.auth.header", "is only used with type = \"header\"");
            }
            if auth.kind != AuthKind::Basic && auth.username.is_some() {
                found.add("source.auth.username", "is only used with type = \"basic\"");
            }
        }
        let fields = &mut source.fields;
        if fields.expires_at.is_some() && fields.expires_in.is_some() {
            found.add(
                "source.fields.expires_in",
                "set either source.fields.expires_at or source.fields.expires_in, not both",
            );
        }
        if fields.expires_in.is_none() && fields.expires_at.is_none() {
            fields.expires_at = Some(defaults::EXPIRES_AT_FIELD.into());
        }
        let pointers = [
            ("token", Some(&fields.token)),
            ("expires_at", fields.expires_at.as_ref()),
            ("expires_in", fields.expires_in.as_ref()),
            ("valid", Some(&fields.valid)),
            ("agent", Some(&fields.agent)),
        ];
        for (name, pointer) in pointers {
            if let Some(p) = pointer
                && !p.is_empty()
                && !p.starts_with('/')
            {
                found.add(
                    format!("source.fields.{name}"),
                    format!("{p:?} is not a JSON Pointer; write e.g. \"/{p}\""),
                );
            }
        }
    }

    fn check_refresh(&self, found: &mut Problems) {
        let r = &self.refresh;
        if !(r.lifetime_fraction > 0.0 && r.lifetime_fraction < 1.0) {
            found.add(
                "refresh.lifetime_fraction",
                format!(
                    "{} is outside (0, 1); e.g. 0.6 refreshes when 60% of the lifetime has passed",
                    r.lifetime_fraction
                ),
            );
        }
        if !(0.0..1.0).contains(&r.jitter) {
            found.add("refresh.jitter", format!("{} is outside [0, 1); e.g. 0.1 for ±10%", r.jitter));
        }
        if r.min_interval.is_zero() {
            found.add("refresh.min_interval", "must be longer than 0s (it is also where backoff starts)");
        }
        if r.min_interval > r.max_interval {
            found.add(
                "refresh.min_interval",
                format!(
                    "{} is longer than refresh.max_interval ({})",
                    duration::display(r.min_interval),
                    duration::display(r.max_interval)
                ),
            );
        }
        for (i, expression) in r.cron.iter().enumerate() {
            if let Err(message) = crate::schedule::parse_cron(expression) {
                found.add(format!("refresh.cron[{i}]"), message);
            }
        }
        if r.backoff_max < r.min_interval {
            found.add(
                "refresh.backoff_max",
                format!(
                    "{} is shorter than refresh.min_interval ({}), where backoff starts",
                    duration::display(r.backoff_max),
                    duration::display(r.min_interval)
                ),
            );
        }
    }

    fn check_validate(&self, found: &mut Problems) {
        let v = &self.validate;
        if v.max_lifetime <= v.min_remaining {
            found.add(
                "validate.max_lifetime",
                format!(
                    "{} is not longer than validate.min_remaining ({}): no token could pass",
                    duration::display(v.max_lifetime),
                    duration::display(v.min_remaining)
                ),
            );
        }
        if let Some(probe) = &v.probe {
            check_url(&probe.url, self.source.allow_http, "validate.probe.url", found);
            if reqwest::header::HeaderName::from_bytes(probe.header.as_bytes()).is_err() {
                found.add(
                    "validate.probe.header",
                    format!("{:?} is not a valid HTTP header name", probe.header),
                );
            }
            if probe.expect.is_empty() {
                found.add(
                    "validate.probe.expect",
                    "is empty: list the statuses that mean the token works, e.g. [200]",
                );
            }
            if let Some(bad) = probe.expect.iter().find(|s| !(100..=599).contains(*s)) {
                found.add("validate.probe.expect", format!("{bad} is not an HTTP status"));
            }
        }
    }

    fn resolve_sinks(&mut self, env: &Environment, found: &mut Problems) {
        let mut owners: HashMap<PathBuf, usize> = HashMap::new();
        for (i, sink) in self.sinks.iter_mut().enumerate() {
            let key = |name: &str| format!("sink[{i}].{name}");
            match sink {
                SinkConfig::File(c) => {
                    resolve_sink_path(&mut c.path, &key("path"), env, found);
                    check_mode(c.mode, &key("mode"), found);
                    c.ids = resolve_ownership(c.owner.as_deref(), c.group.as_deref(), &key(""), found);
                }
                SinkConfig::EnvFile(c) => {
                    resolve_sink_path(&mut c.path, &key("path"), env, found);
                    check_mode(c.mode, &key("mode"), found);
                    c.ids = resolve_ownership(c.owner.as_deref(), c.group.as_deref(), &key(""), found);
                    for (name, var) in
                        [("variable", Some(&c.variable)), ("expires_variable", c.expires_variable.as_ref())]
                    {
                        if let Some(var) = var
                            && !is_env_name(var)
                        {
                            found.add(key(name), format!("{var:?} is not a variable name: use A-Z, 0-9 and _, not starting with a digit"));
                        }
                    }
                    if c.expires_variable.as_ref() == Some(&c.variable) {
                        found.add(key("expires_variable"), "is the same name as `variable`");
                    }
                }
                SinkConfig::Keyring(c) => {
                    if c.service.is_empty() {
                        found.add(key("service"), "is empty");
                    }
                    if c.account.is_empty() {
                        found.add(key("account"), "is empty");
                    }
                }
                SinkConfig::Socket(c) => {
                    resolve_sink_path(&mut c.path, &key("path"), env, found);
                    check_mode(c.mode, &key("mode"), found);
                    if c.max_connections == 0 {
                        found.add(key("max_connections"), "must be at least 1");
                    }
                    // sun_path holds 108 bytes with its NUL; binding happens next to the path.
                    if c.path.as_os_str().len() > 100 {
                        found.add(key("path"), "is longer than a Unix socket path may be (100 bytes here)");
                    }
                }
                SinkConfig::Exec(c) => {
                    if c.command.is_empty() || c.command[0].is_empty() {
                        found.add(key("command"), "is empty: give the program and its arguments, e.g. [\"/usr/bin/systemctl\", \"restart\", \"x.service\"]");
                    }
                    if c.timeout.is_zero() {
                        found.add(key("timeout"), "must be longer than 0s");
                    }
                }
            }
            if let Some(path) = sink.path() {
                if let Some(first) = owners.insert(path.to_owned(), i) {
                    found.add(
                        key("path"),
                        format!(
                            "{} is already the path of sink[{first}]; each sink needs its own file",
                            path.display()
                        ),
                    );
                }
            }
        }
    }
}

#[derive(Default)]
pub(crate) struct Problems(Vec<Problem>);

impl Problems {
    pub(crate) fn add(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem { key: Some(key.into()), line: None, message: message.into() });
    }

    /// Expands `${CREDENTIALS_DIRECTORY}`; records a problem and returns `None` when it cannot.
    fn path(&mut self, key: &str, path: &Path, env: &Environment) -> Option<PathBuf> {
        const VAR: &str = "${CREDENTIALS_DIRECTORY}";
        let Some(text) = path.to_str() else {
            self.add(key, "is not valid UTF-8");
            return None;
        };
        let expanded = if text.contains(VAR) {
            let Some(dir) = &env.credentials_directory else {
                self.add(
                    key,
                    format!(
                        "uses {VAR}, but CREDENTIALS_DIRECTORY is not set: systemd sets it for units with \
                         LoadCredential=; outside systemd, set it to the directory that holds the file"
                    ),
                );
                return None;
            };
            text.replace(VAR, &dir.to_string_lossy())
        } else {
            text.to_owned()
        };
        if expanded.contains("${") {
            self.add(key, format!("{text:?}: only {VAR} is expanded in paths"));
            return None;
        }
        if expanded.is_empty() {
            self.add(key, "is empty");
            return None;
        }
        Some(PathBuf::from(expanded))
    }
}

fn check_url(url: &Url, allow_http: bool, key: &str, found: &mut Problems) {
    match url.scheme() {
        "https" => {}
        "http" if allow_http || host_is_loopback(url) => {}
        "http" => found.add(
            key,
            format!(
                "{url} is plain http to a host that is not loopback: the token would cross the network \
                 in clear; use https, or set source.allow_http = true if you really mean it"
            ),
        ),
        other => found.add(key, format!("scheme {other:?} is not supported: use https")),
    }
    if url.host().is_none() {
        found.add(key, format!("{url} has no host"));
    }
}

fn host_is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

fn resolve_sink_path(path: &mut PathBuf, key: &str, env: &Environment, found: &mut Problems) {
    if let Some(expanded) = found.path(key, path, env) {
        if !expanded.is_absolute() {
            found.add(key, format!("{} is relative: sink paths must be absolute", expanded.display()));
        } else if expanded.file_name().is_none() {
            found.add(key, format!("{} does not name a file", expanded.display()));
        }
        *path = expanded;
    }
}

fn check_mode(mode: Mode, key: &str, found: &mut Problems) {
    if mode.0 & 0o002 != 0 {
        found.add(
            key,
            format!("{mode} lets every user on the host write the file; drop the last digit's write bit"),
        );
    }
}

/// `key_prefix` ends with the dot, e.g. `sink[0].`.
fn resolve_ownership(
    owner: Option<&str>,
    group: Option<&str>,
    key_prefix: &str,
    found: &mut Problems,
) -> Ownership {
    let uid = owner.and_then(|name| {
        let uid = match name.parse::<u32>() {
            Ok(uid) => Some(uid),
            Err(_) => nix::unistd::User::from_name(name).ok().flatten().map(|u| u.uid.as_raw()),
        };
        if uid.is_none() {
            found.add(format!("{key_prefix}owner"), format!("no user named {name:?} on this host"));
        }
        uid
    });
    let gid = group.and_then(|name| {
        let gid = match name.parse::<u32>() {
            Ok(gid) => Some(gid),
            Err(_) => nix::unistd::Group::from_name(name).ok().flatten().map(|g| g.gid.as_raw()),
        };
        if gid.is_none() {
            found.add(format!("{key_prefix}group"), format!("no group named {name:?} on this host"));
        }
        gid
    });
    Ownership { uid, gid }
}

/// `^[A-Z_][A-Z0-9_]*$`: names every consumer of env files agrees on.
pub fn is_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'A'..=b'Z' | b'_'))
        && bytes.all(|b| matches!(b, b'A'..=b'Z' | b'0'..=b'9' | b'_'))
}

#[cfg(test)]
mod tests;
