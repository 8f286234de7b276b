//! Encoding an env file: `VARIABLE=value` lines that systemd's `EnvironmentFile=`, docker's
//! `--env-file`, dotenv parsers and `set -a; . file` all read as the same string.
//!
//! Those parsers disagree on quoting and escapes, so the value is written unquoted and only
//! when every byte is in the one class they all read literally: `A-Za-z0-9._+/=-`.

use std::time::SystemTime;

use zeroize::Zeroizing;

use crate::clock;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the token contains {what} at byte {at}, which env files cannot carry unquoted \
     (only A-Z a-z 0-9 . _ + / = - are safe for every reader); this sink skips it, the others still publish"
)]
pub(crate) struct Unsafe {
    what: &'static str,
    at: usize,
}

/// The file's content for `token`; `expires` adds the expiry line.
pub(super) fn encode(
    variable: &str,
    token: &str,
    expires: Option<(&str, SystemTime)>,
) -> Result<Zeroizing<Vec<u8>>, Unsafe> {
    if let Some((at, byte)) = token.bytes().enumerate().find(|(_, b)| !is_safe(*b)) {
        return Err(Unsafe { what: describe(byte), at });
    }
    let expires_line = expires.map(|(name, at)| format!("{name}={}\n", clock::rfc3339(at)));
    // Sized exactly first: a buffer that grew would leave a copy of the token in freed memory.
    let size = variable.len() + token.len() + 2 + expires_line.as_ref().map_or(0, String::len);
    let mut text = Zeroizing::new(Vec::with_capacity(size));
    text.extend_from_slice(variable.as_bytes());
    text.push(b'=');
    text.extend_from_slice(token.as_bytes());
    text.push(b'\n');
    if let Some(line) = expires_line {
        text.extend_from_slice(line.as_bytes());
    }
    Ok(text)
}

fn is_safe(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b'/' | b'=' | b'-')
}

fn describe(byte: u8) -> &'static str {
    match byte {
        b' ' => "a space",
        b'$' => "a dollar sign",
        b'`' => "a backtick",
        b'"' | b'\'' => "a quote",
        b'#' => "a '#'",
        b'\\' => "a backslash",
        0x21..=0x7e => "punctuation a shell or dotenv parser would interpret",
        _ => "a control or non-ASCII byte",
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn writes_the_variable_and_the_optional_expiry() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_785_708_209);
        let text =
            encode("GOOGLE_MCP_TOKEN", "CN8F-U3yc_BSa.EQ+/=", Some(("GOOGLE_MCP_TOKEN_EXPIRES_AT", at)))
                .unwrap();
        assert_eq!(
            String::from_utf8(text.to_vec()).unwrap(),
            "GOOGLE_MCP_TOKEN=CN8F-U3yc_BSa.EQ+/=\nGOOGLE_MCP_TOKEN_EXPIRES_AT=2026-08-02T22:03:29Z\n"
        );
        assert_eq!(text.capacity(), text.len(), "the buffer grew while the token was in it");
        assert_eq!(&*encode("T", "abc", None).unwrap(), b"T=abc\n");
    }

    #[test]
    fn refuses_what_some_reader_would_interpret_and_says_which_class() {
        for (token, what) in [
            ("ab$HOME", "a dollar sign"),
            ("ab`id`", "a backtick"),
            ("ab\"c", "a quote"),
            ("ab'c", "a quote"),
            ("ab c", "a space"),
            ("ab#c", "a '#'"),
            ("ab\\c", "a backslash"),
            ("ab;c", "punctuation a shell or dotenv parser would interpret"),
        ] {
            let err = encode("T", token, None).unwrap_err();
            assert_eq!(err, Unsafe { what, at: 2 }, "{token:?}");
            assert!(!err.to_string().contains(token), "the error quotes the token");
        }
    }
}
