//! Upstreams that misbehave the way small real servers do (issue "Hold the line", item 2), each
//! a raw socket server written for the one fault: a failure that is not the client's fault is
//! not the client's problem.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use support::Backend;
use support::api;
use support::http::{self, Target};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const HEADER: &str = "X-Google-MCP-Token";
const PATIENCE: Duration = Duration::from_secs(10);

/// A request head as the raw servers read it, and whatever of the body came with it.
struct Head {
    text: String,
    rest: Vec<u8>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.text.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }

    fn content_length(&self) -> usize {
        self.header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0)
    }
}

/// Reads one request head; `None` when the client closed first.
async fn read_head(stream: &mut TcpStream) -> Option<Head> {
    let mut buf = Vec::new();
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let text = String::from_utf8_lossy(&buf[..end]).into_owned();
            return Some(Head { text, rest: buf[end + 4..].to_vec() });
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Reads the rest of a body of `length` bytes.
async fn read_body(stream: &mut TcpStream, head: &Head) -> Vec<u8> {
    let mut body = head.rest.clone();
    let mut chunk = vec![0u8; 65536];
    while body.len() < head.content_length() {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    body
}

/// Serves each connection with `serve` on 127.0.0.1.
async fn raw_server<F, Fut>(serve: F) -> SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serve = Arc::new(serve);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream));
        }
    });
    addr
}

/// A daemon with a proxy in front of `upstream`.
async fn proxy_to(backend: &Backend, upstream: SocketAddr) -> (Target, api::WithSocket) {
    let listen = support::free_port("127.0.0.1");
    let sink = format!(
        "[[sink]]\ntype = \"proxy\"\nlisten = \"{listen}\"\nupstream = \"http://{upstream}\"\nheader = \"{HEADER}\"\n"
    );
    let d = api::start(backend, &sink);
    api::get_until(&d.socket, "/v1/token", "a token", |r| r.status == 200).await;
    support::wait_for_async("the proxy", PATIENCE, || std::net::TcpStream::connect(listen).ok().map(drop))
        .await;
    (Target::Tcp(listen), d)
}

/// Sends `request` through the proxy; a proxy that never answers fails the test.
async fn send(proxy: &Target, request: hyper::Request<Full<Bytes>>) -> support::api::Reply {
    tokio::time::timeout(PATIENCE, http::send(proxy, request)).await.expect("the proxy answers")
}

fn post(target: &Target, path: &str, body: Vec<u8>) -> hyper::Request<Full<Bytes>> {
    http::request(target, "POST", path).body(Full::new(Bytes::from(body))).unwrap()
}

/// An upstream that checks the token before the body and, refusing it, answers 401 with
/// `Connection: close` and closes without reading a byte of the body: the answer it did send
/// is what counts. 300 KB bodies, so the proxy is still writing when the 401 comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_sent_before_the_body_was_read_is_refreshed_and_replayed() {
    let backend = Backend::start().await;
    let current = backend.clone();
    let upstream = raw_server(move |mut stream| {
        let current = current.clone();
        async move {
            while let Some(head) = read_head(&mut stream).await {
                if head.header(HEADER) != Some(current.token().as_str()) {
                    let refusal =
                        "HTTP/1.1 401 Unauthorized\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
                    let _ = stream.write_all(refusal.as_bytes()).await;
                    return; // closed with the body unread: the kernel answers it with a reset
                }
                let body = read_body(&mut stream, &head).await;
                let answer =
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len().to_string().len());
                let _ = stream.write_all(format!("{answer}{}", body.len()).as_bytes()).await;
            }
        }
    })
    .await;
    let (proxy, d) = proxy_to(&backend, upstream).await;
    let body = vec![b'x'; 300 * 1024];
    for round in 0..8 {
        backend.rotate();
        let before = backend.fetches();
        let reply = send(&proxy, post(&proxy, "/mcp", body.clone())).await;
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (200, "307200"),
            "round {round}: {}",
            d.daemon.output()
        );
        assert_eq!(backend.fetches() - before, 1, "round {round}: one refresh");
    }
}

/// An upstream that resets a kept-alive connection when the next request arrives, unread (as a
/// server does that closes a connection with bytes unread, or aborts it): the reset reaches the
/// proxy through its read, and proves the request unread, so it goes again, POST included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_met_by_a_reset_is_sent_again_once() {
    let backend = Backend::start().await;
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let bodies = seen.clone();
    let upstream = raw_server(move |mut stream| {
        let bodies = bodies.clone();
        async move {
            let mut answered = 0;
            loop {
                if answered == 1 {
                    // The next request is here: reset the connection without reading it.
                    if stream.readable().await.is_ok() {
                        let _ = stream.set_zero_linger();
                    }
                    return;
                }
                let Some(head) = read_head(&mut stream).await else { return };
                let body = String::from_utf8_lossy(&read_body(&mut stream, &head).await).into_owned();
                bodies.lock().unwrap().push(body.clone());
                let answer = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
                if stream.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
                answered += 1;
            }
        }
    })
    .await;
    let (proxy, d) = proxy_to(&backend, upstream).await;
    for round in 0..5 {
        let body = format!("{{\"jsonrpc\":\"2.0\",\"id\":{round},\"method\":\"tools/call\"}}");
        let reply = send(&proxy, post(&proxy, "/mcp", body.clone().into_bytes())).await;
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (200, body.as_str()),
            "round {round}: {}",
            d.daemon.output()
        );
    }
    let bodies = seen.lock().unwrap().clone();
    assert_eq!(bodies.len(), 5, "a request ran twice, or not at all: {bodies:?}");
}

/// What an upstream that closes idle connections does to the requests sent on them.
#[derive(Default)]
struct Closing {
    /// Bodies received, to see that no request was run twice.
    bodies: Mutex<Vec<String>>,
    connections: AtomicUsize,
    /// Connections the proxy closed.
    closed_by_proxy: AtomicUsize,
}

/// Answers each request with a keep-alive 200 echoing its body, then closes the connection
/// after `close_after` of idleness, as Node (5 s), gunicorn (2 s) and small servers (1 s) do.
async fn closing_upstream(close_after: Duration) -> (SocketAddr, Arc<Closing>) {
    let seen = Arc::new(Closing::default());
    let state = seen.clone();
    let addr = raw_server(move |mut stream| {
        let state = state.clone();
        async move {
            state.connections.fetch_add(1, Ordering::Relaxed);
            loop {
                let head = match tokio::time::timeout(close_after, read_head(&mut stream)).await {
                    Ok(Some(head)) => head,
                    Ok(None) => {
                        state.closed_by_proxy.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    Err(_) => return, // idle too long: close
                };
                let body = String::from_utf8_lossy(&read_body(&mut stream, &head).await).into_owned();
                let answer = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
                state.bodies.lock().unwrap().push(body);
                if stream.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
            }
        }
    })
    .await;
    (addr, seen)
}

/// The upstream closes each connection 50 ms after its answer, and the next POST goes out just
/// around then: sent on a connection that just died, it goes again on a new one, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_on_a_connection_the_upstream_just_closed_is_sent_again_once() {
    let backend = Backend::start().await;
    let (upstream, seen) = closing_upstream(Duration::from_millis(50)).await;
    let (proxy, d) = proxy_to(&backend, upstream).await;
    let mut failed = Vec::new();
    let rounds = 40;
    for round in 0..rounds {
        // 44 to 56 ms after the last answer: some before the close, some right at it.
        tokio::time::sleep(Duration::from_millis(44 + (round % 13))).await;
        let body = format!("{{\"jsonrpc\":\"2.0\",\"id\":{round},\"method\":\"tools/call\"}}");
        let reply = send(&proxy, post(&proxy, "/mcp", body.clone().into_bytes())).await;
        if (reply.status, reply.body.as_str()) != (200, body.as_str()) {
            failed.push((round, reply.status, reply.body));
        }
    }
    assert!(failed.is_empty(), "{} of {rounds} failed: {failed:?}\n{}", failed.len(), d.daemon.output());
    let bodies = seen.bodies.lock().unwrap().clone();
    let mut unique = bodies.clone();
    unique.sort();
    unique.dedup();
    assert_eq!((bodies.len(), unique.len()), (rounds as usize, rounds as usize), "a request ran twice");
}

/// An upstream that reads a POST whole and then closes without answering may have acted on it:
/// the proxy must not send it again, even on a reused connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_the_upstream_read_and_dropped_is_not_sent_again() {
    let backend = Backend::start().await;
    let seen = Arc::new(Closing::default());
    let state = seen.clone();
    let upstream = raw_server(move |mut stream| {
        let state = state.clone();
        async move {
            while let Some(head) = read_head(&mut stream).await {
                let body = String::from_utf8_lossy(&read_body(&mut stream, &head).await).into_owned();
                let second = body == "second";
                state.bodies.lock().unwrap().push(body);
                if second {
                    return; // read whole, then gone without a word
                }
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
            }
        }
    })
    .await;
    let (proxy, _d) = proxy_to(&backend, upstream).await;
    assert_eq!(send(&proxy, post(&proxy, "/mcp", b"first".to_vec())).await.status, 200);
    let reply = send(&proxy, post(&proxy, "/mcp", b"second".to_vec())).await;
    assert_eq!((reply.status, reply.json()["error"].as_str()), (502, Some("upstream_failed")));
    assert_eq!(*seen.bodies.lock().unwrap(), ["first", "second"], "the POST ran twice");
}

/// An upstream with a 1 s idle timeout and requests a second apart: the same, at the pace
/// people see it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_a_keep_alive_timeout_apart_all_succeed() {
    let backend = Backend::start().await;
    let (upstream, seen) = closing_upstream(Duration::from_secs(1)).await;
    let (proxy, _d) = proxy_to(&backend, upstream).await;
    for round in 0..5 {
        let body = format!("call {round}");
        let reply = send(&proxy, post(&proxy, "/mcp", body.clone().into_bytes())).await;
        assert_eq!((reply.status, reply.body.as_str()), (200, body.as_str()), "round {round}");
        tokio::time::sleep(Duration::from_millis(995 + 3 * round)).await;
    }
    assert_eq!(seen.bodies.lock().unwrap().len(), 5, "a request ran twice");
}

/// A proxy nobody uses lets go of its idle upstream connections (and their buffers) instead of
/// holding them until the next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_proxy_closes_its_idle_upstream_connections() {
    let backend = Backend::start().await;
    let (upstream, seen) = closing_upstream(Duration::from_secs(600)).await;
    let (proxy, _d) = proxy_to(&backend, upstream).await;
    let reply = send(&proxy, post(&proxy, "/mcp", b"once".to_vec())).await;
    assert_eq!(reply.status, 200);
    support::wait_for_async("the idle upstream connection to be closed", PATIENCE, || {
        (seen.closed_by_proxy.load(Ordering::Relaxed) == 1).then_some(())
    })
    .await;
}

/// An answer framed two ways (RFC 9112 §6.3): `Content-Length` and chunked. The client gets
/// what the chunks hold, framed so that it knows where the answer ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_framed_two_ways_reaches_the_client_whole() {
    let backend = Backend::start().await;
    let upstream = raw_server(|mut stream| async move {
        while let Some(head) = read_head(&mut stream).await {
            read_body(&mut stream, &head).await;
            let answer = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n\
                          3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n";
            if stream.write_all(answer.as_bytes()).await.is_err() {
                return;
            }
        }
    })
    .await;
    let (proxy, _d) = proxy_to(&backend, upstream).await;
    let started = Instant::now();
    // A stale length would leave the client waiting for bytes that never come.
    let reply = send(&proxy, http::get(&proxy, "/x")).await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "abcdefg"));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(reply.headers.get("content-length").is_none_or(|l| l == "7"), "{:?}", reply.headers);
}

/// An HTTP/1.0 upstream (Python's http.server, say) does not make the proxy answer a 1.1 client
/// in 1.0, which would close its connection after every answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_1_0_upstream_is_answered_in_1_1_on_a_kept_connection() {
    let backend = Backend::start().await;
    let upstream = raw_server(|mut stream| async move {
        if let Some(head) = read_head(&mut stream).await {
            read_body(&mut stream, &head).await;
            let _ = stream.write_all(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nold").await;
        }
    })
    .await;
    let (proxy, _d) = proxy_to(&backend, upstream).await;
    let Target::Tcp(address) = proxy else { unreachable!() };
    let mut client = TcpStream::connect(address).await.unwrap();
    for round in 0..2 {
        let request = format!("GET /x HTTP/1.1\r\nHost: {address}\r\n\r\n");
        client.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        let mut chunk = [0u8; 4096];
        // Read until the chunked body's end: the connection stays open.
        while !answer.ends_with(b"0\r\n\r\n") {
            let n = tokio::time::timeout(PATIENCE, client.read(&mut chunk)).await.unwrap().unwrap();
            assert!(
                n > 0,
                "round {round}: the proxy closed the connection: {}",
                String::from_utf8_lossy(&answer)
            );
            answer.extend_from_slice(&chunk[..n]);
        }
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 200"), "round {round}: {answer}");
        assert!(answer.contains("old"), "{answer}");
    }
}
