//! nginx (Debian's nginx-light) with one worker, as the benchmarks' yardstick: the floor for
//! serving a fixed answer, and the reverse proxy an operator would put up instead of ours.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Nginx {
    child: Child,
    dir: tempfile::TempDir,
}

impl Nginx {
    /// nginx serving `servers` (its `server { … }` blocks; `{DIR}` is its own directory), once
    /// each of `ready` accepts connections.
    pub fn start(servers: &str, ready: &[Ready]) -> Nginx {
        Nginx::start_under(&[], servers, ready)
    }

    /// Run by `wrapper` (a command and its arguments; nginx's own after them), as one process:
    /// the worker's work done by the master, so a profiler that follows one process sees it.
    pub fn start_under(wrapper: &[&str], servers: &str, ready: &[Ready]) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        // As root, nginx would switch its worker to `nobody`, who cannot reach our temp dir.
        let user = if nix::unistd::geteuid().is_root() { "user root root;" } else { "" };
        let single = if wrapper.is_empty() { "" } else { "master_process off;" };
        let conf = format!(
            "worker_processes 1;\n{single}\ndaemon off;\n{user}\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
             {}\n}}\n",
            servers.replace("{DIR}", &d)
        );
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(nginx_binary());
                command
            }
            None => Command::new(nginx_binary()),
        };
        let child = command
            .args(["-p", &d, "-c"])
            .arg(&conf_path)
            .stderr(Stdio::inherit())
            .spawn()
            .expect("nginx (apt-get install nginx-light; scripts/bench does)");
        let nginx = Nginx { child, dir };
        for what in ready {
            let accepts = || what.accepts(nginx.dir()).then_some(());
            super::wait_for(&format!("nginx to listen on {what:?}"), Duration::from_secs(10), accepts);
        }
        nginx
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// Where nginx should accept connections before it counts as started.
#[derive(Debug)]
pub enum Ready {
    Tcp(std::net::SocketAddr),
    /// A socket path, relative to nginx's directory.
    Unix(PathBuf),
}

impl Ready {
    fn accepts(&self, dir: &Path) -> bool {
        match self {
            Ready::Tcp(address) => std::net::TcpStream::connect(address).is_ok(),
            Ready::Unix(path) => std::os::unix::net::UnixStream::connect(dir.join(path)).is_ok(),
        }
    }
}

fn nginx_binary() -> &'static str {
    if Path::new("/usr/sbin/nginx").exists() { "/usr/sbin/nginx" } else { "nginx" }
}

impl Drop for Nginx {
    /// SIGTERM, not SIGKILL: the master stops its worker before it exits, and nothing is left.
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
    }
}
