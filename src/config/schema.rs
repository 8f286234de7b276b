//! The sections of the file as serde reads them, with their defaults (DESIGN §3).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;

use super::values::{CronExpr, duration};

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
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
    pub cron: Vec<CronExpr>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ValidateConfig {
    #[serde(default = "defaults::min_remaining", with = "duration")]
    pub min_remaining: Duration,
    #[serde(default = "defaults::max_lifetime", with = "duration")]
    pub max_lifetime: Duration,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<ProbeConfig>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeConfig {
    pub url: Url,
    #[serde(default = "defaults::probe_header")]
    pub header: String,
    #[serde(default = "defaults::probe_expect")]
    pub expect: Vec<u16>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
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

pub(super) mod defaults {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::super::values::{ByteSize, Mode};

    pub(crate) const EXPIRES_AT_FIELD: &str = "/expires_at";

    pub(crate) fn timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub(crate) fn token_field() -> String {
        "/token".into()
    }
    pub(crate) fn valid_field() -> String {
        "/valid".into()
    }
    pub(crate) fn agent_field() -> String {
        "/agent_name".into()
    }
    pub(crate) fn lifetime_fraction() -> f64 {
        0.6
    }
    pub(crate) fn jitter() -> f64 {
        0.1
    }
    pub(crate) fn min_interval() -> Duration {
        Duration::from_secs(5)
    }
    pub(crate) fn max_interval() -> Duration {
        Duration::from_secs(15 * 60)
    }
    pub(crate) fn backoff_max() -> Duration {
        Duration::from_secs(120)
    }
    pub(crate) fn min_remaining() -> Duration {
        Duration::from_secs(10)
    }
    pub(crate) fn max_lifetime() -> Duration {
        Duration::from_secs(30 * 24 * 3600)
    }
    pub(crate) fn probe_header() -> String {
        "X-Google-MCP-Token".into()
    }
    pub(crate) fn probe_expect() -> Vec<u16> {
        vec![200]
    }
    pub(crate) fn state_dir() -> PathBuf {
        "/var/lib/mcp-token-sync".into()
    }
    pub(crate) fn yes() -> bool {
        true
    }
    pub(crate) const PRIVATE_MODE: Mode = Mode(0o600);
    pub(crate) const SOCKET_MODE: Mode = Mode(0o660);
    pub(crate) const MAX_CONNECTIONS: usize = 1024;
    pub(crate) const KEYRING_SERVICE: &str = "mcp-token-sync";
    pub(crate) const EXEC_TIMEOUT: Duration = Duration::from_secs(30);
    pub(crate) const PROXY_HEADER: &str = "Authorization";
    pub(crate) const PROXY_TIMEOUT: Duration = Duration::from_secs(60);
    pub(crate) const REPLAY_LIMIT: ByteSize = ByteSize(1 << 20);
}

/// A token's `[tokens.NAME.refresh]`: each key set overrides the top-level `[refresh]` one
/// (DESIGN §15). Read from the file in place, so a malformed value is named by its own line.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RefreshOverrides {
    lifetime_fraction: Option<f64>,
    jitter: Option<f64>,
    #[serde(default, with = "duration::option")]
    min_interval: Option<Duration>,
    #[serde(default, with = "duration::option")]
    max_interval: Option<Duration>,
    #[serde(default, with = "duration::option")]
    backoff_max: Option<Duration>,
    cron: Option<Vec<CronExpr>>,
}

impl RefreshOverrides {
    pub(super) fn over(self, base: &RefreshConfig) -> RefreshConfig {
        RefreshConfig {
            lifetime_fraction: self.lifetime_fraction.unwrap_or(base.lifetime_fraction),
            jitter: self.jitter.unwrap_or(base.jitter),
            min_interval: self.min_interval.unwrap_or(base.min_interval),
            max_interval: self.max_interval.unwrap_or(base.max_interval),
            backoff_max: self.backoff_max.unwrap_or(base.backoff_max),
            cron: self.cron.unwrap_or_else(|| base.cron.clone()),
        }
    }
}

/// A token's `[tokens.NAME.validate]`, over the top-level `[validate]` key by key; a `probe`
/// table replaces the top-level one whole.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ValidateOverrides {
    #[serde(default, with = "duration::option")]
    min_remaining: Option<Duration>,
    #[serde(default, with = "duration::option")]
    max_lifetime: Option<Duration>,
    probe: Option<ProbeConfig>,
}

impl ValidateOverrides {
    pub(super) fn over(self, base: &ValidateConfig) -> ValidateConfig {
        ValidateConfig {
            min_remaining: self.min_remaining.unwrap_or(base.min_remaining),
            max_lifetime: self.max_lifetime.unwrap_or(base.max_lifetime),
            probe: self.probe.or_else(|| base.probe.clone()),
        }
    }
}
