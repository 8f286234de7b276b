//! End to end with real MCP parts: the official Python SDK's FastMCP server over Streamable HTTP,
//! accepting only the backend's current token, and the SDK's own client with no credentials at
//! all, talking to it through the daemon's proxy while the token rotates underneath.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;
use support::mcp::{McpBehindProxy, Process, next_line};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mcp_client_with_no_token_works_through_the_proxy_across_a_rotation() {
    across_a_rotation(McpBehindProxy::start().await).await;
}

/// VS Code treats a 403 as an auth challenge; the proxy must treat the server's 403
/// `invalid_token` as a refused token and never pass the challenge on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_refuses_stale_tokens_with_403_works_through_the_proxy_too() {
    across_a_rotation(McpBehindProxy::refusing_with(403).await).await;
}

async fn across_a_rotation(m: McpBehindProxy) {
    let mut client = Process::python("client.py", &[&m.proxy_url]);
    let (mut stdin, mut lines) = client.io();
    let ready = tokio::task::block_in_place(|| next_line(&mut lines));
    assert_eq!(ready["tools"], serde_json::json!(["list_calendars", "sync_calendar"]), "{ready}");
    assert_eq!(ready["first_error"], false, "{ready}");
    assert!(ready["first"].to_string().contains("On-call"), "{ready}");

    // The backend rotates: the MCP server now refuses the token the daemon holds.
    let before = m.rotate();
    stdin.write_all(b"go\n").unwrap();
    let done = tokio::task::block_in_place(|| next_line(&mut lines));
    assert_eq!(done["second_error"], false, "the call after the rotation failed: {done}");
    assert!(done["second"].to_string().contains("On-call"), "{done}");
    assert_eq!(m.backend.fetches() - before, 1, "the rotation cost one fetch: {done}");

    // Progress arrives as the tool reports it (every 0.4 s), not all at once with the result.
    let progress: Vec<f64> =
        done["progress_at"].as_array().unwrap().iter().map(|t| t.as_f64().unwrap()).collect();
    let result_at = done["result_at"].as_f64().unwrap();
    assert_eq!(progress.len(), 3, "{done}");
    assert!(result_at - progress[0] > 0.6, "the first progress came with the result: {done}");
    assert!(progress[2] - progress[0] > 0.6, "the progress notifications came in one burst: {done}");
    assert_eq!(done["synced"], serde_json::json!(["synced in 3 steps"]), "{done}");
    assert!(!m.d.daemon.output().contains("SECRET-tok"), "the daemon logged a token");
}

/// Claude Desktop speaks only stdio: `npx mcp-remote http://127.0.0.1:8787/mcp` bridges it to
/// the proxy. The bridge gets no header; the token still rotates under it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stdio_host_works_through_mcp_remote_and_the_proxy() {
    let m = McpBehindProxy::start().await;

    // mcp-remote keeps OAuth state under $HOME: a home of the test's own.
    let bridge = Command::new("mcp-remote")
        .arg(&m.proxy_url)
        .env("HOME", m.dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("mcp-remote (scripts/test installs it: npm install mcp-remote)");
    let mut bridge = Process(bridge);
    let (mut stdin, mut lines) = bridge.io();
    let mut rpc = |message: Value| {
        stdin.write_all(format!("{message}\n").as_bytes()).unwrap();
        if message.get("id").is_none() {
            return Value::Null;
        }
        tokio::task::block_in_place(|| next_line(&mut lines))
    };
    let init = rpc(serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "desktop", "version": "1"}}}));
    assert_eq!(init["result"]["serverInfo"]["name"], "calendar", "{init}");
    rpc(serde_json::json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    let call = serde_json::json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "list_calendars", "arguments": {}}});
    let first = rpc(call.clone());
    assert!(first["result"].to_string().contains("On-call"), "{first}");

    let before = m.rotate();
    let second = rpc(serde_json::json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
        "params": {"name": "list_calendars", "arguments": {}}}));
    assert!(second["result"].to_string().contains("On-call"), "{second}");
    assert_eq!(second["result"]["isError"], false, "{second}");
    assert_eq!(m.backend.fetches() - before, 1, "the rotation cost one fetch");
}
