//! Tests that cannot run on this machine say so instead of passing silently: each skip is
//! printed and recorded in `$MCP_TOKEN_SYNC_SKIPPED` (a file `scripts/test` reads to count them).
//! Under `CI=true` nothing may be skipped: the test fails with the reason instead.

use std::io::Write;

/// `true` when the test can run (`possible`); otherwise records why not and returns `false`.
pub fn unless_impossible(possible: bool, test: &str, reason: &str) -> bool {
    if possible {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test} cannot run here ({reason}), and CI skips nothing"
    );
    eprintln!("SKIPPED {test}: {reason}");
    if let Some(path) = std::env::var_os("MCP_TOKEN_SYNC_SKIPPED") {
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
        writeln!(file, "{test}: {reason}").unwrap();
    }
    false
}

/// `true` when running as root; records the skip otherwise.
pub fn as_root(test: &str, what: &str) -> bool {
    unless_impossible(nix::unistd::geteuid().is_root(), test, &format!("needs root to {what}"))
}
