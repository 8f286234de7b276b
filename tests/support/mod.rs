//! Fixtures shared by the integration tests: a fake backend, the daemon binary as a child
//! process, and waiting on conditions with deadlines.
#![allow(dead_code)] // each test binary uses a different part of the support code

pub mod api;
pub mod backend;
pub mod binary;

use std::path::Path;
use std::time::{Duration, Instant};

#[allow(unused_imports)] // each test binary uses a different part of the support code
pub use backend::{Backend, Reply};
#[allow(unused_imports)]
pub use binary::DaemonProcess;

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

/// A config for the fake backend with fast, deterministic timing, plus `extra` TOML.
pub fn config_text(backend: &Backend, extra: &str) -> String {
    format!(
        "[source]\nurl = \"{url}\"\nagent = \"{agent}\"\ntimeout = \"1s\"\n\n\
         [refresh]\njitter = 0.0\nmin_interval = \"1ms\"\nbackoff_max = \"200ms\"\n\n\
         [validate]\nmin_remaining = \"1s\"\n\n[daemon]\nstate_dir = \"{state}\"\n\n{extra}\n",
        url = backend.url(),
        agent = backend::AGENT,
        state = backend.state_dir().display(),
    )
}

/// A `[[sink]]` table for a file sink.
pub fn file_sink(path: &Path, format: &str) -> String {
    format!("[[sink]]\ntype = \"file\"\npath = \"{}\"\nformat = \"{format}\"\n", path.display())
}
