//! A request body that streams to the upstream as it arrives and keeps what passed, up to a
//! limit, so the request can be sent once more after a 401 (as linkerd2-proxy's `ReplayBody`).
//!
//! Both sends read through one shared state: the first pulls frames from the client and keeps
//! them; the replay hands out what was kept, then pulls the rest from the client itself. Once
//! more than `limit` bytes have passed, nothing is kept and no replay is possible. A replay makes
//! the first send's body fail, so the abandoned request cannot take frames the replay needs.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::HeaderMap;
use hyper::body::{Body, Frame, SizeHint};

use crate::server::BoxError;

/// The first send's body, or the replay's.
pub(super) struct ReplayBody<B> {
    shared: Arc<Mutex<Shared<B>>>,
    /// Which frame of `kept` this send hands out next.
    position: usize,
    /// The send this body belongs to; an older one has been replaced by a replay.
    generation: u32,
    size_hint: SizeHint,
}

struct Shared<B> {
    client: B,
    /// The frames so far, while they fit in `limit`.
    kept: Vec<Bytes>,
    kept_bytes: u64,
    limit: u64,
    /// More than `limit` has passed, or the answer came: nothing more is kept.
    released: bool,
    trailers: Option<HeaderMap>,
    ended: bool,
    generation: u32,
}

#[derive(Debug, thiserror::Error)]
#[error("the request was sent again after a refresh")]
struct Replaced;

/// Reading the request body from the client failed (an aborted upload, malformed chunked
/// framing): the client's fault, not the upstream's (DESIGN §12, "Whose fault").
#[derive(Debug, thiserror::Error)]
#[error("reading the request body from the client failed: {0}")]
pub(super) struct ClientBodyFailed(#[source] BoxError);

/// What the request handler keeps of a body it sent: enough to send it again, or to stop keeping.
pub(super) struct Kept<B> {
    shared: Arc<Mutex<Shared<B>>>,
    size_hint: SizeHint,
}

/// The body for the first send of `client`'s request, and what is kept of it.
pub(super) fn keep<B: Body<Data = Bytes> + Unpin>(client: B, limit: u64) -> (Kept<B>, ReplayBody<B>) {
    let size_hint = client.size_hint();
    // A body declared larger than the limit cannot be replayed: do not keep any of it.
    let released = size_hint.lower() > limit;
    let ended = client.is_end_stream();
    let shared = Arc::new(Mutex::new(Shared {
        client,
        kept: Vec::new(),
        kept_bytes: 0,
        limit,
        released,
        trailers: None,
        ended,
        generation: 0,
    }));
    let body = ReplayBody { shared: shared.clone(), position: 0, generation: 0, size_hint };
    (Kept { shared, size_hint }, body)
}

impl<B> Kept<B> {
    /// The same body again, for the second send, if everything that passed was kept.
    pub(super) fn replay(&self) -> Option<ReplayBody<B>> {
        let mut shared = self.shared.lock().expect("never poisoned");
        if shared.released {
            return None;
        }
        shared.generation += 1;
        Some(ReplayBody {
            shared: self.shared.clone(),
            position: 0,
            generation: shared.generation,
            size_hint: self.size_hint,
        })
    }

    /// The upstream answered (not with a 401): stop keeping what the client still sends.
    pub(super) fn release(&self) {
        let mut shared = self.shared.lock().expect("never poisoned");
        shared.released = true;
        shared.kept = Vec::new();
    }
}

impl<B> Body for ReplayBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let mut shared = this.shared.lock().expect("never poisoned");
        if this.generation != shared.generation {
            return Poll::Ready(Some(Err(Box::new(Replaced))));
        }
        if let Some(data) = shared.kept.get(this.position) {
            this.position += 1;
            return Poll::Ready(Some(Ok(Frame::data(data.clone()))));
        }
        if shared.ended {
            // Trailers once per send: past them, `position` points beyond `kept`.
            if this.position == shared.kept.len()
                && let Some(trailers) = shared.trailers.clone()
            {
                this.position += 1;
                return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
            }
            return Poll::Ready(None);
        }
        let frame = match Pin::new(&mut shared.client).poll_frame(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(None) => {
                shared.ended = true;
                return Poll::Ready(None);
            }
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(Box::new(ClientBodyFailed(e.into()))))),
            Poll::Ready(Some(Ok(frame))) => frame,
        };
        let frame = match frame.into_data() {
            Ok(data) => {
                if !shared.released {
                    shared.kept_bytes += data.len() as u64;
                    if shared.kept_bytes > shared.limit {
                        shared.released = true;
                        shared.kept = Vec::new();
                    } else {
                        shared.kept.push(data.clone());
                        this.position = shared.kept.len();
                    }
                }
                Frame::data(data)
            }
            Err(frame) => {
                if let Some(trailers) = frame.trailers_ref() {
                    shared.trailers = Some(trailers.clone());
                    shared.ended = true;
                    this.position = shared.kept.len() + 1;
                }
                frame
            }
        };
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        let shared = self.shared.lock().expect("never poisoned");
        let trailers_sent = shared.trailers.is_none() || self.position > shared.kept.len();
        shared.ended && self.position >= shared.kept.len() && trailers_sent
    }

    fn size_hint(&self) -> SizeHint {
        self.size_hint
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use futures_util::stream;
    use http_body_util::{BodyExt, StreamBody};

    use super::*;

    type Chunks = StreamBody<stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

    fn client(chunks: &[&'static str]) -> Chunks {
        let frames: Vec<_> =
            chunks.iter().map(|c| Ok(Frame::data(Bytes::from_static(c.as_bytes())))).collect();
        StreamBody::new(stream::iter(frames))
    }

    async fn read(body: impl Body<Data = Bytes, Error = BoxError>) -> Result<String, BoxError> {
        let bytes = body.collect().await?.to_bytes();
        Ok(String::from_utf8(bytes.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn a_body_within_the_limit_is_sent_twice_whole() {
        let (kept, first) = keep(client(&["{\"jsonrpc\":", "\"2.0\"}"]), 1024);
        let replay = kept.replay().expect("nothing passed yet");
        // The first send is replaced: it fails instead of taking the replay's frames.
        assert!(read(first).await.is_err());
        assert_eq!(read(replay).await.unwrap(), "{\"jsonrpc\":\"2.0\"}");
    }

    #[tokio::test]
    async fn what_the_first_send_read_is_handed_to_the_replay_then_the_rest() {
        let (kept, mut first) = keep(client(&["a", "b", "c"]), 1024);
        let frame = first.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "a");
        let replay = kept.replay().unwrap();
        assert_eq!(read(replay).await.unwrap(), "abc");
    }

    #[tokio::test]
    async fn a_body_over_the_limit_streams_and_cannot_be_replayed() {
        let (kept, mut first) = keep(client(&["12345", "67890"]), 8);
        let mut sent = Vec::new();
        while let Some(frame) = first.frame().await {
            sent.extend_from_slice(&frame.unwrap().into_data().unwrap());
        }
        assert_eq!(sent, b"1234567890");
        assert!(kept.replay().is_none());
    }

    #[tokio::test]
    async fn after_the_answer_nothing_more_is_kept() {
        let (kept, first) = keep(client(&["a", "b"]), 1024);
        kept.release();
        assert!(kept.replay().is_none());
        assert_eq!(read(first).await.unwrap(), "ab");
    }
}
