//! The wall-clock wait the engine uses, against the real kernel clock.

mod support;

use std::time::{Duration, SystemTime};

use mcp_token_sync::clock;

/// Setting the clock, even to the time it already shows, is a discontinuous change to the
/// kernel: a sleeper for an hour from now wakes at once to look again (DESIGN §5).
#[tokio::test]
async fn setting_the_clock_wakes_a_sleeper_at_once() {
    if !support::skip::as_root("setting_the_clock_wakes_a_sleeper_at_once", "set the clock (CAP_SYS_TIME)") {
        return;
    }
    let sleeper = tokio::spawn(clock::wake_at(SystemTime::now() + Duration::from_secs(3600)));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!sleeper.is_finished());
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_REALTIME).unwrap();
    nix::time::clock_settime(nix::time::ClockId::CLOCK_REALTIME, now).expect("root may set the clock");
    tokio::time::timeout(Duration::from_secs(10), sleeper)
        .await
        .expect("the clock change woke the sleeper")
        .unwrap();
}
