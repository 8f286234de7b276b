//! The token itself and the one value everything downstream subscribes to.
//!
//! [`Token`] is the only type that holds the secret. It redacts itself in `Debug`, zeroes its
//! memory on drop, and is shown to humans by [`Fingerprint`]. The secret leaves it in exactly two
//! ways: [`Token::expose`] for a sink that must write it, and [`CurrentToken::to_json`] for the
//! `/v1/token` object.

use std::fmt;
use std::io;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use bytes::Bytes;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::clock;

pub struct Token {
    secret: SecretString,
    fingerprint: Fingerprint,
}

impl Token {
    pub fn new(secret: String) -> Token {
        let fingerprint = Fingerprint::of(secret.as_bytes());
        Token { secret: SecretString::from(secret), fingerprint }
    }

    /// The secret, for the code that hands it to a consumer. Never log or format it.
    pub fn expose(&self) -> &str {
        self.secret.expose_secret()
    }

    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }
}

impl PartialEq for Token {
    fn eq(&self, other: &Token) -> bool {
        self.expose() == other.expose()
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token(fingerprint {})", self.fingerprint)
    }
}

/// The first 8 hex digits of the token's SHA-256: enough to tell versions apart in logs,
/// useless for recovering the token.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint([u8; 4]);

impl Fingerprint {
    pub fn of(bytes: &[u8]) -> Fingerprint {
        let digest = Sha256::digest(bytes);
        Fingerprint([digest[0], digest[1], digest[2], digest[3]])
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A validated token as published: one version.
#[derive(Debug)]
pub struct CurrentToken {
    /// The token's name in the config (DESIGN §15): `default` for a top-level `[source]`.
    pub name: Arc<str>,
    pub token: Token,
    pub agent_name: Option<String>,
    pub expires_at: SystemTime,
    /// When this version was first fetched.
    pub fetched_at: SystemTime,
    pub version: u64,
    wire: OnceLock<Wire>,
}

/// This version as the socket API sends it, encoded once: every answer shares these bytes
/// instead of copying the token again, and they are zeroed when the version and the last answer
/// that carried it are gone.
pub struct Wire {
    /// The token alone.
    pub raw: Bytes,
    /// The `/v1/token` object.
    pub json: Bytes,
    /// `"<version>"`, for `ETag`.
    pub etag: Bytes,
}

impl fmt::Debug for Wire {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Wire(redacted)")
    }
}

impl CurrentToken {
    pub fn new(
        name: Arc<str>,
        token: Token,
        agent_name: Option<String>,
        expires_at: SystemTime,
        fetched_at: SystemTime,
        version: u64,
    ) -> CurrentToken {
        CurrentToken { name, token, agent_name, expires_at, fetched_at, version, wire: OnceLock::new() }
    }

    pub fn wire(&self) -> &Wire {
        self.wire.get_or_init(|| Wire {
            raw: Bytes::from_owner(Zeroizing::new(self.token.expose().as_bytes().to_vec())),
            json: Bytes::from_owner(self.to_json()),
            etag: Bytes::from(format!("\"{}\"", self.version)),
        })
    }

    /// The `/v1/token` object: `{"name","token","agent_name","expires_at","fetched_at","version"}`.
    /// The buffer is zeroed when dropped, since it holds the secret.
    pub fn to_json(&self) -> Zeroizing<Vec<u8>> {
        self.to_json_with(None)
    }

    /// The `/v1/token` object, plus `"changed"` when given (the answer to a 401 report).
    pub fn to_json_with(&self, changed: Option<bool>) -> Zeroizing<Vec<u8>> {
        #[derive(Serialize)]
        struct Wire<'a> {
            name: &'a str,
            token: &'a str,
            agent_name: Option<&'a str>,
            expires_at: String,
            fetched_at: String,
            version: u64,
            #[serde(skip_serializing_if = "Option::is_none")]
            changed: Option<bool>,
        }
        secret_json(&Wire {
            name: &self.name,
            token: self.token.expose(),
            agent_name: self.agent_name.as_deref(),
            expires_at: clock::rfc3339(self.expires_at),
            fetched_at: clock::rfc3339(self.fetched_at),
            version: self.version,
            changed,
        })
    }

    /// `version N (fingerprint abcd1234)`, how logs name a token.
    pub fn describe(&self) -> String {
        format!("version {} (fingerprint {})", self.version, self.token.fingerprint())
    }
}

/// Serializes `value`, which holds the secret, into a buffer that is zeroed when dropped and
/// sized exactly before writing (with a byte to spare, for a newline): a buffer that grew while
/// it was written would leave what it held so far in freed memory, unzeroed.
pub fn secret_json(value: &impl Serialize) -> Zeroizing<Vec<u8>> {
    struct Count(usize);
    impl io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    serde_json::to_writer(&mut count, value).expect("serializing strings and numbers cannot fail");
    let mut buf = Zeroizing::new(Vec::with_capacity(count.0 + 1));
    serde_json::to_writer(&mut *buf, value).expect("serializing strings and numbers cannot fail");
    buf
}

/// What the daemon holds, published on a `watch` channel. Each change is a new `version`.
#[derive(Debug, Clone, Default)]
pub enum TokenState {
    /// Nothing fetched yet.
    #[default]
    Empty,
    Valid(Arc<CurrentToken>),
    /// The last token expired with no replacement.
    Expired {
        version: u64,
    },
}

impl TokenState {
    pub fn version(&self) -> u64 {
        match self {
            TokenState::Empty => 0,
            TokenState::Valid(current) => current.version,
            TokenState::Expired { version } => *version,
        }
    }

    pub fn current(&self) -> Option<&Arc<CurrentToken>> {
        match self {
            TokenState::Valid(current) => Some(current),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const SECRET: &str = "CN8F-U3ycBSaEQKtS2sDAhJNAhTHFcNP4Qi-ljp5wJC-qZKgr3NKVPc";

    #[test]
    fn debug_shows_the_fingerprint_not_the_secret() {
        let token = Token::new(SECRET.into());
        let shown = format!("{token:?}");
        assert!(!shown.contains(SECRET) && !shown.contains("CN8F"), "{shown}");
        assert!(shown.contains(&token.fingerprint().to_string()), "{shown}");
    }

    #[test]
    fn fingerprint_is_the_first_8_hex_of_sha256() {
        // printf 'abc' | sha256sum → ba7816bf…
        assert_eq!(Fingerprint::of(b"abc").to_string(), "ba7816bf");
    }

    fn sample() -> CurrentToken {
        CurrentToken::new(
            Arc::from("calendar"),
            Token::new(SECRET.into()),
            Some("google-calender-mcp".into()),
            SystemTime::UNIX_EPOCH + Duration::from_millis(1_785_708_209_801),
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_785_708_149),
            7,
        )
    }

    #[test]
    fn current_token_debug_never_contains_the_secret() {
        let state = TokenState::Valid(Arc::new(sample()));
        assert!(!format!("{state:?}").contains(SECRET));
    }

    #[test]
    fn the_json_buffer_is_sized_before_it_is_written() {
        let mut long = sample();
        long.agent_name = Some("a".repeat(5000));
        for current in [sample(), long] {
            let json = current.to_json();
            assert_eq!(json.capacity(), json.len() + 1, "the buffer grew while the token was in it");
        }
    }

    #[test]
    fn json_object_has_the_documented_fields() {
        let value: serde_json::Value = serde_json::from_slice(&sample().to_json()).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "name": "calendar",
                "token": SECRET,
                "agent_name": "google-calender-mcp",
                "expires_at": "2026-08-02T22:03:29.801Z",
                "fetched_at": "2026-08-02T22:02:29Z",
                "version": 7,
            })
        );
    }
}
