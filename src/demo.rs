//! `mcp-token-sync demo`: the whole idea in 30 seconds, with nothing to set up.
//!
//! An embedded backend on 127.0.0.1 speaks the seed's protocol and rotates its token every
//! `ROTATE_EVERY` (each living `LIFETIME`), and issues a second kind of token, to a service, at
//! an OAuth 2.0 token endpoint (client credentials). The real daemon, built from an embedded
//! config with both tokens side by side, keeps files in a temporary directory fresh, runs a
//! proxy for each, and logs what it does.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rand::Rng;
use tokio::net::TcpListener;
use tracing::info;

use crate::clock;
use crate::config::{Config, Environment};
use crate::daemon::{self, Parts};
use crate::logging::Logging;
use crate::token::Fingerprint;

const TOKEN_PATH: &str = "/api/calendars/google-mcp-tokens/current-token/";
/// The backend's API, which wants the current token in [`TOKEN_HEADER`].
const API_PATH: &str = "/api/calendars/";
const TOKEN_HEADER: &str = "X-Google-MCP-Token";
/// The service's token endpoint (client credentials, RFC 6749 §4.4) and its API, which wants
/// that token as a Bearer token.
const OAUTH_TOKEN_PATH: &str = "/oauth/token";
const REPORTS_PATH: &str = "/api/reports/";
const REPORTS_CLIENT: &str = "demo-reports";
const AGENT: &str = "google-calender-mcp";
const ROTATE_EVERY: Duration = Duration::from_secs(20);
const LIFETIME: Duration = Duration::from_secs(60);

pub(crate) async fn run(logging: Logging) -> anyhow::Result<()> {
    let secret = random_text(32);
    let addr = start_backend(secret.clone()).await.context("starting the embedded backend")?;
    let dir =
        tempfile::Builder::new().prefix("mcp-token-sync-demo-").tempdir().context("creating a temp dir")?;
    let shown = dir.path().display().to_string();
    let secret_file = dir.path().join("reports-secret");
    std::fs::write(&secret_file, &secret).context("writing the service's client secret")?;
    std::fs::set_permissions(&secret_file, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    // Free ports for the proxies, so the demo runs beside anything else on the host.
    let proxy = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let proxy2 = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let mut text = include_str!("demo.toml")
        .replace("{URL}", &format!("http://{addr}{TOKEN_PATH}"))
        .replace("{BACKEND}", &format!("http://{addr}"))
        .replace("{PROXY}", &proxy.to_string())
        .replace("{PROXY2}", &proxy2.to_string())
        .replace("{DIR}", &shown);
    // The kernel keyring where this host allows it (a container's seccomp profile may not).
    let account = format!("demo-{}", std::process::id());
    let keyring =
        linux_keyutils::KeyRing::from_special_id(linux_keyutils::KeyRingIdentifier::User, false).is_ok();
    if keyring {
        text += &format!(
            "\n[[tokens.calendar.sink]]\ntype = \"keyring\"\nbackend = \"keyutils\"\naccount = \"{account}\"\n"
        );
    }
    let config = Config::parse(&text, Path::new("<demo>"), &Environment::default())?;
    let parts = Parts::build(config)?;

    println!(
        "mcp-token-sync demo: two tokens, side by side\n\
         \n  backend  http://{addr}{TOKEN_PATH}\n           (built in: a new token every {rotate}s, each valid {life}s)\
         \n           http://{addr}{OAUTH_TOKEN_PATH}  a service's token, by OAuth 2.0 client credentials\
         \n  calendar (the seed's current-token endpoint)\
         \n  sinks    {shown}/token       the token alone\
         \n           {shown}/token.json  the token object\
         \n           {shown}/token.env   GOOGLE_MCP_TOKEN=…, for EnvironmentFile=\
         \n           {shown}/hook.log    what the exec hook saw (never the token)\
         {keyring_line}\
         \n  proxy    http://{proxy}  the backend, with the current token added to every request\
         \n  reports  (client credentials)\
         \n  sinks    {shown}/reports.token\
         \n  proxy    http://{proxy2}  the backend, with the service's token as a Bearer token\
         \n  socket   {shown}/api.sock    both tokens, each under its name\
         \n  try      curl http://{proxy}{API_PATH}\
         \n           curl http://{proxy2}{REPORTS_PATH}\
         \n           (no token in the commands: each proxy adds its own, and refreshes it when the backend refuses it)\
         \n           MCP_TOKEN_SYNC_SOCKET={shown}/api.sock {exe} status\
         \n           MCP_TOKEN_SYNC_SOCKET={shown}/api.sock {exe} token --token reports\
         \n           curl --unix-socket {shown}/api.sock http://localhost/v1/tokens\
         \n           curl --unix-socket {shown}/api.sock http://localhost/v1/tokens/calendar\
         \n           MCP_TOKEN_SYNC_SOCKET={shown}/api.sock {exe} watch --token calendar\
         \n           kill -USR1 {pid}    (refresh both now)\
         \n\nThe daemon fetches each token before it expires, validates it, and rewrites the files atomically; \
         a token that fails never holds the other back. Ctrl-C stops it and removes {shown}.\n",
        rotate = ROTATE_EVERY.as_secs(),
        life = LIFETIME.as_secs(),
        pid = std::process::id(),
        keyring_line = if keyring {
            format!(
                "\n           kernel keyring: keyctl pipe $(keyctl search @u user mcp-token-sync:{account})"
            )
        } else {
            String::new()
        },
        exe = std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "mcp-token-sync".into()),
    );
    let served = daemon::serve(PathBuf::from("<demo>"), parts, logging).await;
    if keyring {
        forget_key(&format!("mcp-token-sync:{account}"));
    }
    served?;
    Ok(())
}

/// Takes the demo's key out of the user keyring, as its directory goes: a demo leaves nothing
/// behind (its timeout would drop it at the token's expiry anyway).
fn forget_key(description: &str) {
    use linux_keyutils::{KeyRing, KeyRingIdentifier};
    if let Ok(key) =
        KeyRing::from_special_id(KeyRingIdentifier::User, false).and_then(|user| user.search(description))
    {
        let _ = key.invalidate();
    }
}

/// The token the backend hands out now, and when it was issued.
struct Issued {
    token: String,
    at: SystemTime,
}

impl Issued {
    /// Tokens are issued on a fixed beat: the one asked for now belongs to the current slot.
    fn catch_up(&mut self, now: SystemTime) {
        let behind = now.duration_since(self.at).unwrap_or_default();
        if behind >= ROTATE_EVERY {
            let slots = (behind.as_secs() / ROTATE_EVERY.as_secs()) as u32;
            *self = Issued::new(self.at + ROTATE_EVERY * slots);
        }
    }

    fn new(at: SystemTime) -> Issued {
        // Shaped like the seed's: 55 characters of base64url.
        let token = random_text(55);
        info!("backend: issued a new calendar token (fingerprint {})", Fingerprint::of(token.as_bytes()));
        Issued { token, at }
    }
}

/// `len` characters of base64url, like the seed's tokens.
fn random_text(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut rng = rand::rng();
    (0..len).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect()
}

/// What the backend has issued: the calendar's current token, and the service's last one.
struct Backend {
    calendar: Issued,
    reports: Option<String>,
    /// The service's client secret.
    secret: String,
}

async fn start_backend(secret: String) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let backend =
        Arc::new(Mutex::new(Backend { calendar: Issued::new(SystemTime::now()), reports: None, secret }));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let backend = backend.clone();
            let service = hyper::service::service_fn(move |req| answer(req, backend.clone()));
            tokio::spawn(
                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    Ok(addr)
}

async fn answer(
    req: Request<hyper::body::Incoming>,
    backend: Arc<Mutex<Backend>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    // A token request's form is a few dozen bytes; anything else has no body worth reading.
    let form = http_body_util::BodyExt::collect(http_body_util::Limited::new(body, 4096))
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let header = |name: &str| parts.headers.get(name).map(|v| v.as_bytes().to_vec());
    let mut backend = backend.lock().expect("the backend's lock is never poisoned");
    backend.calendar.catch_up(SystemTime::now());
    let (status, body) = match parts.uri.path() {
        TOKEN_PATH => (
            StatusCode::OK,
            serde_json::json!({
                "agent_name": AGENT,
                "token": backend.calendar.token,
                "expires_at": clock::rfc3339(backend.calendar.at + LIFETIME),
                "valid": true,
                "message": "Current MCP token retrieved successfully",
            }),
        ),
        // Like the seed's calendar API: only the token issued last is accepted.
        API_PATH => {
            if header(TOKEN_HEADER).as_deref() == Some(backend.calendar.token.as_bytes()) {
                let calendars =
                    serde_json::json!([{"id": 1, "name": "Team calendar"}, {"id": 2, "name": "On-call"}]);
                (StatusCode::OK, serde_json::json!({"calendars": calendars}))
            } else {
                (StatusCode::UNAUTHORIZED, serde_json::json!({"detail": "Invalid or expired MCP token"}))
            }
        }
        OAUTH_TOKEN_PATH => client_credentials(&mut backend, header("authorization"), &form),
        REPORTS_PATH => {
            let sent = header("authorization");
            let expected = backend.reports.as_ref().map(|t| format!("Bearer {t}").into_bytes());
            if sent.is_some() && sent == expected {
                (StatusCode::OK, serde_json::json!({"reports": [{"id": 7, "name": "Weekly on-call"}]}))
            } else {
                (StatusCode::UNAUTHORIZED, serde_json::json!({"error": "invalid_token"}))
            }
        }
        _ => (StatusCode::NOT_FOUND, serde_json::json!({"detail": "Not found."})),
    };
    drop(backend);
    let mut response = Response::new(Full::new(Bytes::from(format!("{body}\n"))));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(hyper::header::CONTENT_TYPE, "application/json".parse().expect("a valid header"));
    Ok(response)
}

/// The service's token endpoint (RFC 6749 §4.4): its client, by HTTP Basic with its secret,
/// gets a new token, valid `LIFETIME`, each time it asks.
fn client_credentials(
    backend: &mut Backend,
    authorization: Option<Vec<u8>>,
    form: &[u8],
) -> (StatusCode, serde_json::Value) {
    use base64::Engine;
    let basic = format!("{REPORTS_CLIENT}:{}", backend.secret);
    let expected = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(basic));
    if authorization.as_deref() != Some(expected.as_bytes()) {
        return (StatusCode::UNAUTHORIZED, serde_json::json!({"error": "invalid_client"}));
    }
    if !url::form_urlencoded::parse(form).any(|(k, v)| k == "grant_type" && v == "client_credentials") {
        return (StatusCode::BAD_REQUEST, serde_json::json!({"error": "unsupported_grant_type"}));
    }
    let token = random_text(43);
    info!("backend: issued a new reports token (fingerprint {})", Fingerprint::of(token.as_bytes()));
    backend.reports = Some(token.clone());
    (
        StatusCode::OK,
        serde_json::json!({"access_token": token, "token_type": "Bearer", "expires_in": LIFETIME.as_secs()}),
    )
}
