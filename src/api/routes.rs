//! The routes of DESIGN §7 and §15 and their status codes: which token a path is about, by name
//! (`/v1/tokens/NAME/…`) or by the socket's scope (the unnamed paths), and which handler
//! answers.

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use super::respond::{Body, error, text};
use super::{Scope, Shared, all, login, reads, report, status};
use crate::registry::TokenHandle;
use crate::server::Peer;

/// What a path asks of one token.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Route {
    Token,
    Watch,
    Report401,
    Refresh,
    Login,
    Status,
    Health,
}

impl Route {
    /// The route of an unnamed path's tail (`token`, `watch`, …) or a named one's (`""` is the
    /// token itself).
    fn of(tail: &str, named: bool) -> Option<Route> {
        Some(match tail {
            "token" if !named => Route::Token,
            "" if named => Route::Token,
            "watch" => Route::Watch,
            "report-401" => Route::Report401,
            "refresh" => Route::Refresh,
            "login" => Route::Login,
            "status" => Route::Status,
            "health" => Route::Health,
            _ => return None,
        })
    }

    /// As metrics count it: the unnamed path, or the named one with `NAME` for the name.
    fn label(self, named: bool) -> &'static str {
        match (self, named) {
            (Route::Token, false) => "/v1/token",
            (Route::Watch, false) => "/v1/watch",
            (Route::Report401, false) => "/v1/report-401",
            (Route::Refresh, false) => "/v1/refresh",
            (Route::Login, false) => "/v1/login",
            (Route::Status, false) => "/v1/status",
            (Route::Health, false) => "/v1/health",
            (Route::Token, true) => "/v1/tokens/NAME",
            (Route::Watch, true) => "/v1/tokens/NAME/watch",
            (Route::Report401, true) => "/v1/tokens/NAME/report-401",
            (Route::Refresh, true) => "/v1/tokens/NAME/refresh",
            (Route::Login, true) => "/v1/tokens/NAME/login",
            (Route::Status, true) => "/v1/tokens/NAME/status",
            (Route::Health, true) => "/v1/tokens/NAME/health",
        }
    }

    fn method(self) -> Method {
        match self {
            Route::Report401 | Route::Refresh | Route::Login => Method::POST,
            _ => Method::GET,
        }
    }
}

/// A request's path, parsed.
enum Path<'a> {
    Metrics,
    /// `/v1/tokens`.
    List,
    Unnamed(Route),
    Named(&'a str, Route),
    Unknown,
}

fn parse(path: &str) -> Path<'_> {
    if path == "/metrics" {
        return Path::Metrics;
    }
    if path == "/v1/tokens" {
        return Path::List;
    }
    if let Some(rest) = path.strip_prefix("/v1/tokens/") {
        // `/v1/tokens/NAME` is the token itself; `/v1/tokens/NAME/` names nothing.
        let (name, tail) = rest.split_once('/').unwrap_or((rest, ""));
        let trailing_slash = tail.is_empty() && rest.ends_with('/');
        return match Route::of(tail, true) {
            Some(route) if !name.is_empty() && !trailing_slash => Path::Named(name, route),
            _ => Path::Unknown,
        };
    }
    match path.strip_prefix("/v1/").and_then(|tail| Route::of(tail, false)) {
        Some(route) => Path::Unnamed(route),
        None => Path::Unknown,
    }
}

pub(super) async fn handle(shared: &Shared, request: Request<Incoming>, peer: Peer) -> Response<Body> {
    let path = request.uri().path().to_owned();
    let (label, response) = match parse(&path) {
        Path::Metrics => ("/metrics", only(Method::GET, &request).unwrap_or_else(|| metrics(shared, &peer))),
        Path::List => ("/v1/tokens", only(Method::GET, &request).unwrap_or_else(|| all::list(shared, &peer))),
        Path::Unknown => (
            "other",
            error(StatusCode::NOT_FOUND, "not_found", "no such path; see /v1/token, /v1/tokens, /v1/status"),
        ),
        Path::Named(name, route) => {
            let response = match only(route.method(), &request) {
                Some(wrong) => wrong,
                None => match shared.token(name, &peer) {
                    Some(token) => answer(&token, route, request, peer).await,
                    None => all::unknown_token(name),
                },
            };
            (route.label(true), response)
        }
        Path::Unnamed(route) => {
            let response = match (only(route.method(), &request), &shared.scope) {
                (Some(wrong), _) => wrong,
                (None, Scope::Token(own)) => match shared.token(own, &peer) {
                    Some(token) => answer(&token, route, request, peer).await,
                    None => all::unknown_token(own),
                },
                (None, Scope::All) => match route {
                    Route::Status => all::status(shared, &peer),
                    Route::Health => all::health(shared, &peer),
                    Route::Refresh => all::refresh(shared, request, &peer).await,
                    _ => all::name_required(shared, &peer),
                },
            };
            (route.label(false), response)
        }
    };
    shared.metrics.socket_request(label, response.status().as_u16());
    response
}

/// What `route` answers for one token. The routes that act (and log) run in the token's log
/// span; reads, the hot path, make none.
async fn answer(token: &TokenHandle, route: Route, request: Request<Incoming>, peer: Peer) -> Response<Body> {
    use tracing::Instrument;
    let span = || crate::logging::token_span(&token.name);
    match route {
        Route::Token => reads::token(token, &request).await,
        Route::Watch => reads::watch(token.engine.token()),
        Route::Status => super::respond::json_response(StatusCode::OK, &status::status(token)),
        Route::Health => status::health(token),
        Route::Report401 => report::report_401(token, request).instrument(span()).await,
        Route::Refresh => reads::refresh(token, request).instrument(span()).await,
        Route::Login => login::login(token, request, peer).instrument(span()).await,
    }
}

/// A 405 naming `expected` unless the request uses it.
fn only(expected: Method, request: &Request<Incoming>) -> Option<Response<Body>> {
    if request.method() == expected {
        return None;
    }
    let mut r = error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", &format!("use {expected}"));
    r.headers_mut().insert(header::ALLOW, HeaderValue::from_str(expected.as_str()).expect("a method name"));
    Some(r)
}

/// `/metrics`, without the series of tokens this socket does not serve to `peer`: their names
/// are as much theirs as their values (a daemon-wide socket answers a token a peer may not read
/// exactly as one that does not exist).
fn metrics(shared: &Shared, peer: &Peer) -> Response<Body> {
    let mut rendered = shared.metrics.render();
    let tokens = shared.tokens.borrow().clone();
    let hidden: Vec<String> = tokens
        .keys()
        .filter(|name| shared.token(name, peer).is_none())
        .map(|name| format!("token=\"{name}\""))
        .collect();
    if !hidden.is_empty() {
        rendered = rendered
            .lines()
            .filter(|line| !hidden.iter().any(|label| line.contains(label.as_str())))
            .map(|line| format!("{line}\n"))
            .collect();
    }
    text(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", rendered)
}

pub(super) fn forbidden() -> Response<Body> {
    error(
        StatusCode::FORBIDDEN,
        "forbidden",
        "this user may not read the token; see the socket's allow_uids/allow_gids",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(path: &str) -> Option<(Option<&str>, Route)> {
        match parse(path) {
            Path::Unnamed(route) => Some((None, route)),
            Path::Named(name, route) => Some((Some(name), route)),
            _ => None,
        }
    }

    #[test]
    fn paths_name_a_token_and_a_route() {
        assert_eq!(route("/v1/token"), Some((None, Route::Token)));
        assert_eq!(route("/v1/report-401"), Some((None, Route::Report401)));
        assert_eq!(route("/v1/tokens/calendar"), Some((Some("calendar"), Route::Token)));
        assert_eq!(route("/v1/tokens/calendar/watch"), Some((Some("calendar"), Route::Watch)));
        assert_eq!(route("/v1/tokens/linear/report-401"), Some((Some("linear"), Route::Report401)));
        for unknown in
            ["/v1/tokens/", "/v1/tokens/calendar/", "/v1/tokens/a/token", "/v1/tokens//watch", "/v1/x"]
        {
            assert!(route(unknown).is_none(), "{unknown}");
        }
        assert!(matches!(parse("/v1/tokens"), Path::List));
        assert!(matches!(parse("/metrics"), Path::Metrics));
    }
}
