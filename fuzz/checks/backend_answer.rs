//! Whatever the backend sends, validation answers with a candidate or a rejection: no panic, and
//! a rejection never echoes the token. Shared by the fuzz target and the corpus replay in
//! `cargo test` (tests/fuzz_corpus.rs).

use std::time::{Duration, SystemTime};

use mcp_token_sync::config::{FieldsConfig, ValidateConfig};
use mcp_token_sync::validate::{Rejection, check_answer};

fn validate(body: &[u8]) -> Result<(), Rejection> {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let rules = ValidateConfig::default();
    check_answer(body, now, &FieldsConfig::default(), Some("google-calender-mcp"), None, &rules).map(drop)
}

/// Panics if `body` breaks a property.
pub fn check(body: &[u8]) {
    let Err(rejection) = validate(body) else { return };
    let Ok(text) = std::str::from_utf8(body) else { return };
    let token = match serde_json::from_str::<serde_json::Value>(text) {
        Ok(answer) => answer.get("token").and_then(|t| t.as_str()).map(str::to_owned),
        Err(_) => None,
    };
    let Some(token) = token.filter(|t| t.len() >= 8 && text.contains(t.as_str())) else { return };
    if !rejection.to_string().contains(&token) {
        return;
    }
    // The token may just coincide with our own wording. Swap it everywhere for a marker of the
    // same length: if the marker comes back, the message echoes what the backend sent.
    let marker: String = "Qz9".chars().cycle().take(token.len()).collect();
    if let Err(again) = validate(text.replace(&token, &marker).as_bytes()) {
        assert!(!again.to_string().contains(&marker), "the rejection echoes the token: {again}");
    }
}
