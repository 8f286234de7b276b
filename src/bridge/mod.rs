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
mod message;
mod out;
mod session;
mod stdio;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName};
use tokio::io::AsyncBufReadExt;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};
use url::Url;

use message::Message;
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

/// Why the bridge could not start.
#[derive(Debug, thiserror::Error)]
#[error("the HTTP client could not be set up: {0}")]
pub struct SetupError(String);

impl Bridge {
    /// Relays stdin to `url` and answers to stdout until stdin closes or SIGTERM/SIGINT comes;
    /// then deletes the session. Sends nothing before the host's first message.
    pub async fn run(url: Url, extra: HeaderMap, answer_timeout: Duration) -> Result<(), SetupError> {
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
        let bridge = Arc::new(Bridge {
            client,
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
        let stdin_closed = bridge.read_stdin(&in_flight).await;
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

    /// Reads the host's messages and starts each one's task, until stdin closes (`true`), a
    /// signal comes or stdout is gone (`false`).
    async fn read_stdin(self: &Arc<Self>, in_flight: &TaskTracker) -> bool {
        let mut terminate = signal(SignalKind::terminate()).expect("signal handlers install");
        let mut interrupt = signal(SignalKind::interrupt()).expect("signal handlers install");
        // The host's terminal closing is the host going away too.
        let mut hangup = signal(SignalKind::hangup()).expect("signal handlers install");
        let mut stdin = tokio::io::BufReader::new(stdio::stdin());
        let mut line = Vec::new();
        let mut handshake = Handshake::default();
        loop {
            line.clear();
            tokio::select! {
                read = stdin.read_until(b'\n', &mut line) => match read {
                    Ok(0) => return true,
                    Ok(_) => self.take_line(&line, &mut handshake, in_flight).await,
                    Err(e) => {
                        warn!("stdin could not be read: {e}");
                        return true;
                    }
                },
                _ = terminate.recv() => return false,
                _ = interrupt.recv() => return false,
                _ = hangup.recv() => return false,
                () = self.ending.cancelled() => return false,
            }
        }
    }

    async fn take_line(self: &Arc<Self>, line: &[u8], handshake: &mut Handshake, in_flight: &TaskTracker) {
        let text = String::from_utf8_lossy(line);
        if text.trim().is_empty() {
            return;
        }
        match Message::parse_all(&text) {
            Ok(messages) => {
                for message in messages {
                    debug!("from the host: {}", message.kind);
                    let mut turn = handshake.turn(&message);
                    let this = Arc::clone(self);
                    in_flight.spawn(async move {
                        turn.wait().await;
                        this.relay(message).await;
                        drop(turn);
                    });
                }
            }
            Err(e) => {
                warn!("the host sent a line that is {e}");
                self.out.send(Message::refusal(&e)).await;
            }
        }
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
