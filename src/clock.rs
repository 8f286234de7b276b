//! Wall-clock time: RFC 3339 in and out, and sleeping until a wall-clock deadline.
//!
//! Token expiry is a wall-clock fact, but tokio's timers run on the monotonic clock, which stands
//! still while the host is suspended and ignores clock steps. [`sleep_until`] therefore never
//! trusts one long timer: it wakes at least every [`RECHECK`] to look at the wall clock again.

use std::time::{Duration, SystemTime};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// How stale the daemon's view of the wall clock may get (DESIGN §5: "within 60 s").
pub const RECHECK: Duration = Duration::from_secs(60);

/// RFC 3339 in UTC with `Z`, with as many fractional digits as the time has.
pub fn rfc3339(t: SystemTime) -> String {
    OffsetDateTime::from(t).format(&Rfc3339).expect("any SystemTime after 1970 formats as RFC 3339")
}

/// Parses an RFC 3339 time with any offset.
pub fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    OffsetDateTime::parse(text, &Rfc3339).ok().map(SystemTime::from)
}

/// `59s`, `14m 59s`: a human distance between two instants, to the second; negative shows as `0s`.
pub fn until(from: SystemTime, to: SystemTime) -> String {
    let secs = to.duration_since(from).unwrap_or_default().as_secs();
    crate::config::duration_display(Duration::from_secs(secs))
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

    #[tokio::test(start_paused = true)]
    async fn a_past_deadline_returns_at_once() {
        let (_, now) = jumpable();
        let start = tokio::time::Instant::now();
        sleep_until(now() - Duration::from_secs(5), now).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
