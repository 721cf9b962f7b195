//! `selectors.yml`: named selections (dbt's format), used as `--selector NAME` or
//! `selector:NAME` inside `--select`.
//!
//! ```yaml
//! selectors:
//!   - name: nightly_marts
//!     description: what the nightly job builds
//!     default: true            # used when a command gets no --select / --selector
//!     definition:
//!       union:
//!         - "tag:nightly"      # a string is --select syntax
//!         - method: path
//!           value: models/marts
//!           children: true     # also parents, children_depth, parents_depth, childrens_parents
//!         - intersection: ["tag:lms", "config.materialized:table"]
//!         - exclude: ["tag:deprecated"]
//! ```

use serde::Deserialize;

use crate::diagnostics::Diagnostic;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SelectorsFile {
    selectors: Vec<Selector>,
}

/// One named selector.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Selector {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub definition: Expression,
    /// Used when a command is given no `--select` and no `--selector`.
    #[serde(default)]
    pub default: bool,
}

/// A selector's definition.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Expression {
    /// `--select` syntax.
    Text(String),
    Union {
        union: Vec<Expression>,
    },
    Intersection {
        intersection: Vec<Expression>,
    },
    /// Only inside a union or intersection: subtracted from it.
    Exclude {
        exclude: Vec<Expression>,
    },
    Method(Method),
}

/// `method: tag, value: nightly, children: true`, ...
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Method {
    pub method: String,
    pub value: serde_yaml::Value,
    #[serde(default)]
    pub parents: bool,
    #[serde(default)]
    pub children: bool,
    pub parents_depth: Option<usize>,
    pub children_depth: Option<usize>,
    /// `@`: the node, its descendants and all their ancestors.
    #[serde(default)]
    pub childrens_parents: bool,
}

impl Method {
    /// The same selection as one `--select` part (`2+tag:nightly+`).
    pub fn as_text(&self) -> String {
        let value = match &self.value {
            serde_yaml::Value::String(text) => text.clone(),
            other => serde_yaml::to_string(other).unwrap_or_default().trim().to_string(),
        };
        let method = if self.method == "fqn" || self.method.is_empty() {
            String::new()
        } else {
            format!("{}:", self.method)
        };
        let up = match (self.parents || self.parents_depth.is_some(), self.parents_depth) {
            (true, Some(depth)) => format!("{depth}+"),
            (true, None) => "+".into(),
            _ => String::new(),
        };
        let down = match (self.children || self.children_depth.is_some(), self.children_depth) {
            (true, Some(depth)) => format!("+{depth}"),
            (true, None) => "+".into(),
            _ => String::new(),
        };
        if self.childrens_parents {
            format!("@{method}{value}")
        } else {
            format!("{up}{method}{value}{down}")
        }
    }
}

/// Reads `selectors.yml` (its text and path relative to the project): names must be unique and
/// at most one selector may be the default.
pub fn parse(file: &str, text: &str) -> Result<Vec<Selector>, Diagnostic> {
    let parsed: SelectorsFile = super::yaml::parse(file, text)?;
    let mut seen = std::collections::BTreeSet::new();
    for (index, selector) in parsed.selectors.iter().enumerate() {
        if !seen.insert(selector.name.as_str()) {
            return Err(
                Diagnostic::new(format!("selector '{}' is defined twice", selector.name))
                    .in_file(file)
                    .at_position(super::yaml::Positions::of(text).at(&format!("selectors/{index}"))),
            );
        }
    }
    let defaults: Vec<&str> = parsed
        .selectors
        .iter()
        .filter(|s| s.default)
        .map(|s| s.name.as_str())
        .collect();
    if defaults.len() > 1 {
        return Err(Diagnostic::new(format!(
            "only one selector can have `default: true`; {} do",
            defaults.join(", ")
        ))
        .in_file(file));
    }
    Ok(parsed.selectors)
}
