//! Whether the user running `check` can write where the config says the daemon writes
//! (`state_dir`, and the directory of every file, env file and socket). Run as the daemon's
//! user (yourself, for the user service), `check` names each place `run` would fail to write,
//! with its key and line, instead of leaving it to each sink's first write.
//!
//! A directory that does not exist yet is fine when it can be made: the daemon makes
//! `state_dir`, and systemd makes `RuntimeDirectory=` before it starts the daemon.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::unistd::AccessFlags;

use super::{Config, ConfigError, Problem, locate};

/// The places in `config` (read from `text` in `file`) this process's user cannot write.
pub fn unwritable(config: &Config, text: &str, file: &Path) -> Result<(), ConfigError> {
    let mut places = vec![("daemon.state_dir".to_owned(), config.daemon.state_dir.as_path())];
    let daemon_wide = config.sinks.iter().map(|sink| (String::new(), sink));
    let tokens = config.tokens.iter().flat_map(|t| t.sinks.iter().map(|sink| (config.key_prefix(t), sink)));
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (prefix, sink) in daemon_wide.chain(tokens) {
        let i = index.entry(prefix.clone()).or_default();
        if let Some(path) = sink.path().and_then(Path::parent) {
            let key = if matches!(sink, super::SinkConfig::Proxy(_)) { "listen" } else { "path" };
            places.push((format!("{prefix}sink[{i}].{key}"), path));
        }
        *i += 1;
    }
    let uid = nix::unistd::geteuid();
    let problems: Vec<Problem> = places
        .into_iter()
        .filter_map(|(key, dir)| {
            let why = cannot_write(dir)?;
            Some(Problem {
                key: Some(key),
                line: None,
                message: format!("uid {uid} (running check) cannot write there: {why}"),
            })
        })
        .collect();
    if problems.is_empty() {
        return Ok(());
    }
    Err(ConfigError { file: file.to_owned(), problems: locate::lines_for(text, problems) })
}

/// Why `dir` cannot be written (or made) by this process's user, if it cannot.
fn cannot_write(dir: &Path) -> Option<String> {
    let existing = dir.ancestors().find(|a| a.exists())?;
    if nix::unistd::access(existing, AccessFlags::W_OK | AccessFlags::X_OK).is_ok() {
        return None;
    }
    let owner = std::fs::metadata(existing)
        .map(|m| format!(" (owned by uid {}, mode {:04o})", m.uid(), m.mode() & 0o7777))
        .unwrap_or_default();
    Some(if existing == dir {
        format!("{} is not writable{owner}", dir.display())
    } else {
        format!(
            "{} is missing and cannot be made: {} is not writable{owner}",
            dir.display(),
            existing.display()
        )
    })
}
