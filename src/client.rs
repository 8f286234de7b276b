//! The client side of the socket API, used by the CLI verbs (`token`, `report-401`, `refresh`,
//! `status`, `watch`, `login`): HTTP/1.1 over the Unix socket with hyper's client.
//!
//! A socket path is only a name: while the daemon is stopped, any local user who can write in
//! its directory may serve one there, and hand the verbs a token of their choosing, or a login
//! URL. So the verbs talk only to a server the kernel says is root, the caller's own uid, or the
//! daemon's service user (`mcp-token-sync`, or the user `MCP_TOKEN_SYNC_DAEMON_USER` names:
//! DESIGN §13, "The client verbs trust only their daemon").

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use zeroize::Zeroizing;

use crate::backoff::Backoff;

/// How long a connect retries while the daemon's accept queue is full (EAGAIN on a Unix socket).
const BUSY_PATIENCE: Duration = Duration::from_secs(5);
const BUSY_RETRY: Backoff = Backoff::new(Duration::from_millis(1), Duration::from_millis(100));

/// Longest a call waits unless told otherwise: a refresh the daemon waits on for up to 60 s,
/// plus slack. The CLI's verbs set their own (`--timeout`).
const CALL_TIMEOUT: Duration = Duration::from_secs(70);

/// The packaged service's user (debian/, systemd/mcp-token-sync.sysusers).
const SERVICE_USER: &str = "mcp-token-sync";

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "the socket {path} is served by uid {uid}, not root, your own uid or the daemon's user ({expected}): \
         not talking to it (another user may have taken the path while the daemon is down; if uid {uid} \
         runs the daemon, set MCP_TOKEN_SYNC_DAEMON_USER to its user)"
    )]
    Untrusted { path: PathBuf, uid: u32, expected: String },
    #[error(
        "cannot reach the daemon at {path}: {reason} (is it running? --socket or MCP_TOKEN_SYNC_SOCKET name the socket)"
    )]
    Unreachable { path: PathBuf, reason: String },
    #[error("the daemon at {path} did not answer properly: {reason}")]
    Protocol { path: PathBuf, reason: String },
    #[error(
        "the daemon at {path} accepted the connection but did not answer within {limit}: a fetch it waits \
         for may take longer (a source's timeout can), or it is stopped or stuck; --timeout waits longer, \
         and its log says which"
    )]
    Silent { path: PathBuf, limit: String },
}

/// Whether a server running as `server` may be talked to by a client running as `own`, where
/// the daemon's user is `daemon` (when that user exists).
fn trusted_server(server: u32, own: u32, daemon: Option<u32>) -> bool {
    server == 0 || server == own || Some(server) == daemon
}

/// The uid of `user`, a name or a number.
fn user_uid(user: &str) -> Option<u32> {
    user.parse().ok().or_else(|| nix::unistd::User::from_name(user).ok().flatten().map(|u| u.uid.as_raw()))
}

/// A complete answer. The body may hold the token, so it is zeroed on drop.
pub struct Answer {
    pub status: StatusCode,
    pub body: Zeroizing<Vec<u8>>,
}

impl Answer {
    /// `detail` (or `error`) of an error body, for a one-line message on a terminal: made
    /// printable.
    pub fn detail(&self) -> String {
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| {
                v.get("detail")
                    .or(v.get("error"))
                    .and_then(|d| d.as_str())
                    .map(|d| crate::text::printable(d, 500))
            })
            .unwrap_or_else(|| format!("HTTP {}", self.status))
    }
}

pub struct Client {
    socket: PathBuf,
    /// How long one exchange may take, connecting included.
    timeout: Duration,
}

impl Client {
    pub fn new(socket: &Path) -> Client {
        Client { socket: socket.to_owned(), timeout: CALL_TIMEOUT }
    }

    pub fn with_timeout(self, timeout: Duration) -> Client {
        Client { timeout, ..self }
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn silent(&self) -> ClientError {
        ClientError::Silent {
            path: self.socket.clone(),
            limit: crate::config::duration_display(self.timeout),
        }
    }

    fn protocol(&self, reason: impl ToString) -> ClientError {
        ClientError::Protocol { path: self.socket.clone(), reason: reason.to_string() }
    }

    /// Connects, waiting out a full accept queue (a daemon under a connection flood is busy, not
    /// gone), to a server [`trusted_server`] trusts.
    async fn connect(&self) -> Result<UnixStream, ClientError> {
        let give_up = tokio::time::Instant::now() + BUSY_PATIENCE;
        let mut attempts = 0;
        loop {
            match UnixStream::connect(&self.socket).await {
                Ok(stream) => return self.trusted(stream),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        && tokio::time::Instant::now() < give_up =>
                {
                    attempts += 1;
                    tokio::time::sleep(BUSY_RETRY.after(attempts)).await;
                }
                Err(e) => {
                    return Err(ClientError::Unreachable {
                        path: self.socket.clone(),
                        reason: e.to_string(),
                    });
                }
            }
        }
    }

    fn trusted(&self, stream: UnixStream) -> Result<UnixStream, ClientError> {
        let uid =
            stream.peer_cred().map_err(|e| self.protocol(format!("cannot tell who serves it: {e}")))?.uid();
        let daemon_user = std::env::var("MCP_TOKEN_SYNC_DAEMON_USER").ok().filter(|u| !u.is_empty());
        let expected = daemon_user.as_deref().unwrap_or(SERVICE_USER);
        if trusted_server(uid, nix::unistd::geteuid().as_raw(), user_uid(expected)) {
            Ok(stream)
        } else {
            Err(ClientError::Untrusted { path: self.socket.clone(), uid, expected: expected.to_owned() })
        }
    }

    /// Sends one request and returns the response with its body still streaming, once its head
    /// arrived within the timeout.
    pub async fn open(
        &self,
        method: Method,
        path: &str,
        body: Vec<u8>,
    ) -> Result<hyper::Response<Incoming>, ClientError> {
        tokio::time::timeout(self.timeout, self.exchange(method, path, body))
            .await
            .map_err(|_| self.silent())?
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Vec<u8>,
    ) -> Result<hyper::Response<Incoming>, ClientError> {
        let stream = self.connect().await?;
        let (mut sender, connection) =
            http1::handshake(TokioIo::new(stream)).await.map_err(|e| self.protocol(e))?;
        tokio::spawn(connection);
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, "localhost")
            .body(Full::new(Bytes::from(body)))
            .expect("a request from constant parts");
        sender.ready().await.map_err(|e| self.protocol(e))?;
        sender.send_request(request).await.map_err(|e| self.protocol(e))
    }

    /// Sends one request and reads the whole answer.
    pub async fn call(&self, method: Method, path: &str, body: Vec<u8>) -> Result<Answer, ClientError> {
        let exchange = async {
            let response = self.exchange(method, path, body).await?;
            let status = response.status();
            let collected = response.into_body().collect().await.map_err(|e| self.protocol(e))?;
            Ok(Answer { status, body: Zeroizing::new(collected.to_bytes().to_vec()) })
        };
        tokio::time::timeout(self.timeout, exchange).await.map_err(|_| self.silent())?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_root_our_own_uid_or_the_daemon_user_is_trusted() {
        assert!(trusted_server(0, 1000, None));
        assert!(trusted_server(1000, 1000, None));
        assert!(trusted_server(990, 1000, Some(990)));
        assert!(!trusted_server(65534, 1000, Some(990)));
        assert!(!trusted_server(65534, 1000, None));
        assert_eq!(user_uid("0"), Some(0));
        assert_eq!(user_uid("root"), Some(0));
        assert_eq!(user_uid("no-such-user-here"), None);
    }
}
