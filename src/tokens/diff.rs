//! What a reload changes, token by token (DESIGN §15), decided from the old and the new config
//! alone, as vector's `ConfigDiff` decides for its components: a token whose tables are the same
//! is left running untouched, a changed one is reloaded alone, an added one starts and a removed
//! one stops.

use crate::config::TokenConfig;

/// Each token's fate on a reload, by name.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Diff {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    pub unchanged: Vec<String>,
}

impl Diff {
    /// For the log: `calendar changed, reports added; 2 unchanged`, or `nothing changed`.
    pub(crate) fn summary(&self) -> String {
        let said: Vec<String> =
            [(&self.changed, "changed"), (&self.added, "added"), (&self.removed, "removed")]
                .into_iter()
                .filter(|(names, _)| !names.is_empty())
                .map(|(names, what)| format!("{} {what}", names.join(", ")))
                .collect();
        match (said.is_empty(), self.unchanged.len()) {
            (true, _) => "nothing changed".into(),
            (false, 0) => said.join(", "),
            (false, n) => format!("{}; {n} unchanged", said.join(", ")),
        }
    }
}

pub(crate) fn diff(old: &[TokenConfig], new: &[TokenConfig]) -> Diff {
    let mut diff = Diff::default();
    for token in new {
        match old.iter().find(|o| o.name == token.name) {
            None => diff.added.push(token.name.clone()),
            Some(before) if before == token => diff.unchanged.push(token.name.clone()),
            Some(_) => diff.changed.push(token.name.clone()),
        }
    }
    diff.removed =
        old.iter().filter(|o| !new.iter().any(|n| n.name == o.name)).map(|o| o.name.clone()).collect();
    diff
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::{Config, Environment};

    fn tokens(text: &str) -> Vec<TokenConfig> {
        Config::parse(text, Path::new("t.toml"), &Environment::default()).unwrap().tokens
    }

    #[test]
    fn tokens_are_added_removed_changed_or_left_alone_by_name() {
        let old = tokens(
            "[tokens.a.source]\nurl = \"https://a.example/t\"\n[tokens.b.source]\nurl = \"https://b.example/t\"\n\
             [tokens.c.source]\nurl = \"https://c.example/t\"\n",
        );
        let new = tokens(
            "[refresh]\nmin_interval = \"1s\"\n[tokens.a.source]\nurl = \"https://a.example/t\"\n\
             [tokens.a.refresh]\nmin_interval = \"5s\"\n[tokens.b.source]\nurl = \"https://b.example/t\"\n\
             [[tokens.b.sink]]\ntype = \"file\"\npath = \"/run/b\"\n[tokens.d.source]\nurl = \"https://d.example/t\"\n",
        );
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            diff(&old, &new),
            Diff {
                added: names(&["d"]),
                removed: names(&["c"]),
                // a's own min_interval is what it was before (the default), b has a new sink
                changed: names(&["b"]),
                unchanged: names(&["a"]),
            }
        );
        // A top-level default a token takes changes the token.
        let faster = tokens(
            "[refresh]\nmin_interval = \"1s\"\n[tokens.a.source]\nurl = \"https://a.example/t\"\n\
             [tokens.b.source]\nurl = \"https://b.example/t\"\n[tokens.c.source]\nurl = \"https://c.example/t\"\n",
        );
        assert_eq!(diff(&old, &faster).changed, names(&["a", "b", "c"]));
    }
}
