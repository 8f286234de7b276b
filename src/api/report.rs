//! `POST /v1/report-401`: a client says the backend refused version N; it gets a token that
//! works, after one coalesced refresh if N is still the current version. Whether a refresh is
//! needed is the engine's decision, not this route's.

use std::time::Duration;

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use tracing::info;

use super::respond::{Body, error, no_token, query, read_body, secret};
use crate::config::duration_display;
use crate::metrics::ReportOutcome;
use crate::registry::TokenHandle;

/// How long a report waits for its refresh unless `?wait=` says otherwise.
const DEFAULT_WAIT: Duration = Duration::from_secs(10);
/// The longest a request waits for a refresh.
pub(super) const MAX_WAIT: Duration = Duration::from_secs(60);

/// What a report asks.
struct Report {
    /// The version the backend refused; `None`: the current one.
    version: Option<u64>,
    wait: Duration,
}

/// `?wait=` and the body `{"version": N}` (or nothing); a 400 answer when they are malformed.
async fn parse(request: Request<Incoming>) -> Result<Report, Response<Body>> {
    let wait = match query(&request, "wait") {
        None => DEFAULT_WAIT,
        Some(text) => match crate::config::parse_duration(&text) {
            Ok(wait) if wait <= MAX_WAIT => wait,
            _ => {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "wait is a duration up to 60s, e.g. ?wait=10s",
                ));
            }
        },
    };
    let body = read_body(request).await?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Report { version: None, wait });
    }
    #[derive(serde::Deserialize)]
    struct Wire {
        version: Option<u64>,
    }
    match serde_json::from_slice::<Wire>(&body) {
        Ok(wire) => Ok(Report { version: wire.version, wait }),
        Err(_) => Err(error(StatusCode::BAD_REQUEST, "bad_request", "the body is {\"version\": N} or empty")),
    }
}

pub(super) async fn report_401(token: &TokenHandle, request: Request<Incoming>) -> Response<Body> {
    let report = match parse(request).await {
        Ok(report) => report,
        Err(response) => return response,
    };
    let reported = report.version.unwrap_or_else(|| token.engine.token().borrow().version());
    let refresh = token.engine.refresh_past(reported, "401 report");
    let (outcome, changed) = match tokio::time::timeout(report.wait, refresh).await {
        Ok(Ok(refreshed)) if !refreshed.fetched => (ReportOutcome::Stale, refreshed.changed),
        Ok(Ok(refreshed)) if refreshed.changed => (ReportOutcome::Refreshed, true),
        Ok(Ok(_)) => {
            info!(
                "401 report on version {reported}: the backend still answers the same token, \
                 so the rejection was probably not about the token"
            );
            (ReportOutcome::Unchanged, false)
        }
        Ok(Err(e)) => {
            token.metrics.report_401(ReportOutcome::Failed);
            return error(StatusCode::SERVICE_UNAVAILABLE, "refresh_failed", &e.to_string());
        }
        // Still in flight: answer with what is held now; the refresh goes on.
        Err(_) => (ReportOutcome::Pending, false),
    };
    token.metrics.report_401(outcome);
    match token.engine.token().borrow().current() {
        Some(current) => {
            let changed = changed || current.version > reported;
            secret(&current.to_json_with(Some(changed)), "application/json")
        }
        None => no_token(
            "no_valid_token",
            &format!(
                "no valid token yet; the refresh did not finish within {}",
                duration_display(report.wait)
            ),
        ),
    }
}
