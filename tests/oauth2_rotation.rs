//! Rotation under load (DESIGN §13): 64 clients call an MCP resource through the proxy while
//! the authorization server's access tokens live 2 s and every refresh rotates the refresh
//! token (oidc-provider revokes the whole grant when a spent one comes back). The resource
//! takes only live tokens (it introspects them), and the daemon finds the server from the
//! resource alone (RFC 9728). Then a second daemon and repeated `once` share the state_dir.
//! And client credentials, with each client authentication, reaching that resource.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use support::binary::{DaemonProcess, run_verb};
use support::oauth::{OAuthDaemon, Provider, seeded_source};
use support::resource::{Failures, Resource, caller};

const CLIENTS: usize = 64;

/// The tests here run one at a time: a second one's daemons beside the 64 clients would add
/// stalls on 2 cores, and a stall of a second is a 2 s token's whole margin.
static ALONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
const ROTATIONS: u64 = 30;

fn version(d: &OAuthDaemon) -> u64 {
    d.status()["version"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_under_load_loses_no_request_and_spends_each_refresh_token_once() {
    let _alone = ALONE.lock().await;
    let p = Provider::start(2);
    let resource = Resource::start(&p.issuer).await;
    let dir = tempfile::tempdir().unwrap();
    let (source, _) = seeded_source(&p, dir.path(), &resource.url(), false);
    // The server's `exp` is in whole seconds, so a 2 s token may live 1.01 s as the resource
    // sees it: refreshing at 0.8 s stays ahead of it even on a loaded machine; at 0.6 (1.2 s)
    // the proxy's refresh-and-replay covers the gap, unless a stall over a second makes the
    // fresh token look expired too (the proxy then answers 503: that it does is tested elsewhere).
    let source = source.replace("[refresh]\n", "[refresh]\nlifetime_fraction = 0.4\n");
    let (d, proxy) = tokio::task::block_in_place(|| resource.behind_a_daemon(dir, &source));

    let (stop, ok, failed) = (Arc::new(AtomicBool::new(false)), Arc::default(), Arc::<Failures>::default());
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| tokio::spawn(caller(proxy, stop.clone(), Arc::clone(&ok), failed.clone())))
        .collect();
    let first = tokio::task::block_in_place(|| version(&d));
    let deadline = Instant::now() + Duration::from_secs(120);
    let last = tokio::task::block_in_place(|| {
        loop {
            let now = version(&d);
            if now >= first + ROTATIONS || Instant::now() > deadline {
                break now;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    });
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let (ok, reasons, failed) = (ok.load(Ordering::Relaxed), failed.reasons(), failed.count());
    let stats = p.stats();
    let log = d.daemon.output();
    assert!(last >= first + ROTATIONS, "{} rotations in 120 s\n{log}", last - first);
    assert_eq!(failed, 0, "{failed} of {} client requests failed: {reasons:#?}; {stats}\n{log}", ok + failed);
    assert!(stats["errors"].as_object().unwrap().is_empty(), "{stats}");
    assert_eq!(stats["refresh_reused"], 0, "{stats}");
    // One refresh per rotation: every version, the first too, came from one refresh.
    let refreshes = stats["grants"]["refresh_token"].as_u64().unwrap();
    assert_eq!(refreshes, last, "{refreshes} refreshes for versions 1..={last}; {stats}");
    assert!(!log.contains("invalid_grant"), "{log}");
    eprintln!("{ok} requests, {} rotations, resource counts {:?}", last - first, resource.counts());

    // A second daemon on the same state_dir, and `once` again and again beside both.
    let second_dir = tempfile::tempdir().unwrap();
    // The same source and state_dir; its own socket, file and proxy port.
    let state_dir = d.dir.path().display().to_string();
    let second = second_dir.path().display().to_string();
    let config = std::fs::read_to_string(&d.config)
        .unwrap()
        .replace(&format!("{state_dir}/api.sock"), &format!("{second}/api.sock"))
        .replace(&format!("{state_dir}/token"), &format!("{second}/token"))
        .replace(&proxy.to_string(), &format!("127.0.0.1:{}", support::free_port("127.0.0.1").port()));
    let second_config = second_dir.path().join("config.toml");
    std::fs::write(&second_config, config).unwrap();
    let before = p.stats()["grants"]["refresh_token"].as_u64().unwrap();
    let (second, onces) = tokio::task::block_in_place(|| {
        let second = DaemonProcess::run(&second_config);
        let until = Instant::now() + Duration::from_secs(8);
        let mut onces = 0;
        while Instant::now() < until {
            let (status, output) = run_verb(&["once", "--config", second_config.to_str().unwrap()]);
            assert!(status.success() && !output.contains("invalid_grant"), "{output}");
            onces += 1;
        }
        (second, onces)
    });
    let stats = p.stats();
    assert!(stats["errors"].as_object().unwrap().is_empty(), "{stats}");
    assert_eq!(stats["refresh_reused"], 0, "{stats}");
    assert!(
        stats["grants"]["refresh_token"].as_u64().unwrap() > before,
        "the holders kept refreshing: {stats}"
    );
    assert!(!second.output().contains("invalid_grant") && !d.daemon.output().contains("invalid_grant"));
    eprintln!("{onces} once runs beside two daemons; {stats}");
}

/// Client credentials with every client authentication (a secret, basic and post; a private key,
/// RSA and P-256): the token reaches a file and, through the proxy, a resource that takes only
/// live tokens; the secret and the key are nowhere they should not be.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_reach_an_introspecting_resource_through_the_proxy_and_no_secret_leaks() {
    let _alone = ALONE.lock().await;
    let p = Provider::start(300);
    let resource = Resource::start(&p.issuer).await;
    let clients = p.service_clients();
    // A line from the middle of each key: PEM's base64, which no output may carry.
    let key_lines: Vec<String> = ["rsa", "ec"]
        .iter()
        .map(|k| std::fs::read_to_string(p.key_file(k)).unwrap().lines().nth(2).unwrap().to_owned())
        .collect();
    for client in clients {
        let source = format!(
            "issuer = \"{}\"\nresource = \"{}\"\ngrant = \"client_credentials\"\n{client}\n",
            p.issuer,
            resource.url()
        );
        let (d, listen) =
            tokio::task::block_in_place(|| resource.behind_a_daemon(tempfile::tempdir().unwrap(), &source));
        let proxy = support::http::Target::Tcp(listen);
        let reply = support::http::send(&proxy, support::http::get(&proxy, "/mcp")).await;
        assert_eq!(reply.status, 200, "{client}: {}", reply.body);
        let token = std::fs::read_to_string(&d.file).unwrap();
        assert!(token.len() > 20, "{client}: the file sink holds {token:?}");
        let pid = d.daemon.pid();
        let places = tokio::task::block_in_place(|| {
            [
                d.daemon.output(),
                d.status().to_string(),
                d.curl(&["http://d/metrics"]).1,
                token,
                String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap()).into_owned(),
                String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/environ")).unwrap()).into_owned(),
            ]
        });
        for text in &places {
            for secret in ["basic-secret-0123456789", "post-secret-0123456789", &key_lines[0], &key_lines[1]]
            {
                assert!(!text.contains(secret), "{client}: a secret in {text:.200}");
            }
        }
    }
    assert!(resource.counts().0 >= 4, "{:?}", resource.counts());
}
