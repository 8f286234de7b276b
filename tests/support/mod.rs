//! Fixtures shared by the integration tests: a fake backend, the daemon binary as a child
//! process, and waiting on conditions with deadlines.
#![allow(dead_code)] // each test binary uses a different part of the support code

pub mod api;
pub mod backend;
pub mod binary;
pub mod bridge;
pub mod callgrind;
pub mod fake_http;
pub mod fake_mcp;
pub mod forge;
pub mod host;
pub mod http;
pub mod kinds;
pub mod load;
pub mod mcp;
pub mod nginx;
pub mod oauth;
pub mod procfs;
pub mod resource;
pub mod skip;
pub mod squatter;
pub mod upstream;

use std::path::Path;
use std::time::{Duration, Instant};

#[allow(unused_imports)] // each test binary uses a different part of the support code
pub use backend::{Backend, Reply};
#[allow(unused_imports)]
pub use binary::DaemonProcess;

/// A port on `host` (an IP address) that nothing uses now, for a process the test starts to
/// listen on it. Taken below the kernel's ephemeral range (32768–60999 on Linux): a port that
/// `bind(0)` hands out is one the next outgoing connection of any test may take as its own
/// before the process binds it ("Address already in use"). No two calls in one test binary get
/// the same port (cargo runs the binaries one after another).
pub fn free_port(host: &str) -> std::net::SocketAddr {
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 32_768 - FIRST;
    static NEXT: std::sync::OnceLock<std::sync::atomic::AtomicU32> = std::sync::OnceLock::new();
    let next = NEXT.get_or_init(|| std::sync::atomic::AtomicU32::new(rand::random_range(0..SPAN)));
    for _ in 0..SPAN {
        let port = FIRST + next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % SPAN;
        if let Ok(listener) = std::net::TcpListener::bind((host, port as u16)) {
            return listener.local_addr().unwrap();
        }
    }
    panic!("no free port on {host} from {FIRST} to 32767")
}

/// Polls `check` until it returns `Some`, failing the test after `limit`.
pub fn wait_for<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Async flavour of [`wait_for`], for tests running on tokio.
pub async fn wait_for_async<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The file's content once it exists and differs from `not`.
pub fn read_new(path: &Path, not: Option<&str>) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    (Some(text.as_str()) != not).then_some(text)
}

/// A config for the fake backend with fast, deterministic timing, plus `extra` TOML (sinks).
pub fn config_text(backend: &Backend, extra: &str) -> String {
    TestConfig::new(backend).sinks(extra).text()
}

/// A test config built key by key: a key set here replaces the default of the same name, so no
/// change is lost to a string replacement that no longer matches, and a misspelled key is an
/// unknown key the daemon refuses.
#[derive(Clone)]
pub struct TestConfig {
    sections: Vec<(&'static str, Vec<(String, String)>)>,
    sinks: String,
}

impl TestConfig {
    pub fn new(backend: &Backend) -> TestConfig {
        let quoted = |s: &str| format!("{s:?}");
        TestConfig {
            sections: vec![
                (
                    "source",
                    vec![
                        ("url".into(), quoted(&backend.url())),
                        ("agent".into(), quoted(backend::AGENT)),
                        ("timeout".into(), quoted("1s")),
                    ],
                ),
                (
                    "refresh",
                    vec![
                        ("jitter".into(), "0.0".into()),
                        ("min_interval".into(), quoted("1ms")),
                        ("backoff_max".into(), quoted("200ms")),
                    ],
                ),
                ("validate", vec![("min_remaining".into(), quoted("1s"))]),
                ("daemon", vec![("state_dir".into(), quoted(&backend.state_dir().display().to_string()))]),
            ],
            sinks: String::new(),
        }
    }

    /// Sets `section.key` to `value`, written as TOML (`"\"5s\""`, `"false"`, `"[1, 2]"`).
    pub fn set(mut self, section: &str, key: &str, value: &str) -> TestConfig {
        let (_, keys) = self
            .sections
            .iter_mut()
            .find(|(name, _)| *name == section)
            .unwrap_or_else(|| panic!("no section [{section}] in test configs"));
        match keys.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = value.to_owned(),
            None => keys.push((key.to_owned(), value.to_owned())),
        }
        self
    }

    /// Appends `[[sink]]` tables (or any TOML that goes last).
    pub fn sinks(mut self, toml: &str) -> TestConfig {
        self.sinks.push_str(toml);
        self
    }

    pub fn text(&self) -> String {
        let mut text = String::new();
        for (section, keys) in &self.sections {
            text += &format!("[{section}]\n");
            for (key, value) in keys {
                text += &format!("{key} = {value}\n");
            }
            text.push('\n');
        }
        text + &self.sinks + "\n"
    }
}

/// `text` with `from` replaced by `to`; fails the test if `from` is not there.
pub fn replaced(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "{from:?} is not in:\n{text}");
    text.replace(from, to)
}

/// A `[[sink]]` table for a file sink.
pub fn file_sink(path: &Path, format: &str) -> String {
    format!("[[sink]]\ntype = \"file\"\npath = \"{}\"\nformat = \"{format}\"\n", path.display())
}
