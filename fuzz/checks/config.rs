//! Whatever the config file holds, loading it gives a config or errors that name a place: no
//! panic. Shared by the fuzz target and the corpus replay in `cargo test`.

use std::path::Path;

use mcp_token_sync::config::{Config, Environment};

/// Panics if loading `text` breaks a property.
pub fn check(text: &str) {
    let env =
        Environment { credentials_directory: Some("/run/credentials/fuzz".into()), ..Environment::default() };
    if let Err(error) = Config::parse(text, Path::new("fuzz.toml"), &env) {
        assert!(!error.problems.is_empty());
        let _ = error.to_string();
    }
}
