//! Why a message from the host got no answer, worded for the host's user: what answered (or
//! did not), the server's or proxy's own explanation when it gave one, and what to check.

use std::fmt;
use std::time::Duration;

use reqwest::StatusCode;

/// The most of an error answer's body read for its explanation.
const DETAIL_BODY: usize = 16 * 1024;
/// The explanation is cut to this many characters.
const DETAIL_CHARS: usize = 200;

/// Why a message got no answer from the server. Displayed after the URL.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The server (or the proxy in front of it) answered with an error status; `detail` is its
    /// own explanation, when its body had one.
    Status { status: StatusCode, detail: Option<String>, had_session: bool },
    /// No connection could be made.
    Unreachable(String),
    /// The connection broke, after the request may have been read: never sent again.
    Broken(String),
    /// No answer head within the bridge's `--timeout`.
    Timeout(Duration),
    /// The answer's event stream ended, or could not be resumed, before the answer.
    StreamEnded,
    /// The answer is larger than the bridge takes.
    TooLarge,
    /// The server answered, but not with the answer to this request.
    NoAnswer(StatusCode),
    /// The session was lost and the host never sent `initialize` through this bridge.
    NoHandshake,
    /// Opening a new session failed.
    Reinitialize(Box<Failure>),
}

impl Failure {
    pub fn from_reqwest(e: &reqwest::Error) -> Failure {
        let reason = crate::source::describe(e);
        if e.is_connect() { Failure::Unreachable(reason) } else { Failure::Broken(reason) }
    }

    /// The status for the error answer's `data`, when there was one.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            Failure::Status { status, .. } | Failure::NoAnswer(status) => Some(status.as_u16()),
            Failure::Reinitialize(inner) => inner.http_status(),
            _ => None,
        }
    }

    /// An error status, with the explanation in its answer's body.
    pub async fn status(response: reqwest::Response, had_session: bool) -> Failure {
        let status = response.status();
        let body = read_some(response).await;
        Failure::Status { status, detail: explanation(&body), had_session }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Status { status, detail, had_session } => {
                write!(f, "answered HTTP {status}")?;
                if let Some(detail) = detail {
                    write!(f, ": {detail}")?;
                }
                if *status == StatusCode::NOT_FOUND && !had_session {
                    write!(f, " (is this the MCP endpoint? it often ends in /mcp)")?;
                }
                Ok(())
            }
            Failure::Unreachable(reason) => write!(
                f,
                "could not be reached: {reason} (is the server, or the daemon with its proxy sink, running there?)"
            ),
            Failure::Broken(reason) => write!(f, "broke the connection before its answer: {reason}"),
            Failure::Timeout(limit) => write!(f, "sent no answer within {limit:?} (the bridge's --timeout)"),
            Failure::StreamEnded => write!(f, "ended its event stream before the answer"),
            Failure::TooLarge => {
                write!(f, "sent an answer larger than {} MiB", super::sse_guard::MAX_EVENT / (1024 * 1024))
            }
            Failure::NoAnswer(status) => write!(f, "answered HTTP {status} without an answer to the request"),
            Failure::NoHandshake => {
                write!(f, "lost the session, and the host never initialized through this bridge")
            }
            Failure::Reinitialize(inner) => write!(f, "lost the session; opening a new one, it {inner}"),
        }
    }
}

async fn read_some(mut response: reqwest::Response) -> Vec<u8> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        body.extend_from_slice(&chunk);
        if body.len() >= DETAIL_BODY {
            break;
        }
    }
    body
}

/// The explanation an error answer carries: the proxy's `{"error", "detail"}`, a JSON-RPC
/// error's `message`, an API's `message` or `error_description`, or a short text's first line.
/// Never an HTML page.
fn explanation(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let found = match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(object)) => {
            let field = |name: &str| object.get(name).and_then(|v| v.as_str()).map(str::to_owned);
            let rpc_message = object.get("error").and_then(|e| e.get("message")).and_then(|m| m.as_str());
            match (field("error"), field("detail").or_else(|| field("error_description"))) {
                (Some(error), Some(detail)) => Some(format!("{error}: {detail}")),
                (error, detail) => {
                    error.or(detail).or(rpc_message.map(str::to_owned)).or_else(|| field("message"))
                }
            }
        }
        Ok(_) => None,
        Err(_) if text.is_empty() || text.starts_with('<') => None,
        Err(_) => text.lines().next().map(str::to_owned),
    }?;
    Some(found.chars().take(DETAIL_CHARS).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_answers_are_explained_by_what_their_body_says() {
        let cases: [(&str, Option<&str>); 7] = [
            (
                r#"{"error":"forbidden","detail":"this user may not use the proxy; see its allow_uids/allow_gids"}"#,
                Some("forbidden: this user may not use the proxy; see its allow_uids/allow_gids"),
            ),
            (
                r#"{"jsonrpc":"2.0","id":"server-error","error":{"code":-32600,"message":"Bad Request: Missing session ID"}}"#,
                Some("Bad Request: Missing session ID"),
            ),
            (
                r#"{"error":"invalid_client","error_description":"client authentication failed"}"#,
                Some("invalid_client: client authentication failed"),
            ),
            ("upstream connect error\nmore", Some("upstream connect error")),
            ("<html><body>502</body></html>", None),
            ("", None),
            ("[1,2]", None),
        ];
        for (body, expected) in cases {
            assert_eq!(explanation(body.as_bytes()).as_deref(), expected, "{body}");
        }
        assert_eq!(explanation("x".repeat(500).as_bytes()).unwrap().len(), DETAIL_CHARS);
    }
}
