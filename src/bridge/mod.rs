//! `mcp-token-sync bridge URL` (DESIGN §14): MCP's stdio transport for a host that speaks only
//! stdio (Claude Desktop), relayed to a Streamable HTTP endpoint, normally a proxy sink that
//! holds the token. The bridge has no OAuth and no token of its own.
//!
//! A message's way through: a line from stdin is parsed only as far as routing needs
//! (`message`); each message gets its own task that POSTs it and relays the answer, a JSON body
//! or an event stream, to stdout (`exchange`, `events`), where one writer puts each message on
//! a line of its own (`out`). Requests are concurrent because the server may ask the host
//! something while a tool call's POST is still open, and the host's answer is a POST of its own.
//! The session (`session`) is the server's `Mcp-Session-Id` and the negotiated version; when the
//! server loses it (404), the host's handshake is replayed and the message sent again, once.
//! After initialization the GET stream (`events`) carries what the server sends on its own.

mod events;
mod exchange;
mod failure;
mod input;
mod message;
mod out;
mod session;
mod sse_guard;
mod stdio;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};
use url::Url;

use session::{Session, Snapshot};

const MCP_SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");
const MCP_PROTOCOL_VERSION: HeaderName = HeaderName::from_static("mcp-protocol-version");

/// Headers the bridge sets itself, and hop-by-hop headers (RFC 9110 §7.6.1) that describe a
/// connection, not a request: `--header` may not name them.
pub const RESERVED_HEADERS: [&str; 14] = [
    "accept",
    "content-type",
    "content-length",
    "transfer-encoding",
    "host",
    "last-event-id",
    "mcp-session-id",
    "mcp-protocol-version",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

/// Idle connections to the server are closed after this long: below the keep-alive timeouts
/// of common servers (uvicorn's and Node's 5 s), so that a request never goes out on a
/// connection the server is closing at that moment. A tool call's POST must not be sent twice.
const IDLE: Duration = Duration::from_secs(4);
/// A connection that takes longer than this is a failure the host hears about.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// After stdin closes, answers still on their way get this long to reach the host.
const DRAIN: Duration = Duration::from_millis(500);
/// The session's DELETE at the end waits no longer than this (DESIGN §14).
const DELETE_WAIT: Duration = Duration::from_secs(1);

/// The bridge: what every message's task shares.
pub struct Bridge {
    client: reqwest::Client,
    url: Url,
    /// The URL as messages show it: without a query, which may carry a key.
    shown_url: String,
    /// `--header`s, on every request.
    extra: HeaderMap,
    session: Session,
    /// Held while a lost session is reopened, so only one request reopens it.
    reopening: tokio::sync::Mutex<()>,
    /// The GET stream's stop, while one is open.
    stream: Mutex<Option<CancellationToken>>,
    out: out::Out,
    /// Fires when the bridge ends: stdin closed, a signal, or stdout gone.
    ending: CancellationToken,
    /// How long the server may take to begin an answer (`--timeout`).
    answer_timeout: Duration,
}

/// Why the bridge could not start.
#[derive(Debug, thiserror::Error)]
#[error("the HTTP client could not be set up: {0}")]
pub struct SetupError(String);

impl Bridge {
    /// Relays stdin to `url` and answers to stdout until stdin closes or SIGTERM/SIGINT comes;
    /// then deletes the session. Sends nothing before the host's first message.
    pub async fn run(url: Url, extra: HeaderMap, answer_timeout: Duration) -> Result<(), SetupError> {
        // First, so that a host stopping the bridge at once still gets a clean end.
        let mut signals = input::Signals::install();
        let client = reqwest::Client::builder()
            .user_agent(concat!("mcp-token-sync-bridge/", env!("CARGO_PKG_VERSION")))
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .http1_only()
            .pool_idle_timeout(IDLE)
            .connect_timeout(CONNECT_TIMEOUT)
            // Loading the system's roots costs milliseconds at every start; plain http needs none.
            .tls_built_in_root_certs(url.scheme() == "https")
            .build()
            .map_err(|e| SetupError(crate::source::describe(&e)))?;
        let ending = CancellationToken::new();
        let (out, writer) = out::start(ending.clone());
        let mut shown = url.clone();
        if shown.query().is_some() {
            shown.set_query(Some("…"));
        }
        shown.set_fragment(None);
        let bridge = Arc::new(Bridge {
            client,
            shown_url: shown.to_string(),
            url,
            extra,
            session: Session::default(),
            reopening: tokio::sync::Mutex::new(()),
            stream: Mutex::new(None),
            out,
            ending,
            answer_timeout,
        });
        let in_flight = TaskTracker::new();
        let stdin_closed = bridge.read_stdin(&mut signals, &in_flight).await;
        in_flight.close();
        if stdin_closed && tokio::time::timeout(DRAIN, in_flight.wait()).await.is_err() {
            warn!(
                "stdin closed; {} message(s) still had no answer after {DRAIN:?} and are dropped",
                in_flight.len()
            );
        }
        // The writer puts out what is queued, meanwhile the session ends.
        bridge.ending.cancel();
        let _ = tokio::join!(bridge.end_session(), tokio::time::timeout(DRAIN, writer));
        Ok(())
    }

    /// A request to the server with the headers every request carries: `--header`s, and the
    /// session's id and version once there is a session.
    fn request(&self, method: reqwest::Method, session: &Snapshot) -> reqwest::RequestBuilder {
        let mut request = self.client.request(method, self.url.clone()).headers(self.extra.clone());
        if let Some(id) = &session.id {
            request = request.header(MCP_SESSION_ID, id.clone());
        }
        if let Some(version) = &session.protocol_version {
            request = request.header(MCP_PROTOCOL_VERSION, version.clone());
        }
        request
    }

    /// Sends `request`, giving up when no answer begins within `--timeout`.
    async fn send(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response, failure::Failure> {
        match tokio::time::timeout(self.answer_timeout, request.send()).await {
            Ok(sent) => sent.map_err(|e| failure::Failure::from_reqwest(&e)),
            Err(_) => Err(failure::Failure::Timeout(self.answer_timeout)),
        }
    }

    /// `text` with every `--header` value cut out: a server may echo request headers in an
    /// error, and the error goes to stdout and the log.
    fn redact(&self, text: String) -> String {
        self.extra
            .values()
            .filter_map(|v| v.to_str().ok())
            .filter(|v| v.len() >= 4)
            .fold(text, |text, value| text.replace(value, "[a --header value]"))
    }

    /// Ends the session on the server (MCP 2025-06-18: the client SHOULD send DELETE), so it
    /// does not keep state for a host that is gone.
    async fn end_session(&self) {
        let session = self.session.current();
        if session.id.is_none() {
            return;
        }
        match tokio::time::timeout(DELETE_WAIT, self.request(reqwest::Method::DELETE, &session).send()).await
        {
            Ok(Ok(answer)) => debug!(status = %answer.status(), "the session was deleted"),
            Ok(Err(e)) => debug!("the session's DELETE failed: {}", crate::source::describe(&e)),
            Err(_) => debug!("the session's DELETE got no answer within {DELETE_WAIT:?}"),
        }
    }
}
