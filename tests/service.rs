//! Running as a service: sd_notify, reload (SIGHUP and file changes), state restore, cron and
//! log formats, against the real binary.

mod support;

use std::fs;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::api::get;
use support::{Backend, DaemonProcess, Reply, TestConfig, config_text, file_sink, read_new, wait_for};

const PATIENCE: Duration = Duration::from_secs(10);

/// Writes `text` to `path` the way editors do: a new file renamed over the old one.
fn replace_file(path: &Path, text: &str) {
    let temp = path.with_extension("tmp-edit");
    fs::write(&temp, text).unwrap();
    fs::rename(&temp, path).unwrap();
}

struct Service {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Service {
    fn new(backend: &Backend, extra: &str) -> Service {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.toml");
        fs::write(&config, config_text(backend, extra)).unwrap();
        Service { dir, config }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn run(&self) -> DaemonProcess {
        DaemonProcess::run(&self.config)
    }
}

/// Messages sent to a NOTIFY_SOCKET, collected until `until` arrives.
fn collect_until(socket: &UnixDatagram, seen: &mut Vec<String>, until: &str) {
    let deadline = Instant::now() + PATIENCE;
    let mut buf = [0u8; 4096];
    while !seen.iter().any(|m| m.contains(until)) {
        assert!(Instant::now() < deadline, "no {until:?} among {seen:?}");
        if let Ok(n) = socket.recv(&mut buf) {
            seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_hears_ready_status_reloading_watchdog_and_stopping() {
    let backend = Backend::start().await;
    let s = Service::new(&backend, "");
    let notify_path = s.path("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let mut daemon = DaemonProcess::spawn_with_env(
        &["run", "--config", s.config.to_str().unwrap()],
        &[("NOTIFY_SOCKET", notify_path.to_str().unwrap()), ("WATCHDOG_USEC", "400000")],
    );
    let mut seen = Vec::new();
    tokio::task::block_in_place(|| {
        collect_until(&notify, &mut seen, "READY=1");
        collect_until(&notify, &mut seen, "STATUS=version 1 (fingerprint");
        // Half of WATCHDOG_USEC: a ping every 200 ms, from the engine's loop.
        seen.clear();
        let deadline = Instant::now() + PATIENCE;
        while seen.iter().filter(|m| m.trim() == "WATCHDOG=1").count() < 3 {
            assert!(Instant::now() < deadline, "too few watchdog pings: {seen:?}");
            let mut buf = [0u8; 256];
            if let Ok(n) = notify.recv(&mut buf) {
                seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }

        seen.clear();
        daemon.signal(Signal::SIGHUP);
        collect_until(&notify, &mut seen, "RELOADING=1");
        let reloading = seen.iter().find(|m| m.contains("RELOADING=1")).unwrap();
        assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
        collect_until(&notify, &mut seen, "READY=1");

        seen.clear();
        daemon.signal(Signal::SIGTERM);
        collect_until(&notify, &mut seen, "STOPPING=1");
    });
    assert!(daemon.wait_exit(PATIENCE).success());
    assert!(!seen.iter().any(|m| m.contains("SECRET-tok")), "a notification carried the token");
}

/// Whether the process holds an inotify instance (the config watcher's).
fn watching_files(pid: u32) -> bool {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|fd| fs::read_link(fd.ok()?.path()).ok())
        .any(|target| target.to_string_lossy().contains("inotify"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saving_the_file_reloads_it_without_a_signal() {
    let backend = Backend::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let s = Service::new(&backend, &file_sink(&a, "raw"));
    let daemon = s.run();
    let first = backend.token();
    wait_for("sink a", PATIENCE, || read_new(&a, None).filter(|t| *t == first));

    // An editor-style save, and no signal: a replaced by b. b gets the current token at once.
    replace_file(&s.config, &config_text(&backend, &file_sink(&b, "raw")));
    wait_for("sink b after the file changed", PATIENCE, || read_new(&b, None).filter(|t| *t == first));
    daemon.wait_output("after a change to the file", PATIENCE);
    let second = backend.rotate();
    daemon.signal(Signal::SIGUSR1);
    wait_for("b to follow the rotation", PATIENCE, || read_new(&b, None).filter(|t| *t == second));
    assert_eq!(
        fs::read_to_string(&a).unwrap(),
        first,
        "a was removed from the config and must not be written"
    );

    // A broken file is refused; the daemon keeps working with what it had.
    replace_file(&s.config, "[source]\nurl = \"not a url\"\n");
    daemon.wait_output("reload refused, the running configuration stays", PATIENCE);
    let third = backend.rotate();
    daemon.signal(Signal::SIGUSR1);
    wait_for("b after a refused reload", PATIENCE, || read_new(&b, None).filter(|t| *t == third));
    assert!(!daemon.output().contains("after SIGHUP"));
}

/// Reading the file is no change: the watch sees opens and closes too, and a reload reads the
/// file, so counting reads set off a reload every 300 ms forever after one `cat`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_the_file_or_saving_it_unchanged_does_not_reload() {
    let backend = Backend::start().await;
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let s = Service::new(&backend, &file_sink(&a, "raw"));
    let daemon = s.run();
    daemon.wait_output("for changes (watch_config)", PATIENCE);
    let text = fs::read_to_string(&s.config).unwrap();
    for _ in 0..3 {
        fs::read(&s.config).unwrap();
    }
    replace_file(&s.config, &text);
    // The debounce is 300 ms: a reload would have begun by now.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert!(!daemon.output().contains("after a change to the file"), "{}", daemon.output());
    replace_file(&s.config, &format!("{text}\n# a comment is a change\n"));
    daemon.wait_output("after a change to the file", PATIENCE);
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert_eq!(daemon.output().matches("after a change to the file").count(), 1, "{}", daemon.output());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_when_nothing_watches_the_file() {
    let backend = Backend::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let config = |sink: &Path| {
        TestConfig::new(&backend).set("daemon", "watch_config", "false").sinks(&file_sink(sink, "raw")).text()
    };
    let s = Service::new(&backend, "");
    fs::write(&s.config, config(&a)).unwrap();
    let mut daemon = s.run();
    let token = backend.token();
    wait_for("sink a", PATIENCE, || read_new(&a, None).filter(|t| *t == token));
    assert!(!watching_files(daemon.pid()), "watch_config = false, yet the file is watched");

    replace_file(&s.config, &config(&b));
    daemon.signal(Signal::SIGHUP);
    wait_for("sink b after SIGHUP", PATIENCE, || read_new(&b, None).filter(|t| *t == token));
    daemon.wait_output("after SIGHUP", PATIENCE);
    daemon.signal(Signal::SIGTERM);
    assert!(daemon.wait_exit(PATIENCE).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_applies_the_daemon_table() {
    let backend = Backend::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (old_state, new_state) = (dir.path().join("old-state"), dir.path().join("new-state"));
    let base = TestConfig::new(&backend)
        .set("daemon", "state_dir", &format!("{:?}", old_state.display().to_string()))
        .set("daemon", "watch_config", "false");
    let s = Service::new(&backend, "");
    fs::write(&s.config, base.text()).unwrap();
    let mut daemon =
        DaemonProcess::spawn(&["run", "--config", s.config.to_str().unwrap(), "--log-level", "info"]);
    let saved = old_state.join("state.json");
    wait_for("the state file", PATIENCE, || read_new(&saved, None).filter(|t| t.contains("\"version\":1")));

    // log_format and state_dir, by SIGHUP.
    let moved = base.clone().set("daemon", "log_format", "\"json\"").set(
        "daemon",
        "state_dir",
        &format!("{:?}", new_state.display().to_string()),
    );
    fs::write(&s.config, moved.text()).unwrap();
    daemon.signal(Signal::SIGHUP);
    let state = new_state.join("state.json");
    wait_for("the moved state file", PATIENCE, || {
        read_new(&state, None).filter(|t| t.contains("\"version\":1"))
    });
    wait_for("the old state file to go", PATIENCE, || (!saved.exists()).then_some(()));
    daemon.signal(Signal::SIGUSR1);
    daemon.wait_output("\"message\":\"refresh requested by SIGUSR1\"", PATIENCE);

    // watch_config, on and off again, by the path that is on.
    assert!(!watching_files(daemon.pid()));
    fs::write(&s.config, moved.clone().set("daemon", "watch_config", "true").text()).unwrap();
    daemon.signal(Signal::SIGHUP);
    daemon.wait_output("for changes (watch_config)", PATIENCE);
    assert!(watching_files(daemon.pid()));
    replace_file(&s.config, &moved.text());
    wait_for("the watcher to stop", PATIENCE, || (!watching_files(daemon.pid())).then_some(()));
    daemon.wait_output("no longer watching", PATIENCE);

    // Another source: the state file names it from now on.
    let other = Backend::start().await;
    let elsewhere = moved.set("source", "url", &format!("{:?}", other.url()));
    fs::write(&s.config, elsewhere.text()).unwrap();
    daemon.signal(Signal::SIGHUP);
    wait_for("the state file to name the new source", PATIENCE, || {
        read_new(&state, None).filter(|t| t.contains(&other.url()))
    });
    daemon.signal(Signal::SIGTERM);
    assert!(daemon.wait_exit(PATIENCE).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_serves_the_saved_token_while_the_backend_is_down() {
    let backend = Backend::start().await;
    let sockets = tempfile::tempdir().unwrap();
    let socket = sockets.path().join("api.sock");
    let s =
        Service::new(&backend, &format!("[[sink]]\ntype = \"socket\"\npath = \"{}\"\n", socket.display()));
    let token = backend.token();
    let mut first = s.run();
    wait_for("the state file", PATIENCE, || read_new(&backend.state_dir().join("state.json"), None));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(backend.state_dir().join("state.json")).unwrap().permissions().mode() & 0o777,
        0o600
    );
    first.signal(Signal::SIGTERM);
    first.wait_exit(PATIENCE);

    backend.set_reply(Reply::Raw { status: 503, body: b"down".to_vec() });
    let second = s.run();
    wait_for("the socket", PATIENCE, || socket.exists().then_some(()));
    let reply = get(&socket, "/v1/token?format=raw").await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (200, token.as_str()),
        "the restored token is served at once"
    );
    let status = get(&socket, "/v1/status").await.json();
    assert_eq!(status["version"], 1);
    second.wait_output("restored version 1", PATIENCE);
    assert!(!second.output().contains(&token));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saved_state_is_ignored_when_expired_corrupt_or_foreign() {
    let backend = Backend::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    let state = backend.state_dir().join("state.json");

    // Expired: only the version count survives.
    backend.set_lifetime(Duration::from_secs(2));
    let s = Service::new(&backend, &file_sink(&file, "raw"));
    let mut daemon = s.run();
    wait_for("the state file", PATIENCE, || read_new(&state, None));
    daemon.signal(Signal::SIGTERM);
    daemon.wait_exit(PATIENCE);
    let saved_until = backend.expires_at();
    wait_for("the saved token to expire", PATIENCE, || {
        (std::time::SystemTime::now() > saved_until).then_some(())
    });
    backend.set_reply(Reply::Raw { status: 503, body: Vec::new() });
    let daemon = s.run();
    daemon.wait_output("no longer usable", PATIENCE);
    drop(daemon);

    // Corrupt.
    fs::write(&state, b"{\"format\": 1, \"vers").unwrap();
    let daemon = s.run();
    daemon.wait_output("is corrupt (", PATIENCE);
    drop(daemon);

    // Written for another backend (same state_dir).
    backend.set_reply(Reply::Token);
    backend.set_lifetime(Duration::from_secs(3600));
    let mut daemon = s.run();
    wait_for("a fresh state file", PATIENCE, || {
        read_new(&state, None).filter(|t| t.contains("\"current\":{"))
    });
    daemon.signal(Signal::SIGTERM);
    daemon.wait_exit(PATIENCE);
    let other = Backend::start().await;
    other.set_reply(Reply::Raw { status: 503, body: Vec::new() });
    let foreign = TestConfig::new(&other)
        .set("daemon", "state_dir", &format!("{:?}", backend.state_dir().display().to_string()))
        .sinks(&file_sink(&dir.path().join("other"), "raw"))
        .text();
    let foreign_config = dir.path().join("foreign.toml");
    fs::write(&foreign_config, foreign).unwrap();
    let daemon = DaemonProcess::run(&foreign_config);
    daemon.wait_output("not this source; ignoring it", PATIENCE);
    assert!(!dir.path().join("other").exists(), "another source's token was published");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cron_fetches_on_schedule_even_with_a_long_lived_token() {
    let backend = Backend::start().await;
    let s = Service::new(&backend, "");
    fs::write(&s.config, TestConfig::new(&backend).set("refresh", "cron", "[\"*/2 * * * * *\"]").text())
        .unwrap();
    let daemon = s.run();
    wait_for("the first fetch", PATIENCE, || (backend.fetches() >= 1).then_some(()));
    let start = backend.fetches();
    // A 1-hour token: without cron nothing would fetch for 15 minutes.
    wait_for("three cron fetches", PATIENCE, || (backend.fetches() >= start + 3).then_some(()));
    daemon.wait_output("refresh requested by refresh.cron", PATIENCE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line() {
    let backend = Backend::start().await;
    let s = Service::new(&backend, "");
    let mut daemon = DaemonProcess::spawn(&[
        "run",
        "--config",
        s.config.to_str().unwrap(),
        "--log-format",
        "json",
        "--log-level",
        "info",
    ]);
    daemon.wait_output("fetched new token", PATIENCE);
    daemon.signal(Signal::SIGTERM);
    daemon.wait_exit(PATIENCE);
    let output = daemon.output();
    for line in output.lines() {
        let object: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(object["fields"]["message"].is_string(), "{line}");
        assert_ne!(object["level"], "DEBUG", "--log-level info overrides MCP_TOKEN_SYNC_LOG=debug");
    }
    assert!(!output.contains("SECRET-tok"));
}

fn units() -> [PathBuf; 2] {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd");
    [dir.join("mcp-token-sync.service"), dir.join("mcp-token-sync@.service")]
}

fn systemd_analyze(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new("systemd-analyze")
        .args(args)
        .output()
        .expect("systemd-analyze is installed (apt-get install systemd)");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[test]
fn the_units_pass_systemd_analyze_verify() {
    // Verified as installed: with ExecStart pointing at a binary that exists.
    let dir = tempfile::tempdir().unwrap();
    let mut copies = Vec::new();
    for unit in units() {
        let copy = dir.path().join(unit.file_name().unwrap());
        // As installed: the command systemd looks up in its search path, here the test's binary.
        let text = support::replaced(
            &fs::read_to_string(&unit).unwrap(),
            "ExecStart=mcp-token-sync ",
            &format!("ExecStart={} ", support::binary::BIN),
        );
        fs::write(&copy, text).unwrap();
        copies.push(copy.to_str().unwrap().to_owned());
    }
    let mut args = vec!["verify"];
    args.extend(copies.iter().map(String::as_str));
    let (ok, output) = systemd_analyze(&args);
    assert!(ok && output.trim().is_empty(), "systemd-analyze verify:\n{output}");
}

#[test]
fn the_units_are_hardened_to_an_exposure_of_at_most_1_5() {
    for unit in units() {
        let (ok, output) = systemd_analyze(&["security", "--offline=true", unit.to_str().unwrap()]);
        assert!(ok, "{output}");
        let level = output
            .lines()
            .find_map(|l| {
                l.strip_prefix("→ Overall exposure level for ")?.split(": ").nth(1)?.split_whitespace().next()
            })
            .and_then(|n| n.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no exposure level in:\n{output}"));
        assert!(level <= 1.5, "{}: exposure {level}\n{output}", unit.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_journald_text_logs_leave_timestamps_to_the_journal() {
    let backend = Backend::start().await;
    let s = Service::new(&backend, "");
    let args = ["run", "--config", s.config.to_str().unwrap(), "--log-level", "info"];
    let mut plain = DaemonProcess::spawn(&args);
    let mut journald = DaemonProcess::spawn_with_env(&args, &[("JOURNAL_STREAM", "8:12345")]);
    for daemon in [&plain, &journald] {
        // Both share the backend's state dir, so one may restore the other's token instead of
        // fetching it: wait for a line every start logs.
        daemon.wait_output("started;", PATIENCE);
        daemon.signal(Signal::SIGTERM);
    }
    plain.wait_exit(PATIENCE);
    journald.wait_exit(PATIENCE);
    let stamped =
        |output: String| output.lines().all(|l| l.starts_with("20") && l.as_bytes().get(10) == Some(&b'T'));
    assert!(stamped(plain.output()), "{}", plain.output());
    let under_journal = journald.output();
    assert!(under_journal.lines().all(|l| !l.starts_with("20")), "{under_journal}");
    assert!(under_journal.contains("INFO started;"), "{under_journal}");
}
