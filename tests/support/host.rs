//! A host with three tokens in one daemon (DESIGN §15), as the issue pictures one: `calendar`
//! and `linear` from two backends of the seed's protocol, `service` by OAuth 2.0 client
//! credentials at a real authorization server (oidc-provider), each with a raw file sink and a
//! proxy of its own, and one daemon-wide socket that serves them all.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::fake_http::{Answer, FakeHttp};
use super::oauth::Provider;
use super::{Backend, DaemonProcess, backend, free_port, wait_for};

pub const PATIENCE: Duration = Duration::from_secs(20);

/// The host's daemon, and (through `Deref`) the services around it.
pub struct Host {
    pub services: Services,
    pub daemon: DaemonProcess,
}

impl std::ops::Deref for Host {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.services
    }
}

/// What the daemon's tokens come from and go to.
pub struct Services {
    pub calendar: Backend,
    pub linear: Backend,
    pub provider: Provider,
    /// The service proxy's upstream: it records what it is sent.
    pub service_api: FakeHttp,
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub config: PathBuf,
    /// Where each token's proxy listens, by token.
    pub proxies: [(&'static str, SocketAddr); 3],
}

impl Host {
    /// Starts the three tokens' services and the daemon; `extra` is TOML added to the file
    /// (more tables, or keys of the daemon-wide socket).
    pub async fn start(extra: &str) -> Host {
        let (calendar, linear) = (Backend::start().await, Backend::start().await);
        // Each backend hands out its own tokens.
        linear.rotate();
        let provider = Provider::start(300);
        let service_api = FakeHttp::start(|_| Answer::json(200, serde_json::json!({"reports": []})));
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("api.sock");
        let config = dir.path().join("config.toml");
        let proxies = [
            ("calendar", free_port("127.0.0.1")),
            ("linear", free_port("127.0.0.1")),
            ("service", free_port("127.0.0.1")),
        ];
        let services = Services { calendar, linear, provider, service_api, dir, socket, config, proxies };
        std::fs::write(&services.config, services.config_text(extra)).unwrap();
        let daemon = DaemonProcess::run(&services.config);
        wait_for("the daemon-wide socket", PATIENCE, || services.socket.exists().then_some(()));
        Host { services, daemon }
    }
}

impl Services {
    /// The file's text: the three tokens and `extra`.
    pub fn config_text(&self, extra: &str) -> String {
        let dir = self.dir.path();
        let secret = self.provider.secret_file("basic", "basic-secret-0123456789");
        let endpoint = |name: &str, backend: &Backend, proxy: SocketAddr| {
            format!(
                "[tokens.{name}.source]\nurl = \"{url}\"\nagent = \"{agent}\"\ntimeout = \"1s\"\n\n\
                 [[tokens.{name}.sink]]\ntype = \"file\"\npath = \"{file}\"\non_expiry = \"remove\"\n\n\
                 [[tokens.{name}.sink]]\ntype = \"proxy\"\nlisten = \"{proxy}\"\nupstream = \"http://{upstream}\"\n\
                 header = \"X-Google-MCP-Token\"\n\n",
                url = backend.url(),
                agent = backend::AGENT,
                file = dir.join(name).display(),
                upstream = backend.addr(),
            )
        };
        format!(
            "[daemon]\nstate_dir = \"{state}\"\n\n[refresh]\njitter = 0.0\nmin_interval = \"1ms\"\nbackoff_max = \"200ms\"\n\n\
             [validate]\nmin_remaining = \"1s\"\n\n\
             [[sink]]\ntype = \"socket\"\npath = \"{socket}\"\nmode = \"0666\"\n\n{calendar}{linear}\
             [tokens.service.source]\ntype = \"oauth2\"\ngrant = \"client_credentials\"\nissuer = \"{issuer}\"\n\
             client_id = \"service-basic\"\nclient_auth = \"client_secret_basic\"\nclient_secret_file = \"{secret}\"\n\n\
             [[tokens.service.sink]]\ntype = \"file\"\npath = \"{service_file}\"\non_expiry = \"remove\"\n\n\
             [[tokens.service.sink]]\ntype = \"proxy\"\nlisten = \"{service_proxy}\"\nupstream = \"{service_api}\"\n\n{extra}\n",
            state = dir.join("state").display(),
            socket = self.socket.display(),
            calendar = endpoint("calendar", &self.calendar, self.proxies[0].1),
            linear = endpoint("linear", &self.linear, self.proxies[1].1),
            issuer = self.provider.issuer,
            secret = secret.display(),
            service_file = dir.join("service").display(),
            service_proxy = self.proxies[2].1,
            service_api = self.service_api.url(),
        )
    }

    /// The token file of `name`, once it holds a token other than `not`.
    pub fn file(&self, name: &str, not: Option<&str>) -> String {
        let path = self.dir.path().join(name);
        wait_for(&format!("{name}'s file"), PATIENCE, || {
            super::read_new(&path, not).filter(|t| !t.is_empty())
        })
    }

    /// Where `name`'s proxy listens.
    pub fn proxy(&self, name: &str) -> SocketAddr {
        self.proxies.iter().find(|(n, _)| *n == name).expect("one of the three tokens").1
    }
}
