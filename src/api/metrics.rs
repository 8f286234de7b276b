//! `/metrics`: Prometheus text, read at scrape time from what the engine and sinks already
//! publish, plus the API's own request and report counts. Nothing here ever sees the token.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use hyper::StatusCode;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use super::Shared;
use super::routes::Route;
use crate::token::TokenState;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum ReportOutcome {
    /// The reporter held an older version: answered at once, no fetch.
    Stale,
    /// The refresh brought a new token.
    Refreshed,
    /// The backend still answered the same token.
    Unchanged,
    /// The refresh failed.
    Failed,
    /// The wait ran out before the refresh finished.
    Pending,
}

impl ReportOutcome {
    fn label(self) -> &'static str {
        match self {
            ReportOutcome::Stale => "stale",
            ReportOutcome::Refreshed => "refreshed",
            ReportOutcome::Unchanged => "unchanged",
            ReportOutcome::Failed => "failed",
            ReportOutcome::Pending => "pending",
        }
    }
}

/// Counts only the API can see.
#[derive(Debug, Default)]
pub struct Counters {
    requests: Mutex<BTreeMap<(Route, u16), u64>>,
    reports: Mutex<BTreeMap<ReportOutcome, u64>>,
    refused_peers: AtomicU64,
    made_room: AtomicU64,
}

impl Counters {
    pub fn request(&self, route: Route, status: StatusCode) {
        *self.requests.lock().expect("never poisoned").entry((route, status.as_u16())).or_default() += 1;
    }

    pub fn report(&self, outcome: ReportOutcome) {
        *self.reports.lock().expect("never poisoned").entry(outcome).or_default() += 1;
    }

    pub fn refused_peer(&self) {
        self.refused_peers.fetch_add(1, Ordering::Relaxed);
    }

    pub fn made_room(&self) {
        self.made_room.fetch_add(1, Ordering::Relaxed);
    }
}

pub fn render(shared: &Shared) -> String {
    let mut registry = Registry::with_prefix("mcp_token_sync");
    registry.register_collector(Box::new(Snapshot::take(shared)));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("writing to a String cannot fail");
    text
}

/// The values of one scrape, copied out so the encoder holds no locks.
#[derive(Debug)]
struct Snapshot {
    fetches: [(&'static str, u64); 3],
    consecutive_failures: u64,
    last_success: Option<f64>,
    version: u64,
    expiry: Option<f64>,
    valid: bool,
    sinks: Vec<(String, bool, u64, u64)>,
    reports: Vec<(&'static str, u64)>,
    requests: Vec<(&'static str, String, u64)>,
    refused_peers: u64,
    made_room: u64,
}

fn seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64()
}

impl Snapshot {
    fn take(shared: &Shared) -> Snapshot {
        let state = shared.engine.token().borrow().clone();
        let engine = shared.engine.status().borrow().clone();
        Snapshot {
            fetches: [
                ("new", engine.fetches_new),
                ("unchanged", engine.fetches_unchanged),
                ("failed", engine.fetches_failed),
            ],
            consecutive_failures: engine.consecutive_failures.into(),
            last_success: engine.last_success_at.map(seconds),
            version: state.version(),
            expiry: state.current().map(|c| seconds(c.expires_at)),
            valid: matches!(state, TokenState::Valid(_)),
            sinks: shared
                .sinks
                .borrow()
                .iter()
                .map(|r| {
                    let r = r.borrow();
                    (format!("{} {}", r.kind, r.target), r.ok, r.writes_ok, r.writes_failed)
                })
                .collect(),
            reports: shared
                .counters
                .reports
                .lock()
                .expect("never poisoned")
                .iter()
                .map(|(o, n)| (o.label(), *n))
                .collect(),
            requests: shared
                .counters
                .requests
                .lock()
                .expect("never poisoned")
                .iter()
                .map(|((route, code), n)| (route.label(), code.to_string(), *n))
                .collect(),
            refused_peers: shared.counters.refused_peers.load(Ordering::Relaxed),
            made_room: shared.counters.made_room.load(Ordering::Relaxed),
        }
    }
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
        let mut family = encoder.encode_descriptor(
            "fetches",
            "Fetches from the backend, by result",
            None,
            MetricType::Counter,
        )?;
        for (result, n) in self.fetches {
            ConstCounter::new(n).encode(family.encode_family(&[("result", result)])?)?;
        }
        gauge(
            &mut encoder,
            "consecutive_failures",
            "Failed fetches since the last success",
            self.consecutive_failures as f64,
        )?;
        if let Some(t) = self.last_success {
            gauge(&mut encoder, "last_success_timestamp_seconds", "When a fetch last succeeded", t)?;
        }
        gauge(
            &mut encoder,
            "token_version",
            "Version of the held token (grows per new token or expiry)",
            self.version as f64,
        )?;
        gauge(
            &mut encoder,
            "token_valid",
            "1 while a valid token is held",
            if self.valid { 1.0 } else { 0.0 },
        )?;
        if let Some(t) = self.expiry {
            gauge(&mut encoder, "token_expiry_timestamp_seconds", "When the held token expires", t)?;
        }

        let mut family = encoder.encode_descriptor(
            "sink_writes",
            "Sink writes, by sink and result",
            None,
            MetricType::Counter,
        )?;
        for (sink, _, ok, failed) in &self.sinks {
            ConstCounter::new(*ok)
                .encode(family.encode_family(&[("sink", sink.as_str()), ("result", "ok")])?)?;
            ConstCounter::new(*failed)
                .encode(family.encode_family(&[("sink", sink.as_str()), ("result", "error")])?)?;
        }
        let mut family = encoder.encode_descriptor(
            "sink_ok",
            "1 while the sink's last write succeeded",
            None,
            MetricType::Gauge,
        )?;
        for (sink, ok, _, _) in &self.sinks {
            ConstGauge::new(i64::from(*ok)).encode(family.encode_family(&[("sink", sink.as_str())])?)?;
        }

        let mut family = encoder.encode_descriptor(
            "reports_401",
            "401 reports from clients, by outcome",
            None,
            MetricType::Counter,
        )?;
        for (outcome, n) in &self.reports {
            ConstCounter::new(*n).encode(family.encode_family(&[("outcome", *outcome)])?)?;
        }
        let mut family = encoder.encode_descriptor(
            "socket_requests",
            "Socket API requests, by route and status",
            None,
            MetricType::Counter,
        )?;
        for (route, code, n) in &self.requests {
            ConstCounter::new(*n)
                .encode(family.encode_family(&[("route", *route), ("code", code.as_str())])?)?;
        }
        let family = encoder.encode_descriptor(
            "refused_peers",
            "Connections refused by the peer ACL",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(self.refused_peers).encode(family)?;
        let family = encoder.encode_descriptor(
            "connections_closed_for_room",
            "Idle connections closed because a socket had no free slot for a new one",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(self.made_room).encode(family)
    }
}

fn gauge(encoder: &mut DescriptorEncoder<'_>, name: &str, help: &str, value: f64) -> std::fmt::Result {
    ConstGauge::new(value).encode(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?)
}
