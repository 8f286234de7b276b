//! `type = "command"` (DESIGN §16): real helper scripts shaped like `az account
//! get-access-token -o json` and `gcloud auth print-access-token`, run as users run them, their
//! token published into a file and through a proxy. What the helper sees (argv, environment,
//! user) is checked from inside it; a helper that hangs is killed with what it started; a
//! failing one is named by its exit and the first line of its stderr, never the rest.

mod support;

use std::path::Path;
use std::time::{Duration, SystemTime};

use serde_json::Value;
use support::api::{get, post};
use support::kinds::{Daemon, PATIENCE, script};
use support::wait_for;

/// An `az`-shaped helper (`az account get-access-token -o json`, the documented fields):
/// writes what it was run with into `dir`, counts its runs there, and prints a new token each
/// run, valid for an hour, with `expires_on` in epoch seconds (and `expiresOn` in local time,
/// which the config does not read).
fn az(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("az");
    script(
        &path,
        &format!(
            r#"#!/usr/bin/python3
import json, os, sys, time
out = "{dir}"
runs = int(open(out + "/runs").read()) + 1 if os.path.exists(out + "/runs") else 1
open(out + "/runs", "w").write(str(runs))
json.dump({{"argv": sys.argv[1:], "env": dict(os.environ), "uid": os.getuid(), "stdin": sys.stdin.read()}}, open(out + "/seen.json", "w"))
expires = int(time.time()) + 3600
print(json.dumps({{
    "accessToken": "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.az-%d-secret.c2ln" % runs,
    "expiresOn": time.strftime("%Y-%m-%d %H:%M:%S.000000", time.localtime(expires)),
    "expires_on": expires,
    "subscription": "00000000-0000-0000-0000-000000000001",
    "tenant": "00000000-0000-0000-0000-000000000002",
    "tokenType": "Bearer",
}}, indent=2))
"#,
            dir = dir.display()
        ),
    );
    path
}

fn az_source(program: &Path, extra: &str) -> String {
    format!(
        "[source]\ntype = \"command\"\ncommand = [\"{}\", \"account\", \"get-access-token\", \"--resource\", \
         \"499b84ac-1321-427f-aa17-267ca6975798\", \"-o\", \"json\"]\ntimeout = \"5s\"\n\
         environment = {{ AZURE_CONFIG_DIR = \"/home/alice/.azure\" }}\n{extra}\n\
         [source.fields]\ntoken = \"/accessToken\"\nexpires_at = \"/expires_on\"\n",
        program.display()
    )
}

fn seen(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("seen.json")).unwrap()).unwrap()
}

fn runs(dir: &Path) -> u64 {
    std::fs::read_to_string(dir.join("runs")).ok().and_then(|r| r.parse().ok()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_az_shaped_helper_is_run_with_its_argv_alone_and_a_cleared_environment() {
    let helper = tempfile::tempdir().unwrap();
    let program = az(helper.path());
    let d = Daemon::start(&az_source(&program, ""), "");
    let token = d.token(None);
    assert!(token.starts_with("eyJ0eXAi") && token.contains("az-1-secret"), "{token}");
    assert_eq!(d.through_proxy().await, format!("Bearer {token}"));

    let seen = seen(helper.path());
    assert_eq!(
        seen["argv"],
        serde_json::json!([
            "account",
            "get-access-token",
            "--resource",
            "499b84ac-1321-427f-aa17-267ca6975798",
            "-o",
            "json"
        ])
    );
    assert_eq!(seen["stdin"], "", "stdin is /dev/null");
    let env = seen["env"].as_object().unwrap();
    let mut names: Vec<&str> = env.keys().map(String::as_str).collect();
    names.sort();
    assert_eq!(names, ["AZURE_CONFIG_DIR", "HOME", "LANG", "LOGNAME", "PATH", "USER"], "{env:?}");
    assert_eq!(env["PATH"], "/usr/local/bin:/usr/bin:/bin");
    assert_eq!(env["LANG"], "C.UTF-8");
    assert_eq!(env["AZURE_CONFIG_DIR"], "/home/alice/.azure");
    assert_eq!((env["USER"].as_str(), env["HOME"].as_str()), (Some("root"), Some("/root")));

    // Scheduled by expires_on (epoch seconds): an hour, as status shows it.
    let status = get(&d.socket, "/v1/status").await.json();
    let expires = humantime::parse_rfc3339(status["expires_at"].as_str().unwrap()).unwrap();
    let left = expires.duration_since(SystemTime::now()).unwrap();
    assert!(left > Duration::from_secs(3500) && left <= Duration::from_secs(3600), "{status}");
    assert_eq!(
        status["source"],
        serde_json::json!({"type": "command", "program": program.to_str().unwrap()})
    );
    d.keeps_secret(&["az-1-secret"]);
}

/// DESIGN §16: 200 clients' 401s, one run of the helper.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_reports_run_the_helper_once() {
    let helper = tempfile::tempdir().unwrap();
    let d = Daemon::start(&az_source(&az(helper.path()), ""), "");
    let token = d.token(None);
    let version = get(&d.socket, "/v1/token").await.json()["version"].as_u64().unwrap();
    let before = runs(helper.path());
    let reports = (0..200).map(|_| {
        let socket = d.socket.clone();
        async move {
            post(&socket, "/v1/report-401", format!("{{\"version\": {version}}}").as_bytes()).await.status
        }
    });
    let statuses = futures_util::future::join_all(reports).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(runs(helper.path()), before + 1, "one run for every report");
    assert_ne!(d.token(Some(&token)), token);
}

/// `gcloud auth print-access-token`: the token and a line break, nothing else; its lifetime is
/// not in the answer, so `default_lifetime` says it (an hour, Google's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gcloud_shaped_helper_prints_the_token_as_text() {
    let helper = tempfile::tempdir().unwrap();
    let gcloud = helper.path().join("gcloud");
    script(
        &gcloud,
        "#!/bin/sh\n[ \"$1 $2\" = \"auth print-access-token\" ] || exit 2\necho ya29.a0AfB_byC-gcloud-secret-0001\n",
    );
    let d = Daemon::start(
        &format!(
            "[source]\ntype = \"command\"\ncommand = [\"{}\", \"auth\", \"print-access-token\"]\nformat = \"text\"\n\
             default_lifetime = \"55m\"\n",
            gcloud.display()
        ),
        "",
    );
    assert_eq!(d.token(None), "ya29.a0AfB_byC-gcloud-secret-0001");
    assert_eq!(d.through_proxy().await, "Bearer ya29.a0AfB_byC-gcloud-secret-0001");
    d.keeps_secret(&["gcloud-secret"]);
}

/// Whether a process with `marker` in its command line is alive.
fn alive(marker: &str) -> bool {
    std::process::Command::new("pgrep").args(["-f", marker]).output().unwrap().status.success()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_helper_that_hangs_is_killed_with_what_it_started() {
    let helper = tempfile::tempdir().unwrap();
    let hang = helper.path().join("hang");
    // Starts a child in the background, as a helper that spawns a daemon of its own does.
    let marker = format!("sleep 3000.{}", std::process::id());
    script(&hang, &format!("#!/bin/sh\n{marker} &\n{marker}\n"));
    let d = Daemon::start(
        &format!("[source]\ntype = \"command\"\ncommand = [\"{}\"]\ntimeout = \"1s\"\n", hang.display()),
        "",
    );
    let status = d
        .status_until("the helper killed", |s| {
            s["last_error"].as_str().is_some_and(|e| e.contains("did not finish within 1s and was killed"))
        })
        .await;
    assert_eq!(status["state"], "empty", "{status}");
    wait_for("the helper and its child gone", PATIENCE, || (!alive(&marker)).then_some(()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_helper_is_named_by_its_exit_and_first_stderr_line_alone() {
    let helper = tempfile::tempdir().unwrap();
    let failing = helper.path().join("az");
    script(
        &failing,
        "#!/bin/sh\necho \"ERROR: Please run 'az login' to setup account.\" >&2\n\
         echo 'Traceback with refresh_token=SECRET-IN-STDERR' >&2\necho '{\"accessToken\": \"half\"}'\nexit 3\n",
    );
    let d = Daemon::start(&az_source(&failing, ""), "");
    let status = d
        .status_until("the failure named", |s| {
            s["last_error"].as_str().is_some_and(|e| e.contains("exit status 3"))
        })
        .await;
    let error = status["last_error"].as_str().unwrap();
    assert!(error.contains("ERROR: Please run 'az login' to setup account."), "{error}");
    assert!(!error.contains("SECRET-IN-STDERR") && !error.contains("half"), "{error}");
    d.daemon.wait_output("exit status 3", PATIENCE);
    d.keeps_secret(&["SECRET-IN-STDERR"]);
    assert!(!d.file.exists(), "nothing published");

    // Fixed, it is picked up at the next retry.
    az(helper.path());
    assert!(d.token(None).contains("az-1-secret"));
}

const NOBODY: u32 = 65534;

/// `user =`: the helper runs as the user whose login it keeps (their uid, groups and home), and
/// `check` refuses the key where the daemon would not run as root.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_helper_runs_as_the_user_named_and_only_a_root_daemon_may_name_one() {
    if !support::skip::as_root(
        "a_helper_runs_as_the_user_named_and_only_a_root_daemon_may_name_one",
        "run as another uid",
    ) {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let helper = tempfile::tempdir().unwrap();
    std::fs::set_permissions(helper.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let program = az(helper.path());
    let source = az_source(&program, "user = \"nobody\"");
    let d = Daemon::start(&source, "");
    assert!(d.token(None).contains("az-1-secret"));
    let seen = seen(helper.path());
    assert_eq!(seen["uid"], NOBODY);
    let env = &seen["env"];
    assert_eq!((env["USER"].as_str(), env["LOGNAME"].as_str()), (Some("nobody"), Some("nobody")));
    let home = nix::unistd::User::from_name("nobody").unwrap().unwrap().dir;
    assert_eq!(env["HOME"].as_str(), home.to_str());

    // The same config, checked by a daemon that would run as nobody.
    let config = helper.path().join("config.toml");
    std::fs::write(&config, &source).unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = std::process::Command::new("setpriv")
        .args([&format!("--reuid={NOBODY}"), &format!("--regid={NOBODY}"), "--clear-groups"])
        .args([support::binary::BIN, "check", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(said.contains("source.user") && said.contains("only a daemon running as root"), "{said}");
}

/// Found by a new user's trial: a helper that quoted the held token in its error put it in the
/// log, status and `refresh`'s answer. The held token, and what the helper printed on stdout,
/// are masked in every error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_helper_quoting_a_token_in_its_error_shows_it_masked() {
    let helper = tempfile::tempdir().unwrap();
    let program = az(helper.path());
    let d = Daemon::start(&az_source(&program, ""), "");
    let held = d.token(None);
    script(
        &program,
        &format!(
            "#!/bin/sh\necho '{{\"accessToken\": \"printed-then-failed-0123456789\"}}'\n\
             echo \"ERROR: token $(cat {file}) and printed-then-failed-0123456789 were rejected by AAD\" >&2\nexit 1\n",
            file = d.file.display()
        ),
    );
    let refreshed = post(&d.socket, "/v1/refresh", b"").await;
    assert_eq!(refreshed.status, 503);
    for said in [refreshed.body.clone(), get(&d.socket, "/v1/status").await.body] {
        assert!(said.contains("ERROR: token [token] and [stdout] were rejected by AAD"), "{said}");
        assert!(!said.contains(&held) && !said.contains("printed-then-failed"), "{said}");
    }
    d.daemon.wait_output("were rejected by AAD", PATIENCE);
    d.keeps_secret(&[&held, "printed-then-failed"]);
}
