//! The MCP session the bridge holds for its host (Streamable HTTP, MCP 2025-06-18 "Session
//! Management"): the `Mcp-Session-Id` the server gave at initialization, the negotiated
//! `MCP-Protocol-Version`, and the host's own `initialize` and `notifications/initialized`, kept
//! to open a new session when the server forgets this one.

use std::sync::Mutex;

use reqwest::header::HeaderValue;

use super::message::Message;

/// What every request after initialization carries, as one consistent snapshot.
#[derive(Debug, Clone, Default)]
pub(crate) struct Snapshot {
    /// `Mcp-Session-Id`, if the server gave one (a stateless server does not).
    pub id: Option<HeaderValue>,
    /// `MCP-Protocol-Version`: the `protocolVersion` of the initialize result.
    pub protocol_version: Option<HeaderValue>,
    /// Which session this is: bumped by every initialization, so that of several requests that
    /// all find the session gone, one opens the next and the others use it.
    pub generation: u64,
}

#[derive(Default)]
struct State {
    current: Snapshot,
    /// The host's `initialize` request, as it sent it.
    initialize: Option<Message>,
    /// The host's `notifications/initialized`, once sent.
    initialized: Option<Message>,
}

/// The session, shared by every request in flight.
#[derive(Default)]
pub(crate) struct Session {
    state: Mutex<State>,
}

/// The host's two initialization messages, to send again for a new session.
pub(crate) struct Handshake {
    pub initialize: Message,
    pub initialized: Option<Message>,
}

impl Session {
    pub fn current(&self) -> Snapshot {
        self.lock().current.clone()
    }

    /// The host sent `initialize` (its first message, or again to start over).
    pub fn host_initializes(&self, initialize: &Message) {
        let mut state = self.lock();
        state.initialize = Some(initialize.clone());
        state.initialized = None;
    }

    /// The host sent `notifications/initialized` and the server took it.
    pub fn host_initialized(&self, initialized: &Message) {
        self.lock().initialized = Some(initialized.clone());
    }

    pub fn handshake(&self) -> Option<Handshake> {
        let state = self.lock();
        let initialize = state.initialize.clone()?;
        Some(Handshake { initialize, initialized: state.initialized.clone() })
    }

    /// A session begins: the server's `Mcp-Session-Id` and the negotiated version. Returns it.
    pub fn begin(&self, id: Option<HeaderValue>, protocol_version: Option<HeaderValue>) -> Snapshot {
        let mut state = self.lock();
        let generation = state.current.generation + 1;
        state.current = Snapshot { id, protocol_version, generation };
        state.current.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every writer leaves the state whole, so a panic elsewhere does not poison its meaning.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
