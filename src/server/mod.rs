//! Serving HTTP/1.1 to local clients: what the socket API and the proxy share.
//!
//! [`Server::serve`] is the accept loop; each connection is a task of its own, so a slow, idle,
//! hostile or forbidden peer costs only that task:
//!
//! - the peer is identified by the kernel ([`peer`]) and checked against the [`Acl`]; a refused
//!   peer gets the handler's 403 to every request, and is logged ([`refusals`]: the first at
//!   once, then a count a minute);
//! - at most `max_connections` are served at once; beyond that, the connection that has done
//!   nothing for longest is closed to admit a new one ([`connections`]), so hoarded sockets cost
//!   neither memory nor service;
//! - a request head must arrive within [`HEADER_TIMEOUT`] (also the keep-alive idle limit) and
//!   fit in [`MAX_HEAD`];
//! - a peer that stops reading is dropped after [`stall::WRITE_STALL`].
//!
//! What a request means is the [`Handler`]'s business: the API's routes, or the proxy.

mod connections;
mod listener;
pub(crate) mod peer;
pub(crate) mod refusals;
mod stall;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::backoff::Backoff;
use crate::metrics::Metrics;
use crate::process;
use connections::{Admitted, Connections, Slot, Tracked};
pub(crate) use listener::{BindError, Listener};
pub(crate) use peer::{Acl, Peer};
use refusals::{Refusals, Refused};

pub(crate) const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Request line and headers. hyper's floor is 8 KiB; MCP requests carry a few small headers.
pub(crate) const MAX_HEAD: usize = 16 * 1024;
/// How often a listener that keeps running out of connections says so.
const FULL_WARNING_EVERY: Duration = Duration::from_secs(60);
/// How long a listener must have had no connection before freed memory is handed back.
const SETTLE: Duration = Duration::from_secs(2);
/// Out of file descriptors and the like: retry accepting, but do not spin.
const ACCEPT_BACKOFF: Backoff = Backoff::new(Duration::from_millis(10), Duration::from_millis(1280));

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What a server does with the requests of admitted peers.
pub trait Handler: Send + Sync + 'static {
    type Body: hyper::body::Body<Data = Bytes, Error: Into<BoxError>> + Send + Unpin + 'static;

    /// Answers one request from `peer`.
    fn handle(
        &self,
        request: Request<Incoming>,
        peer: Peer,
    ) -> impl Future<Output = Response<Self::Body>> + Send;

    /// The answer to every request of a peer the ACL refuses.
    fn forbidden(&self) -> Response<Self::Body>;

    /// The listener has had no connection for a while: let go of what only serving needs.
    fn quiet(&self) {}
}

pub struct Server<H> {
    pub listener: Listener,
    pub acl: Acl,
    pub handler: Arc<H>,
    pub max_connections: usize,
    /// Whether an answer of unknown length lets its connection give way when slots run out
    /// (the API's watch streams), or counts as a request in progress (proxied streams).
    pub streams_give_way: bool,
    /// Whether a client may close its sending side after a request and still get the answer
    /// (`nc -N`). Without it, a client that closes is gone, and hyper notices even while an
    /// answer streams, which ends what it was waiting for (a proxied upstream request).
    pub half_close: bool,
    pub metrics: Arc<Metrics>,
}

/// A connection's context, shared by its requests.
struct Context<H> {
    handler: Arc<H>,
    slot: Arc<Slot>,
    streams_give_way: bool,
    half_close: bool,
}

impl<H: Handler> Server<H> {
    /// Accepts and serves until `cancel`; a socket file is removed when this returns.
    pub async fn serve(self, cancel: CancellationToken) {
        let Server { listener, acl, handler, max_connections, streams_give_way, half_close, metrics } = self;
        let name = listener.name();
        let acl = Arc::new(acl);
        let connections = Connections::new(max_connections);
        // However serving ends (stopped, or this future dropped), its connections end with it.
        let _close_all = connections::CloseAll(connections.clone());
        let refusals = Refusals::new(&name);
        let mut accept_errors = 0u32;
        let mut warned_full: Option<Instant> = None;
        loop {
            let accepted = tokio::select! {
                _ = cancel.cancelled() => break,
                accepted = accept(&listener) => accepted,
                _ = connections.settled(SETTLE) => {
                    // glibc keeps what a burst of connections freed in per-thread arenas (1.5 MiB
                    // after a minute of proxying here); once things are quiet, give it back.
                    handler.quiet();
                    process::release_free_memory();
                    continue;
                }
            };
            let stream = match accepted {
                Ok(stream) => {
                    accept_errors = 0;
                    stream
                }
                Err(e) => {
                    accept_errors += 1;
                    warn!("{name}: accept failed: {e}");
                    tokio::time::sleep(ACCEPT_BACKOFF.after(accept_errors)).await;
                    continue;
                }
            };
            // When a slot can only be had by closing someone's connection (now, or once one gives
            // way), the newcomer is identified first, and one the ACL refuses is closed at once: a
            // refused user must not be able to close an allowed user's connections. Otherwise the
            // lookup is the connection's own task's, off the accept loop.
            let newcomer = if connections.is_full() {
                match identify(stream) {
                    (Ok(peer), io) if acl.allows(&peer) => Newcomer::Allowed(peer, io),
                    (refused, _closed) => {
                        refuse(&refusals, &metrics, refused);
                        continue;
                    }
                }
            } else {
                Newcomer::Unknown(stream)
            };
            // Accepted first, then given a slot: the peer waiting is one we know exists, and at
            // most one connection beyond the limit is ever held.
            let uid = match &newcomer {
                Newcomer::Allowed(peer, _) => Some(peer.uid),
                Newcomer::Unknown(_) => None,
            };
            let admitted = match connections.try_admit(uid) {
                Some(admitted) => admitted,
                None => {
                    debug!("{name}: every connection is in a request; a new one waits for a slot");
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        admitted = connections.admit(uid) => admitted,
                    }
                }
            };
            let Admitted { slot, made_room } = admitted;
            if made_room {
                metrics.closed_for_room();
                if warned_full.is_none_or(|at| at.elapsed() >= FULL_WARNING_EVERY) {
                    warned_full = Some(Instant::now());
                    warn!(
                        "{name}: all {max_connections} connections in use; closing the longest idle to \
                         admit new ones (a client leaking connections? see max_connections)"
                    );
                }
            }
            let slot = Arc::new(slot);
            let context =
                Context { handler: handler.clone(), slot: slot.clone(), streams_give_way, half_close };
            let (acl, metrics, refusals) = (acl.clone(), metrics.clone(), refusals.clone());
            let task = tokio::spawn(tracing::Instrument::in_current_span(async move {
                let (peer, io) = match newcomer {
                    Newcomer::Allowed(peer, io) => (Some(peer), io),
                    Newcomer::Unknown(stream) => match identify(stream) {
                        (Ok(peer), io) if acl.allows(&peer) => {
                            context.slot.identified(peer.uid);
                            (Some(peer), io)
                        }
                        (refused, io) => {
                            refuse(&refusals, &metrics, refused);
                            (None, io)
                        }
                    },
                };
                match io {
                    Io::Unix(stream) => connection(stream, peer, context).await,
                    Io::Tcp(stream) => connection(stream, peer, context).await,
                }
            }));
            slot.served_by(task.abort_handle());
        }
        drop(listener);
    }
}

/// A connection on its way to a slot.
enum Newcomer {
    /// Not looked up yet: its own task does that.
    Unknown(Accepted),
    /// Looked up before admission (the listener was full) and allowed.
    Allowed(Peer, Io),
}

/// Who is at the other end of `stream`, from the kernel.
fn identify(stream: Accepted) -> (std::io::Result<Peer>, Io) {
    match stream {
        Accepted::Unix(stream) => (peer::of_unix(&stream), Io::Unix(stream)),
        Accepted::Tcp { stream, local, remote } => (peer::of_tcp(&stream, local, remote), Io::Tcp(stream)),
    }
}

/// Counts and logs a peer the ACL refused (or that could not be identified).
fn refuse(refusals: &Refusals, metrics: &Metrics, refused: std::io::Result<Peer>) {
    refusals.refused(match refused {
        Ok(peer) => Refused::Uid { uid: peer.uid, pid: peer.pid },
        Err(e) => Refused::Unknown(e.to_string()),
    });
    metrics.refused_peer();
}

enum Accepted {
    Unix(tokio::net::UnixStream),
    Tcp { stream: tokio::net::TcpStream, local: std::net::SocketAddr, remote: std::net::SocketAddr },
}

enum Io {
    Unix(tokio::net::UnixStream),
    Tcp(tokio::net::TcpStream),
}

async fn accept(listener: &Listener) -> std::io::Result<Accepted> {
    match listener {
        Listener::Unix { listener, .. } => Ok(Accepted::Unix(listener.accept().await?.0)),
        Listener::Tcp { listener, address, .. } => {
            let (stream, remote) = listener.accept().await?;
            // Answers are small and written whole: no reason to hold them back.
            stream.set_nodelay(true)?;
            Ok(Accepted::Tcp { stream, local: *address, remote })
        }
    }
}

/// Serves one connection until it ends, or its task is aborted (closed for room, or the server
/// stops: `Connections`). `peer` is `None` for a peer the ACL refused.
async fn connection<H: Handler, S>(stream: S, peer: Option<Peer>, context: Context<H>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Context { handler, slot, streams_give_way, half_close } = context;
    let service = hyper::service::service_fn(|request| {
        let (handler, slot) = (handler.clone(), slot.clone());
        slot.answering();
        async move {
            let response = match peer {
                Some(peer) => handler.handle(request, peer).await,
                None => handler.forbidden(),
            };
            Ok::<_, Infallible>(response.map(|body| Tracked::new(body, slot, streams_give_way)))
        }
    });
    let stalled = {
        let slot = slot.clone();
        move |stalled| slot.set_stalled(stalled)
    };
    let io = stall::StallGuard::new(stream, stalled);
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .half_close(half_close)
        .max_buf_size(MAX_HEAD)
        .serve_connection(TokioIo::new(io), service);
    if let Err(e) = connection.await {
        debug!("connection closed: {e}");
    }
}
