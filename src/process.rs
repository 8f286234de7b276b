//! Process-wide settings: protections for a daemon that holds a secret in memory (DESIGN §10),
//! and room for the connections it serves.

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// No core dumps, and no ptrace or /proc/PID/mem access by other processes of the same uid.
pub(crate) fn harden() -> nix::Result<()> {
    nix::sys::prctl::set_dumpable(false)?;
    setrlimit(Resource::RLIMIT_CORE, 0, 0)
}

/// Hands memory the allocator keeps free back to the kernel (glibc's `malloc_trim`).
pub(crate) fn release_free_memory() {
    // SAFETY: malloc_trim only walks the allocator's own free lists, under its own locks; it
    // takes nothing of ours and is safe to call from any thread at any time.
    #[cfg(target_env = "gnu")]
    #[allow(unsafe_code)]
    unsafe {
        nix::libc::malloc_trim(0);
    }
}

/// Raises the soft limit on open files to the hard one. systemd starts services at 1024, which
/// one socket's default `max_connections` alone would use up, and sets the hard limit high for
/// programs that ask (we never use `select()`, the reason for the low default).
pub fn raise_fd_limit() -> nix::Result<()> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard { setrlimit(Resource::RLIMIT_NOFILE, hard, hard) } else { Ok(()) }
}
