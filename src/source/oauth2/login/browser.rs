//! The authorization code grant with PKCE (RFC 6749 §4.1, RFC 7636 S256) and a loopback
//! redirect (RFC 8252 §7.3): the daemon listens on an ephemeral port of 127.0.0.1 for the one
//! redirect to `/callback`, takes the code only with the `state` it sent (RFC 6749 §10.12), and
//! exchanges it with its verifier.
//!
//! Other local users can reach the port, and can read the authorization URL (with its `state`
//! and PKCE challenge) from the browser's command line: one could approve it with their own
//! account and race their redirect to the port, and the daemon would redeem a code for their
//! identity. So each connection's peer is looked up through the kernel (`server::peer`, as the
//! proxy's TCP clients are) before it takes a slot, and only the [`Requester`]'s uids are
//! served; any other is closed at once, counted and logged as refused, so no number of them
//! keeps the real redirect out.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};
use zeroize::Zeroizing;

use super::{DEFAULT_WAIT, Flow, LoginError, Open, Requester, random_value};
use crate::server::peer;
use crate::server::refusals::{Refusals, Refused};
use crate::source::oauth2::token::{self, Grant, Issued, TokenError};
use crate::text::printable;

/// Connections served at once on the callback port, and how long each may take: a stalled
/// local connection cannot keep the browser's redirect out.
const CONNECTIONS: usize = 16;
const CONNECTION_TIME: Duration = Duration::from_secs(10);

/// What a redirect brought: the code, or the server's refusal (RFC 6749 §4.1.2.1).
type Redirect = Result<Zeroizing<String>, LoginError>;

pub(super) async fn login(flow: &Flow<'_>) -> Result<Issued, LoginError> {
    let Flow { http, metadata, target, client, open, requester, .. } = *flow;
    let Some(authorization_endpoint) = &metadata.authorization_endpoint else {
        return Err(LoginError::NotOffered(format!(
            "{} names no authorization_endpoint; log in with --device",
            metadata.issuer
        )));
    };
    let (listener, _own) = callback_listener()
        .map_err(|e| LoginError::Callback(format!("cannot listen on 127.0.0.1 for the redirect: {e}")))?;
    let port = listener.local_addr().map_err(|e| LoginError::Callback(e.to_string()))?.port();
    let redirect_uri = format!("http://127.0.0.1:{port}/callback");
    let verifier = Zeroizing::new(random_value());
    let state = random_value();
    let challenge =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let mut url = authorization_endpoint.clone();
    {
        let mut query = url.query_pairs_mut();
        query.append_pair("response_type", "code");
        if let Some(id) = client.client_id() {
            query.append_pair("client_id", id);
        }
        query.append_pair("redirect_uri", &redirect_uri);
        if let Some(scope) = target.scope {
            query.append_pair("scope", scope);
        }
        if let Some(resource) = target.resource {
            query.append_pair("resource", resource.as_str());
        }
        query.append_pair("state", &state);
        query.append_pair("code_challenge", &challenge);
        query.append_pair("code_challenge_method", "S256");
    }
    let _ = open.send(Open { url, user_code: None, url_complete: None, callback_port: Some(port) }).await;
    let expected = Expected {
        state,
        issuer: metadata.issuer.clone(),
        iss_required: metadata.authorization_response_iss_parameter_supported,
    };
    let code = tokio::time::timeout(DEFAULT_WAIT, redirect(listener, Arc::new(expected), requester))
        .await
        .map_err(|_| LoginError::TimedOut(DEFAULT_WAIT))??;
    let grant =
        Grant::AuthorizationCode { code: &code, redirect_uri: &redirect_uri, code_verifier: &verifier };
    token::request(http, target, client, grant).await.map_err(LoginError::Refused)
}

/// A loopback port for the redirect, registered as the daemon's own before it listens: a URL
/// a server names (discovery) never makes the daemon deliver a redirect to itself.
fn callback_listener() -> std::io::Result<(TcpListener, crate::trust::OwnListener)> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind((std::net::Ipv4Addr::LOCALHOST, 0).into())?;
    let own = crate::trust::OwnListener::new(socket.local_addr()?);
    Ok((socket.listen(1024)?, own))
}

/// Serves the callback port to `requester`'s connections until a redirect with our `state`
/// arrives.
async fn redirect(listener: TcpListener, state: Arc<Expected>, requester: Requester) -> Redirect {
    let (found, mut arrived) = mpsc::channel::<Redirect>(1);
    let slots = Arc::new(Semaphore::new(CONNECTIONS));
    let local = listener.local_addr().expect("a bound listener has an address");
    let refusals = Refusals::new(&format!("login callback {local}"));
    let mut refused = RefusedSoFar::default();
    loop {
        tokio::select! {
            Some(redirect) = arrived.recv() => {
                refused.report();
                return redirect;
            }
            accepted = listener.accept() => {
                let Ok((stream, remote)) = accepted else { continue };
                match peer::of_tcp(&stream, local, remote) {
                    Ok(peer) if requester.may_deliver(peer.uid) => {}
                    other => {
                        drop(stream);
                        refused.count(other.as_ref().ok().map(|peer| peer.uid));
                        refusals.refused(match other {
                            Ok(peer) => Refused::Uid { uid: peer.uid, pid: None },
                            Err(e) => Refused::Unknown(e.to_string()),
                        });
                        continue;
                    }
                }
                let Ok(slot) = slots.clone().try_acquire_owned() else { continue };
                let (state, found) = (state.clone(), found.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let answer = callback(&request, &state, &found);
                        async move { Ok::<_, Infallible>(answer) }
                    });
                    let connection = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                    let _ = tokio::time::timeout(CONNECTION_TIME, connection).await;
                    drop(slot);
                });
            }
        }
    }
}

/// The connections the callback refused during one login, for the line that ends it.
#[derive(Default)]
struct RefusedSoFar {
    count: u64,
    uids: std::collections::BTreeSet<u32>,
}

impl RefusedSoFar {
    fn count(&mut self, uid: Option<u32>) {
        self.count += 1;
        self.uids.extend(uid);
    }

    fn report(&self) {
        if self.count > 0 {
            let uids: Vec<String> = self.uids.iter().map(u32::to_string).collect();
            tracing::warn!(
                "the login's callback refused {} connection(s) from other users (uids {}): only the \
                 user who asked for the login may bring its redirect",
                self.count,
                if uids.is_empty() { "unknown".into() } else { uids.join(", ") }
            );
        }
    }
}

/// What the redirect of this login must carry: its `state`, and the issuer's identifier as
/// `iss` (RFC 9207 §2.4) — always when the server says it sends one.
struct Expected {
    state: String,
    issuer: String,
    iss_required: bool,
}

/// Answers one request to the callback port, handing a redirect with our `state` on; one whose
/// `iss` is not the server's ends the login, nothing exchanged (RFC 9207 §2.4: a mix-up).
fn callback<B>(
    request: &Request<B>,
    expected: &Expected,
    found: &mpsc::Sender<Redirect>,
) -> Response<Full<Bytes>> {
    if request.uri().path() != "/callback" {
        return page(StatusCode::NOT_FOUND, "Not found. mcp-token-sync waits for its login at /callback.");
    }
    let query = request.uri().query().unwrap_or_default();
    let param = |name: &str| {
        url::form_urlencoded::parse(query.as_bytes()).find(|(key, _)| key == name).map(|(_, value)| value)
    };
    if param("state").as_deref() != Some(expected.state.as_str()) {
        return page(
            StatusCode::BAD_REQUEST,
            "This sign-in answer does not belong to the login mcp-token-sync is waiting for \
             (its state does not match), so it was refused. If you started the login, open the \
             URL `mcp-token-sync login` printed.",
        );
    }
    let issuer = &expected.issuer;
    let mismatch = match param("iss") {
        Some(iss) if iss != *issuer => Some(format!(
            "the redirect names the issuer {:?}, not {issuer} (iss, RFC 9207): it may come from another \
             server; the login is refused and nothing was exchanged",
            printable(&iss, 200)
        )),
        None if expected.iss_required => Some(format!(
            "the redirect carries no iss, which {issuer} says it always sends \
             (authorization_response_iss_parameter_supported, RFC 9207): the login is refused and nothing \
             was exchanged"
        )),
        _ => None,
    };
    if let Some(mismatch) = mismatch {
        let _ = found.try_send(Err(LoginError::Issuer(mismatch)));
        return page(
            StatusCode::BAD_REQUEST,
            "This sign-in answer names another issuer than the one mcp-token-sync logs in to, so the \
             login was refused; `mcp-token-sync login` says why.",
        );
    }
    if let Some(error) = param("error") {
        let description = param("error_description").map(|d| printable(&d, 200));
        let refused = TokenError::Refused { code: printable(&error, 64), description };
        let _ = found.try_send(Err(LoginError::Refused(refused)));
        return page(
            StatusCode::OK,
            "The authorization server refused the login; `mcp-token-sync login` says why.",
        );
    }
    match param("code") {
        Some(code) => {
            let _ = found.try_send(Ok(Zeroizing::new(code.into_owned())));
            page(StatusCode::OK, "Signed in: mcp-token-sync holds the login now. You can close this tab.")
        }
        None => page(StatusCode::BAD_REQUEST, "The redirect carries no code."),
    }
}

fn page(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let body =
        format!("<!doctype html><meta charset=utf-8><title>mcp-token-sync login</title><p>{text}</p>\n");
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(hyper::header::CONTENT_TYPE, "text/html; charset=utf-8".parse().expect("valid"));
    response.headers_mut().insert(hyper::header::CACHE_CONTROL, "no-store".parse().expect("valid"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_callback_is_never_sent_anything_by_the_daemon_itself() {
        let (listener, own) = callback_listener().unwrap();
        let address = listener.local_addr().unwrap();
        let client = std::net::TcpStream::connect(address).unwrap();
        let trust = crate::trust::Trust::new(&[], "source.trust_uids");
        let refused = trust.check(client.local_addr().unwrap(), address).unwrap_err();
        assert!(matches!(refused, crate::trust::Untrusted::Own { .. }), "{refused}");
        drop(own);
        trust.check(client.local_addr().unwrap(), address).expect("a login over, the port is no longer ours");
    }
}
