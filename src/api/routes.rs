//! The routes of DESIGN §7 and their status codes.

use std::convert::Infallible;

use bytes::Bytes;
use futures_util::stream;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;
use tokio::sync::watch;

use super::respond::{Body, empty, error, json_response, no_token, query, read_body, shared_secret, text};
use super::{Shared, login, report, status};
use crate::server::Peer;
use crate::token::TokenState;

/// A route, as counted in metrics.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Route {
    Token,
    Watch,
    Report401,
    Refresh,
    Login,
    Status,
    Health,
    Metrics,
    Unknown,
}

impl Route {
    fn of(path: &str) -> Route {
        match path {
            "/v1/token" => Route::Token,
            "/v1/watch" => Route::Watch,
            "/v1/report-401" => Route::Report401,
            "/v1/refresh" => Route::Refresh,
            "/v1/login" => Route::Login,
            "/v1/status" => Route::Status,
            "/v1/health" => Route::Health,
            "/metrics" => Route::Metrics,
            _ => Route::Unknown,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Route::Token => "/v1/token",
            Route::Watch => "/v1/watch",
            Route::Report401 => "/v1/report-401",
            Route::Refresh => "/v1/refresh",
            Route::Login => "/v1/login",
            Route::Status => "/v1/status",
            Route::Health => "/v1/health",
            Route::Metrics => "/metrics",
            Route::Unknown => "other",
        }
    }

    fn method(self) -> Option<Method> {
        match self {
            Route::Report401 | Route::Refresh | Route::Login => Some(Method::POST),
            Route::Unknown => None,
            _ => Some(Method::GET),
        }
    }
}

pub(super) async fn handle(shared: &Shared, request: Request<Incoming>, peer: Peer) -> Response<Body> {
    let route = Route::of(request.uri().path());
    let response = match route.method() {
        None => {
            error(StatusCode::NOT_FOUND, "not_found", "no such path; see /v1/token, /v1/watch, /v1/status")
        }
        Some(expected) if request.method() != expected => {
            let mut r =
                error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", &format!("use {expected}"));
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_str(expected.as_str()).expect("a method name"));
            r
        }
        Some(_) => match route {
            Route::Token => token(shared, &request).await,
            Route::Watch => watch(shared.engine.token()),
            Route::Report401 => report::report_401(shared, request).await,
            Route::Refresh => refresh(shared, request).await,
            Route::Login => login::login(shared, request, peer).await,
            Route::Status => json_response(StatusCode::OK, &status::status(shared)),
            Route::Health => health(shared),
            Route::Metrics => {
                text(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", shared.metrics.render())
            }
            Route::Unknown => unreachable!("has no method"),
        },
    };
    shared.metrics.socket_request(route.label(), response.status().as_u16());
    response
}

pub(super) fn forbidden() -> Response<Body> {
    error(
        StatusCode::FORBIDDEN,
        "forbidden",
        "this user may not read the token; see the socket's allow_uids/allow_gids",
    )
}

async fn token(shared: &Shared, request: &Request<Incoming>) -> Response<Body> {
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
        fresh_within(shared, max_age).await;
    }
    let state = shared.token.borrow().clone();
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

/// How long a read with `max_age` waits for its fetch before it answers with what is held: below
/// the client verbs' default `--timeout` (10 s), so the read is never worse than without it.
const MAX_AGE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// `max_age` (DESIGN §7): when the held token was fetched, or last confirmed unchanged, longer
/// ago than `max_age`, one fetch first, coalesced with every other trigger (the engine answers
/// at once any read that a fetch since its cutoff answers). Its outcome does not matter here:
/// the read answers with whatever is held afterwards, as it would have without `max_age`.
async fn fresh_within(shared: &Shared, max_age: std::time::Duration) {
    let cutoff = std::time::SystemTime::now().checked_sub(max_age).unwrap_or(std::time::UNIX_EPOCH);
    if shared.engine.confirmed_at().is_some_and(|at| at >= cutoff) {
        return;
    }
    let refresh = shared.engine.refresh_if_older(cutoff, "a read with max_age");
    let _ = tokio::time::timeout(MAX_AGE_WAIT, refresh).await;
}

fn watch(mut token: watch::Receiver<TokenState>) -> Response<Body> {
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

async fn refresh(shared: &Shared, request: Request<Incoming>) -> Response<Body> {
    if let Err(response) = read_body(request).await {
        return response;
    }
    match tokio::time::timeout(report::MAX_WAIT, shared.engine.refresh("POST /v1/refresh")).await {
        Ok(Ok(refreshed)) => json_response(
            StatusCode::OK,
            &json!({"version": refreshed.version, "changed": refreshed.changed}),
        ),
        Ok(Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, "refresh_failed", &e.to_string()),
        Err(_) => error(StatusCode::SERVICE_UNAVAILABLE, "refresh_failed", "no answer within 60s"),
    }
}

fn health(shared: &Shared) -> Response<Body> {
    let problems = status::health_problems(shared);
    if problems.is_empty() {
        json_response(StatusCode::OK, &json!({"status": "ok"}))
    } else {
        json_response(StatusCode::SERVICE_UNAVAILABLE, &json!({"status": "unhealthy", "problems": problems}))
    }
}
