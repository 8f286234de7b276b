//! `mcp-token-sync bridge` (DESIGN §14), as a stdio-only host (Claude Desktop) runs it.
//!
//! With real parts: the official MCP Python SDK's stdio client starts the bridge, which relays
//! to the daemon's proxy in front of the SDK's FastMCP server, accepting only the backend's
//! current token, while the token rotates, the server restarts and drops its streams. With a
//! fake server (`support::fake_mcp`) for what a real one cannot be made to do on cue: lose a
//! session, close a connection after reading a tool call, and be watched for its DELETE.

mod support;

use std::io::Write;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::{Value, json};
use support::binary::BIN;
use support::bridge::{Bridge, Wiring, call_tool, initialize, initialized};
use support::fake_mcp::FakeMcp;
use support::free_port;
use support::mcp::{McpBehindProxy, PATIENCE, Process, next_line};
use support::wait_for_async;

/// Long enough for any one answer on a loaded CI machine; tests wait for events, not for this.
const ANSWER: Duration = Duration::from_secs(20);

/// The SDK's stdio host with the bridge as its server, relaying to `m`'s proxy.
fn sdk_host(
    m: &McpBehindProxy,
) -> (Process, std::process::ChildStdin, std::io::BufReader<std::process::ChildStdout>) {
    let errlog = m.dir.path().join("bridge.stderr");
    let mut host = Process::python("bridge_client.py", &[BIN, errlog.to_str().unwrap(), &m.proxy_url]);
    let (stdin, lines) = host.io();
    (host, stdin, lines)
}

/// Runs one of bridge_client.py's commands and returns its report, which must show no line on
/// the bridge's stdout that was not a JSON-RPC message.
fn command(
    stdin: &mut std::process::ChildStdin,
    lines: &mut std::io::BufReader<std::process::ChildStdout>,
    line: &str,
) -> Value {
    stdin.write_all(format!("{line}\n").as_bytes()).unwrap();
    let report = tokio::task::block_in_place(|| next_line(lines));
    assert_eq!(report["problems"], json!([]), "the host read something that is not MCP: {report}");
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stdio_host_works_through_the_bridge_and_the_proxy_across_a_rotation() {
    let m = McpBehindProxy::serving("bridge_server.py", &[]).await;
    let (_host, mut stdin, mut lines) = sdk_host(&m);
    let ready = tokio::task::block_in_place(|| next_line(&mut lines));
    assert_eq!(
        ready["tools"],
        json!(["announce", "book", "list_calendars", "slow_job", "summarize", "sync_calendar"]),
        "{ready}"
    );

    let first = command(&mut stdin, &mut lines, "call list_calendars");
    assert_eq!(first["result"], json!(["Team calendar", "On-call"]), "{first}");

    // Progress arrives as the tool reports it (every 0.4 s), not all at once with the result.
    let synced = command(&mut stdin, &mut lines, r#"call sync_calendar {"steps": 3}"#);
    assert_eq!(synced["result"], json!(["synced in 3 steps"]), "{synced}");
    let progress: Vec<f64> =
        synced["progress_at"].as_array().unwrap().iter().map(|t| t.as_f64().unwrap()).collect();
    assert_eq!(progress.len(), 3, "{synced}");
    assert!(
        synced["result_at"].as_f64().unwrap() - progress[0] > 0.6,
        "progress came with the result: {synced}"
    );

    // The server asks the host during a tool call, on that call's stream; the host's answer is
    // a POST of its own while the call's POST is still open.
    let booked = command(&mut stdin, &mut lines, r#"call book {"title": "standup"}"#);
    assert_eq!(booked["result"], json!(["booked standup"]), "elicitation: {booked}");
    let summary = command(&mut stdin, &mut lines, r#"call summarize {"text": "a long text"}"#);
    assert_eq!(summary["result"], json!(["summary: short"]), "sampling: {summary}");

    // The token rotates: the server refuses the old one; the proxy refreshes once.
    let before = m.rotate();
    let after = command(&mut stdin, &mut lines, "call list_calendars");
    assert_eq!(after["error"], false, "the call after the rotation failed: {after}");
    assert_eq!(after["result"], json!(["Team calendar", "On-call"]), "{after}");
    assert_eq!(m.backend.fetches() - before, 1, "the rotation cost one fetch");

    // Hosts start several copies at once.
    let many = command(&mut stdin, &mut lines, "many 5");
    assert_eq!(many["results"], json!(vec![json!(["Team calendar", "On-call"]); 5]), "{many}");

    drop(stdin);
    let stderr = std::fs::read_to_string(m.dir.path().join("bridge.stderr")).unwrap_or_default();
    for token in [m.backend.token(), std::fs::read_to_string(&m.token_file).unwrap()] {
        assert!(!stderr.contains(&token), "a token in the bridge's stderr");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_and_dropped_streams_are_not_seen_by_the_host() {
    let mut m = McpBehindProxy::serving("bridge_server.py", &[]).await;
    let (_host, mut stdin, mut lines) = sdk_host(&m);
    tokio::task::block_in_place(|| next_line(&mut lines));
    let first = command(&mut stdin, &mut lines, "call list_calendars");
    assert_eq!(first["error"], false, "{first}");

    // A new server process knows no session: the bridge opens a new one, unseen by the host.
    m.stop_server();
    m.start_server();
    let after_restart = command(&mut stdin, &mut lines, "call list_calendars");
    assert_eq!(after_restart["error"], false, "{after_restart}");
    assert_eq!(after_restart["result"], json!(["Team calendar", "On-call"]), "{after_restart}");

    // The server drops the GET stream halfway through six notifications: the bridge resumes it
    // with Last-Event-ID and the server replays the rest. All six, in order.
    let announced = command(&mut stdin, &mut lines, r#"call announce {"count": 6}"#);
    assert_eq!(announced["result"], json!(["announced 6"]), "{announced}");
    let expected: Vec<String> = (0..6).map(|n| format!("announcement {n}")).collect();
    let deadline = Instant::now() + ANSWER;
    loop {
        let logs = command(&mut stdin, &mut lines, "logs");
        if logs["logs"] == json!(expected) {
            break;
        }
        let so_far = logs["logs"].as_array().unwrap();
        assert!(
            expected.starts_with(&so_far.iter().map(|l| l.as_str().unwrap().to_owned()).collect::<Vec<_>>()),
            "{logs}"
        );
        assert!(Instant::now() < deadline, "the GET stream was not resumed: {logs}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The server closes a tool call's own stream before the result (MCP 2025-11-25 polling):
    // the bridge resumes it with a GET; the call is not sent again.
    let job = command(&mut stdin, &mut lines, "call slow_job");
    assert_eq!(job["result"], json!(["job done"]), "{job}");
    assert_eq!(job["progress_at"].as_array().unwrap().len(), 2, "{job}");
}

/// The proxy answers 502 while its upstream is down, and nothing answers on a closed port:
/// each is an error answer to the request, and the next message is tried afresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_an_error_answer_and_a_later_message_works() {
    let mut m = McpBehindProxy::serving("bridge_server.py", &[]).await;
    m.stop_server();
    let mut bridge = Bridge::start(&[&m.proxy_url]);
    bridge.send(&initialize(1));
    let refused = tokio::task::block_in_place(|| bridge.answer(1, ANSWER));
    assert_eq!(refused["error"]["code"], -32000, "{refused}");
    assert_eq!(refused["error"]["data"]["http_status"], 502, "{refused}");
    // The proxy's own explanation reaches the host.
    let said = refused["error"]["message"].as_str().unwrap();
    assert!(said.starts_with(&m.proxy_url) && said.contains("upstream_unreachable"), "{refused}");

    m.start_server();
    bridge.send(&initialize(2));
    let init = tokio::task::block_in_place(|| bridge.answer(2, ANSWER));
    assert_eq!(init["result"]["serverInfo"]["name"], "calendar", "{init}");
    bridge.send(&initialized());
    bridge.send(&call_tool(3, "list_calendars"));
    let call = tokio::task::block_in_place(|| bridge.answer(3, ANSWER));
    assert!(call["result"].to_string().contains("On-call"), "{call}");

    let mut nowhere = Bridge::start(&[&format!("http://127.0.0.1:{}/mcp", free_port("127.0.0.1").port())]);
    nowhere.send(&initialize(7));
    let unreachable = tokio::task::block_in_place(|| nowhere.answer(7, ANSWER));
    assert_eq!(unreachable["error"]["code"], -32000, "{unreachable}");
    assert!(
        unreachable["error"]["message"].as_str().unwrap().contains("could not be reached"),
        "{unreachable}"
    );
    assert!(unreachable["error"].get("data").is_none(), "no HTTP status to give: {unreachable}");
    // Still there, and trying afresh.
    nowhere.send(&initialize(8));
    let again = tokio::task::block_in_place(|| nowhere.answer(8, ANSWER));
    assert_eq!(again["error"]["code"], -32000, "{again}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_are_compact_lines_and_every_request_carries_the_session() {
    let fake = FakeMcp::start().await;
    let mut bridge = Bridge::start(&["--header", "X-Team: blue", &fake.url()]);
    // The bridge reads stdin before anything reaches the network.
    bridge.send_raw("not json\n");
    let refused = tokio::task::block_in_place(|| bridge.next(ANSWER));
    assert_eq!(refused["error"]["code"], -32700, "{refused}");
    assert!(fake.seen().is_empty(), "the bridge went to the network before the first message");

    bridge.send(&initialize(1));
    // The fake answers pretty-printed JSON: one line on stdout, content unchanged.
    let init = tokio::task::block_in_place(|| bridge.answer(1, ANSWER));
    assert_eq!(init["result"]["protocolVersion"], "2025-06-18", "{init}");
    bridge.send(&initialized());
    bridge.send(&call_tool(2, "echo"));
    // An SSE answer whose data spans five lines.
    let call = tokio::task::block_in_place(|| bridge.answer(2, ANSWER));
    assert_eq!(call["result"]["content"][0]["text"], "two\nlines", "{call}");

    wait_for_async("the GET stream's try", ANSWER, || {
        fake.seen().iter().any(|s| s.http_method == "GET").then_some(())
    })
    .await;
    let seen = fake.seen();
    assert_eq!(seen.len(), 4, "initialize, initialized, the GET stream's try, the call: {seen:?}");
    assert!(seen.iter().all(|s| s.team.as_deref() == Some("blue")), "--header missing: {seen:?}");
    assert_eq!(seen[0].session, None, "{seen:?}");
    for later in &seen[1..] {
        assert_eq!(later.session.as_deref(), Some("s1"), "{seen:?}");
        assert_eq!(later.protocol_version.as_deref(), Some("2025-06-18"), "{seen:?}");
    }
    assert_eq!(seen.iter().filter(|s| s.http_method == "GET").count(), 1, "405 is not retried: {seen:?}");
    // The host wrote its call right after `initialized`; the call waited for the GET's answer,
    // so a server that sends a tool's questions on the GET stream has it open by then.
    assert_eq!(seen[2].http_method, "GET", "the call overtook the GET stream: {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_session_is_reopened_once_with_the_handshake_off_stdout() {
    let fake = FakeMcp::start().await;
    let mut bridge = Bridge::start(&[&fake.url()]);
    tokio::task::block_in_place(|| bridge.open_session(ANSWER));
    bridge.send(&call_tool(2, "echo"));
    tokio::task::block_in_place(|| bridge.answer(2, ANSWER));

    fake.forget();
    // Three calls at once find the session gone: one new session serves them all.
    for id in 3..6 {
        bridge.send(&call_tool(id, "echo"));
    }
    let mut answered: Vec<u64> =
        (3..6).map(|_| tokio::task::block_in_place(|| bridge.next(ANSWER))["id"].as_u64().unwrap()).collect();
    answered.sort();
    assert_eq!(answered, [3, 4, 5], "the replayed initialize's answer reached stdout, or a call failed");
    tokio::task::block_in_place(|| bridge.assert_silent(Duration::from_millis(200)));
    let seen = fake.seen();
    let initializes = seen.iter().filter(|s| s.rpc_method.as_deref() == Some("initialize")).count();
    assert_eq!(initializes, 2, "{seen:?}");
    let last_calls: Vec<_> =
        seen.iter().filter(|s| s.rpc_method.as_deref() == Some("tools/call")).skip(1).collect();
    assert_eq!(last_calls.len(), 6, "each call once in the lost session, once in the new: {seen:?}");
    assert!(last_calls[3..].iter().all(|s| s.session.as_deref() == Some("s2")), "{seen:?}");

    // A server that forgets every session at once: a second 404 is an error answer, not a loop.
    fake.forget_always();
    bridge.send(&call_tool(6, "echo"));
    let gone = tokio::task::block_in_place(|| bridge.answer(6, ANSWER));
    assert_eq!(gone["error"]["data"]["http_status"], 404, "{gone}");
    let initializes = fake.seen().iter().filter(|s| s.rpc_method.as_deref() == Some("initialize")).count();
    assert_eq!(initializes, 3, "one more try for the message, no more");
}

/// What is not an MCP message never reaches stdout, whichever side sent it, and a server that
/// never answers is given up on after `--timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_is_not_json_rpc_is_refused_and_silence_is_given_up_on() {
    let fake = FakeMcp::start().await;
    let mut bridge = Bridge::start(&["--timeout", "300ms", &fake.url()]);
    for (line, code) in
        [("[1, 2]\n", -32600), ("{\"method\": \"ping\", \"id\": 1}\n", -32600), ("{\n", -32700)]
    {
        bridge.send_raw(line);
        let refused = tokio::task::block_in_place(|| bridge.next(ANSWER));
        assert_eq!(refused["error"]["code"], code, "{line:?}: {refused}");
    }
    tokio::task::block_in_place(|| bridge.open_session(ANSWER));
    // A REST API's JSON answer: `next` fails the test if it reaches stdout.
    bridge.send(&call_tool(2, "rest"));
    let unanswered = tokio::task::block_in_place(|| bridge.answer(2, ANSWER));
    assert_eq!(unanswered["error"]["data"]["http_status"], 200, "{unanswered}");
    bridge.send(&call_tool(3, "stall"));
    let silent = tokio::task::block_in_place(|| bridge.answer(3, ANSWER));
    assert!(silent["error"]["message"].as_str().unwrap().contains("no answer within 300ms"), "{silent}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_call_whose_connection_broke_is_not_sent_again() {
    let fake = FakeMcp::start().await;
    let mut bridge = Bridge::start(&[&fake.url()]);
    tokio::task::block_in_place(|| bridge.open_session(ANSWER));
    bridge.send(&call_tool(2, "vanish"));
    let broke = tokio::task::block_in_place(|| bridge.answer(2, ANSWER));
    assert_eq!(broke["error"]["code"], -32000, "{broke}");
    let vanish_posts = fake.seen().iter().filter(|s| s.rpc_method.as_deref() == Some("tools/call")).count();
    assert_eq!(vanish_posts, 1, "a tool call that may have run was sent again");
    // And the bridge goes on.
    bridge.send(&call_tool(3, "echo"));
    tokio::task::block_in_place(|| bridge.answer(3, ANSWER));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_closing_or_sigterm_ends_the_session_and_the_bridge() {
    // Node and Electron hosts (Claude Desktop) give their children socketpairs, Python pipes.
    for (ending, wiring) in
        [("stdin closed", Wiring::Pipes), ("SIGTERM", Wiring::Pipes), ("stdin closed", Wiring::Sockets)]
    {
        let ending = format!("{ending} ({wiring:?})");
        let fake = FakeMcp::start().await;
        let mut bridge = Bridge::wired(wiring, &[&fake.url()]);
        tokio::task::block_in_place(|| bridge.open_session(ANSWER));
        bridge.send(&call_tool(2, "echo"));
        tokio::task::block_in_place(|| bridge.answer(2, ANSWER));
        match ending.starts_with("SIGTERM") {
            false => bridge.close_stdin(),
            true => bridge.signal(Signal::SIGTERM),
        }
        let (status, took) = tokio::task::block_in_place(|| bridge.wait_exit(PATIENCE));
        assert!(status.success(), "{ending}: {status}");
        assert!(took < Duration::from_secs(2), "{ending}: exited after {took:?}");
        let deletes: Vec<_> = fake.seen().into_iter().filter(|s| s.http_method == "DELETE").collect();
        assert_eq!(deletes.len(), 1, "{ending}: {deletes:?}");
        assert_eq!(deletes[0].session.as_deref(), Some("s1"), "{ending}");
    }
}

/// `printf '…' | mcp-token-sync bridge URL`: stdin is at its end before the first answer, and
/// a file cannot be polled (the bridge reads it on tokio's blocking pool). Every answer still
/// comes, then the bridge ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_piping_its_messages_gets_every_answer_before_the_bridge_exits() {
    let fake = FakeMcp::start().await;
    let mut messages = tempfile::NamedTempFile::new().unwrap();
    for message in [initialize(1), initialized(), call_tool(2, "echo")] {
        writeln!(messages, "{message}").unwrap();
    }
    let output = tokio::task::block_in_place(|| {
        std::process::Command::new(BIN)
            .args(["bridge", &fake.url()])
            .stdin(messages.reopen().unwrap())
            .output()
            .unwrap()
    });
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let ids: Vec<Value> =
        stdout.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["id"].clone()).collect();
    assert_eq!(ids, [json!(1), json!(2)], "{stdout}");
}

/// The server SHOULD close a request's stream after the answer (MCP 2025-06-18); one that does
/// not holds nothing up: not the handshake, not a new session, not the calls after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_left_open_after_its_answer_holds_nothing_up() {
    let fake = FakeMcp::start().await;
    fake.linger();
    let mut bridge = Bridge::start(&[&fake.url()]);
    tokio::task::block_in_place(|| bridge.open_session(ANSWER));
    bridge.send(&call_tool(2, "linger"));
    tokio::task::block_in_place(|| bridge.answer(2, ANSWER));
    bridge.send(&call_tool(3, "echo"));
    tokio::task::block_in_place(|| bridge.answer(3, ANSWER));
    // The replayed initialize lingers too.
    fake.forget();
    bridge.send(&call_tool(4, "echo"));
    let reopened = tokio::task::block_in_place(|| bridge.answer(4, ANSWER));
    assert!(reopened.get("result").is_some(), "{reopened}");
}

/// What the SSE spec tells a client to ignore (unknown fields, a field without a colon, a
/// retry that is not digits, invalid UTF-8, an id no header can carry) costs no answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_sse_spec_says_to_ignore_is_ignored() {
    let fake = FakeMcp::start().await;
    let mut bridge = Bridge::start(&[&fake.url()]);
    tokio::task::block_in_place(|| bridge.open_session(ANSWER));
    bridge.send(&call_tool(2, "quirky"));
    let answer = tokio::task::block_in_place(|| bridge.answer(2, ANSWER));
    assert_eq!(answer["result"]["content"][0]["text"], "two\nlines", "{answer}");
}

/// A host that stopped reading stdout can still stop the bridge: stdin is read, and signals
/// heard, while answers wait for a reader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_stops_reading_can_still_stop_the_bridge() {
    let mut child = std::process::Command::new(BIN)
        .args(["bridge", &format!("http://127.0.0.1:{}/mcp", free_port("127.0.0.1").port())])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Started: it handles SIGTERM (a signal before the process runs its first line kills it,
    // whatever it does).
    let status = format!("/proc/{}/status", child.id());
    wait_for_async("the bridge's SIGTERM handler", PATIENCE, || {
        let caught = std::fs::read_to_string(&status).ok()?;
        let mask = caught.lines().find_map(|l| l.strip_prefix("SigCgt:"))?.trim().to_owned();
        (u64::from_str_radix(&mask, 16).ok()? & (1 << (15 - 1)) != 0).then_some(())
    })
    .await;
    // Each line is answered with a refusal of about 100 bytes: far more than a pipe holds.
    let mut stdin = child.stdin.take().unwrap();
    tokio::task::block_in_place(|| stdin.write_all(&b"x\n".repeat(3000)).unwrap());
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < PATIENCE, "the bridge ignored SIGTERM with its stdout full");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(status.success(), "{status}");
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
}
