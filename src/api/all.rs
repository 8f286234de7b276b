//! A daemon-wide socket's answers about the whole daemon (DESIGN §15): the tokens it serves,
//! their status and health together, a refresh of all of them, and the answers for a token it
//! does not serve or a path that needs a name. Every answer covers only the tokens the peer may
//! read: one it may not is left out exactly as one that does not exist.

use futures_util::future::join_all;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::{Map, Value, json};

use super::respond::{Body, error, json_response, read_body};
use super::{Shared, reads, status};
use crate::server::Peer;

/// The states, worst first: a daemon-wide `state` is the worst of its tokens'.
const WORST_FIRST: [&str; 5] = ["expired", "needs_login", "empty", "expiring", "fresh"];

/// `GET /v1/tokens`.
pub(super) fn list(shared: &Shared, peer: &Peer) -> Response<Body> {
    let tokens: Vec<Value> = shared
        .readable(peer)
        .iter()
        .map(|token| {
            let status = status::status(token);
            json!({
                "name": token.name,
                "state": status["state"],
                "version": status["version"],
                "expires_at": status["expires_at"],
            })
        })
        .collect();
    json_response(StatusCode::OK, &json!({ "tokens": tokens }))
}

/// `GET /v1/status`: `{"state","tokens":{NAME: status},"sinks":[…]}`.
pub(super) fn status(shared: &Shared, peer: &Peer) -> Response<Body> {
    let mut tokens = Map::new();
    for token in shared.readable(peer) {
        tokens.insert(token.name.clone(), status::status(&token));
    }
    let worst = WORST_FIRST
        .into_iter()
        .find(|state| tokens.values().any(|s| s["state"] == *state))
        .unwrap_or("empty");
    let sinks = status::sinks(&shared.sinks.borrow());
    json_response(StatusCode::OK, &json!({"state": worst, "tokens": tokens, "sinks": sinks}))
}

/// `GET /v1/health`: 200 when every token is healthy; else 503 naming those that are not.
pub(super) fn health(shared: &Shared, peer: &Peer) -> Response<Body> {
    let mut unhealthy = Map::new();
    for token in shared.readable(peer) {
        let problems = status::health_problems(&token);
        if !problems.is_empty() {
            unhealthy.insert(token.name.clone(), json!(problems));
        }
    }
    let failing: Vec<String> = status::sinks(&shared.sinks.borrow())
        .into_iter()
        .filter(|sink| sink["ok"] == false)
        .map(|sink| format!("sink {} {}: {}", sink["type"], sink["path"], sink["error"]))
        .collect();
    if unhealthy.is_empty() && failing.is_empty() {
        return json_response(StatusCode::OK, &json!({"status": "ok"}));
    }
    let mut answer = json!({"status": "unhealthy", "tokens": unhealthy});
    if !failing.is_empty() {
        answer["problems"] = json!(failing);
    }
    json_response(StatusCode::SERVICE_UNAVAILABLE, &answer)
}

/// `POST /v1/refresh`: every token at once, each answered as its own refresh would be.
pub(super) async fn refresh(shared: &Shared, request: Request<Incoming>, peer: &Peer) -> Response<Body> {
    if let Err(response) = read_body(request).await {
        return response;
    }
    let tokens = shared.readable(peer);
    let results = join_all(tokens.iter().map(|token| reads::refreshed(token))).await;
    let mut answers = Map::new();
    let mut failed = Vec::new();
    for (token, result) in tokens.iter().zip(results) {
        let answer = match result {
            Ok(answer) => answer,
            Err(detail) => {
                failed.push(format!("{}: {detail}", token.name));
                json!({"error": "refresh_failed", "detail": detail})
            }
        };
        answers.insert(token.name.clone(), answer);
    }
    if failed.is_empty() {
        return json_response(StatusCode::OK, &json!({ "tokens": answers }));
    }
    json_response(
        StatusCode::SERVICE_UNAVAILABLE,
        &json!({"error": "refresh_failed", "detail": failed.join("; "), "tokens": answers}),
    )
}

/// An unnamed path that is about one token, on a socket that serves several.
pub(super) fn name_required(shared: &Shared, peer: &Peer) -> Response<Body> {
    let names: Vec<String> = shared.readable(peer).iter().map(|t| t.name.clone()).collect();
    json_response(
        StatusCode::BAD_REQUEST,
        &json!({
            "error": "token_name_required",
            "detail": "this socket serves several tokens: ask for one by name, /v1/tokens/NAME/…",
            "tokens": names,
        }),
    )
}

/// A token this socket does not serve to this peer, or none of that name: the same answer.
pub(super) fn unknown_token(name: &str) -> Response<Body> {
    let shown = crate::text::printable(name, 64);
    error(StatusCode::NOT_FOUND, "unknown_token", &format!("no token named {shown:?} here; see /v1/tokens"))
}
