//! Whatever the config file holds, loading it gives a config or errors that name a place: no panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use mcp_token_sync::config::{Config, Environment};

fuzz_target!(|text: &str| {
    let env = Environment { credentials_directory: Some("/run/credentials/fuzz".into()) };
    if let Err(error) = Config::parse(text, Path::new("fuzz.toml"), &env) {
        assert!(!error.problems.is_empty());
        let _ = error.to_string();
    }
});
