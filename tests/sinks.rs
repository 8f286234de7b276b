//! The env file, keyring and exec sinks against the real readers: python-dotenv, bash and
//! docker's rule; `keyctl`; `secret-tool` and Python's keyring on a real Secret Service; a real
//! command. Plus sink isolation and its status.

mod support;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;
use support::api::{self, get, sink_status};
use support::{Backend, Reply, read_new, wait_for};

const PATIENCE: Duration = Duration::from_secs(10);

fn output(command: &mut Command) -> (bool, String, String) {
    let out = command.output().unwrap_or_else(|e| panic!("{command:?}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn env_sink(path: &Path) -> String {
    format!(
        "[[sink]]\ntype = \"env_file\"\npath = \"{}\"\nvariable = \"GOOGLE_MCP_TOKEN\"\nexpires_variable = \"GOOGLE_MCP_TOKEN_EXPIRES_AT\"\nmode = \"0640\"\n",
        path.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_env_file_reads_the_same_in_dotenv_bash_and_docker() {
    let backend = Backend::start().await;
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("token.env");
    let d = api::start(&backend, &env_sink(&env_file));
    let token = backend.token();
    let text = wait_for("the env file", PATIENCE, || read_new(&env_file, None));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(fs::metadata(&env_file).unwrap().permissions().mode() & 0o777, 0o640);

    // docker --env-file: split each line at the first '='.
    let docker: Vec<(&str, &str)> = text.lines().map(|l| l.split_once('=').unwrap()).collect();
    assert_eq!(docker[0], ("GOOGLE_MCP_TOKEN", token.as_str()));
    assert_eq!(docker[1].0, "GOOGLE_MCP_TOKEN_EXPIRES_AT");
    assert!(mcp_token_sync::clock::parse_rfc3339(docker[1].1).is_some(), "{text}");

    let file = env_file.to_str().unwrap();
    let (ok, bash, err) = output(Command::new("bash").args([
        "-c",
        "set -a; . \"$1\"; printf %s \"$GOOGLE_MCP_TOKEN\"",
        "-",
        file,
    ]));
    assert!(ok, "{err}");
    assert_eq!(bash, token, "bash");
    let (ok, dotenv, err) = output(Command::new("python3").args([
        "-c",
        "import sys, dotenv; sys.stdout.write(dotenv.dotenv_values(sys.argv[1])['GOOGLE_MCP_TOKEN'])",
        file,
    ]));
    assert!(ok, "{err}");
    assert_eq!(dotenv, token, "python-dotenv");
    drop(d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_env_files_cannot_carry_is_refused_there_and_published_elsewhere() {
    let backend = Backend::start().await;
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("token.env");
    for (token, class) in [
        ("SECRET-tok-$HOME", "a dollar sign"),
        ("SECRET-tok-`id`", "a backtick"),
        ("SECRET-tok-\"q\"", "a quote"),
        ("SECRET-tok-#frag", "a '#'"),
    ] {
        let mut answer = backend.answer();
        answer["token"] = serde_json::json!(token);
        backend.set_reply(Reply::Json(answer));
        let d = api::start(&backend, &env_sink(&env_file));
        wait_for("the file sink", PATIENCE, || read_new(&d.file, None).filter(|t| t == token));
        // A restart restores the previous (also unsafe) token first: wait for this one's error.
        let entry = sink_status(&d.socket, "token.env", |e| {
            e["ok"] == false && e["error"].as_str().is_some_and(|error| error.contains(class))
        })
        .await;
        let error = entry["error"].as_str().unwrap();
        assert!(!error.contains(token), "{token}: {error}");
        assert!(!env_file.exists(), "{token}: the env file was written");
        assert_eq!(get(&d.socket, "/v1/health").await.status, 503);
        assert!(!d.daemon.output().contains(token), "{token}: the log quotes the token");
    }
}

/// Whether this kernel lets us use keyrings (a seccomp profile may refuse keyctl).
fn keyctl_available() -> bool {
    match Command::new("keyctl").args(["show", "@u"]).output() {
        Ok(out) if out.status.success() => true,
        Ok(out) => support::skip::unless_impossible(
            false,
            "the_kernel_keyring_holds_the_token_for_other_processes_of_the_uid",
            &format!("the kernel refuses keyctl here: {}", String::from_utf8_lossy(&out.stderr).trim()),
        ),
        Err(e) => panic!("keyctl is not installed (apt-get install keyutils): {e}"),
    }
}

fn keyctl(args: &[&str]) -> String {
    let (ok, out, err) = output(Command::new("keyctl").args(args));
    assert!(ok, "keyctl {args:?}: {err}");
    out.trim_end().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kernel_keyring_holds_the_token_for_other_processes_of_the_uid() {
    if !keyctl_available() {
        return;
    }
    let backend = Backend::start().await;
    let account = format!("test-{}", std::process::id());
    let description = format!("mcp-token-sync:{account}");
    let keyring = format!("[[sink]]\ntype = \"keyring\"\nbackend = \"keyutils\"\naccount = \"{account}\"\n");
    let d = api::start(&backend, &keyring);
    let token = backend.token();
    sink_status(&d.socket, &description, |e| !e["last_written_at"].is_null()).await;

    // A separate process finds it in @u and reads it.
    let id = keyctl(&["search", "@u", "user", &description]);
    assert_eq!(keyctl(&["pipe", &id]), token);
    // With a timeout: an unrefreshed token disappears by itself.
    let keys = fs::read_to_string("/proc/keys").unwrap();
    let line = keys
        .lines()
        .find(|l| l.ends_with(&format!("{description}: {}", token.len())))
        .expect("in /proc/keys");
    let timeout = line.split_whitespace().nth(3).unwrap();
    assert_ne!(timeout, "perm", "{line}");

    // Rotations update the same key in place, whichever of the daemon's threads writes it.
    for _ in 0..5 {
        let fresh = backend.rotate();
        d.daemon.signal(Signal::SIGUSR1);
        wait_for("the rotated token in the keyring", PATIENCE, || {
            (keyctl(&["pipe", &id]) == fresh).then_some(())
        });
        assert_eq!(keyctl(&["search", "@u", "user", &description]), id, "same key id after rotation");
    }
    keyctl(&["unlink", &id, "@u"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_secret_service_holds_the_token_for_secret_tool_and_python_keyring() {
    let backend = Backend::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (file, config) = (dir.path().join("token"), dir.path().join("config.toml"));
    let sinks = format!(
        "{}[[sink]]\ntype = \"keyring\"\nbackend = \"secret-service\"\nservice = \"mcp-test\"\naccount = \"calendar\"\n",
        support::file_sink(&file, "raw")
    );
    fs::write(&config, support::config_text(&backend, &sinks)).unwrap();
    // A private session bus and an unlocked gnome-keyring; the daemon runs inside that session,
    // then the readers look the token up through the same bus.
    let script = format!(
        r#"set -eu
export HOME="{home}" XDG_DATA_HOME="{home}/data" XDG_RUNTIME_DIR="{home}/run"
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
printf test-password | gnome-keyring-daemon --unlock --components=secrets --daemonize >/dev/null
"{bin}" run --config "{config}" 2>"{home}/daemon.log" &
daemon=$!
for _ in $(seq 200); do
  found=$(secret-tool lookup service mcp-test account calendar 2>/dev/null || true)
  [ -n "$found" ] && break
  sleep 0.05
done
echo "secret-tool=$found"
python3 -c 'import keyring; print("python=" + str(keyring.get_password("mcp-test", "calendar")))'
kill $daemon
"#,
        home = dir.path().display(),
        bin = support::binary::BIN,
        config = config.display(),
    );
    let (ok, out, err) = tokio::task::block_in_place(|| {
        output(Command::new("timeout").args(["60", "dbus-run-session", "--", "bash", "-c", &script]))
    });
    assert!(ok, "{out}\n{err}\n{}", fs::read_to_string(dir.path().join("daemon.log")).unwrap_or_default());
    let token = backend.token();
    assert!(out.contains(&format!("secret-tool={token}")), "{out}\n{err}");
    assert!(out.contains(&format!("python={token}")), "{out}\n{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_secret_service_is_a_sink_error_not_a_crash() {
    let backend = Backend::start().await;
    let keyring = "[[sink]]\ntype = \"keyring\"\nbackend = \"secret-service\"\naccount = \"x\"\n";
    // No session bus at all.
    let d = api::start_tweaked(&backend, keyring, |text| text);
    let entry = sink_status(&d.socket, "secret-service", |e| e["ok"] == false).await;
    assert!(entry["error"].as_str().unwrap().contains("Secret Service"), "{entry}");
    assert_eq!(
        get(&d.socket, "/v1/token?format=raw").await.body,
        backend.token(),
        "the other sinks still serve"
    );
}

fn exec_sink(command: &[&str], timeout: &str) -> String {
    let command: Vec<String> = command.iter().map(|a| format!("{a:?}")).collect();
    format!("[[sink]]\ntype = \"exec\"\ncommand = [{}]\ntimeout = \"{timeout}\"\n", command.join(", "))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_gets_the_token_on_stdin_only() {
    let backend = Backend::start().await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    fs::create_dir(&out).unwrap();
    let hook = dir.path().join("hook.sh");
    fs::write(
        &hook,
        "cat > \"$1/stdin.json\"; env > \"$1/env.txt\"; tr '\\0' ' ' < /proc/$$/cmdline > \"$1/argv.txt\"\n",
    )
    .unwrap();
    let d =
        api::start(&backend, &exec_sink(&["/bin/sh", hook.to_str().unwrap(), out.to_str().unwrap()], "10s"));
    let token = backend.token();
    let stdin: serde_json::Value = wait_for("the hook's stdin", PATIENCE, || {
        read_new(&out.join("argv.txt"), None)?;
        serde_json::from_str(&fs::read_to_string(out.join("stdin.json")).ok()?).ok()
    });
    assert_eq!((stdin["token"].as_str(), stdin["version"].as_u64()), (Some(token.as_str()), Some(1)));

    let env = fs::read_to_string(out.join("env.txt")).unwrap();
    let names: Vec<&str> = env.lines().filter_map(|l| l.split_once('=')).map(|(k, _)| k).collect();
    for name in &names {
        assert!(
            [
                "PATH",
                "HOME",
                "LANG",
                "MCP_TOKEN_SYNC_VERSION",
                "MCP_TOKEN_SYNC_EXPIRES_AT",
                "PWD",
                "SHLVL",
                "_"
            ]
            .contains(name),
            "unexpected variable {name} in the hook's environment:\n{env}"
        );
    }
    assert!(env.contains("MCP_TOKEN_SYNC_VERSION=1\n"), "{env}");
    assert!(!env.contains(&token), "the token reached the environment");
    assert!(!fs::read_to_string(out.join("argv.txt")).unwrap().contains(&token), "the token reached argv");
    sink_status(&d.socket, "/bin/sh", |e| e["ok"] == true && !e["last_written_at"].is_null()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_command_is_killed_at_its_timeout_with_what_it_started() {
    let backend = Backend::start().await;
    // `sh` forks `sleep` (the trailing `:` keeps it from exec'ing), so killing only the direct
    // child would leave the sleeper behind.
    let marker = "30.2718281";
    let d = api::start(&backend, &exec_sink(&["/bin/sh", "-c", &format!("sleep {marker}; :")], "500ms"));
    let entry = sink_status(&d.socket, "/bin/sh", |e| e["ok"] == false).await;
    assert!(entry["error"].as_str().unwrap().contains("did not finish within 500ms"), "{entry}");
    wait_for("the sleeper to be killed", PATIENCE, || {
        let (_, found, _) = output(Command::new("pgrep").args(["-f", &format!("sleep {marker}")]));
        found.trim().is_empty().then_some(())
    });
    assert_eq!(get(&d.socket, "/v1/health").await.status, 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_command_shows_its_status_and_stderr_in_status() {
    let backend = Backend::start().await;
    let d = api::start(
        &backend,
        &exec_sink(&["/bin/sh", "-c", "cat >/dev/null; echo 'restart refused' >&2; exit 3"], "10s"),
    );
    let entry = sink_status(&d.socket, "/bin/sh", |e| e["ok"] == false).await;
    let error = entry["error"].as_str().unwrap();
    assert!(error.contains("exit status: 3") && error.contains("restart refused"), "{error}");
    let health = get(&d.socket, "/v1/health").await;
    assert_eq!(health.status, 503);
    assert!(health.body.contains("exit status: 3"), "{}", health.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_at_an_unwritable_path_fails_alone() {
    let backend = Backend::start().await;
    let dir = tempfile::tempdir().unwrap();
    let not_a_dir = dir.path().join("plain-file");
    fs::write(&not_a_dir, "").unwrap();
    let blocked = not_a_dir.join("token");
    let env_file = dir.path().join("token.env");
    let sinks = format!("{}{}", support::file_sink(&blocked, "json"), env_sink(&env_file));
    let d = api::start(&backend, &sinks);
    let token = backend.token();
    wait_for("the env file", PATIENCE, || read_new(&env_file, None));
    wait_for("the raw file", PATIENCE, || read_new(&d.file, None).filter(|t| *t == token));
    assert_eq!(get(&d.socket, "/v1/token?format=raw").await.body, token);

    let entry = sink_status(&d.socket, "plain-file", |e| e["ok"] == false).await;
    assert_eq!(entry["type"], "file");
    assert!(entry["error"].as_str().unwrap().contains("plain-file"), "{entry}");
    for healthy in ["token.env", "api.sock"] {
        assert_eq!(sink_status(&d.socket, healthy, |_| true).await["ok"], true, "{healthy}");
    }
    let health = get(&d.socket, "/v1/health").await;
    assert_eq!(health.status, 503);
    assert!(health.body.contains("plain-file"), "{}", health.body);
}
