//! The checks serde cannot make on its own: values that depend on several keys or on the host
//! (paths, users, cross-key limits), and the values they resolve (expanded paths, owner ids, the
//! default expiry field). Every problem is recorded, not just the first.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use url::Url;

use super::{
    Config, Environment, FileTarget, Listen, Ownership, Problems, RefreshConfig, SinkConfig, ValidateConfig,
    duration_display,
};

mod oauth2;
mod proxy;
mod source;
#[cfg(test)]
mod tests;

/// Checks what serde cannot see on its own and fills resolved values (expanded paths,
/// owner ids, the default expiry field, each token's state directory), recording every
/// problem found.
pub(super) fn resolve(config: &mut Config, env: &Environment, found: &mut Problems) {
    if let Some(dir) = expand(found, "daemon.state_dir", &config.daemon.state_dir, env) {
        config.daemon.state_dir = dir;
    }
    // Where each sink writes or listens, and the key that said so first: no two may share one.
    let mut taken = Taken::default();
    resolve_sinks(&mut config.sinks, env, found, &mut taken);
    let prefixes: Vec<String> = config.tokens.iter().map(|t| config.key_prefix(t)).collect();
    for (token, prefix) in config.tokens.iter_mut().zip(prefixes) {
        token.shared_state_dir = config.daemon.state_dir.clone();
        token.state_dir = match (config.named, token.name.as_str()) {
            (true, name) if name != super::DEFAULT_TOKEN => config.daemon.state_dir.join("tokens").join(name),
            _ => config.daemon.state_dir.clone(),
        };
        found.under(&prefix, |found| {
            source::resolve(&mut token.source, env, found);
            check_refresh(&token.refresh, found);
            check_validate(&token.validate, token.source.allow_http, found);
            resolve_sinks(&mut token.sinks, env, found, &mut taken);
        });
    }
    check_subject_tokens(config, found);
}

/// `subject_token = "NAME"` (DESIGN §16) names another token of this daemon, and no chain of
/// them comes back to where it started: each token would wait for the next forever.
fn check_subject_tokens(config: &Config, found: &mut Problems) {
    let subject_of = |name: &str| {
        config.tokens.iter().find(|t| t.name == name).and_then(|t| t.source.subject_token.as_deref())
    };
    for token in &config.tokens {
        let Some(first) = token.source.subject_token.as_deref() else { continue };
        let key = format!("{}source.subject_token", config.key_prefix(token));
        if !config.tokens.iter().any(|t| t.name == first) {
            let names: Vec<&str> = config.tokens.iter().map(|t| t.name.as_str()).collect();
            found.add(
                key,
                format!("names no token of this daemon: {first:?} (its tokens: {})", names.join(", ")),
            );
            continue;
        }
        // Bounded: a chain longer than the token count has looped.
        let mut chain = vec![token.name.as_str()];
        let mut next = Some(first);
        while let Some(name) = next.filter(|_| chain.len() <= config.tokens.len()) {
            chain.push(name);
            if name == token.name {
                found.add(key, format!("loops: {}; each would wait for the next forever", chain.join(" → ")));
                break;
            }
            next = subject_of(name);
        }
    }
}

/// The paths and addresses sinks have taken so far, each with the full key that took it.
#[derive(Default)]
struct Taken {
    paths: HashMap<PathBuf, String>,
    addresses: HashMap<std::net::SocketAddr, String>,
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

fn resolve_sinks(sinks: &mut [SinkConfig], env: &Environment, found: &mut Problems, taken: &mut Taken) {
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
                if let Listen::Tcp(address) = c.listen {
                    let full = found.full_key(&format!("sink[{i}]"));
                    if let Some(first) = taken.addresses.get(&address) {
                        found.add(key("listen"), format!("{address} is already where {first} listens"));
                    } else {
                        taken.addresses.insert(address, full);
                    }
                }
            }
        }
        if let Some(path) = sink.path() {
            let full = found.full_key(&format!("sink[{i}]"));
            if let Some(first) = taken.paths.get(path) {
                found.add(
                    key("path"),
                    format!(
                        "{} is already the path of {first}; each sink needs its own file",
                        path.display()
                    ),
                );
            } else {
                taken.paths.insert(path.to_owned(), full);
            }
        }
    }
}

/// Expands `${CREDENTIALS_DIRECTORY}`, `${STATE_DIRECTORY}` and `${RUNTIME_DIRECTORY}`;
/// records a problem and returns `None` when it cannot.
pub(super) fn expand(found: &mut Problems, key: &str, path: &Path, env: &Environment) -> Option<PathBuf> {
    let variables = [
        ("${CREDENTIALS_DIRECTORY}", &env.credentials_directory, "units with LoadCredential="),
        ("${STATE_DIRECTORY}", &env.state_directory, "units with StateDirectory="),
        ("${RUNTIME_DIRECTORY}", &env.runtime_directory, "units with RuntimeDirectory="),
    ];
    let Some(text) = path.to_str() else {
        found.add(key, "is not valid UTF-8");
        return None;
    };
    let mut expanded = text.to_owned();
    for (variable, value, units) in variables {
        if !expanded.contains(variable) {
            continue;
        }
        let Some(dir) = value else {
            let name = &variable[2..variable.len() - 1];
            found.add(
                key,
                format!(
                    "uses {variable}, but {name} is not set: systemd sets it for {units}; outside \
                     systemd, set it to the directory meant"
                ),
            );
            return None;
        };
        expanded = expanded.replace(variable, &dir.to_string_lossy());
    }
    if expanded.contains("${") {
        found.add(
            key,
            format!(
                "{text:?}: only ${{CREDENTIALS_DIRECTORY}}, ${{STATE_DIRECTORY}} and ${{RUNTIME_DIRECTORY}} \
                 are expanded in paths"
            ),
        );
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
