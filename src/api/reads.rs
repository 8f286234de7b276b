//! One token read, watched, or refreshed on request (DESIGN §7): `GET /v1/token` (with
//! `format` and `max_age`), `GET /v1/watch`, `POST /v1/refresh`, and the same under
//! `/v1/tokens/NAME`.

use std::convert::Infallible;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::stream;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use serde_json::json;
use tokio::sync::watch;

use super::report;
use super::respond::{Body, empty, error, json_response, no_token, query, read_body, shared_secret};
use crate::registry::TokenHandle;
use crate::token::TokenState;

/// How long a read with `max_age` waits for its fetch before it answers with what is held: below
/// the client verbs' default `--timeout` (10 s), so the read is never worse than without it.
const MAX_AGE_WAIT: Duration = Duration::from_secs(5);

pub(super) async fn token(token: &TokenHandle, request: &Request<Incoming>) -> Response<Body> {
    let raw = match query(request, "format").as_deref() {
        None | Some("json") => false,
        Some("raw") => true,
        Some(_) => {
            return error(StatusCode::BAD_REQUEST, "bad_request", "format is \"json\" (default) or \"raw\"");
        }
    };
    if let Some(max_age) = query(request, "max_age") {
        let Ok(max_age) = crate::config::parse_duration(&max_age) else {
            return error(StatusCode::BAD_REQUEST, "bad_request", "max_age is a duration, e.g. ?max_age=30s");
        };
        fresh_within(token, max_age).await;
    }
    let state = token.engine.token().borrow().clone();
    let current = match &state {
        TokenState::Valid(current) => current,
        TokenState::Empty => {
            return no_token("no_valid_token", "no token has been fetched yet; see /v1/status for why");
        }
        TokenState::Expired { .. } => {
            return no_token("token_expired", "the token expired and no valid replacement was fetched yet");
        }
    };
    let wire = current.wire();
    let not_modified =
        request.headers().get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).is_some_and(|tags| {
            tags.split(',')
                .map(|t| t.trim().trim_start_matches("W/"))
                .any(|t| t == "*" || t.as_bytes() == wire.etag)
        });
    let mut response = if not_modified {
        let mut r = Response::new(empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else if raw {
        shared_secret(wire.raw.clone(), "text/plain; charset=utf-8")
    } else {
        shared_secret(wire.json.clone(), "application/json")
    };
    let headers = response.headers_mut();
    headers
        .insert(header::ETAG, HeaderValue::from_maybe_shared(wire.etag.clone()).expect("digits and quotes"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `max_age` (DESIGN §7): when the held token was fetched, or last confirmed unchanged, longer
/// ago than `max_age`, one fetch first, coalesced with every other trigger (the engine answers
/// at once any read that a fetch since its cutoff answers). Its outcome does not matter here:
/// the read answers with whatever is held afterwards, as it would have without `max_age`.
async fn fresh_within(token: &TokenHandle, max_age: Duration) {
    let cutoff = SystemTime::now().checked_sub(max_age).unwrap_or(UNIX_EPOCH);
    if token.engine.confirmed_at().is_some_and(|at| at >= cutoff) {
        return;
    }
    let refresh = token.engine.refresh_if_older(cutoff, "a read with max_age");
    let _ = tokio::time::timeout(MAX_AGE_WAIT, refresh).await;
}

pub(super) fn watch(mut token: watch::Receiver<TokenState>) -> Response<Body> {
    // The current state is sent at once, then one line per change. A watcher that reads slowly
    // skips to the latest version instead of queueing old ones.
    let first = token.borrow_and_update().clone();
    let lines = stream::unfold((token, Some(first)), |(mut token, mut pending)| async move {
        loop {
            let state = match pending.take() {
                Some(state) => state,
                None => {
                    token.changed().await.ok()?;
                    token.borrow_and_update().clone()
                }
            };
            let line = match &state {
                TokenState::Empty => continue,
                TokenState::Valid(current) => {
                    let mut line = current.to_json();
                    line.push(b'\n');
                    Bytes::from_owner(line)
                }
                TokenState::Expired { version } => {
                    Bytes::from(format!("{}\n", json!({"event": "expired", "version": version})))
                }
            };
            return Some((Ok::<_, Infallible>(Frame::data(line)), (token, None)));
        }
    });
    let mut response = Response::new(BodyExt::boxed(StreamBody::new(lines)));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

pub(super) async fn refresh(token: &TokenHandle, request: Request<Incoming>) -> Response<Body> {
    if let Err(response) = read_body(request).await {
        return response;
    }
    match refreshed(token).await {
        Ok(answer) => json_response(StatusCode::OK, &answer),
        Err(detail) => error(StatusCode::SERVICE_UNAVAILABLE, "refresh_failed", &detail),
    }
}

/// One token's forced fetch: `{"version","changed"}`, or why it failed.
pub(super) async fn refreshed(token: &TokenHandle) -> Result<serde_json::Value, String> {
    match tokio::time::timeout(report::MAX_WAIT, token.engine.refresh("POST /v1/refresh")).await {
        Ok(Ok(refreshed)) => Ok(json!({"version": refreshed.version, "changed": refreshed.changed})),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer within 60s".into()),
    }
}
