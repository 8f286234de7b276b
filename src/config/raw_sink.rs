//! `[[sink]]` tables as serde reads them: one flat struct with every sink key, so that toml keeps
//! the position of each value (an internally tagged enum would buffer the table and lose it).
//! `RawSink::into_config` then builds the typed [`SinkConfig`], naming keys that do not apply
//! to the sink's type and keys it lacks.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::Problems;
use super::schema::defaults;
use super::sinks::{
    EnvFileSinkConfig, ExecSinkConfig, FileFormat, FileSinkConfig, FileTarget, KeyringBackend,
    KeyringSinkConfig, OnExpiry, Ownership, ProxySinkConfig, SinkConfig, SocketSinkConfig,
};
use super::values::{ByteSize, Listen, Mode, duration};
use url::Url;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum SinkType {
    File,
    EnvFile,
    Keyring,
    Socket,
    Exec,
    Proxy,
}

impl SinkType {
    fn name(self) -> &'static str {
        match self {
            SinkType::File => "file",
            SinkType::EnvFile => "env_file",
            SinkType::Keyring => "keyring",
            SinkType::Socket => "socket",
            SinkType::Exec => "exec",
            SinkType::Proxy => "proxy",
        }
    }

    fn keys(self) -> &'static [&'static str] {
        match self {
            SinkType::File => &["path", "format", "mode", "owner", "group", "on_expiry"],
            SinkType::EnvFile => {
                &["path", "variable", "expires_variable", "mode", "owner", "group", "on_expiry"]
            }
            SinkType::Keyring => &["backend", "service", "account"],
            SinkType::Socket => &["path", "mode", "allow_uids", "allow_gids", "max_connections"],
            SinkType::Exec => &["command", "timeout"],
            SinkType::Proxy => &[
                "listen",
                "upstream",
                "header",
                "scheme",
                "allow_uids",
                "allow_gids",
                "allow_origins",
                "mode",
                "replay_limit",
                "timeout",
                "ca_file",
                "allow_http",
                "trust_uids",
                "max_connections",
            ],
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSink {
    #[serde(rename = "type")]
    kind: SinkType,
    path: Option<PathBuf>,
    format: Option<FileFormat>,
    mode: Option<Mode>,
    owner: Option<String>,
    group: Option<String>,
    on_expiry: Option<OnExpiry>,
    variable: Option<String>,
    expires_variable: Option<String>,
    backend: Option<KeyringBackend>,
    service: Option<String>,
    account: Option<String>,
    allow_uids: Option<Vec<u32>>,
    allow_gids: Option<Vec<u32>>,
    max_connections: Option<usize>,
    command: Option<Vec<String>>,
    #[serde(default, deserialize_with = "optional_duration")]
    timeout: Option<Duration>,
    listen: Option<Listen>,
    upstream: Option<Url>,
    header: Option<String>,
    scheme: Option<String>,
    allow_origins: Option<Vec<String>>,
    replay_limit: Option<ByteSize>,
    ca_file: Option<PathBuf>,
    allow_http: Option<bool>,
    trust_uids: Option<Vec<u32>>,
}

fn optional_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration::deserialize(d).map(Some)
}

impl RawSink {
    fn present_keys(&self) -> impl Iterator<Item = &'static str> + '_ {
        [
            ("path", self.path.is_some()),
            ("format", self.format.is_some()),
            ("mode", self.mode.is_some()),
            ("owner", self.owner.is_some()),
            ("group", self.group.is_some()),
            ("on_expiry", self.on_expiry.is_some()),
            ("variable", self.variable.is_some()),
            ("expires_variable", self.expires_variable.is_some()),
            ("backend", self.backend.is_some()),
            ("service", self.service.is_some()),
            ("account", self.account.is_some()),
            ("allow_uids", self.allow_uids.is_some()),
            ("allow_gids", self.allow_gids.is_some()),
            ("max_connections", self.max_connections.is_some()),
            ("command", self.command.is_some()),
            ("timeout", self.timeout.is_some()),
            ("listen", self.listen.is_some()),
            ("upstream", self.upstream.is_some()),
            ("header", self.header.is_some()),
            ("scheme", self.scheme.is_some()),
            ("allow_origins", self.allow_origins.is_some()),
            ("replay_limit", self.replay_limit.is_some()),
            ("ca_file", self.ca_file.is_some()),
            ("allow_http", self.allow_http.is_some()),
            ("trust_uids", self.trust_uids.is_some()),
        ]
        .into_iter()
        .filter_map(|(key, present)| present.then_some(key))
    }

    /// The typed sink, or `None` with the problems recorded.
    pub(super) fn into_config(self, index: usize, found: &mut Problems) -> Option<SinkConfig> {
        let kind = self.kind;
        let key = |name: &str| format!("sink[{index}].{name}");
        let mut complete = true;
        for name in self.present_keys().filter(|k| !kind.keys().contains(k)) {
            found.add(key(name), format!("does not apply to a sink of type {:?}", kind.name()));
            complete = false;
        }
        let mut missing = Missing { found, complete: &mut complete, index, kind };
        let target = |path| FileTarget {
            path,
            mode: self.mode.unwrap_or(defaults::PRIVATE_MODE),
            owner: self.owner.clone(),
            group: self.group.clone(),
            ids: Ownership::default(),
            on_expiry: self.on_expiry.unwrap_or_default(),
        };
        let sink = match kind {
            SinkType::File => missing.check(self.path.clone(), "path").map(|path| {
                SinkConfig::File(FileSinkConfig {
                    target: target(path),
                    format: self.format.unwrap_or_default(),
                })
            }),
            SinkType::EnvFile => {
                let path = missing.check(self.path.clone(), "path");
                let variable = missing.check(self.variable.clone(), "variable");
                path.zip(variable).map(|(path, variable)| {
                    SinkConfig::EnvFile(EnvFileSinkConfig {
                        target: target(path),
                        variable,
                        expires_variable: self.expires_variable.clone(),
                    })
                })
            }
            SinkType::Keyring => {
                let backend = missing.check(self.backend, "backend");
                let account = missing.check(self.account.clone(), "account");
                backend.zip(account).map(|(backend, account)| {
                    SinkConfig::Keyring(KeyringSinkConfig {
                        backend,
                        service: self.service.clone().unwrap_or_else(|| defaults::KEYRING_SERVICE.into()),
                        account,
                    })
                })
            }
            SinkType::Socket => missing.check(self.path.clone(), "path").map(|path| {
                SinkConfig::Socket(SocketSinkConfig {
                    path,
                    mode: self.mode.unwrap_or(defaults::SOCKET_MODE),
                    allow_uids: self.allow_uids.clone().unwrap_or_default(),
                    allow_gids: self.allow_gids.clone().unwrap_or_default(),
                    max_connections: self.max_connections.unwrap_or(defaults::MAX_CONNECTIONS),
                })
            }),
            SinkType::Exec => missing.check(self.command.clone(), "command").map(|command| {
                SinkConfig::Exec(ExecSinkConfig {
                    command,
                    timeout: self.timeout.unwrap_or(defaults::EXEC_TIMEOUT),
                })
            }),
            SinkType::Proxy => {
                if matches!(self.listen, Some(Listen::Tcp(_))) && self.mode.is_some() {
                    missing
                        .found
                        .add(key("mode"), "applies only to a Unix listener (listen is an absolute path)");
                    *missing.complete = false;
                }
                let listen = missing.check(self.listen.clone(), "listen");
                let upstream = missing.check(self.upstream.clone(), "upstream");
                listen.zip(upstream).map(|(listen, upstream)| {
                    let mode = match &listen {
                        Listen::Unix(_) => Some(self.mode.unwrap_or(defaults::SOCKET_MODE)),
                        Listen::Tcp(_) => None,
                    };
                    SinkConfig::Proxy(ProxySinkConfig {
                        listen,
                        upstream,
                        header: self.header.clone().unwrap_or_else(|| defaults::PROXY_HEADER.into()),
                        scheme: self.scheme.clone(),
                        allow_uids: self.allow_uids.clone().unwrap_or_default(),
                        allow_gids: self.allow_gids.clone().unwrap_or_default(),
                        allow_origins: self.allow_origins.clone().unwrap_or_default(),
                        mode,
                        replay_limit: self.replay_limit.unwrap_or(defaults::REPLAY_LIMIT),
                        timeout: self.timeout.unwrap_or(defaults::PROXY_TIMEOUT),
                        ca_file: self.ca_file.clone(),
                        allow_http: self.allow_http.unwrap_or(false),
                        trust_uids: self.trust_uids.clone().unwrap_or_default(),
                        max_connections: self.max_connections.unwrap_or(defaults::MAX_CONNECTIONS),
                    })
                })
            }
        };
        sink.filter(|_| complete)
    }
}

/// Records required keys that a sink table lacks.
struct Missing<'a> {
    found: &'a mut Problems,
    complete: &'a mut bool,
    index: usize,
    kind: SinkType,
}

impl Missing<'_> {
    fn check<T>(&mut self, value: Option<T>, name: &str) -> Option<T> {
        if value.is_none() {
            self.found.add(
                format!("sink[{}].{name}", self.index),
                format!("is required for a sink of type {:?}", self.kind.name()),
            );
            *self.complete = false;
        }
        value
    }
}
