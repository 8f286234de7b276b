//! mcp-token-sync: one daemon per host that keeps the short-lived API tokens of the host fresh
//! and hands them to the programs that need them.
//!
//! The data path of one token, left to right (a daemon runs it once per token it serves):
//!
//! - [`source`] gets a token from where its kind says: a current-token endpoint over HTTP(S)
//!   (the seed's backend, a cloud metadata server), an OAuth 2.0 authorization server
//!   ([`source::oauth2`]: discovery, grants including RFC 8693's exchange, client
//!   authentication, the refresh-token store and the login flows), a helper command (run by
//!   `child`, as the exec sink's hooks are), or a GitHub App; and runs the live probe;
//! - [`validate`] applies the rules a token must pass before anyone sees it (pure);
//! - [`engine`] runs one fetch at a time, when [`schedule`] (pure) says or a trigger asks, and
//!   publishes the current [`token`] (versioned) on a watch channel;
//! - `sinks` subscribe to that channel and write the token where consumers read it (files
//!   through `fsutil`'s atomic writes, keyrings, hooks, the `state` file), each on its own;
//! - [`api`] serves it over Unix sockets and turns clients' 401 reports (and reads that want a
//!   fresher token, `max_age`) into engine triggers;
//!   [`proxy`] adds it to any local client's requests to an upstream, and turns the upstream's
//!   401s into the same triggers. Both are served by `server` (accept loop, connection limits,
//!   the peer's uid from the kernel, `sock_diag`); `trust` checks who listens behind a
//!   plain-http loopback server that the source or a proxy connects to.
//!
//! A token is the unit: [`tokens`] runs each one (its engine and every sink, socket and proxy
//! that serves it, and the feed of another token it exchanges) and applies a reload token by
//! token; [`registry`] is where the API, signals
//! and systemd's status find a token by name, knowing nothing of how many there are.
//!
//! Beside it, [`bridge`] relays a stdio-only MCP host to a proxy sink (`mcp-token-sync bridge`).
//!
//! Around it: [`config`] (the TOML schema, values and checks, both shapes of the file), [`daemon`]
//! (assembly of the tokens and the daemon-wide sockets, the supervisor for signals and reload,
//! `once`), [`cli`] (the verbs) and [`client`] (the socket
//! API's client), [`metrics`] (one registry everything feeds), `systemd` (sd_notify and the
//! watchdog), `demo`, and the small [`clock`], `backoff`, `logging`, `text` and [`process`] helpers.
// Three reviewed exceptions: registering the wall-clock timerfd with tokio (`clock`), handing
// freed memory back to the kernel with glibc's `malloc_trim` (`process`), and dropping to a
// helper's user between fork and exec (`child`).
#![deny(unsafe_code)]

pub mod api;
pub(crate) mod backoff;
pub mod bridge;
pub(crate) mod child;
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
pub mod process;
pub mod proxy;
pub mod registry;
pub mod schedule;
pub(crate) mod server;
pub(crate) mod sinks;
pub(crate) mod sock_diag;
pub mod source;
pub(crate) mod state;
pub(crate) mod systemd;
pub(crate) mod text;
pub(crate) mod tls;
pub mod token;
pub mod tokens;
pub(crate) mod trust;
pub mod validate;
