//! Rotation under load (DESIGN §13): 64 clients call an MCP resource through the proxy while
//! the authorization server's access tokens live 2 s and every refresh rotates the refresh
//! token (oidc-provider revokes the whole grant when a spent one comes back). The resource
//! takes only live tokens (it introspects them), and the daemon finds the server from the
//! resource alone (RFC 9728). Then a second daemon and repeated `once` share the state_dir.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use support::binary::{DaemonProcess, run_verb};
use support::oauth::{OAuthDaemon, Provider, seeded_source};
use support::resource::{Resource, caller};

const CLIENTS: usize = 64;
const ROTATIONS: u64 = 30;

fn version(d: &OAuthDaemon) -> u64 {
    d.status()["version"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_under_load_loses_no_request_and_spends_each_refresh_token_once() {
    let p = Provider::start(2);
    let resource = Resource::start(&p.issuer).await;
    let dir = tempfile::tempdir().unwrap();
    let (source, _) = seeded_source(&p, dir.path(), &resource.url(), false);
    let listen = support::mcp::free_port();
    let upstream = resource.url().trim_end_matches("/mcp").to_owned();
    let sinks =
        format!("[[sink]]\ntype = \"proxy\"\nlisten = \"127.0.0.1:{listen}\"\nupstream = \"{upstream}\"\n");
    let d = tokio::task::block_in_place(|| {
        let d = OAuthDaemon::start_in(dir, &source, &sinks);
        d.wait_status("a first token", |status| status["version"].as_u64() >= Some(1));
        d
    });

    let proxy: std::net::SocketAddr = format!("127.0.0.1:{listen}").parse().unwrap();
    let (stop, ok, failed) =
        (Arc::new(AtomicBool::new(false)), Arc::default(), Arc::<AtomicUsize>::default());
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
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    let stats = p.stats();
    let log = d.daemon.output();
    assert!(last >= first + ROTATIONS, "{} rotations in 120 s\n{log}", last - first);
    assert_eq!(failed, 0, "{failed} of {} client requests failed; {stats}\n{log}", ok + failed);
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
        .replace(&format!("127.0.0.1:{listen}"), &format!("127.0.0.1:{}", support::mcp::free_port()));
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
