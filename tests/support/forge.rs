//! Connections whose client is gone by the time the daemon accepts them (DESIGN §12, "A
//! client's uid comes from a live socket"): the attacker's request sent and reset, and the port
//! taken by another process before the daemon looks up who sent it.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use super::binary::Killed;

/// As the attacker: sends the request for URL (a callback, or any path) from 127.0.0.1:PORT and
/// resets the connection at once (SO_LINGER 0): the request waits in the daemon's accept queue,
/// its client gone, the port free for anyone.
pub const FORGE: &str = r#"
import socket, struct, sys
from urllib.parse import urlsplit
url, port = urlsplit(sys.argv[1]), int(sys.argv[2])
request = f"GET {url.path}?{url.query} HTTP/1.1\r\nHost: {url.netloc}\r\n\r\n".encode()
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port))
s.connect((url.hostname, url.port))
s.sendall(request)
s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
s.close()
"#;

/// As whoever runs it: takes 127.0.0.1:PORT, either as a connection to TARGET or as a
/// listener; prints "ready" and holds it for a minute.
pub const TAKE_PORT: &str = r#"
import socket, sys, time
how, port, target = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
if how == "connection":
    s.bind(("127.0.0.1", port)); s.connect(("127.0.0.1", target))
else:
    s.bind(("0.0.0.0", port)); s.listen(1)
print("ready", flush=True)
time.sleep(60)
"#;

/// `python3 -c script args…` as root, once it printed its first line.
pub fn python_ready(script: &str, args: &[&str]) -> Killed {
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", script])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut said = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut said).unwrap();
    assert_eq!(said.trim(), "ready");
    Killed(child)
}
