//! `[source] type = "oauth2"` (DESIGN §13): the daemon as the host's only OAuth 2.0 client for
//! its token. One file per concern, each opening with its RFC: `client_auth` (RFC 6749 §2.3,
//! RFC 7523), `token` (RFC 6749 §3.2, §5; RFC 8707).
//!
//! Work in progress (issue 19): the grants, discovery, the rotation store and the login flows
//! follow; until the source uses them, parts are unused.
#![allow(dead_code)]

pub(crate) mod client_auth;
pub(crate) mod token;
