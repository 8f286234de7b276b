//! The source's checks (DESIGN §3, §13, §16): each kind takes its own keys (a key set for another
//! kind is named, with the kinds that take it), and every combination that cannot work is
//! named by its key. An OAuth 2.0 server's checks are `oauth2`'s.

use super::super::schema::defaults;
use super::super::source::{Format, SourceKind};
use super::super::{AuthKind, Environment, Problems, SourceConfig};
use super::{check_url, expand, oauth2};

/// The headers a source sets itself: never taken from `headers`.
const OWN_HEADERS: [&str; 3] = ["host", "content-length", "authorization"];

pub(super) fn resolve(source: &mut SourceConfig, env: &Environment, found: &mut Problems) {
    if source.timeout.is_zero() {
        found.add("source.timeout", "must be longer than 0s");
    }
    if let Some(ca) = &source.ca_file
        && let Some(expanded) = expand(found, "source.ca_file", ca, env)
    {
        source.ca_file = Some(expanded);
    }
    if source.default_lifetime.is_some_and(|d| d.is_zero()) {
        found.add("source.default_lifetime", "must be longer than 0s");
    }
    for (key, takes) in keys_set(source) {
        if !takes.contains(&source.kind) {
            let kinds: Vec<String> = takes.iter().map(|k| format!("type = \"{}\"", k.name())).collect();
            found.add(format!("source.{key}"), format!("is only used with {}", kinds.join(" or ")));
        }
    }
    match source.kind {
        SourceKind::Endpoint => resolve_endpoint(source, env, found),
        SourceKind::Oauth2 => oauth2::resolve(source, env, found),
        SourceKind::Command => resolve_command(source, found),
        SourceKind::GithubApp => resolve_github_app(source, env, found),
    }
    if matches!(source.kind, SourceKind::Endpoint | SourceKind::Command) {
        check_fields(source, found);
    }
}

/// The keys that are set, with the kinds that take them (every kind takes `timeout`,
/// `ca_file`, `allow_http`, `trust_uids` and `default_lifetime`).
fn keys_set(source: &SourceConfig) -> Vec<(&'static str, &'static [SourceKind])> {
    use SourceKind::{Command, Endpoint, GithubApp, Oauth2};
    let set = [
        ("url", source.url.is_some(), &[Endpoint][..]),
        ("agent", source.agent.is_some(), &[Endpoint]),
        ("auth", source.auth.is_some(), &[Endpoint]),
        ("headers", !source.headers.is_empty(), &[Endpoint]),
        ("format", source.format.is_some(), &[Endpoint, Command]),
        ("command", !source.command.is_empty(), &[Command]),
        ("user", source.user.is_some(), &[Command]),
        ("environment", !source.environment.is_empty(), &[Command]),
        ("grant", source.grant.is_some(), &[Oauth2]),
        ("token_endpoint", source.token_endpoint.is_some(), &[Oauth2]),
        ("issuer", source.issuer.is_some(), &[Oauth2]),
        ("resource", source.resource.is_some(), &[Oauth2]),
        ("scope", source.scope.is_some(), &[Oauth2]),
        ("client_id", source.client_id.is_some(), &[Oauth2, GithubApp]),
        ("client_auth", source.client_auth.is_some(), &[Oauth2]),
        ("client_secret_file", source.client_secret_file.is_some(), &[Oauth2]),
        ("private_key_file", source.private_key_file.is_some(), &[Oauth2, GithubApp]),
        ("key_id", source.key_id.is_some(), &[Oauth2]),
        ("assertion_audience", source.assertion_audience.is_some(), &[Oauth2]),
        ("refresh_token_file", source.refresh_token_file.is_some(), &[Oauth2]),
        ("subject_token_file", source.subject_token_file.is_some(), &[Oauth2]),
        ("subject_token", source.subject_token.is_some(), &[Oauth2]),
        ("subject_token_type", source.subject_token_type.is_some(), &[Oauth2]),
        ("requested_token_type", source.requested_token_type.is_some(), &[Oauth2]),
        ("audience", source.audience.is_some(), &[Oauth2]),
        ("actor_token_file", source.actor_token_file.is_some(), &[Oauth2]),
        ("actor_token_type", source.actor_token_type.is_some(), &[Oauth2]),
        ("app_id", source.app_id.is_some(), &[GithubApp]),
        ("installation_id", source.installation_id.is_some(), &[GithubApp]),
        ("api_url", source.api_url.is_some(), &[GithubApp]),
        ("repositories", !source.repositories.is_empty(), &[GithubApp]),
        ("permissions", !source.permissions.is_empty(), &[GithubApp]),
    ];
    set.into_iter().filter(|(_, set, _)| *set).map(|(key, _, takes)| (key, takes)).collect()
}

/// `type = "endpoint"` (DESIGN §3, §16): the current-token endpoint, how to read its answer, the
/// credential it wants and literal headers.
fn resolve_endpoint(source: &mut SourceConfig, env: &Environment, found: &mut Problems) {
    match &source.url {
        Some(url) => check_url(url, source.allow_http, "source.allow_http", "source.url", found),
        None => found.add(
            "source.url",
            "is required: the backend's current-token endpoint (or set type = \"oauth2\", \"command\" or \
             \"github_app\")",
        ),
    }
    if let Some(agent) = &source.agent
        && agent.is_empty()
    {
        found.add("source.agent", "is empty; remove the key to accept any agent_name");
    }
    for (name, value) in &source.headers {
        let lower = name.to_ascii_lowercase();
        if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            found.add(format!("source.headers.{name}"), format!("{name:?} is not an HTTP header name"));
        } else if OWN_HEADERS[..2].contains(&lower.as_str())
            || (lower == "authorization" && source.auth.is_some())
        {
            found.add(
                format!("source.headers.{name}"),
                "is a header the daemon sets itself (Host and Content-Length always, Authorization with \
                 [source.auth]); a credential goes in [source.auth], which reads it from a file",
            );
        } else if reqwest::header::HeaderValue::from_str(value).is_err() {
            found.add(format!("source.headers.{name}"), "is not a valid header value");
        }
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
}

/// `type = "command"` (DESIGN §16): argv without a shell, run as the daemon's user or, by a
/// daemon running as root, as `user`.
fn resolve_command(source: &mut SourceConfig, found: &mut Problems) {
    match source.command.first() {
        None => found.add(
            "source.command",
            "is required: the helper and its arguments, e.g. [\"/usr/bin/az\", \"account\", \"get-access-token\"]",
        ),
        Some(program) if program.is_empty() => found.add("source.command", "names no program"),
        Some(_) => {}
    }
    if let Some(user) = &source.user {
        if nix::unistd::User::from_name(user).ok().flatten().is_none() {
            found.add("source.user", format!("no user named {user:?} on this host"));
        } else if !nix::unistd::geteuid().is_root() {
            found.add(
                "source.user",
                "runs the helper as another user, which only a daemon running as root can; run the daemon as \
                 root, or as that user without this key",
            );
        }
    }
    for name in source.environment.keys() {
        if !super::is_env_name(name) {
            found.add(
                format!("source.environment.{name}"),
                "is not a variable name: use A-Z, 0-9 and _, not starting with a digit",
            );
        }
    }
}

/// `type = "github_app"` (DESIGN §16): the app, the installation, its key, and the narrowing.
fn resolve_github_app(source: &mut SourceConfig, env: &Environment, found: &mut Problems) {
    match (&source.client_id, source.app_id) {
        (None, None) => found.add(
            "source.client_id",
            "a GitHub App source needs client_id (\"Iv23…\") or app_id, the app that signs its JWT",
        ),
        (Some(_), Some(_)) => found.add("source.app_id", "set either client_id or app_id, not both"),
        _ => {}
    }
    if source.installation_id.is_none() {
        found.add("source.installation_id", "is required: the installation whose token the daemon asks for");
    }
    match &source.private_key_file {
        None => found.add(
            "source.private_key_file",
            "is required: the app's private key, PEM (e.g. \"${CREDENTIALS_DIRECTORY}/github-app.pem\")",
        ),
        Some(given) => {
            if let Some(expanded) = expand(found, "source.private_key_file", given, env) {
                source.private_key_file = Some(expanded);
            }
        }
    }
    if let Some(url) = &source.api_url {
        check_url(url, source.allow_http, "source.allow_http", "source.api_url", found);
    }
}

/// `[source.fields]` for a JSON answer; none for a text one, whose expiry is the token's own.
fn check_fields(source: &mut SourceConfig, found: &mut Problems) {
    let fields = &mut source.fields;
    if source.format == Some(Format::Text) {
        if fields != &Default::default() {
            found.add("source.fields", "is not used with format = \"text\": the answer is the token itself");
        }
        return;
    }
    if fields.expires_at.as_deref().is_some_and(|p| !p.is_empty())
        && fields.expires_in.as_deref().is_some_and(|p| !p.is_empty())
    {
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
