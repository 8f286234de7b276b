//! Another local user attacks the OAuth login and the store (DESIGN §13, "A login on a shared
//! host", "The store and its files are the daemon's", "Every endpoint, however found", "The
//! client verbs trust only their daemon"), against the real authorization server (oidc-provider)
//! and, where a real one cannot misbehave as needed, a server the test scripts. Each attack has
//! its control beside it: the legitimate login, refresh or seed still works. Most need root, to
//! act as another uid with `setpriv`.

mod support;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use serde_json::json;
use support::binary::{Killed, curl_as, daemon_binary};
use support::fake_http::{Answer, FakeHttp};
use support::forge::{FORGE, TAKE_PORT, python_ready};
use support::oauth::{Login, OAuthDaemon, PATIENCE, Provider, RESOURCE, person, seeded_source};
use support::squatter::Squatter;

const NOBODY: u32 = 65534;

fn as_root(test: &str) -> bool {
    support::skip::as_root(test, "act as another uid")
}

/// `python3 -c script args…` as `uid`, its stdout piped.
fn python_as(uid: u32, script: &str, args: &[&str]) -> Child {
    Command::new("setpriv")
        .args([&format!("--reuid={uid}"), &format!("--regid={uid}"), "--clear-groups"])
        .args(["/usr/bin/python3", "-c", script])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("setpriv and python3 are installed")
}

/// Who the authorization server says an access token is for (RFC 7662, as the resource).
fn subject(p: &Provider, token: &str) -> String {
    let answer = p.introspect(token);
    answer["sub"].as_str().unwrap_or_else(|| panic!("no sub in {answer}")).to_owned()
}

/// The callback URL that a person approving `url` as `login` would be sent to, not followed.
fn approved_callback(url: &str, login: &str) -> String {
    let seen = person(url, &["--login", login, "--stop-at-callback"]);
    let line = seen.lines().find(|l| l.starts_with("callback ")).unwrap_or_else(|| panic!("{seen}"));
    line["callback ".len()..].to_owned()
}

/// A daemon waiting for a login, and `login --browser` (with `env`) started: the
/// authorization URL it printed.
fn browser_login(env: &[(&str, &str)]) -> (Provider, OAuthDaemon, Login, String) {
    let p = Provider::start(300);
    let d = OAuthDaemon::start(&p, "client_id = \"host-public\"\n");
    d.wait_state("needs_login");
    let mut login = Login::start_with_env(&d.socket, &["--browser"], env);
    let url = login.url();
    (p, d, login, url)
}

#[test]
fn another_users_redirect_with_their_own_code_never_completes_the_login() {
    if !as_root("another_users_redirect_with_their_own_code_never_completes_the_login") {
        return;
    }
    let (p, d, login, url) = browser_login(&[]);

    // The attacker read the URL (state, PKCE challenge) from the browser's command line,
    // approved it as themselves, and delivers the redirect before the real browser does.
    let theirs = approved_callback(&url, "mallory");
    assert_eq!(curl_as(NOBODY, &["--max-time", "5", &theirs]), "000", "the connection is closed unanswered");
    d.daemon.wait_output("refused peer uid 65534", PATIENCE);

    // The person who asked completes the login, as themselves.
    let seen = person(&url, &["--login", "alice"]);
    assert!(seen.contains("final 200"), "{seen}");
    let (ok, printed) = login.finish();
    assert!(ok && printed.contains("logged in: token version 1"), "{printed}\n{}", d.daemon.output());
    let token = support::wait_for("the file sink", PATIENCE, || std::fs::read_to_string(&d.file).ok());
    assert_eq!(subject(&p, &token), "alice", "the host serves the identity of the user who logged in");
    d.daemon
        .wait_output("the login's callback refused 1 connection(s) from other users (uids 65534)", PATIENCE);
}

#[test]
fn through_sudo_the_browser_of_the_user_sudo_runs_for_brings_the_redirect() {
    if !as_root("through_sudo_the_browser_of_the_user_sudo_runs_for_brings_the_redirect") {
        return;
    }
    let (_p, d, login, url) = browser_login(&[("SUDO_UID", "65534")]);
    let callback = approved_callback(&url, "alice");
    assert_eq!(curl_as(NOBODY, &["--max-time", "5", &callback]), "200");
    let (ok, printed) = login.finish();
    assert!(ok && printed.contains("logged in"), "{printed}");
    // Only root may name a browser: the daemon's own user asking with browser_uid is refused
    // (here the daemon runs as root, so a user other than root cannot ask at all).
    let (code, body) = d.curl(&["-X", "POST", "http://d/v1/login", "-d", "{\"browser_uid\": -1}"]);
    assert!(code == 400 && body.contains("browser_uid"), "{code} {body}");
}

/// The port of the loopback `redirect_uri` in an authorization URL.
fn callback_port(url: &str) -> u16 {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "redirect_uri")
        .map(|(_, v)| url::Url::parse(&v).unwrap().port().unwrap())
        .expect("a loopback redirect_uri")
}

#[test]
fn a_redirect_whose_client_reset_is_not_taken_as_whoever_holds_its_port_next() {
    if !as_root("a_redirect_whose_client_reset_is_not_taken_as_whoever_holds_its_port_next") {
        return;
    }
    let (p, d, login, url) = browser_login(&[]);
    let port = callback_port(&url);
    let theirs = approved_callback(&url, "mallory");
    let mut held = Vec::new();
    for taker in ["connection", "listener"] {
        let from = support::free_port("127.0.0.1").port().to_string();
        // Stopped, the daemon stands for one slow to accept: the request waits in the queue.
        d.daemon.signal(nix::sys::signal::Signal::SIGSTOP);
        let forged = python_as(NOBODY, FORGE, &[&theirs, &from]).wait_with_output().unwrap();
        assert!(forged.status.success());
        // Root (the victim's browser, or any root service) now holds that port.
        held.push(python_ready(TAKE_PORT, &[taker, &from, &port.to_string()]));
        d.daemon.signal(nix::sys::signal::Signal::SIGCONT);
    }
    // The person's redirect is accepted after the forged ones (the queue is first in, first out).
    let seen = person(&url, &["--login", "alice"]);
    assert!(seen.contains("final 200"), "{seen}");
    let (ok, printed) = login.finish();
    assert!(ok, "{printed}\n{}", d.daemon.output());
    let token = support::wait_for("the file sink", PATIENCE, || std::fs::read_to_string(&d.file).ok());
    assert_eq!(subject(&p, &token), "alice", "{}", d.daemon.output());
    d.daemon.wait_output(
        "the login's callback refused 2 connection(s) from other users (uids unknown)",
        PATIENCE,
    );
    drop(held);
}

/// Holds `count` idle connections to 127.0.0.1:PORT open, opening a new one as each closes,
/// for SECONDS; prints "ready" once all are open, then how many it opened in all.
const IDLE_FLOOD: &str = r#"
import socket, sys, time
port, count, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
open_, opened, ready, end = [], 0, False, time.time() + seconds
while time.time() < end:
    while len(open_) < count:
        s = socket.socket()
        try:
            s.connect(("127.0.0.1", port))
        except OSError:
            break
        s.setblocking(False)
        open_.append(s)
        opened += 1
    if not ready and len(open_) >= count:
        print("ready", flush=True)
        ready = True
    alive = []
    for s in open_:
        try:
            if s.recv(1) == b"":
                s.close()
                continue
        except BlockingIOError:
            pass
        except OSError:
            s.close()
            continue
        alive.append(s)
    open_ = alive
    time.sleep(0.002)
print(opened, flush=True)
"#;

#[test]
fn another_users_idle_connections_do_not_keep_the_redirect_out() {
    if !as_root("another_users_idle_connections_do_not_keep_the_redirect_out") {
        return;
    }
    let (_p, d, login, url) = browser_login(&[]);
    let port = callback_port(&url);

    let mut flood = python_as(NOBODY, IDLE_FLOOD, &[&port.to_string(), "32", "30"]);
    let mut out = BufReader::new(flood.stdout.take().unwrap());
    let _flood = Killed(flood);
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready", "the flood opened its connections");

    let seen = person(&url, &["--login", "alice"]);
    assert!(seen.contains("final 200"), "the real redirect got through: {seen}");
    let (ok, printed) = login.finish();
    assert!(ok && printed.contains("logged in"), "{printed}\n{}", d.daemon.output());
    assert!(d.daemon.output().contains("refused peer uid 65534"), "{}", d.daemon.output());
}

#[test]
fn a_held_store_lock_fails_the_refresh_within_the_timeout_naming_its_holder() {
    let p = Provider::start(300);
    let dir = tempfile::tempdir().unwrap();
    let (keys, _) = seeded_source(&p, dir.path(), RESOURCE, true);
    let keys = keys.replacen("\n\n[refresh]", "\ntimeout = \"1s\"\n\n[refresh]", 1);
    let d = OAuthDaemon::start_in(dir, &keys, "");
    d.wait_state("fresh");
    let lock = d.dir.path().join("oauth2.lock");

    // --no-fork: the lock's holder is this process itself, which the kill below ends.
    let mut holder = Command::new("flock")
        .arg("--no-fork")
        .arg(&lock)
        .args(["-c", "echo held; exec sleep 60"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("flock (util-linux) is installed");
    let mut said = String::new();
    BufReader::new(holder.stdout.take().unwrap()).read_line(&mut said).unwrap();
    let holder = Killed(holder);
    let (code, body) = d.curl(&["-X", "POST", "http://d/v1/refresh"]);
    assert_eq!(code, 503, "{body}");
    let pid = format!("pid {}", holder.0.id());
    assert!(body.contains("oauth2.lock") && body.contains(&pid), "{body}");
    assert!(d.status()["last_error"].as_str().unwrap().contains(&pid), "{}", d.status());
    drop(holder);
    let (code, body) = d.curl(&["-X", "POST", "http://d/v1/refresh"]);
    assert_eq!(code, 200, "released, the refresh works again: {body}");

    // A FIFO where the lock file was: refused at once, not waited on.
    std::fs::remove_file(&lock).unwrap();
    nix::unistd::mkfifo(&lock, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let (code, body) = d.curl(&["-X", "POST", "http://d/v1/refresh"]);
    assert!(code == 503 && body.contains("FIFO"), "{code} {body}");
    std::fs::remove_file(&lock).unwrap();

    // A state_dir others may write in: nothing there is trusted.
    std::fs::set_permissions(d.dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let (code, body) = d.curl(&["-X", "POST", "http://d/v1/refresh"]);
    assert!(code == 503 && body.contains("mode 0777"), "{code} {body}");
    std::fs::set_permissions(d.dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    assert_eq!(d.curl(&["-X", "POST", "http://d/v1/refresh"]).0, 200);
}

#[test]
fn a_seed_file_another_user_owns_is_refused_and_the_stored_login_carries_on() {
    if !as_root("a_seed_file_another_user_owns_is_refused_and_the_stored_login_carries_on") {
        return;
    }
    let p = Provider::start(300);
    let dir = tempfile::tempdir().unwrap();
    let (keys, seed) = seeded_source(&p, dir.path(), RESOURCE, true);
    let nobody = Some(nix::unistd::Uid::from_raw(NOBODY));
    nix::unistd::chown(&seed, nobody, None).unwrap();
    let d = OAuthDaemon::start_in(dir, &keys, "");
    let status = d
        .wait_status("a refused seed", |s| s["last_error"].as_str().is_some_and(|e| e.contains("uid 65534")));
    assert_eq!(status["version"], 0, "{status}");
    assert!(status["last_error"].as_str().unwrap().contains("refresh_token_file"), "{status}");

    // Control: the same file, the daemon's own, seeds.
    nix::unistd::chown(&seed, Some(nix::unistd::Uid::from_raw(0)), None).unwrap();
    assert_eq!(d.curl(&["-X", "POST", "http://d/v1/refresh"]).0, 200, "{}", d.daemon.output());

    // Another user rewrites the file (it became theirs): the watcher notices, the file is
    // refused, and the stored login carries on.
    nix::unistd::chown(&seed, nobody, None).unwrap();
    let planted = p.refresh_token(RESOURCE);
    std::fs::write(&seed, &planted).unwrap();
    d.daemon.wait_output("is not read (it belongs to uid 65534", PATIENCE);
    assert_ne!(d.stored()["refresh_token"], planted.as_str(), "the planted refresh token is never taken");
    assert_eq!(d.curl(&["-X", "POST", "http://d/v1/refresh"]).0, 200);
}

/// A resource whose metadata (RFC 9728), and whose 401, name `authorization_server` and
/// `metadata`.
fn resource_naming(authorization_server: Arc<Mutex<String>>, metadata: &'static str) -> FakeHttp {
    FakeHttp::start(move |seen| match seen.path() {
        "/mcp" => Answer::json(401, json!({}))
            .with_header("www-authenticate", &format!("Bearer resource_metadata=\"{metadata}\"")),
        "/.well-known/oauth-protected-resource/mcp" => {
            let host = seen.header("host").unwrap_or_default();
            Answer::json(
                200,
                json!({"resource": format!("http://{host}/mcp"),
                       "authorization_servers": [authorization_server.lock().unwrap().clone()]}),
            )
        }
        _ => Answer::json(404, json!({})),
    })
}

#[test]
fn discovery_naming_plain_http_off_loopback_is_refused() {
    let p = Provider::start(300);
    let named = Arc::new(Mutex::new("http://192.0.2.1".to_owned()));
    let resource = resource_naming(named.clone(), "http://192.0.2.1/meta");
    let source = format!("resource = \"{}/mcp\"\nclient_id = \"host-public\"\n", resource.url());
    let d = OAuthDaemon::start_in(tempfile::tempdir().unwrap(), &source, "");
    let (code, body) = d.curl(&["-X", "POST", "http://d/v1/refresh"]);
    assert_eq!(code, 503, "{body}");
    assert!(
        body.contains("the 401 of")
            && body.contains("http://192.0.2.1/meta")
            && body.contains("plain http off loopback"),
        "{body}"
    );
    assert!(
        body.contains("names the authorization server http://192.0.2.1/, refused: plain http off loopback"),
        "{body}"
    );

    // Control: the same resource naming the real authorization server (loopback, trusted).
    *named.lock().unwrap() = p.issuer.clone();
    let status = d.wait_status("the server found", |s| {
        d.curl(&["-X", "POST", "http://d/v1/refresh"]);
        s["source"]["token_endpoint"] == format!("{}/token", p.issuer)
    });
    assert_eq!(status["state"], "needs_login", "{status}");
}

/// An authorization server whose device authorization answer names `verification_uri` and a
/// user code with an escape sequence in it; its token endpoint is `token_endpoint` if set.
fn device_server(verification_uri: Arc<Mutex<String>>, token_endpoint: Option<String>) -> FakeHttp {
    FakeHttp::start(move |seen| {
        let host = format!("http://{}", seen.header("host").unwrap_or_default());
        match seen.path() {
            "/.well-known/oauth-authorization-server" => Answer::json(
                200,
                json!({"issuer": host, "token_endpoint": token_endpoint.clone().unwrap_or(format!("{host}/token")),
                       "device_authorization_endpoint": format!("{host}/device")}),
            ),
            "/device" => Answer::json(
                200,
                json!({"device_code": "dc", "user_code": "\u{1b}[31mWDJB-MJHT", "expires_in": 60, "interval": 1,
                       "verification_uri": verification_uri.lock().unwrap().clone()}),
            ),
            "/token" => Answer::json(400, json!({"error": "authorization_pending"})),
            _ => Answer::json(404, json!({})),
        }
    })
}

#[test]
fn a_device_login_never_sends_the_person_to_an_unsafe_uri() {
    let uri = Arc::new(Mutex::new(String::new()));
    let server = device_server(uri.clone(), None);
    let source = format!("issuer = \"{}\"\nclient_id = \"host-public\"\n", server.url());
    let d = OAuthDaemon::start_in(tempfile::tempdir().unwrap(), &source, "");
    d.wait_state("needs_login");
    let squatter = as_root("a_device_login_never_sends_the_person_to_an_unsafe_uri")
        .then(|| Squatter::start(NOBODY, "127.0.0.1", "-"));
    let mut refused = vec![
        ("javascript:alert(document.cookie)", "scheme is \"javascript\""),
        ("file:///etc/shadow", "scheme is \"file\""),
        ("http://192.0.2.1/device", "plain http off loopback"),
    ];
    let squatted = squatter.as_ref().map(|s| format!("http://127.0.0.1:{}/device", s.port));
    if let Some(url) = &squatted {
        refused.push((url, "belongs to uid 65534"));
    }
    for (url, why) in refused {
        *uri.lock().unwrap() = url.to_owned();
        let (ok, printed) = Login::start(&d.socket, &["--device"]).finish();
        assert!(!ok && printed.contains(why) && printed.contains("refused"), "{url}: {printed}");
        assert!(!printed.contains("Open "), "{url} was shown to the person: {printed}");
    }
    if let Some(squatter) = &squatter {
        assert!(squatter.got().is_empty(), "the check sends nothing: {:?}", squatter.got());
    }

    // Control: an https URI is shown, and the server's user code is made printable.
    *uri.lock().unwrap() = "https://auth.example.com/device".into();
    let mut login = Login::start(&d.socket, &["--device"]);
    assert_eq!(login.url(), "https://auth.example.com/device");
    assert!(!login.printed.contains('\u{1b}') && login.printed.contains("WDJB-MJHT"), "{}", login.printed);
}

#[test]
fn a_login_with_a_state_dir_it_cannot_keep_fails_before_the_person_approves() {
    let p = Provider::start(300);
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("not/yet");
    let source = format!(
        "issuer = \"{}\"\nresource = \"{RESOURCE}\"\nclient_id = \"host-public\"\n\n[daemon]\nstate_dir = \"{}\"\n",
        p.issuer,
        state_dir.display()
    );
    // OAuthDaemon sets a state_dir of its own: this config names another, so it is written here.
    let (socket, config) = (dir.path().join("api.sock"), dir.path().join("config.toml"));
    std::fs::write(
        &config,
        format!(
            "[source]\ntype = \"oauth2\"\nscope = \"calendar\"\n{source}\n[[sink]]\ntype = \"socket\"\npath = \"{}\"\n",
            socket.display()
        ),
    )
    .unwrap();
    let daemon = support::DaemonProcess::run(&config);
    support::wait_for("the daemon's socket", PATIENCE, || socket.exists().then_some(()));
    support::wait_for("state_dir made", PATIENCE, || state_dir.join("oauth2.lock").exists().then_some(()));
    assert_eq!(std::fs::metadata(&state_dir).unwrap().permissions().mode() & 0o777, 0o700);

    std::fs::set_permissions(&state_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let (ok, printed) = Login::start(&socket, &["--device"]).finish();
    assert!(!ok && printed.contains("not/yet") && printed.contains("mode 0777"), "{printed}");
    assert!(!printed.contains("Open "), "nothing to approve was shown: {printed}");

    // Control: the directory fixed, the login runs.
    std::fs::set_permissions(&state_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let mut login = Login::start(&socket, &["--device"]);
    let url = login.url();
    let url = if login.printed.contains("enter the code") { login.url() } else { url };
    person(&url, &[]);
    let (ok, printed) = login.finish();
    assert!(ok, "{printed}\n{}", daemon.output());
}

#[test]
fn an_untrusted_token_endpoint_is_sent_nothing_and_its_uid_logged() {
    if !as_root("an_untrusted_token_endpoint_is_sent_nothing_and_its_uid_logged") {
        return;
    }
    let squatter = Squatter::start(NOBODY, "127.0.0.1", "-");
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "basic-secret-0123456789").unwrap();
    let source = format!(
        "grant = \"client_credentials\"\ntoken_endpoint = \"http://127.0.0.1:{}/token\"\nclient_id = \"service-basic\"\n\
         client_auth = \"client_secret_basic\"\nclient_secret_file = \"{}\"\n",
        squatter.port,
        secret.display()
    );
    let d = OAuthDaemon::start_in(dir, &source, "");
    let (code, body) = d.curl(&["-X", "POST", "http://d/v1/refresh"]);
    assert!(code == 503 && body.contains("belongs to uid 65534"), "{code} {body}");
    d.daemon.wait_output("belongs to uid 65534", PATIENCE);

    // A device login whose token endpoint is the squatter's ends at the first poll, naming it,
    // instead of polling it until the code expires.
    let uri = Arc::new(Mutex::new("https://auth.example.com/device".to_owned()));
    let server = device_server(uri, Some(format!("http://127.0.0.1:{}/token", squatter.port)));
    let source = format!("issuer = \"{}\"\nclient_id = \"host-public\"\n", server.url());
    let device = OAuthDaemon::start_in(tempfile::tempdir().unwrap(), &source, "");
    device.wait_state("needs_login");
    let (ok, printed) = Login::start(&device.socket, &["--device"]).finish();
    assert!(!ok && printed.contains("belongs to uid 65534"), "{printed}");
    assert!(squatter.got().is_empty(), "sent to the squatter: {:?}", squatter.got());
}

/// Serves HTTP on the Unix socket at argv[1] as whoever runs it: a token of its own choosing,
/// and a login whose words carry terminal escape sequences.
const SOCKET_SQUATTER: &str = r#"
import json, os, socketserver, sys
from http.server import BaseHTTPRequestHandler
class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass
    def answer(self, status, body, kind="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        if self.path.startswith("/v1/token"):
            self.answer(200, b"SQUATTER-CHOSEN-token", "text/plain")
        else:
            self.answer(503, json.dumps({"error": "x", "detail": "\x1b]0;owned\x07\x1b[2Jgone"}).encode())
    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        event = {"event": "open", "method": "device", "url": "https://evil.example/\x1b[2J",
                 "user_code": "\x1b]8;;https://evil.example\x07CODE", "url_complete": None}
        failed = {"event": "failed", "error": "x", "detail": "\x1b[31mred"}
        self.answer(200, (json.dumps(event) + "\n" + json.dumps(failed) + "\n").encode(), "application/x-ndjson")
class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    pass
server = Server(sys.argv[1], Handler)
print("ready", flush=True)
server.serve_forever()
"#;

#[test]
fn the_verbs_talk_only_to_their_daemon() {
    if !as_root("the_verbs_talk_only_to_their_daemon") {
        return;
    }
    let public = tempfile::tempdir().unwrap();
    std::fs::set_permissions(public.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    let path = public.path().join("api.sock");
    let mut squatter = python_as(NOBODY, SOCKET_SQUATTER, &[path.to_str().unwrap()]);
    let mut said = String::new();
    BufReader::new(squatter.stdout.take().unwrap()).read_line(&mut said).unwrap();
    assert_eq!(said.trim(), "ready", "the squatter serves {}", path.display());
    let _squatter = Killed(squatter);
    let socket = path.to_str().unwrap();

    let verb = |args: &[&str], env: &[(&str, &str)]| {
        let out = Command::new(daemon_binary())
            .args(args)
            .args(["--socket", socket])
            .envs(env.iter().copied())
            .output()
            .unwrap();
        let printed =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.code(), printed)
    };
    for args in [&["token"][..], &["headers"], &["login", "--device"], &["status"]] {
        let (code, printed) = verb(args, &[]);
        assert_eq!(code, Some(1), "{args:?}: {printed}");
        assert!(printed.contains("served by uid 65534"), "{args:?}: {printed}");
        assert!(!printed.contains("SQUATTER") && !printed.contains("evil"), "{args:?}: {printed}");
    }

    // Control: told that this user runs the daemon, the verbs talk to it, and nothing it says
    // reaches the terminal raw.
    let nobody = [("MCP_TOKEN_SYNC_DAEMON_USER", "nobody")];
    let (code, printed) = verb(&["token"], &nobody);
    assert_eq!((code, printed.trim()), (Some(0), "SQUATTER-CHOSEN-token"));
    for args in [&["login", "--device"][..], &["status"]] {
        let (code, printed) = verb(args, &nobody);
        assert_eq!(code, Some(1), "{args:?}: {printed}");
        assert!(!printed.contains('\u{1b}') && !printed.contains('\u{7}'), "{args:?}: {printed:?}");
    }
}
