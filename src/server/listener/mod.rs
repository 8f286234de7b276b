//! A listening socket: a Unix socket file with its own mode, or a loopback TCP address.

mod socket_file;

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use tokio::net::{TcpListener, TcpSocket, UnixListener};

use crate::config::Mode;
use crate::trust::OwnListener;
use socket_file::SocketFile;

/// Connections the kernel queues before we accept them; also bounds a flood's memory there.
const BACKLOG: u32 = 1024;

#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("another process is serving on {0}; stop it, or give this sink another path")]
    InUse(PathBuf),
    #[error("{0} exists and is not a socket; refusing to replace it")]
    NotASocket(PathBuf),
    #[error("cannot listen on {address}: {source}")]
    Io { address: String, source: io::Error },
}

pub enum Listener {
    /// The file is removed when the listener is dropped.
    Unix { listener: UnixListener, file: SocketFile },
    Tcp {
        listener: TcpListener,
        address: SocketAddr,
        /// The daemon's own clients refuse to connect here (`trust`).
        own: OwnListener,
    },
}

impl Listener {
    /// Binds a Unix socket (see [`socket_file::bind`]); needs a running tokio runtime.
    pub fn unix(path: &Path, mode: Mode) -> Result<Listener, BindError> {
        let (listener, file) = socket_file::bind(path, mode)?;
        let listener = UnixListener::from_std(listener)
            .map_err(|source| BindError::Io { address: path.display().to_string(), source })?;
        Ok(Listener::Unix { listener, file })
    }

    /// Binds a TCP address; needs a running tokio runtime.
    pub fn tcp(address: SocketAddr) -> Result<Listener, BindError> {
        let fail = |source| BindError::Io { address: address.to_string(), source };
        let socket =
            if address.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }.map_err(fail)?;
        // A restart binds again at once, though connections of the last run linger in TIME_WAIT.
        socket.set_reuseaddr(true).map_err(fail)?;
        socket.bind(address).map_err(fail)?;
        let own = OwnListener::new(socket.local_addr().map_err(fail)?);
        let listener = socket.listen(BACKLOG).map_err(fail)?;
        Ok(Listener::Tcp { listener, address, own })
    }

    /// The path or address, as logs and status show it.
    pub fn name(&self) -> String {
        match self {
            Listener::Unix { file, .. } => file.path().display().to_string(),
            Listener::Tcp { address, .. } => address.to_string(),
        }
    }
}
