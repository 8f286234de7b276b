//! The client API: HTTP/1.1 over Unix sockets (DESIGN §7).
//!
//! Each `socket` sink is one listening socket with its own mode and peer ACL; all of them serve
//! the same routes from the same [`Shared`] view of the daemon. Connections are independent
//! tasks, so a slow, idle, hostile or forbidden peer costs only its own task:
//!
//! - at most `max_connections` are served at once per socket; beyond that, the connection that
//!   has done nothing for longest is closed to admit a new one (see `connections`), so hoarded
//!   sockets cost neither memory nor service;
//! - a request head must arrive within `HEADER_TIMEOUT` (also the keep-alive idle limit) and
//!   fit in `MAX_HEAD`; a body within 4 KiB and `routes::BODY_TIMEOUT`;
//! - a peer that stops reading is dropped after `stall::WRITE_STALL`.

mod connections;
mod metrics;
mod routes;
mod socket;
mod stall;
mod status;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::UnixListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use connections::{Admitted, Connections, Tracked};
pub use socket::{BindError, SocketFile, bind};

use crate::config::{Config, SocketSinkConfig};
use crate::engine::EngineHandle;
use crate::sinks::SinkReport;

const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Request line and headers. Our requests are a few hundred bytes; hyper's floor is 8 KiB.
const MAX_HEAD: usize = 16 * 1024;
/// How often a socket that keeps running out of connections says so.
const FULL_WARNING_EVERY: Duration = Duration::from_secs(60);

/// What every connection's handlers read. Sinks and config change on reload.
pub struct Shared {
    pub engine: EngineHandle,
    /// Every sink's report, sockets included, for status, health and metrics.
    pub sinks: watch::Receiver<Vec<watch::Receiver<SinkReport>>>,
    pub config: watch::Receiver<Arc<Config>>,
    pub counters: metrics::Counters,
}

impl Shared {
    pub fn new(
        engine: EngineHandle,
        sinks: watch::Receiver<Vec<watch::Receiver<SinkReport>>>,
        config: watch::Receiver<Arc<Config>>,
    ) -> Shared {
        Shared { engine, sinks, config, counters: metrics::Counters::default() }
    }
}

/// A socket's line in status: healthy while it listens, which it does for its whole life.
pub fn listening_report(path: &std::path::Path) -> watch::Receiver<SinkReport> {
    watch::channel(SinkReport::new("socket", path.display().to_string())).1
}

/// Who may talk to one socket: root, the daemon's own uid, and the configured uids and gids.
struct Acl {
    own_uid: u32,
    uids: Vec<u32>,
    gids: Vec<u32>,
}

impl Acl {
    fn allows(&self, uid: u32, gid: u32) -> bool {
        uid == 0 || uid == self.own_uid || self.uids.contains(&uid) || self.gids.contains(&gid)
    }
}

/// A bound socket, ready to serve.
pub struct Listener {
    listener: UnixListener,
    file: SocketFile,
    config: SocketSinkConfig,
}

impl Listener {
    /// Binds the socket (see [`bind`]); needs a running tokio runtime.
    pub fn bind(config: SocketSinkConfig) -> Result<Listener, BindError> {
        let (listener, file) = bind(&config.path, config.mode)?;
        let listener = UnixListener::from_std(listener)
            .map_err(|source| BindError::Io { path: config.path.clone(), source })?;
        Ok(Listener { listener, file, config })
    }

    pub fn path(&self) -> &std::path::Path {
        &self.config.path
    }
}

/// Serves one socket until `cancel`; the socket file is removed when this returns.
pub async fn serve(listener: Listener, shared: Arc<Shared>, cancel: CancellationToken) {
    let Listener { listener, file: socket, config } = listener;
    let acl = Arc::new(Acl {
        own_uid: nix::unistd::geteuid().as_raw(),
        uids: config.allow_uids.clone(),
        gids: config.allow_gids.clone(),
    });
    let connections = Connections::new(config.max_connections);
    let mut accept_errors = 0u32;
    let mut warned_full: Option<Instant> = None;
    loop {
        let stream = tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    accept_errors = 0;
                    stream
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    accept_errors += 1;
                    warn!("socket {}: accept failed: {e}", socket.path().display());
                    tokio::time::sleep(Duration::from_millis(10 << accept_errors.min(7))).await;
                    continue;
                }
            },
        };
        // Accepted first, then given a slot: the peer waiting is one we know exists, and at most
        // one connection beyond the limit is ever held.
        let Admitted { slot, made_room } = tokio::select! {
            _ = cancel.cancelled() => break,
            admitted = connections.admit() => admitted,
        };
        if made_room {
            shared.counters.made_room();
            if warned_full.is_none_or(|at| at.elapsed() >= FULL_WARNING_EVERY) {
                warned_full = Some(Instant::now());
                warn!(
                    "socket {}: all {} connections in use; closing the longest idle to admit new ones \
                     (a client leaking connections? see max_connections)",
                    socket.path().display(),
                    config.max_connections
                );
            }
        }
        let (shared, acl, cancel) = (shared.clone(), acl.clone(), cancel.clone());
        let path = socket.path().to_owned();
        tokio::spawn(async move {
            let mut stream = stream;
            let slot = Arc::new(slot);
            let peer = stream.peer_cred().ok();
            let allowed = peer.is_some_and(|p| acl.allows(p.uid(), p.gid()));
            if !allowed {
                let (uid, pid) = peer.map(|p| (p.uid(), p.pid())).unwrap_or((u32::MAX, None));
                warn!(
                    "socket {}: refused peer uid {uid} pid {}: not root, the daemon's uid, or in allow_uids/allow_gids",
                    path.display(),
                    pid.map_or("unknown".into(), |p| p.to_string())
                );
                shared.counters.refused_peer();
            }
            let service = hyper::service::service_fn(|request| {
                let (shared, slot) = (shared.clone(), slot.clone());
                slot.answering();
                async move {
                    let response =
                        if allowed { routes::handle(&shared, request).await } else { routes::forbidden() };
                    Ok::<_, Infallible>(response.map(|body| Tracked::new(body, slot)))
                }
            });
            let (reader, writer) = stream.split();
            let stalled = {
                let slot = slot.clone();
                move |stalled| slot.set_stalled(stalled)
            };
            let io = tokio::io::join(reader, stall::StallGuard::new(writer, stalled));
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                // A client that closes its sending side after the request (`nc -N`) still gets
                // the answer; without this, hyper may drop it on seeing the end of input first.
                .half_close(true)
                .max_buf_size(MAX_HEAD)
                .serve_connection(TokioIo::new(io), service);
            tokio::select! {
                result = connection => if let Err(e) = result { debug!("connection closed: {e}") },
                _ = slot.evicted() => debug!("connection closed to make room"),
                _ = cancel.cancelled() => {}
            }
        });
    }
    drop(socket);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_acl_admits_root_self_and_the_configured_ids_only() {
        let acl = Acl { own_uid: 990, uids: vec![1000], gids: vec![997] };
        assert!(acl.allows(0, 0));
        assert!(acl.allows(990, 990));
        assert!(acl.allows(1000, 1000));
        assert!(acl.allows(1234, 997));
        assert!(!acl.allows(65534, 65534));
    }
}
