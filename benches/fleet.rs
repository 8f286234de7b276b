//! A fleet: 10,000 daemons started at the same instant against one backend that mints 1-hour
//! tokens. Requests per second at the backend over 6 hours, with the default jitter and without,
//! against the uniform spread (the same requests evenly over the time).
//!
//!     cargo bench --bench fleet
//!
//! A simulation of the schedule itself (`schedule::next_refresh`, the function the daemon runs),
//! event by event: no network, no sleeping, seeded so every run prints the same figures.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mcp_token_sync::config::RefreshConfig;
use mcp_token_sync::schedule::{LastFetch, Requested, next_refresh};
use rand::{Rng, SeedableRng};

const DAEMONS: usize = 10_000;
const LIFETIME: Duration = Duration::from_secs(3600);
const HORIZON: u64 = 6 * 3600;

fn at(secs: f64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs_f64(secs)
}

fn secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

/// Requests per whole second, after the start (second 0: every daemon's first fetch, which no
/// schedule can spread). `start_spread: false` replays the rule before the first refresh was
/// spread over a whole cycle.
fn simulate(jitter: f64, start_spread: bool) -> Vec<u32> {
    let config = RefreshConfig { jitter, ..RefreshConfig::default() };
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut per_second = vec![0u32; HORIZON as usize];
    let mut queue = BinaryHeap::new();
    for daemon in 0..DAEMONS {
        let (fetched, expires_at) = (at(0.0), at(0.0) + LIFETIME);
        let first = if start_spread {
            LastFetch::First { at: fetched, expires_at }
        } else {
            LastFetch::NewToken { at: fetched, expires_at }
        };
        let next = next_refresh(&first, Requested::No, &config, rng.random()).unwrap();
        queue.push(Reverse(((secs(next) * 1e6) as u64, daemon)));
    }
    while let Some(Reverse((micros, daemon))) = queue.pop() {
        let now = micros as f64 / 1e6;
        if now >= HORIZON as f64 {
            break;
        }
        per_second[now as usize] += 1;
        let fetched = LastFetch::NewToken { at: at(now), expires_at: at(now) + LIFETIME };
        let next = next_refresh(&fetched, Requested::No, &config, rng.random()).unwrap();
        queue.push(Reverse(((secs(next) * 1e6) as u64, daemon)));
    }
    per_second
}

/// The highest rate over `window` seconds, in requests per second.
fn peak_rate(per_second: &[u32], window: usize) -> f64 {
    per_second.windows(window).map(|w| w.iter().sum::<u32>()).max().unwrap() as f64 / window as f64
}

fn main() {
    println!(
        "| schedule | jitter | uniform req/s | peak, 1 s | peak, 10 s windows | peak / uniform (10 s) |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, jitter, start_spread) in [
        ("first refresh spread over a cycle (now)", 0.1, true),
        ("± jitter only (before)", 0.1, false),
        ("no jitter", 0.0, true),
    ] {
        let per_second = simulate(jitter, start_spread);
        let total: u64 = per_second.iter().map(|&n| u64::from(n)).sum();
        let uniform = total as f64 / HORIZON as f64;
        let (one, ten) = (peak_rate(&per_second, 1), peak_rate(&per_second, 10));
        println!("| {name} | {jitter} | {uniform:.1} | {one:.0} | {ten:.1} | {:.2} |", ten / uniform);
    }
    // What pure chance gives: the same number of requests at uniformly random instants.
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut random = vec![0u32; HORIZON as usize];
    for _ in 0..(DAEMONS as u64 * HORIZON / 855) {
        random[rng.random_range(0..HORIZON as usize)] += 1;
    }
    let uniform = random.iter().map(|&n| f64::from(n)).sum::<f64>() / HORIZON as f64;
    println!(
        "| (uniformly random instants, for scale) | | {uniform:.1} | {:.0} | {:.1} | {:.2} |",
        peak_rate(&random, 1),
        peak_rate(&random, 10),
        peak_rate(&random, 10) / uniform
    );
}
