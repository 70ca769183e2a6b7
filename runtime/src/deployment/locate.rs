//! Where fields are in a deployment file: the byte span of every key and value, by dotted
//! path, and the conversion of byte offsets to 1-based lines and columns. Every
//! [`DeploymentError`] is built here, so that each one names the file, line and field.

use std::ops::Range;

use toml::de::{DeTable, DeValue};

use super::DeploymentError;

/// One key or array element of the file.
#[derive(Debug)]
struct Entry {
    /// Dotted path, e.g. `rsm[1].replicas[0].address`.
    path: String,
    /// Span of the key (none for array elements).
    key: Option<Range<usize>>,
    /// Span of the value; for tables opened by a header (`[a.b]`, `[[rsm]]`), the header.
    value: Range<usize>,
}

/// The text of a deployment file and the spans of its keys and values.
#[derive(Debug)]
pub(super) struct Locator<'a> {
    source: &'a str,
    text: &'a str,
    entries: Vec<Entry>,
}

impl<'a> Locator<'a> {
    /// Indexes `table`, parsed from `text` (possibly with errors, after recovery).
    pub(super) fn new(source: &'a str, text: &'a str, table: &DeTable<'_>) -> Self {
        let mut entries = Vec::new();
        walk_table(table, "", &mut entries);
        Self { source, text, entries }
    }

    /// The file name errors carry.
    pub(super) fn source(&self) -> &'a str {
        self.source
    }

    /// The error `reason` about `field`, located at the field's value, or, when the field is
    /// not in the file (a default), at its closest enclosing table or array element.
    pub(super) fn at(&self, field: &str, reason: impl Into<String>) -> DeploymentError {
        let mut path = field;
        loop {
            if let Some(e) = self.entries.iter().find(|e| e.path == path) {
                return self.at_span(field, e.value.clone(), reason);
            }
            match parent(path) {
                Some(p) => path = p,
                None => return DeploymentError::unlocated(self.source, field, reason),
            }
        }
    }

    /// The error `reason` about `field`, located at the key of `field` rather than its value
    /// (for errors about the key itself, e.g. two keys that exclude each other).
    pub(super) fn at_key(&self, field: &str, reason: impl Into<String>) -> DeploymentError {
        match self.entries.iter().find(|e| e.path == field).and_then(|e| e.key.clone()) {
            Some(span) => self.at_span(field, span, reason),
            None => self.at(field, reason),
        }
    }

    /// The error `reason` about `field`, located at byte `span`.
    pub(super) fn at_span(&self, field: &str, span: Range<usize>, reason: impl Into<String>) -> DeploymentError {
        let (line, column) = self.line_column(span.start);
        DeploymentError {
            file: self.source.to_owned(),
            line: Some(line),
            column: Some(column),
            field: field.to_owned(),
            reason: reason.into(),
        }
    }

    /// The dotted path of the innermost key or value whose span contains `span` (the key
    /// itself for errors about a key, the element for errors about an array element).
    pub(super) fn path_at(&self, span: &Range<usize>) -> Option<&str> {
        let contains = |r: &Range<usize>| r.start <= span.start && span.end <= r.end && !r.is_empty();
        self.entries
            .iter()
            .flat_map(|e| e.key.iter().chain(std::iter::once(&e.value)).filter(|r| contains(r)).map(move |r| (r, e)))
            // Smallest enclosing span first; on a tie (a `[[rsm]]` header is the span of both
            // the array and its element) the deeper path.
            .min_by_key(|(r, e)| (r.len(), std::cmp::Reverse(e.path.len())))
            .map(|(_, e)| e.path.as_str())
    }

    /// The field a syntax error at `span` is about. The table recovered from a broken file
    /// has unreliable value spans, so only keys count: the key containing `span`, else the
    /// last key before it on its line, else (for a repeated key) the earlier key of that name.
    pub(super) fn path_near_key(&self, span: &Range<usize>) -> Option<&str> {
        let start = span.start.min(self.text.len());
        let line_start = self.text[..start].rfind('\n').map_or(0, |i| i + 1);
        let keys = || self.entries.iter().filter_map(|e| e.key.as_ref().map(|k| (k, e)));
        let within = keys().find(|(k, _)| k.start <= start && span.end <= k.end && !k.is_empty());
        let on_line = || keys().filter(|(k, _)| (line_start..start).contains(&k.start)).max_by_key(|(k, _)| k.start);
        let named = || {
            let name = self.text.get(span.clone())?;
            keys()
                .filter(|(k, _)| k.start < start && self.text.get((*k).clone()) == Some(name))
                .max_by_key(|(k, _)| k.start)
        };
        within.or_else(on_line).or_else(named).map(|(_, e)| e.path.as_str())
    }

    /// 1-based line and column (in characters) of byte `offset`.
    pub(super) fn line_column(&self, offset: usize) -> (usize, usize) {
        line_column(self.text, offset)
    }
}

/// 1-based line and column (in characters) of byte `offset` of `text`; offsets past the end
/// or inside a character are moved back to a character boundary.
pub(super) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (before.matches('\n').count() + 1, before[line_start..].chars().count() + 1)
}

/// The path of the enclosing table or array of `path` (`a.b[2].c` → `a.b[2]` → `a.b` → `a`),
/// `None` at the top.
fn parent(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    Some(path.rfind(['.', '[']).map_or("", |i| &path[..i]))
}

fn child(parent: &str, key: &str) -> String {
    if parent.is_empty() { key.to_owned() } else { format!("{parent}.{key}") }
}

fn walk_table(table: &DeTable<'_>, prefix: &str, out: &mut Vec<Entry>) {
    for (key, value) in table.iter() {
        let path = child(prefix, key.get_ref());
        out.push(Entry { path: path.clone(), key: Some(key.span()), value: value.span() });
        walk_value(value.get_ref(), &path, out);
    }
}

fn walk_value(value: &DeValue<'_>, path: &str, out: &mut Vec<Entry>) {
    match value {
        DeValue::Table(t) => walk_table(t, path, out),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let path = format!("{path}[{i}]");
                out.push(Entry { path: path.clone(), key: None, value: item.span() });
                walk_value(item.get_ref(), &path, out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "a = 1\n[[rsm]]\nname = \"é\"\nreplicas = [ { id = 0 }, { id = 1, x = 2 } ]\n[t.u]\nv = true\n";

    fn with<R>(f: impl FnOnce(&Locator<'_>) -> R) -> R {
        let table = DeTable::parse(TEXT).unwrap();
        f(&Locator::new("f.toml", TEXT, table.get_ref()))
    }

    #[test]
    fn lines_and_columns_are_one_based_and_count_characters() {
        assert_eq!(line_column("", 0), (1, 1));
        assert_eq!(line_column("ab\ncd", 4), (2, 2));
        assert_eq!(line_column("é = 1", 3), (1, 3)); // byte 3 follows "é " (3 bytes, 2 characters)
        assert_eq!(line_column("é", 1), (1, 1)); // inside 'é': moved back
        assert_eq!(line_column("a\n", 99), (2, 1));
    }

    #[test]
    fn fields_are_located_at_their_value_or_closest_ancestor() {
        with(|l| {
            let e = l.at("rsm[0].replicas[1].x", "bad");
            assert_eq!((e.line, e.column), (Some(4), Some(40))); // the value `2`
            // Not in the file: the replica's inline table.
            let e = l.at("rsm[0].replicas[1].stake", "bad");
            assert_eq!((e.line, e.column), (Some(4), Some(26)));
            // A table opened by a header: the header.
            assert_eq!(l.at("t.u.w", "bad").line, Some(5));
            assert_eq!(l.at("rsm[0].f", "bad").line, Some(2));
            assert_eq!(l.at("nothing.here", "bad").line, None);
            assert_eq!(l.at_key("t.u.v", "bad").column, Some(1));
        });
    }

    #[test]
    fn spans_map_back_to_paths() {
        with(|l| {
            let at = |needle: &str| {
                let start = TEXT.find(needle).unwrap();
                l.path_at(&(start..start + needle.len())).map(str::to_owned)
            };
            assert_eq!(at("x").as_deref(), Some("rsm[0].replicas[1].x"));
            assert_eq!(at("{ id = 0 }").as_deref(), Some("rsm[0].replicas[0]"));
            assert_eq!(at("[[rsm]]").as_deref(), Some("rsm[0]"));
            assert_eq!(at("true").as_deref(), Some("t.u.v"));
            assert_eq!(at("[t.u]").as_deref(), Some("t.u"));
            // The `=` of `a = 1` is in no key or value; the key before it on its line is `a`.
            assert_eq!(l.path_at(&(2..3)), None);
            assert_eq!(l.path_near_key(&(2..3)), Some("a"));
            let v = TEXT.find("v = true").unwrap();
            assert_eq!(l.path_near_key(&(v..v + 1)), Some("t.u.v"));
            assert_eq!(l.path_near_key(&(v - 1..v - 1)), Some("t.u")); // end of the header line
            assert_eq!(l.path_near_key(&(TEXT.len()..TEXT.len())), None);
        });
    }

    #[test]
    fn parents() {
        assert_eq!(parent("a.b[2].c"), Some("a.b[2]"));
        assert_eq!(parent("a.b[2]"), Some("a.b"));
        assert_eq!(parent("a"), Some(""));
        assert_eq!(parent(""), None);
    }
}
