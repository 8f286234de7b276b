//! `type = "file"`: the token (raw) or the `/v1/token` object (json) in one file.

use std::path::Path;

use zeroize::Zeroizing;

use super::Applied;
use crate::config::{FileFormat, FileSinkConfig, OnExpiry};
use crate::fsutil::{self, WriteError};
use crate::token::TokenState;

pub struct FileSink {
    config: FileSinkConfig,
}

impl FileSink {
    pub fn new(config: FileSinkConfig) -> FileSink {
        FileSink { config }
    }

    pub fn path(&self) -> &Path {
        &self.config.path
    }

    pub fn apply(&self, state: &TokenState) -> Result<Applied, WriteError> {
        let c = &self.config;
        match state {
            TokenState::Valid(current) => {
                let contents = match c.format {
                    FileFormat::Raw => Zeroizing::new(current.token.expose().as_bytes().to_vec()),
                    FileFormat::Json => current.to_json(),
                };
                fsutil::write_atomic(&c.path, &contents, c.mode, c.ids)?;
                Ok(Applied::Wrote)
            }
            TokenState::Expired { .. } if c.on_expiry == OnExpiry::Remove => {
                Ok(if fsutil::remove(&c.path)? { Applied::Removed } else { Applied::Nothing })
            }
            TokenState::Expired { .. } | TokenState::Empty => Ok(Applied::Nothing),
        }
    }
}
