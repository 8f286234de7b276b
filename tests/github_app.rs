//! `type = "github_app"` (DESIGN §16). No GitHub is reachable from tests, so this one follows
//! GitHub's documented API exactly ("Create an installation access token for an app"): `POST
//! /app/installations/{installation_id}/access_tokens` with the app's JWT, which it verifies
//! with the app's public key (RS256, `iss` the client id, `iat` in the past, `exp` at most ten
//! minutes after it), answering 201 with a 2026-format token (about 520 characters, with dots),
//! or GitHub's own 401 and 404 bodies.

mod support;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};
use support::api::{get, post};
use support::fake_http::{Answer, FakeHttp, Seen};
use support::kinds::{Daemon, PATIENCE};

const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/source/oauth2/testdata");
const CLIENT_ID: &str = "Iv23liABCDEFGH";
const INSTALLATION: u64 = 98765432;

/// GitHub, as far as installation tokens go.
struct GitHub {
    server: FakeHttp,
    /// The app's public key, PEM: what GitHub holds after the app's owner uploads a key.
    public_key: Arc<Mutex<Vec<u8>>>,
    /// Every JWT it was sent.
    jwts: Arc<Mutex<Vec<String>>>,
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// A token as GitHub's stateless installation tokens of 2026 look: `ghs_`, three dotted
/// base64url parts, some 520 characters.
fn installation_token(n: usize) -> String {
    let part = |len: usize, seed: usize| -> String {
        (0..len)
            .map(|i| {
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[(i * 7 + seed * 13) % 64]
                    as char
            })
            .collect()
    };
    format!("ghs_{}.{}.{}", part(180, n), part(200, n + 1), part(134, n + 2))
}

impl GitHub {
    fn start() -> GitHub {
        let public_key = Arc::new(Mutex::new(std::fs::read(format!("{TESTDATA}/rsa-public.pem")).unwrap()));
        let jwts = Arc::new(Mutex::new(Vec::new()));
        let issued = Arc::new(Mutex::new(0usize));
        let server = FakeHttp::start({
            let (public_key, jwts) = (public_key.clone(), jwts.clone());
            move |seen| answer(seen, &public_key.lock().unwrap(), &jwts, &issued)
        });
        GitHub { server, public_key, jwts }
    }
}

fn answer(seen: &Seen, public_key: &[u8], jwts: &Mutex<Vec<String>>, issued: &Mutex<usize>) -> Answer {
    let documentation =
        "https://docs.github.com/rest/apps/apps#create-an-installation-access-token-for-an-app";
    let Some(installation) = seen
        .path()
        .strip_prefix("/app/installations/")
        .and_then(|rest| rest.strip_suffix("/access_tokens"))
        .filter(|_| seen.method == "POST")
    else {
        return Answer::json(
            404,
            json!({"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}),
        );
    };
    let jwt = seen.header("authorization").and_then(|a| a.strip_prefix("Bearer ")).unwrap_or_default();
    jwts.lock().unwrap().push(jwt.to_owned());
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_required_spec_claims(&["exp", "iat", "iss"]);
    validation.set_issuer(&[CLIENT_ID]);
    validation.leeway = 0;
    let claims = DecodingKey::from_rsa_pem(public_key)
        .ok()
        .and_then(|key| jsonwebtoken::decode::<Value>(jwt, &key, &validation).ok())
        .map(|data| data.claims);
    let fair = |c: &Value| {
        let (iat, exp) = (c["iat"].as_u64().unwrap_or(u64::MAX), c["exp"].as_u64().unwrap_or(0));
        iat <= now() && exp > now() && exp - iat <= 600
    };
    if !claims.as_ref().is_some_and(fair) {
        return Answer::json(
            401,
            json!({"message": "A JSON web token could not be decoded", "documentation_url": "https://docs.github.com/rest", "status": "401"}),
        );
    }
    if seen.header("accept") != Some("application/vnd.github+json")
        || seen.header("x-github-api-version") != Some("2022-11-28")
    {
        return Answer::json(400, json!({"message": "Bad headers"}));
    }
    if installation != INSTALLATION.to_string() {
        return Answer::json(
            404,
            json!({"message": "Not Found", "documentation_url": documentation, "status": "404"}),
        );
    }
    let body: Value = serde_json::from_slice(&seen.body).unwrap_or(json!({}));
    let mut n = issued.lock().unwrap();
    *n += 1;
    let expires_at =
        humantime::format_rfc3339_seconds(SystemTime::now() + std::time::Duration::from_secs(3600));
    Answer::json(
        201,
        json!({
            "token": installation_token(*n),
            "expires_at": expires_at.to_string(),
            "permissions": body.get("permissions").cloned().unwrap_or(json!({"contents": "read", "metadata": "read"})),
            "repository_selection": if body.get("repositories").is_some() { "selected" } else { "all" },
        }),
    )
}

fn source(github: &GitHub, installation: u64, key: &Path, extra: &str) -> String {
    format!(
        "[source]\ntype = \"github_app\"\nclient_id = \"{CLIENT_ID}\"\ninstallation_id = {installation}\n\
         private_key_file = \"{}\"\napi_url = \"{}\"\n{extra}\n",
        key.display(),
        github.server.url()
    )
}

/// The app's key, copied where the test may replace it.
fn key_file(dir: &Path) -> PathBuf {
    let key = dir.join("github-app.pem");
    std::fs::copy(format!("{TESTDATA}/rsa-pkcs1.pem"), &key).unwrap();
    key
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_installation_token_of_2026_reaches_the_file_and_the_proxy_narrowed_as_asked() {
    let github = GitHub::start();
    let keys = tempfile::tempdir().unwrap();
    let key = key_file(keys.path());
    let d = Daemon::start(
        &source(
            &github,
            INSTALLATION,
            &key,
            "repositories = [\"infra\", \"docs\"]\npermissions = { contents = \"read\", issues = \"write\" }",
        ),
        "",
    );
    let token = d.token(None);
    assert_eq!(token, installation_token(1));
    assert!(token.len() > 500 && token.matches('.').count() == 2, "{}", token.len());
    assert_eq!(d.through_proxy().await, format!("Bearer {token}"));

    let asked = github.server.seen();
    let body: Value = serde_json::from_slice(&asked[0].body).unwrap();
    assert_eq!(
        body,
        json!({"repositories": ["infra", "docs"], "permissions": {"contents": "read", "issues": "write"}})
    );
    assert_eq!(asked[0].header("content-type"), Some("application/json"));
    let status = get(&d.socket, "/v1/status").await.json();
    assert_eq!(
        status["source"],
        json!({"type": "github_app", "app": CLIENT_ID, "installation_id": INSTALLATION})
    );

    // A refresh signs a new JWT and gets the next token.
    assert_eq!(post(&d.socket, "/v1/refresh", b"").await.status, 200);
    assert_eq!(d.token(Some(&token)), installation_token(2));
    let jwts = github.jwts.lock().unwrap().clone();
    assert_eq!(jwts.len(), 2);
    let mut secrets: Vec<&str> = jwts.iter().map(String::as_str).collect();
    secrets.extend(["PRIVATE KEY", &token[4..60]]);
    d.keeps_secret(&secrets);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn githubs_refusals_are_named_by_its_message_and_a_rotated_key_needs_no_restart() {
    let github = GitHub::start();
    let keys = tempfile::tempdir().unwrap();
    let key = key_file(keys.path());
    // An installation of another app: GitHub's 404, named.
    let d = Daemon::start(&source(&github, 1234, &key, ""), "");
    let status =
        d.status_until("the 404", |s| s["last_error"].as_str().is_some_and(|e| e.contains("HTTP 404"))).await;
    let error = status["last_error"].as_str().unwrap();
    assert!(error.contains("Not Found") && error.contains("source.installation_id"), "{error}");
    drop(d);

    let d = Daemon::start(&source(&github, INSTALLATION, &key, ""), "");
    let token = d.token(None);
    // The owner generates a new key on GitHub (it alone is accepted from now on) and replaces
    // the file: the old key is refused with GitHub's 401 until then, and the next fetch after
    // uses the new one, with no restart.
    let (new_private, new_public) = new_key(keys.path());
    *github.public_key.lock().unwrap() = std::fs::read(&new_public).unwrap();
    post(&d.socket, "/v1/refresh", b"").await;
    let status =
        d.status_until("the 401", |s| s["last_error"].as_str().is_some_and(|e| e.contains("HTTP 401"))).await;
    let error = status["last_error"].as_str().unwrap();
    assert!(
        error.contains("A JSON web token could not be decoded") && error.contains("private_key_file"),
        "{error}"
    );
    std::fs::copy(&new_private, &key).unwrap();
    let rotated = d.token(Some(&token));
    assert!(rotated.starts_with("ghs_"), "{rotated}");
    d.daemon.wait_output("fetched new token", PATIENCE);
}

/// An RSA key pair made now, as GitHub hands one out (PKCS#1 PEM): (private, public) files.
fn new_key(dir: &Path) -> (PathBuf, PathBuf) {
    let (private, public) = (dir.join("new.pem"), dir.join("new-public.pem"));
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl").args(args).output().expect("openssl is installed");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    run(&["genrsa", "-traditional", "-out", private.to_str().unwrap(), "2048"]);
    run(&["rsa", "-in", private.to_str().unwrap(), "-pubout", "-out", public.to_str().unwrap()]);
    (private, public)
}
