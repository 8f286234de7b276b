//! Finding where in the file a problem is: the line of a key, and the key at a position.
//!
//! serde reports a byte span; checks after serde know the dotted key. Both are mapped onto the
//! document through toml's spanned parse tree, so messages carry both key and line.

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::Problem;

/// A problem from serde's pass, with the key found from the error's span.
pub(super) fn serde_problem(text: &str, error: &toml::de::Error) -> Problem {
    let span = error.span();
    let key = span.as_ref().and_then(|span| {
        let root = DeTable::parse(text).ok()?;
        let mut path = Vec::new();
        key_at(root.get_ref(), span.start, &mut path);
        (!path.is_empty()).then(|| path.join(".").replace(".[", "["))
    });
    Problem {
        key,
        line: span.map(|s| line_of(text, s.start)),
        message: error.message().trim_end().to_owned(),
    }
}

/// Adds the line of each problem's key.
pub(super) fn lines_for(text: &str, mut problems: Vec<Problem>) -> Vec<Problem> {
    let Ok(root) = DeTable::parse(text) else {
        return problems;
    };
    for p in &mut problems {
        if let Some(key) = &p.key {
            p.line = span_of(root.get_ref(), key).map(|s| line_of(text, s.start));
        }
    }
    problems
}

/// The line where `key` (dotted, as in [`Problem::key`]) is, if the file has it.
pub(super) fn line_of_key(text: &str, key: &str) -> Option<usize> {
    let root = DeTable::parse(text).ok()?;
    span_of(root.get_ref(), key).map(|s| line_of(text, s.start))
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())].iter().filter(|&&b| b == b'\n').count() + 1
}

/// Walks down to the innermost key whose key or value contains `offset`. Children are searched
/// before the parent's own span, since a `[table]` value spans only its header.
fn key_at(table: &DeTable<'_>, offset: usize, path: &mut Vec<String>) -> bool {
    for (key, value) in table.iter() {
        path.push(key.get_ref().to_string());
        let own = key.span().start.min(value.span().start)..key.span().end.max(value.span().end);
        if descend(value, offset, path) || contains(&own, offset) {
            return true;
        }
        path.pop();
    }
    false
}

fn descend(value: &Spanned<DeValue<'_>>, offset: usize, path: &mut Vec<String>) -> bool {
    match value.get_ref() {
        DeValue::Table(table) => key_at(table, offset, path),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                path.push(format!("[{i}]"));
                if descend(item, offset, path) || contains(&item.span(), offset) {
                    return true;
                }
                path.pop();
            }
            false
        }
        _ => false,
    }
}

fn contains(span: &Range<usize>, offset: usize) -> bool {
    span.start <= offset && offset < span.end.max(span.start + 1)
}

/// The span of a dotted key such as `refresh.min_interval` or `sink[2].mode`. A key that is
/// absent (a default) falls back to its closest present parent.
fn span_of(table: &DeTable<'_>, key: &str) -> Option<Range<usize>> {
    let mut best = None;
    let mut current: Option<&Spanned<DeValue<'_>>> = None;
    for part in key.split('.') {
        let (name, index) = match part.split_once('[') {
            Some((name, rest)) => (name, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        let table = match current.map(|v| v.get_ref()) {
            None => table,
            Some(DeValue::Table(t)) => t,
            Some(_) => break,
        };
        let Some((k, v)) = table.iter().find(|(k, _)| k.get_ref().as_ref() == name) else {
            break;
        };
        best = Some(k.span());
        current = Some(v);
        if let Some(i) = index {
            match v.get_ref() {
                DeValue::Array(items) if i < items.len() => {
                    best = Some(items[i].span());
                    current = Some(&items[i]);
                }
                _ => break,
            }
        }
    }
    best
}
