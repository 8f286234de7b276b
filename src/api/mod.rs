//! The client API: HTTP/1.1 over Unix sockets (DESIGN §7, §15).
//!
//! Each `socket` sink is one listening socket with its own mode and peer ACL, served by the
//! shared `crate::server`. What it serves is its [`Scope`]: a token's own socket serves that
//! token, on the unnamed paths of §7 and under `/v1/tokens/NAME`; a daemon-wide socket serves
//! every token under its name, and the whole daemon on `/v1/status`, `/v1/health` and
//! `/v1/refresh`. Either finds tokens in the daemon's [`Registry`], by name (`routes`), and
//! answers for one token with the same handlers (`token`, `report`, `login`, `status`).

mod all;
mod login;
mod reads;
mod report;
mod respond;
mod routes;
mod status;

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, Response};
use tokio::sync::watch;

use crate::config::SocketSinkConfig;
use crate::metrics::Metrics;
use crate::registry::{Registry, TokenHandle};
use crate::server::{Acl, BindError, Handler, Listener, Peer, Server};
use crate::sinks::SinkReport;

pub use respond::{Body, error};

/// Which tokens a socket serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// A token's own sink: that token, on the unnamed paths too.
    Token(String),
    /// A daemon-wide sink (a top-level `[[sink]]` of a config with `[tokens.NAME]`): every
    /// token, each under its name, as far as the token's own `allow_uids`/`allow_gids` allow.
    All,
}

/// What every request's handler reads.
pub struct Shared {
    pub scope: Scope,
    pub tokens: Registry,
    /// The daemon-wide sinks' reports, shown by a daemon-wide `/v1/status`.
    pub sinks: watch::Receiver<Vec<watch::Receiver<SinkReport>>>,
    pub metrics: Arc<Metrics>,
}

impl Shared {
    /// The token `name`, if this socket serves it to `peer`; one it may not read is answered
    /// exactly as a name that does not exist.
    fn token(&self, name: &str, peer: &Peer) -> Option<Arc<TokenHandle>> {
        let token = self.tokens.borrow().get(name).cloned()?;
        match &self.scope {
            Scope::Token(own) => (own == name).then_some(token),
            Scope::All => token.readable_by(peer).then_some(token),
        }
    }

    /// Every token this socket serves to `peer`, by name.
    fn readable(&self, peer: &Peer) -> Vec<Arc<TokenHandle>> {
        let tokens = self.tokens.borrow().clone();
        tokens.values().filter(|t| self.token(&t.name, peer).is_some()).cloned().collect()
    }
}

/// The routes, as a `Handler` for the server.
pub struct Api(pub Arc<Shared>);

impl Handler for Api {
    type Body = Body;

    async fn handle(&self, request: Request<Incoming>, peer: Peer) -> Response<Body> {
        routes::handle(&self.0, request, peer).await
    }

    fn forbidden(&self) -> Response<Body> {
        routes::forbidden()
    }
}

/// Binds one socket sink's socket; needs a running tokio runtime.
pub fn server(config: &SocketSinkConfig, shared: Arc<Shared>) -> Result<Server<Api>, BindError> {
    Ok(Server {
        listener: Listener::unix(&config.path, config.mode)?,
        acl: Acl::new(&config.allow_uids, &config.allow_gids),
        max_connections: config.max_connections,
        streams_give_way: true,
        // `printf 'GET …' | nc -N -U api.sock` closes its side after the request; without this,
        // hyper may drop the connection on seeing the end of input before answering.
        half_close: true,
        metrics: shared.metrics.clone(),
        handler: Arc::new(Api(shared)),
    })
}
