//! The engine and sinks in-process against the fake backend: what gets published, and what
//! never does.

mod support;

use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

use mcp_token_sync::clock;
use mcp_token_sync::config::{Config, Environment};
use mcp_token_sync::daemon::{Daemon, Parts};
use mcp_token_sync::engine::Refreshed;
use mcp_token_sync::token::TokenState;
use serde_json::{Value, json};
use support::{Backend, Reply, TestConfig, config_text, file_sink, read_new, wait_for_async};

const PATIENCE: Duration = Duration::from_secs(10);

fn start(backend: &Backend, extra: &str) -> Daemon {
    let text = config_text(backend, extra);
    let config =
        Config::parse(&text, Path::new("test.toml"), &Environment::default()).expect("valid test config");
    Daemon::start(Parts::build(config).expect("buildable test config")).expect("sockets bind")
}

async fn wait_for_file(path: &Path, content: &str) {
    wait_for_async(&format!("{} to hold the expected token", path.display()), PATIENCE, || {
        (read_new(path, None).as_deref() == Some(content)).then_some(())
    })
    .await;
}

fn state(daemon: &Daemon) -> TokenState {
    daemon.handle().token().borrow().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_answers_never_replace_the_published_token() {
    let backend = Backend::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    let daemon = start(&backend, &file_sink(&file, "raw"));
    let good = backend.token();
    wait_for_file(&file, &good).await;

    let with = |field: &str, value: Value| {
        let mut answer = backend.answer();
        answer[field] = value;
        Reply::Json(answer)
    };
    let without = |field: &str| {
        let mut answer = backend.answer();
        answer.as_object_mut().unwrap().remove(field);
        Reply::Json(answer)
    };
    let raw = |status: u16, body: &[u8]| Reply::Raw { status, body: body.to_vec() };
    let now = SystemTime::now();
    let cases: Vec<(&str, Reply, &str)> = vec![
        ("HTTP 500", raw(500, b"Internal Server Error"), "HTTP 500"),
        ("HTTP 502", raw(502, b"<html>Bad Gateway</html>"), "HTTP 502"),
        ("HTTP 404", raw(404, b"{}"), "HTTP 404"),
        ("HTTP 401", raw(401, b"{}"), "refused the request (HTTP 401): check [source.auth]"),
        ("an HTML page", raw(200, b"<!DOCTYPE html><html><body>Login</body></html>"), "not JSON"),
        ("truncated JSON", raw(200, b"{\"token\": \"SECRET-tok-trunc"), "not JSON"),
        ("a JSON array", raw(200, b"[1, 2, 3]"), "not an object"),
        ("an empty body", raw(200, b""), "not JSON"),
        ("valid: false (revoked)", with("valid", json!(false)), "not valid"),
        (
            "an expired token",
            with("expires_at", json!(clock::rfc3339(now - Duration::from_secs(60)))),
            "already expired",
        ),
        (
            "a token expiring within min_remaining",
            with("expires_at", json!(clock::rfc3339(now + Duration::from_millis(900)))),
            "min_remaining",
        ),
        ("another agent's token", with("agent_name", json!("other-agent")), "issued for agent"),
        ("a token with a newline", with("token", json!("SECRET-tok-a\nb")), "control character"),
        ("a token with a space", with("token", json!("SECRET-tok-a b")), "a space"),
        ("a non-ASCII token", with("token", json!("SECRET-tok-ä")), "non-ASCII"),
        ("an empty token", with("token", json!("")), "token is empty"),
        ("a null token", with("token", json!(null)), "is null"),
        ("a numeric token", with("token", json!(12345)), "is a number"),
        ("a 5000-byte token", with("token", json!("x".repeat(5000))), "5000 bytes"),
        ("no token", without("token"), "no token"),
        ("a malformed date", with("expires_at", json!("next tuesday")), "RFC 3339"),
        ("no date", without("expires_at"), "no expiry"),
        ("a far-future expiry", with("expires_at", json!("2099-01-01T00:00:00Z")), "max_lifetime"),
        ("an 8 MiB body", raw(200, &vec![b' '; 8 << 20]), "larger than 64 KiB"),
        ("an 8 MiB chunked body", Reply::Stream { size: 8 << 20 }, "larger than 64 KiB"),
        ("a redirect", Reply::Redirect(format!("http://{}/elsewhere", backend.addr())), "redirect"),
        ("an answer slower than the timeout", Reply::Slow(Duration::from_secs(3)), "within source.timeout"),
    ];

    for (name, reply, expected) in cases {
        backend.set_reply(reply);
        let error = daemon.handle().refresh("test").await.expect_err(name).to_string();
        assert!(error.contains(expected), "{name}: {error:?} does not mention {expected:?}");
        assert!(!error.contains("SECRET-tok"), "{name}: the error quotes a token: {error}");

        let held = state(&daemon);
        let current = held.current().unwrap_or_else(|| panic!("{name}: the good token was dropped"));
        assert_eq!((current.version, current.token.expose()), (1, good.as_str()), "{name}");
        assert_eq!(fs::read_to_string(&file).unwrap(), good, "{name}: the file changed");
        let status = daemon.handle().status().borrow().clone();
        assert!(status.last_error.as_deref().unwrap_or_default().contains(expected), "{name}: {status:?}");
        assert!(status.consecutive_failures >= 1, "{name}");
    }

    // Still alive: the next good answer becomes version 2 everywhere.
    backend.set_reply(Reply::Token);
    let fresh = backend.rotate();
    assert_eq!(
        daemon.handle().refresh("test").await.unwrap(),
        Refreshed { version: 2, changed: true, fetched: true }
    );
    wait_for_file(&file, &fresh).await;
    assert_eq!(daemon.handle().status().borrow().consecutive_failures, 0);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triggers_during_a_fetch_share_it() {
    let backend = Backend::start().await;
    let daemon = start(&backend, "");
    daemon.handle().refresh("test").await.unwrap();

    backend.set_reply(Reply::Slow(Duration::from_millis(500)));
    let fresh = backend.rotate();
    let before = backend.fetches();
    let reporters: Vec<_> = (0..50)
        .map(|_| {
            let handle = daemon.handle().clone();
            tokio::spawn(async move { handle.refresh("test").await })
        })
        .collect();
    for reporter in reporters {
        assert_eq!(reporter.await.unwrap().unwrap(), Refreshed { version: 2, changed: true, fetched: true });
    }
    assert_eq!(backend.fetches() - before, 1, "50 concurrent triggers made more than one fetch");
    assert_eq!(state(&daemon).current().unwrap().token.expose(), fresh);
    daemon.stop().await;
}

/// Reports that reach the engine after their version was replaced are late, not new: however
/// the reporters interleave with the fetch, one 401 wave makes one fetch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_on_a_replaced_version_is_answered_without_a_fetch() {
    let backend = Backend::start().await;
    let daemon = start(&backend, "");
    let first = daemon.handle().refresh("test").await.unwrap();
    backend.rotate();
    let second = daemon.handle().refresh_past(first.version, "test").await.unwrap();
    assert_eq!(second, Refreshed { version: first.version + 1, changed: true, fetched: true });

    let before = backend.fetches();
    let late = daemon.handle().refresh_past(first.version, "test").await.unwrap();
    assert_eq!(late, Refreshed { fetched: false, ..second });
    assert_eq!(backend.fetches(), before, "the late report fetched again");
    // A report on the held version still fetches.
    daemon.handle().refresh_past(second.version, "test").await.unwrap();
    assert_eq!(backend.fetches(), before + 1);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_token_is_not_a_new_version() {
    let backend = Backend::start().await;
    let daemon = start(&backend, "");
    let first = daemon.handle().refresh("test").await.unwrap();
    let again = daemon.handle().refresh("test").await.unwrap();
    assert_eq!(again, Refreshed { version: first.version, changed: false, fetched: true });
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreplaced_token_expires_and_remove_deletes_its_file() {
    let backend = Backend::start().await;
    backend.set_lifetime(Duration::from_secs(2));
    let dir = tempfile::tempdir().unwrap();
    let kept = dir.path().join("kept");
    let removed = dir.path().join("removed");
    let sinks = format!("{}{}on_expiry = \"remove\"\n", file_sink(&kept, "raw"), file_sink(&removed, "raw"));
    let daemon = start(&backend, &sinks);
    let token = backend.token();
    wait_for_file(&removed, &token).await;

    backend.set_reply(Reply::Raw { status: 503, body: b"maintenance".to_vec() });
    let expired = wait_for_async("the token to expire", PATIENCE, || match state(&daemon) {
        TokenState::Expired { version } => Some(version),
        _ => None,
    })
    .await;
    assert_eq!(expired, 2, "expiry is a version of its own");
    wait_for_async("the remove sink to delete its file", PATIENCE, || (!removed.exists()).then_some(()))
        .await;
    assert_eq!(fs::read_to_string(&kept).unwrap(), token, "on_expiry = keep leaves the file");

    // Fetching never gives up: when the backend returns, a new version is published.
    backend.set_reply(Reply::Token);
    let fresh = backend.set_lifetime(Duration::from_secs(3600));
    wait_for_file(&removed, &fresh).await;
    assert_eq!(state(&daemon).version(), 3);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_sink_neither_blocks_others_nor_gives_up() {
    let backend = Backend::start().await;
    let dir = tempfile::tempdir().unwrap();
    let missing_dir = dir.path().join("not-yet");
    let blocked = missing_dir.join("token");
    let healthy = dir.path().join("token.json");
    let daemon = start(&backend, &format!("{}{}", file_sink(&blocked, "raw"), file_sink(&healthy, "json")));

    let written: Value = wait_for_async("the healthy sink", PATIENCE, || {
        read_new(&healthy, None).and_then(|text| serde_json::from_str(&text).ok())
    })
    .await;
    assert_eq!(written["token"], backend.token());
    assert_eq!(written["version"], 1);
    assert!(!blocked.exists());

    // Once the directory appears, the retry succeeds.
    fs::create_dir(&missing_dir).unwrap();
    wait_for_file(&blocked, &backend.token()).await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_shortly_before_expiry_is_picked_up_in_time() {
    let backend = Backend::start().await;
    let old = backend.set_lifetime(Duration::from_secs(4));
    let old_expiry = backend.expires_at();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    let daemon = start(&backend, &file_sink(&file, "raw"));
    wait_for_file(&file, &old).await;

    // The backend rotates 1 s before the old token expires, with no signal to the daemon.
    tokio::time::sleep_until(tokio::time::Instant::now() + Duration::from_millis(2900)).await;
    let fresh = backend.set_lifetime(Duration::from_secs(3600));
    wait_for_file(&file, &fresh).await;
    assert!(SystemTime::now() < old_expiry, "the new token arrived only after the old one expired");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probe_keeps_a_token_the_api_refuses_from_being_published() {
    let backend = Backend::start().await;
    let probe = format!(
        "[validate.probe]\nurl = \"{}\"\nheader = \"X-Google-MCP-Token\"\nexpect = [200]\n",
        backend.probe_url()
    );
    let daemon = start(&backend, &probe);
    let good = backend.token();
    assert_eq!(daemon.handle().refresh("test").await.unwrap().version, 1);

    // The token endpoint hands out a token the API does not accept.
    let mut forged = backend.answer();
    forged["token"] = json!("SECRET-tok-forged");
    backend.set_reply(Reply::Json(forged));
    let error = daemon.handle().refresh("test").await.unwrap_err().to_string();
    assert!(error.contains("probe") && error.contains("HTTP 401"), "{error}");
    assert!(!error.contains("SECRET-tok"), "{error}");
    assert_eq!(state(&daemon).current().unwrap().token.expose(), good);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_and_basic_auth_send_the_credential_file() {
    let dir = tempfile::tempdir().unwrap();
    let credential = dir.path().join("key");
    fs::write(&credential, "s3cret-value\r\n").unwrap();
    let cases = [
        ("header", "header = \"X-Api-Key\"\n", "x-api-key", "s3cret-value".to_string()),
        // base64("agent-7:s3cret-value")
        (
            "basic",
            "username = \"agent-7\"\n",
            "authorization",
            "Basic YWdlbnQtNzpzM2NyZXQtdmFsdWU=".to_string(),
        ),
    ];
    for (kind, extra, header, expected) in cases {
        let backend = Backend::start().await;
        backend.require_header(header, &expected);
        let auth = format!(
            "[source.auth]\ntype = \"{kind}\"\ncredential_file = \"{}\"\n{extra}",
            credential.display()
        );
        let daemon = start(&backend, &auth);
        let result = daemon.handle().refresh("test").await;
        assert!(result.is_ok(), "{kind}: {result:?}");
        daemon.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_credential_file_is_a_fetch_error_naming_it() {
    let backend = Backend::start().await;
    let auth = "[source.auth]\ntype = \"bearer\"\ncredential_file = \"/nonexistent/backend-key\"\n";
    let daemon = start(&backend, auth);
    let error = daemon.handle().refresh("test").await.unwrap_err().to_string();
    assert!(error.contains("/nonexistent/backend-key"), "{error}");
    assert_eq!(backend.fetches(), 0, "nothing is sent without the credential");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_trusts_ca_file_and_refuses_an_unknown_issuer() {
    let (backend, ca_pem) = Backend::start_https().await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    fs::write(&ca_file, ca_pem).unwrap();

    let trusted = start(&backend, "");
    let error = trusted.handle().refresh("test").await.unwrap_err().to_string();
    assert!(error.contains("certificate"), "an unknown CA must be refused: {error}");
    assert!(trusted.handle().token().borrow().current().is_none());
    trusted.stop().await;

    let text = TestConfig::new(&backend)
        .set("source", "ca_file", &format!("{:?}", ca_file.display().to_string()))
        .text();
    let config = Config::parse(&text, Path::new("test.toml"), &Environment::default()).unwrap();
    let daemon = Daemon::start(Parts::build(config).unwrap()).unwrap();
    assert_eq!(daemon.handle().refresh("test").await.unwrap().version, 1);
    assert_eq!(state(&daemon).current().unwrap().token.expose(), backend.token());
    daemon.stop().await;
}

#[test]
fn a_ca_file_without_certificates_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    fs::write(&ca_file, "not a certificate\n").unwrap();
    let text = format!("[source]\nurl = \"https://127.0.0.1:9/t\"\nca_file = \"{}\"\n", ca_file.display());
    let config = Config::parse(&text, Path::new("test.toml"), &Environment::default()).unwrap();
    let error = Parts::build(config).err().expect("a CA file with no certificate is refused").to_string();
    assert!(error.contains("source.ca_file") && error.contains("ca.pem"), "{error}");
}
