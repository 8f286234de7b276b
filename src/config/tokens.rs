//! The two shapes of a config file (DESIGN §15), made one [`Config`]: a top-level `[source]` is
//! the one token `default`, its top-level `[[sink]]`s its own, exactly as before several tokens
//! existed; `[tokens.NAME]` tables are one token each, over the top-level `[refresh]` and
//! `[validate]` key by key, with daemon-wide `[[sink]]`s that may only be sockets. Mixing the
//! shapes, a bad name, and a daemon-wide sink of another type are named by key and line.
//!
//! `check` prints a config in the shape it was written in ([`Config`]'s `Serialize`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize, Serializer};

use super::raw_sink::RawSink;
use super::schema::{RefreshOverrides, ValidateOverrides};
use super::{
    Config, DEFAULT_TOKEN, DaemonConfig, Problems, RawConfig, RefreshConfig, SinkConfig, SourceConfig,
    TokenConfig, ValidateConfig, locate,
};

/// A `[tokens.NAME]` table as serde reads it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawToken {
    source: SourceConfig,
    #[serde(default)]
    refresh: RefreshOverrides,
    #[serde(default)]
    validate: ValidateOverrides,
    #[serde(default)]
    allow_uids: Vec<u32>,
    #[serde(default)]
    allow_gids: Vec<u32>,
    #[serde(default)]
    sink: Vec<RawSink>,
}

/// The longest token name: a path segment, a metric label, a systemd-friendly word.
const NAME_MAX: usize = 63;

/// Whether `name` is 1 to 63 of `a-z 0-9 _ -`, starting with a letter or digit.
pub(super) fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    name.len() <= NAME_MAX
        && bytes.next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// The file's tables as one [`Config`]; what cannot be is recorded in `found`. State
/// directories are filled in by `check`, once `daemon.state_dir` is resolved.
pub(super) fn assemble(raw: RawConfig, text: &str, found: &mut Problems) -> Config {
    let RawConfig { source, refresh, validate, daemon, sink, tokens } = raw;
    let sinks = |raw: Vec<RawSink>, found: &mut Problems| -> Vec<SinkConfig> {
        raw.into_iter().enumerate().filter_map(|(i, raw)| raw.into_config(i, found)).collect()
    };
    match (source, tokens.is_empty()) {
        (Some(source), true) => {
            let sinks = sinks(sink, found);
            let token = TokenConfig {
                name: DEFAULT_TOKEN.into(),
                source,
                refresh,
                validate,
                allow_uids: Vec::new(),
                allow_gids: Vec::new(),
                sinks,
                state_dir: daemon.state_dir.clone(),
                shared_state_dir: daemon.state_dir.clone(),
            };
            Config { daemon, tokens: vec![token], sinks: Vec::new(), named: false }
        }
        (Some(_), false) => {
            let line =
                locate::line_of_key(text, "source").map(|l| format!(" (line {l})")).unwrap_or_default();
            found.add(
                "tokens",
                format!(
                    "a config has either a top-level [source]{line}, its one token, or [tokens.NAME] tables, \
                     not both: move that source into a [tokens.NAME.source] table (name it \"default\" to \
                     keep its state where it is)"
                ),
            );
            Config { daemon, tokens: Vec::new(), sinks: Vec::new(), named: true }
        }
        (None, true) => {
            found.add(
                "source",
                "is missing: give the token's [source] (or one [tokens.NAME] table per token, each with its \
                 own source)",
            );
            Config { daemon, tokens: Vec::new(), sinks: Vec::new(), named: false }
        }
        (None, false) => {
            let shared = sinks(sink, found);
            for (i, sink) in shared.iter().enumerate() {
                if !matches!(sink, SinkConfig::Socket(_)) {
                    found.add(
                        format!("sink[{i}].type"),
                        "a top-level sink serves every token, so only type = \"socket\" may be one here: put \
                         this sink in the [[tokens.NAME.sink]] of the token it is for",
                    );
                }
            }
            let tokens = tokens
                .into_iter()
                .filter_map(|(name, raw)| {
                    if !valid_name(&name) {
                        found.add(
                            format!("tokens.{name}"),
                            format!(
                                "{name:?} is not a token name: 1 to {NAME_MAX} of a-z, 0-9, _ and -, starting \
                                 with a letter or digit"
                            ),
                        );
                        return None;
                    }
                    let sinks = found.under(&format!("tokens.{name}."), |found| sinks(raw.sink, found));
                    Some(TokenConfig {
                        source: raw.source,
                        refresh: raw.refresh.over(&refresh),
                        validate: raw.validate.over(&validate),
                        allow_uids: raw.allow_uids,
                        allow_gids: raw.allow_gids,
                        sinks,
                        state_dir: daemon.state_dir.clone(),
                        shared_state_dir: daemon.state_dir.clone(),
                        name,
                    })
                })
                .collect();
            Config { daemon, tokens, sinks: shared, named: true }
        }
    }
}

/// The file's shape back, resolved: what `check` prints.
impl Serialize for Config {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Single<'a> {
            source: &'a SourceConfig,
            refresh: &'a RefreshConfig,
            validate: &'a ValidateConfig,
            daemon: &'a DaemonConfig,
            sink: &'a [SinkConfig],
        }
        #[derive(Serialize)]
        struct Named<'a> {
            #[serde(skip_serializing_if = "Vec::is_empty")]
            allow_uids: &'a Vec<u32>,
            #[serde(skip_serializing_if = "Vec::is_empty")]
            allow_gids: &'a Vec<u32>,
            source: &'a SourceConfig,
            refresh: &'a RefreshConfig,
            validate: &'a ValidateConfig,
            sink: &'a [SinkConfig],
        }
        #[derive(Serialize)]
        struct Several<'a> {
            daemon: &'a DaemonConfig,
            #[serde(skip_serializing_if = "<[SinkConfig]>::is_empty")]
            sink: &'a [SinkConfig],
            tokens: BTreeMap<&'a str, Named<'a>>,
        }
        match (self.named, self.tokens.as_slice()) {
            (false, [token]) => Single {
                source: &token.source,
                refresh: &token.refresh,
                validate: &token.validate,
                daemon: &self.daemon,
                sink: &token.sinks,
            }
            .serialize(s),
            _ => Several {
                daemon: &self.daemon,
                sink: &self.sinks,
                tokens: self
                    .tokens
                    .iter()
                    .map(|t| {
                        let named = Named {
                            allow_uids: &t.allow_uids,
                            allow_gids: &t.allow_gids,
                            source: &t.source,
                            refresh: &t.refresh,
                            validate: &t.validate,
                            sink: &t.sinks,
                        };
                        (t.name.as_str(), named)
                    })
                    .collect(),
            }
            .serialize(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use super::valid_name;
    use crate::config::{Config, ConfigError, Environment, SinkConfig};

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("t.toml"), &Environment::default())
    }

    /// The problems of a refused config, as (key, line, message).
    fn problems(text: &str) -> Vec<(String, Option<usize>, String)> {
        let error = parse(text).expect_err("the config should be refused");
        error.problems.into_iter().map(|p| (p.key.unwrap_or_default(), p.line, p.message)).collect()
    }

    const TWO: &str = "[daemon]\nstate_dir = \"/var/lib/x\"\n[refresh]\nmin_interval = \"2s\"\njitter = 0.2\n\n\
                       [tokens.calendar.source]\nurl = \"https://a.example/t\"\n\
                       [tokens.calendar.refresh]\nmin_interval = \"9s\"\n\
                       [[tokens.calendar.sink]]\ntype = \"file\"\npath = \"/run/x/calendar\"\n\n\
                       [tokens.default.source]\nurl = \"https://b.example/t\"\n";

    #[test]
    fn named_tokens_take_the_top_level_tables_key_by_key_and_a_state_dir_each() {
        let c = parse(TWO).unwrap();
        assert!(c.named);
        let names: Vec<&str> = c.tokens.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["calendar", "default"]);
        let calendar = c.token("calendar").unwrap();
        assert_eq!(calendar.refresh.min_interval, Duration::from_secs(9), "its own key wins");
        assert_eq!(calendar.refresh.jitter, 0.2, "the top-level key where it has none");
        assert_eq!(calendar.state_dir, PathBuf::from("/var/lib/x/tokens/calendar"));
        assert_eq!(
            c.token("default").unwrap().state_dir,
            PathBuf::from("/var/lib/x"),
            "default stays where it was"
        );
        assert_eq!(c.token("default").unwrap().refresh.min_interval, Duration::from_secs(2));
        assert!(matches!(calendar.sinks[0], SinkConfig::File(_)));
    }

    #[test]
    fn a_single_source_is_the_token_default_with_its_sinks() {
        let c =
            parse("[source]\nurl = \"https://a.example/t\"\n[[sink]]\ntype = \"file\"\npath = \"/run/t\"\n")
                .unwrap();
        assert!(!c.named && c.sinks.is_empty());
        assert_eq!((c.tokens.len(), c.tokens[0].name.as_str(), c.tokens[0].sinks.len()), (1, "default", 1));
        let printed = toml::to_string(&c).unwrap();
        assert!(
            printed.contains("[source]") && printed.contains("[[sink]]") && !printed.contains("tokens"),
            "{printed}"
        );
    }

    #[test]
    fn mixing_the_shapes_is_refused_naming_both_lines() {
        let text =
            "[source]\nurl = \"https://a.example/t\"\n\n[tokens.x.source]\nurl = \"https://b.example/t\"\n";
        let found = problems(text);
        assert_eq!(found.len(), 1, "{found:?}");
        let (key, line, message) = &found[0];
        assert_eq!((key.as_str(), *line), ("tokens", Some(4)));
        assert!(message.contains("[source] (line 1)") && message.contains("not both"), "{message}");
        let (key, _, message) = &problems("[daemon]\nwatch_config = false\n")[0];
        assert_eq!(key, "source");
        assert!(message.contains("[tokens.NAME]"), "{message}");
    }

    #[test]
    fn bad_names_other_top_level_sinks_and_shared_paths_are_refused_by_key_and_line() {
        let text = "[[sink]]\ntype = \"file\"\npath = \"/run/x/a\"\n\n\
                    [tokens.Calendar.source]\nurl = \"https://a.example/t\"\n\n\
                    [tokens.ok.source]\nurl = \"https://a.example/t\"\n\
                    [[tokens.ok.sink]]\ntype = \"file\"\npath = \"/run/x/a\"\n\
                    [[tokens.ok.sink]]\ntype = \"file\"\npath = \"/run/x/b\"\n\n\
                    [tokens.two.source]\nurl = \"https://a.example/t\"\n\
                    [[tokens.two.sink]]\ntype = \"proxy\"\nlisten = \"127.0.0.1:8787\"\nupstream = \"https://a.example\"\n\
                    [[tokens.two.sink]]\ntype = \"file\"\npath = \"/run/x/b\"\n\n\
                    [tokens.three.source]\nurl = \"https://a.example/t\"\n\
                    [[tokens.three.sink]]\ntype = \"proxy\"\nlisten = \"127.0.0.1:8787\"\nupstream = \"https://a.example\"\n";
        let found = problems(text);
        let by_key = |key: &str| {
            found.iter().find(|(k, _, _)| k == key).unwrap_or_else(|| panic!("no {key} in {found:?}"))
        };
        assert!(by_key("sink[0].type").2.contains("only type = \"socket\""));
        assert_eq!(by_key("sink[0].type").1, Some(2));
        assert!(by_key("tokens.Calendar").2.contains("not a token name"));
        assert!(by_key("tokens.ok.sink[0].path").2.contains("already the path of sink[0]"));
        assert!(by_key("tokens.two.sink[1].path").2.contains("already the path of tokens.ok.sink[1]"));
        // Tokens are checked by name: three's proxy took the address first.
        let listen = by_key("tokens.two.sink[0].listen");
        assert!(listen.2.contains("already where tokens.three.sink[0] listens"), "{}", listen.2);
        assert!(listen.1.is_some());
        assert_eq!(found.len(), 5, "{found:?}");
    }

    #[test]
    fn a_problem_in_a_tokens_tables_names_the_token() {
        let text = "[tokens.calendar.source]\nurl = \"http://b.example/t\"\n[tokens.calendar.refresh]\njitter = 2.0\n";
        let keys: Vec<String> = problems(text).into_iter().map(|(k, _, _)| k).collect();
        assert_eq!(keys, ["tokens.calendar.source.url", "tokens.calendar.refresh.jitter"]);
        let found = problems(
            "[tokens.calendar.source]\nurl = \"https://b.example/t\"\n[tokens.calendar.refresh]\nmin_interval = \"soon\"\n",
        );
        assert_eq!(found[0].1, Some(4), "a malformed override is found on its own line: {found:?}");
    }

    #[test]
    fn token_names_are_short_lowercase_words() {
        for good in ["calendar", "linear-prod", "gh_app", "0day", "a"] {
            assert!(valid_name(good), "{good}");
        }
        for bad in ["", "Calendar", "-x", "_x", "a.b", "a/b", "a b", "é", &"x".repeat(64)] {
            assert!(!valid_name(bad), "{bad:?}");
        }
        assert!(valid_name(&"x".repeat(63)));
    }
}
