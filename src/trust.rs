//! DESIGN §12, "a loopback listener is not trusted for being on loopback": any local user may
//! bind a free loopback port while the real service is down (boot order, a restart), and would
//! then get the token (a proxy's upstream) or the backend credential and the right to choose
//! the token (the source). So every plain-http connection the daemon makes to a loopback address
//! is checked after `connect()` and before its first byte: the server's end of our own
//! connection carries the uid that opened its listener (whether it listens on 127.0.0.1,
//! 0.0.0.0 or `[::]`), and only root, the daemon's uid and `trust_uids` are sent anything.
//!
//! Nor is a listener of this daemon's own (a proxy, a login's callback) ever sent a request by
//! it: a URL the daemon did not choose (discovered from a server's answer) could otherwise make
//! it deliver a login redirect to itself, or use another token's proxy, as root or as its own
//! uid, which those listeners serve. [`OwnListener`] registers them while they listen.
//!
//! [`TrustLayer`] wraps a connector (hyper-util's for the proxy, reqwest's for the source) in
//! that check, so a refused connection is closed unused and the request fails with
//! [`Untrusted`] in its error chain.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use hyper::http::Extensions;
use hyper_util::client::legacy::connect::{Connection, HttpInfo};

use crate::server::BoxError;
use crate::sock_diag;

/// Whose loopback listeners may be sent requests: root, the daemon's uid and `uids`.
#[derive(Debug, Clone)]
pub struct Trust {
    own_uid: u32,
    uids: Vec<u32>,
    /// The config key that lists more, for the error message (`source.trust_uids`).
    key: String,
}

/// Why a connection to a loopback server was closed unused.
#[derive(Debug, thiserror::Error)]
pub enum Untrusted {
    #[error(
        "the listener at {address} belongs to uid {uid}, not root, the daemon's uid or {key}: nothing was \
         sent to it (another user may have taken the port while the real service is down); if uid {uid} \
         runs the real service, add it to {key}"
    )]
    Owner { address: SocketAddr, uid: u32, key: String },
    #[error("cannot tell who listens at {address}, so nothing was sent to it: {reason}")]
    Unknown { address: SocketAddr, reason: String },
    #[error(
        "{address} is this daemon's own listener (a proxy, or a login's callback): the daemon sends no \
         request to itself, so nothing was sent to it"
    )]
    Own { address: SocketAddr },
}

/// The loopback addresses this process listens on for others, each as often as it is bound.
static OWN_LISTENERS: Mutex<Vec<SocketAddr>> = Mutex::new(Vec::new());

/// A listener of this daemon's, registered while this lives: the daemon's own HTTP clients
/// refuse to connect to it.
#[derive(Debug)]
pub struct OwnListener(SocketAddr);

impl OwnListener {
    /// Registers `bound` (its port known: after bind, before listen).
    pub fn new(bound: SocketAddr) -> OwnListener {
        own_listeners().push(bound);
        OwnListener(bound)
    }
}

impl Drop for OwnListener {
    fn drop(&mut self) {
        let mut own = own_listeners();
        if let Some(at) = own.iter().position(|a| *a == self.0) {
            own.swap_remove(at);
        }
    }
}

/// Every writer leaves the list whole: a poisoned lock still holds it.
fn own_listeners() -> std::sync::MutexGuard<'static, Vec<SocketAddr>> {
    OWN_LISTENERS.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Whether a connection to `remote` reaches a listener of this process's (one bound to a
/// wildcard address takes every address of its family's loopback).
fn is_own(remote: SocketAddr) -> bool {
    let ip = remote.ip().to_canonical();
    own_listeners().iter().any(|own| {
        own.port() == remote.port() && (own.ip().to_canonical() == ip || own.ip().is_unspecified())
    })
}

impl Trust {
    /// `key` names the config key that holds `uids`.
    pub fn new(uids: &[u32], key: impl Into<String>) -> Trust {
        Trust { own_uid: nix::unistd::geteuid().as_raw(), uids: uids.to_vec(), key: key.into() }
    }

    /// Checks our connection from `local` to `remote`; anything not on loopback passes.
    pub fn check(&self, local: SocketAddr, remote: SocketAddr) -> Result<(), Untrusted> {
        let ip = remote.ip().to_canonical();
        if !(ip.is_loopback() || ip.is_unspecified()) {
            return Ok(());
        }
        if is_own(remote) {
            return Err(Untrusted::Own { address: remote });
        }
        let unknown = |reason: String| Untrusted::Unknown { address: remote, reason };
        let server_end = sock_diag::lookup(remote, local).map_err(|e| unknown(e.to_string()))?;
        if !server_end.has_owner() {
            return Err(unknown(format!(
                "its end of the connection is in {}",
                sock_diag::state_name(server_end.state)
            )));
        }
        let uid = server_end.uid;
        if uid == 0 || uid == self.own_uid || self.uids.contains(&uid) {
            Ok(())
        } else {
            Err(Untrusted::Owner { address: remote, uid, key: self.key.clone() })
        }
    }
}

/// Wraps a connector in the [`Trust`] check (a tower layer, as reqwest's `connector_layer`
/// takes it).
#[derive(Clone)]
pub struct TrustLayer(Arc<Trust>);

impl TrustLayer {
    pub fn new(trust: Trust) -> TrustLayer {
        TrustLayer(Arc::new(trust))
    }
}

impl<S> tower_layer::Layer<S> for TrustLayer {
    type Service = Checked<S>;

    fn layer(&self, inner: S) -> Checked<S> {
        Checked { inner, trust: Some(self.0.clone()) }
    }
}

/// A connector whose connections have passed the [`Trust`] check, if it has one.
#[derive(Clone)]
pub struct Checked<S> {
    inner: S,
    /// `None` for a connector that only speaks TLS, where the certificate proves who answers.
    trust: Option<Arc<Trust>>,
}

impl<S> Checked<S> {
    pub fn new(inner: S, trust: Option<Trust>) -> Checked<S> {
        Checked { inner, trust: trust.map(Arc::new) }
    }
}

impl<S, R> tower_service::Service<R> for Checked<S>
where
    S: tower_service::Service<R>,
    S::Response: Connection + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: R) -> Self::Future {
        let connecting = self.inner.call(request);
        let trust = self.trust.clone();
        Box::pin(async move {
            let connection = connecting.await.map_err(Into::into)?;
            let Some(trust) = trust else { return Ok(connection) };
            let mut extras = Extensions::new();
            connection.connected().get_extras(&mut extras);
            // Every TCP connection of hyper-util's connector carries its addresses; without
            // them there is nothing to check, and nothing is sent.
            let info = extras.get::<HttpInfo>().ok_or("the connection does not say where it goes")?;
            trust.check(info.local_addr(), info.remote_addr())?;
            Ok(connection)
        })
    }
}

/// The [`Untrusted`] refusal in an error's chain, if that is why it failed.
pub fn untrusted<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a Untrusted> {
    std::iter::successors(Some(error), |e| e.source()).find_map(|e| e.downcast_ref::<Untrusted>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connection(listener: &std::net::TcpListener) -> (SocketAddr, SocketAddr) {
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let pair = (client.local_addr().unwrap(), client.peer_addr().unwrap());
        std::mem::forget(client); // kept open for the lookup; the test process ends soon
        pair
    }

    #[test]
    fn our_own_listener_is_trusted_on_either_family_and_a_wildcard() {
        for address in ["127.0.0.1:0", "[::1]:0", "0.0.0.0:0"] {
            let listener = std::net::TcpListener::bind(address).unwrap();
            let (local, mut remote) = connection(&listener);
            if remote.ip().is_unspecified() {
                remote.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            Trust::new(&[], "source.trust_uids").check(local, remote).expect("our own uid is trusted");
        }
    }

    #[test]
    fn our_own_registered_listener_is_never_sent_anything() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (local, remote) = connection(&listener);
        let trust = Trust::new(&[], "source.trust_uids");
        let own = OwnListener::new(listener.local_addr().unwrap());
        let refused = trust.check(local, remote).unwrap_err();
        assert!(matches!(refused, Untrusted::Own { .. }), "{refused}");
        drop(own);
        trust.check(local, remote).expect("no longer ours to refuse");
        // A wildcard listener takes the loopback addresses too.
        let wildcard = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
        let port = wildcard.local_addr().unwrap().port();
        let _own = OwnListener::new(wildcard.local_addr().unwrap());
        assert!(is_own(SocketAddr::from(([127, 0, 0, 1], port))));
        assert!(!is_own(SocketAddr::from(([127, 0, 0, 1], port.wrapping_add(1)))));
    }

    #[test]
    fn a_connection_nobody_holds_is_not_trusted() {
        let nowhere: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let here: SocketAddr = "127.0.0.1:2".parse().unwrap();
        let refused = Trust::new(&[], "source.trust_uids").check(here, nowhere).unwrap_err();
        assert!(matches!(refused, Untrusted::Unknown { .. }), "{refused}");
        // Off loopback there is nothing to look up.
        let remote: SocketAddr = "192.0.2.1:80".parse().unwrap();
        Trust::new(&[], "k").check(here, remote).unwrap();
    }
}
