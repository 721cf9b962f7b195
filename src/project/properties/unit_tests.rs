//! `unit_tests:` entries of a property file: the model under test, its given inputs and the
//! expected rows (inline dicts, inline CSV or a fixture file).

use super::*;
use crate::diagnostics::Diagnostic;

/// A `unit_tests:` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUnitTest {
    pub(super) name: String,
    pub(super) model: String,
    #[serde(default)]
    pub(super) description: String,
    #[serde(default)]
    pub(super) given: Vec<RawGiven>,
    pub(super) expect: RawRows,
    #[serde(default)]
    pub(super) config: Option<BTreeMap<String, Json>>,
    #[serde(default)]
    pub(super) overrides: Option<RawOverrides>,
}

/// `overrides:` of a unit test: `vars`, and `macros: {is_incremental: true}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOverrides {
    #[serde(default)]
    pub(super) macros: BTreeMap<String, Json>,
    #[serde(default)]
    pub(super) vars: BTreeMap<String, Json>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGiven {
    pub(super) input: String,
    #[serde(flatten)]
    pub(super) rows: RawRows,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRows {
    /// `dict` (default: a list of mappings) or `csv` (a string with a header line).
    #[serde(default)]
    pub(super) format: Option<String>,
    #[serde(default)]
    pub(super) rows: Option<serde_yaml::Value>,
    /// A CSV file: a path from the project root, or a name in `<test-path>/fixtures/`.
    #[serde(default)]
    pub(super) fixture: Option<String>,
}

/// A unit test as declared.
#[derive(Debug, Clone)]
pub struct UnitTestProperties {
    pub name: String,
    /// Name of the model under test.
    pub model: String,
    pub description: String,
    /// `input` (`ref('x')`, `source('s', 't')`) → its rows.
    pub given: Vec<(String, Rows)>,
    pub expect: Rows,
    pub config: ConfigMap,
    /// `overrides: {macros: {is_incremental: true}}`: the model runs as an incremental run
    /// would, reading its own table from the rows given for `this`.
    pub incremental: bool,
    /// `overrides: {vars: {...}}`: vars the model is rendered with, over the project's and `--vars`.
    pub vars: BTreeMap<String, Json>,
    pub file: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
}

/// Rows of a unit test's given input or expected output: one mapping per row (`format: dict`,
/// the default; absent keys are NULL), CSV text with a header line (`format: csv`, or a fixture
/// file once read), or a fixture file not read yet (the project loader reads it into
/// [`Rows::Csv`]). The manifest records them as they are.
pub use crate::documents::TestRows as Rows;

pub(super) fn rows_of(raw: RawRows, owner: &str) -> Result<Rows, Diagnostic> {
    let format = raw
        .format
        .as_deref()
        .unwrap_or(if raw.fixture.is_some() { "csv" } else { "dict" });
    match (format, raw.rows, raw.fixture) {
        (_, Some(_), Some(_)) => Err(Diagnostic::new(format!(
            "{owner}: give either rows: or fixture:, not both"
        ))),
        ("csv", None, Some(fixture)) => Ok(Rows::Fixture(fixture)),
        (_, None, Some(_)) => Err(Diagnostic::new(format!(
            "{owner}: a fixture: file is CSV (format: csv)"
        ))),
        (_, None, None) => Err(Diagnostic::new(format!("{owner}: needs rows: (or a CSV fixture:)"))),
        ("dict", Some(rows), None) => {
            let json = super::super::project_file::yaml_to_json(&rows)?;
            match json {
                Json::Array(items) => items
                    .into_iter()
                    .map(|item| match item {
                        Json::Object(map) => Ok(map),
                        other => Err(Diagnostic::new(format!(
                            "{owner}: each row is a mapping of column: value, not {other}"
                        ))),
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map(Rows::Dicts),
                _ => Err(Diagnostic::new(format!(
                    "{owner}: rows: is a list of mappings (format: dict)"
                ))),
            }
        }
        ("csv", Some(serde_yaml::Value::String(text)), None) => Ok(Rows::Csv(text)),
        ("csv", Some(_), None) => Err(Diagnostic::new(format!(
            "{owner}: with format: csv, rows: is a block of CSV text with a header line"
        ))),
        (other, _, _) => Err(Diagnostic::new(format!("{owner}: format '{other}' is not dict or csv"))),
    }
}
