//! Server-sent event streams: relaying their messages to the host, and the session's GET stream
//! (MCP 2025-06-18, "Listening for Messages from the Server"), which the server uses for requests
//! and notifications outside any request of the host's. The events are parsed by `sse-stream`.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::StatusCode;
use reqwest::header::ACCEPT;
use sse_stream::SseStream;
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

use super::Bridge;
use super::exchange::{Delivery, is_event_stream};
use super::failure::Failure;
use super::message::Message;
use super::session::Snapshot;
use crate::backoff::Backoff;

/// How long the GET stream waits before opening again after a failure: from 1 s, doubling, to
/// 30 s (DESIGN §14). A failed GET stream is never fatal: requests work without it.
const REOPEN: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
/// The longest the host's next message waits for the GET stream's answer after initialization.
const OPEN_WAIT: Duration = Duration::from_secs(1);

/// Where a stream got to: what a resumption sends as `Last-Event-ID`, and the server's `retry`.
#[derive(Debug, Default)]
pub(crate) struct Cursor {
    pub last_event_id: Option<String>,
    pub retry: Option<Duration>,
}

impl Bridge {
    /// A GET for the session's event stream, resumed from `cursor` when it has an event id.
    pub(super) async fn open_stream(
        &self,
        session: &Snapshot,
        cursor: &Cursor,
    ) -> Result<reqwest::Response, Failure> {
        let mut request = self.request(reqwest::Method::GET, session).header(ACCEPT, "text/event-stream");
        if let Some(id) = &cursor.last_event_id {
            request = request.header("last-event-id", id.as_str());
        }
        self.send(request).await
    }

    /// Relays the JSON-RPC messages of an event stream to `delivery` as they arrive, until the
    /// stream ends (`Ok`) or breaks (`Err`), keeping `cursor` up to date.
    pub(super) async fn relay_events(
        &self,
        response: reqwest::Response,
        cursor: &mut Cursor,
        delivery: &mut Delivery,
    ) -> Result<(), Failure> {
        let mut events = SseStream::from_bytes_stream(response.bytes_stream());
        while let Some(event) = events.next().await {
            let event = event.map_err(|e| Failure::Broken(e.to_string()))?;
            if let Some(id) = event.id {
                cursor.last_event_id = Some(id);
            }
            if let Some(retry) = event.retry {
                cursor.retry = Some(Duration::from_millis(retry));
            }
            // The stream's messages are events of the default type; an event with no data is
            // a server's priming event (an id to resume from) or a keep-alive.
            if event.event.as_deref().is_some_and(|e| e != "message") {
                continue;
            }
            let Some(data) = event.data.filter(|d| !d.trim().is_empty()) else { continue };
            match Message::parse_all(&data) {
                Ok(messages) => {
                    for m in messages {
                        delivery.take(m).await;
                    }
                }
                Err(e) => warn!("the MCP server sent an event that is {e}"),
            }
        }
        Ok(())
    }

    /// Opens the session's GET stream, replacing any earlier one, and waits (at most
    /// `OPEN_WAIT`) until the server has answered its request, so that the server knows the
    /// stream before the host's next message reaches it. A server on the TypeScript SDK drops,
    /// without a word, what it sends for the GET stream while that is not open yet (a tool's
    /// elicitation or sampling request, BENCHMARKS.md); a host sends its first tool call right
    /// after `notifications/initialized`, and the call would otherwise race the GET.
    pub(super) async fn start_stream(self: &Arc<Self>, session: Snapshot) {
        let stop = self.ending.child_token();
        if let Some(earlier) = self.lock_stream().replace(stop.clone()) {
            earlier.cancel();
        }
        let (answered, opened) = oneshot::channel();
        let this = Arc::clone(self);
        tokio::spawn(async move {
            tokio::select! {
                () = stop.cancelled() => {}
                () = this.listen(session, answered) => {}
            }
        });
        let _ = tokio::time::timeout(OPEN_WAIT, opened).await;
    }

    /// Closes the GET stream, if one is open (the session it belongs to is over).
    pub(super) fn stop_stream(&self) {
        if let Some(stream) = self.lock_stream().take() {
            stream.cancel();
        }
    }

    fn lock_stream(&self) -> std::sync::MutexGuard<'_, Option<tokio_util::sync::CancellationToken>> {
        self.stream.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The GET stream of `session`, for as long as the session lasts: 405 means the server
    /// offers none; a dropped stream is resumed with `Last-Event-ID` after the server's
    /// `retry`; other failures are retried with backoff.
    /// `answered` fires when the first GET has been answered, however.
    async fn listen(&self, session: Snapshot, answered: oneshot::Sender<()>) {
        let mut answered = Some(answered);
        let mut cursor = Cursor::default();
        let mut failures = 0;
        loop {
            let opened = self.open_stream(&session, &cursor).await;
            if let Some(answered) = answered.take() {
                let _ = answered.send(());
            }
            let wait = match opened {
                Ok(response) if response.status() == StatusCode::METHOD_NOT_ALLOWED => {
                    debug!("the MCP server offers no GET stream (405)");
                    return;
                }
                Ok(response) if response.status() == StatusCode::NOT_FOUND && session.id.is_some() => {
                    info!(
                        "the MCP server no longer knows the session; the host's next message opens a new one"
                    );
                    return;
                }
                Ok(response) if response.status().is_success() && is_event_stream(response.headers()) => {
                    failures = 0;
                    let mut to_host = Delivery::for_stream(self.out.clone());
                    if let Err(broke) = self.relay_events(response, &mut cursor, &mut to_host).await {
                        debug!("the GET stream broke: {broke}");
                    }
                    cursor.retry.unwrap_or(REOPEN.first)
                }
                Ok(response) => {
                    failures += 1;
                    warn!(
                        "the MCP server answered the GET stream with HTTP {}; trying again",
                        response.status()
                    );
                    REOPEN.after(failures)
                }
                Err(failure) => {
                    failures += 1;
                    warn!("the GET stream could not be opened: {} {failure}; trying again", self.url);
                    REOPEN.after(failures)
                }
            };
            tokio::time::sleep(wait).await;
        }
    }
}
