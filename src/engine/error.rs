//! Why a fetch produced no token, as logs, status and the clients waiting for it see it.

use crate::source::{FetchError, ProbeError};
use crate::validate::Rejection;

/// Why a fetch produced no token.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("rejected the backend's answer: {0}")]
    Rejected(#[from] Rejection),
    #[error("rejected the backend's token: {0}")]
    Probe(#[from] ProbeError),
    #[error("the daemon is stopping")]
    Stopped,
    /// Another error whose text held the current token (a helper echoing it on stderr, a
    /// server quoting it), with the token masked; `needs_login` as the original's.
    #[error("{text}")]
    Masked { text: String, needs_login: bool },
}

impl RefreshError {
    /// Only a login helps (DESIGN §13 `needs_login`).
    pub fn needs_login(&self) -> bool {
        match self {
            RefreshError::Fetch(FetchError::OAuth2(e)) => e.needs_login(),
            RefreshError::Masked { needs_login, .. } => *needs_login,
            _ => false,
        }
    }

    /// This error, or its text with `token` masked where it holds it: an error's text goes
    /// to logs, status and clients, the token never (DESIGN §10).
    pub(super) fn masking(self, token: Option<&str>) -> RefreshError {
        let text = self.to_string();
        match token.filter(|t| text.contains(t)) {
            Some(token) => {
                RefreshError::Masked { text: text.replace(token, "[token]"), needs_login: self.needs_login() }
            }
            None => self,
        }
    }
}
