//! The source's checks: a current-token endpoint (DESIGN §3) or an OAuth 2.0 server (§13), each
//! with the keys only it takes, and every combination that cannot work named by its key.

use super::super::schema::{AssertionAudience, ClientAuth, Grant, SourceKind, defaults};
use super::super::{AuthKind, Environment, Problems, SourceConfig};
use super::{check_url, expand};

pub(super) fn resolve(source: &mut SourceConfig, env: &Environment, found: &mut Problems) {
    if source.timeout.is_zero() {
        found.add("source.timeout", "must be longer than 0s");
    }
    if let Some(ca) = &source.ca_file
        && let Some(expanded) = expand(found, "source.ca_file", ca, env)
    {
        source.ca_file = Some(expanded);
    }
    match source.kind {
        SourceKind::Endpoint => resolve_endpoint(source, env, found),
        SourceKind::Oauth2 => resolve_oauth2(source, env, found),
    }
}

/// `type = "endpoint"` (DESIGN §3): the current-token endpoint and how to read its answer.
fn resolve_endpoint(source: &mut SourceConfig, env: &Environment, found: &mut Problems) {
    match &source.url {
        Some(url) => check_url(url, source.allow_http, "source.allow_http", "source.url", found),
        None => found.add(
            "source.url",
            "is required: the backend's current-token endpoint (or set type = \"oauth2\" for an OAuth 2.0 server)",
        ),
    }
    for key in oauth2_keys_set(source) {
        found.add(format!("source.{key}"), "is only used with type = \"oauth2\"");
    }
    if let Some(agent) = &source.agent
        && agent.is_empty()
    {
        found.add("source.agent", "is empty; remove the key to accept any agent_name");
    }
    if let Some(auth) = &mut source.auth {
        if let Some(expanded) = expand(found, "source.auth.credential_file", &auth.credential_file, env) {
            auth.credential_file = expanded;
        }
        match auth.kind {
            AuthKind::Header => match &auth.header {
                None => {
                    found.add("source.auth.header", "is required when type = \"header\" (e.g. \"X-Api-Key\")")
                }
                Some(name) if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() => {
                    found.add("source.auth.header", format!("{name:?} is not a valid HTTP header name"))
                }
                Some(_) => {}
            },
            AuthKind::Basic => match &auth.username {
                None => found.add("source.auth.username", "is required when type = \"basic\""),
                Some(user) if user.contains(':') => {
                    found.add("source.auth.username", "must not contain ':' (HTTP basic auth separator)")
                }
                Some(_) => {}
            },
            AuthKind::Bearer => {}
        }
        if auth.kind != AuthKind::Header && auth.header.is_some() {
            found.add("source.auth.header", "is only used with type = \"header\"");
        }
        if auth.kind != AuthKind::Basic && auth.username.is_some() {
            found.add("source.auth.username", "is only used with type = \"basic\"");
        }
    }
    let fields = &mut source.fields;
    if fields.expires_at.is_some() && fields.expires_in.is_some() {
        found.add(
            "source.fields.expires_in",
            "set either source.fields.expires_at or source.fields.expires_in, not both",
        );
    }
    if fields.expires_in.is_none() && fields.expires_at.is_none() {
        fields.expires_at = Some(defaults::EXPIRES_AT_FIELD.into());
    }
    let pointers = [
        ("token", Some(&fields.token)),
        ("expires_at", fields.expires_at.as_ref()),
        ("expires_in", fields.expires_in.as_ref()),
        ("valid", Some(&fields.valid)),
        ("agent", Some(&fields.agent)),
    ];
    for (name, pointer) in pointers {
        if let Some(p) = pointer
            && !p.is_empty()
            && !p.starts_with('/')
        {
            found.add(
                format!("source.fields.{name}"),
                format!("{p:?} is not a JSON Pointer; write e.g. \"/{p}\""),
            );
        }
    }
}

/// The `type = "oauth2"` keys that are set.
fn oauth2_keys_set(source: &SourceConfig) -> Vec<&'static str> {
    let set = [
        ("grant", source.grant.is_some()),
        ("token_endpoint", source.token_endpoint.is_some()),
        ("issuer", source.issuer.is_some()),
        ("resource", source.resource.is_some()),
        ("scope", source.scope.is_some()),
        ("client_id", source.client_id.is_some()),
        ("client_auth", source.client_auth.is_some()),
        ("client_secret_file", source.client_secret_file.is_some()),
        ("private_key_file", source.private_key_file.is_some()),
        ("key_id", source.key_id.is_some()),
        ("assertion_audience", source.assertion_audience.is_some()),
        ("refresh_token_file", source.refresh_token_file.is_some()),
        ("default_lifetime", source.default_lifetime.is_some()),
    ];
    set.into_iter().filter(|(_, set)| *set).map(|(key, _)| key).collect()
}

/// `type = "oauth2"` (DESIGN §13): where the authorization server is, the grant, and how the
/// client authenticates, each combination that cannot work named by its key.
fn resolve_oauth2(source: &mut SourceConfig, env: &Environment, found: &mut Problems) {
    let only_endpoint = "is only used with type = \"endpoint\"";
    if source.url.is_some() {
        found.add(
            "source.url",
            "is only used with type = \"endpoint\"; an oauth2 source takes token_endpoint, issuer or resource",
        );
    }
    if source.agent.is_some() {
        found.add("source.agent", only_endpoint);
    }
    if source.auth.is_some() {
        found.add("source.auth", format!("{only_endpoint}; an oauth2 source authenticates with client_auth"));
    }
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
    if source.default_lifetime.is_some_and(|d| d.is_zero()) {
        found.add("source.default_lifetime", "must be longer than 0s");
    }
    let grant = source.grant.unwrap_or_default();
    let client_auth = source.client_auth.unwrap_or_default();
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
    ] {
        if let Some(given) = path
            && let Some(expanded) = expand(found, &format!("source.{key}"), given, env)
        {
            *path = Some(expanded);
        }
    }
}
