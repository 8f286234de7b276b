//! `[source] type = "oauth2"` (DESIGN §13): the daemon as the host's only OAuth 2.0 client for
//! its token. One file per concern, each opening with its RFC: `client_auth` (RFC 6749 §2.3,
//! RFC 7523).
//!
//! Work in progress (issue 19): the grants, discovery, the rotation store and the login flows
//! follow; until the source uses it, this module is compiled for its tests.
#![cfg_attr(not(test), allow(dead_code))]

pub(crate) mod client_auth;
