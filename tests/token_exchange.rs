//! `grant = "token_exchange"` (RFC 8693, DESIGN §16) against the real authorization server
//! (oidc-provider), with token exchange added through its documented extension point
//! (`registerGrantType`, tests/oauth/provider.mjs): the subject a workload's own JWT, signed by
//! a "cluster" key the server verifies, re-read from a file that is replaced as kubelet
//! replaces it; or another token of the same daemon, whose every new version is exchanged.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use support::api::{get, get_until, post};
use support::kinds::{Daemon, PATIENCE};
use support::oauth::Provider;
use support::{DaemonProcess, wait_for};

const JWT_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";

/// A service-account token as a cluster projects it: RS256 by the cluster's key, for the
/// security token service's audience.
fn subject_jwt(p: &Provider, sub: &str, lifetime: i64) -> String {
    let key = EncodingKey::from_rsa_pem(&std::fs::read(p.dir.path().join("subject.pem")).unwrap()).unwrap();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    let claims = json!({"iss": "https://kubernetes.default.svc", "aud": "sts.test", "sub": sub, "iat": now, "exp": now + lifetime});
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &key).unwrap()
}

/// Replaces `path` as kubelet does: a new file renamed over the old.
fn project(path: &Path, jwt: &str) {
    let next = path.with_extension("new");
    std::fs::write(&next, jwt).unwrap();
    std::fs::rename(&next, path).unwrap();
}

/// Every exchange the server saw (provider.mjs's `/test/exchanges`).
fn exchanges(p: &Provider) -> Vec<Value> {
    let out = Command::new("curl").args(["-s", &format!("{}/test/exchanges", p.issuer)]).output().unwrap();
    serde_json::from_slice(&out.stdout).unwrap()
}

fn exchanger(p: &Provider) -> String {
    let secret = p.secret_file("exchange", "exchange-secret-0123456789");
    format!(
        "type = \"oauth2\"\ngrant = \"token_exchange\"\ntoken_endpoint = \"{}/token\"\nclient_id = \"exchanger\"\n\
         client_auth = \"client_secret_basic\"\nclient_secret_file = \"{}\"\n",
        p.issuer,
        secret.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workloads_projected_token_is_exchanged_and_reread_when_replaced() {
    let p = Provider::start(300);
    let dir = tempfile::tempdir().unwrap();
    let subject = dir.path().join("mcp-token");
    let first = subject_jwt(&p, "system:serviceaccount:agents:mcp-1", 3600);
    project(&subject, &first);
    // The workload acts for an agent, whose own token goes as the actor (RFC 8693 §2.1).
    let actor = dir.path().join("actor-token");
    project(&actor, &subject_jwt(&p, "agent:planner", 3600));
    let d = Daemon::start_in(
        dir,
        &format!(
            "[source]\n{}subject_token_file = \"{}\"\naudience = \"https://api.example.com\"\n\
             actor_token_file = \"{}\"\nactor_token_type = \"{JWT_TYPE}\"\n",
            exchanger(&p),
            subject.display(),
            actor.display()
        ),
        "",
    );
    let token = d.token(None);
    let said = p.introspect(&token);
    assert_eq!(said["active"], true, "{said}");
    assert_eq!(said["exchanged_from"], "system:serviceaccount:agents:mcp-1", "{said}");
    assert_eq!(said["exchanged_for"], "https://api.example.com");
    assert_eq!(d.through_proxy().await, format!("Bearer {token}"));
    let seen = exchanges(&p);
    assert_eq!(seen[0]["subject_token_type"], JWT_TYPE);
    assert_eq!(seen[0]["audience"], "https://api.example.com");
    assert_eq!(
        (seen[0]["actor"].as_str(), seen[0]["actor_token_type"].as_str()),
        (Some("agent:planner"), Some(JWT_TYPE))
    );
    let status = get(&d.socket, "/v1/status").await.json();
    assert_eq!(status["source"]["grant"], "token_exchange", "{status}");
    assert_eq!(status["source"]["subject_token"], json!({"file": subject.to_str().unwrap()}));

    // kubelet rotates the projected token: the next exchange presents the new one.
    let second = subject_jwt(&p, "system:serviceaccount:agents:mcp-2", 3600);
    project(&subject, &second);
    assert_eq!(post(&d.socket, "/v1/refresh", b"").await.status, 200);
    let rotated = d.token(Some(&token));
    assert_eq!(p.introspect(&rotated)["exchanged_from"], "system:serviceaccount:agents:mcp-2");

    // A subject the server refuses (expired) fails the exchange by its RFC 6749 code; the
    // token held stays.
    project(&subject, &subject_jwt(&p, "system:serviceaccount:agents:mcp-3", -60));
    let refused = post(&d.socket, "/v1/refresh", b"").await;
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert!(refused.body.contains("invalid_grant"), "{}", refused.body);
    assert_eq!(std::fs::read_to_string(&d.file).unwrap(), rotated);
    // Neither subject nor the refresh token the server added to its answers is kept or logged.
    d.keeps_secret(&[&first, &second, "exchange-refresh-never-kept"]);
}

/// A daemon of several named tokens: `tables` is their TOML; each gets a raw file sink.
fn named(dir: &Path, tables: &str, names: &[&str]) -> (DaemonProcess, std::path::PathBuf) {
    let socket = dir.join("api.sock");
    let sinks: String = names
        .iter()
        .map(|n| {
            format!(
                "[[tokens.{n}.sink]]\ntype = \"file\"\npath = \"{}\"\nformat = \"raw\"\n\n",
                dir.join(n).display()
            )
        })
        .collect();
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[daemon]\nstate_dir = \"{}\"\n\n[refresh]\njitter = 0.0\nmin_interval = \"1ms\"\nbackoff_max = \"200ms\"\n\n\
             [[sink]]\ntype = \"socket\"\npath = \"{}\"\n\n{tables}\n{sinks}",
            dir.join("state").display(),
            socket.display()
        ),
    )
    .unwrap();
    let daemon = DaemonProcess::run(&config);
    wait_for("the socket", PATIENCE, || socket.exists().then_some(()));
    (daemon, socket)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tokens_every_new_version_is_exchanged_and_while_it_has_none_this_one_waits() {
    let p = Provider::start(300);
    let dir = tempfile::tempdir().unwrap();
    let [basic, ..] = p.service_clients();
    let wrong = p.secret_file("wrong", "not-the-secret");
    let tables = format!(
        "[tokens.service.source]\ntype = \"oauth2\"\ngrant = \"client_credentials\"\ntoken_endpoint = \"{issuer}/token\"\n{basic}\n\n\
         [tokens.chained.source]\n{exchange}subject_token = \"service\"\n\
         requested_token_type = \"urn:ietf:params:oauth:token-type:id_token\"\n\n\
         [tokens.broken.source]\ntype = \"oauth2\"\ngrant = \"client_credentials\"\ntoken_endpoint = \"{issuer}/token\"\n\
         client_id = \"service-basic\"\nclient_auth = \"client_secret_basic\"\nclient_secret_file = \"{wrong}\"\n\n\
         [tokens.waits.source]\n{exchange}subject_token = \"broken\"\ntimeout = \"1s\"\n\n",
        issuer = p.issuer,
        exchange = exchanger(&p),
        wrong = wrong.display(),
    );
    let (daemon, socket) = named(dir.path(), &tables, &["service", "chained", "broken", "waits"]);
    let file = |name: &str, not: Option<&str>| {
        wait_for(&format!("{name}'s file"), PATIENCE, || {
            support::read_new(&dir.path().join(name), not).filter(|t| !t.is_empty())
        })
    };
    let service = file("service", None);
    let chained = file("chained", None);
    // Issued N_A (an ID token was asked for): kept all the same, RFC 8693 §2.2.1.
    assert_eq!(p.introspect(&chained)["exchanged_from"], "service-basic");
    let status = get(&socket, "/v1/tokens/chained/status").await.json();
    assert_eq!(status["source"]["subject_token"], json!({"token": "service", "waiting": false}), "{status}");
    let before = exchanges(&p).len();

    // service's next version is exchanged without anyone asking chained for it.
    assert_eq!(post(&socket, "/v1/tokens/service/refresh", b"").await.status, 200);
    let service2 = file("service", Some(&service));
    let chained2 = file("chained", Some(&chained));
    assert_ne!(chained2, chained);
    assert!(exchanges(&p).len() > before);
    assert_eq!(
        exchanges(&p).last().unwrap()["subject_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );
    assert!(!daemon.output().contains(&service2));

    // broken holds nothing: waits waits for it, and says so.
    let waiting = get_until(&socket, "/v1/tokens/waits/status", "waits waiting", |r| {
        r.json()["last_error"].as_str().is_some_and(|e| e.contains("token \"broken\" holds no valid token"))
    })
    .await
    .json();
    assert_eq!(waiting["state"], "empty", "{waiting}");
    assert_eq!(waiting["source"]["subject_token"], json!({"token": "broken", "waiting": true}));
    assert_eq!(get(&socket, "/v1/tokens/service").await.status, 200, "the others are served meanwhile");

    // `once` exchanges what the subject's state file holds when the subject is not run.
    drop(daemon);
    let config = dir.path().join("config.toml");
    let (status, out) =
        support::binary::run_verb(&["once", "--config", config.to_str().unwrap(), "--token", "chained"]);
    assert!(status.success(), "{out}");
    assert_ne!(file("chained", Some(&chained2)), chained2);
}
