//! The token endpoint (RFC 6749 §3.2): one form POST per grant (client credentials, §4.4; a
//! refresh, §6), with `resource` (RFC 8707 §2) and `scope`, and its answer (§5.1) or error
//! (§5.2).
//!
//! The request and answer are ours over reqwest rather than the `oauth2` crate's: its requests
//! and answers pass the refresh token and access token through buffers and `String`s that are
//! never zeroed, and DESIGN §10 keeps token bytes in zeroized memory from the socket on. Form
//! encoding is serde_urlencoded's (reqwest `form`), JSON serde_json's; nothing is hand-rolled.

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use reqwest::header::ACCEPT;
use serde::Deserialize;
use url::Url;
use zeroize::Zeroizing;

use super::client_auth::{ClientAuthError, ClientAuthentication, Presented};
use crate::text::printable;

/// The most of an answer read: a token answer is a few KiB.
const MAX_ANSWER: usize = 64 * 1024;
/// An RFC 6749 error description is shown cut to this many characters (DESIGN §13).
const DESCRIPTION_CHARS: usize = 200;
/// An error code is a short ASCII word (RFC 6749 §5.2); a longer one is cut.
const CODE_CHARS: usize = 64;

/// What a token request asks for.
pub(crate) enum Grant<'a> {
    /// RFC 6749 §4.4.
    ClientCredentials,
    /// RFC 6749 §6, with the refresh token held.
    RefreshToken(&'a str),
    /// RFC 6749 §4.1.3 with PKCE's verifier (RFC 7636 §4.5), after a loopback redirect.
    AuthorizationCode { code: &'a str, redirect_uri: &'a str, code_verifier: &'a str },
    /// RFC 8628 §3.4.
    DeviceCode(&'a str),
    /// RFC 8693 §2.1: the subject (and actor) token and the exchange's parameters.
    TokenExchange(&'a super::exchange::Presented),
}

/// Where and for what: the same on every request of a source.
pub(crate) struct Target<'a> {
    pub endpoint: &'a Url,
    pub resource: Option<&'a Url>,
    pub scope: Option<&'a str>,
    pub timeout: Duration,
}

/// A successful answer.
pub struct Issued {
    pub access_token: Zeroizing<String>,
    /// `expires_in`, a number or a string of digits; `None` when the answer has none.
    pub expires_in: Option<Duration>,
    /// A new refresh token (rotation), if the answer carries one.
    pub refresh_token: Option<Zeroizing<String>>,
    /// When the answer arrived: the origin of `expires_in`.
    pub received_at: SystemTime,
}

/// Why no token was issued.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// RFC 6749 §5.2, by its code; `invalid_grant` means the refresh token is spent or revoked.
    #[error("the authorization server refused: {code}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Refused { code: String, description: Option<String> },
    #[error("{endpoint} answered HTTP {status}")]
    Status { endpoint: Url, status: u16 },
    #[error("request to {endpoint} failed: {reason}")]
    Request { endpoint: Url, reason: String },
    /// A plain-http loopback endpoint whose listener is not trusted (DESIGN §12): the message
    /// names its uid. Asking again will not help.
    #[error("request to {endpoint} not sent: {reason}")]
    Untrusted { endpoint: Url, reason: String },
    #[error("{endpoint}'s answer is not a token answer: {reason}")]
    Malformed { endpoint: Url, reason: String },
    #[error("{endpoint} issued a {kind} token, not a Bearer token")]
    NotBearer { endpoint: Url, kind: String },
    #[error(transparent)]
    Client(#[from] ClientAuthError),
    /// A 200 answer refused for `error` that carried a new refresh token (`successor`).
    #[error("{error}")]
    Rejected { error: Box<TokenError>, successor: Secret },
}

impl TokenError {
    /// The refresh token was refused: only a login helps (DESIGN §13 `needs_login`).
    pub fn is_invalid_grant(&self) -> bool {
        self.code() == Some("invalid_grant")
    }

    /// The server answered with an RFC 6749 §5.2 error, so it is where the metadata says.
    pub fn is_refusal(&self) -> bool {
        self.code().is_some()
    }

    /// The RFC 6749 §5.2 (or RFC 8628 §3.5) error code.
    pub fn code(&self) -> Option<&str> {
        match self {
            TokenError::Refused { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// Asks `target` for a token with `grant`, the client authenticated by `client`.
pub(crate) async fn request(
    http: &reqwest::Client,
    target: &Target<'_>,
    client: &ClientAuthentication,
    grant: Grant<'_>,
) -> Result<Issued, TokenError> {
    let endpoint = target.endpoint;
    let presented = client.present(SystemTime::now())?;
    let mut form: Vec<(&str, &str)> = Vec::new();
    // `scope` goes with the grants that may ask for it (RFC 6749 §4.4.2, §6); a code or a
    // device code carries the scope its authorization was asked with.
    let mut with_scope = true;
    match &grant {
        Grant::ClientCredentials => form.push(("grant_type", "client_credentials")),
        Grant::RefreshToken(token) => {
            form.push(("grant_type", "refresh_token"));
            form.push(("refresh_token", token));
        }
        Grant::AuthorizationCode { code, redirect_uri, code_verifier } => {
            form.extend([
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", redirect_uri),
                ("code_verifier", code_verifier),
            ]);
            with_scope = false;
        }
        Grant::DeviceCode(device_code) => {
            form.push(("grant_type", "urn:ietf:params:oauth:grant-type:device_code"));
            form.push(("device_code", device_code));
            with_scope = false;
        }
        Grant::TokenExchange(presented) => {
            form.push(("grant_type", super::exchange::GRANT_TYPE));
            form.extend(presented.form.iter().map(|(name, value)| (*name, value.as_str())));
        }
    }
    if let Some(resource) = target.resource {
        form.push(("resource", resource.as_str()));
    }
    if let Some(scope) = target.scope.filter(|_| with_scope) {
        form.push(("scope", scope));
    }
    // RFC 8693 §2.2.1: an exchanged token that is not an access token says `N_A`.
    let exchanged = matches!(grant, Grant::TokenExchange(_));
    let (status, body, received_at) = post_form(http, endpoint, form, &presented, target.timeout).await?;
    if !status.is_success() {
        return Err(refusal(endpoint, status, &body));
    }
    let mut issued = checked(endpoint, &body, received_at, exchanged)?;
    if exchanged {
        // Not kept (DESIGN §16): the next exchange presents the subject token again.
        issued.refresh_token = None;
    }
    Ok(issued)
}

/// A 200 answer's token, or why not; a refused answer's successor refresh token kept in the error.
fn checked(
    endpoint: &Url,
    body: &[u8],
    received_at: SystemTime,
    exchanged: bool,
) -> Result<Issued, TokenError> {
    answer(endpoint, body, received_at, exchanged).map_err(|error| {
        // The server has spent the refresh token presented, whatever else is wrong with its
        // answer: a successor in it must still be kept.
        match serde_json::from_slice::<Successor>(body).ok().and_then(|s| s.refresh_token) {
            Some(successor) if !successor.trim().is_empty() => TokenError::Rejected {
                error: Box::new(error),
                successor: Secret(Zeroizing::new(successor.into_owned())),
            },
            _ => error,
        }
    })
}

/// A 200 answer checked: a Bearer access token and its lifetime (RFC 6749 §5.1); an exchanged
/// token may be `N_A` (RFC 8693 §2.2.1).
fn answer(
    endpoint: &Url,
    body: &[u8],
    received_at: SystemTime,
    exchanged: bool,
) -> Result<Issued, TokenError> {
    let malformed = |reason: String| TokenError::Malformed { endpoint: endpoint.clone(), reason };
    let answer: Answer = serde_json::from_slice(body).map_err(|e| malformed(e.to_string()))?;
    let not_applicable = exchanged && answer.token_type.eq_ignore_ascii_case("n_a");
    if !answer.token_type.eq_ignore_ascii_case("bearer") && !not_applicable {
        return Err(TokenError::NotBearer {
            endpoint: endpoint.clone(),
            kind: printable(&answer.token_type, 40),
        });
    }
    let expires_in = match &answer.expires_in {
        None => None,
        Some(value) => Some(
            crate::validate::seconds(value)
                .ok_or_else(|| malformed(format!("expires_in {value} is not a number of seconds")))?,
        ),
    };
    Ok(Issued {
        access_token: Zeroizing::new(answer.access_token.into_owned()),
        expires_in,
        // An empty one is none: it must not replace the token held.
        refresh_token: answer
            .refresh_token
            .filter(|t| !t.trim().is_empty())
            .map(|t| Zeroizing::new(t.into_owned())),
        received_at,
    })
}

/// The `refresh_token` of an answer otherwise refused.
#[derive(Deserialize)]
struct Successor<'a> {
    #[serde(borrow, default)]
    refresh_token: Option<Cow<'a, str>>,
}

/// A secret that `Debug` does not show.
pub struct Secret(pub Zeroizing<String>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Posts `form` and the client's authentication to `endpoint`; the status, the body (in
/// zeroized memory) and when it arrived.
pub(crate) async fn post_form(
    http: &reqwest::Client,
    endpoint: &Url,
    mut form: Vec<(&str, &str)>,
    presented: &Presented,
    timeout: Duration,
) -> Result<(reqwest::StatusCode, Zeroizing<Vec<u8>>, SystemTime), TokenError> {
    for (name, value) in &presented.form {
        form.push((name, value.as_str()));
    }
    let mut request =
        http.post(endpoint.clone()).header(ACCEPT, "application/json").timeout(timeout).form(&form);
    if let Some((user, password)) = &presented.basic {
        request = request.basic_auth(user, Some(password.as_str()));
    }
    let failed = |e: reqwest::Error| match crate::trust::untrusted(&e) {
        Some(untrusted) => {
            TokenError::Untrusted { endpoint: endpoint.clone(), reason: untrusted.to_string() }
        }
        None => TokenError::Request { endpoint: endpoint.clone(), reason: crate::source::describe(&e) },
    };
    let mut response = request.send().await.map_err(failed)?;
    let status = response.status();
    let body =
        crate::source::read_limited(&mut response, MAX_ANSWER).await.map_err(failed)?.ok_or_else(|| {
            TokenError::Malformed {
                endpoint: endpoint.clone(),
                reason: format!("larger than {} KiB", MAX_ANSWER / 1024),
            }
        })?;
    Ok((status, body, SystemTime::now()))
}

/// A failed answer as an error: by its RFC 6749 §5.2 code when it has one (400, or 401 for a
/// client that failed to authenticate), else by its status.
pub(crate) fn refusal(endpoint: &Url, status: reqwest::StatusCode, body: &[u8]) -> TokenError {
    match serde_json::from_slice::<Refusal>(body) {
        Ok(refusal) if matches!(status.as_u16(), 400 | 401) => TokenError::Refused {
            code: printable(&refusal.error, CODE_CHARS),
            description: refusal.error_description.map(|d| printable(&d, DESCRIPTION_CHARS)),
        },
        _ => TokenError::Status { endpoint: endpoint.clone(), status: status.as_u16() },
    }
}

/// RFC 6749 §5.1, borrowed from the zeroized body where no escape forces a copy.
#[derive(Deserialize)]
struct Answer<'a> {
    #[serde(borrow)]
    access_token: Cow<'a, str>,
    #[serde(borrow)]
    token_type: Cow<'a, str>,
    /// A number, or a string of digits (`validate::seconds`).
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
    #[serde(borrow, default)]
    refresh_token: Option<Cow<'a, str>>,
}

/// RFC 6749 §5.2.
#[derive(Deserialize)]
struct Refusal<'a> {
    #[serde(borrow)]
    error: Cow<'a, str>,
    #[serde(borrow, default)]
    error_description: Option<Cow<'a, str>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(body: &str) -> Result<Issued, TokenError> {
        checked(&Url::parse("https://a.example/token").unwrap(), body.as_bytes(), SystemTime::now(), false)
    }

    #[test]
    fn a_refused_answer_keeps_its_successor_refresh_token() {
        for body in [
            r#"{"access_token":"a","token_type":"MAC","refresh_token":"rt-2"}"#,
            r#"{"access_token":"a","token_type":"Bearer","expires_in":"12abc","refresh_token":"rt-2"}"#,
            r#"{"token_type":"Bearer","refresh_token":"rt-2"}"#,
        ] {
            match check(body) {
                Err(TokenError::Rejected { successor, error }) => {
                    assert_eq!(successor.0.as_str(), "rt-2", "{body}");
                    assert!(!error.to_string().contains("rt-2"), "{body}: {error}");
                }
                other => panic!("{body}: {:?}", other.map(|i| i.expires_in)),
            }
        }
        // Without a successor the error is the plain one.
        assert!(matches!(
            check(r#"{"access_token":"a","token_type":"MAC"}"#),
            Err(TokenError::NotBearer { .. })
        ));
    }

    #[test]
    fn an_empty_refresh_token_is_none() {
        let issued = check(r#"{"access_token":"a","token_type":"bearer","refresh_token":"  "}"#).unwrap();
        assert!(issued.refresh_token.is_none());
    }
}
