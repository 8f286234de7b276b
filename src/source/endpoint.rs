//! `type = "endpoint"` (DESIGN §3, §16): a current-token endpoint (the seed's backend, a cloud
//! metadata server) over HTTP(S). A GET with the credential `[source.auth]` reads from its file
//! before every fetch and the literal `headers`; the answer a JSON object for `[source.fields]`,
//! or, with `format = "text"`, the token itself.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use reqwest::header::{ACCEPT, HeaderName, HeaderValue};
use reqwest::{Client, StatusCode};
use url::Url;
use zeroize::Zeroizing;

use super::{Answer, FetchError, MAX_BODY_BYTES, describe, read_limited};
use crate::config::{AuthConfig, AuthKind, Format, SourceConfig, duration_display};

pub(super) struct Endpoint {
    url: Url,
    auth: Option<AuthConfig>,
    headers: BTreeMap<String, String>,
    pub(super) format: Format,
}

impl Endpoint {
    pub(super) fn new(config: &SourceConfig, url: &Url) -> Endpoint {
        Endpoint {
            url: url.clone(),
            auth: config.auth.clone(),
            headers: config.headers.clone(),
            format: config.format.unwrap_or_default(),
        }
    }
}

impl Endpoint {
    /// The URL as status shows it: no credentials, no query (which may carry one).
    pub(super) fn shown_url(&self) -> String {
        let mut url = self.url.clone();
        let _ = url.set_username("");
        let _ = url.set_password(None);
        url.set_query(None);
        url.set_fragment(None);
        url.to_string()
    }

    /// The endpoint's 200 answer, its HTTP-level rules checked (DESIGN §4 rule 1).
    pub(super) async fn fetch(&self, client: &Client, timeout: Duration) -> Result<Answer, FetchError> {
        let url = &self.url;
        let accept = if self.format == Format::Text { "text/plain, */*" } else { "application/json" };
        let mut request = client.get(url.clone()).header(ACCEPT, accept);
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        if let Some(auth) = &self.auth {
            request = authenticate(request, auth)?;
        }
        let failed = |e: &reqwest::Error| request_error(url, e, timeout);
        let mut response = request.send().await.map_err(|e| failed(&e))?;
        let status = response.status();
        if status.is_redirection() {
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .map(|l| format!(" to {l}"))
                .unwrap_or_default();
            return Err(FetchError::Redirect { url: url.clone(), status: status.as_u16(), location });
        }
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(FetchError::Unauthorized { status: status.as_u16() });
        }
        if status != StatusCode::OK {
            let hint = match status.as_u16() {
                404 => ": is source.url right?",
                500..=599 => ": the backend is failing",
                _ => "",
            };
            return Err(FetchError::Status { url: url.clone(), status: status.as_u16(), hint });
        }
        if response.content_length().is_some_and(|len| len > MAX_BODY_BYTES as u64) {
            return Err(FetchError::TooLarge);
        }
        let body = read_limited(&mut response, MAX_BODY_BYTES)
            .await
            .map_err(|e| failed(&e))?
            .ok_or(FetchError::TooLarge)?;
        Ok(Answer { body, received_at: SystemTime::now() })
    }
}

/// A request's failure: not sent to an untrusted listener, timed out, or else.
pub(super) fn request_error(url: &Url, e: &reqwest::Error, timeout: Duration) -> FetchError {
    if let Some(untrusted) = crate::trust::untrusted(e) {
        FetchError::Untrusted(untrusted.to_string())
    } else if e.is_timeout() {
        FetchError::Timeout { url: url.clone(), timeout: duration_display(timeout) }
    } else {
        FetchError::Request { url: url.clone(), reason: describe(e) }
    }
}

fn authenticate(
    request: reqwest::RequestBuilder,
    auth: &AuthConfig,
) -> Result<reqwest::RequestBuilder, FetchError> {
    let secret = read_credential(&auth.credential_file)?;
    let invalid = || FetchError::Credential {
        path: auth.credential_file.clone(),
        reason: "it holds characters that cannot go in an HTTP header".into(),
    };
    Ok(match auth.kind {
        AuthKind::Bearer => {
            let mut value =
                HeaderValue::try_from(format!("Bearer {}", secret.as_str())).map_err(|_| invalid())?;
            value.set_sensitive(true);
            request.header(reqwest::header::AUTHORIZATION, value)
        }
        AuthKind::Header => {
            let name = auth.header.as_deref().expect("config requires source.auth.header for type header");
            let name = HeaderName::from_bytes(name.as_bytes()).expect("config checked the header name");
            let mut value = HeaderValue::from_str(&secret).map_err(|_| invalid())?;
            value.set_sensitive(true);
            request.header(name, value)
        }
        AuthKind::Basic => {
            let user = auth.username.as_deref().expect("config requires source.auth.username for type basic");
            request.basic_auth(user, Some(secret.as_str()))
        }
    })
}

/// Read before every fetch, so a rotated bootstrap credential is picked up without a restart.
fn read_credential(path: &Path) -> Result<Zeroizing<String>, FetchError> {
    crate::fsutil::read_secret(path)
        .map_err(|reason| FetchError::Credential { path: path.to_owned(), reason })
}
