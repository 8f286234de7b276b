//! A connection wrapper that gives up on a peer that stops reading; reads pass through.
//!
//! hyper has no write timeout: a client that never reads would hold its task and socket forever
//! once the kernel buffer is full. Nothing is buffered beyond that (responses are produced only as
//! hyper can write them), so this bounds time, not memory: a write that makes no progress for
//! [`WRITE_STALL`] fails and the connection closes. Until then, `on_stall` hears when a write
//! starts and stops waiting for the peer, so a full socket can close such a connection first.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

pub(super) const WRITE_STALL: Duration = Duration::from_secs(10);

pub(super) struct StallGuard<T> {
    inner: T,
    /// Armed while a write is pending; reset when it makes progress.
    deadline: Option<Pin<Box<Sleep>>>,
    on_stall: Box<dyn Fn(bool) + Send>,
}

impl<T> StallGuard<T> {
    pub(super) fn new(inner: T, on_stall: impl Fn(bool) + Send + 'static) -> StallGuard<T> {
        StallGuard { inner, deadline: None, on_stall: Box::new(on_stall) }
    }

    fn on_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let deadline = self.deadline.get_or_insert_with(|| {
            (self.on_stall)(true);
            Box::pin(tokio::time::sleep(WRITE_STALL))
        });
        ready!(deadline.as_mut().poll(cx));
        Poll::Ready(io::Error::new(io::ErrorKind::TimedOut, "the client stopped reading"))
    }

    fn settle<R>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        match poll {
            Poll::Ready(result) => {
                if self.deadline.take().is_some() {
                    (self.on_stall)(false);
                }
                Poll::Ready(result)
            }
            Poll::Pending => self.on_pending(cx).map(Err),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for StallGuard<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for StallGuard<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.settle(cx, poll)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.settle(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.settle(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.settle(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tokio::io::AsyncWriteExt;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_never_reads_fails_the_write_after_the_stall_limit() {
        let (ours, _theirs) = tokio::io::duplex(64);
        let stalls = Arc::new(Mutex::new(Vec::new()));
        let heard = stalls.clone();
        let mut guarded = StallGuard::new(ours, move |stalled| heard.lock().unwrap().push(stalled));
        let started = tokio::time::Instant::now();
        let error = guarded.write_all(&[0u8; 4096]).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), WRITE_STALL);
        assert_eq!(*stalls.lock().unwrap(), [true]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_but_steady_reader_is_not_cut_off() {
        let (ours, mut theirs) = tokio::io::duplex(64);
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 64];
            let mut total = 0;
            while total < 4096 {
                tokio::time::sleep(WRITE_STALL / 2).await;
                total += tokio::io::AsyncReadExt::read(&mut theirs, &mut buf).await.unwrap();
            }
        });
        let stalls = Arc::new(Mutex::new(Vec::new()));
        let heard = stalls.clone();
        let mut guarded = StallGuard::new(ours, move |stalled| heard.lock().unwrap().push(stalled));
        guarded.write_all(&[0u8; 4096]).await.expect("progress resets the deadline");
        reader.await.unwrap();
        let stalls = stalls.lock().unwrap();
        assert!(stalls.len() >= 2 && stalls.chunks(2).all(|pair| pair == [true, false]), "{stalls:?}");
    }
}
