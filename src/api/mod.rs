//! The client API: HTTP/1.1 over Unix sockets (DESIGN §7).
//!
//! Each `socket` sink is one listening socket with its own mode and peer ACL, served by the
//! shared `crate::server`; all of them answer the same `routes` from the same [`Shared`]
//! view of the daemon.

mod login;
mod report;
mod respond;
mod routes;
mod status;

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, Response};
use tokio::sync::watch;

use crate::config::{Config, SocketSinkConfig};
use crate::engine::EngineHandle;
use crate::metrics::Metrics;
use crate::server::{Acl, BindError, Handler, Listener, Peer, Server};
use crate::sinks::SinkReport;
use crate::token::TokenState;

pub use respond::{Body, error};

/// What every request's handler reads. Sinks and config change on reload.
pub struct Shared {
    pub engine: EngineHandle,
    /// The engine's token channel, read by every token request without cloning a receiver.
    token: watch::Receiver<TokenState>,
    /// Every sink's report, sockets and proxies included, for status and health.
    pub sinks: watch::Receiver<Vec<watch::Receiver<SinkReport>>>,
    pub config: watch::Receiver<Arc<Config>>,
    pub metrics: Arc<Metrics>,
    /// Held while a login runs: one at a time.
    login: Arc<tokio::sync::Mutex<()>>,
}

impl Shared {
    pub fn new(
        engine: EngineHandle,
        sinks: watch::Receiver<Vec<watch::Receiver<SinkReport>>>,
        config: watch::Receiver<Arc<Config>>,
        metrics: Arc<Metrics>,
    ) -> Shared {
        Shared { token: engine.token(), engine, sinks, config, metrics, login: Arc::default() }
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
