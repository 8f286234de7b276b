//! Refused peers in the log (DESIGN §12): the first at once, then at most one line a minute per
//! listener with how many more were refused and the uids seen. A local user who is refused
//! can connect as fast as the kernel accepts; a line for each would let them fill the journal
//! (one user made 142,000 lines in minutes) and, with a slow log reader, slow everyone.

use std::collections::BTreeSet;
use std::fmt::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tracing::warn;

/// At most one line about refusals per listener this often, after the first.
pub(crate) const EVERY: Duration = Duration::from_secs(60);

/// Who was refused: a uid the ACL does not admit, or a peer whose uid cannot be known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refused {
    Uid { uid: u32, pid: Option<i32> },
    Unknown(String),
}

/// What has been refused since the last line.
#[derive(Debug, Default)]
struct Log {
    last_line: Option<Instant>,
    count: u64,
    uids: BTreeSet<u32>,
    unknown: u64,
}

impl Log {
    /// Records one refusal; the line to write now, if any.
    fn record(&mut self, now: Instant, name: &str, who: &Refused) -> Option<String> {
        if self.last_line.is_none_or(|at| now >= at + EVERY) && self.count == 0 {
            self.last_line = Some(now);
            return Some(match who {
                Refused::Uid { uid, pid } => {
                    let pid = pid.map_or("unknown".into(), |p| p.to_string());
                    format!(
                        "{name}: refused peer uid {uid} pid {pid}: not root, the daemon's uid, or in \
                         allow_uids/allow_gids (more refusals are counted, one line a minute)"
                    )
                }
                Refused::Unknown(reason) => {
                    format!("{name}: refused a peer whose user cannot be known: {reason}")
                }
            });
        }
        self.count += 1;
        match who {
            Refused::Uid { uid, .. } => {
                self.uids.insert(*uid);
            }
            Refused::Unknown(_) => self.unknown += 1,
        }
        None
    }

    /// When the counted refusals are due in a line.
    fn due(&self) -> Option<Instant> {
        (self.count > 0).then(|| self.last_line.map_or_else(Instant::now, |at| at + EVERY))
    }

    /// The line for the refusals counted since the last one, if any.
    fn flush(&mut self, now: Instant, name: &str) -> Option<String> {
        if self.count == 0 {
            return None;
        }
        let mut line = format!("{name}: refused {} more connection(s) in the last minute", self.count);
        let uids: Vec<String> = self.uids.iter().map(u32::to_string).collect();
        if !uids.is_empty() {
            let _ = write!(line, "; uids {}", uids.join(", "));
        }
        if self.unknown > 0 {
            let _ = write!(line, "; {} whose user could not be known", self.unknown);
        }
        *self = Log { last_line: Some(now), ..Log::default() };
        Some(line)
    }
}

/// One listener's refusal log, shared by its connections' tasks.
#[derive(Clone)]
pub(crate) struct Refusals {
    name: Arc<str>,
    log: Arc<Mutex<Log>>,
}

impl Refusals {
    pub fn new(name: &str) -> Refusals {
        Refusals { name: name.into(), log: Arc::default() }
    }

    /// Logs a refusal now or counts it; the first one counted schedules the line that reports
    /// it, so a burst followed by silence is still reported.
    pub fn refused(&self, who: Refused) {
        let mut log = self.log.lock().expect("never poisoned");
        let was_pending = log.count > 0;
        if let Some(line) = log.record(Instant::now(), &self.name, &who) {
            warn!("{line}");
        } else if !was_pending {
            let due = log.due().expect("a refusal was just counted");
            let this = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep_until(due).await;
                let line = this.log.lock().expect("never poisoned").flush(Instant::now(), &this.name);
                if let Some(line) = line {
                    warn!("{line}");
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_refusal_is_a_line_and_the_rest_a_count_a_minute() {
        let start = Instant::now();
        let mut log = Log::default();
        let nobody = Refused::Uid { uid: 65534, pid: Some(42) };
        let first = log.record(start, "127.0.0.1:8787", &nobody).expect("the first is logged at once");
        assert!(first.contains("refused peer uid 65534 pid 42"), "{first}");
        for i in 0..1000 {
            let who = if i % 2 == 0 { nobody.clone() } else { Refused::Uid { uid: 1000, pid: None } };
            assert_eq!(log.record(start + Duration::from_millis(i), "l", &who), None);
        }
        assert_eq!(log.record(start, "l", &Refused::Unknown("TIME-WAIT".into())), None);
        assert_eq!(log.due(), Some(start + EVERY));
        let line = log.flush(start + EVERY, "l").unwrap();
        assert_eq!(
            line,
            "l: refused 1001 more connection(s) in the last minute; uids 1000, 65534; 1 whose user could not be known"
        );
        assert_eq!((log.due(), log.flush(start + EVERY, "l")), (None, None), "nothing left to say");
        // Within a minute of that line, a new refusal is counted, not logged.
        assert_eq!(log.record(start + EVERY + Duration::from_secs(1), "l", &nobody), None);
        assert_eq!(log.due(), Some(start + 2 * EVERY));
    }

    #[test]
    fn after_a_quiet_minute_a_refusal_is_logged_at_once_again() {
        let start = Instant::now();
        let mut log = Log::default();
        let nobody = Refused::Uid { uid: 65534, pid: None };
        assert!(log.record(start, "l", &nobody).is_some());
        assert!(log.record(start + EVERY, "l", &nobody).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_then_silence_is_still_reported() {
        let refusals = Refusals::new("l");
        for _ in 0..3 {
            refusals.refused(Refused::Uid { uid: 65534, pid: None });
        }
        assert_eq!(refusals.log.lock().unwrap().count, 2);
        tokio::time::sleep(EVERY + Duration::from_millis(1)).await;
        let log = refusals.log.lock().unwrap();
        assert_eq!((log.count, log.due()), (0, None), "the scheduled line reported the count");
    }
}
