//! The client side of the socket API, used by the CLI verbs (`token`, `report-401`, `refresh`,
//! `status`, `watch`): HTTP/1.1 over the Unix socket with hyper's client.

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

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot reach the daemon at {path}: {reason} (is it running? --socket or MCP_TOKEN_SYNC_SOCKET name the socket)"
    )]
    Unreachable { path: PathBuf, reason: String },
    #[error("the daemon at {path} did not answer properly: {reason}")]
    Protocol { path: PathBuf, reason: String },
    #[error(
        "the daemon at {path} accepted the connection but did not answer within {limit}: is it stopped or \
         stuck? (see its log; --timeout waits longer)"
    )]
    Silent { path: PathBuf, limit: String },
}

/// A complete answer. The body may hold the token, so it is zeroed on drop.
pub struct Answer {
    pub status: StatusCode,
    pub body: Zeroizing<Vec<u8>>,
}

impl Answer {
    /// `detail` (or `error`) of an error body, for a one-line message.
    pub fn detail(&self) -> String {
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v.get("detail").or(v.get("error")).and_then(|d| d.as_str()).map(str::to_owned))
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

    /// Connects, waiting out a full accept queue: a daemon under a connection flood is busy, not
    /// gone.
    async fn connect(&self) -> Result<UnixStream, ClientError> {
        let give_up = tokio::time::Instant::now() + BUSY_PATIENCE;
        let mut attempts = 0;
        loop {
            match UnixStream::connect(&self.socket).await {
                Ok(stream) => return Ok(stream),
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
