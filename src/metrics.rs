//! `/metrics`: every count and gauge the daemon exports, in one registry that the engines, the
//! sinks, the socket API and the proxies feed as things happen. Only numbers and names reach it,
//! never the token.
//!
//! Every series about a token carries its name as the `token` label (DESIGN §15): a token's
//! engine, sinks and proxies feed it through their [`TokenMetrics`], which holds the label.
//! Daemon-wide series (socket requests, refused peers, dropped log lines) have none.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// How a 401 report was answered.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabel {
    token: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    token: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SinkLabels {
    token: String,
    sink: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SinkResultLabels {
    token: String,
    sink: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    token: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProxyLabels {
    token: String,
    proxy: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProxyClassLabels {
    token: String,
    proxy: String,
    class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProxyReasonLabels {
    token: String,
    proxy: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
    code: u16,
}

type FloatGauge = Gauge<f64, AtomicU64>;

pub struct Metrics {
    registry: Registry,
    fetches: Family<ResultLabels, Counter>,
    consecutive_failures: Family<TokenLabel, Gauge>,
    needs_login: Family<TokenLabel, Gauge>,
    last_success: Family<TokenLabel, FloatGauge>,
    token_version: Family<TokenLabel, Gauge>,
    token_valid: Family<TokenLabel, Gauge>,
    token_expiry: Family<TokenLabel, FloatGauge>,
    sink_writes: Family<SinkResultLabels, Counter>,
    sink_ok: Family<SinkLabels, Gauge>,
    reports: Family<OutcomeLabels, Counter>,
    socket_requests: Family<RouteLabels, Counter>,
    refused_peers: Counter,
    closed_for_room: Counter,
    proxy_requests: Family<ProxyClassLabels, Counter>,
    proxy_replays: Family<ProxyLabels, Counter>,
    proxy_unavailable: Family<ProxyReasonLabels, Counter>,
    proxy_upstream_errors: Family<ProxyReasonLabels, Counter>,
    proxy_client_errors: Family<ProxyLabels, Counter>,
    /// Follows `logging::dropped_lines` when rendered.
    log_lines_dropped: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("mcp_token_sync");
        let metrics = Metrics {
            registry: Registry::default(),
            fetches: Family::default(),
            consecutive_failures: Family::default(),
            needs_login: Family::default(),
            last_success: Family::default(),
            token_version: Family::default(),
            token_valid: Family::default(),
            token_expiry: Family::default(),
            sink_writes: Family::default(),
            sink_ok: Family::default(),
            reports: Family::default(),
            socket_requests: Family::default(),
            refused_peers: Counter::default(),
            closed_for_room: Counter::default(),
            proxy_requests: Family::default(),
            proxy_replays: Family::default(),
            proxy_unavailable: Family::default(),
            proxy_upstream_errors: Family::default(),
            proxy_client_errors: Family::default(),
            log_lines_dropped: Counter::default(),
        };
        let m = &metrics;
        registry.register("fetches", "Fetches from the backend, by result", m.fetches.clone());
        registry.register(
            "consecutive_failures",
            "Failed fetches since the last success",
            m.consecutive_failures.clone(),
        );
        registry.register(
            "needs_login",
            "1 while only `mcp-token-sync login` can get a token (an oauth2 source without a usable refresh token)",
            m.needs_login.clone(),
        );
        registry.register(
            "last_success_timestamp_seconds",
            "When a fetch last succeeded (0: not yet)",
            m.last_success.clone(),
        );
        registry.register(
            "token_version",
            "Version of the held token (grows per new token or expiry)",
            m.token_version.clone(),
        );
        registry.register("token_valid", "1 while a valid token is held", m.token_valid.clone());
        registry.register(
            "token_expiry_timestamp_seconds",
            "When the held token expires (0: none held)",
            m.token_expiry.clone(),
        );
        registry.register("sink_writes", "Sink writes, by sink and result", m.sink_writes.clone());
        registry.register("sink_ok", "1 while the sink's last write succeeded", m.sink_ok.clone());
        registry.register("reports_401", "401 reports from clients, by outcome", m.reports.clone());
        registry.register(
            "socket_requests",
            "Socket API requests, by route and status",
            m.socket_requests.clone(),
        );
        registry.register("refused_peers", "Connections refused by the peer ACL", m.refused_peers.clone());
        registry.register(
            "connections_closed_for_room",
            "Idle connections closed because a socket had no free slot for a new one",
            m.closed_for_room.clone(),
        );
        registry.register(
            "proxy_requests",
            "Requests answered by a proxy, by status class",
            m.proxy_requests.clone(),
        );
        registry.register(
            "proxy_replays",
            "Requests a proxy sent again with a fresh token after the upstream answered 401",
            m.proxy_replays.clone(),
        );
        registry.register(
            "proxy_unavailable",
            "503s a proxy answered itself: no valid token, or the upstream refused the token",
            m.proxy_unavailable.clone(),
        );
        registry.register(
            "proxy_upstream_errors",
            "Requests a proxy could not complete with its upstream: unreachable, timeout, failed",
            m.proxy_upstream_errors.clone(),
        );
        registry.register(
            "proxy_client_errors",
            "Requests a proxy could not complete because of the client (an aborted or malformed body)",
            m.proxy_client_errors.clone(),
        );
        registry.register(
            "log_lines_dropped",
            "Log lines dropped because stderr was not read fast enough",
            m.log_lines_dropped.clone(),
        );
        Metrics { registry, ..metrics }
    }

    pub fn render(&self) -> String {
        self.log_lines_dropped.inner().fetch_max(crate::logging::dropped_lines(), Ordering::Relaxed);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }

    /// What the token named `token` feeds: its series, labelled with its name.
    pub fn token(self: &Arc<Self>, token: &str) -> TokenMetrics {
        TokenMetrics { all: self.clone(), token: token.to_owned() }
    }

    pub fn socket_request(&self, route: &'static str, code: u16) {
        self.socket_requests.get_or_create(&RouteLabels { route, code }).inc();
    }

    pub fn refused_peer(&self) {
        self.refused_peers.inc();
    }

    pub fn closed_for_room(&self) {
        self.closed_for_room.inc();
    }
}

/// One token's series: everything about a token is counted through this, so each series
/// carries the `token` label.
pub struct TokenMetrics {
    all: Arc<Metrics>,
    token: String,
}

impl TokenMetrics {
    /// The daemon-wide registry, for what a token's servers count that is not about the token
    /// (refused peers, connections closed for room).
    pub fn daemon(&self) -> &Arc<Metrics> {
        &self.all
    }

    fn label(&self) -> TokenLabel {
        TokenLabel { token: self.token.clone() }
    }

    /// A fetch ended: `result` is `new`, `unchanged` or `failed`.
    pub fn fetched(&self, result: &'static str, consecutive_failures: u32, last_success: Option<SystemTime>) {
        let (all, token) = (&self.all, self.token.clone());
        all.fetches.get_or_create(&ResultLabels { token, result }).inc();
        all.consecutive_failures.get_or_create(&self.label()).set(consecutive_failures.into());
        all.last_success.get_or_create(&self.label()).set(last_success.map_or(0.0, seconds));
    }

    /// Whether only a login can get a token now (DESIGN §13 `needs_login`).
    pub fn needs_login(&self, needed: bool) {
        self.all.needs_login.get_or_create(&self.label()).set(needed.into());
    }

    /// The held token changed: its version, and its expiry while it is valid.
    pub fn token(&self, version: u64, expires_at: Option<SystemTime>) {
        let all = &self.all;
        all.token_version.get_or_create(&self.label()).set(i64::try_from(version).unwrap_or(i64::MAX));
        all.token_valid.get_or_create(&self.label()).set(expires_at.is_some().into());
        all.token_expiry.get_or_create(&self.label()).set(expires_at.map_or(0.0, seconds));
    }

    /// The token left the configuration: its gauges go (counters stay, as history).
    pub fn remove(&self) {
        let label = self.label();
        let all = &self.all;
        all.consecutive_failures.remove(&label);
        all.needs_login.remove(&label);
        all.last_success.remove(&label);
        all.token_version.remove(&label);
        all.token_valid.remove(&label);
        all.token_expiry.remove(&label);
    }

    fn sink(&self, sink: &str) -> SinkLabels {
        SinkLabels { token: self.token.clone(), sink: sink.to_owned() }
    }

    /// A sink, named as logs name it (`file /run/x/token`), tried to write.
    pub fn sink_write(&self, sink: &str, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        let labels = SinkResultLabels { token: self.token.clone(), sink: sink.to_owned(), result };
        self.all.sink_writes.get_or_create(&labels).inc();
        self.all.sink_ok.get_or_create(&self.sink(sink)).set(ok.into());
    }

    /// A sink is ready to write (healthy until it fails).
    pub fn sink_started(&self, sink: &str) {
        self.all.sink_ok.get_or_create(&self.sink(sink)).set(1);
    }

    /// A sink was removed by a reload: its health no longer counts.
    pub fn sink_stopped(&self, sink: &str) {
        self.all.sink_ok.remove(&self.sink(sink));
    }

    pub fn report_401(&self, outcome: ReportOutcome) {
        let labels = OutcomeLabels { token: self.token.clone(), outcome: outcome.label() };
        self.all.reports.get_or_create(&labels).inc();
    }

    fn proxy(&self, proxy: &str) -> ProxyLabels {
        ProxyLabels { token: self.token.clone(), proxy: proxy.to_owned() }
    }

    /// The request counters of a proxy, named by where it listens: taken once, so that counting
    /// a request costs one atomic add, not a lookup.
    pub fn proxy_requests(&self, proxy: &str) -> ProxyRequests {
        let counter = |class| {
            let labels = ProxyClassLabels { token: self.token.clone(), proxy: proxy.to_owned(), class };
            self.all.proxy_requests.get_or_create_owned(&labels)
        };
        ProxyRequests { by_class: CLASSES.map(counter) }
    }

    pub fn proxy_replay(&self, proxy: &str) {
        self.all.proxy_replays.get_or_create(&self.proxy(proxy)).inc();
    }

    /// `reason`: `no_valid_token` or `upstream_rejected_token`.
    pub fn proxy_unavailable(&self, proxy: &str, reason: &'static str) {
        let labels = ProxyReasonLabels { token: self.token.clone(), proxy: proxy.to_owned(), reason };
        self.all.proxy_unavailable.get_or_create(&labels).inc();
    }

    pub fn proxy_client_error(&self, proxy: &str) {
        self.all.proxy_client_errors.get_or_create(&self.proxy(proxy)).inc();
    }

    /// `reason`: `unreachable`, `timeout` or `failed`.
    pub fn proxy_upstream_error(&self, proxy: &str, reason: &'static str) {
        let labels = ProxyReasonLabels { token: self.token.clone(), proxy: proxy.to_owned(), reason };
        self.all.proxy_upstream_errors.get_or_create(&labels).inc();
    }
}

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// One proxy's requests, by status class.
pub struct ProxyRequests {
    by_class: [Counter; 5],
}

impl ProxyRequests {
    /// A request was answered with `status`.
    pub fn count(&self, status: u16) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.by_class[class].inc();
    }
}

fn seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn renders_what_was_fed_with_the_token_label() {
        let metrics = Arc::new(Metrics::new());
        let calendar = metrics.token("calendar");
        calendar.fetched("new", 0, Some(UNIX_EPOCH + Duration::from_secs(100)));
        calendar.token(3, Some(UNIX_EPOCH + Duration::from_secs(160)));
        calendar.sink_write("file /run/t", true);
        calendar.sink_write("file /run/t", false);
        calendar.report_401(ReportOutcome::Stale);
        metrics.token("linear").token(1, None);
        metrics.socket_request("/v1/token", 200);
        let text = metrics.render();
        for line in [
            "mcp_token_sync_fetches_total{token=\"calendar\",result=\"new\"} 1",
            "mcp_token_sync_token_version{token=\"calendar\"} 3",
            "mcp_token_sync_token_valid{token=\"calendar\"} 1",
            "mcp_token_sync_token_valid{token=\"linear\"} 0",
            "mcp_token_sync_token_expiry_timestamp_seconds{token=\"calendar\"} 160.0",
            "mcp_token_sync_last_success_timestamp_seconds{token=\"calendar\"} 100.0",
            "mcp_token_sync_sink_writes_total{token=\"calendar\",sink=\"file /run/t\",result=\"ok\"} 1",
            "mcp_token_sync_sink_writes_total{token=\"calendar\",sink=\"file /run/t\",result=\"error\"} 1",
            "mcp_token_sync_sink_ok{token=\"calendar\",sink=\"file /run/t\"} 0",
            "mcp_token_sync_reports_401_total{token=\"calendar\",outcome=\"stale\"} 1",
            "mcp_token_sync_socket_requests_total{route=\"/v1/token\",code=\"200\"} 1",
        ] {
            assert!(text.contains(line), "no {line:?} in:\n{text}");
        }
        calendar.sink_stopped("file /run/t");
        calendar.remove();
        let text = metrics.render();
        assert!(
            !text.contains("sink_ok{token=\"calendar\"") && !text.contains("token_valid{token=\"calendar\"}")
        );
        assert!(text.contains("token_valid{token=\"linear\"}"), "another token's series stay");
    }

    #[test]
    fn proxy_requests_are_counted_by_status_class() {
        let metrics = Arc::new(Metrics::new());
        let requests = metrics.token("default").proxy_requests("127.0.0.1:8787");
        for status in [200, 204, 302, 404, 503, 503] {
            requests.count(status);
        }
        let text = metrics.render();
        for (class, n) in [("1xx", 0), ("2xx", 2), ("3xx", 1), ("4xx", 1), ("5xx", 2)] {
            let line = format!(
                "mcp_token_sync_proxy_requests_total{{token=\"default\",proxy=\"127.0.0.1:8787\",class=\"{class}\"}} {n}"
            );
            assert!(text.contains(&line), "no {line:?} in:\n{text}");
        }
    }
}
