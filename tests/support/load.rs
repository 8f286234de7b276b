//! Load and its figures for the benchmarks: `oha` (16 keep-alive clients and the like) as the
//! load generator, the same for every server measured, and quantiles of samples taken by hand.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// What one run of the load generator measured.
#[derive(Debug, Clone, Copy)]
pub struct Measured {
    pub rps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub errors: u64,
}

/// Where the load goes.
pub enum To<'a> {
    /// An `http://` URL.
    Url(&'a str),
    /// A Unix socket, and the path to ask for on it.
    Unix(&'a Path, &'a str),
}

/// `clients` keep-alive connections asking `to` one request at a time each, for `duration`.
pub fn oha(to: To<'_>, clients: usize, duration: Duration) -> Measured {
    oha_with(to, clients, &["-z", &format!("{}ms", duration.as_millis())])
}

/// `clients` keep-alive connections sending `requests` requests to `to` in all.
pub fn oha_requests(to: To<'_>, clients: usize, requests: usize) -> Measured {
    oha_with(to, clients, &["-n", &requests.to_string()])
}

fn oha_with(to: To<'_>, clients: usize, stop: &[&str]) -> Measured {
    let mut command = Command::new("oha");
    command.args(["--no-tui", "--output-format", "json", "-c", &clients.to_string()]);
    command.args(stop);
    match to {
        To::Url(url) => command.arg(url),
        To::Unix(socket, path) => {
            command.arg("--unix-socket").arg(socket).arg(format!("http://localhost{path}"))
        }
    };
    let out = command.output().expect("oha (cargo install oha; scripts/bench does)");
    assert!(out.status.success(), "oha failed: {}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("oha's JSON report");
    let us = |q: &str| report["latencyPercentiles"][q].as_f64().unwrap_or(f64::NAN) * 1e6;
    let codes = report["statusCodeDistribution"].as_object().cloned().unwrap_or_default();
    let bad: u64 =
        codes.iter().filter(|(code, _)| !code.starts_with('2')).filter_map(|(_, n)| n.as_u64()).sum(); // A request cut off by the end of the run is not the server's failure.
    let failed: u64 = report["errorDistribution"].as_object().map_or(0, |errors| {
        errors
            .iter()
            .filter(|(what, _)| *what != "aborted due to deadline")
            .filter_map(|(_, n)| n.as_u64())
            .sum()
    });
    Measured {
        rps: report["summary"]["requestsPerSec"].as_f64().unwrap(),
        p50_us: us("p50"),
        p99_us: us("p99"),
        errors: bad + failed,
    }
}

/// (p50, p99) of `samples`, in µs.
pub fn quantiles(samples: &mut [Duration]) -> (f64, f64) {
    samples.sort_unstable();
    let at =
        |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)].as_secs_f64() * 1e6;
    (at(0.5), at(0.99))
}
