//! The sections of the file as serde reads them, with their defaults (DESIGN §3).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;

use super::values::{CronExpr, duration};

/// Where the token comes from (DESIGN §3, §13).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// A current-token endpoint, as the seed's backend has.
    #[default]
    Endpoint,
    /// An OAuth 2.0 authorization server's token endpoint.
    Oauth2,
}

/// The OAuth 2.0 grant a `type = "oauth2"` source uses (RFC 6749 §6 and §4.4).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Grant {
    /// A user's login, kept fresh by refresh tokens.
    #[default]
    RefreshToken,
    /// A service's own token.
    ClientCredentials,
}

/// How the client authenticates at the token endpoint (RFC 6749 §2.3, RFC 7523 §2.2).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    #[default]
    None,
    ClientSecretBasic,
    ClientSecretPost,
    PrivateKeyJwt,
}

/// The `aud` of a `private_key_jwt` client assertion.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AssertionAudience {
    #[default]
    TokenEndpoint,
    Issuer,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    #[serde(rename = "type", default)]
    pub kind: SourceKind,
    /// The current-token endpoint (`type = "endpoint"`, which requires it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<Url>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    #[serde(default = "defaults::timeout", with = "duration")]
    pub timeout: Duration,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub allow_http: bool,
    /// Plain http to loopback: uids besides root and the daemon's whose listener may get the
    /// credential and choose the token (DESIGN §12); the probe's listener too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trust_uids: Vec<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthConfig>,
    #[serde(default)]
    pub fields: FieldsConfig,
    // `type = "oauth2"` (DESIGN §13); `check` refuses them with another type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<Grant>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint: Option<Url>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<Url>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<Url>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_auth: Option<ClientAuth>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assertion_audience: Option<AssertionAudience>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "duration::option")]
    pub default_lifetime: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
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
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FieldsConfig {
    #[serde(default = "defaults::token_field")]
    pub token: String,
    /// Filled with the default by the checks unless `expires_in` is set.
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
