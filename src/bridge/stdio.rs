//! stdin and stdout, read and written on the runtime's own thread when they are pipes (Python's
//! subprocess) or sockets (Node and Electron hosts: libuv gives a child socketpairs), so a
//! message crosses no thread on its way in or out: tokio's `stdin()`/`stdout()` hand every read
//! and write to the blocking pool and back, two thread wake-ups per call (BENCHMARKS.md, the
//! stdio bridge). A terminal or a file, which cannot be polled, keeps tokio's.
//!
//! The descriptors are duplicated and set non-blocking. A file description shared with another
//! process would share that flag; a host's pipe or socket to its child is the child's alone.

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;

use tokio::io::{AsyncRead, AsyncWrite};

pub(crate) type Input = Box<dyn AsyncRead + Unpin + Send>;
pub(crate) type Output = Box<dyn AsyncWrite + Unpin + Send>;

pub(crate) fn stdin() -> Input {
    match pollable(std::io::stdin().as_fd()) {
        Some(Pollable::Pipe(fd)) => match tokio::net::unix::pipe::Receiver::from_owned_fd(fd) {
            Ok(pipe) => Box::new(pipe),
            Err(_) => Box::new(tokio::io::stdin()),
        },
        Some(Pollable::Socket(socket)) => Box::new(socket),
        None => Box::new(tokio::io::stdin()),
    }
}

pub(crate) fn stdout() -> Output {
    match pollable(std::io::stdout().as_fd()) {
        Some(Pollable::Pipe(fd)) => match tokio::net::unix::pipe::Sender::from_owned_fd(fd) {
            Ok(pipe) => Box::new(pipe),
            Err(_) => Box::new(tokio::io::stdout()),
        },
        Some(Pollable::Socket(socket)) => Box::new(socket),
        None => Box::new(tokio::io::stdout()),
    }
}

enum Pollable {
    Pipe(OwnedFd),
    Socket(tokio::net::UnixStream),
}

/// A duplicate of `fd` the runtime can poll, if it is a pipe or a Unix stream socket.
fn pollable(fd: BorrowedFd<'_>) -> Option<Pollable> {
    let owned = fd.try_clone_to_owned().ok()?;
    let file = File::from(owned);
    let kind = file.metadata().ok()?.file_type();
    let owned = OwnedFd::from(file);
    if kind.is_fifo() {
        return Some(Pollable::Pipe(owned));
    }
    if kind.is_socket() {
        let socket = std::os::unix::net::UnixStream::from(owned);
        socket.set_nonblocking(true).ok()?;
        return tokio::net::UnixStream::from_std(socket).ok().map(Pollable::Socket);
    }
    None
}
