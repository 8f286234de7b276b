//! Leaf value types of the configuration, parsed during deserialization so that a bad value is
//! reported with toml's position.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Durations are strings such as `"500ms"`, `"30s"`, `"5m"`, `"2h"`, `"30d"`.
pub(super) mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn parse(text: &str) -> Result<Duration, String> {
        humantime::parse_duration(text).map_err(|_| {
            format!("{text:?} is not a duration; write e.g. \"500ms\", \"30s\", \"5m\", \"2h\" or \"30d\"")
        })
    }

    /// The shortest form humans write: `5m`, `1h 30m`, `500ms`.
    pub fn display(d: Duration) -> String {
        if d.is_zero() {
            return "0s".into();
        }
        humantime::format_duration(d).to_string()
    }

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&display(*d))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        parse(&text).map_err(serde::de::Error::custom)
    }

    /// For an optional duration key.
    pub(crate) mod option {
        use std::time::Duration;

        use serde::{Deserializer, Serializer};

        pub(crate) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
            match d {
                Some(d) => super::serialize(d, s),
                None => s.serialize_none(),
            }
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            super::deserialize(d).map(Some)
        }
    }
}

/// A file mode written as an octal string, e.g. `"0600"`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Mode(pub u32);

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

impl fmt::Debug for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Mode {
    pub fn parse(text: &str) -> Result<Mode, String> {
        let digits = text.strip_prefix("0o").unwrap_or(text);
        match u32::from_str_radix(digits, 8) {
            Ok(bits) if !digits.is_empty() && bits <= 0o777 => Ok(Mode(bits)),
            _ => Err(format!(
                "{text:?} is not a file mode; write permission bits in octal, as a string, e.g. \"0600\""
            )),
        }
    }
}

impl Serialize for Mode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Mode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Mode, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Number(i64),
        }
        match Raw::deserialize(d)? {
            Raw::Text(text) => Mode::parse(&text).map_err(serde::de::Error::custom),
            // TOML 0600 is the decimal 600, not the mode the user meant.
            Raw::Number(n) => Err(serde::de::Error::custom(format!(
                "{n} is a number; write the mode as an octal string, e.g. \"0600\""
            ))),
        }
    }
}

/// A `refresh.cron` expression: 6 fields with seconds, evaluated in UTC. Parsed when the file is
/// read, so a bad one is reported with its line, and the schedule never sees one that failed.
#[derive(Clone)]
pub struct CronExpr {
    text: String,
    schedule: croner::Cron,
}

impl CronExpr {
    pub fn parse(text: &str) -> Result<CronExpr, String> {
        let schedule = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Required)
            .build()
            .parse(text)
            .map_err(|e| {
                format!("{text:?} is not a cron expression with seconds ({e}); e.g. \"0 0 3 * * *\"")
            })?;
        Ok(CronExpr { text: text.to_owned(), schedule })
    }

    pub fn schedule(&self) -> &croner::Cron {
        &self.schedule
    }
}

impl PartialEq for CronExpr {
    fn eq(&self, other: &CronExpr) -> bool {
        self.text == other.text
    }
}

impl fmt::Debug for CronExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.text, f)
    }
}

impl Serialize for CronExpr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for CronExpr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<CronExpr, D::Error> {
        CronExpr::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// A size in bytes, written `"1MiB"`, `"64KiB"`, `"512B"` or as a plain number of bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn parse(text: &str) -> Result<ByteSize, String> {
        let text = text.trim();
        let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
        let (digits, unit) = text.split_at(split);
        let factor = match unit.trim() {
            "" | "B" => 1,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            _ => 0,
        };
        match digits.parse::<u64>().ok().and_then(|n| n.checked_mul(factor)) {
            Some(bytes) if factor > 0 => Ok(ByteSize(bytes)),
            _ => Err(format!("{text:?} is not a size; write e.g. \"1MiB\", \"64KiB\" or \"512B\"")),
        }
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            n if n >= 1 << 20 && n % (1 << 20) == 0 => write!(f, "{}MiB", n >> 20),
            n if n >= 1 << 10 && n % (1 << 10) == 0 => write!(f, "{}KiB", n >> 10),
            n => write!(f, "{n}B"),
        }
    }
}

impl fmt::Debug for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ByteSize, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Number(u64),
        }
        match Raw::deserialize(d)? {
            Raw::Text(text) => ByteSize::parse(&text).map_err(serde::de::Error::custom),
            Raw::Number(n) => Ok(ByteSize(n)),
        }
    }
}

/// Where a proxy listens: a TCP address (`"127.0.0.1:8787"`, `"[::1]:8787"`) or the absolute
/// path of a Unix socket.
#[derive(Clone, PartialEq, Eq)]
pub enum Listen {
    Tcp(std::net::SocketAddr),
    Unix(std::path::PathBuf),
}

impl Listen {
    pub fn parse(text: &str) -> Result<Listen, String> {
        if text.starts_with('/') {
            return Ok(Listen::Unix(text.into()));
        }
        text.parse().map(Listen::Tcp).map_err(|_| {
            format!(
                "{text:?} is neither an IP address with a port nor an absolute path; write e.g. \
                 \"127.0.0.1:8787\", \"[::1]:8787\" or \"/run/mcp-token-sync/proxy.sock\""
            )
        })
    }
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Listen::Tcp(address) => write!(f, "{address}"),
            Listen::Unix(path) => write!(f, "{}", path.display()),
        }
    }
}

impl fmt::Debug for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Listen {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Listen {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Listen, D::Error> {
        Listen::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}
