//! `[source]` as serde reads it (DESIGN §3, §13, §16): which kind of source, and every key of
//! every kind, flat, so a key is found by its line; `check::source` refuses the keys a kind does
//! not take.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;

use super::schema::defaults;
use super::values::duration;

/// Where the token comes from (DESIGN §3, §13, §16).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// A current-token endpoint, as the seed's backend has (a cloud metadata server too).
    #[default]
    Endpoint,
    /// An OAuth 2.0 authorization server's token endpoint.
    Oauth2,
    /// A helper command's output (`az`, `gcloud`, a company script).
    Command,
    /// A GitHub App's installation access tokens.
    GithubApp,
}

impl SourceKind {
    pub fn name(self) -> &'static str {
        match self {
            SourceKind::Endpoint => "endpoint",
            SourceKind::Oauth2 => "oauth2",
            SourceKind::Command => "command",
            SourceKind::GithubApp => "github_app",
        }
    }
}

/// What an endpoint's or a command's answer is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// A JSON object, read with `[source.fields]`.
    #[default]
    Json,
    /// The token itself (one trailing newline trimmed).
    Text,
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
    /// Another token (a workload's own identity) exchanged for this one (RFC 8693).
    TokenExchange,
}

impl Grant {
    pub fn name(self) -> &'static str {
        match self {
            Grant::RefreshToken => "refresh_token",
            Grant::ClientCredentials => "client_credentials",
            Grant::TokenExchange => "token_exchange",
        }
    }
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
    // `type = "endpoint"` and `"command"` (DESIGN §16).
    /// Literal request headers, not secrets (an endpoint; a metadata server's `Metadata-Flavor`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<Format>,
    // `type = "command"`.
    /// argv, run without a shell.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environment: BTreeMap<String, String>,
    // `type = "github_app"` (also `client_id` and `private_key_file`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installation_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_url: Option<Url>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repositories: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub permissions: BTreeMap<String, String>,
    // `grant = "token_exchange"` (RFC 8693).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_token_file: Option<PathBuf>,
    /// Another token of this daemon, by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_token_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_token_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_token_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_token_type: Option<String>,
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
    /// An RFC 3339 time, or seconds since the epoch (a number, or a string of digits).
    At(&'a str),
    /// Seconds counted from the response's arrival.
    In(&'a str),
    /// No field (set to `""`): the token's own `exp` when it is a JWT, else
    /// `default_lifetime` (DESIGN §16).
    None,
}

impl FieldsConfig {
    pub fn expiry(&self) -> ExpiryField<'_> {
        match (self.expires_at.as_deref(), self.expires_in.as_deref()) {
            (_, Some("")) | (Some(""), None) => ExpiryField::None,
            (_, Some(pointer)) => ExpiryField::In(pointer),
            (Some(pointer), None) => ExpiryField::At(pointer),
            (None, None) => ExpiryField::At(defaults::EXPIRES_AT_FIELD),
        }
    }
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
