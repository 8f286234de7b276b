//! The connection slots of one socket, and which connection gives way when they run out.
//!
//! A socket serves at most `max_connections` at once, so memory is bounded however many peers
//! connect. When every slot is taken, a new peer is not left queueing behind connections that do
//! nothing: the one the daemon has done nothing for longest is closed to make room, as nginx does
//! with its idle connections. The daemon last did something for a connection when it admitted
//! it, finished an answer on it, started a `/v1/watch` stream on it, or began waiting for its
//! peer to read. So hoarded sockets, heads sent halfway and kept-alive clients between requests
//! give way oldest first; a watcher gives way in its turn (it reconnects, and reads the current
//! token first thing); a newcomer, being the youngest, last of all.
//!
//! Never closed for room: a connection in a request (a 401 report waiting for its refresh, an
//! answer being written to a peer that reads it, a proxied stream the upstream holds open). When
//! every connection is in a request, new peers wait in the kernel's backlog.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};

use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::Notify;
use tokio::task::AbortHandle;

pub(super) struct Connections {
    capacity: usize,
    live: Mutex<HashMap<u64, Arc<Entry>>>,
    /// Rung when a slot is freed or a connection may give way again.
    room: Notify,
    /// Orders events: a smaller stamp is earlier. Also names connections.
    clock: AtomicU64,
    /// A connection was admitted since the listener last settled.
    busy: AtomicBool,
    /// Rung when the last connection closes.
    emptied: Notify,
}

struct Entry {
    /// Handling a request or writing its answer.
    answering: AtomicBool,
    /// A write is waiting for the peer to read.
    stalled: AtomicBool,
    /// When the daemon last did something for this connection.
    stamp: AtomicU64,
    /// Closed to make room, or because the listener stops.
    closed: AtomicBool,
    /// The task serving the connection. Aborting it rather than having it wait on a signal as
    /// well as its IO: such a wait is polled again at every wake-up of a busy connection.
    task: OnceLock<AbortHandle>,
}

impl Entry {
    fn gives_way(&self) -> bool {
        !self.answering.load(Ordering::Relaxed) || self.stalled.load(Ordering::Relaxed)
    }

    fn close(&self) {
        // SeqCst here and in `Slot::served_by`: whichever of the two comes second sees the other.
        self.closed.store(true, Ordering::SeqCst);
        if let Some(task) = self.task.get() {
            task.abort();
        }
    }
}

/// One admitted connection's slot; freed on drop.
pub(super) struct Slot {
    id: u64,
    entry: Arc<Entry>,
    connections: Arc<Connections>,
}

/// What admitting a connection took.
pub(super) struct Admitted {
    pub slot: Slot,
    /// Another connection was closed to make room.
    pub made_room: bool,
}

impl Connections {
    pub(super) fn new(capacity: usize) -> Arc<Connections> {
        Arc::new(Connections {
            capacity,
            live: Mutex::default(),
            room: Notify::new(),
            clock: AtomicU64::new(0),
            busy: AtomicBool::new(false),
            emptied: Notify::new(),
        })
    }

    /// A slot for a connection just accepted: a free one, else the one of the connection the
    /// daemon has done nothing for longest, else the first to free up.
    pub(super) async fn admit(self: &Arc<Self>) -> Admitted {
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

    /// Whether every slot is taken: a newcomer gets one only by closing someone's connection,
    /// or after waiting for one.
    pub(super) fn is_full(&self) -> bool {
        self.live.lock().expect("never poisoned").len() >= self.capacity
    }

    /// A slot now, if one is free or can be made free.
    pub(super) fn try_admit(self: &Arc<Self>) -> Option<Admitted> {
        let mut live = self.live.lock().expect("never poisoned");
        let made_room = live.len() >= self.capacity;
        if made_room {
            let (&idlest, _) = live
                .iter()
                .filter(|(_, entry)| entry.gives_way())
                .min_by_key(|(_, entry)| entry.stamp.load(Ordering::Relaxed))?;
            let evicted = live.remove(&idlest).expect("just found");
            evicted.close();
        }
        self.busy.store(true, Ordering::Relaxed);
        let id = self.tick();
        let entry = Arc::new(Entry {
            answering: AtomicBool::new(false),
            stalled: AtomicBool::new(false),
            stamp: AtomicU64::new(id),
            closed: AtomicBool::new(false),
            task: OnceLock::new(),
        });
        live.insert(id, entry.clone());
        Some(Admitted { slot: Slot { id, entry, connections: self.clone() }, made_room })
    }

    /// Resolves once connections were served and then none has been open for `quiet`: the time
    /// to hand the memory a burst left behind back to the kernel. Pending while idle, so an idle
    /// listener never wakes for it.
    pub(super) async fn settled(&self, quiet: std::time::Duration) {
        loop {
            let emptied = self.emptied.notified();
            tokio::pin!(emptied);
            emptied.as_mut().enable();
            let empty = self.live.lock().expect("never poisoned").is_empty();
            if !(empty && self.busy.load(Ordering::Relaxed)) {
                emptied.await;
                continue;
            }
            tokio::time::sleep(quiet).await;
            if self.live.lock().expect("never poisoned").is_empty() {
                self.busy.store(false, Ordering::Relaxed);
                return;
            }
        }
    }

    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::Relaxed)
    }
}

/// Closes every connection when dropped: the listener stops.
pub(super) struct CloseAll(pub Arc<Connections>);

impl Drop for CloseAll {
    fn drop(&mut self) {
        for entry in self.0.live.lock().expect("never poisoned").values() {
            entry.close();
        }
    }
}

impl Slot {
    /// A request has come: not to be closed until it is answered.
    pub(super) fn answering(&self) {
        self.entry.answering.store(true, Ordering::Relaxed);
    }

    /// An answer is out, or an answer of unknown length (`/v1/watch`) has started, with nothing
    /// to do between its lines.
    pub(super) fn answered(&self) {
        self.entry.stamp.store(self.connections.tick(), Ordering::Relaxed);
        self.entry.answering.store(false, Ordering::Relaxed);
        self.connections.room.notify_one();
    }

    /// Whether a write is waiting for the peer to read (see `stall`).
    pub(super) fn set_stalled(&self, stalled: bool) {
        if self.entry.stalled.swap(stalled, Ordering::Relaxed) != stalled && stalled {
            self.entry.stamp.store(self.connections.tick(), Ordering::Relaxed);
            self.connections.room.notify_one();
        }
    }

    /// `task` serves this slot's connection: closing the connection aborts it (at once if it
    /// was closed already).
    pub(super) fn served_by(&self, task: AbortHandle) {
        let task = self.entry.task.get_or_init(|| task);
        if self.entry.closed.load(Ordering::SeqCst) {
            task.abort();
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut live = self.connections.live.lock().expect("never poisoned");
        live.remove(&self.id);
        if live.is_empty() {
            self.connections.emptied.notify_waiters();
        }
        drop(live);
        self.connections.room.notify_one();
    }
}

/// A response body that keeps its connection answering until hyper is done with it.
pub(super) struct Tracked<B> {
    body: B,
    slot: Arc<Slot>,
}

impl<B: Body> Tracked<B> {
    /// With `streams_give_way`, a stream of unknown length (the API's `/v1/watch`, which has
    /// nothing to do between its lines) counts as answered from the start.
    pub(super) fn new(body: B, slot: Arc<Slot>, streams_give_way: bool) -> Tracked<B> {
        if streams_give_way && body.size_hint().exact().is_none() {
            slot.answered();
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
        self.slot.answered();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn is_evicted(slot: &Slot) -> bool {
        slot.entry.closed.load(Ordering::SeqCst)
    }

    fn is_answering(slot: &Slot) -> bool {
        slot.entry.answering.load(Ordering::Relaxed)
    }

    async fn answering(connections: &Arc<Connections>) -> Slot {
        let slot = connections.admit().await.slot;
        slot.answering();
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
    async fn when_full_the_connection_idle_longest_gives_way() {
        let connections = Connections::new(3);
        let busy = answering(&connections).await;
        let later = answering(&connections).await;
        let earlier = answering(&connections).await;
        earlier.answered();
        later.answered();

        let newcomer = connections.admit().await;
        assert!(newcomer.made_room);
        assert!(is_evicted(&earlier) && !is_evicted(&later), "admitted later, but idle longer");
        drop(earlier);
        newcomer.slot.answering();

        let _last = connections.admit().await;
        assert!(is_evicted(&later) && !is_evicted(&busy));
    }

    #[tokio::test]
    async fn a_silent_peer_is_idle_since_it_came_and_newcomers_go_last() {
        let connections = Connections::new(3);
        let hoarder = connections.admit().await.slot;
        let kept_alive = answering(&connections).await;
        kept_alive.answered();
        let newcomer = connections.admit().await.slot;
        let _another = connections.admit().await;
        assert!(is_evicted(&hoarder) && !is_evicted(&kept_alive) && !is_evicted(&newcomer));
        drop(hoarder);
        let _more = connections.admit().await;
        assert!(is_evicted(&kept_alive) && !is_evicted(&newcomer));
    }

    #[tokio::test]
    async fn a_peer_that_does_not_read_its_answers_gives_way_mid_answer() {
        let connections = Connections::new(2);
        let idle = answering(&connections).await;
        idle.answered();
        let stalled = answering(&connections).await;
        stalled.set_stalled(true);
        stalled.set_stalled(false);
        stalled.set_stalled(true);
        let _newcomer = connections.admit().await;
        assert!(is_evicted(&idle) && !is_evicted(&stalled), "idle since before the stall");
        let _another = connections.admit().await;
        assert!(is_evicted(&stalled));
    }

    #[tokio::test]
    async fn a_sized_body_keeps_its_connection_answering_a_watch_stream_does_not() {
        let connections = Connections::new(2);
        let slot = Arc::new(answering(&connections).await);
        let sized =
            Tracked::new(http_body_util::Full::new(bytes::Bytes::from_static(b"t")), slot.clone(), true);
        assert!(is_answering(&slot));
        drop(sized);
        assert!(!is_answering(&slot));
        slot.answering();
        let stream = http_body_util::StreamBody::new(futures_util::stream::pending::<
            Result<Frame<bytes::Bytes>, std::convert::Infallible>,
        >());
        let watching = Tracked::new(stream, slot.clone(), true);
        assert!(!is_answering(&slot));
        drop(watching);
        slot.answering();
        let proxied = http_body_util::StreamBody::new(futures_util::stream::pending::<
            Result<Frame<bytes::Bytes>, std::convert::Infallible>,
        >());
        let streaming = Tracked::new(proxied, slot.clone(), false);
        assert!(is_answering(&slot), "a proxied stream is a request in progress");
        drop(streaming);
        assert!(!is_answering(&slot));
    }

    #[tokio::test(start_paused = true)]
    async fn when_every_connection_is_answering_a_newcomer_waits_for_one_to_give_way() {
        let connections = Connections::new(2);
        let busy = answering(&connections).await;
        let _also_busy = answering(&connections).await;
        let waiting = tokio::spawn({
            let connections = connections.clone();
            async move { connections.admit().await.made_room }
        });
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!waiting.is_finished(), "nobody may be closed in the middle of a request");
        busy.set_stalled(true);
        assert!(waiting.await.unwrap(), "the connection whose peer stopped reading gives way");
        assert!(is_evicted(&busy));
    }

    #[tokio::test(start_paused = true)]
    async fn a_listener_settles_once_after_its_last_connection_and_not_while_idle() {
        let connections = Connections::new(4);
        let quiet = Duration::from_secs(2);
        let never_served = tokio::time::timeout(Duration::from_secs(60), connections.settled(quiet)).await;
        assert!(never_served.is_err(), "an idle listener settled: it would wake for nothing");

        let first = connections.admit().await.slot;
        let second = connections.admit().await.slot;
        let settled = tokio::spawn({
            let connections = connections.clone();
            async move { connections.settled(quiet).await }
        });
        drop(first);
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(!settled.is_finished(), "settled with a connection still open");
        let closed = tokio::time::Instant::now();
        drop(second);
        settled.await.unwrap();
        assert_eq!(closed.elapsed(), quiet);
        let again = tokio::time::timeout(Duration::from_secs(60), connections.settled(quiet)).await;
        assert!(again.is_err(), "settled twice for one burst");
    }

    #[tokio::test(start_paused = true)]
    async fn a_closed_connection_frees_its_slot() {
        let connections = Connections::new(1);
        let busy = answering(&connections).await;
        let waiting = tokio::spawn({
            let connections = connections.clone();
            async move { connections.admit().await.made_room }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        drop(busy);
        assert!(!waiting.await.unwrap());
    }

    #[tokio::test]
    async fn closing_a_connection_aborts_the_task_serving_it_known_before_or_after() {
        let serving = || tokio::spawn(std::future::pending::<()>());
        let aborted = async |task: tokio::task::JoinHandle<()>| {
            let ended = tokio::time::timeout(Duration::from_secs(5), task).await;
            ended.expect("the task ended").unwrap_err().is_cancelled()
        };
        let connections = Connections::new(1);
        let idle = connections.admit().await.slot;
        let task = serving();
        idle.served_by(task.abort_handle());
        let newcomer = connections.admit().await;
        assert!(newcomer.made_room);
        assert!(aborted(task).await, "closed for room");

        // Closed for room before its task was known: the task is aborted as it is handed over.
        let newer = connections.admit().await.slot;
        let late = serving();
        newcomer.slot.served_by(late.abort_handle());
        assert!(aborted(late).await);

        // The listener stops: every connection ends.
        let stopping = CloseAll(connections.clone());
        let task = serving();
        newer.served_by(task.abort_handle());
        drop(stopping);
        assert!(aborted(task).await, "closed as the listener stopped");
    }
}
