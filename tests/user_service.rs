//! The user service (systemd/user/mcp-token-sync.service): `systemd-analyze --user verify`
//! passes, and a real user manager (`systemd --user`, run as an unprivileged user) starts it
//! from `~/.config/mcp-token-sync/config.toml` with its state in `~/.local/state` and its
//! socket and sinks in `$XDG_RUNTIME_DIR/mcp-token-sync`; and `check`, run as that user, names
//! the paths it cannot write.
//!
//! In its own test binary: on a machine whose PID 1 is not systemd, a user manager needs what
//! systemd and logind would have given it, which the test makes for its own run and removes:
//! `/run/systemd/system` (systemd's "booted with systemd" mark) and a cgroup delegated to the
//! user (as `user@UID.service` is).

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use support::binary::{BIN, Killed};
use support::{Backend, wait_for};

const USER: u32 = 65534;
const MANAGER: &str = "/usr/lib/systemd/systemd";
const PATIENCE: Duration = Duration::from_secs(30);

/// `command` as `USER`, with a login's environment: `HOME` and `XDG_RUNTIME_DIR` alone.
fn as_user(home: &Path, runtime: &Path, command: &[&str]) -> Command {
    let mut c = Command::new("setpriv");
    c.args([&format!("--reuid={USER}"), &format!("--regid={USER}"), "--clear-groups", "env", "-i"])
        .arg(format!("HOME={}", home.display()))
        .arg(format!("XDG_RUNTIME_DIR={}", runtime.display()))
        .arg("PATH=/usr/bin:/bin")
        .args(command)
        .stdin(Stdio::null());
    c
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// The unit as installed, its command found where the test's binary is.
fn installed_unit() -> String {
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/user/mcp-token-sync.service");
    support::replaced(
        &std::fs::read_to_string(unit).unwrap(),
        "ExecStart=mcp-token-sync ",
        &format!("ExecStart={BIN} "),
    )
}

fn give_to_user(path: &Path) {
    let status = Command::new("chown").args(["-R", &USER.to_string()]).arg(path).status().unwrap();
    assert!(status.success());
}

#[test]
fn the_user_unit_passes_systemd_analyze_verify() {
    let runtime = tempfile::tempdir().unwrap();
    let copy = runtime.path().join("mcp-token-sync.service");
    std::fs::write(&copy, installed_unit()).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["--user", "verify"])
        .arg(&copy)
        .env("XDG_RUNTIME_DIR", runtime.path())
        .output()
        .expect("systemd-analyze is installed (apt-get install systemd)");
    assert!(out.status.success() && text(&out).trim().is_empty(), "{}", text(&out));
}

/// A home for `USER` with the unit and a config for `backend` in it, and its runtime directory.
struct Home {
    home: tempfile::TempDir,
    runtime: tempfile::TempDir,
}

impl Home {
    fn new(backend: &Backend) -> Home {
        let (home, runtime) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let units = home.path().join(".config/systemd/user");
        let configs = home.path().join(".config/mcp-token-sync");
        std::fs::create_dir_all(&units).unwrap();
        std::fs::create_dir_all(&configs).unwrap();
        std::fs::write(units.join("mcp-token-sync.service"), installed_unit()).unwrap();
        let config = format!(
            "[source]\nurl = \"{}\"\nagent = \"{}\"\n\n[daemon]\nstate_dir = \"${{STATE_DIRECTORY}}\"\n\n\
             [[sink]]\ntype = \"socket\"\npath = \"${{RUNTIME_DIRECTORY}}/api.sock\"\n\n\
             [[sink]]\ntype = \"file\"\npath = \"${{RUNTIME_DIRECTORY}}/token\"\n",
            backend.url(),
            support::backend::AGENT
        );
        std::fs::write(configs.join("config.toml"), config).unwrap();
        give_to_user(home.path());
        give_to_user(runtime.path());
        std::fs::set_permissions(runtime.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        Home { home, runtime }
    }

    fn run(&self, command: &[&str]) -> Output {
        as_user(self.home.path(), self.runtime.path(), command).output().unwrap()
    }

    fn ours(&self) -> PathBuf {
        self.runtime.path().join("mcp-token-sync")
    }
}

/// systemd's mark that it is the init system, made for this test if missing; removed on drop.
struct Booted(bool);

impl Booted {
    fn mark() -> Booted {
        let mark = Path::new("/run/systemd/system");
        let made = !mark.exists();
        if made {
            std::fs::create_dir_all(mark).unwrap();
        }
        Booted(made)
    }
}

impl Drop for Booted {
    fn drop(&mut self) {
        if self.0 {
            let _ = std::fs::remove_dir("/run/systemd/system");
        }
    }
}

/// A cgroup of every mounted hierarchy that systemd uses, owned by `USER`, as logind delegates
/// `user@UID.service`; removed (with what the manager made in it) on drop.
struct Delegated(Vec<PathBuf>);

impl Delegated {
    fn new() -> Delegated {
        let name = format!("mcp-token-sync-test-{}.slice", std::process::id());
        // Hybrid (v1 with name=systemd, v2 at unified) or v2 alone at /sys/fs/cgroup.
        let roots = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup/systemd", "/sys/fs/cgroup"];
        let made = roots
            .iter()
            .map(Path::new)
            .filter(|root| root.join("cgroup.procs").exists())
            .map(|root| {
                let dir = root.join(&name);
                std::fs::create_dir(&dir).unwrap();
                give_to_user(&dir);
                dir
            })
            .collect();
        Delegated(made)
    }

    /// `command` started inside these cgroups.
    fn run(&self, command: Command) -> Command {
        let procs: Vec<String> =
            self.0.iter().map(|d| d.join("cgroup.procs").display().to_string()).collect();
        let mut inside = Command::new("sh");
        inside
            .args([
                "-c",
                "for f in $1; do echo $$ > \"$f\"; done; shift; exec \"$@\"",
                "sh",
                &procs.join(" "),
            ])
            .arg(command.get_program())
            .args(command.get_args())
            .stdin(Stdio::null());
        inside
    }
}

impl Delegated {
    /// The processes in these cgroups, the manager's services included.
    fn processes(&self) -> Vec<i32> {
        let procs = |d: PathBuf| std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
        let all = self.0.iter().flat_map(|dir| walk(dir)).map(procs).collect::<Vec<_>>().join("\n");
        all.lines().filter_map(|pid| pid.trim().parse().ok()).collect()
    }
}

impl Drop for Delegated {
    fn drop(&mut self) {
        // Whatever is left (a test that failed half way): a killed manager leaves its services.
        for _ in 0..100 {
            let left = self.processes();
            if left.is_empty() {
                break;
            }
            for pid in left {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        for dir in &self.0 {
            // Deepest first: a cgroup goes only once it has no children and no processes.
            let mut all: Vec<PathBuf> = walk(dir);
            all.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
            for d in all {
                let _ = std::fs::remove_dir(d);
            }
        }
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut found = vec![dir.to_owned()];
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            found.extend(walk(&entry.path()));
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_manager_runs_the_user_service_with_xdg_paths() {
    let possible = nix::unistd::geteuid().is_root() && Path::new(MANAGER).exists();
    if !support::skip::unless_impossible(
        possible,
        "a_user_manager_runs_the_user_service_with_xdg_paths",
        "needs root (to act as another user) and systemd's user manager",
    ) {
        return;
    }
    let backend = Backend::start().await;
    let home = Home::new(&backend);
    let (h, r) = (home.home.path().to_owned(), home.runtime.path().to_owned());
    tokio::task::spawn_blocking(move || {
        let _booted = Booted::mark();
        let cgroups = Delegated::new();
        let manager = cgroups.run(as_user(&h, &r, &[MANAGER, "--user"])).stdout(Stdio::null()).spawn();
        let manager = Killed(manager.unwrap());
        wait_for("the user manager", PATIENCE, || r.join("systemd/private").exists().then_some(()));
        let start = home.run(&["systemctl", "--user", "start", "mcp-token-sync.service"]);
        let journal = || text(&home.run(&["systemctl", "--user", "status", "mcp-token-sync.service"]));
        assert!(start.status.success(), "{}\n{}", text(&start), journal());

        // READY=1 came once the socket listened; the token follows the first fetch.
        let token = home.ours().join("token");
        let found = wait_for("the file sink", PATIENCE, || std::fs::read_to_string(&token).ok());
        assert_eq!(found, backend.token());
        let state = h.join(".local/state/mcp-token-sync");
        wait_for("the state file in ~/.local/state", PATIENCE, || {
            state.join("state.json").exists().then_some(())
        });
        for (dir, mode) in [(&state, 0o700), (&home.ours(), 0o700)] {
            assert_eq!(
                std::fs::metadata(dir).unwrap().permissions().mode() & 0o777,
                mode,
                "{}",
                dir.display()
            );
        }
        let socket = home.ours().join("api.sock");
        let status = home.run(&[BIN, "status", "--socket", socket.to_str().unwrap()]);
        assert!(status.status.success() && text(&status).contains("state      fresh"), "{}", text(&status));

        let reload = home.run(&["systemctl", "--user", "reload", "mcp-token-sync.service"]);
        assert!(reload.status.success(), "{}", text(&reload));
        let stop = home.run(&["systemctl", "--user", "stop", "mcp-token-sync.service"]);
        assert!(stop.status.success(), "{}", text(&stop));
        assert!(!socket.exists(), "the socket is removed on stop");
        drop(manager);
        // The manager is gone; its cgroups can go once the kernel has seen it leave.
        wait_for("the manager to leave its cgroups", PATIENCE, || {
            let empty = |d: &PathBuf| {
                std::fs::read_to_string(d.join("cgroup.procs")).is_ok_and(|p| p.trim().is_empty())
            };
            cgroups.0.iter().all(|d| walk(d).iter().all(empty)).then_some(())
        });
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_as_the_user_names_the_paths_it_cannot_write() {
    if !support::skip::as_root("check_as_the_user_names_the_paths_it_cannot_write", "act as another user") {
        return;
    }
    let backend = Backend::start().await;
    let home = Home::new(&backend);
    let config = home.home.path().join(".config/mcp-token-sync/config.toml");
    let check = || home.run(&[BIN, "check", "--config", config.to_str().unwrap()]);
    let out = tokio::task::block_in_place(check);
    assert!(out.status.success(), "the user's own paths: {}", text(&out));
    assert!(text(&out).contains(&home.ours().join("api.sock").display().to_string()), "{}", text(&out));

    // The system's paths, as a desktop user who copied the packaged config would have them.
    let system = std::fs::read_to_string(&config)
        .unwrap()
        .replace("${STATE_DIRECTORY}", "/var/lib/mcp-token-sync-test-nobody/state")
        .replace("${RUNTIME_DIRECTORY}", "/run");
    std::fs::write(&config, system).unwrap();
    let out = tokio::task::block_in_place(check);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let said = text(&out);
    for expected in [
        "line 6, key `daemon.state_dir`: uid 65534 (running check) cannot write there",
        "/var/lib is not writable (owned by uid 0",
        "key `sink[0].path`",
        "key `sink[1].path`",
    ] {
        assert!(said.contains(expected), "{expected:?} in:\n{said}");
    }
}
