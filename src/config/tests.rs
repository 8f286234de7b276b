use std::path::{Path, PathBuf};
use std::time::Duration;

use super::check::is_env_name;
use super::*;

const MINIMAL: &str = r#"
[source]
url = "https://backend.example.com/api/calendars/google-mcp-tokens/current-token/"
"#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("test.toml"), &Environment::default())
}

fn problems(text: &str) -> Vec<Problem> {
    parse(text).expect_err("the config should be refused").problems
}

/// The single problem of a refused config, as (key, line, message).
fn only_problem(text: &str) -> (Option<String>, Option<usize>, String) {
    let mut all = problems(text);
    assert_eq!(all.len(), 1, "expected one problem, got {all:?}");
    let p = all.remove(0);
    (p.key, p.line, p.message)
}

#[test]
fn minimal_config_gets_the_documented_defaults() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.tokens[0].source.timeout, Duration::from_secs(10));
    assert!(!c.tokens[0].source.allow_http);
    assert_eq!(c.tokens[0].source.fields.token, "/token");
    assert_eq!(c.tokens[0].source.fields.expiry(), ExpiryField::At("/expires_at"));
    assert_eq!(c.tokens[0].source.fields.valid, "/valid");
    assert_eq!(c.tokens[0].source.fields.agent, "/agent_name");
    assert_eq!(c.tokens[0].refresh.lifetime_fraction, 0.6);
    assert_eq!(c.tokens[0].refresh.jitter, 0.1);
    assert_eq!(c.tokens[0].refresh.min_interval, Duration::from_secs(5));
    assert_eq!(c.tokens[0].refresh.max_interval, Duration::from_secs(900));
    assert_eq!(c.tokens[0].refresh.backoff_max, Duration::from_secs(120));
    assert_eq!(c.tokens[0].validate.min_remaining, Duration::from_secs(10));
    assert_eq!(c.tokens[0].validate.max_lifetime, Duration::from_secs(30 * 86400));
    assert_eq!(c.daemon.state_dir, PathBuf::from("/var/lib/mcp-token-sync"));
    assert!(c.daemon.watch_config);
    assert_eq!(c.daemon.log_format, LogFormat::Text);
    assert!(c.tokens[0].sinks.is_empty());
}

#[test]
fn the_example_config_parses() {
    let text = include_str!("../../config.example.toml");
    let env = Environment {
        credentials_directory: Some("/run/credentials/mcp-token-sync.service".into()),
        ..Environment::default()
    };
    let c = Config::parse(text, Path::new("config.example.toml"), &env).unwrap();
    assert_eq!(c.tokens[0].sinks.len(), 6);
    let auth = c.tokens[0].source.auth.clone().unwrap();
    assert_eq!(auth.credential_file, PathBuf::from("/run/credentials/mcp-token-sync.service/backend-key"));
}

#[test]
fn unknown_key_is_named_with_its_line() {
    let (key, line, message) = only_problem(&format!("{MINIMAL}\n[refresh]\nmin_intervall = \"5s\"\n"));
    assert_eq!(line, Some(6));
    assert!(message.contains("min_intervall"), "{message}");
    assert_eq!(key.as_deref(), Some("refresh.min_intervall"));
}

#[test]
fn bad_duration_names_key_line_and_the_fix() {
    let (key, line, message) = only_problem(&format!("{MINIMAL}[refresh]\nmin_interval = \"5\"\n"));
    assert_eq!(key.as_deref(), Some("refresh.min_interval"));
    assert_eq!(line, Some(5));
    assert!(message.contains("\"5\" is not a duration") && message.contains("\"30s\""), "{message}");
}

#[test]
fn error_display_names_file_line_and_key() {
    let err = parse(&format!("{MINIMAL}[refresh]\nmin_interval = \"5\"\n")).unwrap_err();
    let shown = err.to_string();
    assert!(shown.starts_with("test.toml line 5, key `refresh.min_interval`: "), "{shown}");
}

#[test]
fn durations_accept_every_documented_unit() {
    for (text, expected) in [
        ("500ms", Duration::from_millis(500)),
        ("30s", Duration::from_secs(30)),
        ("5m", Duration::from_secs(300)),
        ("2h", Duration::from_secs(7200)),
        ("30d", Duration::from_secs(30 * 86400)),
    ] {
        assert_eq!(values::duration::parse(text).unwrap(), expected, "{text}");
    }
}

#[test]
fn plain_http_to_a_remote_host_is_refused() {
    let (key, line, message) = only_problem("[source]\nurl = \"http://backend.example.com/t\"\n");
    assert_eq!(key.as_deref(), Some("source.url"));
    assert_eq!(line, Some(2));
    assert!(message.contains("allow_http"), "{message}");
}

#[test]
fn plain_http_is_accepted_to_loopback_or_with_allow_http() {
    for url in ["http://127.0.0.1:8080/t", "http://[::1]/t", "http://localhost/t", "http://127.3.2.1/t"] {
        parse(&format!("[source]\nurl = \"{url}\"\n")).unwrap_or_else(|e| panic!("{url}: {e}"));
    }
    parse("[source]\nurl = \"http://backend.example.com/t\"\nallow_http = true\n").unwrap();
}

#[test]
fn other_url_schemes_are_refused() {
    let (key, _, message) = only_problem("[source]\nurl = \"ftp://backend.example.com/t\"\n");
    assert_eq!(key.as_deref(), Some("source.url"));
    assert!(message.contains("ftp"), "{message}");
}

#[test]
fn lifetime_fraction_outside_zero_one_is_refused() {
    for bad in ["0.0", "1.0", "1.5", "-0.2"] {
        let (key, line, _) = only_problem(&format!("{MINIMAL}[refresh]\nlifetime_fraction = {bad}\n"));
        assert_eq!(key.as_deref(), Some("refresh.lifetime_fraction"), "{bad}");
        assert_eq!(line, Some(5));
    }
}

#[test]
fn min_interval_longer_than_max_interval_is_refused() {
    let (key, line, message) =
        only_problem(&format!("{MINIMAL}[refresh]\nmax_interval = \"1m\"\nmin_interval = \"2m\"\n"));
    assert_eq!(key.as_deref(), Some("refresh.min_interval"));
    assert_eq!(line, Some(6));
    assert!(message.contains("max_interval"), "{message}");
}

#[test]
fn every_problem_is_reported_at_once() {
    let all = problems(&format!("{MINIMAL}[refresh]\njitter = 2.0\nlifetime_fraction = 3.0\n"));
    let keys: Vec<_> = all.iter().map(|p| p.key.clone().unwrap()).collect();
    assert!(keys.contains(&"refresh.jitter".to_string()), "{keys:?}");
    assert!(keys.contains(&"refresh.lifetime_fraction".to_string()), "{keys:?}");
}

#[test]
fn mode_must_be_an_octal_string() {
    let sink = |mode: &str| {
        format!("{MINIMAL}\n[[sink]]\ntype = \"file\"\npath = \"/run/x/token\"\nmode = {mode}\n")
    };
    let c = parse(&sink("\"0640\"")).unwrap();
    let SinkConfig::File(f) = &c.tokens[0].sinks[0] else { panic!("file sink expected") };
    assert_eq!(f.target.mode, Mode(0o640));

    for bad in ["\"0689\"", "\"rw-------\"", "\"01777\"", "\"\""] {
        let (key, line, message) = only_problem(&sink(bad));
        assert_eq!(key.as_deref(), Some("sink[0].mode"), "{bad}");
        assert_eq!(line, Some(8), "{bad}");
        assert!(message.contains("octal"), "{bad}: {message}");
    }
    let (_, _, message) = only_problem(&sink("600"));
    assert!(message.contains("octal string"), "{message}");
}

#[test]
fn world_writable_file_modes_are_refused_socket_modes_are_not() {
    for kind in ["type = \"file\"", "type = \"env_file\"\nvariable = \"T\""] {
        let (key, _, message) =
            only_problem(&format!("{MINIMAL}[[sink]]\n{kind}\npath = \"/run/x/token\"\nmode = \"0666\"\n"));
        assert_eq!(key.as_deref(), Some("sink[0].mode"), "{kind}");
        assert!(message.contains("every user"), "{message}");
    }
    // For a socket, write permission means "may connect"; the peer check decides who is served.
    let c = parse(&format!(
        "{MINIMAL}[[sink]]\ntype = \"socket\"\npath = \"/run/x/api.sock\"\nmode = \"0666\"\n"
    ))
    .expect("a world-connectable socket is allowed");
    let SinkConfig::Socket(socket) = &c.tokens[0].sinks[0] else { panic!("socket sink expected") };
    assert_eq!(socket.mode, Mode(0o666));
}

#[test]
fn two_sinks_with_one_path_are_refused() {
    let text = format!(
        "{MINIMAL}[[sink]]\ntype = \"file\"\npath = \"/run/x/token\"\n\n[[sink]]\ntype = \"file\"\nformat = \"json\"\npath = \"/run/x/token\"\n"
    );
    let (key, line, message) = only_problem(&text);
    assert_eq!(key.as_deref(), Some("sink[1].path"));
    assert_eq!(line, Some(11));
    assert!(message.contains("sink[0]"), "{message}");
}

#[test]
fn unknown_field_in_a_sink_is_named() {
    let (key, line, message) =
        only_problem(&format!("{MINIMAL}[[sink]]\ntype = \"file\"\npath = \"/run/x/t\"\npaht = \"/x\"\n"));
    assert!(message.contains("paht"), "{message}");
    assert!(key.as_deref().unwrap_or_default().starts_with("sink"), "{key:?}");
    assert!(line.is_some());
}

#[test]
fn unknown_sink_type_is_refused() {
    let (_, line, message) =
        only_problem(&format!("{MINIMAL}[[sink]]\ntype = \"carrier-pigeon\"\npath = \"/x\"\n"));
    assert!(message.contains("carrier-pigeon"), "{message}");
    assert!(line.is_some());
}

#[test]
fn relative_sink_path_is_refused() {
    let (key, _, _) = only_problem(&format!("{MINIMAL}[[sink]]\ntype = \"file\"\npath = \"token\"\n"));
    assert_eq!(key.as_deref(), Some("sink[0].path"));
}

#[test]
fn credentials_directory_is_expanded_in_paths() {
    let text = format!(
        "{MINIMAL}[source.auth]\ntype = \"bearer\"\ncredential_file = \"${{CREDENTIALS_DIRECTORY}}/backend-key\"\n"
    );
    let env = Environment {
        credentials_directory: Some("/run/credentials/x.service".into()),
        ..Environment::default()
    };
    let c = Config::parse(&text, Path::new("t.toml"), &env).unwrap();
    assert_eq!(
        c.tokens[0].source.auth.clone().unwrap().credential_file,
        PathBuf::from("/run/credentials/x.service/backend-key")
    );

    let (key, line, message) = only_problem(&text);
    assert_eq!(key.as_deref(), Some("source.auth.credential_file"));
    assert_eq!(line, Some(6));
    assert!(message.contains("CREDENTIALS_DIRECTORY is not set"), "{message}");
}

#[test]
fn other_variables_in_paths_are_refused() {
    let (key, _, message) = only_problem(&format!("{MINIMAL}[daemon]\nstate_dir = \"${{HOME}}/state\"\n"));
    assert_eq!(key.as_deref(), Some("daemon.state_dir"));
    assert!(
        message.contains("only ${CREDENTIALS_DIRECTORY}, ${STATE_DIRECTORY} and ${RUNTIME_DIRECTORY}"),
        "{message}"
    );
}

#[test]
fn the_service_directories_are_expanded_in_paths() {
    let text = format!(
        "{MINIMAL}[daemon]\nstate_dir = \"${{STATE_DIRECTORY}}\"\n\n[[sink]]\ntype = \"socket\"\npath = \"${{RUNTIME_DIRECTORY}}/api.sock\"\n"
    );
    let env = Environment {
        state_directory: Some("/home/alice/.local/state/mcp-token-sync".into()),
        runtime_directory: Some("/run/user/1000/mcp-token-sync".into()),
        ..Environment::default()
    };
    let c = Config::parse(&text, Path::new("t.toml"), &env).unwrap();
    assert_eq!(c.daemon.state_dir, PathBuf::from("/home/alice/.local/state/mcp-token-sync"));
    assert_eq!(c.tokens[0].sinks[0].path(), Some(Path::new("/run/user/1000/mcp-token-sync/api.sock")));
    let (key, _, message) = only_problem(&text.replace("${RUNTIME_DIRECTORY}/api.sock", "/run/x.sock"));
    assert_eq!(key.as_deref(), Some("daemon.state_dir"));
    assert!(
        message.contains("STATE_DIRECTORY is not set") && message.contains("StateDirectory="),
        "{message}"
    );
}

#[test]
fn header_auth_needs_a_header_name() {
    let (key, _, _) =
        only_problem(&format!("{MINIMAL}[source.auth]\ntype = \"header\"\ncredential_file = \"/etc/k\"\n"));
    assert_eq!(key.as_deref(), Some("source.auth.header"));
    let (key, _, _) = only_problem(&format!(
        "{MINIMAL}[source.auth]\ntype = \"header\"\nheader = \"Bad Header\"\ncredential_file = \"/etc/k\"\n"
    ));
    assert_eq!(key.as_deref(), Some("source.auth.header"));
}

#[test]
fn basic_auth_needs_a_username() {
    let (key, _, _) =
        only_problem(&format!("{MINIMAL}[source.auth]\ntype = \"basic\"\ncredential_file = \"/etc/k\"\n"));
    assert_eq!(key.as_deref(), Some("source.auth.username"));
}

#[test]
fn expires_at_and_expires_in_are_exclusive() {
    let (key, _, _) =
        only_problem(&format!("{MINIMAL}[source.fields]\nexpires_at = \"/a\"\nexpires_in = \"/b\"\n"));
    assert_eq!(key.as_deref(), Some("source.fields.expires_in"));
    let c = parse(&format!("{MINIMAL}[source.fields]\nexpires_in = \"/expires_in\"\n")).unwrap();
    assert_eq!(c.tokens[0].source.fields.expiry(), ExpiryField::In("/expires_in"));
}

#[test]
fn field_must_be_a_json_pointer() {
    let (key, _, message) = only_problem(&format!("{MINIMAL}[source.fields]\ntoken = \"access_token\"\n"));
    assert_eq!(key.as_deref(), Some("source.fields.token"));
    assert!(message.contains("\"/access_token\""), "{message}");
}

#[test]
fn env_variable_names_are_checked() {
    let (key, _, _) = only_problem(&format!(
        "{MINIMAL}[[sink]]\ntype = \"env_file\"\npath = \"/run/x/t.env\"\nvariable = \"google-token\"\n"
    ));
    assert_eq!(key.as_deref(), Some("sink[0].variable"));
    assert!(is_env_name("GOOGLE_MCP_TOKEN") && is_env_name("_X1"));
    assert!(!is_env_name("1X") && !is_env_name("") && !is_env_name("lower"));
}

#[test]
fn unknown_owner_is_refused() {
    let (key, _, _) = only_problem(&format!(
        "{MINIMAL}[[sink]]\ntype = \"file\"\npath = \"/run/x/t\"\nowner = \"no-such-user-here\"\n"
    ));
    assert_eq!(key.as_deref(), Some("sink[0].owner"));
    let c = parse(&format!(
        "{MINIMAL}[[sink]]\ntype = \"file\"\npath = \"/run/x/t\"\nowner = \"root\"\ngroup = \"0\"\n"
    ))
    .unwrap();
    let SinkConfig::File(f) = &c.tokens[0].sinks[0] else { panic!("file sink expected") };
    assert_eq!(f.target.ids, Ownership { uid: Some(0), gid: Some(0) });
}

#[test]
fn max_lifetime_must_exceed_min_remaining() {
    let (key, _, _) =
        only_problem(&format!("{MINIMAL}[validate]\nmin_remaining = \"1h\"\nmax_lifetime = \"30m\"\n"));
    assert_eq!(key.as_deref(), Some("validate.max_lifetime"));
}

#[test]
fn syntax_error_gives_a_line() {
    let (_, line, _) = only_problem("[source]\nurl = \"https://x/\"\n[refresh\n");
    assert_eq!(line, Some(3));
}

#[test]
fn missing_source_is_refused() {
    let (_, _, message) = only_problem("[refresh]\njitter = 0.1\n");
    assert!(message.contains("source"), "{message}");
}

#[test]
fn resolved_config_round_trips_through_toml() {
    let c =
        parse(include_str!("../../config.example.toml").replace("${CREDENTIALS_DIRECTORY}", "/c").as_str())
            .unwrap();
    let shown = toml::to_string(&c).unwrap();
    let again = parse(&shown).unwrap();
    assert_eq!(toml::to_string(&again).unwrap(), shown);
}

#[test]
fn sink_key_of_another_type_is_named() {
    let (key, line, message) = only_problem(&format!(
        "{MINIMAL}[[sink]]\ntype = \"file\"\npath = \"/run/x/t\"\nvariable = \"TOKEN\"\n"
    ));
    assert_eq!(key.as_deref(), Some("sink[0].variable"));
    assert_eq!(line, Some(7));
    assert!(message.contains("does not apply to a sink of type \"file\""), "{message}");
}

#[test]
fn sink_without_a_required_key_is_refused() {
    let (key, line, message) =
        only_problem(&format!("{MINIMAL}[[sink]]\ntype = \"env_file\"\npath = \"/run/x/t.env\"\n"));
    assert_eq!(key.as_deref(), Some("sink[0].variable"));
    assert_eq!(line, Some(4), "falls back to the sink's own line");
    assert!(message.contains("is required"), "{message}");
}

#[test]
fn a_bad_cron_expression_is_named_with_its_line() {
    let (key, line, message) =
        only_problem(&format!("{MINIMAL}[refresh]\ncron = [\"0 0 3 * * *\",\n  \"0 3 * * *\"]\n"));
    // Parsed while the file is read: toml places the error at the list, the message names the
    // expression.
    assert_eq!(key.as_deref(), Some("refresh.cron"));
    assert_eq!(line, Some(5));
    assert!(message.contains("\"0 3 * * *\" is not a cron expression with seconds"), "{message}");
}

/// A config with one proxy sink made of `keys`.
fn proxy(keys: &str) -> String {
    format!("{MINIMAL}[[sink]]\ntype = \"proxy\"\n{keys}\n")
}

#[test]
fn a_proxy_gets_its_documented_defaults() {
    let c = parse(&proxy("listen = \"127.0.0.1:8787\"\nupstream = \"https://backend.example.com/base\""))
        .unwrap();
    let SinkConfig::Proxy(p) = &c.tokens[0].sinks[0] else { panic!("a proxy sink") };
    assert_eq!(p.listen, Listen::Tcp("127.0.0.1:8787".parse().unwrap()));
    assert_eq!((p.header.as_str(), p.scheme.as_deref()), ("Authorization", Some("Bearer")));
    assert_eq!(p.replay_limit, ByteSize(1 << 20));
    assert_eq!(p.timeout, Duration::from_secs(60));
    assert_eq!((p.max_connections, p.allow_http, p.mode), (1024, false, None));

    let c = parse(&proxy(
        "listen = \"/run/x/proxy.sock\"\nupstream = \"https://b.example\"\nheader = \"X-Google-MCP-Token\"\nreplay_limit = \"64KiB\"",
    ))
    .unwrap();
    let SinkConfig::Proxy(p) = &c.tokens[0].sinks[0] else { panic!("a proxy sink") };
    assert_eq!(p.listen, Listen::Unix("/run/x/proxy.sock".into()));
    assert_eq!(p.mode, Some(Mode(0o660)));
    assert_eq!(p.scheme, None, "no scheme before the token in another header, unless given");
    assert_eq!(p.replay_limit, ByteSize(64 << 10));
}

#[test]
fn proxy_keys_are_checked_each_with_its_key_and_line() {
    let up = "upstream = \"https://b.example\"";
    for (keys, key, line, words) in [
        ("listen = \"0.0.0.0:8787\"", "sink[0].listen", 6, "not a loopback address"),
        ("listen = \"192.168.1.5:8787\"", "sink[0].listen", 6, "not a loopback address"),
        ("listen = \"127.0.0.1:0\"", "sink[0].listen", 6, "no port"),
        ("listen = \"localhost:8787\"", "sink[0].listen", 6, "neither an IP address"),
        (
            "listen = \"127.0.0.1:8787\"\nupstream = \"http://b.example\"",
            "sink[0].upstream",
            7,
            "sink[0].allow_http",
        ),
        (
            "listen = \"127.0.0.1:8787\"\nupstream = \"https://u:p@b.example\"",
            "sink[0].upstream",
            7,
            "user or password",
        ),
        (
            "listen = \"127.0.0.1:8787\"\nupstream = \"https://b.example/?x=1\"",
            "sink[0].upstream",
            7,
            "query",
        ),
        ("listen = \"127.0.0.1:8787\"\nheader = \"Host\"", "sink[0].header", 7, "the proxy itself handles"),
        (
            "listen = \"127.0.0.1:8787\"\nheader = \"bad header\"",
            "sink[0].header",
            7,
            "not a valid HTTP header",
        ),
        ("listen = \"127.0.0.1:8787\"\nscheme = \"Bearer x\"", "sink[0].scheme", 7, "one word"),
        (
            "listen = \"127.0.0.1:8787\"\nallow_origins = [\"http://localhost:3000/app\"]",
            "sink[0].allow_origins[0]",
            7,
            "origin",
        ),
        ("listen = \"127.0.0.1:8787\"\nreplay_limit = \"lots\"", "sink[0].replay_limit", 7, "is not a size"),
        ("listen = \"127.0.0.1:8787\"\ntimeout = \"0s\"", "sink[0].timeout", 7, "longer than 0s"),
        ("listen = \"127.0.0.1:8787\"\nmode = \"0600\"", "sink[0].mode", 7, "only to a Unix listener"),
    ] {
        let text = proxy(&format!("{keys}\n{}", if keys.contains("upstream") { "" } else { up }));
        let (found, at, message) = only_problem(&text);
        assert_eq!(found.as_deref(), Some(key), "{keys}: {message}");
        assert_eq!(at, Some(line), "{keys}: {message}");
        assert!(message.contains(words), "{keys}: {message}");
    }
    // Plain http is fine to loopback, or with allow_http.
    parse(&proxy("listen = \"127.0.0.1:8787\"\nupstream = \"http://127.0.0.1:8000\"")).unwrap();
    parse(&proxy("listen = \"[::1]:8787\"\nupstream = \"http://b.example\"\nallow_http = true")).unwrap();
}

#[test]
fn two_proxies_on_one_address_are_refused() {
    let one = "[[sink]]\ntype = \"proxy\"\nlisten = \"127.0.0.1:8787\"\nupstream = \"https://b.example\"\n";
    let (key, _, message) = only_problem(&format!("{MINIMAL}{one}\n{one}"));
    assert_eq!(key.as_deref(), Some("sink[1].listen"));
    assert!(message.contains("already where sink[0] listens"), "{message}");
}

#[test]
fn an_oauth2_source_with_client_credentials_resolves() {
    let text = "[source]\ntype = \"oauth2\"\ngrant = \"client_credentials\"\n\
                token_endpoint = \"https://auth.example.com/oauth/token\"\nresource = \"https://mcp.example.com/mcp\"\n\
                scope = \"calendar.read\"\nclient_id = \"host7\"\nclient_auth = \"private_key_jwt\"\n\
                private_key_file = \"/etc/mcp-token-sync/key.pem\"\nkey_id = \"k1\"\ndefault_lifetime = \"1h\"\n";
    let c = parse(text).unwrap();
    assert_eq!(c.tokens[0].source.kind, SourceKind::Oauth2);
    assert_eq!(c.tokens[0].source.grant, Some(Grant::ClientCredentials));
    assert_eq!(c.tokens[0].source.client_auth, Some(ClientAuth::PrivateKeyJwt));
    assert_eq!(c.tokens[0].source.default_lifetime, Some(Duration::from_secs(3600)));
    assert!(c.tokens[0].source.url.is_none());
}

#[test]
fn every_oauth2_combination_that_cannot_work_is_named_by_its_key_and_line() {
    let cases: [(&str, &str, &str); 9] = [
        ("type = \"oauth2\"\n", "source.token_endpoint", "token_endpoint, issuer or resource"),
        ("type = \"oauth2\"\nissuer = \"http://auth.example.com\"\n", "source.issuer", "plain http"),
        (
            "type = \"oauth2\"\nissuer = \"https://a.example\"\nurl = \"https://b.example/t\"\n",
            "source.url",
            "only used with type = \"endpoint\"",
        ),
        (
            "type = \"oauth2\"\ngrant = \"client_credentials\"\nissuer = \"https://a.example\"\nclient_auth = \"client_secret_basic\"\nclient_secret_file = \"/s\"\n",
            "source.client_id",
            "required",
        ),
        (
            "type = \"oauth2\"\ngrant = \"client_credentials\"\nissuer = \"https://a.example\"\nclient_id = \"c\"\n",
            "source.client_auth",
            "authenticates",
        ),
        (
            "type = \"oauth2\"\nissuer = \"https://a.example\"\nclient_id = \"c\"\nclient_auth = \"client_secret_post\"\n",
            "source.client_secret_file",
            "required",
        ),
        (
            "type = \"oauth2\"\nissuer = \"https://a.example\"\nclient_id = \"c\"\nclient_auth = \"private_key_jwt\"\n",
            "source.private_key_file",
            "required",
        ),
        (
            "issuer = \"https://a.example\"\nurl = \"https://b.example/t\"\n",
            "source.issuer",
            "only used with type = \"oauth2\"",
        ),
        (
            "type = \"oauth2\"\nissuer = \"https://a.example\"\nkey_id = \"k\"\n",
            "source.key_id",
            "private_key_jwt",
        ),
    ];
    for (keys, key, says) in cases {
        let (found, line, message) = only_problem(&format!("[source]\n{keys}"));
        assert_eq!(found.as_deref(), Some(key), "{keys}: {message}");
        let in_file = keys.contains(&format!("{} =", key.trim_start_matches("source.")));
        assert!(!in_file || line.is_some(), "{keys}: no line for {key}");
        assert!(message.contains(says), "{keys}: {message}");
    }
}
