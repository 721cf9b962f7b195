//! Property files (`models/**/*.yml`, `version: 2`): sources, model and seed properties, and the
//! generic data tests declared under `columns:`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::keys::ConfigKind;
use super::project_file::ConfigMap;
use super::yaml::Positions;
use crate::diagnostics::{Diagnostic, Position};

mod freshness;
mod read;
pub use freshness::*;

mod unit_tests;
mod versions;
pub use read::parse;
pub use unit_tests::*;

/// How a source's files are read (`format:`, else the location's extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceFormat {
    Parquet,
    Csv,
    /// JSON lines (`json`, `ndjson` and `jsonl` are accepted).
    Json,
}

impl SourceFormat {
    /// The format a `format:` value names, if it names one.
    pub fn parse(text: &str) -> Option<SourceFormat> {
        match text.to_ascii_lowercase().as_str() {
            "parquet" => Some(SourceFormat::Parquet),
            "csv" => Some(SourceFormat::Csv),
            "json" | "ndjson" | "jsonl" => Some(SourceFormat::Json),
            _ => None,
        }
    }

    /// The format of the files at `location`, by extension (Parquet when it has none).
    pub fn of_location(location: &str) -> SourceFormat {
        let lower = location.to_ascii_lowercase();
        if lower.ends_with(".csv") || lower.ends_with(".csv.gz") {
            SourceFormat::Csv
        } else if [".json", ".ndjson", ".jsonl", ".json.gz"]
            .iter()
            .any(|e| lower.ends_with(e))
        {
            SourceFormat::Json
        } else {
            SourceFormat::Parquet
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SourceFormat::Parquet => "parquet",
            SourceFormat::Csv => "csv",
            SourceFormat::Json => "json",
        }
    }
}

/// Everything declared in one property file.
#[derive(Debug, Clone, Default)]
pub struct PropertyFile {
    pub file: String,
    /// The package the file belongs to (none: the project's own).
    pub package: Option<String>,
    pub sources: Vec<SourceProperties>,
    pub models: Vec<NodeProperties>,
    pub seeds: Vec<NodeProperties>,
    /// `unit_tests:`: offline tests of one model's SQL on given input rows.
    pub unit_tests: Vec<UnitTestProperties>,
    /// Whether the file declares `metric_models:` (the metrics stage parses them from `text`).
    pub has_metric_models: bool,
    /// The file's text (the metrics stage re-reads its metric models for positioned errors).
    pub text: String,
    /// Where each node of the file starts.
    pub positions: Positions,
    /// What the file sets that tidemark ignores: dbt features it does not implement, custom keys.
    pub warnings: Vec<Diagnostic>,
    /// `snapshots:` declared in YAML.
    pub snapshots: Vec<SnapshotProperties>,
    /// `exposures:`.
    pub exposures: Vec<ExposureProperties>,
    /// `groups:`.
    pub groups: Vec<GroupProperties>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPropertyFile {
    #[serde(default)]
    #[expect(dead_code, reason = "accepted for dbt compatibility; only version 2 exists")]
    version: Option<serde_yaml::Value>,
    #[serde(default)]
    sources: Vec<RawSource>,
    #[serde(default)]
    models: Vec<RawNodeProperties>,
    #[serde(default)]
    seeds: Vec<RawNodeProperties>,
    #[serde(default)]
    metric_models: Vec<serde_yaml::Value>,
    // dbt keys that tidemark accepts and does not use.
    #[serde(default)]
    snapshots: Vec<RawSnapshot>,
    #[serde(default, rename = "macros")]
    _macros: serde_yaml::Value,
    #[serde(default)]
    exposures: Vec<RawExposure>,
    #[serde(default, rename = "metrics")]
    _metrics: serde_yaml::Value,
    #[serde(default, rename = "semantic_models")]
    _semantic_models: serde_yaml::Value,
    #[serde(default, rename = "saved_queries")]
    _saved_queries: serde_yaml::Value,
    #[serde(default, rename = "analyses")]
    _analyses: serde_yaml::Value,
    #[serde(default)]
    groups: Vec<RawGroup>,
    #[serde(default)]
    unit_tests: Vec<RawUnitTest>,
    #[serde(default, rename = "data_tests")]
    _data_tests: serde_yaml::Value,
}

/// A snapshot declared in YAML (dbt 1.9): the relation it keeps versions of, and its configs.
#[derive(Debug, Clone)]
pub struct SnapshotProperties {
    pub name: String,
    pub description: String,
    /// `ref('orders')` or `source('shop', 'orders')`, as written.
    pub relation: String,
    pub config: ConfigMap,
    pub line: Option<usize>,
    pub column: Option<usize>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSnapshot {
    name: String,
    #[serde(default)]
    description: String,
    relation: String,
    #[serde(default)]
    config: Option<BTreeMap<String, Json>>,
    #[serde(default)]
    #[expect(dead_code, reason = "accepted as dbt does; snapshot columns are not documented yet")]
    columns: Option<serde_yaml::Value>,
}

/// An `exposures:` entry: what outside the project reads its nodes.
#[derive(Debug, Clone)]
pub struct ExposureProperties {
    pub name: String,
    pub kind: String,
    pub owner: Json,
    pub description: String,
    pub url: Option<String>,
    pub maturity: Option<String>,
    /// `ref('orders')` / `source('shop', 'orders')` as written, each with where it is.
    pub depends_on: Vec<(String, Option<Position>)>,
    pub line: Option<usize>,
    pub column: Option<usize>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExposure {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    owner: Json,
    #[serde(default)]
    description: String,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    maturity: Option<String>,
    #[serde(default)]
    depends_on: Vec<String>,
    #[serde(default)]
    #[expect(dead_code, reason = "accepted as dbt does; exposures are documentation")]
    label: Option<String>,
    #[serde(default)]
    #[expect(dead_code, reason = "accepted as dbt does; exposures are documentation")]
    tags: Option<Json>,
    #[serde(default)]
    #[expect(dead_code, reason = "accepted as dbt does; exposures are documentation")]
    meta: Option<Json>,
    #[serde(default)]
    #[expect(dead_code, reason = "accepted as dbt does; exposures are documentation")]
    config: Option<Json>,
}

/// A `sources:` entry: a named group of tables that tidemark reads but does not build.
#[derive(Debug, Clone)]
pub struct SourceProperties {
    pub name: String,
    pub description: String,
    /// Schema the source's tables live in when they are warehouse tables (defaults to the name).
    pub schema: String,
    pub tables: Vec<SourceTable>,
    pub line: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct SourceTable {
    pub name: String,
    pub identifier: String,
    pub description: String,
    /// Where the files are: a path (relative to the project root), glob or URL.
    pub location: Option<String>,
    /// `parquet`, `csv` or `json`; inferred from the location's extension when absent.
    pub format: Option<SourceFormat>,
    /// `config: {event_time: column}`: the column that places a row in time, so time-range
    /// incremental runs read only the range they need.
    pub event_time: Option<String>,
    /// `freshness:` (the table's, else its source's; `freshness: null` turns it off).
    pub freshness: Option<Freshness>,
    /// `loaded_at_field`: the column (or SQL expression) whose maximum is the table's age.
    pub loaded_at_field: Option<String>,
    pub columns: Vec<ColumnProperties>,
    pub line: Option<usize>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[expect(
    dead_code,
    reason = "dbt keys are accepted so dbt projects load; tidemark does not use them yet"
)]
struct RawSource {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    schema: Option<String>,
    #[serde(default)]
    database: Option<String>,
    /// Location pattern for every table, `{name}` replaced by the table's identifier (as dbt-duckdb).
    #[serde(default)]
    external_location: Option<String>,
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    tables: Vec<RawSourceTable>,
    #[serde(default)]
    meta: Option<Json>,
    #[serde(default)]
    config: Option<Json>,
    #[serde(default)]
    loader: Option<String>,
    #[serde(default, deserialize_with = "present")]
    freshness: Option<serde_yaml::Value>,
    #[serde(default)]
    loaded_at_field: Option<String>,
    #[serde(default)]
    tags: Option<Json>,
    #[serde(default)]
    quoting: Option<serde_yaml::Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[expect(
    dead_code,
    reason = "dbt keys are accepted so dbt projects load; tidemark does not use them yet"
)]
struct RawSourceTable {
    name: String,
    #[serde(default)]
    identifier: Option<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    external_location: Option<String>,
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    columns: Vec<RawColumn>,
    #[serde(default)]
    meta: Option<Json>,
    #[serde(default)]
    config: Option<Json>,
    #[serde(default, deserialize_with = "present")]
    freshness: Option<serde_yaml::Value>,
    #[serde(default)]
    loaded_at_field: Option<String>,
    #[serde(default)]
    tags: Option<Json>,
    #[serde(default, alias = "data_tests")]
    tests: Vec<serde_yaml::Value>,
    #[serde(default)]
    quoting: Option<serde_yaml::Value>,
}

/// Properties of a model or seed.
#[derive(Debug, Clone)]
pub struct NodeProperties {
    pub name: String,
    pub description: String,
    pub config: ConfigMap,
    pub columns: Vec<ColumnProperties>,
    /// Model-level tests (`tests:` / `data_tests:` beside `columns:`).
    pub tests: Vec<TestDeclaration>,
    pub file: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// Where the value of each `config:` key is in `file`, for diagnostics about it.
    pub config_positions: BTreeMap<String, Position>,
    /// A versioned model's versions (empty: not versioned).
    pub versions: Vec<VersionProperties>,
    /// `latest_version:` as written, and where; without it the highest version is the latest.
    pub latest_version: Option<(String, Option<Position>)>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[expect(
    dead_code,
    reason = "dbt keys are accepted so dbt projects load; tidemark does not use them yet"
)]
struct RawNodeProperties {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    config: Option<BTreeMap<String, Json>>,
    #[serde(default)]
    columns: Vec<RawColumn>,
    #[serde(default, alias = "data_tests")]
    tests: Vec<serde_yaml::Value>,
    #[serde(default)]
    meta: Option<Json>,
    #[serde(default)]
    docs: Option<Json>,
    #[serde(default)]
    access: Option<String>,
    #[serde(default)]
    group: Option<String>,
    #[serde(default)]
    constraints: Option<serde_yaml::Value>,
    #[serde(default)]
    latest_version: Option<Json>,
    #[serde(default)]
    versions: Vec<RawVersion>,
    #[serde(default)]
    deprecation_date: Option<serde_yaml::Value>,
}

/// One entry of a model's `versions:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[expect(
    dead_code,
    reason = "dbt keys are accepted so dbt projects load; tidemark does not use them yet"
)]
struct RawVersion {
    v: Json,
    #[serde(default)]
    defined_in: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    config: Option<BTreeMap<String, Json>>,
    /// Columns of the version: `{include: all | [names], exclude: [names]}` entries choose among
    /// the model's columns; the others are columns of their own.
    #[serde(default)]
    columns: Option<Vec<serde_yaml::Value>>,
    #[serde(default, alias = "data_tests")]
    tests: Vec<serde_yaml::Value>,
    #[serde(default)]
    docs: Option<Json>,
    #[serde(default)]
    meta: Option<Json>,
    #[serde(default)]
    constraints: Option<serde_yaml::Value>,
    #[serde(default)]
    deprecation_date: Option<serde_yaml::Value>,
    #[serde(default)]
    access: Option<String>,
    #[serde(default)]
    group: Option<String>,
}

/// One version of a versioned model (`versions:` in its properties).
#[derive(Debug, Clone)]
pub struct VersionProperties {
    /// The version identifier, as text (`2`, `2.1`, `beta`).
    pub v: String,
    /// The name (without `.sql`) of the file that defines it, when `defined_in:` sets one; else
    /// `<model>_v<v>`, or `<model>` for the latest version.
    pub defined_in: Option<String>,
    pub description: Option<String>,
    /// The version's own configs, over the model's.
    pub config: ConfigMap,
    /// The model's columns the version keeps, then its own.
    pub columns: Vec<ColumnProperties>,
    /// The version's own model-level tests, after the model's.
    pub tests: Vec<TestDeclaration>,
    pub line: Option<usize>,
    pub column: Option<usize>,
}

/// A `groups:` entry: who owns a set of nodes (`group:` config), for access and the manifest.
#[derive(Debug, Clone)]
pub struct GroupProperties {
    pub name: String,
    pub owner: Json,
    pub description: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    name: String,
    owner: Json,
    #[serde(default)]
    description: String,
    #[serde(default)]
    #[expect(dead_code, reason = "accepted as dbt does; groups are documentation and access")]
    config: Option<Json>,
}

/// A column and its declared tests.
#[derive(Debug, Clone)]
pub struct ColumnProperties {
    pub name: String,
    pub description: String,
    pub data_type: Option<String>,
    pub tests: Vec<TestDeclaration>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[expect(
    dead_code,
    reason = "dbt keys are accepted so dbt projects load; tidemark does not use them yet"
)]
struct RawColumn {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    data_type: Option<String>,
    #[serde(default, alias = "data_tests")]
    tests: Vec<serde_yaml::Value>,
    #[serde(default)]
    meta: Option<Json>,
    #[serde(default)]
    quote: Option<bool>,
    #[serde(default)]
    constraints: Option<serde_yaml::Value>,
    #[serde(default)]
    tags: Option<Json>,
    #[serde(default)]
    config: Option<Json>,
}

/// One generic test as declared: `unique`, or `accepted_values: {values: [...]}`.
#[derive(Debug, Clone, PartialEq)]
pub struct TestDeclaration {
    /// The test's name (`unique`, `not_null`, `accepted_values`, `relationships`, ...).
    pub test_name: String,
    /// Arguments (`values`, `to`, `field`, `quote`, ...), excluding `config` keys.
    pub arguments: BTreeMap<String, Json>,
    /// `config:` of the test (`severity`, `where`, ...), with the shorthand keys folded in.
    pub config: ConfigMap,
    pub line: Option<usize>,
    pub column: Option<usize>,
}

/// Keys of a test entry that dbt treats as configs even when written beside the arguments.
const TEST_CONFIG_KEYS: &[&str] = &[
    "severity",
    "where",
    "tags",
    "enabled",
    "warn_if",
    "error_if",
    "limit",
    "store_failures",
    "meta",
];
