//! When to fetch next (DESIGN §5), as a pure function of the last fetch, the config and the
//! time, so every rule is tested without sleeping.
//!
//! Jitter is drawn inside the window `wait × (1 ± jitter)` clipped to the hard bounds
//! (`min_interval`..`max_interval`, or ..`backoff_max` after failures). Clipping the window
//! instead of the drawn value matters for fleets: when many daemons are held at `max_interval`,
//! they spread uniformly below it instead of all landing on it.
//!
//! The first refresh after start is drawn over the whole range `min_interval`..wait instead
//! (when jitter is on at all). A fleet started at one instant — a rack rebooting — would
//! otherwise fetch within one `± jitter` window every cycle and drift apart only slowly;
//! spread once over a full cycle, it stays spread (`benches/fleet.rs` measures both).

use std::time::{Duration, SystemTime};

use crate::backoff::Backoff;
use crate::config::{CronExpr, RefreshConfig};

/// What the last fetch found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LastFetch {
    /// None yet this run: fetch at once.
    Never,
    /// The first success of this run, whatever it returned.
    First { at: SystemTime, expires_at: SystemTime },
    /// A token not held before.
    NewToken { at: SystemTime, expires_at: SystemTime },
    /// The token already held.
    SameToken { at: SystemTime, expires_at: SystemTime },
    /// `consecutive` failed fetches (validation failures included), the last at `at`.
    Failed { at: SystemTime, consecutive: u32, succeeded_before: bool },
    /// Failed because only a login helps (DESIGN §13 `needs_login`): asking again sooner than
    /// `backoff_max` would only repeat the refusal.
    NeedsLogin { at: SystemTime, consecutive: u32, succeeded_before: bool },
}

/// What one fetch found, as the schedule needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetched {
    NewToken { expires_at: SystemTime },
    SameToken { expires_at: SystemTime },
    Failed,
    NeedsLogin,
}

impl LastFetch {
    pub fn at(&self) -> Option<SystemTime> {
        match *self {
            LastFetch::Never => None,
            LastFetch::First { at, .. }
            | LastFetch::NewToken { at, .. }
            | LastFetch::SameToken { at, .. }
            | LastFetch::Failed { at, .. }
            | LastFetch::NeedsLogin { at, .. } => Some(at),
        }
    }

    pub fn consecutive_failures(&self) -> u32 {
        match *self {
            LastFetch::Failed { consecutive, .. } | LastFetch::NeedsLogin { consecutive, .. } => consecutive,
            _ => 0,
        }
    }

    /// The record after a fetch at `at` found `fetched`. The run's first success is `First`,
    /// whatever it returned, failures before it or not.
    pub fn then(&self, fetched: Fetched, at: SystemTime) -> LastFetch {
        let succeeded_before = match *self {
            LastFetch::Never => false,
            LastFetch::Failed { succeeded_before, .. } | LastFetch::NeedsLogin { succeeded_before, .. } => {
                succeeded_before
            }
            LastFetch::First { .. } | LastFetch::NewToken { .. } | LastFetch::SameToken { .. } => true,
        };
        match fetched {
            Fetched::Failed => {
                LastFetch::Failed { at, consecutive: self.consecutive_failures() + 1, succeeded_before }
            }
            Fetched::NeedsLogin => {
                LastFetch::NeedsLogin { at, consecutive: self.consecutive_failures() + 1, succeeded_before }
            }
            Fetched::NewToken { expires_at } | Fetched::SameToken { expires_at } if !succeeded_before => {
                LastFetch::First { at, expires_at }
            }
            Fetched::NewToken { expires_at } => LastFetch::NewToken { at, expires_at },
            Fetched::SameToken { expires_at } => LastFetch::SameToken { at, expires_at },
        }
    }
}

/// Who asked for a fetch beside the schedule, the strongest ask kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Requested {
    No,
    /// A client: a 401 report, a read with `max_age`. After a failure it waits for the
    /// backoff (DESIGN §5): a backend that is down is not asked again sooner because clients
    /// keep asking.
    Client,
    /// An operator (`SIGUSR1`, `refresh`), or `refresh.cron`: as soon as `min_interval` allows,
    /// a long backoff cut short.
    Operator,
}

/// The deadline of the next fetch. `requested` says who asked for one besides the schedule:
/// it happens as soon as `min_interval` allows (a client's after a failure: at the backoff).
/// `draw` is uniform in [0, 1) and picks the point in the jitter window.
pub fn next_refresh(
    last: &LastFetch,
    requested: Requested,
    config: &RefreshConfig,
    draw: f64,
) -> Option<SystemTime> {
    let at = last.at()?;
    let failed = matches!(last, LastFetch::Failed { .. });
    if requested == Requested::Operator || (requested == Requested::Client && !failed) {
        return Some(at + config.min_interval);
    }
    let (wait, ceiling) = match *last {
        LastFetch::Never => unreachable!("handled by last.at()"),
        LastFetch::First { at, expires_at } if config.jitter > 0.0 => {
            let wait = lifetime(at, expires_at).mul_f64(config.lifetime_fraction);
            let (floor, ceiling) =
                (config.min_interval, wait.clamp(config.min_interval, config.max_interval));
            return Some(at + floor + (ceiling - floor).mul_f64(draw.clamp(0.0, 1.0)));
        }
        LastFetch::First { at, expires_at } => {
            (lifetime(at, expires_at).mul_f64(config.lifetime_fraction), config.max_interval)
        }
        LastFetch::NewToken { at, expires_at } => {
            (lifetime(at, expires_at).mul_f64(config.lifetime_fraction), config.max_interval)
        }
        LastFetch::SameToken { at, expires_at } => (lifetime(at, expires_at) / 2, config.max_interval),
        // Exactly, never sooner: jitter below the ceiling would break "once per backoff_max".
        LastFetch::NeedsLogin { at, .. } => return Some(at + config.backoff_max),
        LastFetch::Failed { consecutive, .. } => {
            (Backoff::new(config.min_interval, config.backoff_max).after(consecutive), config.backoff_max)
        }
    };
    Some(at + jittered(wait, config.jitter, config.min_interval, ceiling, draw))
}

/// The first instant after `after` at which any of the expressions fires, in UTC.
pub fn next_cron(crons: &[CronExpr], after: SystemTime) -> Option<SystemTime> {
    let after = chrono::DateTime::<chrono::Utc>::from(after);
    crons
        .iter()
        .filter_map(|cron| cron.schedule().find_next_occurrence(&after, false).ok())
        .min()
        .map(SystemTime::from)
}

fn lifetime(from: SystemTime, to: SystemTime) -> Duration {
    to.duration_since(from).unwrap_or_default()
}

fn jittered(wait: Duration, jitter: f64, floor: Duration, ceiling: Duration, draw: f64) -> Duration {
    let (floor, ceiling) = (floor.as_secs_f64(), ceiling.as_secs_f64().max(floor.as_secs_f64()));
    let center = wait.as_secs_f64().clamp(floor, ceiling);
    let low = (center * (1.0 - jitter)).max(floor);
    let high = (center * (1.0 + jitter)).min(ceiling);
    Duration::from_secs_f64(low + draw.clamp(0.0, 1.0) * (high - low))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
    }

    fn config(jitter: f64) -> RefreshConfig {
        RefreshConfig { jitter, ..RefreshConfig::default() }
    }

    fn after(deadline: Option<SystemTime>, from: SystemTime) -> f64 {
        deadline.unwrap().duration_since(from).unwrap().as_secs_f64()
    }

    #[test]
    fn first_fetch_is_immediate() {
        assert_eq!(next_refresh(&LastFetch::Never, Requested::No, &config(0.1), 0.5), None);
    }

    #[test]
    fn new_token_refreshes_at_the_lifetime_fraction() {
        // 10-minute token, 0.6 → 6 minutes.
        let last = LastFetch::NewToken { at: t(0), expires_at: t(600) };
        assert_eq!(after(next_refresh(&last, Requested::No, &config(0.0), 0.5), t(0)), 360.0);
    }

    #[test]
    fn the_first_refresh_after_start_spreads_over_the_whole_cycle() {
        // A 1-hour token: planned at 15 min (max_interval); the first one anywhere from 5 s on.
        let first = LastFetch::First { at: t(0), expires_at: t(3600) };
        let c = config(0.1);
        assert_eq!(after(next_refresh(&first, Requested::No, &c, 0.0), t(0)), 5.0);
        assert_eq!(after(next_refresh(&first, Requested::No, &c, 0.5), t(0)), 452.5);
        assert!(after(next_refresh(&first, Requested::No, &c, 0.999_999), t(0)) <= 900.0);
        // Without jitter the schedule stays deterministic.
        assert_eq!(after(next_refresh(&first, Requested::No, &config(0.0), 0.3), t(0)), 900.0);
    }

    #[test]
    fn jitter_stays_within_its_share() {
        let last = LastFetch::NewToken { at: t(0), expires_at: t(600) };
        let c = config(0.1);
        assert_eq!(after(next_refresh(&last, Requested::No, &c, 0.0), t(0)), 324.0);
        assert_eq!(after(next_refresh(&last, Requested::No, &c, 0.5), t(0)), 360.0);
        assert!((after(next_refresh(&last, Requested::No, &c, 0.999_999), t(0)) - 396.0).abs() < 0.01);
    }

    #[test]
    fn same_token_polls_at_half_the_remaining_lifetime() {
        let last = LastFetch::SameToken { at: t(100), expires_at: t(300) };
        assert_eq!(after(next_refresh(&last, Requested::No, &config(0.0), 0.5), t(100)), 100.0);
    }

    #[test]
    fn never_later_than_max_interval_and_spread_below_it() {
        // A 1-hour token would wait 36 min; max_interval is 15 min.
        let last = LastFetch::NewToken { at: t(0), expires_at: t(3600) };
        let c = config(0.1);
        assert_eq!(after(next_refresh(&last, Requested::No, &c, 0.0), t(0)), 810.0);
        assert_eq!(after(next_refresh(&last, Requested::No, &c, 0.5), t(0)), 855.0);
        assert!(after(next_refresh(&last, Requested::No, &c, 0.999_999), t(0)) <= 900.0);
    }

    #[test]
    fn never_sooner_than_min_interval() {
        // 6 s left: half would be 3 s, but min_interval is 5 s.
        let last = LastFetch::SameToken { at: t(0), expires_at: t(6) };
        let c = config(0.1);
        assert_eq!(after(next_refresh(&last, Requested::No, &c, 0.0), t(0)), 5.0);
        assert!(after(next_refresh(&last, Requested::No, &c, 0.999_999), t(0)) <= 5.5);
    }

    #[test]
    fn failures_back_off_exponentially_to_backoff_max() {
        let c = config(0.0);
        let waits: Vec<f64> = (1..=8)
            .map(|n| {
                after(
                    next_refresh(
                        &LastFetch::Failed { at: t(0), consecutive: n, succeeded_before: true },
                        Requested::No,
                        &c,
                        0.5,
                    ),
                    t(0),
                )
            })
            .collect();
        assert_eq!(waits, [5.0, 10.0, 20.0, 40.0, 80.0, 120.0, 120.0, 120.0]);
        // Retries never give up, and a huge count does not overflow.
        let last = LastFetch::Failed { at: t(0), consecutive: u32::MAX, succeeded_before: true };
        assert_eq!(after(next_refresh(&last, Requested::No, &c, 0.5), t(0)), 120.0);
    }

    #[test]
    fn backoff_is_jittered_but_capped() {
        let c = config(0.1);
        let last = LastFetch::Failed { at: t(0), consecutive: 3, succeeded_before: true };
        assert_eq!(after(next_refresh(&last, Requested::No, &c, 0.0), t(0)), 18.0);
        assert!((after(next_refresh(&last, Requested::No, &c, 0.999_999), t(0)) - 22.0).abs() < 0.01);
        let capped = LastFetch::Failed { at: t(0), consecutive: 30, succeeded_before: true };
        assert!(after(next_refresh(&capped, Requested::No, &c, 0.999_999), t(0)) <= 120.0);
        assert_eq!(after(next_refresh(&capped, Requested::No, &c, 0.0), t(0)), 108.0);
    }

    #[test]
    fn a_request_waits_only_for_min_interval() {
        let c = config(0.1);
        let last = LastFetch::NewToken { at: t(0), expires_at: t(3600) };
        assert_eq!(next_refresh(&last, Requested::Operator, &c, 0.9), Some(t(5)));
        let failed = LastFetch::Failed { at: t(0), consecutive: 6, succeeded_before: true };
        assert_eq!(
            next_refresh(&failed, Requested::Operator, &c, 0.9),
            Some(t(5)),
            "a request cuts a long backoff short"
        );
        assert_eq!(next_refresh(&last, Requested::Client, &c, 0.9), Some(t(5)));
        assert_eq!(
            next_refresh(&failed, Requested::Client, &c, 0.9),
            next_refresh(&failed, Requested::No, &c, 0.9),
            "a client's request waits for the backoff"
        );
        assert_eq!(next_refresh(&LastFetch::Never, Requested::Operator, &c, 0.9), None);
    }

    #[test]
    fn cron_fires_at_the_next_matching_second_of_any_expression() {
        let parse = |text| CronExpr::parse(text).unwrap();
        let crons = [parse("0 0 3 * * *"), parse("*/20 * * * * *")];
        // 2027-01-15T08:00:05Z → the next multiple of 20 seconds.
        let at = crate::clock::parse_rfc3339("2027-01-15T08:00:05Z").unwrap();
        assert_eq!(next_cron(&crons, at), crate::clock::parse_rfc3339("2027-01-15T08:00:20Z"));
        let nightly = [parse("0 0 3 * * *")];
        assert_eq!(next_cron(&nightly, at), crate::clock::parse_rfc3339("2027-01-16T03:00:00Z"));
        assert_eq!(next_cron(&[], at), None);
        assert!(CronExpr::parse("0 3 * * *").is_err(), "5 fields lack the seconds");
        assert!(CronExpr::parse("every night").is_err());
    }

    #[test]
    fn the_first_success_of_the_run_is_first_even_after_failures() {
        let expires_at = t(600);
        let failed = LastFetch::Never.then(Fetched::Failed, t(0)).then(Fetched::Failed, t(5));
        assert_eq!(failed, LastFetch::Failed { at: t(5), consecutive: 2, succeeded_before: false });
        let first = failed.then(Fetched::SameToken { expires_at }, t(10));
        assert_eq!(first, LastFetch::First { at: t(10), expires_at });
        let new = first.then(Fetched::NewToken { expires_at }, t(20));
        assert_eq!(new, LastFetch::NewToken { at: t(20), expires_at });
        let failed_later = new.then(Fetched::Failed, t(30));
        assert_eq!(failed_later, LastFetch::Failed { at: t(30), consecutive: 1, succeeded_before: true });
        let same = failed_later.then(Fetched::SameToken { expires_at }, t(40));
        assert_eq!(same, LastFetch::SameToken { at: t(40), expires_at });
    }

    #[test]
    fn needing_a_login_waits_backoff_max_exactly_whatever_the_draw() {
        let c = config(0.5);
        let needs = LastFetch::Never.then(Fetched::Failed, t(0)).then(Fetched::NeedsLogin, t(5));
        assert_eq!(needs, LastFetch::NeedsLogin { at: t(5), consecutive: 2, succeeded_before: false });
        for draw in [0.0, 0.5, 0.999] {
            assert_eq!(next_refresh(&needs, Requested::No, &c, draw), Some(t(5) + c.backoff_max));
        }
        // A failure of another kind backs off from the count so far; a success starts over.
        let failed = needs.then(Fetched::Failed, t(10));
        assert_eq!(failed, LastFetch::Failed { at: t(10), consecutive: 3, succeeded_before: false });
        let first = needs.then(Fetched::NewToken { expires_at: t(600) }, t(10));
        assert_eq!(first, LastFetch::First { at: t(10), expires_at: t(600) });
    }

    #[test]
    fn a_deadline_already_passed_is_due_at_once() {
        // After a long suspend the deadline lies in the past: the caller compares it with now.
        let last = LastFetch::NewToken { at: t(0), expires_at: t(600) };
        assert!(next_refresh(&last, Requested::No, &config(0.1), 0.5).unwrap() < t(10_000));
    }
}
