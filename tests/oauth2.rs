//! `[source] type = "oauth2"` (DESIGN §13) against a real authorization server, oidc-provider,
//! through `once` and a daemon: the client credentials grant with every client authentication,
//! the token endpoint found from the issuer's metadata; the refresh-token grant seeded by a file,
//! rotated, shared by several holders at once, refused; the seed watched for changes.

mod support;

use support::binary::run_verb;
use support::oauth::Provider;

/// `once` with an oauth2 source described by `keys`, writing the token to a file: (exit ok,
/// the file's content, everything the verb printed).
fn once(p: &Provider, keys: &str) -> (bool, Option<String>, String) {
    once_in(&tempfile::tempdir().unwrap().keep(), p, keys)
}

/// `once` with its state_dir (and config and token file) in `dir`.
fn once_in(dir: &std::path::Path, p: &Provider, keys: &str) -> (bool, Option<String>, String) {
    let file = dir.join(format!("token-{}", rand_suffix()));
    let config = dir.join(format!("config-{}.toml", rand_suffix()));
    let text = format!(
        "[source]\ntype = \"oauth2\"\nissuer = \"{}\"\nresource = \"https://mcp.example.com/mcp\"\nscope = \"calendar\"\n{keys}\n\
         [daemon]\nstate_dir = \"{}\"\n\n{}",
        p.issuer,
        dir.display(),
        support::file_sink(&file, "raw")
    );
    std::fs::write(&config, text).unwrap();
    let (status, output) = run_verb(&["once", "--config", config.to_str().unwrap()]);
    (status.success(), std::fs::read_to_string(&file).ok(), output)
}

#[test]
fn client_credentials_with_every_client_authentication_publishes_a_token() {
    let p = Provider::start(300);
    let clients = p.service_clients();
    for client in clients {
        let keys = format!("grant = \"client_credentials\"\n{client}\n");
        let (ok, token, output) = once(&p, &keys);
        assert!(ok, "{client}:\n{output}");
        let token = token.expect("the file sink was written");
        assert!(token.len() > 20, "{client}: {token:?}");
        for secret in ["basic-secret-0123456789", "post-secret-0123456789", &token] {
            assert!(!output.contains(secret), "{client}: a secret in the output:\n{output}");
        }
    }
}

#[test]
fn a_refused_client_is_named_by_the_rfc_6749_code_and_nothing_is_published() {
    let p = Provider::start(300);
    let wrong = p.secret_file("wrong", "not-the-secret");
    let keys = format!(
        "grant = \"client_credentials\"\nclient_id = \"service-basic\"\nclient_auth = \"client_secret_basic\"\nclient_secret_file = \"{}\"\n",
        wrong.display()
    );
    let (ok, token, output) = once(&p, &keys);
    assert!(!ok, "{output}");
    assert!(token.is_none(), "a token was published");
    assert!(output.contains("invalid_client"), "{output}");
    assert!(!output.contains("not-the-secret"), "{output}");
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

const RESOURCE: &str = "https://mcp.example.com/mcp";

/// The refresh-token grant (oidc-provider rotates a public client's refresh token at every use
/// and revokes the grant when a spent one comes back): seeded by refresh_token_file, the
/// successor stored before anything is published, the seed not presented again.
#[test]
fn a_seeded_refresh_token_rotates_and_its_successor_is_what_goes_next() {
    let p = Provider::start(300);
    let dir = tempfile::tempdir().unwrap();
    let seed = dir.path().join("seed");
    std::fs::write(&seed, p.refresh_token(RESOURCE)).unwrap();
    let keys = format!("client_id = \"host-public\"\nrefresh_token_file = \"{}\"\n", seed.display());
    let mut tokens = Vec::new();
    for round in 0..3 {
        let (ok, token, output) = once_in(dir.path(), &p, &keys);
        assert!(ok, "round {round}:\n{output}");
        assert!(!output.contains("invalid_grant"), "round {round}:\n{output}");
        tokens.push(token.unwrap());
        // Another holder's access token is adopted only if newer than this process's, and each
        // `once` is a new process: force a refresh by forgetting the stored access token.
        let store = dir.path().join("oauth2.json");
        let mut stored: serde_json::Value = serde_json::from_slice(&std::fs::read(&store).unwrap()).unwrap();
        assert_ne!(
            stored["refresh_token"].as_str(),
            Some(std::fs::read_to_string(&seed).unwrap().trim()),
            "not rotated"
        );
        stored.as_object_mut().unwrap().remove("access_token");
        std::fs::write(&store, serde_json::to_vec(&stored).unwrap()).unwrap();
    }
    tokens.dedup();
    assert_eq!(tokens.len(), 3, "each round got a new access token");
}

/// Several holders on one state_dir at once (a second daemon, repeated `once`): one refreshes,
/// the others adopt what it stored; no refresh token is presented twice.
#[test]
fn holders_at_once_on_one_state_dir_never_spend_a_refresh_token_twice() {
    let p = Provider::start(300);
    let dir = tempfile::tempdir().unwrap();
    let seed = dir.path().join("seed");
    std::fs::write(&seed, p.refresh_token(RESOURCE)).unwrap();
    let keys = format!("client_id = \"host-public\"\nrefresh_token_file = \"{}\"\n", seed.display());
    let results: Vec<(bool, Option<String>, String)> = std::thread::scope(|scope| {
        let runs: Vec<_> = (0..5).map(|_| scope.spawn(|| once_in(dir.path(), &p, &keys))).collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    for (ok, _, output) in &results {
        assert!(*ok && !output.contains("invalid_grant"), "{output}");
    }
    let mut tokens: Vec<_> = results.into_iter().map(|(_, token, _)| token.unwrap()).collect();
    tokens.sort();
    tokens.dedup();
    assert_eq!(tokens.len(), 1, "all five adopted the one refresh's access token");
}

/// A refresh token the server refuses (`invalid_grant`): named, kept and marked refused, and
/// not presented again; `once` says to log in.
#[test]
fn a_refused_refresh_token_is_kept_marked_and_not_presented_again() {
    let p = Provider::start(300);
    let dir = tempfile::tempdir().unwrap();
    let seed = dir.path().join("seed");
    std::fs::write(&seed, "not-a-refresh-token-the-server-knows").unwrap();
    let keys = format!("client_id = \"host-public\"\nrefresh_token_file = \"{}\"\n", seed.display());
    let (ok, token, output) = once_in(dir.path(), &p, &keys);
    assert!(!ok && token.is_none(), "{output}");
    assert!(output.contains("invalid_grant") && output.contains("mcp-token-sync login"), "{output}");
    let stored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("oauth2.json")).unwrap()).unwrap();
    assert_eq!(stored["refused"], true, "{stored}");
    let (ok, _, output) = once_in(dir.path(), &p, &keys);
    assert!(!ok && output.contains("was refused") && !output.contains("invalid_grant"), "{output}");
}

/// The daemon reads refresh_token_file at every refresh; reading it is no change (on gVisor a
/// read alone raises a file event, and each one refreshed again, every 300 ms). A new seed is.
#[test]
fn a_daemon_refreshes_on_schedule_and_when_the_seed_changes_not_when_it_is_read() {
    let p = Provider::start(300);
    let dir = tempfile::tempdir().unwrap();
    let (source, seed) = support::oauth::seeded_source(&p, dir.path(), RESOURCE, true);
    let d = support::oauth::OAuthDaemon::start_in(dir, &source, "");
    d.wait_state("fresh");
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(p.stats()["grants"]["refresh_token"], 1, "{}", d.daemon.output());
    std::fs::write(&seed, p.refresh_token(RESOURCE)).unwrap();
    d.wait_status("version 2", |s| s["version"].as_u64() >= Some(2));
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(p.stats()["grants"]["refresh_token"], 2, "{}", d.daemon.output());
}

/// The store is bound to its server: after the config names another one, the refresh token
/// held is never sent there; the daemon asks for a login instead.
#[test]
fn a_refresh_token_is_never_sent_to_another_server() {
    let (p, other) = (Provider::start(300), Provider::start(300));
    let dir = tempfile::tempdir().unwrap();
    let seed = dir.path().join("seed");
    std::fs::write(&seed, p.refresh_token(RESOURCE)).unwrap();
    let keys = format!("client_id = \"host-public\"\nrefresh_token_file = \"{}\"\n", seed.display());
    let (ok, _, output) = once_in(dir.path(), &p, &keys);
    assert!(ok, "{output}");
    let (ok, _, output) = once_in(dir.path(), &other, &keys);
    assert!(!ok && output.contains("mcp-token-sync login") && output.contains(&p.issuer), "{output}");
    assert_eq!(other.stats()["refresh_presented"], 0, "{}", other.stats());
}
