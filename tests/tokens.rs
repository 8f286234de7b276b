//! Several tokens in one daemon (DESIGN §15), against the real backends the other tests use:
//! two backends of the seed's protocol and oidc-provider for client credentials. Each token
//! reaches its own sinks and proxy, fails alone, is refreshed alone, is read only by whom it
//! allows, survives a restart and a reload that does not touch it; every client verb works with
//! and without `--token`.

mod support;

use std::process::Command;
use std::time::Duration;

use futures_util::future::join_all;
use serde_json::Value;
use support::api::{get, post};
use support::binary::{BIN, curl_as, run_verb};
use support::host::{Host, PATIENCE};
use support::http::{self, Target};
use support::{Reply, wait_for};

/// The `/v1/status` of the daemon-wide socket.
async fn status(h: &Host) -> Value {
    get(&h.socket, "/v1/status").await.json()
}

/// Waits until every token has a version.
async fn all_fresh(h: &Host) -> Value {
    support::api::get_until(&h.socket, "/v1/status", "every token fresh", |r| {
        let s = r.json();
        s["state"] == "fresh" && s["tokens"].as_object().is_some_and(|t| t.len() == 3)
    })
    .await
    .json()
}

/// A verb against the daemon-wide socket: (exit code, stdout, stderr).
fn verb(h: &Host, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(BIN).args(args).args(["--socket", h.socket.to_str().unwrap()]).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_tokens_reach_their_own_sinks_proxies_and_names() {
    let own = tempfile::tempdir().unwrap();
    let own_socket = own.path().join("linear.sock");
    let h = Host::start(&format!(
        "[[tokens.linear.sink]]\ntype = \"socket\"\npath = \"{}\"\n",
        own_socket.display()
    ))
    .await;
    let status = all_fresh(&h).await;
    assert_eq!(h.file("calendar", None), h.calendar.token());
    assert_eq!(h.file("linear", None), h.linear.token());
    let service = h.file("service", None);
    for name in ["calendar", "linear", "service"] {
        assert_eq!(status["tokens"][name]["state"], "fresh", "{status}");
        assert_eq!(status["tokens"][name]["version"], 1, "{status}");
    }
    assert_eq!(status["tokens"]["service"]["source"]["grant"], "client_credentials");

    // Each proxy adds its own token: the backends' APIs take only their current token.
    for name in ["calendar", "linear"] {
        let target = Target::Tcp(h.proxy(name));
        let reply = http::send(&target, http::get(&target, "/api/calendars/")).await;
        assert_eq!(reply.status, 200, "{name}: {}", reply.body);
    }
    let target = Target::Tcp(h.proxy("service"));
    assert_eq!(http::send(&target, http::get(&target, "/reports")).await.status, 200);
    let seen = h.service_api.seen();
    assert_eq!(seen.last().unwrap().header("authorization"), Some(format!("Bearer {service}").as_str()));

    // By name: the token object names it; the list shows all three.
    let object = get(&h.socket, "/v1/tokens/linear").await.json();
    assert_eq!(
        (object["name"].as_str(), object["token"].as_str()),
        (Some("linear"), Some(h.linear.token().as_str()))
    );
    let list = get(&h.socket, "/v1/tokens").await.json();
    let names: Vec<&str> =
        list["tokens"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["calendar", "linear", "service"]);
    // Unnamed paths about one token ask for a name; the daemon's own ones cover all.
    let reply = get(&h.socket, "/v1/token").await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json()["error"], "token_name_required");
    assert_eq!(reply.json()["tokens"], serde_json::json!(["calendar", "linear", "service"]));
    assert_eq!(get(&h.socket, "/v1/health").await.status, 200);
    assert_eq!(get(&h.socket, "/v1/tokens/nope").await.json()["error"], "unknown_token");
    // A token's own socket serves that token, on the unnamed paths too, and no other.
    assert_eq!(get(&own_socket, "/v1/token?format=raw").await.body, h.linear.token());
    assert_eq!(get(&own_socket, "/v1/tokens/linear?format=raw").await.body, h.linear.token());
    assert_eq!(get(&own_socket, "/v1/status").await.json()["source"]["type"], "endpoint");
    assert_eq!(get(&own_socket, "/v1/tokens/calendar").await.status, 404);
    let listed = get(&own_socket, "/v1/tokens").await.json();
    assert_eq!(listed["tokens"].as_array().map(Vec::len), Some(1), "{listed}");

    // Every series about a token carries its name; log lines too.
    let metrics = get(&h.socket, "/metrics").await.body;
    for name in ["calendar", "linear", "service"] {
        assert!(metrics.contains(&format!("mcp_token_sync_token_valid{{token=\"{name}\"}} 1")), "{metrics}");
    }
    assert!(
        h.daemon.output().contains("token{token=service}: fetched new token version 1"),
        "{}",
        h.daemon.output()
    );
    for secret in [h.calendar.token(), h.linear.token(), service] {
        assert!(!h.daemon.output().contains(&secret) && !metrics.contains(&secret));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_or_hanging_source_fails_alone() {
    // calendar's and linear's tokens live 2 s: calendar refreshes about every 1.2 s, while
    // linear's source hangs, then fails, and its token expires.
    let h = Host::start("").await;
    all_fresh(&h).await;
    for backend in [&h.calendar, &h.linear] {
        backend.rotate_each_fetch(true);
        backend.set_lifetime(Duration::from_secs(2));
    }
    for name in ["calendar", "linear"] {
        assert_eq!(post(&h.socket, &format!("/v1/tokens/{name}/refresh"), b"").await.status, 200);
    }
    h.linear.set_reply(Reply::Slow(Duration::from_secs(30)));
    let hung = tokio::spawn({
        let socket = h.socket.clone();
        async move { post(&socket, "/v1/tokens/linear/refresh", b"").await }
    });
    let version = |s: &Value| s["tokens"]["calendar"]["version"].as_u64().unwrap_or(0);
    let before = version(&status(&h).await);
    support::api::get_until(&h.socket, "/v1/status", "calendar refreshing on its schedule", |r| {
        version(&r.json()) >= before + 2
    })
    .await;
    // Reads of the other tokens are answered while linear's fetch hangs.
    assert_eq!(get(&h.socket, "/v1/tokens/service?format=raw").await.status, 200);
    let refreshed = hung.await.unwrap();
    assert_eq!(refreshed.status, 503, "linear's fetch failed at its own timeout: {}", refreshed.body);
    h.linear.set_reply(Reply::Raw { status: 500, body: b"down".to_vec() });
    let health = support::api::get_until(&h.socket, "/v1/health", "linear unhealthy", |r| {
        r.status == 503 && r.json()["tokens"]["linear"].is_array()
    })
    .await
    .json();
    let unhealthy: Vec<&String> = health["tokens"].as_object().unwrap().keys().collect();
    assert_eq!(unhealthy, ["linear"], "{health}");
    assert_eq!(get(&h.socket, "/v1/tokens/calendar/health").await.status, 200);
    let calendar = status(&h).await["tokens"]["calendar"]["state"].clone();
    assert!(calendar == "fresh" || calendar == "expiring", "{calendar}");
    assert_eq!(get(&h.socket, "/v1/tokens/linear").await.json()["error"], "token_expired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_reports_on_one_token_make_one_fetch_there_and_none_elsewhere() {
    let h = Host::start("").await;
    all_fresh(&h).await;
    let fetches = (h.calendar.fetches(), h.linear.fetches());
    let grants = h.provider.stats()["grants"]["client_credentials"].as_u64();
    h.calendar.rotate();
    let reports = (0..200).map(|_| post(&h.socket, "/v1/tokens/calendar/report-401", b"{\"version\": 1}"));
    for reply in join_all(reports).await {
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.json()["version"], 2);
    }
    assert_eq!((h.calendar.fetches(), h.linear.fetches()), (fetches.0 + 1, fetches.1));
    assert_eq!(h.provider.stats()["grants"]["client_credentials"].as_u64(), grants);
    assert_eq!(h.file("calendar", None), h.calendar.token());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tokens_allow_uids_narrow_who_may_read_it() {
    if !support::skip::as_root("a_tokens_allow_uids_narrow_who_may_read_it", "act as another uid") {
        return;
    }
    // The socket serves uid 65534; calendar lets it read, linear names only another user.
    let h =
        Host::start("[tokens.calendar]\nallow_uids = [65534]\n[tokens.linear]\nallow_uids = [4242]\n").await;
    let text = std::fs::read_to_string(&h.config).unwrap().replacen(
        "mode = \"0666\"\n",
        "mode = \"0666\"\nallow_uids = [65534]\n",
        1,
    );
    std::fs::write(&h.config, text).unwrap();
    h.daemon.signal(nix::sys::signal::Signal::SIGHUP);
    h.daemon.wait_output(&format!("socket {} started", h.socket.display()), PATIENCE);
    all_fresh(&h).await;
    std::fs::set_permissions(h.dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let socket = h.socket.to_str().unwrap();
    let body = |path: &str| {
        let out = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "curl", "-s", "--unix-socket", socket])
            .arg(format!("http://d{path}"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(body("/v1/tokens/calendar?format=raw"), h.calendar.token());
    for path in ["/v1/tokens/linear", "/v1/tokens/linear/status", "/v1/tokens/linear/watch"] {
        assert_eq!(curl_as(65534, &["--unix-socket", socket, &format!("http://d{path}")]), "404", "{path}");
    }
    let refused = body("/v1/tokens/linear");
    let unknown = body("/v1/tokens/nothing-here").replace("nothing-here", "linear");
    assert_eq!(refused, unknown, "a token it may not read looks exactly like one that does not exist");
    // Tokens without allow_uids are read by whoever the socket serves.
    assert_eq!(curl_as(65534, &["--unix-socket", socket, "http://d/v1/tokens/service"]), "200");
    let listed: Value = serde_json::from_str(&body("/v1/tokens")).unwrap();
    let names: Vec<&str> =
        listed["tokens"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["calendar", "service"]);
    let all: Value = serde_json::from_str(&body("/v1/status")).unwrap();
    assert!(all["tokens"].get("linear").is_none(), "{all}");
    let metrics = body("/metrics");
    assert!(metrics.contains("token=\"calendar\"") && !metrics.contains("token=\"linear\""), "{metrics}");
    // Root still reads it.
    assert_eq!(get(&h.socket, "/v1/tokens/linear?format=raw").await.body, h.linear.token());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_verb_works_with_a_token_name_and_without_one() {
    let h = Host::start("").await;
    all_fresh(&h).await;
    let h = &h;
    tokio::task::block_in_place(|| {
        let (code, out, _) = verb(h, &["token", "--token", "linear"]);
        assert_eq!((code, out.trim()), (Some(0), h.linear.token().as_str()));
        let out = Command::new(BIN)
            .args(["headers", "--socket", h.socket.to_str().unwrap()])
            .env("MCP_TOKEN_SYNC_TOKEN", "calendar")
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("{{\"Authorization\":\"Bearer {}\"}}", h.calendar.token())
        );
        // Verbs about one token need its name here: a usage error naming the choices.
        for args in [&["token"][..], &["headers"], &["report-401"], &["watch"], &["login"]] {
            let (code, out, err) = verb(h, args);
            assert_eq!(code, Some(2), "{args:?}: {out}{err}");
            assert!(err.contains("calendar, linear, service") && err.contains("--token"), "{args:?}: {err}");
            assert!(out.is_empty(), "{args:?}: {out}");
        }
        let (code, _, err) = verb(h, &["token", "--token", "nope"]);
        assert!(code == Some(2) && err.contains("no token named \"nope\""), "{err}");

        // refresh and status cover every token without a name.
        let (code, out, _) = verb(h, &["refresh"]);
        assert_eq!(code, Some(0), "{out}");
        for name in ["calendar", "linear", "service"] {
            assert!(out.contains(&format!("{name}: version ")), "{out}");
        }
        let (code, out, _) = verb(h, &["refresh", "--token", "calendar"]);
        assert!(code == Some(0) && out.starts_with("version 1: unchanged"), "{out}");
        let (code, out, _) = verb(h, &["status"]);
        assert_eq!(code, Some(0), "{out}");
        assert!(
            out.contains("(3 tokens)") && out.lines().filter(|l| l.contains(" fresh version ")).count() == 3,
            "{out}"
        );
        let (code, out, _) = verb(h, &["status", "--token", "service"]);
        assert!(code == Some(0) && out.contains("source     oauth2, grant client_credentials"), "{out}");

        h.calendar.rotate();
        let (code, out, _) = verb(h, &["report-401", "--token", "calendar"]);
        assert_eq!((code, out.trim()), (Some(0), h.calendar.token().as_str()));
        let (code, _, err) = verb(h, &["login", "--token", "service"]);
        assert!(code == Some(0) && err.contains("no login needed"), "{err}");

        let mut watch = Command::new(BIN)
            .args(["watch", "--token", "linear", "--socket", h.socket.to_str().unwrap()])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(watch.stdout.take().unwrap()), &mut line)
            .unwrap();
        let _ = watch.kill();
        let _ = watch.wait();
        assert!(line.starts_with("version 1: token ") && !line.contains(&h.linear.token()), "{line}");
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_touches_only_the_tokens_it_changes() {
    let h = Host::start("").await;
    all_fresh(&h).await;
    let service_file = h.dir.path().join("service");
    h.file("service", None);
    // A watcher of calendar, which the reload leaves alone.
    let target = Target::Unix(h.socket.clone());
    let mut watch = http::open(&target, http::get(&target, "/v1/tokens/calendar/watch")).await.into_body();
    let first = http_body_util::BodyExt::frame(&mut watch).await.unwrap().unwrap().into_data().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("\"version\":1"));
    let fetches = (h.calendar.fetches(), h.linear.fetches());

    // linear gets a second file, service leaves, added joins (a third backend's seed-style token
    // from calendar's backend, under another name).
    let added = format!(
        "# reloaded\n[tokens.linear]\nallow_uids = [4242]\n[[tokens.linear.sink]]\ntype = \"file\"\npath = \"{}\"\n\n\
         [tokens.added.source]\nurl = \"{}\"\nagent = \"{}\"\n[[tokens.added.sink]]\ntype = \"file\"\npath = \"{}\"\n",
        h.dir.path().join("linear-2").display(),
        h.calendar.url(),
        support::backend::AGENT,
        h.dir.path().join("added").display(),
    );
    let mut text = h.config_text(&added);
    let start = text.find("[tokens.service.source]").unwrap();
    let end = start + text[start..].find("# reloaded").unwrap();
    let service_tables = text[start..end].to_owned();
    text = text.replace(&service_tables, "");
    std::fs::write(&h.config, text).unwrap();
    h.daemon.signal(nix::sys::signal::Signal::SIGHUP);
    wait_for("the added token's file", PATIENCE, || std::fs::read_to_string(h.dir.path().join("added")).ok());
    wait_for("linear's new file", PATIENCE, || std::fs::read_to_string(h.dir.path().join("linear-2")).ok());
    wait_for("service's file removed (on_expiry = remove)", PATIENCE, || {
        (!service_file.exists()).then_some(())
    });
    let status = status(&h).await;
    let names: Vec<&String> = status["tokens"].as_object().unwrap().keys().collect();
    assert_eq!(names, ["added", "calendar", "linear"], "{status}");
    assert_eq!(status["tokens"]["calendar"]["version"], 1, "{status}");
    assert_eq!(status["tokens"]["linear"]["version"], 1, "a changed token keeps its version: {status}");
    assert_eq!(h.linear.fetches(), fetches.1, "a changed sink is no reason to fetch");
    assert!(h.calendar.fetches() <= fetches.0 + 1, "only the added token fetched from calendar's backend");
    // The watcher of the untouched token saw nothing, and is still open.
    let nothing =
        tokio::time::timeout(Duration::from_millis(300), http_body_util::BodyExt::frame(&mut watch)).await;
    assert!(nothing.is_err(), "the unchanged token's watch stream got {nothing:?}");
    h.calendar.rotate();
    post(&h.socket, "/v1/tokens/calendar/refresh", b"").await;
    let next = http_body_util::BodyExt::frame(&mut watch).await.unwrap().unwrap().into_data().unwrap();
    assert!(String::from_utf8_lossy(&next).contains("\"version\":2"));
    assert!(h.daemon.output().contains("token{token=service}: stopped: the token left the configuration"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tokens_state_survives_a_restart() {
    let mut h = Host::start("").await;
    all_fresh(&h).await;
    h.calendar.rotate();
    post(&h.socket, "/v1/tokens/calendar/refresh", b"").await;
    let before = status(&h).await;
    assert_eq!(before["tokens"]["calendar"]["version"], 2);
    h.daemon.signal(nix::sys::signal::Signal::SIGTERM);
    h.daemon.wait_exit(PATIENCE);
    for name in ["calendar", "linear", "service"] {
        let state = h.dir.path().join("state/tokens").join(name).join("state.json");
        assert!(state.exists(), "{name}'s state in its own directory");
    }
    // Down: the backends would answer nothing new; the restarted daemon serves what it kept.
    h.calendar.set_reply(Reply::Raw { status: 500, body: Vec::new() });
    h.linear.set_reply(Reply::Raw { status: 500, body: Vec::new() });
    h.daemon = support::DaemonProcess::run(&h.config);
    wait_for("the socket", PATIENCE, || h.socket.exists().then_some(()));
    let after = support::api::get_until(&h.socket, "/v1/status", "the restored tokens", |r| {
        r.json()["tokens"].as_object().is_some_and(|t| t.len() == 3)
    })
    .await
    .json();
    assert_eq!(after["tokens"]["calendar"]["version"], 2, "{after}");
    assert_eq!(after["tokens"]["linear"]["version"], 1, "{after}");
    assert_eq!(get(&h.socket, "/v1/tokens/calendar?format=raw").await.body, h.calendar.token());
}

#[test]
fn once_fetches_every_token_or_the_one_named() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let h = rt.block_on(Host::start(""));
    rt.block_on(all_fresh(&h));
    let config = h.config.to_str().unwrap();
    h.linear.set_reply(Reply::Raw { status: 500, body: Vec::new() });
    let (status, out) = run_verb(&["once", "--config", config]);
    assert_eq!(status.code(), Some(1), "{out}");
    assert!(out.contains("token linear: fetch failed") && !out.contains("token calendar:"), "{out}");
    // Beside the running daemon, on its state_dir: found by a new user's trial, both counted
    // on from the same version, and two tokens got one number. Versions now go on from the
    // state file's.
    let version = |s: &Value| s["tokens"]["calendar"]["version"].as_u64().unwrap();
    let now = || rt.block_on(get(&h.socket, "/v1/status")).json();
    let running = version(&now());
    h.calendar.rotate();
    let (status, out) = run_verb(&["once", "--config", config, "--token", "calendar"]);
    assert_eq!(status.code(), Some(0), "{out}");
    assert!(out.contains(&format!("version {}", running + 1)), "{out}");
    assert_eq!(rt.block_on(post(&h.socket, "/v1/tokens/calendar/refresh", b"")).status, 200);
    assert_eq!(version(&now()), running + 2, "past the version once wrote");
    let (status, out) = run_verb(&["once", "--config", config, "--token", "nope"]);
    assert!(status.code() == Some(2) && out.contains("calendar, linear, service"), "{out}");
    let (status, out) = run_verb(&["check", "--config", config]);
    assert!(status.success() && out.contains("(3 tokens: calendar, linear, service)"), "{out}");
    assert!(out.contains("[tokens.service.source]") && out.contains("[tokens.calendar.refresh]"), "{out}");
}

#[test]
fn tokens_on_one_issuer_share_one_registered_client() {
    use support::oauth::{Login, Provider, RESOURCE, person};
    let p = Provider::start(300);
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("api.sock");
    let token = |name: &str| {
        format!(
            "[tokens.{name}.source]\ntype = \"oauth2\"\nissuer = \"{}\"\nresource = \"{RESOURCE}\"\nscope = \"calendar\"\n",
            p.issuer
        )
    };
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[daemon]\nstate_dir = \"{}\"\n[[sink]]\ntype = \"socket\"\npath = \"{}\"\n{}{}",
            dir.path().join("state").display(),
            socket.display(),
            token("first"),
            token("second")
        ),
    )
    .unwrap();
    let daemon = support::DaemonProcess::run(&config);
    wait_for("the socket", PATIENCE, || socket.exists().then_some(()));
    for name in ["first", "second"] {
        let mut login = Login::start(&socket, &["--device", "--token", name]);
        let url = login.url();
        let url = if login.printed.contains("enter the code") { login.url() } else { url };
        person(&url, &[]);
        let (ok, printed) = login.finish();
        assert!(
            ok && printed.contains("logged in: token version 1"),
            "{name}: {printed}\n{}",
            daemon.output()
        );
    }
    let client = |name: &str| {
        let stored = std::fs::read(dir.path().join("state/tokens").join(name).join("oauth2.json")).unwrap();
        serde_json::from_slice::<Value>(&stored).unwrap()["client"]["client_id"].as_str().unwrap().to_owned()
    };
    assert_eq!(client("first"), client("second"), "the second token reused the first's registration");
    let shared: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("state/oauth2-clients.json")).unwrap())
            .unwrap();
    assert_eq!(shared.as_array().map(Vec::len), Some(1), "{shared}");
    assert_eq!(shared[0]["issuer"], p.issuer.as_str());
    assert_eq!(shared[0]["client_id"], client("first").as_str());
}

/// Twenty tokens from one backend, each with a file sink, under systemd's eye: `status` shows
/// one line a token, `STATUS=` counts them by state, the watchdog is fed by every engine, and
/// JSON log lines name their token at the top level.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_tokens_are_readable_in_status_and_counted_for_systemd() {
    let backend = support::Backend::start().await;
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("api.sock");
    let mut text = format!(
        "[daemon]\nstate_dir = \"{}\"\n[[sink]]\ntype = \"socket\"\npath = \"{}\"\n",
        dir.path().join("state").display(),
        socket.display()
    );
    for i in 0..20 {
        text += &format!(
            "[tokens.token-{i:02}.source]\nurl = \"{}\"\n[[tokens.token-{i:02}.sink]]\ntype = \"file\"\npath = \"{}\"\n",
            backend.url(),
            dir.path().join(format!("t{i}")).display()
        );
    }
    let config = dir.path().join("config.toml");
    std::fs::write(&config, text).unwrap();
    let notify_path = dir.path().join("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    notify.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let daemon = support::DaemonProcess::spawn_with_env(
        &["run", "--config", config.to_str().unwrap(), "--log-format", "json"],
        &[("NOTIFY_SOCKET", notify_path.to_str().unwrap()), ("WATCHDOG_USEC", "400000")],
    );
    let mut seen = Vec::new();
    tokio::task::block_in_place(|| {
        let deadline = std::time::Instant::now() + PATIENCE;
        while !(seen.iter().any(|m: &String| m.contains("STATUS=20 fresh"))
            && seen.iter().filter(|m| m.trim() == "WATCHDOG=1").count() >= 3)
        {
            assert!(std::time::Instant::now() < deadline, "{seen:?}\n{}", daemon.output());
            let mut buf = [0u8; 4096];
            if let Ok(n) = notify.recv(&mut buf) {
                seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
    });
    let out = Command::new(BIN).args(["status", "--socket", socket.to_str().unwrap()]).output().unwrap();
    let out = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.starts_with("state") && out.contains("(20 tokens)"), "{out}");
    for i in 0..20 {
        let line =
            out.lines().find(|l| l.starts_with(&format!("token-{i:02} "))).unwrap_or_else(|| panic!("{out}"));
        assert!(line.contains("fresh version 1, expires"), "{line}");
    }
    let fetched = daemon
        .output()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["fields"]["message"].as_str().is_some_and(|m| m.starts_with("fetched new token")))
        .map(|line| line["token"].as_str().unwrap_or("(none)").to_owned())
        .collect::<std::collections::BTreeSet<_>>();
    assert_eq!(fetched.len(), 20, "every token's JSON line names it: {fetched:?}");
}

/// Found by attacking the daemon: a server behind one token answered its 401 with
/// `resource_metadata` naming another token's proxy (a login's callback too). The daemon
/// fetched it as root, which its own listeners serve: the proxy added its token and sent the
/// server's path upstream. The daemon sends no request to a listener of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_one_tokens_server_names_never_reaches_another_tokens_proxy() {
    use std::sync::{Arc, Mutex};
    use support::fake_http::{Answer, FakeHttp};
    let named = Arc::new(Mutex::new(String::new()));
    let hostile = FakeHttp::start({
        let named = named.clone();
        move |_| match named.lock().unwrap().clone() {
            url if url.is_empty() => Answer::json(503, serde_json::json!({})),
            url => Answer::json(401, serde_json::json!({}))
                .with_header("www-authenticate", &format!("Bearer resource_metadata=\"{url}\"")),
        }
    });
    let secrets = tempfile::tempdir().unwrap();
    let secret = secrets.path().join("evil-secret");
    std::fs::write(&secret, "evil-secret-0123456789").unwrap();
    let h = Host::start(&format!(
        "[tokens.evil.source]\ntype = \"oauth2\"\ngrant = \"client_credentials\"\nresource = \"{}/mcp\"\n\
         client_id = \"evil\"\nclient_auth = \"client_secret_basic\"\nclient_secret_file = \"{}\"\n",
        hostile.url(),
        secret.display()
    ))
    .await;
    h.file("service", None);
    *named.lock().unwrap() = format!("http://{}/api/delete-everything?confirm=yes", h.proxy("service"));
    let status = support::api::get_until(&h.socket, "/v1/tokens/evil/status", "evil's fetch refused", |r| {
        r.json()["last_error"].as_str().is_some_and(|e| e.contains("this daemon's own listener"))
    })
    .await
    .json();
    assert!(status["last_error"].as_str().unwrap().contains(&h.proxy("service").to_string()), "{status}");
    // Still refused on the retries that follow.
    let fetches = hostile.seen().len();
    wait_for("evil's retries", PATIENCE, || (hostile.seen().len() >= fetches + 2).then_some(()));
    let upstream: Vec<String> = h.service_api.seen().iter().map(|s| s.path().to_owned()).collect();
    assert!(upstream.iter().all(|p| !p.contains("delete-everything")), "{upstream:?}");
}
