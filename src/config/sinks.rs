//! The typed `[[sink]]` configurations, as the sinks and the API use them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::values::{ByteSize, Listen, Mode, duration};
use url::Url;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SinkConfig {
    File(FileSinkConfig),
    EnvFile(EnvFileSinkConfig),
    Keyring(KeyringSinkConfig),
    Socket(SocketSinkConfig),
    Exec(ExecSinkConfig),
    Proxy(ProxySinkConfig),
}

impl SinkConfig {
    /// The filesystem path this sink owns, if it writes one.
    pub fn path(&self) -> Option<&Path> {
        match self {
            SinkConfig::File(c) => Some(&c.target.path),
            SinkConfig::EnvFile(c) => Some(&c.target.path),
            SinkConfig::Socket(c) => Some(&c.path),
            SinkConfig::Proxy(c) => match &c.listen {
                Listen::Unix(path) => Some(path),
                Listen::Tcp(_) => None,
            },
            SinkConfig::Keyring(_) | SinkConfig::Exec(_) => None,
        }
    }
}

/// What the two one-file sinks (`file`, `env_file`) share: where the file goes, who may read it,
/// and what happens to it when the token expires.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileTarget {
    pub path: PathBuf,
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

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileSinkConfig {
    #[serde(flatten)]
    pub target: FileTarget,
    pub format: FileFormat,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EnvFileSinkConfig {
    #[serde(flatten)]
    pub target: FileTarget,
    pub variable: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_variable: Option<String>,
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
    /// Write permission on a socket means "may connect"; the peer check decides who is served.
    pub mode: Mode,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allow_uids: Vec<u32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allow_gids: Vec<u32>,
    /// Connections served at once; beyond that, the idlest gives way.
    pub max_connections: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExecSinkConfig {
    pub command: Vec<String>,
    #[serde(with = "duration")]
    pub timeout: Duration,
}

/// A local reverse proxy that adds the current token to every request it forwards (DESIGN §12).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProxySinkConfig {
    pub listen: Listen,
    /// `scheme://host[:port][/prefix]`; the request's path and query are appended.
    pub upstream: Url,
    /// The header the token goes in.
    pub header: String,
    /// Written before the token, with a space; resolved from `header` when not given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allow_uids: Vec<u32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allow_gids: Vec<u32>,
    /// Browser origins (`scheme://host[:port]`) whose requests are served.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allow_origins: Vec<String>,
    /// A Unix listener's mode; `None` on TCP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    /// Request bodies up to this are kept, to be replayed once after a refresh.
    pub replay_limit: ByteSize,
    /// Until the upstream's response head.
    #[serde(with = "duration")]
    pub timeout: Duration,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    pub allow_http: bool,
    /// Plain http to loopback: uids besides root and the daemon's whose listener may get the
    /// token (DESIGN §12).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub trust_uids: Vec<u32>,
    pub max_connections: usize,
}
