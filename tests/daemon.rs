//! The built binary end to end: verbs, exit codes, signals, files, and secrets kept out of output.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::binary::run_verb;
use support::{Backend, DaemonProcess, Reply, config_text, file_sink, read_new, wait_for};

const PATIENCE: Duration = Duration::from_secs(10);

struct Setup {
    dir: tempfile::TempDir,
    config: PathBuf,
    raw: PathBuf,
    json: PathBuf,
}

fn setup(backend: &Backend, extra: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("token");
    let json = dir.path().join("token.json");
    let config = dir.path().join("config.toml");
    let sinks = format!("{}{}{extra}", file_sink(&raw, "raw"), file_sink(&json, "json"));
    fs::write(&config, config_text(backend, &sinks)).unwrap();
    Setup { dir, config, raw, json }
}

fn config_arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_reaches_the_files_with_mode_0600() {
    let backend = Backend::start().await;
    let s = setup(&backend, "");
    let daemon = DaemonProcess::run(&s.config);
    let token = backend.token();
    wait_for("the raw file", PATIENCE, || read_new(&s.raw, None).filter(|t| *t == token));
    assert_eq!(fs::metadata(&s.raw).unwrap().permissions().mode() & 0o777, 0o600);

    let object: serde_json::Value = wait_for("the json file", PATIENCE, || {
        read_new(&s.json, None).and_then(|t| serde_json::from_str(&t).ok())
    });
    assert_eq!(object["token"], token);
    assert_eq!(object["agent_name"], "google-calender-mcp");
    assert_eq!(object["version"], 1);
    assert!(object["expires_at"].as_str().unwrap().ends_with('Z'));
    assert!(object["fetched_at"].as_str().unwrap().ends_with('Z'));
    drop(daemon);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigusr1_fetches_now_and_sigterm_exits_0_quickly() {
    let backend = Backend::start().await;
    let s = setup(&backend, "");
    let mut daemon = DaemonProcess::run(&s.config);
    let first = backend.token();
    wait_for("the first token", PATIENCE, || read_new(&s.raw, None).filter(|t| *t == first));

    // A 1-hour token: nothing would fetch for many minutes without the signal.
    let fetches = backend.fetches();
    let second = backend.rotate();
    daemon.signal(Signal::SIGUSR1);
    wait_for("the token after SIGUSR1", PATIENCE, || read_new(&s.raw, None).filter(|t| *t == second));
    assert_eq!(backend.fetches(), fetches + 1);

    let asked = Instant::now();
    daemon.signal(Signal::SIGTERM);
    let status = daemon.wait_exit(Duration::from_secs(5));
    assert!(status.success(), "{status:?}\n{}", daemon.output());
    assert!(asked.elapsed() < Duration::from_secs(2), "stopping took {:?}", asked.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_stops_too() {
    let backend = Backend::start().await;
    let s = setup(&backend, "");
    let mut daemon = DaemonProcess::run(&s.config);
    wait_for("the first token", PATIENCE, || read_new(&s.raw, None));
    daemon.signal(Signal::SIGINT);
    assert!(daemon.wait_exit(Duration::from_secs(5)).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_auth_works_and_a_wrong_credential_publishes_nothing() {
    const CREDENTIAL: &str = "BOOTSTRAP-credential-9f8e7d";
    let backend = Backend::start().await;
    backend.require_header("authorization", &format!("Bearer {CREDENTIAL}"));
    let dir = tempfile::tempdir().unwrap();
    let credential = dir.path().join("backend-key");
    let auth = format!("[source.auth]\ntype = \"bearer\"\ncredential_file = \"{}\"\n", credential.display());

    // Wrong credential: refused, nothing written, the reason is logged without either secret.
    fs::write(&credential, "wrong-credential\n").unwrap();
    let s = setup(&backend, &auth);
    let mut daemon = DaemonProcess::run(&s.config);
    daemon.wait_output("refused the request (HTTP 401): check [source.auth]", PATIENCE);
    assert!(!s.raw.exists() && !s.json.exists());

    // The credential file is re-read before each fetch: fixing it is enough.
    fs::write(&credential, format!("{CREDENTIAL}\n")).unwrap();
    let token = backend.token();
    wait_for("the token after fixing the credential", PATIENCE, || {
        read_new(&s.raw, None).filter(|t| *t == token)
    });
    daemon.signal(Signal::SIGTERM);
    daemon.wait_exit(Duration::from_secs(5));
    let output = daemon.output();
    for secret in [CREDENTIAL, "wrong-credential", token.as_str()] {
        assert!(!output.contains(secret), "output contains {secret:?}:\n{output}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_output_ever_contains_a_token() {
    let backend = Backend::start().await;
    backend.rotate_each_fetch(true);
    let s = setup(&backend, "");
    let mut daemon = DaemonProcess::run(&s.config);
    let mut seen = Vec::new();
    for i in 0..5 {
        if i > 0 {
            daemon.signal(Signal::SIGUSR1);
        }
        let token = wait_for("a new token", PATIENCE, || read_new(&s.raw, seen.last().map(String::as_str)));
        seen.push(token);
    }
    // No fetch is in flight now (a signal during one would join it and never see the 500).
    backend.set_reply(Reply::Raw { status: 500, body: b"down".to_vec() });
    daemon.signal(Signal::SIGUSR1);
    daemon.wait_output("HTTP 500", PATIENCE);
    daemon.signal(Signal::SIGTERM);
    daemon.wait_exit(Duration::from_secs(5));
    let output = daemon.output();
    assert!(output.contains("fingerprint"), "logs name tokens by fingerprint:\n{output}");
    assert!(!output.contains("SECRET-tok"), "a token reached the output:\n{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_exits_0_after_writing_and_1_when_the_fetch_fails() {
    let backend = Backend::start().await;
    let s = setup(&backend, "");
    let (status, output) =
        tokio::task::block_in_place(|| run_verb(&["once", "--config", config_arg(&s.config)]));
    assert!(status.success(), "{output}");
    assert_eq!(fs::read_to_string(&s.raw).unwrap(), backend.token());
    assert!(!output.contains("SECRET-tok"), "{output}");

    backend.set_reply(Reply::Json(serde_json::json!({"token": "SECRET-tok-x", "valid": false})));
    let (status, output) =
        tokio::task::block_in_place(|| run_verb(&["once", "--config", config_arg(&s.config)]));
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(output.contains("not valid"), "{output}");
    assert!(!output.contains("SECRET-tok"), "{output}");
    assert_eq!(fs::read_to_string(&s.raw).unwrap(), backend.token(), "a failed once keeps the old file");
}

/// `once` continues the state file's versions, so a client comparing versions never sees time
/// run backwards across `run`, `once` and `run` again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_continues_the_version_sequence_of_run() {
    let backend = Backend::start().await;
    backend.rotate_each_fetch(true);
    let s = setup(&backend, "");
    let version = |path: &Path| -> u64 {
        let object: serde_json::Value = serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap();
        object["version"].as_u64().unwrap()
    };
    let mut daemon = DaemonProcess::run(&s.config);
    let mut last = wait_for("the first token", PATIENCE, || read_new(&s.raw, None));
    for _ in 0..2 {
        daemon.signal(Signal::SIGUSR1);
        last = wait_for("a rotation", PATIENCE, || read_new(&s.raw, Some(&last)));
    }
    wait_for("version 3 in the json file", PATIENCE, || (version(&s.json) == 3).then_some(()));
    daemon.signal(Signal::SIGTERM);
    daemon.wait_exit(PATIENCE);

    // A new token: the next version. The same token: the same version.
    let once = || tokio::task::block_in_place(|| run_verb(&["once", "--config", config_arg(&s.config)]));
    let (status, output) = once();
    assert!(status.success(), "{output}");
    assert_eq!(version(&s.json), 4, "{output}");
    backend.rotate_each_fetch(false);
    backend.rotate();
    let (status, output) = once();
    assert!(status.success(), "{output}");
    assert_eq!(version(&s.json), 5, "the backend issued one more token: {output}");
    let (status, output) = once();
    assert!(status.success(), "{output}");
    assert_eq!(version(&s.json), 5, "the same token keeps its version: {output}");

    // And a run afterwards carries on from there.
    backend.rotate();
    let daemon = DaemonProcess::run(&s.config);
    daemon.wait_output("restored version 5", PATIENCE);
    wait_for("version 6 in the json file", PATIENCE, || (version(&s.json) == 6).then_some(()));
}

#[test]
fn once_with_an_unreachable_backend_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    // Port 1 on loopback: nothing listens there.
    fs::write(&config, "[source]\nurl = \"http://127.0.0.1:1/t\"\ntimeout = \"2s\"\n").unwrap();
    let (status, output) = run_verb(&["once", "--config", config_arg(&config)]);
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(output.contains("127.0.0.1:1"), "{output}");
}

#[test]
fn config_errors_exit_2_naming_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    fs::write(&config, "[source]\nurl = \"https://x.example/t\"\n\n[refresh]\nmin_interval = \"5\"\n")
        .unwrap();
    for verb in ["run", "check", "once"] {
        let (status, output) = run_verb(&[verb, "--config", config_arg(&config)]);
        assert_eq!(status.code(), Some(2), "{verb}: {output}");
        assert!(output.contains("line 5, key `refresh.min_interval`"), "{verb}: {output}");
    }
    let (status, output) = run_verb(&["check", "--config", config_arg(&dir.path().join("absent.toml"))]);
    assert_eq!(status.code(), Some(2), "{output}");
    assert!(output.contains("absent.toml") && output.contains("cannot read"), "{output}");
}

#[test]
fn check_prints_the_resolved_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    fs::write(&config, "[source]\nurl = \"https://x.example/t\"\n").unwrap();
    let (status, output) = run_verb(&["check", "--config", config_arg(&config)]);
    assert!(status.success(), "{output}");
    assert!(
        output.contains("min_interval = \"5s\"") && output.contains("max_interval = \"15m\""),
        "{output}"
    );

    let from_env = std::process::Command::new(support::binary::BIN)
        .arg("check")
        .env("MCP_TOKEN_SYNC_CONFIG", &config)
        .output()
        .unwrap();
    assert!(from_env.status.success(), "MCP_TOKEN_SYNC_CONFIG names the config");
}

#[test]
fn check_accepts_every_sink_type_of_the_example_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    let example =
        include_str!("../config.example.toml").replace("${CREDENTIALS_DIRECTORY}", "/run/credentials/x");
    fs::write(&config, example).unwrap();
    let (status, output) = run_verb(&["check", "--config", config_arg(&config)]);
    assert!(status.success(), "{output}");
    for kind in ["file", "env_file", "keyring", "socket", "exec", "proxy"] {
        assert!(output.contains(&format!("type = \"{kind}\"")), "{kind}: {output}");
    }
}

#[test]
fn version_names_the_cargo_features_built_in() {
    let (status, output) = run_verb(&["--version"]);
    assert!(status.success(), "{output}");
    let feature = if cfg!(feature = "secret-service") { "+secret-service" } else { "-secret-service" };
    assert_eq!(output, format!("mcp-token-sync {}\nfeatures: {feature}\n", env!("CARGO_PKG_VERSION")));
}

#[test]
fn usage_errors_exit_2() {
    let (status, _) = run_verb(&["frobnicate"]);
    assert_eq!(status.code(), Some(2));
}

/// A reader polling the files in a tight loop during 1,000 forced rotations never sees one
/// empty, partial, or absent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_never_see_a_partial_file_across_1000_rotations() {
    const ROTATIONS: usize = 1000;
    let backend = Backend::start().await;
    backend.rotate_each_fetch(true);
    let s = setup(&backend, "");
    let daemon = DaemonProcess::run(&s.config);
    let first = wait_for("the first token", PATIENCE, || read_new(&s.raw, None));
    wait_for("the first json", PATIENCE, || read_new(&s.json, None));
    let token_len = first.len();

    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicUsize::new(0));
    let reader = {
        let (stop, reads, raw, json) = (stop.clone(), reads.clone(), s.raw.clone(), s.json.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let token = fs::read_to_string(&raw).expect("the raw file vanished");
                assert!(
                    token.len() == token_len && token.starts_with("SECRET-tok-"),
                    "partial raw file: {token:?}"
                );
                let object: serde_json::Value =
                    serde_json::from_slice(&fs::read(&json).expect("json vanished"))
                        .expect("the json file was partial");
                assert_eq!(object["token"].as_str().map(str::len), Some(token_len));
                reads.fetch_add(1, Ordering::Relaxed);
            }
        })
    };

    let mut last = first;
    for _ in 0..ROTATIONS {
        daemon.signal(Signal::SIGUSR1);
        last = wait_for("the next rotation", PATIENCE, || read_new(&s.raw, Some(&last)));
    }
    stop.store(true, Ordering::Relaxed);
    reader.join().expect("the reader saw a bad file");
    assert!(reads.load(Ordering::Relaxed) >= ROTATIONS, "the reader barely ran");
    drop(s.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_cannot_dump_core() {
    let backend = Backend::start().await;
    let s = setup(&backend, "");
    let daemon = DaemonProcess::run(&s.config);
    wait_for("the first token", PATIENCE, || read_new(&s.raw, None));
    let limits = fs::read_to_string(format!("/proc/{}/limits", daemon.pid())).unwrap();
    let core = limits.lines().find(|l| l.starts_with("Max core file size")).unwrap();
    assert_eq!(core.split_whitespace().skip(4).take(2).collect::<Vec<_>>(), ["0", "0"], "{core}");
}

#[test]
fn demo_fetches_writes_and_cleans_up() {
    let mut demo = DaemonProcess::spawn(&["demo"]);
    demo.wait_output("fetched new token version 1", PATIENCE);
    demo.wait_output("token.json: wrote version 1", PATIENCE);
    let output = demo.output();
    let dir = output
        .lines()
        .find_map(|l| l.trim().strip_prefix("sinks"))
        .and_then(|rest| rest.split_whitespace().next())
        .map(|token_path| PathBuf::from(token_path).parent().unwrap().to_owned())
        .expect("the demo names its sink directory");
    let object: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(dir.join("token.json")).unwrap()).unwrap();
    assert_eq!(object["agent_name"], "google-calender-mcp");
    // Each sink writes on its own: wait for this one too.
    let raw = object["token"].as_str().unwrap().to_owned();
    wait_for("the raw token file", PATIENCE, || read_new(&dir.join("token"), None).filter(|t| *t == raw));

    // The printed curl line works with no token: the proxy adds it.
    let url = output
        .split_whitespace()
        .find(|word| word.starts_with("http://127.0.0.1:") && word.ends_with("/api/calendars/"))
        .expect("the demo prints a curl line for its proxy");
    let curl = std::process::Command::new("curl").args(["-s", "-w", "\n%{http_code}", url]).output().unwrap();
    let answer = String::from_utf8_lossy(&curl.stdout).into_owned();
    assert!(answer.ends_with("\n200") && answer.contains("calendars"), "{answer}");

    // Its kernel keyring entry, where this host has one, goes with it (a new user found it left).
    let key = format!("mcp-token-sync:demo-{}", demo.pid());
    let in_keyring = || {
        std::process::Command::new("keyctl")
            .args(["search", "@u", "user", &key])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let had_key = output.contains("kernel keyring:") && {
        wait_for("the demo's key", PATIENCE, || in_keyring().then_some(()));
        true
    };
    demo.signal(Signal::SIGINT);
    assert!(demo.wait_exit(Duration::from_secs(5)).success());
    assert!(!dir.exists(), "the demo left {} behind", dir.display());
    assert!(!(had_key && in_keyring()), "the demo left its key {key} in the user keyring");
    assert!(!demo.output().contains(object["token"].as_str().unwrap()), "the demo printed the token");
}
