//! kill -9 across rotations (DESIGN §13, "Rotation"): the successor refresh token is on disk
//! before anything else happens, so a daemon killed at any moment carries on from the stored
//! one after a restart. The one window no client can close is between the server issuing a
//! rotated token and the fsync that stores it: a kill there leaves the spent token on disk, the
//! server refuses it (and revokes the grant), and the daemon must then stop at `needs_login`,
//! not loop; a new `refresh_token_file` recovers it at once.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::binary::DaemonProcess;
use support::oauth::{OAuthDaemon, PATIENCE, Provider, RESOURCE, kill_and_restart, seeded_source};

const ROUNDS: usize = 8;

/// A daemon on 2 s tokens seeded by a refresh_token_file; the seed's path.
fn start(p: &Provider) -> (OAuthDaemon, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let (source, seed) = seeded_source(p, dir.path(), RESOURCE, true);
    (OAuthDaemon::start_in(dir, &source, ""), seed)
}

/// After a restart that found a spent refresh token on disk: the server saw it reused once,
/// the daemon stops at needs_login with the token shown refused and asks no more, and a new
/// seed recovers it at once.
fn stops_then_recovers(p: &Provider, d: &OAuthDaemon, seed: &Path, reused: u64, what: &str) {
    let status = d.wait_state("needs_login");
    assert_eq!(status["refresh_token"]["state"], "refused", "{what}: {status}");
    assert_eq!(p.stats()["refresh_reused"].as_u64().unwrap(), reused + 1, "{what}: {}", p.stats());
    let asked = p.stats()["grants"]["refresh_token"].as_u64().unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(p.stats()["grants"]["refresh_token"].as_u64().unwrap(), asked, "{what}: a loop");
    let recovering = Instant::now();
    std::fs::write(seed, p.refresh_token(RESOURCE)).unwrap();
    d.wait_status("the new seed used", |s| {
        s["state"] != "needs_login" && s["refresh_token"]["state"] == "held"
    });
    eprintln!("{what}: recovered by a new seed in {:?}", recovering.elapsed());
}

#[test]
fn a_daemon_killed_at_any_moment_carries_on_or_stops_at_needs_login() {
    let p = Provider::start(2);
    let (mut d, seed) = start(&p);
    let (mut carried_on, mut stopped) = (0, 0);
    for round in 0..ROUNDS {
        let reused = p.stats()["refresh_reused"].as_u64().unwrap();
        let status = kill_and_restart(&mut d, Duration::from_millis(2500));
        if status["state"] != "needs_login" {
            carried_on += 1;
            continue;
        }
        // The kill fell between the server's answer and the fsync.
        stopped += 1;
        stops_then_recovers(&p, &d, &seed, reused, &format!("round {round}"));
    }
    eprintln!("{ROUNDS} kills: {carried_on} carried on, {stopped} fell in the window; {}", p.stats());
    assert_eq!(carried_on + stopped, ROUNDS);
    assert!(d.daemon.output().lines().filter(|l| l.contains("invalid_grant")).count() <= 1);
}

/// The window itself, made on purpose: the store as it was before a rotation the server made
/// (what a kill before the fsync leaves) put back under a killed daemon.
#[test]
fn a_spent_refresh_token_on_disk_stops_at_needs_login_without_a_loop() {
    let p = Provider::start(2);
    let (mut d, seed) = start(&p);
    let store = d.dir.path().join("oauth2.json");
    let first = d.wait_status("a token", |s| s["version"].as_u64() >= Some(1))["version"].as_u64().unwrap();
    let before_rotation = std::fs::read(&store).unwrap();
    d.wait_status("a rotation", |s| s["version"].as_u64() > Some(first));
    d.daemon.signal(Signal::SIGKILL);
    let _ = d.daemon.wait_exit(PATIENCE);
    std::fs::write(&store, before_rotation).unwrap();
    let reused = p.stats()["refresh_reused"].as_u64().unwrap();
    d.daemon = DaemonProcess::run(&d.config);
    stops_then_recovers(&p, &d, &seed, reused, "a spent token put back");
}
