//! YAML parsing with positions: every syntax or shape error becomes a diagnostic at `file:line:col`.

use std::collections::HashMap;

use saphyr_parser::Event;
use serde::de::DeserializeOwned;

use crate::diagnostics::{Diagnostic, Position};

/// Parses `text` (the contents of `file`) into `T`, reporting errors with their location.
pub fn parse<T: DeserializeOwned>(file: &str, text: &str) -> Result<T, Diagnostic> {
    serde_yaml::from_str(text).map_err(|error| {
        let diagnostic = yaml_diagnostic(file, &error);
        match error
            .location()
            .and_then(|at| syntax_help(text, &error.to_string(), at.line()))
        {
            Some(help) => diagnostic.with_help(help),
            None => diagnostic,
        }
    })
}

/// serde's names of Rust types in a message, in words (`expected usize` → `expected a whole
/// number`).
pub(crate) fn plain_types(message: &str) -> String {
    const WORDS: [(&str, &str); 10] = [
        ("expected usize", "expected a whole number"),
        ("expected u64", "expected a whole number"),
        ("expected u32", "expected a whole number"),
        ("expected u16", "expected a whole number"),
        ("expected u8", "expected a whole number"),
        ("expected i64", "expected a whole number"),
        ("expected i32", "expected a whole number"),
        ("expected f64", "expected a number"),
        ("expected f32", "expected a number"),
        ("expected a boolean", "expected true or false"),
    ];
    WORDS
        .iter()
        .fold(message.to_string(), |text, (from, to)| text.replace(from, to))
}

/// What most likely caused a YAML syntax error reported at `line`: a tab in the indentation, or
/// a quote opened and never closed (the parser then reports the end of the file).
fn syntax_help(text: &str, message: &str, line: usize) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let indented_with_tab = |number: usize| {
        lines
            .get(number.checked_sub(1)?)
            .filter(|l| l.chars().take_while(|c| c.is_whitespace()).any(|c| c == '\t'))
            .map(|_| number)
    };
    if let Some(number) = indented_with_tab(line).or_else(|| indented_with_tab(line + 1)) {
        return Some(format!(
            "line {number} is indented with a tab; YAML indents with spaces only"
        ));
    }
    if !message.contains("end of stream") {
        return None;
    }
    // The first line with a quoted value that does not end on it (quotes that only appear inside
    // a plain value, like an apostrophe, open nothing).
    let unclosed = lines.iter().enumerate().find_map(|(index, line)| {
        let mut open: Option<char> = None;
        let mut before = ' ';
        let mut chars = line.trim_start().chars().peekable();
        while let Some(c) = chars.next() {
            match open {
                None if (c == '"' || c == '\'') && matches!(before, ' ' | ':' | '-' | '[' | ',' | '{') => {
                    open = Some(c)
                }
                None if c == '#' && before == ' ' => break,
                None => {}
                Some('"') if c == '\\' => {
                    chars.next();
                }
                Some('\'') if c == '\'' && chars.peek() == Some(&'\'') => {
                    chars.next();
                }
                Some(quote) if c == quote => open = None,
                Some(_) => {}
            }
            if !c.is_whitespace() || open.is_none() {
                before = if c.is_whitespace() { ' ' } else { c };
            }
        }
        open.map(|quote| (index + 1, quote))
    });
    Some(match unclosed {
        Some((number, quote)) => format!("the {quote} opened on line {number} is never closed"),
        None => "the file ended inside a quoted value, a [ ] list or a { } mapping: check for one left open".into(),
    })
}

/// A diagnostic for a serde_yaml error, located when serde_yaml knows where it happened.
pub fn yaml_diagnostic(file: &str, error: &serde_yaml::Error) -> Diagnostic {
    // serde_yaml appends " at line L column C" to its message; the location is reported separately.
    let message = error.to_string();
    let message = match message.find(" at line ") {
        Some(index) => message[..index].to_string(),
        None => message,
    };
    // A document that parses but has the wrong shape (an unknown key, a missing one, a value of
    // the wrong type) is not invalid YAML: serde's message says what is wrong on its own.
    const SHAPE: [&str; 6] = [
        "unknown field",
        "missing field",
        "unknown variant",
        "invalid type",
        "invalid value",
        "duplicate field",
    ];
    let message = if SHAPE.iter().any(|shape| message.contains(shape)) {
        plain_types(&message)
    } else {
        format!("invalid YAML: {message}")
    };
    let diagnostic = Diagnostic::new(message).in_file(file);
    match error.location() {
        Some(location) => diagnostic.at(location.line(), Some(location.column())),
        None => diagnostic,
    }
}

/// Where each node of a YAML document starts, by path, read from the parser's own events.
///
/// A path names a node from the document root: mapping keys and sequence indexes joined by `/`,
/// e.g. `models/3/columns/0/tests/1`. A mapping entry is located at its key, a sequence item at
/// its first character. Building the index is one pass over the document, so locating any number
/// of nodes costs as much as parsing the file once.
#[derive(Debug, Clone, Default)]
pub struct Positions {
    /// Mapping entries (at their key) and sequence items.
    starts: HashMap<String, Position>,
    /// Mapping values, where they differ from their key (`key: value` on one line shares a line).
    values: HashMap<String, Position>,
}

enum Frame {
    Sequence { path: String, next: usize },
    Mapping { path: String, key: Option<String> },
}

impl Positions {
    /// Indexes `text`. A syntax error ends the index where it happens; what came before is kept
    /// (the error itself is reported by the deserialiser).
    pub fn of(text: &str) -> Positions {
        let mut positions = Positions::default();
        let mut stack: Vec<Frame> = Vec::new();
        let mut documents = 0;
        let mut parser = saphyr_parser::Parser::new_from_str(text);
        while let Some(Ok((event, span))) = parser.next_event() {
            let at = Position {
                line: span.start.line(),
                column: span.start.col() + 1,
            };
            let opens = match event {
                Event::DocumentStart(_) => {
                    documents += 1;
                    if documents > 1 {
                        // Only the first document of a file is read.
                        break;
                    }
                    continue;
                }
                Event::SequenceEnd | Event::MappingEnd => {
                    stack.pop();
                    continue;
                }
                Event::Scalar(..) | Event::Alias(_) => None,
                Event::SequenceStart(..) => Some(true),
                Event::MappingStart(..) => Some(false),
                _ => continue,
            };
            // Where this node sits: a key, a mapping value, a sequence item or the root.
            let path = match stack.last_mut() {
                None => String::new(),
                Some(Frame::Sequence { path, next }) => {
                    let item = join(path, &next.to_string());
                    *next += 1;
                    positions.starts.entry(item.clone()).or_insert(at);
                    item
                }
                Some(Frame::Mapping { path, key }) => match key.take() {
                    None => {
                        let name = match &event {
                            Event::Scalar(value, ..) => value.to_string(),
                            _ => "?".to_string(),
                        };
                        let entry = join(path, &name);
                        positions.starts.entry(entry.clone()).or_insert(at);
                        *key = Some(name);
                        if opens.is_none() {
                            continue;
                        }
                        // A complex key: its own nodes are indexed under the entry's path.
                        entry
                    }
                    Some(name) => {
                        let entry = join(path, &name);
                        positions.values.entry(entry.clone()).or_insert(at);
                        entry
                    }
                },
            };
            match opens {
                Some(true) => stack.push(Frame::Sequence { path, next: 0 }),
                Some(false) => stack.push(Frame::Mapping { path, key: None }),
                None => {}
            }
        }
        positions
    }

    /// Where the node at `path` starts (a mapping entry at its key). A path that is not in the
    /// document falls back to its nearest ancestor that is, so a diagnostic always has a place.
    pub fn at(&self, path: &str) -> Option<Position> {
        let mut path = path;
        loop {
            if let Some(position) = self.starts.get(path) {
                return Some(*position);
            }
            path = &path[..path.rfind('/')?];
        }
    }

    /// Whether the document has a node at exactly `path`.
    pub fn contains(&self, path: &str) -> bool {
        self.starts.contains_key(path)
    }

    /// Where the value of the mapping entry at `path` starts, else where the entry starts.
    pub fn value_at(&self, path: &str) -> Option<Position> {
        self.values.get(path).copied().or_else(|| self.at(path))
    }
}

fn join(parent: &str, child: &str) -> String {
    if parent.is_empty() {
        child.to_string()
    } else {
        format!("{parent}/{child}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "version: 2\nmodels:\n  - name: a\n    columns:\n      - name: id\n        tests: [unique, not_null]\n  - name: b\n    config: {alias: x}\n    description: >\n      folded\nsources:\n  - name: raw\n    tables:\n      - name: events\n";

    fn at(positions: &Positions, path: &str) -> (usize, usize) {
        let position = positions.at(path).unwrap_or_else(|| panic!("{path} is not located"));
        (position.line, position.column)
    }

    #[test]
    fn mapping_entries_are_at_their_key_and_sequence_items_at_their_start() {
        let positions = Positions::of(TEXT);
        assert_eq!(at(&positions, "version"), (1, 1));
        assert_eq!(at(&positions, "models"), (2, 1));
        assert_eq!(at(&positions, "models/0"), (3, 5));
        assert_eq!(at(&positions, "models/0/name"), (3, 5));
        assert_eq!(at(&positions, "models/0/columns/0/tests/1"), (6, 25));
        assert_eq!(at(&positions, "models/1"), (7, 5));
        assert_eq!(at(&positions, "models/1/config/alias"), (8, 14));
        assert_eq!(at(&positions, "models/1/description"), (9, 5));
        assert_eq!(at(&positions, "sources/0/tables/0"), (14, 9));
    }

    #[test]
    fn values_are_located_apart_from_their_keys() {
        let positions = Positions::of(TEXT);
        let value = positions.value_at("models/1/config/alias").expect("located");
        assert_eq!((value.line, value.column), (8, 21));
        // A folded scalar's value starts at its first line of content; its entry at the key.
        let folded = positions.value_at("models/1/description").expect("located");
        assert_eq!(folded.line, 10);
    }

    #[test]
    fn a_missing_path_falls_back_to_its_nearest_located_ancestor() {
        let positions = Positions::of(TEXT);
        assert_eq!(at(&positions, "models/1/columns/3/tests/0"), (7, 5));
        assert!(!positions.contains("models/1/columns"));
        assert!(positions.at("nothing/here").is_none());
    }

    #[test]
    fn a_syntax_error_keeps_what_came_before_it() {
        let positions = Positions::of("a: 1\nb: [unclosed\nc: 3\n");
        assert_eq!(at(&positions, "a"), (1, 1));
        assert!(positions.at("c").is_none());
    }

    #[test]
    fn syntax_errors_say_what_most_likely_caused_them() {
        let tab = parse::<serde_yaml::Value>("f.yml", "a:\n  b: 1\n\tc: 2\n").expect_err("a tab");
        assert_eq!(
            tab.help.as_deref(),
            Some("line 3 is indented with a tab; YAML indents with spaces only")
        );
        let quote = parse::<serde_yaml::Value>("f.yml", "a: it's fine\nb: \"open\nc: 3\n").expect_err("unclosed");
        assert_eq!(quote.help.as_deref(), Some("the \" opened on line 2 is never closed"));
        let single = parse::<serde_yaml::Value>("f.yml", "a: 'it''s\nb: 2\n").expect_err("unclosed");
        assert_eq!(single.help.as_deref(), Some("the ' opened on line 1 is never closed"));
    }

    #[test]
    fn indexing_is_linear_in_the_size_of_the_file() {
        // 20,000 entries would take minutes with a text search per entry.
        let mut text = String::from("models:\n");
        for index in 0..20_000 {
            text.push_str(&format!("  - name: model_{index}\n    description: d\n"));
        }
        let positions = Positions::of(&text);
        assert_eq!(at(&positions, "models/19999/description"), (40_001, 5));
    }
}
