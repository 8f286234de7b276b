//! The connection slots of one socket, and which connection gives way when they run out.
//!
//! A socket serves at most `max_connections` at once, so memory is bounded however many peers
//! connect. When every slot is taken, a new peer is not left queueing behind connections that do
//! nothing: the one that has done nothing for longest is closed to make room, as nginx does with
//! its idle connections. Doing nothing means waiting for a request that has not come (a peer
//! hoarding sockets, a head sent halfway, a kept-alive client between requests), waiting on a
//! `/v1/watch` stream for the next version (a watcher that reconnects reads the current token
//! first thing), or a peer not reading its answers (a write that cannot make progress).
//!
//! Never closed for room: a connection in a request (a 401 report waiting for its refresh, an
//! answer being written to a peer that reads it), and one just accepted or just answered until a
//! read finds nothing to do, so a newcomer is not closed before hyper has read the request it
//! already sent. When no connection can give way, new peers wait in the kernel's backlog.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// What a connection is doing.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Phase {
    /// Just accepted, or just answered: reading what the peer sent, if anything.
    Reading,
    /// Handling a request or writing its answer.
    Answering,
    /// For the peer's next request, or on a stream for the next version.
    Waiting,
}

impl Phase {
    const ALL: [Phase; 3] = [Phase::Reading, Phase::Answering, Phase::Waiting];
}

pub struct Connections {
    capacity: usize,
    live: Mutex<HashMap<u64, Arc<Entry>>>,
    /// Rung when a slot is freed or a connection starts doing nothing.
    room: Notify,
    /// Orders changes: a smaller stamp changed earlier. Also names connections.
    clock: AtomicU64,
}

struct Entry {
    phase: AtomicU8,
    /// A write is waiting for the peer to read.
    stalled: AtomicBool,
    /// When the connection last started doing nothing (or was admitted).
    stamp: AtomicU64,
    close: CancellationToken,
}

impl Entry {
    fn phase(&self) -> Phase {
        Phase::ALL[usize::from(self.phase.load(Ordering::Relaxed))]
    }

    fn gives_way(&self) -> bool {
        self.phase() == Phase::Waiting || self.stalled.load(Ordering::Relaxed)
    }
}

/// One admitted connection's slot; freed on drop.
pub struct Slot {
    id: u64,
    entry: Arc<Entry>,
    connections: Arc<Connections>,
}

/// What admitting a connection took.
pub struct Admitted {
    pub slot: Slot,
    /// Another connection was closed to make room.
    pub made_room: bool,
}

impl Connections {
    pub fn new(capacity: usize) -> Arc<Connections> {
        Arc::new(Connections {
            capacity,
            live: Mutex::default(),
            room: Notify::new(),
            clock: AtomicU64::new(0),
        })
    }

    /// A slot for a connection just accepted: a free one, else the one of the connection that
    /// has done nothing for longest, else the first to free up.
    pub async fn admit(self: &Arc<Self>) -> Admitted {
        loop {
            let room = self.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            if let Some(admitted) = self.try_admit() {
                return admitted;
            }
            room.await;
        }
    }

    fn try_admit(self: &Arc<Self>) -> Option<Admitted> {
        let mut live = self.live.lock().expect("never poisoned");
        let made_room = live.len() >= self.capacity;
        if made_room {
            let (&idlest, _) = live
                .iter()
                .filter(|(_, entry)| entry.gives_way())
                .min_by_key(|(_, entry)| entry.stamp.load(Ordering::Relaxed))?;
            let evicted = live.remove(&idlest).expect("just found");
            evicted.close.cancel();
        }
        let id = self.tick();
        let entry = Arc::new(Entry {
            phase: AtomicU8::new(Phase::Reading as u8),
            stalled: AtomicBool::new(false),
            stamp: AtomicU64::new(id),
            close: CancellationToken::new(),
        });
        live.insert(id, entry.clone());
        Some(Admitted { slot: Slot { id, entry, connections: self.clone() }, made_room })
    }

    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::Relaxed)
    }
}

impl Slot {
    pub fn set(&self, phase: Phase) {
        self.entry.phase.store(phase as u8, Ordering::Relaxed);
        if phase == Phase::Waiting {
            self.gave_way_now();
        }
    }

    /// Whether a write is waiting for the peer to read (see `stall`).
    pub fn set_stalled(&self, stalled: bool) {
        if self.entry.stalled.swap(stalled, Ordering::Relaxed) != stalled && stalled {
            self.gave_way_now();
        }
    }

    fn gave_way_now(&self) {
        self.entry.stamp.store(self.connections.tick(), Ordering::Relaxed);
        self.connections.room.notify_one();
    }

    fn phase(&self) -> Phase {
        self.entry.phase()
    }

    /// Resolves when this connection has been closed to make room for another.
    pub async fn evicted(&self) {
        self.entry.close.cancelled().await
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.connections.live.lock().expect("never poisoned").remove(&self.id);
        self.connections.room.notify_one();
    }
}

/// The reading side of a connection, which marks it waiting when a read finds nothing between
/// requests.
pub struct IdleReads<R> {
    inner: R,
    slot: Arc<Slot>,
}

impl<R> IdleReads<R> {
    pub fn new(inner: R, slot: Arc<Slot>) -> IdleReads<R> {
        IdleReads { inner, slot }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for IdleReads<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if poll.is_pending() && self.slot.phase() == Phase::Reading {
            self.slot.set(Phase::Waiting);
        }
        poll
    }
}

/// A response body that keeps its connection's phase: answering until hyper is done with it
/// (waiting, for a stream of unknown length: `/v1/watch` between versions), reading after.
pub struct Tracked<B> {
    body: B,
    slot: Arc<Slot>,
}

impl<B: Body> Tracked<B> {
    pub fn new(body: B, slot: Arc<Slot>) -> Tracked<B> {
        if body.size_hint().exact().is_none() {
            slot.set(Phase::Waiting);
        }
        Tracked { body, slot }
    }
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl<B> Drop for Tracked<B> {
    fn drop(&mut self) {
        self.slot.set(Phase::Reading);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn is_evicted(slot: &Slot) -> bool {
        slot.entry.close.is_cancelled()
    }

    async fn admit_as(connections: &Arc<Connections>, phase: Phase) -> Slot {
        let slot = connections.admit().await.slot;
        slot.set(phase);
        slot
    }

    #[tokio::test]
    async fn free_slots_are_handed_out_without_closing_anyone() {
        let connections = Connections::new(2);
        let a = connections.admit().await;
        let b = connections.admit().await;
        assert!(!a.made_room && !b.made_room);
        assert!(!is_evicted(&a.slot) && !is_evicted(&b.slot));
    }

    #[tokio::test]
    async fn when_full_the_connection_waiting_longest_gives_way() {
        let connections = Connections::new(3);
        let answering = admit_as(&connections, Phase::Answering).await;
        let later = admit_as(&connections, Phase::Answering).await;
        let earlier = admit_as(&connections, Phase::Answering).await;
        earlier.set(Phase::Waiting);
        later.set(Phase::Waiting);

        let newcomer = connections.admit().await;
        assert!(newcomer.made_room);
        assert!(is_evicted(&earlier) && !is_evicted(&later), "admitted later, but waiting longer");
        drop(earlier);
        newcomer.slot.set(Phase::Answering);

        let _last = connections.admit().await;
        assert!(is_evicted(&later) && !is_evicted(&answering));
    }

    #[tokio::test]
    async fn a_peer_that_does_not_read_its_answers_gives_way_mid_answer() {
        let connections = Connections::new(2);
        let waiting = admit_as(&connections, Phase::Answering).await;
        let stalled = admit_as(&connections, Phase::Answering).await;
        waiting.set(Phase::Waiting);
        stalled.set_stalled(true);
        stalled.set_stalled(false);
        stalled.set_stalled(true);
        let _newcomer = connections.admit().await;
        assert!(is_evicted(&waiting) && !is_evicted(&stalled), "waiting since before the stall");
        let _another = connections.admit().await;
        assert!(is_evicted(&stalled));
    }

    #[tokio::test]
    async fn a_read_that_finds_nothing_makes_a_newcomer_wait_and_a_request_makes_it_answer() {
        let connections = Connections::new(1);
        let slot = Arc::new(connections.admit().await.slot);
        assert_eq!(slot.phase(), Phase::Reading, "not closed before its request is read");
        let (ours, _theirs) = tokio::io::duplex(64);
        let mut reads = IdleReads::new(ours, slot.clone());
        let mut buf = [0u8; 16];
        let mut read_finds_nothing = || {
            let mut buf = ReadBuf::new(&mut buf);
            let mut cx = Context::from_waker(std::task::Waker::noop());
            Pin::new(&mut reads).poll_read(&mut cx, &mut buf).is_pending()
        };
        assert!(read_finds_nothing());
        assert_eq!(slot.phase(), Phase::Waiting);

        slot.set(Phase::Answering);
        assert!(read_finds_nothing());
        assert_eq!(slot.phase(), Phase::Answering, "a request waiting for its body is not idle");
    }

    #[tokio::test]
    async fn a_sized_body_answers_a_stream_waits_and_both_read_after() {
        let connections = Connections::new(2);
        let slot = Arc::new(connections.admit().await.slot);
        slot.set(Phase::Answering);
        let sized = Tracked::new(http_body_util::Full::new(bytes::Bytes::from_static(b"t")), slot.clone());
        assert_eq!(slot.phase(), Phase::Answering);
        drop(sized);
        assert_eq!(slot.phase(), Phase::Reading);
        let stream = http_body_util::StreamBody::new(futures_util::stream::pending::<
            Result<Frame<bytes::Bytes>, std::convert::Infallible>,
        >());
        let watching = Tracked::new(stream, slot.clone());
        assert_eq!(slot.phase(), Phase::Waiting);
        drop(watching);
        assert_eq!(slot.phase(), Phase::Reading);
    }

    #[tokio::test(start_paused = true)]
    async fn when_no_connection_can_give_way_a_newcomer_waits_for_one_to() {
        let connections = Connections::new(2);
        let answering = admit_as(&connections, Phase::Answering).await;
        let _just_accepted = connections.admit().await.slot;
        let waiting = tokio::spawn({
            let connections = connections.clone();
            async move { connections.admit().await.made_room }
        });
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!waiting.is_finished(), "nobody may be closed in a request or before it is read");
        answering.set_stalled(true);
        assert!(waiting.await.unwrap(), "the connection whose peer stopped reading gives way");
        assert!(is_evicted(&answering));
    }

    #[tokio::test(start_paused = true)]
    async fn a_closed_connection_frees_its_slot() {
        let connections = Connections::new(1);
        let answering = admit_as(&connections, Phase::Answering).await;
        let waiting = tokio::spawn({
            let connections = connections.clone();
            async move { connections.admit().await.made_room }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        drop(answering);
        assert!(!waiting.await.unwrap());
    }
}
