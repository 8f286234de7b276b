//! JSON-RPC 2.0 messages as the bridge routes them: only the `id`, the `method` and whether there
//! is a `result` or `error` are read; the rest is carried as the text it came in, on one line.

use serde::Deserialize;
use serde_json::value::RawValue;

/// One JSON-RPC message: its text on one line, and what routing needs from it.
#[derive(Debug, Clone)]
pub(crate) struct Message {
    /// Compact single-line JSON, the content as sent (member order, numbers and escapes kept).
    pub line: String,
    pub kind: Kind,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kind {
    /// Has a `method` and an `id`: an answer is owed. `id` is its JSON text (`7`, `"a"`).
    Request { id: String, method: String },
    /// Has a `method` and no `id`.
    Notification { method: String },
    /// Has no `method`: the answer to a request (`id` is `None` for `null`, as in a parse error's).
    Response { id: Option<String> },
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Kind::Request { id, method } => write!(f, "request {method} (id {id})"),
            Kind::Notification { method } => write!(f, "notification {method}"),
            Kind::Response { id: Some(id) } => write!(f, "answer to id {id}"),
            Kind::Response { id: None } => write!(f, "answer without an id"),
        }
    }
}

/// The members routing reads; serde skips the rest after checking it is JSON.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    jsonrpc: Option<&'a str>,
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    method: Option<String>,
    #[serde(borrow)]
    params: Option<&'a RawValue>,
    #[serde(borrow)]
    result: Option<&'a RawValue>,
    #[serde(borrow)]
    error: Option<&'a RawValue>,
}

/// Why text from the host or the server is not a JSON-RPC message.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NotJsonRpc {
    /// Not JSON at all (JSON-RPC 2.0 §5.1: -32700).
    #[error("not JSON: {0}")]
    Parse(String),
    /// JSON, but not a JSON-RPC 2.0 message (§5.1: -32600).
    #[error("not a JSON-RPC 2.0 message: {0}")]
    Invalid(&'static str),
}

impl Message {
    /// The message(s) in `text`: one object, or each member of a batch array (JSON-RPC 2.0 §6;
    /// MCP 2025-03-26 allowed batches, later revisions do not, so each is routed on its own).
    pub fn parse_all(text: &str) -> Result<Vec<Message>, NotJsonRpc> {
        let raw: &RawValue = serde_json::from_str(text).map_err(|e| NotJsonRpc::Parse(e.to_string()))?;
        if raw.get().starts_with('[') {
            let members: Vec<&RawValue> =
                serde_json::from_str(raw.get()).map_err(|e| NotJsonRpc::Parse(e.to_string()))?;
            if members.is_empty() {
                return Err(NotJsonRpc::Invalid("an empty batch"));
            }
            members.into_iter().map(|m| Message::parse_one(m.get())).collect()
        } else {
            Ok(vec![Message::parse_one(raw.get())?])
        }
    }

    /// One message: an object with `"jsonrpc": "2.0"` and a string `method` (a request or a
    /// notification), or a `result` or `error` (an answer). Anything else, even valid JSON (a
    /// REST API's answer at a wrong URL), is refused, so only MCP messages reach stdout.
    fn parse_one(text: &str) -> Result<Message, NotJsonRpc> {
        if !text.starts_with('{') {
            return Err(NotJsonRpc::Invalid("a message is a JSON object"));
        }
        let envelope: Envelope =
            serde_json::from_str(text).map_err(|_| NotJsonRpc::Invalid("`method` must be a string"))?;
        if envelope.jsonrpc != Some("2.0") {
            return Err(NotJsonRpc::Invalid("it lacks \"jsonrpc\": \"2.0\""));
        }
        let id = envelope.id.map(|id| compact(id.get())).filter(|id| id != "null");
        // MCP 2025-06-18 "Messages": an id is a string or an integer; params are structured.
        if id
            .as_deref()
            .is_some_and(|id| !id.starts_with('"') && id.trim_start_matches('-').parse::<u64>().is_err())
        {
            return Err(NotJsonRpc::Invalid("an id is a string or an integer"));
        }
        if envelope.params.is_some_and(|p| !p.get().starts_with(['{', '['])) {
            return Err(NotJsonRpc::Invalid("`params` is an object or an array"));
        }
        let kind = match (envelope.method, id) {
            (Some(method), Some(id)) => Kind::Request { id, method },
            (Some(method), None) => Kind::Notification { method },
            (None, id) => match (envelope.result, envelope.error) {
                (Some(_), None) if id.is_some() => Kind::Response { id },
                (None, Some(error)) if error.get().starts_with('{') => Kind::Response { id },
                (Some(_), Some(_)) => {
                    return Err(NotJsonRpc::Invalid("an answer has a `result` or an `error`, not both"));
                }
                (Some(_), None) => return Err(NotJsonRpc::Invalid("a `result` answers an id")),
                (None, Some(_)) => return Err(NotJsonRpc::Invalid("an `error` is an object")),
                (None, None) => {
                    return Err(NotJsonRpc::Invalid("neither a `method` nor a `result` or `error`"));
                }
            },
        };
        Ok(Message { line: compact(text), kind })
    }

    pub fn method(&self) -> Option<&str> {
        match &self.kind {
            Kind::Request { method, .. } | Kind::Notification { method } => Some(method),
            Kind::Response { .. } => None,
        }
    }

    /// The error answer (code -32000, MCP's server-error range) to the request with JSON id `id`;
    /// `http_status` goes in `data` when the failure had one.
    pub fn error_answer(id: &str, message: &str, http_status: Option<u16>) -> String {
        let message = serde_json::Value::from(message);
        match http_status {
            Some(status) => format!(
                r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":-32000,"message":{message},"data":{{"http_status":{status}}}}}}}"#
            ),
            None => format!(r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":-32000,"message":{message}}}}}"#),
        }
    }

    /// JSON-RPC's answer to a line that is not a message (§5.1: -32700 for what is not JSON,
    /// -32600 for JSON that is not a JSON-RPC message; id null).
    pub fn refusal(reason: &NotJsonRpc) -> String {
        let (code, what) = match reason {
            NotJsonRpc::Parse(_) => (-32700, "Parse error"),
            NotJsonRpc::Invalid(_) => (-32600, "Invalid Request"),
        };
        let message = serde_json::Value::from(format!("{what}: {reason}"));
        format!(r#"{{"jsonrpc":"2.0","id":null,"error":{{"code":{code},"message":{message}}}}}"#)
    }
}

/// `json` without the whitespace between tokens (RFC 8259 §2: space, tab, CR, LF), so a
/// pretty-printed body or a multi-line SSE `data:` fits the stdio transport's one line. Strings,
/// numbers and member order stay as written, which re-serializing through a map would not
/// promise. `json` must already be valid JSON: inside a string, raw control characters cannot
/// occur, so only escapes need tracking.
fn compact(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in json.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !matches!(c, ' ' | '\t' | '\r' | '\n') {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pretty_printed_message_becomes_one_line_with_its_content_unchanged() {
        let text = "{\n  \"jsonrpc\": \"2.0\",\n  \"id\" : 7,\n  \"result\": {\"z\": 1.50, \"a\": \"two  words\\\" \\n\"}\n}";
        let [m] = Message::parse_all(text).unwrap().try_into().unwrap();
        assert_eq!(m.line, r#"{"jsonrpc":"2.0","id":7,"result":{"z":1.50,"a":"two  words\" \n"}}"#);
        assert_eq!(m.kind, Kind::Response { id: Some("7".into()) });
    }

    #[test]
    fn requests_notifications_and_answers_are_told_apart() {
        let all = Message::parse_all(
            r#"[{"jsonrpc":"2.0","id":"a b","method":"tools/call","params":{}},
                {"jsonrpc":"2.0","method":"notifications/initialized"},
                {"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"x"}}]"#,
        )
        .unwrap();
        let kinds: Vec<Kind> = all.into_iter().map(|m| m.kind).collect();
        assert_eq!(
            kinds,
            [
                Kind::Request { id: r#""a b""#.into(), method: "tools/call".into() },
                Kind::Notification { method: "notifications/initialized".into() },
                Kind::Response { id: None },
            ]
        );
    }

    #[test]
    fn what_is_not_json_rpc_is_refused() {
        for bad in ["", "{", "[1, 2", r#"{"id":1}x"#] {
            assert!(matches!(Message::parse_all(bad), Err(NotJsonRpc::Parse(_))), "{bad:?}");
        }
        for invalid in [
            "[]",
            "[1]",
            "7",
            r#""text""#,
            r#"{"jsonrpc":"2.0","method":5}"#,
            r#"{"method":"ping","id":1}"#,
            r#"{"jsonrpc":"1.0","method":"ping"}"#,
            r#"{"calendars": [1, 2]}"#,
            r#"{"jsonrpc":"2.0","id":3}"#,
            r#"{"jsonrpc":"2.0","result":{}}"#,
            r#"{"jsonrpc":"2.0","id":3,"error":5}"#,
            r#"{"jsonrpc":"2.0","id":3,"result":{},"error":{"code":1,"message":"x"}}"#,
            r#"{"jsonrpc":"2.0","id":true,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":[1],"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":5}"#,
        ] {
            assert!(matches!(Message::parse_all(invalid), Err(NotJsonRpc::Invalid(_))), "{invalid:?}");
        }
    }

    #[test]
    fn error_answers_are_json_rpc_with_the_status_in_data() {
        let line = Message::error_answer(r#""q""#, "HTTP 503 \"busy\"", Some(503));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["id"], "q");
        assert_eq!(v["error"]["code"], -32000);
        assert_eq!(v["error"]["message"], "HTTP 503 \"busy\"");
        assert_eq!(v["error"]["data"]["http_status"], 503);
        let v: serde_json::Value = serde_json::from_str(&Message::error_answer("4", "gone", None)).unwrap();
        assert!(v["error"].get("data").is_none());
    }
}
