//! The checks serde cannot make on its own: values that depend on several keys or on the host
//! (paths, users, cross-key limits), and the values they resolve (expanded paths, owner ids, the
//! default expiry field). Every problem is recorded, not just the first.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use url::Url;

use super::schema::{AssertionAudience, ClientAuth, Grant, SourceKind, defaults};
use super::{
    AuthKind, Config, Environment, FileTarget, Listen, Ownership, Problems, RefreshConfig, SinkConfig,
    SourceConfig, ValidateConfig, duration_display,
};

mod proxy;

/// Checks what serde cannot see on its own and fills resolved values (expanded paths,
/// owner ids, the default expiry field), recording every problem found.
pub(super) fn resolve(config: &mut Config, env: &Environment, found: &mut Problems) {
    resolve_source(&mut config.source, env, found);
    check_refresh(&config.refresh, found);
    check_validate(&config.validate, config.source.allow_http, found);
    if let Some(dir) = expand(found, "daemon.state_dir", &config.daemon.state_dir, env) {
        config.daemon.state_dir = dir;
    }
    resolve_sinks(&mut config.sinks, env, found);
}

fn resolve_source(source: &mut SourceConfig, env: &Environment, found: &mut Problems) {
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

fn check_refresh(r: &RefreshConfig, found: &mut Problems) {
    if !(r.lifetime_fraction > 0.0 && r.lifetime_fraction < 1.0) {
        found.add(
            "refresh.lifetime_fraction",
            format!(
                "{} is outside (0, 1); e.g. 0.6 refreshes when 60% of the lifetime has passed",
                r.lifetime_fraction
            ),
        );
    }
    if !(0.0..1.0).contains(&r.jitter) {
        found.add("refresh.jitter", format!("{} is outside [0, 1); e.g. 0.1 for ±10%", r.jitter));
    }
    if r.min_interval.is_zero() {
        found.add("refresh.min_interval", "must be longer than 0s (it is also where backoff starts)");
    }
    if r.min_interval > r.max_interval {
        found.add(
            "refresh.min_interval",
            format!(
                "{} is longer than refresh.max_interval ({})",
                duration_display(r.min_interval),
                duration_display(r.max_interval)
            ),
        );
    }
    if r.backoff_max < r.min_interval {
        found.add(
            "refresh.backoff_max",
            format!(
                "{} is shorter than refresh.min_interval ({}), where backoff starts",
                duration_display(r.backoff_max),
                duration_display(r.min_interval)
            ),
        );
    }
}

fn check_validate(v: &ValidateConfig, allow_http: bool, found: &mut Problems) {
    if v.max_lifetime <= v.min_remaining {
        found.add(
            "validate.max_lifetime",
            format!(
                "{} is not longer than validate.min_remaining ({}): no token could pass",
                duration_display(v.max_lifetime),
                duration_display(v.min_remaining)
            ),
        );
    }
    if let Some(probe) = &v.probe {
        check_url(&probe.url, allow_http, "source.allow_http", "validate.probe.url", found);
        if reqwest::header::HeaderName::from_bytes(probe.header.as_bytes()).is_err() {
            found.add("validate.probe.header", format!("{:?} is not a valid HTTP header name", probe.header));
        }
        if probe.expect.is_empty() {
            found.add(
                "validate.probe.expect",
                "is empty: list the statuses that mean the token works, e.g. [200]",
            );
        }
        if let Some(bad) = probe.expect.iter().find(|s| !(100..=599).contains(*s)) {
            found.add("validate.probe.expect", format!("{bad} is not an HTTP status"));
        }
    }
}

fn resolve_sinks(sinks: &mut [SinkConfig], env: &Environment, found: &mut Problems) {
    let mut owners: HashMap<PathBuf, usize> = HashMap::new();
    let mut addresses: HashMap<std::net::SocketAddr, usize> = HashMap::new();
    for (i, sink) in sinks.iter_mut().enumerate() {
        let key = |name: &str| format!("sink[{i}].{name}");
        match sink {
            SinkConfig::File(c) => resolve_file_target(&mut c.target, &key(""), env, found),
            SinkConfig::EnvFile(c) => {
                resolve_file_target(&mut c.target, &key(""), env, found);
                for (name, var) in
                    [("variable", Some(&c.variable)), ("expires_variable", c.expires_variable.as_ref())]
                {
                    if let Some(var) = var
                        && !is_env_name(var)
                    {
                        found.add(key(name), format!("{var:?} is not a variable name: use A-Z, 0-9 and _, not starting with a digit"));
                    }
                }
                if c.expires_variable.as_ref() == Some(&c.variable) {
                    found.add(key("expires_variable"), "is the same name as `variable`");
                }
            }
            SinkConfig::Keyring(c) => {
                if c.service.is_empty() {
                    found.add(key("service"), "is empty");
                }
                if c.account.is_empty() {
                    found.add(key("account"), "is empty");
                }
            }
            SinkConfig::Socket(c) => {
                // Any mode: for a socket, write permission means "may connect", and the peer
                // check decides who is served (as for the D-Bus system bus, 0666).
                resolve_sink_path(&mut c.path, &key("path"), env, found);
                if c.max_connections == 0 {
                    found.add(key("max_connections"), "must be at least 1");
                }
                // sun_path holds 108 bytes with its NUL; binding happens next to the path.
                if c.path.as_os_str().len() > 100 {
                    found.add(key("path"), "is longer than a Unix socket path may be (100 bytes here)");
                }
            }
            SinkConfig::Exec(c) => {
                if c.command.is_empty() || c.command[0].is_empty() {
                    found.add(key("command"), "is empty: give the program and its arguments, e.g. [\"/usr/bin/systemctl\", \"restart\", \"x.service\"]");
                }
                if c.timeout.is_zero() {
                    found.add(key("timeout"), "must be longer than 0s");
                }
            }
            SinkConfig::Proxy(c) => {
                proxy::resolve(c, &key(""), env, found);
                if let Listen::Tcp(address) = c.listen
                    && let Some(first) = addresses.insert(address, i)
                {
                    found.add(key("listen"), format!("{address} is already where sink[{first}] listens"));
                }
            }
        }
        if let Some(path) = sink.path() {
            if let Some(first) = owners.insert(path.to_owned(), i) {
                found.add(
                    key("path"),
                    format!(
                        "{} is already the path of sink[{first}]; each sink needs its own file",
                        path.display()
                    ),
                );
            }
        }
    }
}

/// Expands `${CREDENTIALS_DIRECTORY}`; records a problem and returns `None` when it cannot.
pub(super) fn expand(found: &mut Problems, key: &str, path: &Path, env: &Environment) -> Option<PathBuf> {
    const VAR: &str = "${CREDENTIALS_DIRECTORY}";
    let Some(text) = path.to_str() else {
        found.add(key, "is not valid UTF-8");
        return None;
    };
    let expanded = if text.contains(VAR) {
        let Some(dir) = &env.credentials_directory else {
            found.add(
                key,
                format!(
                    "uses {VAR}, but CREDENTIALS_DIRECTORY is not set: systemd sets it for units with \
                     LoadCredential=; outside systemd, set it to the directory that holds the file"
                ),
            );
            return None;
        };
        text.replace(VAR, &dir.to_string_lossy())
    } else {
        text.to_owned()
    };
    if expanded.contains("${") {
        found.add(key, format!("{text:?}: only {VAR} is expanded in paths"));
        return None;
    }
    if expanded.is_empty() {
        found.add(key, "is empty");
        return None;
    }
    Some(PathBuf::from(expanded))
}

/// `allow_http` is the value of the key named `allow_http_key`.
pub(super) fn check_url(url: &Url, allow_http: bool, allow_http_key: &str, key: &str, found: &mut Problems) {
    match url.scheme() {
        "https" => {}
        "http" if allow_http || host_is_loopback(url) => {}
        "http" => found.add(
            key,
            format!(
                "{url} is plain http to a host that is not loopback: the token would cross the network \
                 in clear; use https, or set {allow_http_key} = true if you really mean it"
            ),
        ),
        other => found.add(key, format!("scheme {other:?} is not supported: use https")),
    }
    if url.host().is_none() {
        found.add(key, format!("{url} has no host"));
    }
}

pub(crate) fn host_is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

pub(super) fn resolve_sink_path(path: &mut PathBuf, key: &str, env: &Environment, found: &mut Problems) {
    if let Some(expanded) = expand(found, key, path, env) {
        if !expanded.is_absolute() {
            found.add(key, format!("{} is relative: sink paths must be absolute", expanded.display()));
        } else if expanded.file_name().is_none() {
            found.add(key, format!("{} does not name a file", expanded.display()));
        }
        *path = expanded;
    }
}

/// The checks a file or env-file sink's shared keys need; `key_prefix` ends with the dot.
fn resolve_file_target(target: &mut FileTarget, key_prefix: &str, env: &Environment, found: &mut Problems) {
    resolve_sink_path(&mut target.path, &format!("{key_prefix}path"), env, found);
    if target.mode.0 & 0o002 != 0 {
        found.add(
            format!("{key_prefix}mode"),
            format!(
                "{} lets every user on the host write the file; drop the last digit's write bit",
                target.mode
            ),
        );
    }
    target.ids = resolve_ownership(target.owner.as_deref(), target.group.as_deref(), key_prefix, found);
}

/// `key_prefix` ends with the dot, e.g. `sink[0].`.
fn resolve_ownership(
    owner: Option<&str>,
    group: Option<&str>,
    key_prefix: &str,
    found: &mut Problems,
) -> Ownership {
    let uid = owner.and_then(|name| {
        let uid = match name.parse::<u32>() {
            Ok(uid) => Some(uid),
            Err(_) => nix::unistd::User::from_name(name).ok().flatten().map(|u| u.uid.as_raw()),
        };
        if uid.is_none() {
            found.add(format!("{key_prefix}owner"), format!("no user named {name:?} on this host"));
        }
        uid
    });
    let gid = group.and_then(|name| {
        let gid = match name.parse::<u32>() {
            Ok(gid) => Some(gid),
            Err(_) => nix::unistd::Group::from_name(name).ok().flatten().map(|g| g.gid.as_raw()),
        };
        if gid.is_none() {
            found.add(format!("{key_prefix}group"), format!("no group named {name:?} on this host"));
        }
        gid
    });
    Ownership { uid, gid }
}

/// `^[A-Z_][A-Z0-9_]*$`: names every consumer of env files agrees on.
pub(super) fn is_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'A'..=b'Z' | b'_'))
        && bytes.all(|b| matches!(b, b'A'..=b'Z' | b'0'..=b'9' | b'_'))
}
