//! How the daemon authenticates as an OAuth 2.0 client at the token endpoint: nothing but its
//! `client_id` (a public client), a secret in the `Authorization: Basic` header or in the form
//! (RFC 6749 §2.3.1), or a JWT signed with its private key (`private_key_jwt`: RFC 7523 §2.2,
//! RFC 7521 §4.2). Secret and key files are read anew for every request, so they can be rotated
//! without a restart; what is read lives in zeroized memory.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use url::Url;
use zeroize::Zeroizing;

use crate::config::{ClientAuth, SourceConfig};

/// RFC 7523 §2.2: the value of `client_assertion_type`.
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// A client assertion is good for this long after it is made: one request (DESIGN §13).
const ASSERTION_LIFETIME: Duration = Duration::from_secs(60);

/// The client's way of proving who it is, from the config.
#[derive(Debug, Clone)]
pub(crate) struct ClientAuthentication {
    client_id: Option<String>,
    method: Method,
}

#[derive(Debug, Clone)]
enum Method {
    None,
    SecretBasic(PathBuf),
    SecretPost(PathBuf),
    /// `audience` is the token endpoint, or the issuer with `assertion_audience = "issuer"`.
    PrivateKeyJwt {
        key_file: PathBuf,
        key_id: Option<String>,
        audience: String,
    },
}

/// What one token request carries to authenticate its client.
#[derive(Default)]
pub(crate) struct Presented {
    /// `Authorization: Basic` user and password (RFC 6749 §2.3.1 form-urlencodes both first).
    pub basic: Option<(String, Zeroizing<String>)>,
    /// Form parameters: `client_id`, `client_secret`, `client_assertion_type`,
    /// `client_assertion`.
    pub form: Vec<(&'static str, Zeroizing<String>)>,
}

/// Why the client could not authenticate; names the key to fix.
#[derive(Debug, thiserror::Error)]
pub enum ClientAuthError {
    #[error("source.client_secret_file {path}: {reason}")]
    Secret { path: PathBuf, reason: String },
    #[error("source.private_key_file {path}: {reason}")]
    Key { path: PathBuf, reason: String },
}

impl ClientAuthentication {
    /// From a checked `type = "oauth2"` config, for requests to `token_endpoint`;
    /// `registered` is the client id `login` registered (RFC 7591), used when none is configured;
    /// `issuer` the issuer identifier as the server's metadata spells it (a `Url` would add a
    /// trailing slash), for `assertion_audience = "issuer"`.
    pub fn new(
        config: &SourceConfig,
        token_endpoint: &Url,
        issuer: Option<&str>,
        registered: Option<&str>,
    ) -> ClientAuthentication {
        let required = "config checks require it for this client_auth";
        let method = match config.client_auth.unwrap_or_default() {
            ClientAuth::None => Method::None,
            ClientAuth::ClientSecretBasic => {
                Method::SecretBasic(config.client_secret_file.clone().expect(required))
            }
            ClientAuth::ClientSecretPost => {
                Method::SecretPost(config.client_secret_file.clone().expect(required))
            }
            ClientAuth::PrivateKeyJwt => Method::PrivateKeyJwt {
                key_file: config.private_key_file.clone().expect(required),
                key_id: config.key_id.clone(),
                audience: match config.assertion_audience.unwrap_or_default() {
                    crate::config::AssertionAudience::TokenEndpoint => token_endpoint.to_string(),
                    crate::config::AssertionAudience::Issuer => issuer
                        .map(str::to_owned)
                        .or(config.issuer.as_ref().map(Url::to_string))
                        .expect(required),
                },
            },
        };
        let client_id = config.client_id.clone().or_else(|| registered.map(str::to_owned));
        ClientAuthentication { client_id, method }
    }

    /// The client id requests carry, configured or registered.
    pub fn client_id(&self) -> Option<&str> {
        self.client_id.as_deref()
    }

    /// What the next token request carries, made `now`.
    pub fn present(&self, now: SystemTime) -> Result<Presented, ClientAuthError> {
        let mut presented = Presented::default();
        let id = || Zeroizing::new(self.client_id.clone().unwrap_or_default());
        match &self.method {
            Method::None => {
                if self.client_id.is_some() {
                    presented.form.push(("client_id", id()));
                }
            }
            Method::SecretBasic(path) => {
                let user = form_urlencoded(self.client_id.as_deref().unwrap_or_default());
                let password = Zeroizing::new(form_urlencoded(&read_secret(path)?));
                presented.basic = Some((user, password));
            }
            Method::SecretPost(path) => {
                presented.form.push(("client_id", id()));
                presented.form.push(("client_secret", read_secret(path)?));
            }
            Method::PrivateKeyJwt { key_file, key_id, audience } => {
                let assertion = self.assertion(key_file, key_id.as_deref(), audience, now)?;
                if self.client_id.is_some() {
                    presented.form.push(("client_id", id()));
                }
                presented.form.push(("client_assertion_type", Zeroizing::new(JWT_BEARER.to_owned())));
                presented.form.push(("client_assertion", assertion));
            }
        }
        Ok(presented)
    }

    /// RFC 7523 §3: `iss` = `sub` = the client id, `aud` the token endpoint (or the issuer), a
    /// fresh `jti`, `iat` now and `exp` [`ASSERTION_LIFETIME`] later.
    fn assertion(
        &self,
        key_file: &Path,
        key_id: Option<&str>,
        audience: &str,
        now: SystemTime,
    ) -> Result<Zeroizing<String>, ClientAuthError> {
        #[derive(Serialize)]
        struct Claims<'a> {
            iss: &'a str,
            sub: &'a str,
            aud: &'a str,
            jti: String,
            iat: u64,
            exp: u64,
        }
        let (key, algorithm) = signing_key(key_file)?;
        let client_id = self.client_id.as_deref().unwrap_or_default();
        let iat = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let claims = Claims {
            iss: client_id,
            sub: client_id,
            aud: audience,
            jti: format!("{:032x}", rand::random::<u128>()),
            iat,
            exp: iat + ASSERTION_LIFETIME.as_secs(),
        };
        let header = Header { kid: key_id.map(str::to_owned), ..Header::new(algorithm) };
        jsonwebtoken::encode(&header, &claims, &key).map(Zeroizing::new).map_err(|e| ClientAuthError::Key {
            path: key_file.to_owned(),
            reason: format!("cannot sign with it: {e}"),
        })
    }
}

/// The key in `path` and its algorithm: RSA → RS256, P-256 → ES256 (DESIGN §13). PEM in
/// PKCS#8, or the traditional PKCS#1 (RSA) and SEC1 (EC) forms.
fn signing_key(path: &Path) -> Result<(EncodingKey, Algorithm), ClientAuthError> {
    let fail = |reason: String| ClientAuthError::Key { path: path.to_owned(), reason };
    let pem = Zeroizing::new(std::fs::read(path).map_err(|e| fail(e.to_string()))?);
    if let Ok(key) = EncodingKey::from_rsa_pem(&pem) {
        return Ok((key, Algorithm::RS256));
    }
    if let Ok(key) = EncodingKey::from_ec_pem(&pem) {
        return Ok((key, Algorithm::ES256));
    }
    // SEC1, which ring (under jsonwebtoken) does not read: as PKCS#8.
    let text = std::str::from_utf8(&pem).map_err(|_| fail("is not PEM text".into()))?;
    let key = p256::SecretKey::from_sec1_pem(text)
        .map_err(|_| fail("holds no RSA or P-256 private key in PEM (PKCS#8, PKCS#1 or SEC1)".into()))?;
    let der = p256::pkcs8::EncodePrivateKey::to_pkcs8_der(&key).map_err(|e| fail(e.to_string()))?;
    Ok((EncodingKey::from_ec_der(der.as_bytes()), Algorithm::ES256))
}

/// The secret in `path`, without its final line break.
fn read_secret(path: &Path) -> Result<Zeroizing<String>, ClientAuthError> {
    crate::fsutil::read_secret(path)
        .map_err(|reason| ClientAuthError::Secret { path: path.to_owned(), reason })
}

/// RFC 6749 §2.3.1: client id and secret are form-urlencoded before they go in Basic.
fn form_urlencoded(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{DecodingKey, Validation};

    use super::*;

    const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/source/oauth2/testdata");

    fn config(extra: &str) -> SourceConfig {
        let text = format!(
            "[source]\ntype = \"oauth2\"\ngrant = \"client_credentials\"\nissuer = \"https://auth.example.com\"\n\
             client_id = \"host7 svc\"\n{extra}"
        );
        let config =
            crate::config::Config::parse(&text, Path::new("t.toml"), &crate::config::Environment::default())
                .unwrap();
        config.tokens.into_iter().next().unwrap().source
    }

    fn endpoint() -> Url {
        Url::parse("https://auth.example.com/oauth/token").unwrap()
    }

    #[test]
    fn secrets_go_in_basic_form_urlencoded_or_in_the_form() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "s3cr:t+/\n").unwrap();
        let basic =
            format!("client_auth = \"client_secret_basic\"\nclient_secret_file = \"{}\"\n", secret.display());
        let presented = ClientAuthentication::new(&config(&basic), &endpoint(), None, None)
            .present(SystemTime::now())
            .unwrap();
        let (user, password) = presented.basic.unwrap();
        assert_eq!((user.as_str(), password.as_str()), ("host7+svc", "s3cr%3At%2B%2F"));
        assert!(presented.form.is_empty());

        let post = basic.replace("client_secret_basic", "client_secret_post");
        let presented = ClientAuthentication::new(&config(&post), &endpoint(), None, None)
            .present(SystemTime::now())
            .unwrap();
        let form: Vec<(&str, &str)> = presented.form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(form, [("client_id", "host7 svc"), ("client_secret", "s3cr:t+/")]);
    }

    #[test]
    fn private_key_jwt_signs_an_assertion_the_public_key_verifies() {
        for (key, public, algorithm) in [
            ("rsa-pkcs1.pem", "rsa-public.pem", Algorithm::RS256),
            ("rsa-pkcs8.pem", "rsa-public.pem", Algorithm::RS256),
            ("ec-sec1.pem", "ec-public.pem", Algorithm::ES256),
            ("ec-pkcs8.pem", "ec-public.pem", Algorithm::ES256),
        ] {
            let extra = format!(
                "client_auth = \"private_key_jwt\"\nprivate_key_file = \"{TESTDATA}/{key}\"\nkey_id = \"k1\"\n"
            );
            let auth = ClientAuthentication::new(&config(&extra), &endpoint(), None, None);
            let presented = auth.present(SystemTime::now()).unwrap();
            let form: std::collections::HashMap<&str, &str> =
                presented.form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            assert_eq!(form["client_assertion_type"], JWT_BEARER);
            let assertion = form["client_assertion"];
            let header = jsonwebtoken::decode_header(assertion).unwrap();
            assert_eq!((header.alg, header.kid.as_deref()), (algorithm, Some("k1")), "{key}");
            let public = std::fs::read(format!("{TESTDATA}/{public}")).unwrap();
            let decoding = match algorithm {
                Algorithm::RS256 => DecodingKey::from_rsa_pem(&public).unwrap(),
                _ => DecodingKey::from_ec_pem(&public).unwrap(),
            };
            let mut validation = Validation::new(algorithm);
            validation.set_audience(&["https://auth.example.com/oauth/token"]);
            validation.set_issuer(&["host7 svc"]);
            validation.sub = Some("host7 svc".into());
            let claims = jsonwebtoken::decode::<serde_json::Value>(assertion, &decoding, &validation)
                .unwrap_or_else(|e| panic!("{key}: {e}"))
                .claims;
            assert_eq!(claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(), 60, "{key}");
            assert_eq!(claims["jti"].as_str().unwrap().len(), 32, "{key}");
        }
    }

    #[test]
    fn the_issuer_can_be_the_audience_and_every_assertion_is_new() {
        let extra = format!(
            "client_auth = \"private_key_jwt\"\nprivate_key_file = \"{TESTDATA}/ec-pkcs8.pem\"\nassertion_audience = \"issuer\"\n"
        );
        // The identifier as the metadata spells it: no slash a `Url` would add.
        let auth =
            ClientAuthentication::new(&config(&extra), &endpoint(), Some("https://auth.example.com"), None);
        let public =
            DecodingKey::from_ec_pem(&std::fs::read(format!("{TESTDATA}/ec-public.pem")).unwrap()).unwrap();
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_audience(&["https://auth.example.com"]);
        let jti = || {
            let presented = auth.present(SystemTime::now()).unwrap();
            let assertion = &presented.form.iter().find(|(k, _)| *k == "client_assertion").unwrap().1;
            let claims =
                jsonwebtoken::decode::<serde_json::Value>(assertion, &public, &validation).unwrap().claims;
            claims["jti"].as_str().unwrap().to_owned()
        };
        assert_ne!(jti(), jti(), "the jti repeats");
    }

    #[test]
    fn a_key_that_is_not_one_names_the_key_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("key.pem");
        std::fs::write(&junk, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").unwrap();
        let extra = format!("client_auth = \"private_key_jwt\"\nprivate_key_file = \"{}\"\n", junk.display());
        let error = ClientAuthentication::new(&config(&extra), &endpoint(), None, None)
            .present(SystemTime::now())
            .err()
            .unwrap();
        let said = error.to_string();
        assert!(said.starts_with("source.private_key_file") && said.contains("key.pem"), "{said}");
    }
}
