//! The client examples in examples/, run against the real daemon.

mod support;

use std::process::Command;
use std::time::Duration;

use support::{Backend, api, read_new, wait_for};

const PATIENCE: Duration = Duration::from_secs(10);

fn example(program: &str, file: &str, socket: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(program)
        .arg(format!("{}/examples/{file}", env!("CARGO_MANIFEST_DIR")))
        .args(args)
        .env("MCP_TOKEN_SYNC_SOCKET", socket)
        .output()
        .unwrap_or_else(|e| panic!("{program} is installed: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The seed's pattern on top of the daemon: read the token, call the API, and on 401 report and
/// retry once with the fresh token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_seed_client_recovers_from_a_rotation_with_one_report() {
    let backend = Backend::start().await;
    let d = api::start(&backend, "");
    wait_for("the first token", PATIENCE, || read_new(&d.file, None));
    let api_url = backend.probe_url();
    let run = || tokio::task::block_in_place(|| example("python3", "seed_client.py", &d.socket, &[&api_url]));

    let fetches = backend.fetches();
    let (ok, out, err) = run();
    assert!(ok && out.trim() == "200", "{out}{err}");
    assert_eq!(backend.fetches(), fetches, "a token the API accepts needs no fetch");

    // The backend rotates; the daemon does not know yet, so the API answers 401 to its token.
    let fresh = backend.rotate();
    let (ok, out, err) = run();
    assert!(ok && out.trim() == "200", "{out}{err}");
    assert_eq!(backend.fetches(), fetches + 1, "one report, one fetch");
    wait_for("the other sinks to get it too", PATIENCE, || read_new(&d.file, None).filter(|t| *t == fresh));
    assert!(!out.contains("SECRET-tok") && !err.contains("SECRET-tok"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_example_reads_the_token() {
    let backend = Backend::start().await;
    let d = api::start(&backend, "");
    wait_for("the first token", PATIENCE, || read_new(&d.file, None));
    let (ok, out, err) = tokio::task::block_in_place(|| example("node", "read_token.js", &d.socket, &[]));
    assert!(ok, "{out}{err}");
    assert!(out.starts_with("version 1, ") && !out.contains("SECRET-tok"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_httpx_example_reads_the_token() {
    let backend = Backend::start().await;
    let d = api::start(&backend, "");
    wait_for("the first token", PATIENCE, || read_new(&d.file, None));
    let (ok, out, err) =
        tokio::task::block_in_place(|| example("python3", "read_token_httpx.py", &d.socket, &[]));
    assert!(ok, "{out}{err}");
    assert!(out.starts_with("version 1, expires "), "{out}");
}

/// The README's shell one-liner: the token goes to curl through a header file, not argv.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_shell_one_liner_calls_the_api() {
    let backend = Backend::start().await;
    let d = api::start(&backend, "");
    wait_for("the first token", PATIENCE, || read_new(&d.file, None));
    let bin_dir = std::path::Path::new(support::binary::BIN).parent().unwrap();
    let line = format!(
        "curl -s -o /dev/null -w '%{{http_code}}' -H @<(printf 'X-Google-MCP-Token: %s\\n' \"$(mcp-token-sync token)\") {}",
        backend.probe_url()
    );
    let out = tokio::task::block_in_place(|| {
        Command::new("bash")
            .args(["-c", &line])
            .env("MCP_TOKEN_SYNC_SOCKET", &d.socket)
            .env("PATH", format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap()))
            .output()
            .unwrap()
    });
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200", "{}", String::from_utf8_lossy(&out.stderr));
}

/// Issue 29: every config of the README's "More sources" section is accepted as it stands (on
/// a host without the user `alice`, that alone is named).
#[test]
fn the_readmes_configs_for_more_sources_are_accepted_as_pasted() {
    use mcp_token_sync::config::{Config, Environment};
    let readme = include_str!("../README.md");
    let start = readme.find("## More sources").expect("the section");
    let section = &readme[start..start + readme[start..].find("\n## Running it").expect("the next section")];
    let env = Environment {
        credentials_directory: Some("/run/credentials/mcp-token-sync.service".into()),
        ..Environment::default()
    };
    let blocks: Vec<&str> =
        section.split("```toml\n").skip(1).map(|b| b.split("```").next().unwrap()).collect();
    assert_eq!(blocks.len(), 5, "az, gcloud, the GitHub App, the exchange, the metadata servers");
    let alice = nix::unistd::User::from_name("alice").unwrap().is_some();
    for block in blocks {
        match Config::parse(block, std::path::Path::new("README.md"), &env) {
            Ok(config) => assert!(!config.tokens.is_empty()),
            Err(e) => {
                let others: Vec<_> = e
                    .problems
                    .iter()
                    .filter(|p| alice || !p.message.contains("no user named \"alice\""))
                    .collect();
                assert!(others.is_empty(), "{block}\n{e}");
            }
        }
    }
}
