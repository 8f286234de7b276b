//! Upstream connections driven by the client connection that uses them (issue "The proxy at
//! nginx's speed"). hyper-util's pooled client runs each upstream connection as a task of its
//! own, so every request crossed threads twice (client task → connection task → back), and on
//! two cores that wake-up cost what nginx's single thread never pays. Here a request takes an
//! idle connection from the [`Pool`] (or opens one), drives it itself while it waits for the
//! answer, and its [`UpstreamBody`] keeps driving it while the answer streams; when the answer
//! has ended, the connection goes back to the pool, unpolled until the next request takes it.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, Connection, SendRequest};
use hyper::{Request, Response};

use super::upstream_io::{Shared, UpstreamIo};
use crate::server::BoxError;

/// A request's body on its way upstream: the client's, streaming, or a replay's copy.
pub(super) type RequestBody = BoxBody<Bytes, BoxError>;

/// Idle connections are closed after this: below the keep-alive timeout of the servers MCP
/// upstreams commonly run on (Node and uvicorn 5 s, Apache 5 s, nginx 75 s), so the upstream
/// seldom closes one just as a request goes out on it. Those that close sooner (gunicorn 2 s,
/// custom 1 s) are caught by the check before each reuse and the resend of `upstream_io`.
pub(super) const IDLE_TIMEOUT: Duration = Duration::from_secs(4);
/// A connection idle this long is checked for the upstream's FIN before a request is written.
const CHECK_AFTER_IDLE: Duration = Duration::from_millis(1);
/// Idle connections kept per proxy: more concurrent clients than this reconnect.
const MAX_IDLE: usize = 256;

type Driver = Connection<UpstreamIo, RequestBody>;

/// One upstream HTTP/1.1 connection: the handle to send on, the state machine that moves its
/// bytes (polled by whoever holds it), and what the IO tells about it.
pub(super) struct Conn {
    sender: SendRequest<RequestBody>,
    driver: Pin<Box<Driver>>,
    shared: Arc<Shared>,
    /// Taken from the pool rather than opened for this request.
    pub reused: bool,
}

/// Why an exchange gave no answer.
pub(super) enum ExchangeError {
    /// The connection was closed before the request was handed to it: here it is back.
    NotSent(Box<Request<RequestBody>>, hyper::Error),
    /// It was written (or begun); `reset` when the upstream reset the connection, which it does
    /// when it closes with bytes of ours unread (RFC 9293 §3.6.1; Linux, BSDs and Windows all
    /// do): it cannot have read the whole request.
    Failed { error: hyper::Error, reset: bool },
}

impl Conn {
    /// Handshakes over `io` (no bytes are sent until the first request).
    pub async fn open(io: UpstreamIo, shared: Arc<Shared>) -> hyper::Result<Conn> {
        let (sender, driver) = http1::Builder::new().handshake(io).await?;
        Ok(Conn { sender, driver: Box::pin(driver), shared, reused: false })
    }

    /// Sends `request` and drives the connection until the answer's head arrives. On a failure
    /// after writing on a reused connection, `wait_for_reset` is how long to wait for the reset
    /// that shows the request unread.
    pub async fn exchange(
        self,
        request: Request<RequestBody>,
        wait_for_reset: Duration,
    ) -> Result<(Response<Incoming>, Option<Conn>), ExchangeError> {
        let Conn { mut sender, driver, shared, reused } = self;
        let mut driver = Some(driver);
        let mut answer = std::pin::pin!(sender.try_send_request(request));
        let outcome = std::future::poll_fn(|cx| {
            let Some(running) = driver.as_mut() else { return answer.as_mut().poll(cx) };
            let ended = running.as_mut().poll(cx).is_ready();
            let outcome = answer.as_mut().poll(cx);
            if ended && outcome.is_pending() {
                // The connection ended (the upstream's FIN on an idle connection) with the
                // request still queued: only dropping it hands the request back, unsent.
                driver = None;
                return answer.as_mut().poll(cx);
            }
            outcome
        })
        .await;
        match (outcome, driver) {
            (Ok(response), driver) => {
                Ok((response, driver.map(|driver| Conn { sender, driver, shared, reused })))
            }
            (Err(mut e), driver) => {
                let request = e.take_message();
                let error = e.into_error();
                Err(match (request, driver) {
                    (Some(request), _) => ExchangeError::NotSent(Box::new(request), error),
                    (None, Some(driver)) => {
                        let io = Pin::into_inner(driver).into_parts().io;
                        let reset = io.was_reset() || (reused && io.reset_within(wait_for_reset).await);
                        ExchangeError::Failed { error, reset }
                    }
                    (None, None) => ExchangeError::Failed { reset: met_reset(&error), error },
                })
            }
        }
    }

    /// Whether the connection can carry another request, once what has arrived is taken in
    /// (the end of an answer): polled once without a task to wake only when hyper is not ready
    /// yet, since every poll costs a read.
    fn settle(&mut self) -> bool {
        if self.shared.write_failed() {
            return false;
        }
        if self.sender.is_ready() {
            return true;
        }
        let mut cx = Context::from_waker(Waker::noop());
        self.driver.as_mut().poll(&mut cx).is_pending() && self.sender.is_ready()
    }
}

/// A proxy's idle upstream connections, newest last.
#[derive(Default)]
pub(super) struct Pool {
    idle: Mutex<Vec<(Conn, Instant)>>,
}

impl Pool {
    /// The newest idle connection that hyper still holds open. One idle long enough for the
    /// upstream to have closed it is checked right before its first write (`upstream_io`);
    /// one handed back a moment ago is not: the peek would cost a read on every request of a
    /// busy proxy, and an upstream that closes within a millisecond of answering is caught by
    /// the reset that follows.
    pub fn take(&self) -> Option<Conn> {
        let mut idle = self.idle.lock().expect("never poisoned");
        let now = Instant::now();
        drop_expired(&mut idle, now);
        while let Some((mut conn, since)) = idle.pop() {
            if !conn.sender.is_closed() {
                conn.reused = true;
                if now - since >= CHECK_AFTER_IDLE {
                    conn.shared.reused();
                }
                return Some(conn);
            }
        }
        None
    }

    /// Keeps `conn` for another request if it can carry one.
    fn put(&self, mut conn: Conn) {
        if !conn.settle() {
            return;
        }
        let mut idle = self.idle.lock().expect("never poisoned");
        let now = Instant::now();
        drop_expired(&mut idle, now);
        if idle.len() >= MAX_IDLE {
            idle.remove(0);
        }
        idle.push((conn, now));
    }

    /// Closes every idle connection.
    pub fn clear(&self) {
        self.idle.lock().expect("never poisoned").clear();
    }
}

/// Closes the connections idle for [`IDLE_TIMEOUT`] or longer: oldest first, they are all at
/// the front.
/// Whether hyper's read or write met a reset, when the connection (and its IO) is gone.
fn met_reset(error: &hyper::Error) -> bool {
    std::iter::successors(std::error::Error::source(error), |cause| cause.source())
        .filter_map(|cause| cause.downcast_ref::<std::io::Error>())
        .any(|e| e.kind() == std::io::ErrorKind::ConnectionReset)
}

fn drop_expired(idle: &mut Vec<(Conn, Instant)>, now: Instant) {
    let expired = idle.iter().take_while(|(_, since)| now - *since >= IDLE_TIMEOUT).count();
    idle.drain(..expired);
}

/// An upstream answer's body that drives its connection while it is read, and hands the
/// connection back to the pool when it has ended.
pub(super) struct UpstreamBody {
    incoming: Incoming,
    /// Until the body ends (or is dropped unfinished, which closes the connection).
    conn: Option<Conn>,
    pool: Arc<Pool>,
}

impl UpstreamBody {
    /// `conn` is `None` when the connection has ended already.
    pub fn new(incoming: Incoming, conn: Option<Conn>, pool: Arc<Pool>) -> UpstreamBody {
        UpstreamBody { incoming, conn, pool }
    }
}

impl Drop for UpstreamBody {
    /// An answer with nothing left to read (a 204, an empty body) may never be polled to its
    /// end: its connection can carry another request all the same.
    fn drop(&mut self) {
        if self.incoming.is_end_stream()
            && let Some(conn) = self.conn.take()
        {
            self.pool.put(conn);
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        if let Some(conn) = &mut this.conn {
            // Moves the answer's bytes from the socket into `incoming`; an error there ends
            // `incoming` with it.
            if conn.driver.as_mut().poll(cx).is_ready() {
                this.conn = None;
            }
        }
        let frame = Pin::new(&mut this.incoming).poll_frame(cx);
        if matches!(frame, Poll::Ready(None))
            && let Some(conn) = this.conn.take()
        {
            this.pool.put(conn);
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.incoming.size_hint()
    }
}
