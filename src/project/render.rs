//! Jinja in property-file values, as dbt renders them: `{{ var('data_dir') }}/events.csv` in an
//! `external_location`, `{{ target.schema }}_raw` in a source's `schema`, `{{ doc('orders') }}`
//! in a description, `{{ env_var('X') }}` anywhere.
//!
//! Values are rendered one string at a time after the file is read as YAML (so a value cannot
//! change the file's structure), before it is checked. `metric_models:` and `unit_tests:` are
//! left as written (metric models are tidemark's own YAML, and a unit test's rows are data), and
//! so are hooks (`pre_hook`, `post_hook`: SQL rendered when they run).
//!
//! Docs blocks (`{% docs name %}…{% enddocs %}` in `.md` files under the model, seed, macro and
//! test folders) are what `doc('name')` returns.

use std::collections::BTreeMap;
use std::sync::Arc;

use minijinja::value::Value;
use minijinja::{Environment, Error, ErrorKind};
use serde_json::Value as Json;

use super::Target;
use crate::diagnostics::{did_you_mean, Diagnostic};

/// A docs block: where it is and its text (without the surrounding whitespace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocsBlock {
    pub file: String,
    pub line: usize,
    pub text: String,
}

/// The Jinja context property-file values are rendered in.
pub struct PropertyContext {
    env: Environment<'static>,
}

impl PropertyContext {
    /// `var` (the project's vars with `--vars` applied), `env_var`, `target`, `project_name` and
    /// `doc`.
    pub fn new(
        project_name: &str,
        target: &Target,
        vars: BTreeMap<String, Json>,
        docs: Arc<BTreeMap<String, DocsBlock>>,
    ) -> PropertyContext {
        let mut env = crate::jinja::base_environment();
        env.add_function("env_var", crate::jinja::env_var);
        env.add_function("var", crate::jinja::var_function(Arc::new(vars)));
        env.add_global("target", Value::from_serialize(target.jinja_context()));
        env.add_global("project_name", project_name.to_string());
        env.add_function("doc", move |name: String| -> Result<Value, Error> {
            match docs.get(&name) {
                Some(block) => Ok(Value::from(block.text.clone())),
                None => {
                    let mut message = format!("doc('{name}'): no docs block named '{name}'");
                    if let Some(near) = did_you_mean(&name, docs.keys().map(String::as_str)) {
                        message.push_str(&format!(" (did you mean '{near}'?)"));
                    }
                    Err(Error::new(ErrorKind::InvalidOperation, message))
                }
            }
        });
        PropertyContext { env }
    }

    /// `env_var` alone: the context of the project file, read before anything else.
    pub fn env_only() -> PropertyContext {
        let mut env = crate::jinja::base_environment();
        env.add_function("env_var", crate::jinja::env_var);
        PropertyContext { env }
    }

    /// `text` rendered, or what is wrong with it.
    pub fn render(&self, text: &str) -> Result<String, String> {
        self.env.render_str(text, ()).map_err(|error| {
            let mut message = error.kind().to_string();
            if let Some(detail) = error.detail() {
                message = format!("{message}: {detail}");
            }
            message
        })
    }
}

/// Renders every string value of a property file that holds Jinja, except under
/// `metric_models:` and `unit_tests:`; each problem is at its value.
pub fn render_values(
    value: &mut serde_yaml::Value,
    context: &PropertyContext,
    file: &str,
    positions: &super::yaml::Positions,
) -> Vec<Diagnostic> {
    // Hooks are SQL rendered when they run (with `this` and the project's macros).
    let skip = |path: &str, key: &str| {
        (path.is_empty() && (key == "metric_models" || key == "unit_tests")) || HOOK_KEYS.contains(&key)
    };
    walk_all(value, context, file, positions, &skip)
}

/// Renders every string value of `value` except the entries `skip(path, key)` names.
fn walk_all(
    value: &mut serde_yaml::Value,
    context: &PropertyContext,
    file: &str,
    positions: &super::yaml::Positions,
    skip: &dyn Fn(&str, &str) -> bool,
) -> Vec<Diagnostic> {
    let mut problems = Vec::new();
    let mut walker = Walker {
        context,
        file,
        positions,
        skip,
        problems: &mut problems,
    };
    walker.walk(value, "");
    problems
}

/// Keys whose values are SQL rendered when they run (`{{ this }}` only means something then).
const HOOK_KEYS: &[&str] = &[
    "pre-hook",
    "post-hook",
    "pre_hook",
    "post_hook",
    "+pre-hook",
    "+post-hook",
    "+pre_hook",
    "+post_hook",
    "on-run-start",
    "on-run-end",
];

/// Renders `env_var()` in the project file's string values, except hooks.
pub fn render_project_values(
    value: &mut serde_yaml::Value,
    file: &str,
    positions: &super::yaml::Positions,
) -> Vec<Diagnostic> {
    let skip = |_: &str, key: &str| HOOK_KEYS.contains(&key);
    walk_all(value, &PropertyContext::env_only(), file, positions, &skip)
}

/// Renders string values in place, skipping the entries `skip(path, key)` names.
struct Walker<'a> {
    context: &'a PropertyContext,
    file: &'a str,
    positions: &'a super::yaml::Positions,
    skip: &'a dyn Fn(&str, &str) -> bool,
    problems: &'a mut Vec<Diagnostic>,
}

impl Walker<'_> {
    fn walk(&mut self, value: &mut serde_yaml::Value, path: &str) {
        let join = |key: &str| {
            if path.is_empty() {
                key.to_string()
            } else {
                format!("{path}/{key}")
            }
        };
        match value {
            serde_yaml::Value::String(text) if text.contains("{{") || text.contains("{%") => {
                match self.context.render(text) {
                    Ok(rendered) => *text = rendered,
                    Err(message) => self.problems.push(
                        Diagnostic::new(format!("Jinja error: {message}"))
                            .in_file(self.file)
                            .at_position(self.positions.value_at(path)),
                    ),
                }
            }
            serde_yaml::Value::Mapping(mapping) => {
                for (key, child) in mapping.iter_mut() {
                    let Some(key) = key.as_str() else { continue };
                    if (self.skip)(path, key) {
                        continue;
                    }
                    self.walk(child, &join(key));
                }
            }
            serde_yaml::Value::Sequence(items) => {
                for (index, child) in items.iter_mut().enumerate() {
                    self.walk(child, &join(&index.to_string()));
                }
            }
            _ => {}
        }
    }
}

/// The docs blocks of a Markdown file (`{% docs name %}…{% enddocs %}`), with their lines.
pub fn docs_blocks(file: &str, text: &str) -> Result<Vec<(String, DocsBlock)>, Diagnostic> {
    let mut blocks = Vec::new();
    let mut rest = text;
    let mut offset = 0;
    let line_at = |at: usize| text[..at].matches('\n').count() + 1;
    while let Some(start) = rest.find("{%") {
        let Some(tag_end) = rest[start..].find("%}") else { break };
        let tag = rest[start + 2..start + tag_end].trim_matches(|c: char| c == '-' || c.is_whitespace());
        let after_tag = start + tag_end + 2;
        let Some(name) = tag
            .strip_prefix("docs")
            .filter(|name| name.starts_with(char::is_whitespace))
        else {
            offset += after_tag;
            rest = &rest[after_tag..];
            continue;
        };
        let name = name.trim().to_string();
        let line = line_at(offset + start);
        let body = &rest[after_tag..];
        let Some(end) = find_enddocs(body) else {
            return Err(Diagnostic::new(format!("docs block '{name}' has no {{% enddocs %}}"))
                .in_file(file)
                .at_line(Some(line)));
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(
                Diagnostic::new(format!("docs block name '{name}' is not a name (letters, digits, _)"))
                    .in_file(file)
                    .at_line(Some(line)),
            );
        }
        blocks.push((
            name,
            DocsBlock {
                file: file.to_string(),
                line,
                text: body[..end.0].trim().to_string(),
            },
        ));
        let consumed = after_tag + end.1;
        offset += consumed;
        rest = &rest[consumed..];
    }
    Ok(blocks)
}

/// Where `{% enddocs %}` starts in `text` and where it ends.
fn find_enddocs(text: &str) -> Option<(usize, usize)> {
    let mut from = 0;
    while let Some(start) = text[from..].find("{%").map(|at| from + at) {
        let end = text[start..].find("%}")? + start + 2;
        let tag = text[start + 2..end - 2].trim_matches(|c: char| c == '-' || c.is_whitespace());
        if tag == "enddocs" {
            return Some((start, end));
        }
        from = end;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docs_blocks_are_read_with_their_lines() {
        let text = "# Orders\n\n{% docs orders %}\nOne row per order.\n\nPlaced in the shop.\n{% enddocs %}\n\n{%- docs status -%} The state. {%- enddocs -%}\n";
        let blocks = docs_blocks("models/docs.md", text).expect("blocks");
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].0, "orders");
        assert_eq!(blocks[0].1.text, "One row per order.\n\nPlaced in the shop.");
        assert_eq!(blocks[0].1.line, 3);
        assert_eq!(blocks[1].0, "status");
        assert_eq!(blocks[1].1.text, "The state.");
        assert_eq!(blocks[1].1.line, 9);
        let unclosed = docs_blocks("models/docs.md", "{% docs open %}\ntext\n").unwrap_err();
        assert_eq!(unclosed.line, Some(1));
    }
}
