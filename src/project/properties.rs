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
pub use freshness::*;

mod unit_tests;
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
    #[serde(default, rename = "exposures")]
    _exposures: serde_yaml::Value,
    #[serde(default, rename = "metrics")]
    _metrics: serde_yaml::Value,
    #[serde(default, rename = "semantic_models")]
    _semantic_models: serde_yaml::Value,
    #[serde(default, rename = "saved_queries")]
    _saved_queries: serde_yaml::Value,
    #[serde(default, rename = "analyses")]
    _analyses: serde_yaml::Value,
    #[serde(default, rename = "groups")]
    _groups: serde_yaml::Value,
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
    latest_version: Option<serde_yaml::Value>,
    #[serde(default)]
    versions: Option<serde_yaml::Value>,
    #[serde(default)]
    deprecation_date: Option<serde_yaml::Value>,
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

/// Parses one property file, its Jinja values rendered in `context` (see [`super::render`]).
pub fn parse(
    file: &str,
    text: &str,
    context: Option<&super::render::PropertyContext>,
) -> Result<PropertyFile, Vec<Diagnostic>> {
    if text.trim().is_empty() {
        return Ok(PropertyFile {
            file: file.to_string(),
            ..PropertyFile::default()
        });
    }
    let raw: RawPropertyFile = super::yaml::parse(file, text).map_err(|d| vec![d])?;
    let positions = Positions::of(text);
    let raw = match context {
        Some(context) if text.contains("{{") || text.contains("{%") => {
            // The shape was checked as written; only string values change.
            let mut value: serde_yaml::Value = super::yaml::parse(file, text).map_err(|d| vec![d])?;
            let problems = super::render::render_values(&mut value, context, file, &positions);
            if !problems.is_empty() {
                return Err(problems);
            }
            serde_yaml::from_value(value)
                .map_err(|error| vec![Diagnostic::new(format!("after rendering its Jinja: {error}")).in_file(file)])?
        }
        _ => raw,
    };
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let ignored = |path: &str, features: &[(&str, &str)], warnings: &mut Vec<Diagnostic>| {
        for (key, lost) in features {
            let at = if path.is_empty() {
                key.to_string()
            } else {
                format!("{path}/{key}")
            };
            if positions.contains(&at) {
                warnings.push(
                    Diagnostic::new(format!(
                        "'{key}:' is a dbt feature tidemark does not implement; it is ignored ({lost})"
                    ))
                    .in_file(file)
                    .at_position(positions.at(&at)),
                );
            }
        }
    };
    ignored(
        "",
        &[
            ("exposures", "exposures are not read"),
            ("metrics", "dbt metrics are not read; tidemark's own are metric_models:"),
            ("semantic_models", "semantic models are not read"),
            ("saved_queries", "saved queries are not read"),
            ("analyses", "analyses are not compiled"),
            ("groups", "groups are not checked"),
        ],
        &mut warnings,
    );
    // A config key of `kind` set at `path`: a typo is an error, anything else ignored a warning.
    let check_config = |kind: ConfigKind,
                        config: &mut dyn Iterator<Item = &String>,
                        path: &str,
                        problems: &mut Vec<Diagnostic>,
                        warnings: &mut Vec<Diagnostic>| {
        for key in config {
            if let Some((diagnostic, error)) = super::keys::config_problem(kind, key) {
                let diagnostic = diagnostic
                    .in_file(file)
                    .at_position(positions.at(&format!("{path}/{key}")));
                if error {
                    problems.push(diagnostic);
                } else {
                    warnings.push(diagnostic);
                }
            }
        }
    };
    let line_at = |path: &str| positions.at(path).map(|position| position.line);

    // `path` is the owner's node; its tests are under `tests:` or `data_tests:`.
    let test_declarations = |entries: &[serde_yaml::Value],
                             owner: &str,
                             path: &str,
                             problems: &mut Vec<Diagnostic>,
                             warnings: &mut Vec<Diagnostic>| {
        let key = if positions.contains(&format!("{path}/data_tests")) {
            "data_tests"
        } else {
            "tests"
        };
        entries
            .iter()
            .enumerate()
            .filter_map(|(index, entry)| {
                let at = positions.at(&format!("{path}/{key}/{index}"));
                match test_declaration(entry) {
                    Ok(mut declaration) => {
                        for key in declaration.config.keys() {
                            if let Some((diagnostic, error)) = super::keys::config_problem(ConfigKind::Test, key) {
                                let diagnostic = diagnostic.in_file(file).at_position(at);
                                if error {
                                    problems.push(diagnostic);
                                } else {
                                    warnings.push(diagnostic);
                                }
                            }
                        }
                        declaration.line = at.map(|position| position.line);
                        declaration.column = at.map(|position| position.column);
                        Some(declaration)
                    }
                    Err(message) => {
                        problems.push(
                            Diagnostic::new(format!("invalid test on {owner}: {message}"))
                                .in_file(file)
                                .at_position(at),
                        );
                        None
                    }
                }
            })
            .collect::<Vec<_>>()
    };

    let columns_of = |raw_columns: Vec<RawColumn>,
                      owner: &str,
                      path: &str,
                      problems: &mut Vec<Diagnostic>,
                      warnings: &mut Vec<Diagnostic>| {
        raw_columns
            .into_iter()
            .enumerate()
            .map(|(index, column)| ColumnProperties {
                tests: {
                    let column_path = format!("{path}/columns/{index}");
                    ignored(
                        &column_path,
                        &[(
                            "constraints",
                            "constraints are not checked; contract: {enforced: true} checks names and data_types",
                        )],
                        warnings,
                    );
                    test_declarations(
                        &column.tests,
                        &format!("{owner}.{}", column.name),
                        &column_path,
                        problems,
                        warnings,
                    )
                },
                name: column.name,
                description: column.description,
                data_type: column.data_type,
            })
            .collect::<Vec<_>>()
    };

    let mut sources = Vec::new();
    for (source_index, source) in raw.sources.into_iter().enumerate() {
        let source_path = format!("sources/{source_index}");
        let line = line_at(&source_path);
        let mut tables = Vec::new();
        for (table_index, table) in source.tables.into_iter().enumerate() {
            let table_path = format!("{source_path}/tables/{table_index}");
            let identifier = table.identifier.unwrap_or_else(|| table.name.clone());
            let location = table
                .external_location
                .or_else(|| meta_string(&table.meta, "external_location"))
                .or_else(|| meta_string(&table.config, "external_location"))
                .or_else(|| {
                    source
                        .external_location
                        .as_ref()
                        .map(|pattern| pattern.replace("{name}", &identifier))
                });
            let owner = format!("{}.{}", source.name, table.name);
            let source_features = [
                (
                    "database",
                    "a target reads one warehouse; sources are found by schema, external_location or files",
                ),
                ("quoting", "identifiers are always quoted"),
            ];
            if table_index == 0 {
                ignored(&source_path, &source_features, &mut warnings);
                check_config(
                    ConfigKind::Source,
                    &mut config_keys(&source.config),
                    &format!("{source_path}/config"),
                    &mut problems,
                    &mut warnings,
                );
            }
            ignored(&table_path, &source_features, &mut warnings);
            check_config(
                ConfigKind::Source,
                &mut config_keys(&table.config),
                &format!("{table_path}/config"),
                &mut problems,
                &mut warnings,
            );
            let format = match table.format.as_deref().or(source.format.as_deref()) {
                None => None,
                Some(text) => match SourceFormat::parse(text) {
                    Some(format) => Some(format),
                    None => {
                        // A source's own format is reported once, not once per table.
                        let (at, what) = match table.format {
                            Some(_) => (format!("{table_path}/format"), format!("source table {owner}")),
                            None => (format!("{source_path}/format"), format!("source {}", source.name)),
                        };
                        let problem =
                            Diagnostic::new(format!("{what}: unknown format '{text}'; use parquet, csv or json"))
                                .in_file(file)
                                .at_position(positions.value_at(&at));
                        if !problems.contains(&problem) {
                            problems.push(problem);
                        }
                        None
                    }
                },
            };
            tables.push(SourceTable {
                line: line_at(&table_path),
                columns: columns_of(table.columns, &owner, &table_path, &mut problems, &mut warnings),
                name: table.name,
                identifier,
                description: table.description,
                location,
                format,
                event_time: meta_string(&table.config, "event_time")
                    .or_else(|| meta_string(&source.config, "event_time")),
                freshness: match table.freshness.as_ref().or(source.freshness.as_ref()).map(freshness_of) {
                    None => None,
                    Some(Ok(freshness)) => freshness,
                    Some(Err(message)) => {
                        problems.push(
                            Diagnostic::new(format!("source table {owner}: {message}"))
                                .in_file(file)
                                .at_position(positions.at(&match table.freshness {
                                    Some(_) => format!("{table_path}/freshness"),
                                    None => format!("{source_path}/freshness"),
                                })),
                        );
                        None
                    }
                },
                loaded_at_field: table.loaded_at_field.or_else(|| source.loaded_at_field.clone()),
            });
        }
        sources.push(SourceProperties {
            schema: source.schema.unwrap_or_else(|| source.name.clone()),
            name: source.name,
            description: source.description,
            tables,
            line,
        });
    }

    let node_properties = |entries: Vec<RawNodeProperties>,
                           kind: &str,
                           problems: &mut Vec<Diagnostic>,
                           warnings: &mut Vec<Diagnostic>| {
        let config_kind = if kind == "models" {
            ConfigKind::Model
        } else {
            ConfigKind::Seed
        };
        entries
            .into_iter()
            .enumerate()
            .map(|(index, entry)| {
                let path = format!("{kind}/{index}");
                ignored(
                    &path,
                    &[
                        ("access", "access is not checked"),
                        ("group", "groups are not checked"),
                        (
                            "constraints",
                            "constraints are not checked; contract: {enforced: true} checks names and data_types",
                        ),
                        (
                            "versions",
                            "model versions are not built; ref() reads the model's own file",
                        ),
                        ("latest_version", "model versions are not built"),
                        ("deprecation_date", "deprecations are not reported"),
                    ],
                    warnings,
                );
                check_config(
                    config_kind,
                    &mut entry.config.iter().flat_map(|config| config.keys()),
                    &format!("{path}/config"),
                    problems,
                    warnings,
                );
                NodeProperties {
                    line: line_at(&format!("{kind}/{index}")),
                    column: positions.at(&format!("{kind}/{index}")).map(|position| position.column),
                    config_positions: entry
                        .config
                        .iter()
                        .flatten()
                        .filter_map(|(key, _)| {
                            let at = positions.value_at(&format!("{kind}/{index}/config/{key}"))?;
                            Some((key.clone(), at))
                        })
                        .collect(),
                    config: entry.config.unwrap_or_default(),
                    tests: test_declarations(
                        &entry.tests,
                        &entry.name,
                        &format!("{kind}/{index}"),
                        problems,
                        warnings,
                    ),
                    columns: columns_of(
                        entry.columns,
                        &entry.name,
                        &format!("{kind}/{index}"),
                        problems,
                        warnings,
                    ),
                    name: entry.name,
                    description: entry.description,
                    file: file.to_string(),
                }
            })
            .collect::<Vec<_>>()
    };
    let models = node_properties(raw.models, "models", &mut problems, &mut warnings);
    let seeds = node_properties(raw.seeds, "seeds", &mut problems, &mut warnings);
    let mut unit_tests = Vec::new();
    for (test_index, test) in raw.unit_tests.into_iter().enumerate() {
        let test_path = format!("unit_tests/{test_index}");
        let line = line_at(&test_path);
        let column = positions.at(&test_path).map(|position| position.column);
        let owner = format!("unit test '{}'", test.name);
        let mut given = Vec::new();
        let mut failed = false;
        for (input_index, input) in test.given.into_iter().enumerate() {
            match rows_of(input.rows, &format!("{owner}, given {}", input.input)) {
                Ok(rows) => given.push((input.input, rows)),
                Err(problem) => {
                    problems.push(
                        problem
                            .in_file(file)
                            .at_position(positions.at(&format!("{test_path}/given/{input_index}"))),
                    );
                    failed = true;
                }
            }
        }
        let expect = match rows_of(test.expect, &format!("{owner}, expect")) {
            Ok(rows) => rows,
            Err(problem) => {
                problems.push(
                    problem
                        .in_file(file)
                        .at_position(positions.at(&format!("{test_path}/expect"))),
                );
                continue;
            }
        };
        let mut incremental = false;
        let (macros, vars) = test.overrides.map(|o| (o.macros, o.vars)).unwrap_or_default();
        for (name, value) in macros {
            match (name.as_str(), value) {
                ("is_incremental", Json::Bool(on)) => incremental = on,
                (other, _) => {
                    problems.push(
                        Diagnostic::new(format!(
                            "{owner}: overrides.macros supports is_incremental: true|false, not '{other}'"
                        ))
                        .in_file(file)
                        .at_position(positions.at(&format!("{test_path}/overrides/macros/{name}"))),
                    );
                    failed = true;
                }
            }
        }
        if failed {
            continue;
        }
        unit_tests.push(UnitTestProperties {
            incremental,
            vars,
            name: test.name,
            model: test.model,
            description: test.description,
            given,
            expect,
            config: test.config.unwrap_or_default().into_iter().collect(),
            file: file.to_string(),
            line,
            column,
        });
    }

    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(PropertyFile {
        file: file.to_string(),
        sources,
        models,
        seeds,
        unit_tests,
        has_metric_models: !raw.metric_models.is_empty(),
        text: text.to_string(),
        snapshots: raw
            .snapshots
            .into_iter()
            .enumerate()
            .map(|(index, snapshot)| SnapshotProperties {
                line: positions
                    .at(&format!("snapshots/{index}"))
                    .map(|position| position.line),
                column: positions
                    .at(&format!("snapshots/{index}"))
                    .map(|position| position.column),
                name: snapshot.name,
                description: snapshot.description,
                relation: snapshot.relation,
                config: snapshot.config.unwrap_or_default(),
            })
            .collect(),
        positions,
        warnings,
    })
}

/// The keys of a `config:` mapping.
fn config_keys(config: &Option<Json>) -> impl Iterator<Item = &String> {
    config.iter().filter_map(Json::as_object).flat_map(|map| map.keys())
}

fn meta_string(meta: &Option<Json>, key: &str) -> Option<String> {
    meta.as_ref()?.get(key)?.as_str().map(str::to_string)
}

/// Reads `unique`, `{accepted_values: {values: [...]}}` or `{accepted_values: {arguments: {...}, config: {...}}}`.
fn test_declaration(entry: &serde_yaml::Value) -> Result<TestDeclaration, Diagnostic> {
    let json = super::project_file::yaml_to_json(entry)?;
    match json {
        Json::String(test_name) => Ok(TestDeclaration {
            test_name,
            arguments: BTreeMap::new(),
            config: ConfigMap::new(),
            line: None,
            column: None,
        }),
        Json::Object(map) if map.len() == 1 => {
            let (test_name, body) = map.into_iter().next().expect("map has one entry");
            let mut arguments = BTreeMap::new();
            let mut config = ConfigMap::new();
            match body {
                Json::Object(body) => {
                    for (key, value) in body {
                        match key.as_str() {
                            "config" => {
                                let Json::Object(entries) = value else {
                                    return Err(Diagnostic::new(format!(
                                        "'config' of test '{test_name}' must be a mapping"
                                    )));
                                };
                                config.extend(entries);
                            }
                            "arguments" => {
                                let Json::Object(entries) = value else {
                                    return Err(Diagnostic::new(format!(
                                        "'arguments' of test '{test_name}' must be a mapping"
                                    )));
                                };
                                arguments.extend(entries);
                            }
                            key if TEST_CONFIG_KEYS.contains(&key) => {
                                config.insert(key.to_string(), value);
                            }
                            _ => {
                                arguments.insert(key, value);
                            }
                        }
                    }
                }
                Json::Null => {}
                _ => {
                    return Err(Diagnostic::new(format!(
                        "the arguments of test '{test_name}' must be a mapping"
                    )))
                }
            }
            Ok(TestDeclaration {
                test_name,
                arguments,
                config,
                line: None,
                column: None,
            })
        }
        _ => Err(Diagnostic::new(
            "a test is a name or a mapping with a single test name as its key",
        )),
    }
}
