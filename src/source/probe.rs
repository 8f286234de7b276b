//! DESIGN §4 rule 6: before a token is published, prove it works by calling a real endpoint
//! with it. I/O, so it lives with the source and shares its client (TLS roots, limits).

use crate::config::ProbeConfig;
use crate::token::Token;

use super::{Source, describe};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    #[error("the probe {url} answered HTTP {status}, not one of {expect:?}: the token does not work")]
    Refused { url: String, status: u16, expect: Vec<u16> },
    #[error("the probe {url} failed: {reason}")]
    Failed { url: String, reason: String },
}

impl Source {
    /// The token, sent in `probe.header`, gets one of the expected statuses.
    pub async fn probe(&self, probe: &ProbeConfig, token: &Token) -> Result<(), ProbeError> {
        let url = probe.url.to_string();
        let mut value = reqwest::header::HeaderValue::from_str(token.expose())
            .expect("a token of visible ASCII is a valid header value");
        value.set_sensitive(true);
        let answer = self
            .client
            .get(probe.url.clone())
            .header(probe.header.as_str(), value)
            .send()
            .await
            .map_err(|e| ProbeError::Failed { url: url.clone(), reason: describe(&e) })?;
        let status = answer.status().as_u16();
        if probe.expect.contains(&status) {
            Ok(())
        } else {
            Err(ProbeError::Refused { url, status, expect: probe.expect.clone() })
        }
    }
}
