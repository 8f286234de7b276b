//! `POST /v1/login` (DESIGN §7, §13): the daemon runs the login flow its oauth2 source needs and
//! tells the command, one JSON line per event, what the person must open and how it ended.
//! Only root and the daemon's own user may start one: a login decides whose identity every
//! program on the host uses. Their uid (and, for root, the uid it names as `browser_uid`: the
//! user `sudo` runs for) is the only one whose browser may bring a redirect back. The flow ends
//! when the command's connection closes.

use bytes::Bytes;
use futures_util::stream;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use serde_json::{Value, json};
use std::convert::Infallible;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::respond::{Body, error, read_body};
use crate::clock;
use crate::config::{Grant, SourceKind};
use crate::engine::EngineHandle;
use crate::registry::TokenHandle;
use crate::server::Peer;
use crate::source::Source;
use crate::source::oauth2::login::{Method, Open, Requester};

/// How soon a flow ends after its command went away.
const LIVENESS: std::time::Duration = std::time::Duration::from_millis(200);

pub(super) async fn login(token: &TokenHandle, request: Request<Incoming>, peer: Peer) -> Response<Body> {
    if peer.uid != 0 && peer.uid != nix::unistd::geteuid().as_raw() {
        return error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "only root and the daemon's own user may log it in: a login decides whose identity the host uses",
        );
    }
    let (method, browser_uid) = match read_body(request).await {
        Err(response) => return response,
        Ok(body) => match asked(&body) {
            Some(asked) => asked,
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "the body is {\"method\": \"device\" | \"browser\", \"browser_uid\": N} or empty",
                );
            }
        },
    };
    if browser_uid.is_some() && peer.uid != 0 {
        return error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "only root may name another user's browser (browser_uid) for the login's redirect",
        );
    }
    let requester = Requester { uid: peer.uid, browser_uid };
    let config = token.config.borrow().clone();
    if config.source.kind != SourceKind::Oauth2
        || config.source.grant.unwrap_or_default() != Grant::RefreshToken
    {
        return error(
            StatusCode::BAD_REQUEST,
            "login_not_needed",
            "this daemon's source needs no login: it is not an oauth2 source with grant = \"refresh_token\"",
        );
    }
    let Ok(running) = token.login.clone().try_lock_owned() else {
        return error(
            StatusCode::CONFLICT,
            "login_running",
            "a login is already running; finish or cancel it first",
        );
    };
    let source = match Source::new(&config) {
        Ok(source) => source,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, "login_failed", &e.to_string()),
    };
    info!("login started by uid {}", peer.uid);
    let (lines, received) = mpsc::channel::<Bytes>(4);
    let cancel = CancellationToken::new();
    let flow = run(source, method, requester, token.engine.clone(), lines, cancel.clone());
    // The flow outlives this request's span: it carries the token's own.
    let span = crate::logging::token_span(&token.name);
    tokio::spawn(tracing::Instrument::instrument(
        async move {
            flow.await;
            drop(running);
        },
        span,
    ));
    // Dropping the body (the command went away) cancels the flow. The socket's listener
    // keeps half-closed connections open for `nc -N`, so a command that is gone shows only
    // when a write fails: an empty line every LIVENESS, which readers of ndjson skip.
    let guard = cancel.drop_guard();
    let liveness = tokio::time::interval_at(tokio::time::Instant::now() + LIVENESS, LIVENESS);
    let body =
        stream::unfold((received, guard, liveness), |(mut received, guard, mut liveness)| async move {
            let line = tokio::select! {
                line = received.recv() => line?,
                _ = liveness.tick() => Bytes::from_static(b"\n"),
            };
            Some((Ok::<_, Infallible>(Frame::data(line)), (received, guard, liveness)))
        });
    let mut response = Response::new(BodyExt::boxed(StreamBody::new(body)));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `{"method": "device" | "browser", "browser_uid": N}` (each optional) or an empty body: the
/// method asked for and the browser's uid, if any; `None` for anything else.
fn asked(body: &[u8]) -> Option<(Option<Method>, Option<u32>)> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Some((None, None));
    }
    let value: Value = serde_json::from_slice(body).ok().filter(Value::is_object)?;
    let method = match value.get("method").map(|m| m.as_str()) {
        None => None,
        Some(Some("device")) => Some(Method::Device),
        Some(Some("browser")) => Some(Method::Browser),
        Some(_) => return None,
    };
    let browser_uid = match value.get("browser_uid") {
        None => None,
        Some(uid) => Some(u32::try_from(uid.as_u64()?).ok()?),
    };
    Some((method, browser_uid))
}

/// The flow, its events sent as lines, until it ends or `cancel`.
async fn run(
    source: Source,
    method: Option<Method>,
    requester: Requester,
    engine: EngineHandle,
    lines: mpsc::Sender<Bytes>,
    cancel: CancellationToken,
) {
    let (open, mut opened) = mpsc::channel(1);
    let flow = source.login(method, requester, open);
    tokio::pin!(flow);
    let result = loop {
        tokio::select! {
            _ = cancel.cancelled() => {
                info!("login cancelled: the command's connection closed");
                return;
            }
            Some(open) = opened.recv() => {
                let _ = lines.send(line(&open_event(&open))).await;
            }
            result = &mut flow => break result,
        }
    };
    let event = match result {
        Some(Ok(())) => match engine.refresh_now("login").await {
            Ok(refreshed) => {
                let expires_at = engine.token().borrow().current().map(|c| clock::rfc3339(c.expires_at));
                info!("login succeeded: token version {}", refreshed.version);
                json!({"event": "done", "version": refreshed.version, "expires_at": expires_at})
            }
            Err(e) => {
                warn!("login succeeded but the token it brought was not published: {e}");
                json!({"event": "failed", "error": "refresh_failed", "detail": e.to_string()})
            }
        },
        Some(Err(e)) => {
            warn!("login failed: {e}");
            json!({"event": "failed", "error": e.code(), "detail": e.to_string()})
        }
        None => {
            json!({"event": "failed", "error": "login_not_needed", "detail": "the source needs no login"})
        }
    };
    let _ = lines.send(line(&event)).await;
}

fn open_event(open: &Open) -> Value {
    let mut event = json!({"event": "open", "url": open.url.as_str()});
    if let Some(code) = &open.user_code {
        event["method"] = json!("device");
        event["user_code"] = json!(code);
        event["url_complete"] = json!(open.url_complete.as_ref().map(|u| u.as_str()));
    } else {
        event["method"] = json!("browser");
        event["callback_port"] = json!(open.callback_port);
    }
    event
}

fn line(value: &Value) -> Bytes {
    let mut text = value.to_string();
    text.push('\n');
    Bytes::from(text)
}
