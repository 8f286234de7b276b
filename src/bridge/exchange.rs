//! One message from the host, POSTed to the server, and its answer relayed back (MCP
//! 2025-06-18, "Sending Messages to the Server"): a JSON body or an event stream, a lost session
//! opened again, and every failure turned into an answer the host can act on.

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderValue};
use tracing::{debug, warn};

use super::failure::Failure;
use super::message::{Kind, Message};
use super::out::Out;
use super::session::Snapshot;
use super::sse_guard::MAX_EVENT;
use super::{Bridge, MCP_SESSION_ID};

/// Where a stream got to: what a resumption sends as `Last-Event-ID`, and the server's `retry`.
#[derive(Debug, Default)]
pub(crate) struct Cursor {
    pub last_event_id: Option<String>,
    pub retry: Option<Duration>,
}

/// What a POST came to, short of a failure.
pub(crate) enum Posted {
    /// The server took it; the answer's messages went where the `Delivery` said.
    Done { status: StatusCode, session_id: Option<HeaderValue> },
    /// 404 to a request that carried a session id: the server no longer knows the session.
    SessionGone,
}

/// Where an answer's messages go, and what was learnt from them.
pub(crate) struct Delivery {
    /// `None`: kept off stdout (the handshake replayed for a new session).
    out: Option<Out>,
    /// The id of the request whose answer is awaited.
    awaited: Option<String>,
    /// For `initialize`: the answer's `result.protocolVersion` is wanted.
    wants_version: bool,
    pub answered: bool,
    /// For `initialize`: the negotiated version, as the header later requests carry.
    pub protocol_version: Option<HeaderValue>,
}

impl Delivery {
    pub fn new(out: Option<Out>, message: &Message) -> Delivery {
        let awaited = match &message.kind {
            Kind::Request { id, .. } => Some(id.clone()),
            _ => None,
        };
        let wants_version = message.method() == Some("initialize");
        Delivery { out, awaited, wants_version, answered: false, protocol_version: None }
    }

    /// For a GET stream: every message goes to the host; no answer is awaited.
    pub fn for_stream(out: Out) -> Delivery {
        Delivery {
            out: Some(out),
            awaited: None,
            wants_version: false,
            answered: false,
            protocol_version: None,
        }
    }

    pub async fn take(&mut self, message: Message) {
        if let (Some(awaited), Kind::Response { id }) = (&self.awaited, &message.kind) {
            // A request's stream carries its own answer; another id's would reach the host as
            // an answer to a request it did not make, or a second one to a request it did.
            if id.as_deref() != Some(awaited.as_str()) {
                warn!(
                    "the MCP server answered id {} on the stream of request {awaited}; dropped",
                    id.as_deref().unwrap_or("null")
                );
                return;
            }
            self.answered = true;
            if self.wants_version {
                self.protocol_version = negotiated_version(&message.line);
            }
        }
        match &self.out {
            Some(out) => out.send(message.line).await,
            None => debug!("kept off stdout: {}, for the replayed handshake", message.kind),
        }
    }
}

/// `result.protocolVersion` of an initialize answer, as a header value.
fn negotiated_version(line: &str) -> Option<HeaderValue> {
    #[derive(serde::Deserialize)]
    struct Answer {
        result: Option<Result_>,
    }
    #[derive(serde::Deserialize)]
    struct Result_ {
        #[serde(rename = "protocolVersion")]
        protocol_version: String,
    }
    HeaderValue::from_str(&serde_json::from_str::<Answer>(line).ok()?.result?.protocol_version).ok()
}

impl Bridge {
    /// Relays one message from the host: POSTs it, writes the answer's messages to stdout, and
    /// turns a failure into the error answer the host is owed (or a line on stderr for a
    /// notification or an answer of the host's own).
    pub(super) async fn relay(self: Arc<Self>, message: Message) {
        let initializing = message.method() == Some("initialize");
        if initializing {
            self.session.host_initializes(&message);
        }
        // A new session starts without the old one's id.
        let session = if initializing { Snapshot::default() } else { self.session.current() };
        let mut delivery = Delivery::new(Some(self.out.clone()), &message);
        let result = match self.post(&message, &session, &mut delivery).await {
            Ok(Posted::SessionGone) => match self.reopen(session.generation).await {
                Ok(reopened) => match self.post(&message, &reopened, &mut delivery).await {
                    Ok(Posted::SessionGone) => Err(session_gone()),
                    other => other,
                },
                Err(failure) => Err(failure),
            },
            other => other,
        };
        let failure = match result {
            Ok(Posted::Done { status, session_id }) => {
                if initializing && delivery.answered {
                    self.session.begin(session_id, delivery.protocol_version.clone());
                    self.stop_stream();
                }
                if message.method() == Some("notifications/initialized") {
                    self.session.host_initialized(&message);
                    self.start_stream(self.session.current()).await;
                }
                if delivery.awaited.is_none() || delivery.answered {
                    return;
                }
                Failure::NoAnswer(status)
            }
            Ok(Posted::SessionGone) => unreachable!("a second 404 is a failure above"),
            Err(failure) => failure,
        };
        if self.ending.is_cancelled() {
            // The bridge is stopping: what is cut short now is not the server's failure.
            debug!("{} ended with the bridge", message.kind);
            return;
        }
        let reason = self.redact(format!("{} {failure}", self.shown_url));
        match (&message.kind, delivery.answered) {
            (Kind::Request { id, .. }, false) => {
                warn!("{} failed: {reason}", message.kind);
                self.out.send(Message::error_answer(id, &reason, failure.http_status())).await;
            }
            (kind, _) => warn!("{kind} could not be delivered: {reason}"),
        }
    }

    /// POSTs `message` with `session`'s headers and relays the answer to `delivery`.
    pub(super) async fn post(
        &self,
        message: &Message,
        session: &Snapshot,
        delivery: &mut Delivery,
    ) -> Result<Posted, Failure> {
        let request = self
            .request(reqwest::Method::POST, session)
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json, text/event-stream")
            .body(message.line.clone());
        let response = self.send(request).await?;
        let status = response.status();
        if status == StatusCode::NOT_FOUND && session.id.is_some() {
            return Ok(Posted::SessionGone);
        }
        if !status.is_success() {
            return Err(Failure::status(response, session.id.is_some()).await);
        }
        let session_id = response.headers().get(MCP_SESSION_ID).cloned();
        if is_event_stream(response.headers()) {
            self.follow(response, session, delivery).await?;
        } else if status != StatusCode::ACCEPTED {
            let body = self.json_body(response).await?;
            if !body.iter().all(u8::is_ascii_whitespace) {
                let body = body.strip_prefix("\u{feff}".as_bytes()).unwrap_or(&body);
                let text = String::from_utf8_lossy(body);
                match Message::parse_all(&text) {
                    Ok(messages) => {
                        for m in messages {
                            delivery.take(m).await;
                        }
                    }
                    Err(e) => warn!("the MCP server's answer (HTTP {status}) is {e}"),
                }
            }
        }
        Ok(Posted::Done { status, session_id })
    }

    /// A JSON answer's body: whole within `--timeout` of its head, and no larger than an event
    /// may be, so a server that trickles or never ends its body holds nothing up for long.
    async fn json_body(&self, mut response: reqwest::Response) -> Result<Vec<u8>, Failure> {
        let mut body = Vec::new();
        let read = async {
            while let Some(chunk) = response.chunk().await.map_err(|e| Failure::from_reqwest(&e))? {
                if body.len() + chunk.len() > MAX_EVENT {
                    return Err(Failure::TooLarge);
                }
                body.extend_from_slice(&chunk);
            }
            Ok(())
        };
        match tokio::time::timeout(self.answer_timeout, read).await {
            Ok(read) => read.map(|()| body),
            Err(_) => Err(Failure::Timeout(self.answer_timeout)),
        }
    }

    /// Relays a POST's event stream until it ends; if it ends before the awaited answer after
    /// giving event ids, resumes it with a GET and `Last-Event-ID` (MCP 2025-11-25,
    /// "Resumability and Redelivery"), honouring `retry`, as long as each resumption brings
    /// something new. The request itself is never sent again.
    async fn follow(
        &self,
        mut response: reqwest::Response,
        session: &Snapshot,
        delivery: &mut Delivery,
    ) -> Result<(), Failure> {
        let mut cursor = Cursor::default();
        loop {
            let before = cursor.last_event_id.clone();
            let ended = self.relay_events(response, &mut cursor, delivery).await;
            if delivery.answered || delivery.awaited.is_none() {
                return Ok(());
            }
            if let Err(broke) = &ended {
                debug!("a POST's event stream broke: {broke}");
            }
            if cursor.last_event_id.is_none() || (before.is_some() && cursor.last_event_id == before) {
                return Err(ended.err().unwrap_or(Failure::StreamEnded));
            }
            tokio::time::sleep(cursor.retry.unwrap_or_default()).await;
            response = match self.open_stream(session, &cursor).await? {
                response if response.status().is_success() && is_event_stream(response.headers()) => response,
                response => return Err(Failure::status(response, true).await),
            };
        }
    }

    /// Opens a session for the host again after the server lost session `gone`: replays the
    /// host's `initialize` and `notifications/initialized`, their answers kept off stdout. Of
    /// several requests that found the session gone, the first reopens it; the others wait and
    /// take the result.
    async fn reopen(self: &Arc<Self>, gone: u64) -> Result<Snapshot, Failure> {
        let _one_at_a_time = self.reopening.lock().await;
        let current = self.session.current();
        if current.generation != gone {
            return Ok(current);
        }
        let handshake = self.session.handshake().ok_or(Failure::NoHandshake)?;
        let fail = |f: Failure| Failure::Reinitialize(Box::new(f));
        let mut delivery = Delivery::new(None, &handshake.initialize);
        let session_id = match self.post(&handshake.initialize, &Snapshot::default(), &mut delivery).await {
            Ok(Posted::Done { session_id, status }) => match &delivery.protocol_version {
                Some(_) => session_id,
                None => return Err(fail(Failure::NoAnswer(status))),
            },
            Ok(Posted::SessionGone) => unreachable!("initialize carries no session id"),
            Err(failure) => return Err(fail(failure)),
        };
        let reopened = self.session.begin(session_id, delivery.protocol_version);
        debug!(generation = reopened.generation, "the MCP server lost the session; a new one is open");
        if let Some(initialized) = &handshake.initialized {
            match self.post(initialized, &reopened, &mut Delivery::new(None, initialized)).await {
                Ok(Posted::Done { .. }) => self.start_stream(reopened.clone()).await,
                Ok(Posted::SessionGone) => return Err(fail(session_gone())),
                Err(failure) => return Err(fail(failure)),
            }
        }
        Ok(reopened)
    }
}

/// A second 404 for a session: the server lost the new one too.
fn session_gone() -> Failure {
    Failure::Status { status: StatusCode::NOT_FOUND, detail: None, had_session: true }
}

pub(super) fn is_event_stream(headers: &reqwest::header::HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("text/event-stream"))
}
