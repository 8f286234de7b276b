//! `type = "github_app"` (DESIGN §16): a GitHub App's installation access tokens, as GitHub
//! documents them ("Authenticating as a GitHub App installation"): a JWT signed RS256 with the
//! app's private key (`iat` 60 s in the past against clock drift, `exp` 9 minutes ahead, under
//! GitHub's 10, `iss` the app's client id or app id), then `POST
//! {api_url}/app/installations/{id}/access_tokens`, narrowed to `repositories` and
//! `permissions` when given. A 201 answer's `token` and `expires_at` are the token (an opaque
//! string: GitHub's stateless tokens of 2026 run to some 520 characters with dots). The key file
//! is read before each request, so it can be rotated without a restart; neither the key nor a
//! JWT is ever logged.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Client;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use serde::Serialize;
use serde_json::Value;
use url::Url;
use zeroize::Zeroizing;

use super::{Answer, FetchError, MAX_BODY_BYTES, read_limited};
use crate::config::SourceConfig;

const DEFAULT_API: &str = "https://api.github.com";
/// How far back `iat` is set, against a clock that runs ahead of GitHub's.
const ISSUED_BEFORE: Duration = Duration::from_secs(60);
/// How long a JWT lives: GitHub takes at most 10 minutes.
const JWT_LIFETIME: Duration = Duration::from_secs(9 * 60);
/// How much of GitHub's `message` an error shows.
const MESSAGE_CHARS: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum GithubAppError {
    #[error("source.private_key_file {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("GitHub refused the installation token (HTTP {status}): {message}{hint}")]
    Refused { status: u16, message: String, hint: &'static str },
}

pub(super) struct GithubApp {
    /// The JWT's `iss`: the client id, or the app id as digits.
    issuer: String,
    pub(super) installation_id: u64,
    endpoint: Url,
    key: PathBuf,
    /// `{"repositories", "permissions"}`, or nothing when not narrowed.
    narrowed: Option<Value>,
}

#[derive(Serialize)]
struct Claims<'a> {
    iat: u64,
    exp: u64,
    iss: &'a str,
}

impl GithubApp {
    pub(super) fn new(config: &SourceConfig) -> GithubApp {
        let issuer = match (&config.client_id, config.app_id) {
            (Some(client_id), _) => client_id.clone(),
            (None, Some(app_id)) => app_id.to_string(),
            (None, None) => unreachable!("the config requires client_id or app_id"),
        };
        let installation_id = config.installation_id.expect("the config requires installation_id");
        let base = config.api_url.as_ref().map_or(DEFAULT_API, Url::as_str).trim_end_matches('/');
        let endpoint = Url::parse(&format!("{base}/app/installations/{installation_id}/access_tokens"))
            .expect("an api_url and digits make a URL");
        let mut narrowed = serde_json::Map::new();
        if !config.repositories.is_empty() {
            narrowed.insert("repositories".into(), serde_json::json!(config.repositories));
        }
        if !config.permissions.is_empty() {
            let permissions: BTreeMap<&String, &String> = config.permissions.iter().collect();
            narrowed.insert("permissions".into(), serde_json::json!(permissions));
        }
        GithubApp {
            issuer,
            installation_id,
            endpoint,
            key: config.private_key_file.clone().expect("the config requires private_key_file"),
            narrowed: (!narrowed.is_empty()).then_some(Value::Object(narrowed)),
        }
    }

    /// The app, as status shows it: its client id or app id.
    pub(super) fn app(&self) -> &str {
        &self.issuer
    }

    pub(super) async fn fetch(&self, client: &Client, timeout: Duration) -> Result<Answer, FetchError> {
        let jwt = self.jwt(SystemTime::now())?;
        let mut authorization =
            HeaderValue::try_from(format!("Bearer {}", jwt.as_str())).expect("a JWT is header-safe");
        authorization.set_sensitive(true);
        let mut request = client
            .post(self.endpoint.clone())
            .header(AUTHORIZATION, authorization)
            .header(ACCEPT, "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28");
        if let Some(narrowed) = &self.narrowed {
            request = request.header(CONTENT_TYPE, "application/json").body(narrowed.to_string());
        }
        let url = &self.endpoint;
        let failed = |e: &reqwest::Error| super::endpoint::request_error(url, e, timeout);
        let mut response = request.send().await.map_err(|e| failed(&e))?;
        let status = response.status().as_u16();
        let body = read_limited(&mut response, MAX_BODY_BYTES)
            .await
            .map_err(|e| failed(&e))?
            .ok_or(FetchError::TooLarge)?;
        match status {
            // The answer's `token` and `expires_at` are what the default fields read.
            201 | 200 => Ok(Answer { body, received_at: SystemTime::now() }),
            _ => Err(refused(status, &body)),
        }
    }

    /// The app's JWT for now (RS256), the key read from its file.
    fn jwt(&self, now: SystemTime) -> Result<Zeroizing<String>, GithubAppError> {
        let fail = |reason: String| GithubAppError::Key { path: self.key.clone(), reason };
        let pem = Zeroizing::new(std::fs::read(&self.key).map_err(|e| fail(e.to_string()))?);
        let key = EncodingKey::from_rsa_pem(&pem).map_err(|_| {
            fail("holds no RSA private key in PEM (PKCS#1, as GitHub hands it out, or PKCS#8)".into())
        })?;
        let unix = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs();
        let claims = Claims {
            iat: unix(now).saturating_sub(ISSUED_BEFORE.as_secs()),
            exp: unix(now + JWT_LIFETIME),
            iss: &self.issuer,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &key)
            .map(Zeroizing::new)
            .map_err(|e| fail(format!("cannot sign with it: {e}")))
    }
}

/// A refusal by GitHub's `message` (and its documentation URL's hint where it is one of the
/// usual ones).
fn refused(status: u16, body: &[u8]) -> FetchError {
    let message = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| {
            v.get("message").and_then(Value::as_str).map(|m| crate::text::printable(m, MESSAGE_CHARS))
        })
        .unwrap_or_else(|| "(no message)".into());
    let hint = match status {
        401 => "; is source.private_key_file the app's current key, and client_id or app_id the app's?",
        404 => "; is source.installation_id an installation of this app?",
        422 => "; are source.repositories and source.permissions within the installation's?",
        _ => "",
    };
    FetchError::GithubApp(GithubAppError::Refused { status, message, hint })
}

/// `path`'s RSA key can sign: what `check` and tests use.
#[cfg(test)]
fn can_sign(path: &std::path::Path) -> bool {
    std::fs::read(path).ok().is_some_and(|pem| EncodingKey::from_rsa_pem(&pem).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/source/oauth2/testdata");

    fn app(extra: &str) -> GithubApp {
        let text = format!(
            "[source]\ntype = \"github_app\"\nclient_id = \"Iv23liABCDEFGH\"\ninstallation_id = 98765432\n\
             private_key_file = \"{TESTDATA}/rsa-pkcs1.pem\"\n{extra}"
        );
        let config = crate::config::Config::parse(
            &text,
            std::path::Path::new("t.toml"),
            &crate::config::Environment::default(),
        )
        .unwrap();
        GithubApp::new(&config.tokens[0].source)
    }

    #[test]
    fn the_jwt_is_rs256_from_the_app_within_githubs_ten_minutes() {
        use jsonwebtoken::{DecodingKey, Validation};
        let app = app("");
        assert!(can_sign(&app.key));
        let now = SystemTime::now();
        let jwt = app.jwt(now).unwrap();
        let public = std::fs::read(format!("{TESTDATA}/rsa-public.pem")).unwrap();
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_required_spec_claims(&["exp", "iat", "iss"]);
        validation.set_issuer(&["Iv23liABCDEFGH"]);
        let claims = jsonwebtoken::decode::<serde_json::Value>(
            &jwt,
            &DecodingKey::from_rsa_pem(&public).unwrap(),
            &validation,
        )
        .unwrap()
        .claims;
        let (iat, exp) = (claims["iat"].as_u64().unwrap(), claims["exp"].as_u64().unwrap());
        assert!(exp - iat <= 600, "GitHub takes at most 10 minutes: {claims}");
        assert_eq!(app.endpoint.as_str(), "https://api.github.com/app/installations/98765432/access_tokens");
        assert!(app.narrowed.is_none());
    }

    #[test]
    fn an_enterprise_server_and_a_narrowed_token() {
        let app = app("api_url = \"https://ghe.example.com/api/v3/\"\nrepositories = [\"infra\"]\n\
             permissions = { contents = \"read\" }\n");
        assert_eq!(
            app.endpoint.as_str(),
            "https://ghe.example.com/api/v3/app/installations/98765432/access_tokens"
        );
        let narrowed = app.narrowed.unwrap();
        assert_eq!(narrowed["repositories"], serde_json::json!(["infra"]));
        assert_eq!(narrowed["permissions"]["contents"], "read");
    }
}
