//! Wall-clock time: RFC 3339 in and out, and sleeping until a wall-clock deadline.
//!
//! Token expiry is a wall-clock fact, but tokio's timers run on the monotonic clock, which stands
//! still while the host is suspended and ignores clock steps. [`wake_at`] asks the kernel
//! instead: a `CLOCK_REALTIME` timerfd set to the deadline fires when the wall clock reaches it,
//! suspend or not, and is cancelled when the clock is set, so a step wakes the daemon to look
//! again. One timer, one wake-up: an idle daemon sleeps until its next refresh without ticking
//! (tokio's timer wheel would wake three times on the way to a 60 s deadline, cascading it down
//! its levels). Where no timerfd can be had, [`sleep_until`] polls the wall clock every
//! [`RECHECK`].

use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::Once;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, SecondsFormat, Utc};
use nix::errno::Errno;
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// How stale the daemon's view of the wall clock may get (DESIGN §5: "within 60 s").
pub const RECHECK: Duration = Duration::from_secs(60);

/// RFC 3339 in UTC with `Z`, with the fractional digits the time needs (none, 3, 6 or 9).
pub fn rfc3339(t: SystemTime) -> String {
    DateTime::<Utc>::from(t).to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Parses an RFC 3339 time with any offset.
pub fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    DateTime::parse_from_rfc3339(text).ok().map(SystemTime::from)
}

/// `59s`, `14m 59s`: a human distance between two instants, to the second; negative shows as `0s`.
pub fn until(from: SystemTime, to: SystemTime) -> String {
    let secs = to.duration_since(from).unwrap_or_default().as_secs();
    crate::config::duration_display(Duration::from_secs(secs))
}

/// Returns once the wall clock has reached `deadline`, or earlier if the clock was set: callers
/// look at the clock again and call back if it is not time yet.
pub async fn wake_at(deadline: SystemTime) {
    if let Err(e) = wall_timer(deadline).await {
        static WARNED: Once = Once::new();
        WARNED.call_once(|| {
            tracing::warn!(
                "no wall-clock timer ({e}); checking the clock every {}s instead",
                RECHECK.as_secs()
            )
        });
        sleep_until(deadline, SystemTime::now).await;
    }
}

/// A timerfd, which tokio can wait on.
struct Timer(TimerFd);

impl AsRawFd for Timer {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

async fn wall_timer(deadline: SystemTime) -> std::io::Result<()> {
    // A zero expiration would disarm the timer, and the epoch is long past anyway.
    let Some(since_epoch) = deadline.duration_since(UNIX_EPOCH).ok().filter(|d| !d.is_zero()) else {
        return Ok(());
    };
    let timer = TimerFd::new(ClockId::CLOCK_REALTIME, TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC)?;
    // An absolute deadline already past fires at once.
    timer.set(
        Expiration::OneShot(TimeSpec::from_duration(since_epoch)),
        TimerSetTimeFlags::TFD_TIMER_ABSTIME | TimerSetTimeFlags::TFD_TIMER_CANCEL_ON_SET,
    )?;
    // SAFETY: the TimerFd owns its descriptor and closes it only when dropped with the AsyncFd;
    // `Timer::as_raw_fd` always returns that descriptor.
    #[allow(unsafe_code)]
    let timer = unsafe { AsyncFd::register_with_interest(Timer(timer), Interest::READABLE) }
        .map_err(std::io::Error::from)?;
    loop {
        let mut ready = timer.readable().await?;
        match nix::unistd::read(timer.get_ref().0.as_fd(), &mut [0u8; 8]) {
            // Fired, or cancelled by a clock change.
            Ok(_) | Err(Errno::ECANCELED) => return Ok(()),
            Err(Errno::EAGAIN | Errno::EINTR) => ready.clear_ready(),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Returns once `now()` has reached `deadline`, re-reading `now()` at least every [`RECHECK`].
/// `now` is `SystemTime::now` in the daemon; tests pass a clock they can jump.
pub async fn sleep_until(deadline: SystemTime, now: impl Fn() -> SystemTime) {
    loop {
        match deadline.duration_since(now()) {
            Ok(remaining) if !remaining.is_zero() => tokio::time::sleep(remaining.min(RECHECK)).await,
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[test]
    fn formats_utc_with_z_and_needed_fraction() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_micros(1_785_708_209_801_523);
        assert_eq!(rfc3339(t), "2026-08-02T22:03:29.801523Z");
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(60)), "1970-01-01T00:01:00Z");
    }

    #[test]
    fn parses_any_offset() {
        let z = parse_rfc3339("2026-08-02T22:03:29.801523Z").unwrap();
        let offset = parse_rfc3339("2026-08-03T00:03:29.801523+02:00").unwrap();
        assert_eq!(z, offset);
        assert!(parse_rfc3339("2026-08-02 22:03:29").is_none());
        assert!(parse_rfc3339("tomorrow").is_none());
    }

    /// A wall clock that only moves when the test jumps it.
    fn jumpable() -> (Arc<Mutex<SystemTime>>, impl Fn() -> SystemTime + Clone) {
        let wall = Arc::new(Mutex::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)));
        let read = wall.clone();
        (wall, move || *read.lock().unwrap())
    }

    #[tokio::test(start_paused = true)]
    async fn a_wall_clock_jump_past_the_deadline_is_noticed_within_recheck() {
        let (wall, now) = jumpable();
        let deadline = now() + Duration::from_secs(3 * 3600);
        let sleeper = tokio::spawn(sleep_until(deadline, now));

        // The monotonic clock moves 10 minutes; the wall clock does not (as in a suspend).
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert!(!sleeper.is_finished());

        // Resume: the wall clock jumps past the deadline.
        *wall.lock().unwrap() += Duration::from_secs(2 * 3600 + 3590);
        *wall.lock().unwrap() += Duration::from_secs(20);
        let noticed = tokio::time::timeout(RECHECK + Duration::from_millis(1), sleeper).await;
        assert!(noticed.is_ok(), "the jump was not noticed within {RECHECK:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_jump_it_sleeps_until_the_deadline() {
        let start = tokio::time::Instant::now();
        // A wall clock that follows tokio's paused clock.
        let origin = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let now = move || origin + start.elapsed();
        sleep_until(now() + Duration::from_secs(150), now).await;
        assert_eq!(start.elapsed().as_secs(), 150);
    }

    #[tokio::test]
    async fn the_wall_timer_fires_at_the_deadline() {
        let deadline = SystemTime::now() + Duration::from_millis(200);
        // As the engine does: a clock change (the next test sets the clock once) wakes it early
        // to look again. Any other early return would show as more waits.
        let mut waits = 0;
        while SystemTime::now() < deadline {
            waits += 1;
            tokio::time::timeout(Duration::from_secs(10), wall_timer(deadline)).await.unwrap().unwrap();
        }
        assert!(waits <= 2, "woke {waits} times before the deadline");
        let past = SystemTime::now() - Duration::from_secs(5);
        tokio::time::timeout(Duration::from_secs(1), wall_timer(past)).await.unwrap().unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_past_deadline_returns_at_once() {
        let (_, now) = jumpable();
        let start = tokio::time::Instant::now();
        sleep_until(now() - Duration::from_secs(5), now).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
