//! The host's side of the stdio transport: stdin read line by line, each message started on a
//! task of its own, in the order the handshake needs, and the signals that end the bridge.
//! Reading never waits on anything but stdin, a free place for a message and the signals, so
//! a host that stops reading stdout can still stop the bridge.

use std::sync::Arc;

use nix::sys::signal::{SigSet, SigmaskHow, Signal as NixSignal, pthread_sigmask};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use super::message::{Message, NotJsonRpc};
use super::sse_guard::MAX_EVENT;
use super::{Bridge, stdio};

/// Messages in flight at once; the next line is read when one is done. Far above what a host
/// sends, it bounds the tasks and memory of a host that writes without reading.
const IN_FLIGHT: usize = 1024;
/// The longest line taken from the host, as the longest event taken from the server.
const MAX_LINE: usize = MAX_EVENT;
/// A line buffer grown past this by one long message is given back afterwards.
const KEEP_BUFFER: usize = 1024 * 1024;

/// SIGTERM (a host stopping its server), SIGINT (Ctrl-C) and SIGHUP (the host's terminal gone).
pub(super) struct Signals {
    terminate: Signal,
    interrupt: Signal,
    hangup: Signal,
}

impl Signals {
    /// Installs the handlers, then lets through the signals the verb held back until now
    /// (one that came meanwhile is delivered at once, to the handler).
    pub fn install() -> Signals {
        let install = |kind| signal(kind).expect("signal handlers install");
        let signals = Signals {
            terminate: install(SignalKind::terminate()),
            interrupt: install(SignalKind::interrupt()),
            hangup: install(SignalKind::hangup()),
        };
        let held = SigSet::from_iter([NixSignal::SIGTERM, NixSignal::SIGINT, NixSignal::SIGHUP]);
        let _ = pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(&held), None);
        signals
    }

    async fn any(&mut self) {
        tokio::select! {
            _ = self.terminate.recv() => {}
            _ = self.interrupt.recv() => {}
            _ = self.hangup.recv() => {}
        }
    }
}

/// A line of stdin, as read.
enum Line {
    Text,
    /// Longer than [`MAX_LINE`]: skipped to its end.
    TooLong,
    End,
}

impl Bridge {
    /// Reads the host's messages and starts each one's task, until stdin closes (`true`), a
    /// signal comes or stdout is gone (`false`).
    pub(super) async fn read_stdin(self: &Arc<Self>, signals: &mut Signals, in_flight: &TaskTracker) -> bool {
        let mut stdin = tokio::io::BufReader::new(stdio::stdin());
        let mut line = Vec::new();
        let mut handshake = Handshake::default();
        let room = Arc::new(Semaphore::new(IN_FLIGHT));
        loop {
            let place = tokio::select! {
                place = room.clone().acquire_owned() => place.expect("the semaphore is never closed"),
                () = signals.any() => return false,
                () = self.ending.cancelled() => return false,
            };
            if line.capacity() > KEEP_BUFFER {
                line = Vec::new();
            }
            line.clear();
            let read = tokio::select! {
                read = read_line(&mut stdin, &mut line) => read,
                () = signals.any() => return false,
                () = self.ending.cancelled() => return false,
            };
            match read {
                Ok(Line::Text) => self.take_line(&line, &mut handshake, in_flight, place),
                Ok(Line::TooLong) => {
                    let refused =
                        NotJsonRpc::Parse(format!("a line longer than {} MiB", MAX_LINE / (1024 * 1024)));
                    self.refuse(refused, in_flight, place);
                }
                Ok(Line::End) => return true,
                Err(e) => {
                    warn!("stdin could not be read: {e}");
                    return true;
                }
            }
        }
    }

    fn take_line(
        self: &Arc<Self>,
        line: &[u8],
        handshake: &mut Handshake,
        in_flight: &TaskTracker,
        place: OwnedSemaphorePermit,
    ) {
        let text = String::from_utf8_lossy(line);
        if text.trim().is_empty() {
            return;
        }
        match Message::parse_all(&text) {
            Ok(messages) => {
                let place = Arc::new(place);
                for message in messages {
                    debug!("from the host: {}", message.kind);
                    let mut turn = handshake.turn(&message);
                    let (this, place) = (Arc::clone(self), Arc::clone(&place));
                    in_flight.spawn(async move {
                        turn.wait().await;
                        this.relay(message).await;
                        drop((turn, place));
                    });
                }
            }
            Err(e) => self.refuse(e, in_flight, place),
        }
    }

    /// Answers a line that is not a message, on a task of its own: stdout may be slow.
    fn refuse(self: &Arc<Self>, refused: NotJsonRpc, in_flight: &TaskTracker, place: OwnedSemaphorePermit) {
        warn!("the host sent a line that is {refused}");
        let out = self.out.clone();
        in_flight.spawn(async move {
            out.send(Message::refusal(&refused)).await;
            drop(place);
        });
    }
}

/// Reads one line into `line`, at most [`MAX_LINE`] bytes of it.
async fn read_line(stdin: &mut (impl AsyncBufRead + Unpin), line: &mut Vec<u8>) -> std::io::Result<Line> {
    let read = (&mut *stdin).take(MAX_LINE as u64).read_until(b'\n', line).await?;
    if read == 0 {
        return Ok(Line::End);
    }
    if line.ends_with(b"\n") || read < MAX_LINE {
        return Ok(Line::Text);
    }
    line.clear();
    let mut skipped = Vec::new();
    loop {
        skipped.clear();
        let read = (&mut *stdin).take(64 * 1024).read_until(b'\n', &mut skipped).await?;
        if read == 0 || skipped.ends_with(b"\n") {
            return Ok(Line::TooLong);
        }
    }
}

/// Keeps the handshake in order. Messages are sent concurrently, but a message the host wrote
/// after `initialize` or `notifications/initialized` must not reach the server before it: the
/// server would not know the session yet, or refuse a request before initialization is
/// complete (MCP 2025-06-18, "Lifecycle"). The host itself waits for the initialize answer
/// before `initialized`, but sends its first request right after `initialized`.
#[derive(Default)]
struct Handshake {
    /// Done when the last handshake message so far has been answered (or has failed).
    pending: Option<watch::Receiver<()>>,
}

/// A message's place in the handshake order: what it waits for before it is sent, and for a
/// handshake message, what it drops once answered so that later messages go.
struct Turn {
    after: Option<watch::Receiver<()>>,
    _done: Option<watch::Sender<()>>,
}

impl Handshake {
    /// `message`'s turn. Called in the order the host wrote the messages.
    fn turn(&mut self, message: &Message) -> Turn {
        let after = self.pending.clone();
        let done = matches!(message.method(), Some("initialize" | "notifications/initialized")).then(|| {
            let (done, pending) = watch::channel(());
            self.pending = Some(pending);
            done
        });
        Turn { after, _done: done }
    }
}

impl Turn {
    /// Waits until the handshake message before has been answered (its turn was dropped).
    async fn wait(&mut self) {
        if let Some(pending) = &mut self.after {
            while pending.changed().await.is_ok() {}
        }
    }
}
