//! `grant = "token_exchange"` (RFC 8693, DESIGN §16): a token this host already holds — a
//! workload's own identity (a Kubernetes projected service-account token, a SPIFFE JWT-SVID),
//! or another token of this daemon — presented as `subject_token` for the token this source
//! serves. The subject is read anew for every exchange: kubelet rotates its file, and another
//! token's new version is what starts an exchange. A `refresh_token` in the answer is not kept:
//! the next exchange presents the subject again.

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::watch;
use zeroize::Zeroizing;

use crate::config::{SourceConfig, duration_display};
use crate::token::TokenState;

/// RFC 8693 §2.1: the `grant_type` of an exchange.
pub(crate) const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// RFC 8693 §3: the subject's type when none is configured, by where it comes from.
const JWT_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// Where the subject token comes from.
enum Subject {
    File(PathBuf),
    /// Another token of this daemon: its states, as [`SubjectFeed`] sends them in.
    Token {
        name: String,
        current: watch::Receiver<TokenState>,
    },
}

/// The sending half of a `subject_token = "NAME"`: whoever runs the tokens sends that token's
/// states in, and asks this token for an exchange on each new version.
pub struct SubjectFeed {
    /// The subject token's name.
    pub name: String,
    pub feed: watch::Sender<TokenState>,
}

/// Where status says the subject comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubjectStatus {
    File(PathBuf),
    /// `waiting`: that token holds no valid token, so this one has nothing to exchange.
    Token {
        name: String,
        waiting: bool,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error("source.{key} {path}: {reason}")]
    File { key: &'static str, path: PathBuf, reason: String },
    #[error(
        "token {name:?} holds no valid token to exchange (waited {waited}); this token waits for it and \
         exchanges as soon as it has one"
    )]
    Waiting { name: String, waited: String },
}

/// The exchange's parameters beside the subject token (RFC 8693 §2.1).
pub(crate) struct Exchange {
    subject: Subject,
    subject_token_type: String,
    requested_token_type: Option<String>,
    audience: Option<String>,
    /// `actor_token_file` and `actor_token_type`.
    actor: Option<(PathBuf, String)>,
}

/// What one exchange request carries beside the grant type, in zeroized memory.
pub(crate) struct Presented {
    pub form: Vec<(&'static str, Zeroizing<String>)>,
}

impl Exchange {
    /// From a checked `grant = "token_exchange"` config; the feed when the subject is another
    /// token of this daemon.
    pub(crate) fn new(config: &SourceConfig) -> (Exchange, Option<SubjectFeed>) {
        let (subject, feed, default_type) = match (&config.subject_token_file, &config.subject_token) {
            (Some(path), _) => (Subject::File(path.clone()), None, JWT_TYPE),
            (None, Some(name)) => {
                let (feed, current) = watch::channel(TokenState::Empty);
                let subject = Subject::Token { name: name.clone(), current };
                (subject, Some(SubjectFeed { name: name.clone(), feed }), ACCESS_TOKEN_TYPE)
            }
            (None, None) => unreachable!("the config requires subject_token_file or subject_token"),
        };
        let exchange = Exchange {
            subject,
            subject_token_type: config.subject_token_type.clone().unwrap_or_else(|| default_type.to_owned()),
            requested_token_type: config.requested_token_type.clone(),
            audience: config.audience.clone(),
            actor: config.actor_token_file.clone().zip(config.actor_token_type.clone()),
        };
        (exchange, feed)
    }

    pub(crate) fn status(&self) -> SubjectStatus {
        match &self.subject {
            Subject::File(path) => SubjectStatus::File(path.clone()),
            Subject::Token { name, current } => {
                SubjectStatus::Token { name: name.clone(), waiting: current.borrow().current().is_none() }
            }
        }
    }

    /// The form of one exchange: the subject (and actor) read now. Waits up to `wait` for a
    /// subject token of this daemon that holds none yet (one starting beside it).
    pub(crate) async fn present(&self, wait: Duration) -> Result<Presented, ExchangeError> {
        let subject = match &self.subject {
            Subject::File(path) => read("subject_token_file", path)?,
            Subject::Token { name, current } => {
                let mut current = current.clone();
                let held =
                    tokio::time::timeout(wait, current.wait_for(|state| state.current().is_some())).await;
                match held {
                    Ok(Ok(state)) => {
                        let token = state.current().expect("waited for a valid token");
                        Zeroizing::new(token.token.expose().to_owned())
                    }
                    _ => {
                        return Err(ExchangeError::Waiting {
                            name: name.clone(),
                            waited: duration_display(wait),
                        });
                    }
                }
            }
        };
        let mut form = vec![
            ("subject_token", subject),
            ("subject_token_type", Zeroizing::new(self.subject_token_type.clone())),
        ];
        if let Some(requested) = &self.requested_token_type {
            form.push(("requested_token_type", Zeroizing::new(requested.clone())));
        }
        if let Some(audience) = &self.audience {
            form.push(("audience", Zeroizing::new(audience.clone())));
        }
        if let Some((path, kind)) = &self.actor {
            form.push(("actor_token", read("actor_token_file", path)?));
            form.push(("actor_token_type", Zeroizing::new(kind.clone())));
        }
        Ok(Presented { form })
    }
}

/// A token file, read now (one trailing line break trimmed).
fn read(key: &'static str, path: &std::path::Path) -> Result<Zeroizing<String>, ExchangeError> {
    crate::fsutil::read_secret(path).map_err(|reason| ExchangeError::File {
        key,
        path: path.to_owned(),
        reason,
    })
}
