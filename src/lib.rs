//! mcp-token-sync: one daemon per host that keeps a short-lived API token fresh and hands it to
//! the programs that need it.
//!
//! The data path, left to right:
//!
//! - [`source`] fetches the backend's current-token answer over HTTP(S);
//! - [`validate`] applies the rules a token must pass before anyone sees it;
//! - [`engine`] runs one fetch at a time, when [`schedule`] says or a trigger asks, and publishes
//!   the current [`token`] (versioned) on a watch channel;
//! - [`sinks`] subscribe to that channel and write the token where consumers read it (files
//!   through [`fsutil`]'s atomic writes, keyrings, hooks, the [`state`] file), each on its own;
//! - [`api`] serves it over Unix sockets, and turns clients' 401 reports into engine triggers.
//!
//! Around it: [`config`] (the TOML schema and its checks), [`daemon`] (assembly, signals,
//! reload, stop), [`systemd`] (sd_notify and the watchdog), [`cli`] and [`client`] (the command
//! line and its socket client), [`demo`], and the small [`clock`], [`logging`] and [`process`]
//! helpers.
// Two reviewed exceptions: registering the wall-clock timerfd with tokio (`clock`), and handing
// freed memory back to the kernel with glibc's `malloc_trim` (`process`).
#![deny(unsafe_code)]

pub mod api;
pub(crate) mod backoff;
pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
pub mod daemon;
pub(crate) mod demo;
pub mod engine;
pub(crate) mod fsutil;
pub(crate) mod logging;
pub mod metrics;
pub(crate) mod process;
pub mod proxy;
pub mod schedule;
pub(crate) mod server;
pub(crate) mod sinks;
pub mod source;
pub(crate) mod state;
pub(crate) mod systemd;
pub mod token;
pub mod validate;
