//! The rules of DESIGN §4: what a backend answer must be before anyone sees its token.
//!
//! Pure: bytes in, candidate or [`Rejection`] out. The HTTP-level rules (status 200, size, no
//! redirects) and the live probe (rule 6) are the source's, since they are I/O. A rejection
//! message says what was wrong and never quotes the token.

use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::clock;
use crate::config::{ExpiryField, FieldsConfig, ValidateConfig, duration_display};
use crate::token::Token;

pub const MAX_TOKEN_BYTES: usize = 4096;

/// A token that passed rules 1 to 5 (the probe, when configured, comes next).
#[derive(Debug)]
pub struct Candidate {
    pub token: Token,
    pub agent_name: Option<String>,
    pub expires_at: SystemTime,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error(
        "the answer is not JSON ({0}); is the source the token's (source.url, source.command), or is its answer text (source.format)?"
    )]
    NotJson(String),
    #[error("the answer is JSON but not an object")]
    NotAnObject,
    #[error("the backend marks the token as not valid ({0} is false)")]
    MarkedInvalid(String),
    #[error("{pointer} is {found}, expected true or false")]
    ValidNotBoolean { pointer: String, found: &'static str },
    #[error("the answer has no token at {0} (source.fields.token)")]
    TokenMissing(String),
    #[error("the token at {pointer} is {found}, expected a string")]
    TokenNotString { pointer: String, found: &'static str },
    #[error("the token is empty")]
    TokenEmpty,
    #[error("the token is {0} bytes long; at most 4096 are accepted")]
    TokenTooLong(usize),
    #[error("the token contains {what} at byte {at}; only visible ASCII (0x21-0x7E) is accepted")]
    TokenBadByte { what: &'static str, at: usize },
    #[error("the answer has no agent name at {pointer}, and source.agent requires {expected:?}")]
    AgentMissing { pointer: String, expected: String },
    #[error("the token was issued for agent {found:?}, not {expected:?} (source.agent)")]
    WrongAgent { found: String, expected: String },
    #[error(
        "the agent name at {0} holds the token itself; check source.fields.agent and source.fields.token"
    )]
    AgentHoldsToken(String),
    #[error("the answer has no expiry at {0}")]
    ExpiryMissing(String),
    #[error(
        "the expiry at {0} is not an RFC 3339 time like \"2026-08-02T22:03:29Z\" nor seconds since the epoch"
    )]
    ExpiryNotRfc3339(String),
    #[error(
        "{0} gives no expiry, and the token is not a JWT with an exp: set source.default_lifetime (or \
         source.fields.expires_at / expires_in for a JSON answer that has one)"
    )]
    ExpiryUnknown(&'static str),
    #[error("the answer is not text: {0}")]
    NotText(String),
    #[error("the expiry at {0} is not a number of seconds (a JSON number, or a string of decimal digits)")]
    ExpiryNotSeconds(String),
    #[error("the token has already expired")]
    Expired,
    #[error("the token expires in {remaining}, sooner than validate.min_remaining ({min})")]
    ExpiresTooSoon { remaining: String, min: String },
    #[error("the token expires in {ahead}, further ahead than validate.max_lifetime ({max})")]
    ExpiresTooFar { ahead: String, max: String },
}

/// Applies rules 1 (JSON object) to 5 to a 200 answer that arrived at `received_at`. Without an
/// expiry field (`fields.expires_at = ""`), the expiry is the token's own `exp` when it is a JWT,
/// else `default_lifetime` (DESIGN §16).
pub fn check_answer(
    body: &[u8],
    received_at: SystemTime,
    fields: &FieldsConfig,
    agent: Option<&str>,
    default_lifetime: Option<Duration>,
    rules: &ValidateConfig,
) -> Result<Candidate, Rejection> {
    // Parsing into a `Value` can only fail on syntax, and serde_json's syntax messages give a
    // position without echoing the input, so they are safe to show.
    let mut answer: Value = serde_json::from_slice(body).map_err(|e| Rejection::NotJson(e.to_string()))?;
    if !answer.is_object() {
        return Err(Rejection::NotAnObject);
    }

    match answer.pointer(&fields.valid) {
        None | Some(Value::Bool(true)) => {}
        Some(Value::Bool(false)) => return Err(Rejection::MarkedInvalid(fields.valid.clone())),
        Some(other) => {
            return Err(Rejection::ValidNotBoolean { pointer: fields.valid.clone(), found: kind(other) });
        }
    }

    let agent_name = match answer.pointer(&fields.agent) {
        Some(Value::String(name)) => Some(name.clone()),
        _ => None,
    };
    // The agent name is shown in errors and status; one that carries the token (a field pointer
    // aimed at the wrong place, say) must go no further.
    if let (Some(name), Some(token)) = (&agent_name, answer.pointer(&fields.token).and_then(Value::as_str))
        && !token.is_empty()
        && name.contains(token)
    {
        return Err(Rejection::AgentHoldsToken(fields.agent.clone()));
    }
    if let Some(expected) = agent {
        match &agent_name {
            None => {
                return Err(Rejection::AgentMissing {
                    pointer: fields.agent.clone(),
                    expected: expected.into(),
                });
            }
            Some(found) if found != expected => {
                return Err(Rejection::WrongAgent { found: found.clone(), expected: expected.into() });
            }
            Some(_) => {}
        }
    }

    let expires_at = match fields.expiry() {
        ExpiryField::None => {
            let token = answer.pointer(&fields.token).and_then(Value::as_str).unwrap_or_default();
            own_expiry(token, default_lifetime, received_at, "the answer")?
        }
        field => expiry(&answer, field, received_at)?,
    };
    check_expiry(expires_at, received_at, rules)?;

    // Taken out of the tree rather than copied, so the only copy is the one `Token` zeroes.
    let secret = match answer.pointer_mut(&fields.token).map(Value::take) {
        None => return Err(Rejection::TokenMissing(fields.token.clone())),
        Some(Value::String(s)) => s,
        Some(other) => {
            return Err(Rejection::TokenNotString { pointer: fields.token.clone(), found: kind(&other) });
        }
    };
    let token = Token::new(secret);
    check_token_text(token.expose())?;
    Ok(Candidate { token, agent_name, expires_at })
}

/// Rules 3 and 5 for an OAuth 2.0 access token (DESIGN §13, §16): its `expires_in`, counted
/// from `received_at`, else its own `exp` when it is a JWT, else `default_lifetime`.
pub fn check_issued(
    mut access_token: zeroize::Zeroizing<String>,
    expires_in: Option<Duration>,
    default_lifetime: Option<Duration>,
    received_at: SystemTime,
    rules: &ValidateConfig,
) -> Result<Candidate, Rejection> {
    let expires_at = match expires_in.and_then(|d| received_at.checked_add(d)) {
        Some(at) => at,
        None => own_expiry(&access_token, default_lifetime, received_at, "the answer's expires_in")?,
    };
    check_expiry(expires_at, received_at, rules)?;
    // Moved out, not copied: the only copy is the one `Token` zeroes.
    let token = Token::new(std::mem::take(&mut *access_token));
    check_token_text(token.expose())?;
    Ok(Candidate { token, agent_name: None, expires_at })
}

/// Rules 3 and 5 for a text answer (`format = "text"`, DESIGN §16): the body is the token, one
/// trailing line break trimmed; its expiry its own `exp` when it is a JWT, else
/// `default_lifetime`.
pub fn check_text(
    mut body: zeroize::Zeroizing<Vec<u8>>,
    received_at: SystemTime,
    default_lifetime: Option<Duration>,
    rules: &ValidateConfig,
) -> Result<Candidate, Rejection> {
    for ending in [&b"\r\n"[..], b"\n"] {
        if body.ends_with(ending) {
            let kept = body.len() - ending.len();
            body.truncate(kept);
            break;
        }
    }
    let text = std::str::from_utf8(&body).map_err(|e| Rejection::NotText(e.to_string()))?;
    check_token_text(text)?;
    let expires_at = own_expiry(text, default_lifetime, received_at, "a text answer")?;
    check_expiry(expires_at, received_at, rules)?;
    // Copied once into the `Token`, which zeroes it; the body is zeroed on drop.
    Ok(Candidate { token: Token::new(text.to_owned()), agent_name: None, expires_at })
}

/// The expiry of a token whose answer gives none: its own `exp` when it is a JWT (read, never
/// verified: it only schedules), else `default_lifetime` from `received_at`.
fn own_expiry(
    token: &str,
    default_lifetime: Option<Duration>,
    received_at: SystemTime,
    what: &'static str,
) -> Result<SystemTime, Rejection> {
    jwt_exp(token)
        .or_else(|| default_lifetime.and_then(|d| received_at.checked_add(d)))
        .ok_or(Rejection::ExpiryUnknown(what))
}

/// A JWT's `exp` (RFC 7519 §4.1.4): three base64url parts, the middle one a JSON object with a
/// numeric `exp`, in seconds since the epoch.
pub(crate) fn jwt_exp(token: &str) -> Option<SystemTime> {
    use base64::Engine;
    let mut parts = token.split('.');
    let (_, claims, _) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(claims.trim_end_matches('=')).ok()?;
    let claims: Value = serde_json::from_slice(&json).ok()?;
    let exp = claims.as_object()?.get("exp")?.as_f64().filter(|exp| *exp > 0.0)?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::try_from_secs_f64(exp).ok()?)
}

/// Rule 3: 1..=4096 bytes of visible ASCII.
pub fn check_token_text(token: &str) -> Result<(), Rejection> {
    if token.is_empty() {
        return Err(Rejection::TokenEmpty);
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(Rejection::TokenTooLong(token.len()));
    }
    if let Some((at, byte)) = token.bytes().enumerate().find(|(_, b)| !(0x21..=0x7e).contains(b)) {
        let what = match byte {
            b' ' => "a space",
            0x00..=0x1f | 0x7f => "a control character",
            _ => "a non-ASCII byte",
        };
        return Err(Rejection::TokenBadByte { what, at });
    }
    Ok(())
}

/// The expiry the answer gives at `field` (`ExpiryField::None` is the caller's).
fn expiry(answer: &Value, field: ExpiryField<'_>, received_at: SystemTime) -> Result<SystemTime, Rejection> {
    match field {
        // An RFC 3339 time, or seconds since the epoch (Azure's `expires_on`, as a number or a
        // string of digits).
        ExpiryField::At(pointer) => match answer.pointer(pointer) {
            None | Some(Value::Null) => Err(Rejection::ExpiryMissing(pointer.into())),
            Some(Value::String(text)) => clock::parse_rfc3339(text)
                .or_else(|| {
                    seconds(&Value::String(text.clone())).and_then(|d| SystemTime::UNIX_EPOCH.checked_add(d))
                })
                .ok_or_else(|| Rejection::ExpiryNotRfc3339(pointer.into())),
            Some(number @ Value::Number(_)) => seconds(number)
                .and_then(|d| SystemTime::UNIX_EPOCH.checked_add(d))
                .ok_or_else(|| Rejection::ExpiryNotRfc3339(pointer.into())),
            Some(_) => Err(Rejection::ExpiryNotRfc3339(pointer.into())),
        },
        ExpiryField::None => unreachable!("the token's own expiry is found by the caller"),
        ExpiryField::In(pointer) => match answer.pointer(pointer) {
            None | Some(Value::Null) => Err(Rejection::ExpiryMissing(pointer.into())),
            Some(value) => seconds(value)
                .and_then(|d| received_at.checked_add(d))
                .ok_or_else(|| Rejection::ExpiryNotSeconds(pointer.into())),
        },
    }
}

/// A number of seconds as the world writes `expires_in`: a JSON number (RFC 6749 §5.1), or a
/// string of decimal digits, as some large identity providers send it. Anything ambiguous
/// (negative, a fraction or an exponent in a string, a unit, spaces) is `None`.
pub(crate) fn seconds(value: &Value) -> Option<Duration> {
    match value {
        Value::Number(n) => n.as_f64().and_then(|secs| Duration::try_from_secs_f64(secs).ok()),
        Value::String(text) if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) => {
            text.parse().ok().map(Duration::from_secs)
        }
        _ => None,
    }
}

/// Rule 5: more than `min_remaining` ahead, at most `max_lifetime` ahead.
fn check_expiry(expires_at: SystemTime, now: SystemTime, rules: &ValidateConfig) -> Result<(), Rejection> {
    let Ok(ahead) = expires_at.duration_since(now) else {
        return Err(Rejection::Expired);
    };
    if ahead.is_zero() {
        return Err(Rejection::Expired);
    }
    if ahead <= rules.min_remaining {
        return Err(Rejection::ExpiresTooSoon {
            remaining: duration_display(Duration::from_secs(ahead.as_secs())),
            min: duration_display(rules.min_remaining),
        });
    }
    if ahead > rules.max_lifetime {
        return Err(Rejection::ExpiresTooFar {
            ahead: duration_display(Duration::from_secs(ahead.as_secs())),
            max: duration_display(rules.max_lifetime),
        });
    }
    Ok(())
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests;
