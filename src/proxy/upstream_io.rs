//! The bytes under one upstream connection, with two rules hyper's client does not have
//! (issue "Hold the line", item 2):
//!
//! - **An answer already sent counts.** An upstream that checks auth first may answer 401 and
//!   close without reading a large body; our next write then fails (EPIPE, ECONNRESET) while
//!   the 401 waits in the receive buffer. A failed write is noted and swallowed, so hyper goes
//!   on to read the answer the upstream did send; the connection is never reused.
//! - **A reset proves the request unread.** An upstream closes with bytes of ours unread by
//!   resetting the connection; [`UpstreamIo::was_reset`] tells, so a request that failed that
//!   way may go again, POST included, as one that met a closed connection may.
//! - **No request is written to a connection the upstream has closed.** Before the first write
//!   on a connection taken back from the idle pool after a pause, the socket is peeked: if the upstream's FIN
//!   (or a reset) is already there, the write fails with [`ClosedBeforeWrite`], which proves
//!   the upstream read nothing, so the request may go again on a new connection, POST
//!   included.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_rustls::MaybeHttpsStream;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// How often [`UpstreamIo::reset_within`] looks: the socket says nothing when a reset arrives
/// after its end was read.
const RESET_POLL: std::time::Duration = std::time::Duration::from_millis(2);

/// What the connector hands over: plain TCP, or TLS over it.
pub(super) type Stream = MaybeHttpsStream<TokioIo<TcpStream>>;

/// The upstream had closed the connection when a request was about to be written to it.
#[derive(Debug, thiserror::Error)]
#[error("the upstream had closed the idle connection before the request was written")]
pub(super) struct ClosedBeforeWrite;

/// What the pool and the IO share about one connection.
#[derive(Debug, Default)]
pub(super) struct Shared {
    /// Set by the pool when an idle connection is taken for another request: peek before writing.
    check_before_write: AtomicBool,
    /// A write failed: the connection is done, whatever the upstream still sends.
    write_failed: AtomicBool,
    /// A read or write met a reset.
    reset: AtomicBool,
}

impl Shared {
    pub fn reused(&self) {
        self.check_before_write.store(true, Ordering::Relaxed);
    }

    pub fn write_failed(&self) -> bool {
        self.write_failed.load(Ordering::Relaxed)
    }
}

pub(super) struct UpstreamIo {
    stream: Stream,
    shared: Arc<Shared>,
}

impl UpstreamIo {
    pub fn new(stream: Stream) -> (UpstreamIo, Arc<Shared>) {
        let shared = Arc::new(Shared::default());
        (UpstreamIo { stream, shared: shared.clone() }, shared)
    }

    fn tcp(&self) -> &TcpStream {
        match &self.stream {
            MaybeHttpsStream::Http(tcp) => tcp.inner(),
            MaybeHttpsStream::Https(tls) => tls.inner().get_ref().0.inner().inner(),
        }
    }

    /// Whether the upstream has closed the connection, without taking any byte from it. On
    /// TLS a close_notify record is data, not an end: only a FIN or a reset counts.
    fn closed(&self, cx: &mut Context<'_>) -> bool {
        let mut byte = [0u8; 1];
        let mut buf = tokio::io::ReadBuf::new(&mut byte);
        match self.tcp().poll_peek(cx, &mut buf) {
            Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => true,
            Poll::Ready(Ok(_)) | Poll::Pending => false,
        }
    }

    /// Whether the upstream reset the connection: a reset seen by a read or write, or one
    /// pending on the socket. A reset that follows the FIN which ended hyper's read is pending
    /// as EPIPE, not ECONNRESET (the kernel's `tcp_reset` in CLOSE_WAIT), and a read shows
    /// only the end.
    pub fn was_reset(&self) -> bool {
        self.shared.reset.load(Ordering::Relaxed)
            || matches!(self.tcp().take_error(), Ok(Some(e))
                if matches!(e.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe))
    }

    /// Whether the upstream resets the connection within `limit`. The reset that answers a
    /// request sent to a socket the upstream has just closed comes a round trip after the FIN
    /// that ended hyper's read; a connection that was closed gracefully never gets one.
    pub async fn reset_within(&self, limit: std::time::Duration) -> bool {
        let give_up = tokio::time::Instant::now() + limit;
        loop {
            if self.was_reset() {
                return true;
            }
            if tokio::time::Instant::now() >= give_up {
                return false;
            }
            tokio::time::sleep(RESET_POLL).await;
        }
    }

    /// What a write gets without reaching the socket: "written" once a write has failed, or
    /// [`ClosedBeforeWrite`] when the upstream had closed an idle connection.
    fn before_write(&self, cx: &mut Context<'_>, len: usize) -> Option<io::Result<usize>> {
        if self.shared.write_failed() {
            return Some(Ok(len));
        }
        if self.shared.check_before_write.swap(false, Ordering::Relaxed) && self.closed(cx) {
            return Some(Err(io::Error::new(io::ErrorKind::NotConnected, ClosedBeforeWrite)));
        }
        None
    }

    /// A failed write, told to hyper as written: the answer may still be there to read.
    fn swallow(&self, result: io::Result<usize>, len: usize) -> Poll<io::Result<usize>> {
        match result {
            Err(e) if matches!(e.kind(), io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset) => {
                self.shared.write_failed.store(true, Ordering::Relaxed);
                self.shared.reset.store(true, Ordering::Relaxed);
                Poll::Ready(Ok(len))
            }
            other => Poll::Ready(other),
        }
    }
}

impl Read for UpstreamIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let result = std::task::ready!(Pin::new(&mut self.stream).poll_read(cx, buf));
        // The read takes the reset off the socket: noted, or `was_reset` could not tell later.
        if let Err(e) = &result
            && e.kind() == io::ErrorKind::ConnectionReset
        {
            self.shared.reset.store(true, Ordering::Relaxed);
        }
        Poll::Ready(result)
    }
}

impl Write for UpstreamIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if let Some(settled) = self.before_write(cx, buf.len()) {
            return Poll::Ready(settled);
        }
        let result = std::task::ready!(Pin::new(&mut self.stream).poll_write(cx, buf));
        self.swallow(result, buf.len())
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let len = bufs.iter().map(|b| b.len()).sum();
        if let Some(settled) = self.before_write(cx, len) {
            return Poll::Ready(settled);
        }
        let result = std::task::ready!(Pin::new(&mut self.stream).poll_write_vectored(cx, bufs));
        self.swallow(result, len)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.shared.write_failed() {
            return Poll::Ready(Ok(()));
        }
        let result = std::task::ready!(Pin::new(&mut self.stream).poll_flush(cx));
        self.swallow(result.map(|()| 0), 0).map(|result| result.map(drop))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
