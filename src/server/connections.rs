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
//! answer being written to a peer that reads it, a proxied stream the upstream holds open) —
//! unless one user holds more than half the slots that way: then a newcomer of another user
//! closes that user's oldest, so one peer's parked requests cannot keep everyone else out
//! (DESIGN §15, "Alone"). Otherwise, when every connection is in a request, new peers wait in
//! the kernel's backlog.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
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
    /// The peer's uid once known; [`UNKNOWN`] before.
    uid: AtomicU32,
}

const UNKNOWN: u32 = u32::MAX;

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

    /// A slot for a connection just accepted (of `newcomer`'s uid, when known): a free one,
    /// else the one of the connection the daemon has done nothing for longest, else the oldest
    /// of another user who holds more than half, else the first to free up.
    pub(super) async fn admit(self: &Arc<Self>, newcomer: Option<u32>) -> Admitted {
        loop {
            let room = self.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            if let Some(admitted) = self.try_admit(newcomer) {
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
    pub(super) fn try_admit(self: &Arc<Self>, newcomer: Option<u32>) -> Option<Admitted> {
        let mut live = self.live.lock().expect("never poisoned");
        let made_room = live.len() >= self.capacity;
        if made_room {
            let oldest = |of: &dyn Fn(&Entry) -> bool| {
                live.iter()
                    .filter(|(_, entry)| of(entry))
                    .min_by_key(|(_, entry)| entry.stamp.load(Ordering::Relaxed))
                    .map(|(&id, _)| id)
            };
            let victim = oldest(&|entry| entry.gives_way()).or_else(|| {
                let hog = newcomer.and_then(|uid| self.hog(&live, uid))?;
                oldest(&|entry| entry.uid.load(Ordering::Relaxed) == hog)
            })?;
            let evicted = live.remove(&victim).expect("just found");
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
            uid: AtomicU32::new(newcomer.unwrap_or(UNKNOWN)),
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

    /// The user, other than `newcomer`, who holds more than half the slots, if one does.
    fn hog(&self, live: &HashMap<u64, Arc<Entry>>, newcomer: u32) -> Option<u32> {
        let mut held: HashMap<u32, usize> = HashMap::new();
        for entry in live.values() {
            *held.entry(entry.uid.load(Ordering::Relaxed)).or_default() += 1;
        }
        held.into_iter()
            .find(|&(uid, count)| uid != UNKNOWN && uid != newcomer && count * 2 > self.capacity)
            .map(|(uid, _)| uid)
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
    /// The peer is `uid` (looked up after admission).
    pub(super) fn identified(&self, uid: u32) {
        self.entry.uid.store(uid, Ordering::Relaxed);
    }

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
mod tests;
