//! A squatter: a plain-TCP listener on loopback, run as another user (`setpriv`), that tells the
//! test every request it got and answers each with a token of its own choosing, as a local user
//! who took a free port while the real service was down would.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

/// Prints the port, then `GOT <request line>` for each request that arrives (`AUTH` when it
/// carried a credential), and answers it with a seed-style token answer.
const SCRIPT: &str = r#"
import datetime, json, socket, sys
host = sys.argv[1]
s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((host, 0))
s.listen(64)
print(s.getsockname()[1], flush=True)
expires = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
body = json.dumps({"agent_name": sys.argv[2], "token": "SQUATTER-CHOSEN-token", "expires_at": expires, "valid": True}).encode()
while True:
    c, _ = s.accept()
    c.settimeout(2)
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = c.recv(65536)
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    if data:
        line = data.split(b"\r\n")[0].decode(errors="replace")
        lower = data.lower()
        cred = any(h in lower for h in (b"\nauthorization:", b"\nx-google-mcp-token:"))
        print("GOT", line, "AUTH" if cred else "", flush=True)
        try:
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        except OSError:
            pass
    c.close()
"#;

pub struct Squatter {
    child: Child,
    pub port: u16,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Squatter {
    /// Listens on `host` (`127.0.0.1`, `::1`, `0.0.0.0`, `::`) as `uid`; answers for `agent`.
    pub fn start(uid: u32, host: &str, agent: &str) -> Squatter {
        let mut child = Command::new("setpriv")
            .args([&format!("--reuid={uid}"), &format!("--regid={uid}"), "--clear-groups"])
            .args(["/usr/bin/python3", "-c", SCRIPT, host, agent])
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .expect("setpriv and python3 are installed");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        out.read_line(&mut first).unwrap();
        let port = first.trim().parse().unwrap_or_else(|_| panic!("the squatter did not start: {first:?}"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let seen = lines.clone();
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                seen.lock().unwrap().push(line);
            }
        });
        Squatter { child, port, lines }
    }

    /// The requests it got, one line each.
    pub fn got(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }
}

impl Drop for Squatter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
