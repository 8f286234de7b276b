//! An OAuth 2.0 source's checks (DESIGN §13, §16): where the authorization server is, the grant
//! (a token exchange's subject and actor, RFC 8693), and how the client authenticates, each
//! combination that cannot work named by its key.

use super::super::source::{AssertionAudience, ClientAuth, Grant};
use super::super::{Environment, Problems, SourceConfig};
use super::{check_url, expand};

/// `type = "oauth2"` (DESIGN §13): where the authorization server is, the grant, and how the
/// client authenticates, each combination that cannot work named by its key.
pub(super) fn resolve(source: &mut SourceConfig, env: &Environment, found: &mut Problems) {
    let urls = [
        ("token_endpoint", &source.token_endpoint),
        ("issuer", &source.issuer),
        ("resource", &source.resource),
    ];
    for (key, url) in urls {
        if let Some(url) = url {
            check_url(url, source.allow_http, "source.allow_http", &format!("source.{key}"), found);
        }
    }
    if urls.iter().all(|(_, url)| url.is_none()) {
        found.add(
            "source.token_endpoint",
            "an oauth2 source needs token_endpoint, issuer or resource: where the authorization server is",
        );
    }
    if source.scope.as_deref().is_some_and(|s| s.trim().is_empty()) {
        found.add("source.scope", "is empty; remove the key to ask for the server's default scope");
    }
    let grant = source.grant.unwrap_or_default();
    let client_auth = source.client_auth.unwrap_or_default();
    if grant == Grant::TokenExchange {
        exchange(source, found);
    } else {
        let keys = [
            ("subject_token_file", source.subject_token_file.is_some()),
            ("subject_token", source.subject_token.is_some()),
            ("subject_token_type", source.subject_token_type.is_some()),
            ("requested_token_type", source.requested_token_type.is_some()),
            ("audience", source.audience.is_some()),
            ("actor_token_file", source.actor_token_file.is_some()),
            ("actor_token_type", source.actor_token_type.is_some()),
        ];
        for (key, _) in keys.into_iter().filter(|(_, set)| *set) {
            found.add(format!("source.{key}"), "is only used with grant = \"token_exchange\"");
        }
    }
    if grant == Grant::ClientCredentials {
        if source.client_id.is_none() {
            found.add("source.client_id", "is required with grant = \"client_credentials\"");
        }
        if client_auth == ClientAuth::None {
            found.add(
                "source.client_auth",
                "grant = \"client_credentials\" needs a client that authenticates: client_secret_basic, \
                 client_secret_post or private_key_jwt",
            );
        }
        if source.refresh_token_file.is_some() {
            found.add("source.refresh_token_file", "is only used with grant = \"refresh_token\"");
        }
    }
    let with_secret = matches!(client_auth, ClientAuth::ClientSecretBasic | ClientAuth::ClientSecretPost);
    match (&source.client_secret_file, with_secret) {
        (None, true) => found.add(
            "source.client_secret_file",
            "is required with client_auth = \"client_secret_basic\" or \"client_secret_post\" (e.g. \
             \"${CREDENTIALS_DIRECTORY}/client-secret\")",
        ),
        (Some(_), false) => found.add(
            "source.client_secret_file",
            "is only used with client_auth = \"client_secret_basic\" or \"client_secret_post\"",
        ),
        _ => {}
    }
    let with_key = client_auth == ClientAuth::PrivateKeyJwt;
    match (&source.private_key_file, with_key) {
        (None, true) => found.add(
            "source.private_key_file",
            "is required with client_auth = \"private_key_jwt\": a PEM RSA or P-256 key",
        ),
        (Some(_), false) => {
            found.add("source.private_key_file", "is only used with client_auth = \"private_key_jwt\"")
        }
        _ => {}
    }
    if with_key && source.client_id.is_none() {
        found.add(
            "source.client_id",
            "is required with client_auth = \"private_key_jwt\" (the assertion's iss and sub)",
        );
    }
    if !with_key {
        for (key, set) in
            [("key_id", source.key_id.is_some()), ("assertion_audience", source.assertion_audience.is_some())]
        {
            if set {
                found.add(format!("source.{key}"), "is only used with client_auth = \"private_key_jwt\"");
            }
        }
    }
    if source.assertion_audience == Some(AssertionAudience::Issuer) && source.issuer.is_none() {
        found.add("source.assertion_audience", "\"issuer\" needs source.issuer");
    }
    for (key, path) in [
        ("client_secret_file", &mut source.client_secret_file),
        ("private_key_file", &mut source.private_key_file),
        ("refresh_token_file", &mut source.refresh_token_file),
        ("subject_token_file", &mut source.subject_token_file),
        ("actor_token_file", &mut source.actor_token_file),
    ] {
        if let Some(given) = path
            && let Some(expanded) = expand(found, &format!("source.{key}"), given, env)
        {
            *path = Some(expanded);
        }
    }
}

/// `grant = "token_exchange"` (RFC 8693 §2.1): a subject token from a file or another token, the
/// actor token's pair complete. Whether the token named exists (and no chain loops) is the
/// whole config's check (`check::subject_tokens`).
fn exchange(source: &SourceConfig, found: &mut Problems) {
    match (&source.subject_token_file, &source.subject_token) {
        (None, None) => found.add(
            "source.subject_token_file",
            "grant = \"token_exchange\" needs the token to exchange: subject_token_file (re-read before each \
             exchange) or subject_token (another token of this daemon, by name)",
        ),
        (Some(_), Some(_)) => {
            found.add("source.subject_token", "set either subject_token_file or subject_token, not both")
        }
        _ => {}
    }
    match (&source.actor_token_file, &source.actor_token_type) {
        (Some(_), None) => {
            found.add("source.actor_token_type", "is required with actor_token_file (RFC 8693 §2.1)")
        }
        (None, Some(_)) => found.add("source.actor_token_type", "is only used with actor_token_file"),
        _ => {}
    }
    if source.refresh_token_file.is_some() {
        found.add(
            "source.refresh_token_file",
            "is not used with grant = \"token_exchange\": each exchange presents the subject token again",
        );
    }
    for (key, value) in [
        ("subject_token_type", &source.subject_token_type),
        ("requested_token_type", &source.requested_token_type),
        ("actor_token_type", &source.actor_token_type),
    ] {
        if let Some(value) = value
            && !value.starts_with("urn:")
        {
            found.add(
                format!("source.{key}"),
                format!("{value:?} is not a token type URI, e.g. \"urn:ietf:params:oauth:token-type:jwt\""),
            );
        }
    }
}
