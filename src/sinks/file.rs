//! Sinks that are one file: `type = "file"` (the token raw, or the `/v1/token` object) and
//! `type = "env_file"`. Both are written through [`fsutil::write_atomic`] and follow
//! `on_expiry`.

use zeroize::Zeroizing;

use super::{Applied, SinkError, env};
use crate::config::{EnvFileSinkConfig, FileFormat, FileSinkConfig, FileTarget, OnExpiry};
use crate::fsutil;
use crate::token::{CurrentToken, TokenState};

enum Encoding {
    Raw,
    Json,
    Env { variable: String, expires_variable: Option<String> },
}

pub(crate) struct FileSink {
    pub target: FileTarget,
    encoding: Encoding,
}

impl FileSink {
    pub(crate) fn file(c: &FileSinkConfig) -> FileSink {
        let encoding = match c.format {
            FileFormat::Raw => Encoding::Raw,
            FileFormat::Json => Encoding::Json,
        };
        FileSink { target: c.target.clone(), encoding }
    }

    pub(crate) fn env_file(c: &EnvFileSinkConfig) -> FileSink {
        let encoding =
            Encoding::Env { variable: c.variable.clone(), expires_variable: c.expires_variable.clone() };
        FileSink { target: c.target.clone(), encoding }
    }

    pub(crate) fn kind(&self) -> &'static str {
        match self.encoding {
            Encoding::Raw | Encoding::Json => "file",
            Encoding::Env { .. } => "env_file",
        }
    }

    fn contents(&self, current: &CurrentToken) -> Result<Zeroizing<Vec<u8>>, SinkError> {
        Ok(match &self.encoding {
            Encoding::Raw => Zeroizing::new(current.token.expose().as_bytes().to_vec()),
            Encoding::Json => current.to_json(),
            Encoding::Env { variable, expires_variable } => env::encode(
                variable,
                current.token.expose(),
                expires_variable.as_deref().map(|name| (name, current.expires_at)),
            )?,
        })
    }

    /// Blocking.
    pub(crate) fn apply(&self, state: &TokenState) -> Result<Applied, SinkError> {
        let target = &self.target;
        match state {
            TokenState::Valid(current) => {
                fsutil::write_atomic(&target.path, &self.contents(current)?, target.mode, target.ids)?;
                Ok(Applied::Wrote)
            }
            TokenState::Expired { .. } if target.on_expiry == OnExpiry::Remove => {
                Ok(if fsutil::remove(&target.path)? { Applied::Removed } else { Applied::Nothing })
            }
            TokenState::Expired { .. } | TokenState::Empty => Ok(Applied::Nothing),
        }
    }
}
