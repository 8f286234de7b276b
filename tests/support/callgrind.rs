//! Instructions counted by callgrind (valgrind), for the benchmarks: a cost per request that
//! does not move with whatever else the machine runs, as requests per second do on a shared
//! two-core host. It counts the process's own instructions, not the kernel's.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::load::{To, oha_requests};

/// Requests sent before counting starts: connections open, buffers grown, code paged in.
const WARM_UP: usize = 2_000;

pub struct Callgrind {
    dir: tempfile::TempDir,
}

impl Callgrind {
    /// `None` (and a line saying so) without valgrind: `scripts/bench` installs it.
    pub fn new() -> Option<Callgrind> {
        let found = Command::new("valgrind").arg("--version").output().is_ok_and(|out| out.status.success());
        if !found {
            println!("(valgrind not found: apt-get install valgrind; scripts/bench does)\n");
            return None;
        }
        Some(Callgrind { dir: tempfile::tempdir().unwrap() })
    }

    /// The command to run a program `name` under, its counts kept apart from the others'.
    pub fn wrapper(&self, name: &str) -> Vec<String> {
        vec![
            "valgrind".into(),
            "-q".into(),
            "--tool=callgrind".into(),
            format!("--callgrind-out-file={}", self.out(name).display()),
        ]
    }

    /// Instructions the process `pid` (started with `wrapper(name)`) runs per request, over
    /// `requests` requests from 16 keep-alive clients to `url`, after a warm-up.
    pub fn per_request(&self, name: &str, pid: u32, url: &str, requests: usize) -> f64 {
        oha_requests(To::Url(url), 16, WARM_UP);
        control(pid, "-z");
        let measured = oha_requests(To::Url(url), 16, requests);
        assert_eq!(measured.errors, 0, "{name}: errors under callgrind");
        control(pid, "-d");
        // The dump callgrind_control asked for is the first numbered file, complete once its
        // totals line is written.
        let dump = PathBuf::from(format!("{}.1", self.out(name).display()));
        let total = super::wait_for("callgrind's dump", Duration::from_secs(30), || total(&dump));
        total as f64 / requests as f64
    }

    fn out(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.out"))
    }
}

fn control(pid: u32, option: &str) {
    let status = Command::new("callgrind_control")
        .args([option, &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("callgrind_control (valgrind's)");
    assert!(status.success(), "callgrind_control {option} {pid} failed");
}

/// The `totals:` line of a callgrind dump (instructions executed), once it is there.
fn total(dump: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(dump).ok()?;
    text.lines().find_map(|line| line.strip_prefix("totals: ")).and_then(|n| n.trim().parse().ok())
}
