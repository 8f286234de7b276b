//! `mcp-token-sync demo`: the whole idea in 30 seconds, with nothing to set up.
//!
//! An embedded backend on 127.0.0.1 speaks the seed's protocol and rotates its token every
//! `ROTATE_EVERY` (each living `LIFETIME`); the real daemon, built from an embedded config,
//! keeps files in a temporary directory fresh and logs what it does.

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
const AGENT: &str = "google-calender-mcp";
const ROTATE_EVERY: Duration = Duration::from_secs(20);
const LIFETIME: Duration = Duration::from_secs(60);

pub(crate) async fn run(logging: Logging) -> anyhow::Result<()> {
    let addr = start_backend().await.context("starting the embedded backend")?;
    let dir =
        tempfile::Builder::new().prefix("mcp-token-sync-demo-").tempdir().context("creating a temp dir")?;
    let shown = dir.path().display().to_string();
    // A free port for the proxy, so the demo runs beside anything else on the host.
    let proxy = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let mut text = include_str!("demo.toml")
        .replace("{URL}", &format!("http://{addr}{TOKEN_PATH}"))
        .replace("{BACKEND}", &format!("http://{addr}"))
        .replace("{PROXY}", &proxy.to_string())
        .replace("{DIR}", &shown);
    // The kernel keyring where this host allows it (a container's seccomp profile may not).
    let account = format!("demo-{}", std::process::id());
    let keyring =
        linux_keyutils::KeyRing::from_special_id(linux_keyutils::KeyRingIdentifier::User, false).is_ok();
    if keyring {
        text += &format!("\n[[sink]]\ntype = \"keyring\"\nbackend = \"keyutils\"\naccount = \"{account}\"\n");
    }
    let config = Config::parse(&text, Path::new("<demo>"), &Environment::default())?;
    let parts = Parts::build(config)?;

    println!(
        "mcp-token-sync demo\n\
         \n  backend  http://{addr}{TOKEN_PATH}\n           (built in: a new token every {rotate}s, each valid {life}s)\
         \n  sinks    {shown}/token       the token alone\
         \n           {shown}/token.json  the token object\
         \n           {shown}/token.env   GOOGLE_MCP_TOKEN=…, for EnvironmentFile=\
         \n           {shown}/hook.log    what the exec hook saw (never the token)\
         \n           {shown}/api.sock    the socket API\
         {keyring_line}\
         \n  proxy    http://{proxy}  the backend, with the current token added to every request\
         \n  try      curl http://{proxy}{API_PATH}\
         \n           (no token in the command: the proxy adds it, and refreshes it when the backend refuses it)\
         \n           cat {shown}/token.json\
         \n           curl --unix-socket {shown}/api.sock http://localhost/v1/token\
         \n           curl --unix-socket {shown}/api.sock http://localhost/v1/status\
         \n           MCP_TOKEN_SYNC_SOCKET={shown}/api.sock {exe} watch\
         \n           kill -USR1 {pid}    (refresh now)\
         \n\nThe daemon fetches before expiry, validates, and rewrites the files atomically. \
         Ctrl-C stops it and removes {shown}.\n",
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
    daemon::serve(PathBuf::from("<demo>"), parts, logging).await?;
    Ok(())
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
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut rng = rand::rng();
        let token =
            (0..55).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect::<String>();
        info!("backend: issued a new token (fingerprint {})", Fingerprint::of(token.as_bytes()));
        Issued { token, at }
    }
}

async fn start_backend() -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let issued = Arc::new(Mutex::new(Issued::new(SystemTime::now())));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let issued = issued.clone();
            let service = hyper::service::service_fn(move |req| answer(req, issued.clone()));
            tokio::spawn(
                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    Ok(addr)
}

async fn answer(
    req: Request<hyper::body::Incoming>,
    issued: Arc<Mutex<Issued>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut issued = issued.lock().expect("the backend's lock is never poisoned");
    issued.catch_up(SystemTime::now());
    let (status, body) = match req.uri().path() {
        TOKEN_PATH => (
            StatusCode::OK,
            serde_json::json!({
                "agent_name": AGENT,
                "token": issued.token,
                "expires_at": clock::rfc3339(issued.at + LIFETIME),
                "valid": true,
                "message": "Current MCP token retrieved successfully",
            }),
        ),
        // Like the seed's calendar API: only the token issued last is accepted.
        API_PATH => {
            let sent = req.headers().get(TOKEN_HEADER).map(|v| v.as_bytes());
            if sent == Some(issued.token.as_bytes()) {
                let calendars =
                    serde_json::json!([{"id": 1, "name": "Team calendar"}, {"id": 2, "name": "On-call"}]);
                (StatusCode::OK, serde_json::json!({"calendars": calendars}))
            } else {
                (StatusCode::UNAUTHORIZED, serde_json::json!({"detail": "Invalid or expired MCP token"}))
            }
        }
        _ => (StatusCode::NOT_FOUND, serde_json::json!({"detail": "Not found."})),
    };
    let mut response = Response::new(Full::new(Bytes::from(format!("{body}\n"))));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(hyper::header::CONTENT_TYPE, "application/json".parse().expect("a valid header"));
    Ok(response)
}
