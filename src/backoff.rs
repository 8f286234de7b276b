//! Exponential backoff, the one rule for every retry in the daemon: fetches after failures,
//! sink writes, the accept loops, and the client's connect while the daemon is busy.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Backoff {
    /// The wait after the first failure.
    pub first: Duration,
    /// The longest wait, however many failures.
    pub max: Duration,
}

impl Backoff {
    pub(crate) const fn new(first: Duration, max: Duration) -> Backoff {
        Backoff { first, max }
    }

    /// The wait after `failures` consecutive failures: `first`, doubling per failure, up to `max`.
    pub(crate) fn after(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.first.saturating_mul(1 << doublings).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_first_up_to_max_without_overflow() {
        let backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        let waits: Vec<u128> = [0, 1, 2, 3, 7, 8, u32::MAX].map(|n| backoff.after(n).as_millis()).into();
        assert_eq!(waits, [500, 500, 1000, 2000, 30_000, 30_000, 30_000]);
    }
}
