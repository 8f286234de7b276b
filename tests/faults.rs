//! Faults: a backend outage longer than the token's life, and the daemon killed with SIGKILL
//! while readers watch every sink.

mod support;

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::api::{self, get};
use support::{Backend, DaemonProcess, Reply, read_new, wait_for};

const PATIENCE: Duration = Duration::from_secs(10);

fn env_sink(path: &Path) -> String {
    format!(
        "[[sink]]\ntype = \"env_file\"\npath = \"{}\"\nvariable = \"TOKEN\"\non_expiry = \"remove\"\n",
        path.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_longer_than_the_token_serves_it_until_expiry_then_recovers() {
    let backend = Backend::start().await;
    backend.set_lifetime(Duration::from_secs(3));
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("token.env");
    let d = api::start_tweaked(&backend, &env_sink(&env_file), |t| t.set("refresh", "backoff_max", "\"1s\""));
    let token = backend.token();
    wait_for("the env file", PATIENCE, || read_new(&env_file, None));

    backend.set_reply(Reply::Raw { status: 503, body: b"down".to_vec() });
    // Until it expires, the last token is served.
    let reply = get(&d.socket, "/v1/token?format=raw").await;
    assert_eq!((reply.status, reply.body.as_str()), (200, token.as_str()));

    // Then: expired, 503, on_expiry honoured.
    let reply = api::get_until(&d.socket, "/v1/token", "the token to expire", |r| r.status == 503).await;
    assert_eq!(reply.json()["error"], "token_expired");
    assert_eq!(get(&d.socket, "/v1/status").await.json()["state"], "expired");
    wait_for("the env file to be removed", PATIENCE, || (!env_file.exists()).then_some(()));

    // Retries go on, spaced by backoff_max (1 s) once backed off.
    let before = backend.fetches();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let retries = backend.fetches() - before;
    assert!((2..=5).contains(&retries), "{retries} fetches in 3 s with backoff_max = 1s");
    let failures = get(&d.socket, "/v1/status").await.json()["consecutive_failures"].as_u64().unwrap();
    assert!(failures >= retries as u64, "status shows {failures} failures after {retries} retries");

    // The backend returns: service is back within one backoff (plus slack).
    let fresh = backend.set_lifetime(Duration::from_secs(3600));
    backend.set_reply(Reply::Token);
    let back = Instant::now();
    let reply =
        api::get_until(&d.socket, "/v1/token?format=raw", "service to return", |r| r.status == 200).await;
    assert_eq!(reply.body, fresh);
    assert!(back.elapsed() < Duration::from_millis(1500), "recovery took {:?}", back.elapsed());
    wait_for("the env file again", PATIENCE, || read_new(&env_file, None).filter(|t| t.contains(&fresh)));
}

/// SIGKILL at random moments while tokens rotate: readers of the file, the env file and the
/// socket never see a partial, empty or foreign value, and a restart with the backend down serves
/// the saved token at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_rotations_never_shows_a_reader_a_bad_value() {
    const ROTATIONS: usize = 1000;
    const KILLS: usize = 8;
    let backend = Backend::start().await;
    backend.rotate_each_fetch(true);
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("token.env");
    let d = api::start(&backend, &env_sink(&env_file));
    let config = d.dir.path().join("config.toml");
    let (file, socket) = (d.file.clone(), d.socket.clone());
    let first = wait_for("the first token", PATIENCE, || read_new(&file, None));
    wait_for("the env file", PATIENCE, || read_new(&env_file, None));
    let token_len = first.len();
    let valid = move |t: &str| t.len() == token_len && t.starts_with("SECRET-tok-");

    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicUsize::new(0));
    let readers = {
        let (stop, reads, file, env_file, socket) =
            (stop.clone(), reads.clone(), file.clone(), env_file.clone(), socket.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let raw = fs::read_to_string(&file).expect("the file vanished");
                assert!(valid(&raw), "partial file: {raw:?}");
                let env = fs::read_to_string(&env_file).expect("the env file vanished");
                let value = env.strip_prefix("TOKEN=").and_then(|v| v.strip_suffix('\n')).unwrap_or_default();
                assert!(valid(value), "partial env file: {env:?}");
                // The socket is away while the daemon is dead; when it answers, it answers right.
                if let Ok(mut s) = std::os::unix::net::UnixStream::connect(&socket) {
                    use std::io::{Read, Write};
                    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                    if s.write_all(
                        b"GET /v1/token?format=raw HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                    )
                    .is_ok()
                    {
                        let mut answer = String::new();
                        if s.read_to_string(&mut answer).is_ok() && answer.starts_with("HTTP/1.1 200") {
                            let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
                            assert!(valid(body), "bad socket answer: {answer:?}");
                        }
                    }
                }
                reads.fetch_add(1, Ordering::Relaxed);
            }
        })
    };

    let mut daemon = d.daemon;
    let mut last = first;
    for i in 0..ROTATIONS {
        if i % (ROTATIONS / KILLS) == ROTATIONS / KILLS / 2 {
            // Mid-stream, without warning: the next write may be half done.
            daemon.signal(Signal::SIGKILL);
            daemon.wait_exit(PATIENCE);
            daemon = DaemonProcess::run(&config);
            // The killed daemon left its socket file; the new one answers once it has replaced
            // it, and by then its signal handlers are in place (SIGUSR1 would kill it before).
            wait_for("the restarted daemon's socket", PATIENCE, || {
                std::os::unix::net::UnixStream::connect(&socket).ok().map(drop)
            });
        }
        daemon.signal(Signal::SIGUSR1);
        last = wait_for("the next rotation", PATIENCE, || read_new(&file, Some(&last)));
    }
    stop.store(true, Ordering::Relaxed);
    readers.join().expect("a reader saw a bad value");
    assert!(reads.load(Ordering::Relaxed) > ROTATIONS, "the readers barely ran");

    // Killed once more; restarted with the backend down, the saved token is served at once.
    daemon.signal(Signal::SIGKILL);
    daemon.wait_exit(PATIENCE);
    let saved = fs::read_to_string(&file).unwrap();
    backend.set_reply(Reply::Raw { status: 503, body: Vec::new() });
    let _daemon = DaemonProcess::run(&config);
    let deadline = Instant::now() + PATIENCE;
    loop {
        // The file may be the killed daemon's: ask only once something listens.
        if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
            let reply = get(&socket, "/v1/token?format=raw").await;
            if reply.status == 200 {
                assert_eq!(reply.body, saved, "the restored token is the last one written");
                break;
            }
        }
        assert!(Instant::now() < deadline, "the state file did not restore service");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A small tmpfs, unmounted on drop; `None` (and a loud note) where mounting is not allowed.
struct SmallFs(tempfile::TempDir);

impl SmallFs {
    fn mount(size: &str) -> Option<SmallFs> {
        if !support::skip::as_root("a_full_disk_fails_its_sink_alone", "mount a small tmpfs") {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs", dir.path().to_str().unwrap()])
            .status()
            .expect("mount is installed");
        assert!(status.success(), "mount -t tmpfs failed as root");
        Some(SmallFs(dir))
    }

    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(self.0.path()).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_its_sink_alone_and_it_recovers() {
    let Some(small) = SmallFs::mount("64k") else { return };
    let backend = Backend::start().await;
    let full_file = small.path().join("token");
    let d = api::start(&backend, &support::file_sink(&full_file, "raw"));
    let first = backend.token();
    wait_for("the token on the small filesystem", PATIENCE, || {
        read_new(&full_file, None).filter(|t| *t == first)
    });

    // Fill what is left.
    let filler = small.path().join("filler");
    {
        use std::io::Write;
        let mut f = fs::File::create(&filler).unwrap();
        while f.write_all(&[0u8; 4096]).is_ok() {}
    }
    let second = backend.rotate();
    d.daemon.signal(Signal::SIGUSR1);
    wait_for("the other sink to get the new token", PATIENCE, || {
        read_new(&d.file, None).filter(|t| *t == second)
    });
    let entry = api::sink_status(&d.socket, full_file.to_str().unwrap(), |e| e["ok"] == false).await;
    assert!(entry["error"].as_str().unwrap().contains("No space left"), "{entry}");
    assert_eq!(fs::read_to_string(&full_file).unwrap(), first, "the old file stays whole");
    assert_eq!(get(&d.socket, "/v1/health").await.status, 503);

    // Space comes back: the retry writes the new token, and nothing temporary is left behind.
    fs::remove_file(&filler).unwrap();
    wait_for("the sink to recover", Duration::from_secs(40), || {
        read_new(&full_file, None).filter(|t| *t == second)
    });
    let names: Vec<String> = fs::read_dir(small.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["token"]);
    // The file is visible a moment before the sink reports its success.
    api::get_until(&d.socket, "/v1/health", "health to recover", |r| r.status == 200).await;
}

/// Every token the daemon ever held, and its bootstrap credential, searched for in every byte it
/// wrote where they must not be: logs, status, metrics, health, and the state file outside the
/// token's own field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_escapes_into_logs_status_metrics_or_state() {
    const CREDENTIAL: &str = "BOOTSTRAP-9c1e77d0-credential";
    let backend = Backend::start().await;
    backend.require_header("authorization", &format!("Bearer {CREDENTIAL}"));
    backend.rotate_each_fetch(true);
    let dir = tempfile::tempdir().unwrap();
    let credential = dir.path().join("key");
    fs::write(&credential, format!("{CREDENTIAL}\n")).unwrap();
    let hook = dir.path().join("hook.sh");
    fs::write(&hook, "cat >/dev/null; echo 'hook failed on purpose' >&2; exit 1\n").unwrap();
    let extra = format!(
        "[source.auth]\ntype = \"bearer\"\ncredential_file = \"{}\"\n{}[[sink]]\ntype = \"exec\"\ncommand = [\"/bin/sh\", \"{}\"]\n",
        credential.display(),
        env_sink(&dir.path().join("token.env")),
        hook.display()
    );
    let d = api::start(&backend, &extra);
    let mut tokens = vec![wait_for("the first token", PATIENCE, || read_new(&d.file, None))];
    // Rotations, 401 reports, a refresh, failures of every kind, a reload.
    for _ in 0..5 {
        d.daemon.signal(Signal::SIGUSR1);
        let last = tokens.last().cloned();
        tokens.push(wait_for("a rotation", PATIENCE, || read_new(&d.file, last.as_deref())));
    }
    for body in [&b"{\"version\": 1}"[..], b"", b"{\"version\": 999}"] {
        let reply = support::api::post(&d.socket, "/v1/report-401", body).await;
        tokens.push(reply.json()["token"].as_str().unwrap().to_owned());
    }
    support::api::post(&d.socket, "/v1/refresh", b"").await;
    let mut forged = backend.answer();
    forged["token"] = serde_json::json!("SECRET-tok-forged value");
    backend.set_reply(Reply::Json(forged));
    support::api::post(&d.socket, "/v1/refresh", b"").await;
    backend.set_reply(Reply::Raw { status: 500, body: CREDENTIAL.as_bytes().to_vec() });
    support::api::post(&d.socket, "/v1/refresh", b"").await;
    tokens.push(backend.token());
    d.daemon.signal(Signal::SIGHUP);
    d.daemon.wait_output("reloading", PATIENCE);

    let mut written = String::new();
    for path in ["/v1/status", "/metrics", "/v1/health"] {
        written.push_str(&get(&d.socket, path).await.body);
    }
    let mut state: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(backend.state_dir().join("state.json")).unwrap()).unwrap();
    state["current"]["token"] = serde_json::Value::Null;
    written.push_str(&state.to_string());
    written.push_str(&d.daemon.output());

    for secret in tokens.iter().map(String::as_str).chain([CREDENTIAL, "SECRET-tok-forged"]) {
        assert!(!written.contains(secret), "{secret:?} escaped into:\n{written}");
    }
    assert!(written.contains("fingerprint"), "the logs should name tokens by fingerprint");
}
