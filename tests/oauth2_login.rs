//! `mcp-token-sync login` and `needs_login` (DESIGN §13) against a real authorization server,
//! oidc-provider, whose development login pages a scripted person (tests/oauth/user.py) fills
//! in: the device grant and the authorization code grant with PKCE, with a configured client
//! and with one the daemon registers; a redirect with the wrong state refused; a revoked grant
//! that only a login mends.

mod support;

use std::time::Duration;

use nix::sys::signal::Signal;
use support::oauth::{Login, OAuthDaemon, PATIENCE, Provider, person};

/// Logs in by `flags` through the person's browser (`person_flags`); the command's output.
fn log_in(d: &OAuthDaemon, flags: &[&str], person_flags: &[&str]) -> (bool, String, String) {
    let mut login = Login::start(&d.socket, flags);
    let mut url = login.url();
    if login.printed.contains("enter the code") {
        url = login.url(); // the complete one, which carries the code
    }
    let seen = person(&url, person_flags);
    let (ok, printed) = login.finish();
    (ok, printed, seen)
}

#[test]
fn a_registered_client_logs_in_by_browser_then_by_device_and_a_wrong_state_is_refused() {
    let p = Provider::start(300);
    let d = OAuthDaemon::start(&p, "");
    let status = d.wait_state("needs_login");
    assert_eq!(status["refresh_token"]["state"], "missing", "{status}");
    assert_eq!(d.curl(&["http://d/v1/health"]).0, 503);
    assert!(d.curl(&["http://d/metrics"]).1.contains("mcp_token_sync_needs_login{token=\"default\"} 1"));

    let (ok, printed, seen) = log_in(&d, &["--browser"], &["--wrong-state"]);
    assert!(seen.contains("wrong-state 400") && seen.contains("final 200"), "{seen}");
    assert!(ok && printed.contains("logged in: token version 1"), "{printed}\n{}", d.daemon.output());
    let status = d.wait_state("fresh");
    assert_eq!(status["refresh_token"]["state"], "held", "{status}");
    assert_eq!(status["source"]["token_endpoint"], format!("{}/token", p.issuer), "{status}");
    assert!(std::fs::read_to_string(&d.file).unwrap().len() > 20);
    let client = d.stored()["client"]["client_id"].as_str().expect("a registered client").to_owned();

    // Without --device or --browser the server's offer decides: it has device authorization.
    let (ok, printed, _) = log_in(&d, &[], &[]);
    assert!(ok && printed.contains("enter the code"), "{printed}");
    assert!(printed.contains("logged in: token version 2"), "{printed}");
    assert_eq!(d.stored()["client"]["client_id"], client, "the registered client is reused");
    assert_eq!(d.curl(&["http://d/v1/health"]).0, 200);
    assert!(d.curl(&["http://d/metrics"]).1.contains("mcp_token_sync_needs_login{token=\"default\"} 0"));
}

#[test]
fn a_configured_client_logs_in_by_device_and_a_refusal_in_the_browser_is_named() {
    let p = Provider::start(300);
    let d = OAuthDaemon::start(&p, "client_id = \"host-public\"\n");
    d.wait_state("needs_login");
    let (ok, printed, _) = log_in(&d, &["--device"], &[]);
    assert!(ok && printed.contains("logged in: token version 1"), "{printed}");
    assert!(d.stored().get("client").is_none(), "a configured client needs no registration");

    let (ok, printed, seen) = log_in(&d, &["--browser"], &["--abort"]);
    assert!(seen.contains("final 200"), "{seen}");
    assert!(!ok && printed.contains("access_denied"), "{printed}");
    let status = d.status();
    assert_eq!((status["state"].as_str(), status["version"].as_u64()), (Some("fresh"), Some(1)), "{status}");
    assert!(d.daemon.output().contains("access_denied"), "{}", d.daemon.output());
}

#[test]
fn only_one_login_at_a_time_and_a_command_that_goes_away_ends_its_flow() {
    let p = Provider::start(300);
    let d = OAuthDaemon::start(&p, "client_id = \"host-public\"\n");
    d.wait_state("needs_login");
    let mut first = Login::start(&d.socket, &["--browser"]);
    first.url();
    let (code, body) = d.curl(&["-X", "POST", "http://d/v1/login"]);
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("login_running"), "{body}");
    first.kill(Signal::SIGINT);
    let (ok, _) = first.finish();
    assert!(!ok, "Ctrl-C exits 1");
    d.daemon.wait_output("login cancelled", PATIENCE);
    // The flow is over: a new one starts.
    let mut second = Login::start(&d.socket, &["--device"]);
    second.url();
    drop(second);
    // Bad requests are refused and name what is wrong.
    let (code, body) = d.curl(&["-X", "POST", "http://d/v1/login", "-d", "{\"method\": \"pigeon\"}"]);
    assert_eq!(code, 400, "{body}");
    let (code, _) = d.curl(&["http://d/v1/login"]);
    assert_eq!(code, 405);
}

#[test]
fn a_revoked_grant_needs_login_serves_the_last_token_and_asks_the_server_no_more() {
    let p = Provider::start(300);
    let seed_dir = tempfile::tempdir().unwrap();
    let seed = seed_dir.path().join("seed");
    std::fs::write(&seed, p.refresh_token(support::oauth::RESOURCE)).unwrap();
    let keys = format!(
        "client_id = \"host-public\"\nrefresh_token_file = \"{}\"\n\n[refresh]\nmin_interval = \"1s\"\nbackoff_max = \"2s\"\n",
        seed.display()
    );
    let d = OAuthDaemon::start(&p, &keys);
    d.wait_state("fresh");
    let held = d.stored()["refresh_token"].as_str().unwrap().to_owned();
    let revoked = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", &format!("{}/token/revocation", p.issuer)])
        .args(["-d", &format!("token={held}"), "-d", "client_id=host-public"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&revoked.stdout), "200");

    let (code, body) = d.curl(&["-X", "POST", "http://d/v1/refresh"]);
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("invalid_grant") && body.contains("mcp-token-sync login"), "{body}");
    let status = d.wait_state("needs_login");
    assert_eq!(status["refresh_token"]["state"], "refused", "{status}");
    assert_eq!(d.stored()["refresh_token"], held.as_str(), "a refused refresh token is kept");
    let (code, body) = d.curl(&["http://d/v1/health"]);
    assert!(code == 503 && body.contains("needs_login"), "{body}");
    assert_eq!(d.curl(&["http://d/v1/token"]).0, 200, "the last access token is served until it expires");

    // The schedule tries every backoff_max and triggers ask too; none of it reaches the server.
    let asked = p.stats()["grants"]["refresh_token"].as_u64().unwrap();
    let until = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < until {
        d.daemon.signal(Signal::SIGUSR1);
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(p.stats()["grants"]["refresh_token"].as_u64().unwrap(), asked, "{}", p.stats());

    let (ok, printed, _) = log_in(&d, &["--device"], &[]);
    assert!(ok, "{printed}");
    let status = d.wait_state("fresh");
    assert_eq!(status["refresh_token"]["state"], "held", "{status}");
    assert_eq!(d.curl(&["http://d/v1/health"]).0, 200);

    // No secret anywhere a secret should not be.
    let now_held = d.stored()["refresh_token"].as_str().unwrap().to_owned();
    let pid = d.daemon.pid();
    let places = [
        ("the log", d.daemon.output()),
        ("status", d.status().to_string()),
        ("metrics", d.curl(&["http://d/metrics"]).1),
        ("the file sink", std::fs::read_to_string(&d.file).unwrap()),
        ("the login's output", printed),
        (
            "cmdline",
            String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap()).into_owned(),
        ),
        (
            "environ",
            String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/environ")).unwrap()).into_owned(),
        ),
    ];
    for (place, text) in places {
        for secret in [&held, &now_held] {
            assert!(!text.contains(secret.as_str()), "a refresh token in {place}");
        }
    }
}

/// Who may log the daemon in, and which sources need no login.
#[test]
fn only_root_and_the_daemon_user_may_log_in_and_client_credentials_need_no_login() {
    let p = Provider::start(300);
    let dir = tempfile::tempdir().unwrap();
    // Another user must reach the socket: its own directory, open to all.
    let public = tempfile::tempdir().unwrap();
    std::fs::set_permissions(public.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let open = public.path().join("open.sock");
    let sink = format!(
        "[[sink]]\ntype = \"socket\"\npath = \"{}\"\nmode = \"0666\"\nallow_uids = [65534]\n",
        open.display()
    );
    let source = format!(
        "issuer = \"{}\"\nresource = \"{}\"\nclient_id = \"host-public\"\n",
        p.issuer,
        support::oauth::RESOURCE
    );
    let d = OAuthDaemon::start_in(dir, &source, &sink);
    d.wait_state("needs_login");
    if support::skip::as_root("only_root_and_the_daemon_user_may_log_in", "act as other uids") {
        let socket = open.to_str().unwrap();
        let status =
            support::binary::curl_as(65534, &["-X", "POST", "--unix-socket", socket, "http://d/v1/login"]);
        assert_eq!(status, "403", "a user allowed to read the token may not choose whose it is");
    }

    let basic = p.secret_file("basic", "basic-secret-0123456789");
    let keys = format!(
        "grant = \"client_credentials\"\nclient_id = \"service-basic\"\nclient_auth = \"client_secret_basic\"\nclient_secret_file = \"{}\"\n",
        basic.display()
    );
    let service = OAuthDaemon::start(&p, &keys);
    service.wait_state("fresh");
    let (code, body) = service.curl(&["-X", "POST", "http://d/v1/login"]);
    assert!(code == 400 && body.contains("login_not_needed"), "{code} {body}");
    let (ok, printed) = Login::start(&service.socket, &[]).finish();
    assert!(ok && printed.contains("no login needed"), "{printed}");
}

/// RFC 9207, as the MCP authorization spec of 2026-07-28 asks (DESIGN §16): oidc-provider
/// names itself as `iss` on every redirect and says so in its metadata. A redirect naming
/// another issuer, or none, ends the login naming `iss`, and no code is exchanged.
#[test]
fn a_redirect_naming_another_issuer_or_none_ends_the_login_with_nothing_exchanged() {
    let p = Provider::start(300);
    let d = OAuthDaemon::start(&p, "client_id = \"host-public\"\n");
    d.wait_state("needs_login");
    let issuer = url::form_urlencoded::byte_serialize(p.issuer.as_bytes()).collect::<String>();
    type Tamper = fn(&str, &str) -> String;
    let cases: [(&str, Tamper); 2] = [
        ("names the issuer \"https://mixup.example\"", |url, iss| {
            url.replace(&format!("iss={iss}"), "iss=https%3A%2F%2Fmixup.example")
        }),
        ("carries no iss", |url, iss| {
            url.replace(&format!("&iss={iss}"), "").replace(&format!("iss={iss}&"), "")
        }),
    ];
    for (said, tamper) in cases {
        let mut login = Login::start(&d.socket, &["--browser"]);
        let url = login.url();
        let seen = person(&url, &["--login", "alice", "--stop-at-callback"]);
        let line = seen.lines().find(|l| l.starts_with("callback ")).unwrap_or_else(|| panic!("{seen}"));
        let callback = &line["callback ".len()..];
        assert!(callback.contains(&format!("iss={issuer}")), "oidc-provider sends iss: {callback}");
        let tampered = tamper(callback, &issuer);
        assert_ne!(tampered, callback);
        let out = std::process::Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", &tampered])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "400");
        let (ok, printed) = login.finish();
        assert!(!ok && printed.contains(said) && printed.contains("RFC 9207"), "{printed}");
    }
    assert!(p.stats()["grants"]["authorization_code"].is_null(), "no code exchanged: {}", p.stats());
    assert_eq!(d.status()["state"], "needs_login");

    // Control: the redirect as the server sent it completes the login.
    let mut login = Login::start(&d.socket, &["--browser"]);
    let seen = person(&login.url(), &["--login", "alice"]);
    assert!(seen.contains("final 200"), "{seen}");
    let (ok, printed) = login.finish();
    assert!(ok && printed.contains("logged in"), "{printed}");
}
