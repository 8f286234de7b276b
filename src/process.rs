//! Process-wide protections for a daemon that holds a secret in memory (DESIGN §10).

use nix::sys::resource::{Resource, setrlimit};

/// No core dumps, and no ptrace or /proc/PID/mem access by other processes of the same uid.
pub fn harden() -> nix::Result<()> {
    nix::sys::prctl::set_dumpable(false)?;
    setrlimit(Resource::RLIMIT_CORE, 0, 0)
}
