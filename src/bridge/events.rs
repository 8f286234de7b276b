//! Server-sent event streams: relaying their messages to the host, and the session's GET stream
//! (MCP 2025-06-18, "Listening for Messages from the Server"), which the server uses for requests
//! and notifications outside any request of the host's. The events are parsed by
//! `eventsource-stream` (the WHATWG rules: unknown fields ignored, `retry` only when digits),
//! behind `sse_guard`.

use std::sync::Arc;
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, HeaderValue};
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

use super::Bridge;
use super::exchange::{Cursor, Delivery, is_event_stream};
use super::failure::Failure;
use super::message::Message;
use super::session::Snapshot;
use super::sse_guard::Guard;
use crate::backoff::Backoff;

/// How long the GET stream waits before opening again after a failure: from 1 s, doubling, to
/// 30 s (DESIGN §14). A failed GET stream is never fatal: requests work without it.
const REOPEN: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
/// The server's `retry` is taken within these bounds: no tight loop of reconnections, and no
/// stream left closed for hours.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(60);
/// How long a request's stream is still read after its answer came.
const AFTER_ANSWER: Duration = Duration::from_secs(1);
/// The longest the host's next message waits for the GET stream's answer after initialization.
const OPEN_WAIT: Duration = Duration::from_secs(1);

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
        let mut guard = Guard::new();
        let checked = response.bytes_stream().map(move |chunk| match chunk {
            Ok(chunk) => guard.pass(&chunk).map_err(|e| e.to_string()),
            Err(e) => Err(crate::source::describe(&e)),
        });
        let mut events = checked.eventsource();
        let mut answered_by: Option<tokio::time::Instant> = None;
        loop {
            if answered_by.is_none() && delivery.answered {
                answered_by = Some(tokio::time::Instant::now() + AFTER_ANSWER);
            }
            let next = match answered_by {
                // The server SHOULD close a request's stream after the answer (MCP 2025-06-18);
                // one that does not is not waited for long, so the next message is not held up.
                Some(by) => match tokio::time::timeout_at(by, events.next()).await {
                    Ok(next) => next,
                    Err(_) => {
                        debug!("a stream stayed open {AFTER_ANSWER:?} after its answer; closed");
                        return Ok(());
                    }
                },
                None => events.next().await,
            };
            let Some(event) = next else { break };
            let event = event.map_err(|e| Failure::Broken(e.to_string()))?;
            // An id that cannot be sent back as a header is not one to resume from.
            if !event.id.is_empty() && HeaderValue::from_str(&event.id).is_ok() {
                cursor.last_event_id = Some(event.id);
            }
            if let Some(retry) = event.retry {
                cursor.retry = Some(retry.clamp(RETRY_MIN, RETRY_MAX));
            }
            // The stream's messages are events of the default type; an event with empty data is
            // a server's priming event (an id to resume from).
            if event.event != "message" || event.data.trim().is_empty() {
                continue;
            }
            match Message::parse_all(&event.data) {
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
                    let reason = self.redact(format!("{} {failure}", self.shown_url));
                    warn!("the GET stream could not be opened: {reason}; trying again");
                    REOPEN.after(failures)
                }
            };
            tokio::time::sleep(wait).await;
        }
    }
}
