//! The state file: the last valid token, kept in `state_dir` so a restart serves it at once
//! (while the first fetch is in flight, or the backend is down) and versions keep counting up.
//!
//! It is written like any sink, on every new version, atomically and 0600. At start it is
//! restored only if it was written for the same `source.url` and `agent`: a token from another
//! backend must never be served.

use std::borrow::Cow;
use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use tracing::{info, warn};
use url::Url;

use crate::clock;
use crate::config::{Mode, Ownership, SourceConfig, SourceKind, TokenConfig};
use crate::fsutil::{self, WriteError};
use crate::token::{CurrentToken, Token, TokenState, secret_json};

const FILE_NAME: &str = "state.json";
const FORMAT: u32 = 1;

/// Whose token it is: a state file written for another source is ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Owner {
    source_url: String,
    agent: Option<String>,
}

impl Owner {
    fn of(source: &SourceConfig) -> Owner {
        // An oauth2 source is known by where its authorization server is, a command by what it
        // runs and as whom, a GitHub App by its installation.
        let source_url = match source.kind {
            SourceKind::Command => {
                let user = source.user.as_deref().map(|u| format!(" (as {u})")).unwrap_or_default();
                format!("command:{}{user}", source.command.join(" "))
            }
            SourceKind::GithubApp => format!(
                "{}/app/installations/{}",
                source.api_url.as_ref().map_or("https://api.github.com", Url::as_str).trim_end_matches('/'),
                source.installation_id.unwrap_or_default()
            ),
            SourceKind::Endpoint | SourceKind::Oauth2 => {
                [&source.url, &source.token_endpoint, &source.issuer, &source.resource]
                    .into_iter()
                    .flatten()
                    .next()
                    .map(Url::to_string)
                    .unwrap_or_default()
            }
        };
        Owner { source_url, agent: source.agent.clone() }
    }
}

#[derive(Serialize, Deserialize)]
struct Record<'a> {
    format: u32,
    #[serde(flatten)]
    owner: Owner,
    version: u64,
    /// Absent once the token expired unreplaced.
    #[serde(borrow)]
    current: Option<Held<'a>>,
}

/// Borrows the token when saving, so serializing makes no copy of it besides the file's bytes.
#[derive(Serialize, Deserialize)]
struct Held<'a> {
    #[serde(borrow)]
    token: Cow<'a, str>,
    agent_name: Option<String>,
    expires_at: String,
    fetched_at: String,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StateFile {
    pub path: PathBuf,
    owner: Owner,
    /// The token it keeps, by name: what a restored token is called.
    name: Arc<str>,
}

impl StateFile {
    /// The state file of `token`, in its state directory.
    pub(crate) fn new(token: &TokenConfig) -> StateFile {
        StateFile {
            path: token.state_dir.join(FILE_NAME),
            owner: Owner::of(&token.source),
            name: Arc::from(token.name.as_str()),
        }
    }

    /// The version the file holds, when it is ours: another process on the same `state_dir`
    /// (`once` beside a running daemon) may have counted on since this one read it.
    pub(crate) fn saved_version(&self) -> Option<u64> {
        let bytes = fsutil::read_own(&self.path).ok()?;
        let record: Record = serde_json::from_slice(&bytes).ok()?;
        (record.format == FORMAT && record.owner == self.owner).then_some(record.version)
    }

    /// What to start with: the saved token if it is ours and unexpired; `Expired` (to keep the
    /// version count) if it is ours but expired; else nothing.
    pub(crate) fn restore(&self, now: SystemTime) -> TokenState {
        let bytes = match fsutil::read_own(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == ErrorKind::NotFound => return TokenState::Empty,
            Err(e) => {
                warn!("state file {}: cannot use it ({e}); starting without it", self.path.display());
                return TokenState::Empty;
            }
        };
        let record: Record = match serde_json::from_slice(&bytes) {
            Ok(record) => record,
            Err(e) => {
                warn!("state file {} is corrupt ({e}); ignoring it", self.path.display());
                return TokenState::Empty;
            }
        };
        if record.format != FORMAT || record.owner != self.owner {
            warn!(
                "state file {} was written for {} (agent {:?}), not this source; ignoring it",
                self.path.display(),
                record.owner.source_url,
                record.owner.agent
            );
            return TokenState::Empty;
        }
        let expired = TokenState::Expired { version: record.version };
        let Some(held) = record.current else { return expired };
        let times = (clock::parse_rfc3339(&held.expires_at), clock::parse_rfc3339(&held.fetched_at));
        let (Some(expires_at), Some(fetched_at)) = times else {
            warn!("state file {} has unreadable times; ignoring it", self.path.display());
            return TokenState::Empty;
        };
        if expires_at <= now || crate::validate::check_token_text(&held.token).is_err() {
            info!("state file: version {} is no longer usable; fetching a new token", record.version);
            return expired;
        }
        let current = CurrentToken::new(
            self.name.clone(),
            Token::new(held.token.into_owned()),
            held.agent_name,
            expires_at,
            fetched_at,
            record.version,
        );
        info!(
            "restored {} from the state file, expires in {}",
            current.describe(),
            clock::until(now, expires_at)
        );
        TokenState::Valid(Arc::new(current))
    }

    /// Blocking. Saves `state`; creates `state_dir` (0700) if needed.
    pub(crate) fn save(&self, state: &TokenState) -> Result<(), WriteError> {
        let current = match state {
            TokenState::Empty => return Ok(()),
            TokenState::Valid(current) => Some(current),
            TokenState::Expired { .. } => None,
        };
        let dir = self.path.parent().expect("the state file is inside state_dir");
        match fs::DirBuilder::new().recursive(true).mode(0o700).create(dir) {
            Ok(()) => {}
            Err(source) => {
                return Err(WriteError::Io {
                    action: "create the state directory",
                    path: dir.to_owned(),
                    source,
                });
            }
        }
        let record = Record {
            format: FORMAT,
            owner: self.owner.clone(),
            version: state.version(),
            current: current.map(|c| Held {
                token: Cow::Borrowed(c.token.expose()),
                agent_name: c.agent_name.clone(),
                expires_at: clock::rfc3339(c.expires_at),
                fetched_at: clock::rfc3339(c.fetched_at),
            }),
        };
        fsutil::write_atomic(&self.path, &secret_json(&record), Mode(0o600), Ownership::default())
    }

    /// Blocking. Removes the file, when the state moves elsewhere.
    pub(crate) fn remove(&self) -> Result<(), WriteError> {
        fsutil::remove(&self.path).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use std::time::Duration;

    use super::*;

    /// The one token of a config for `url`, its state in `state_dir`.
    fn token(state_dir: &Path, url: &str) -> TokenConfig {
        let text = format!(
            "[source]\nurl = \"{url}\"\nagent = \"a1\"\n[daemon]\nstate_dir = \"{}\"\n",
            state_dir.display()
        );
        let config =
            crate::config::Config::parse(&text, Path::new("t.toml"), &crate::config::Environment::default())
                .unwrap();
        config.tokens.into_iter().next().unwrap()
    }

    fn valid(version: u64, expires_in: Duration) -> TokenState {
        let now = SystemTime::now();
        TokenState::Valid(Arc::new(CurrentToken::new(
            Arc::from("default"),
            Token::new("SECRET-state-token".into()),
            Some("a1".into()),
            now + expires_in,
            now,
            version,
        )))
    }

    #[test]
    fn a_saved_token_is_restored_with_its_version() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::new(&token(&dir.path().join("nested"), "https://b.example/t"));
        file.save(&valid(7, Duration::from_secs(600))).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(fs::metadata(&file.path).unwrap().permissions().mode() & 0o777, 0o600);
        let restored = file.restore(SystemTime::now());
        let current = restored.current().expect("restored");
        assert_eq!((current.version, current.token.expose()), (7, "SECRET-state-token"));
    }

    #[test]
    fn an_expired_token_keeps_only_its_version() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::new(&token(dir.path(), "https://b.example/t"));
        file.save(&valid(4, Duration::from_secs(60))).unwrap();
        let later = SystemTime::now() + Duration::from_secs(61);
        assert!(matches!(file.restore(later), TokenState::Expired { version: 4 }));
        file.save(&TokenState::Expired { version: 5 }).unwrap();
        assert!(matches!(file.restore(SystemTime::now()), TokenState::Expired { version: 5 }));
    }

    #[test]
    fn another_sources_state_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        StateFile::new(&token(dir.path(), "https://b.example/t"))
            .save(&valid(3, Duration::from_secs(600)))
            .unwrap();
        let other = StateFile::new(&token(dir.path(), "https://other.example/t"));
        assert!(matches!(other.restore(SystemTime::now()), TokenState::Empty));
    }

    #[test]
    fn a_file_someone_else_could_have_written_is_not_restored() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::new(&token(dir.path(), "https://b.example/t"));
        file.save(&valid(3, Duration::from_secs(600))).unwrap();
        assert!(matches!(file.restore(SystemTime::now()), TokenState::Valid(_)));
        fs::set_permissions(&file.path, fs::Permissions::from_mode(0o666)).unwrap();
        assert!(matches!(file.restore(SystemTime::now()), TokenState::Empty), "world-writable");
        fs::set_permissions(&file.path, fs::Permissions::from_mode(0o600)).unwrap();
        if nix::unistd::geteuid().is_root() {
            std::os::unix::fs::chown(&file.path, Some(65534), None).unwrap();
            assert!(matches!(file.restore(SystemTime::now()), TokenState::Empty), "another user's");
        }
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&file.path, &link).unwrap();
        assert!(fsutil::read_own(&link).is_err(), "a symlink is not followed");
    }

    #[test]
    fn a_corrupt_or_missing_file_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::new(&token(dir.path(), "https://b.example/t"));
        assert!(matches!(file.restore(SystemTime::now()), TokenState::Empty));
        fs::write(&file.path, b"{\"format\": 1, \"version\": ").unwrap();
        assert!(matches!(file.restore(SystemTime::now()), TokenState::Empty));
    }
}
