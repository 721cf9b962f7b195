//! The nodes of the DAG: models, seeds, tests and sources, with their resolved configs.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value as Json;

use crate::diagnostics::Diagnostic;
use crate::project::{ColumnProperties, ConfigMap};
use crate::relation::RelationName;
use crate::template::{RefCall, SourceCall};

mod configs;
mod snapshot;

pub use snapshot::{HardDeletes, SnapshotSpec, SnapshotStrategy};

/// The config of a test that only reports: the nodes downstream of what it tests do not wait
/// for it (the tests metric models generate over alert cases).
pub const REPORT_ONLY: &str = "tidemark_report_only";

/// What a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceType {
    Model,
    Seed,
    Test,
    Source,
    Snapshot,
}

impl ResourceType {
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceType::Model => "model",
            ResourceType::Seed => "seed",
            ResourceType::Test => "test",
            ResourceType::Source => "source",
            ResourceType::Snapshot => "snapshot",
        }
    }
}

/// How a model is materialised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Materialization {
    /// Parquet in the warehouse, committed atomically.
    Table,
    /// A table that later runs add to or update (`incremental_strategy`) rather than rebuild.
    Incremental,
    /// Not written: its SQL is resolved wherever it is used.
    View,
    /// Inlined as a CTE into the models that use it.
    Ephemeral,
    /// Seeds: CSV loaded into a table.
    Seed,
    /// Tests: a query whose rows are failures.
    Test,
    /// Sources: read, never built.
    External,
    /// Snapshots: a table of every version of each row (type-2 slowly changing dimension).
    Snapshot,
}

impl Materialization {
    pub fn as_str(self) -> &'static str {
        match self {
            Materialization::Table => "table",
            Materialization::Incremental => "incremental",
            Materialization::View => "view",
            Materialization::Ephemeral => "ephemeral",
            Materialization::Seed => "seed",
            Materialization::Test => "test",
            Materialization::External => "external",
            Materialization::Snapshot => "snapshot",
        }
    }

    /// Parses a model's `materialized` config.
    pub fn for_model(name: &str) -> Result<Materialization, Diagnostic> {
        match name {
            "table" => Ok(Materialization::Table),
            "incremental" => Ok(Materialization::Incremental),
            "view" => Ok(Materialization::View),
            "ephemeral" => Ok(Materialization::Ephemeral),
            other => Err(Diagnostic::new(format!(
                "unknown materialization '{other}'; tidemark supports table, incremental, view and ephemeral"
            ))),
        }
    }
}

/// `incremental_strategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// New rows are added.
    Append,
    /// New rows replace the rows with the same `unique_key` (NULL keys match NULL keys); the key
    /// must be unique among the new rows.
    Merge,
    /// Rows whose `unique_key` appears among the new rows are deleted, then the new rows added.
    DeleteInsert,
    /// The partitions the new rows fall in are replaced whole.
    InsertOverwrite,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Append => "append",
            Strategy::Merge => "merge",
            Strategy::DeleteInsert => "delete+insert",
            Strategy::InsertOverwrite => "insert_overwrite",
        }
    }
}

/// `on_schema_change`: what an incremental run does when the model's columns changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaChange {
    /// Keep the table's columns; new columns are dropped, missing ones written as NULL.
    Ignore,
    /// Stop with the difference.
    Fail,
    /// Add new columns (NULL in existing rows); keep columns the model no longer returns.
    AppendNewColumns,
    /// Make the table's columns the model's: add new, drop removed, cast changed types.
    SyncAllColumns,
}

/// An incremental model's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incremental {
    pub strategy: Strategy,
    pub unique_key: Vec<String>,
    pub on_schema_change: SchemaChange,
    /// `full_refresh: false` protects a table from `--full-refresh`.
    pub full_refresh: Option<bool>,
}

/// A config value that is a string or a list of strings.
fn string_list(value: Option<&serde_json::Value>) -> Vec<String> {
    match value {
        Some(serde_json::Value::String(text)) => text
            .split(',')
            .map(|part| part.trim().to_string())
            .filter(|part| !part.is_empty())
            .collect(),
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .filter_map(|item| item.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

/// `error` fails the run; `warn` reports and goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Error,
    Warn,
}

pub use crate::documents::GenericTest;

/// How a [`Threshold`] compares the failing-row count with its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    /// `!=` (or `<>`)
    NotEqual,
    /// `=` (or `==`)
    Equal,
    Greater,
    GreaterOrEqual,
    Less,
    LessOrEqual,
}

impl Comparison {
    /// The operators as written, longest first so `>=` is not read as `>`.
    const SPELLINGS: [(&'static str, Comparison); 8] = [
        ("!=", Comparison::NotEqual),
        ("<>", Comparison::NotEqual),
        ("==", Comparison::Equal),
        (">=", Comparison::GreaterOrEqual),
        ("<=", Comparison::LessOrEqual),
        ("=", Comparison::Equal),
        (">", Comparison::Greater),
        ("<", Comparison::Less),
    ];

    fn as_str(self) -> &'static str {
        match self {
            Comparison::NotEqual => "!=",
            Comparison::Equal => "=",
            Comparison::Greater => ">",
            Comparison::GreaterOrEqual => ">=",
            Comparison::Less => "<",
            Comparison::LessOrEqual => "<=",
        }
    }
}

/// A condition on a test's failing-row count: `>10`, `!=0`, `>=5`, `=0`, `<3`, `<=3`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Threshold {
    pub comparison: Comparison,
    pub value: u64,
}

impl Threshold {
    pub fn parse(text: &str) -> Result<Threshold, Diagnostic> {
        let text = text.trim();
        let written: String = text.chars().take_while(|c| "<>=!".contains(*c)).collect();
        let Some((spelling, comparison)) = Comparison::SPELLINGS.iter().find(|(spelling, _)| *spelling == written)
        else {
            return Err(Diagnostic::new(format!(
                "'{text}' is not a condition on the failing-row count; write one of !=0, >10, >=5, =0, <3, <=3"
            )));
        };
        let value = text[spelling.len()..]
            .trim()
            .parse::<u64>()
            .map_err(|_| Diagnostic::new(format!("'{text}' must compare with a whole number of rows, e.g. >10")))?;
        Ok(Threshold {
            comparison: *comparison,
            value,
        })
    }

    pub fn holds(&self, failures: u64) -> bool {
        match self.comparison {
            Comparison::NotEqual => failures != self.value,
            Comparison::Equal => failures == self.value,
            Comparison::Greater => failures > self.value,
            Comparison::GreaterOrEqual => failures >= self.value,
            Comparison::Less => failures < self.value,
            Comparison::LessOrEqual => failures <= self.value,
        }
    }
}

impl std::fmt::Display for Threshold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", self.comparison.as_str(), self.value)
    }
}

/// A unit test (`unit_tests:`): the model under test run offline on given rows.
#[derive(Debug, Clone, Serialize)]
pub struct UnitTest {
    /// Unique id of the model under test.
    pub model: String,
    /// Given inputs: unique id of the input node, the input as written, its rows.
    pub given: Vec<(String, String, crate::project::Rows)>,
    pub expect: crate::project::Rows,
    /// Run the model as an incremental run (`is_incremental()` true; `this` is given).
    pub incremental: bool,
    /// Vars the model is rendered with (`overrides: {vars: ...}`).
    pub vars: BTreeMap<String, Json>,
}

/// What only one kind of node has.
#[derive(Debug, Clone)]
pub enum Resource {
    /// A view, table or incremental model: the relation it is read as.
    Model { relation: RelationName },
    /// An ephemeral model: inlined into the models that use it, so it has no relation.
    Ephemeral,
    /// A seed: its CSV file and the table it is loaded into.
    Seed { relation: RelationName, file: String },
    /// A source table: the relation models read, and its files and their format when declared
    /// (without a location it is a table of the warehouse).
    Source {
        relation: RelationName,
        location: Option<String>,
        format: Option<crate::project::SourceFormat>,
    },
    /// A snapshot: the table of versions it keeps, and how it tells versions apart.
    Snapshot { relation: RelationName, spec: SnapshotSpec },
    /// A data or unit test: its severity and, for a generic test, what it tests.
    Test {
        severity: Severity,
        generic: Option<GenericTest>,
    },
}

impl Resource {
    /// The resource type this data belongs to.
    pub fn resource_type(&self) -> ResourceType {
        match self {
            Resource::Model { .. } | Resource::Ephemeral => ResourceType::Model,
            Resource::Seed { .. } => ResourceType::Seed,
            Resource::Source { .. } => ResourceType::Source,
            Resource::Snapshot { .. } => ResourceType::Snapshot,
            Resource::Test { .. } => ResourceType::Test,
        }
    }
}

/// A node of the project.
#[derive(Debug, Clone)]
pub struct Node {
    /// `model.<project>.<name>`, `seed.…`, `test.…`, `source.<project>.<source>.<table>`.
    pub unique_id: String,
    pub name: String,
    pub resource_type: ResourceType,
    /// File the node comes from (for generic tests: the property file declaring it).
    pub path: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// `[project, folders..., name]`.
    pub fqn: Vec<String>,
    pub materialized: Materialization,
    /// Resolved config (project folders < property file < `config()` in the model).
    pub config: ConfigMap,
    pub tags: Vec<String>,
    pub description: String,
    pub columns: Vec<ColumnProperties>,
    /// What only this kind of node has: relation, files, test.
    pub resource: Resource,
    /// Model / singular test SQL as written.
    pub raw_code: String,
    pub refs: Vec<RefCall>,
    pub sources: Vec<SourceCall>,
    /// Unique ids of the nodes this one reads, sorted.
    pub depends_on: Vec<String>,
    /// SHA-256 of what the node is made of (SQL as written, seed file, test definition, source
    /// declaration); `state:modified.body` compares it with a saved manifest.
    pub checksum: String,
    /// Project macros the node calls, directly or through other macros, sorted.
    pub macros: Vec<String>,
    /// The vars its SQL read while parsing (`var('name')`, also inside macros) and their values.
    pub vars: std::collections::BTreeMap<String, Json>,
    /// Its SQL runs queries while compiling (`run_query`, `statement`): compiled again right
    /// before it runs, once what it reads is built.
    pub introspective: bool,
    /// A versioned model's version (`versions:` in its properties), and the version an
    /// unpinned `ref()` of its name reads.
    pub version: Option<String>,
    pub latest_version: Option<String>,
}

impl Node {
    /// A node with nothing resolved yet: no config, tags, columns, code, dependencies or
    /// checksum. Its resource type is `resource`'s. Callers fill in the rest with struct update
    /// syntax.
    pub fn new(
        unique_id: String,
        name: String,
        path: String,
        materialized: Materialization,
        resource: Resource,
    ) -> Node {
        Node {
            unique_id,
            name,
            resource_type: resource.resource_type(),
            path,
            line: None,
            column: None,
            fqn: Vec::new(),
            materialized,
            config: ConfigMap::new(),
            tags: Vec::new(),
            description: String::new(),
            columns: Vec::new(),
            resource,
            raw_code: String::new(),
            refs: Vec::new(),
            sources: Vec::new(),
            depends_on: Vec::new(),
            checksum: String::new(),
            macros: Vec::new(),
            vars: BTreeMap::new(),
            introspective: false,
            version: None,
            latest_version: None,
        }
    }

    /// The package (or project) the node belongs to.
    pub fn package(&self) -> &str {
        self.fqn.first().map(String::as_str).unwrap_or_default()
    }

    /// How the node is named to people: `name`, or `name.v2` for a model version.
    pub fn display_name(&self) -> String {
        match &self.version {
            Some(version) => format!("{}.v{version}", self.name),
            None => self.name.clone(),
        }
    }

    /// `access` of a model: `private`, `protected` (the default) or `public`.
    pub fn access(&self) -> &str {
        self.config.get("access").and_then(Json::as_str).unwrap_or("protected")
    }

    /// The `group` the node belongs to, if any.
    pub fn group(&self) -> Option<&str> {
        self.config.get("group").and_then(Json::as_str)
    }

    /// The relation a model (not ephemeral), seed or source is read as.
    pub fn relation(&self) -> Option<&RelationName> {
        match &self.resource {
            Resource::Model { relation }
            | Resource::Seed { relation, .. }
            | Resource::Source { relation, .. }
            | Resource::Snapshot { relation, .. } => Some(relation),
            Resource::Ephemeral | Resource::Test { .. } => None,
        }
    }

    /// Where a seed's CSV file or a source's files are.
    pub fn files(&self) -> Option<&str> {
        match &self.resource {
            Resource::Seed { file, .. } => Some(file),
            Resource::Source { location, .. } => location.as_deref(),
            _ => None,
        }
    }

    /// The format of a seed's or source's files (seeds are CSV).
    pub fn file_format(&self) -> Option<crate::project::SourceFormat> {
        match &self.resource {
            Resource::Seed { .. } => Some(crate::project::SourceFormat::Csv),
            Resource::Source { format, .. } => *format,
            _ => None,
        }
    }

    /// A test's severity (`error` for every other node).
    pub fn severity(&self) -> Severity {
        match &self.resource {
            Resource::Test { severity, .. } => *severity,
            _ => Severity::Error,
        }
    }

    /// What a generic data test tests.
    pub fn generic_test(&self) -> Option<&GenericTest> {
        match &self.resource {
            Resource::Test { generic, .. } => generic.as_ref(),
            _ => None,
        }
    }

    /// The statements of its `pre_hook`s or `post_hook`s (`key`), as written: dbt's strings and
    /// `{sql: ...}` mappings, project-level hooks first.
    pub fn hooks(&self, key: &str) -> Vec<String> {
        let statement = |hook: &Json| match hook {
            Json::String(sql) => Some(sql.clone()),
            Json::Object(map) => map.get("sql").and_then(Json::as_str).map(str::to_string),
            _ => None,
        };
        match self.config.get(key) {
            Some(Json::Array(hooks)) => hooks.iter().filter_map(statement).collect(),
            Some(one) => statement(one).into_iter().collect(),
            None => Vec::new(),
        }
        .into_iter()
        .filter(|sql| !sql.trim().is_empty())
        .collect()
    }

    /// Whether the node produces data in the warehouse when it runs.
    pub fn writes_table(&self) -> bool {
        matches!(
            self.materialized,
            Materialization::Table | Materialization::Incremental | Materialization::Seed | Materialization::Snapshot
        )
    }

    /// Whether the node is something `run`/`build` executes (not sources or ephemeral models).
    pub fn is_executable(&self) -> bool {
        !matches!(
            self.materialized,
            Materialization::External | Materialization::Ephemeral
        )
    }

    /// Whether the node is a unit test (`unit_tests:` in a property file).
    pub fn is_unit_test(&self) -> bool {
        self.resource_type == ResourceType::Test && self.config.get("test_type").and_then(Json::as_str) == Some("unit")
    }

    /// `warn_if` / `error_if` of a test (default `!=0`): the failing-row counts that warn or fail.
    pub fn threshold(&self, key: &str) -> Result<Threshold, Diagnostic> {
        match self.config.get(key) {
            None => Ok(Threshold {
                comparison: Comparison::NotEqual,
                value: 0,
            }),
            Some(Json::String(text)) => {
                Threshold::parse(text).map_err(|problem| Diagnostic::new(format!("{key}: {}", problem.message)))
            }
            Some(Json::Number(n)) if n.as_u64().is_some() => Ok(Threshold {
                comparison: Comparison::Equal,
                value: n.as_u64().unwrap_or_default(),
            }),
            Some(other) => Err(Diagnostic::new(format!(
                "{key} is a condition on the failing-row count such as \">10\", not {other}"
            ))),
        }
    }

    /// `schema.identifier` for display.
    pub fn display_relation(&self) -> String {
        match self.relation() {
            Some(relation) => format!("{}.{}", relation.schema, relation.identifier),
            None => self.name.clone(),
        }
    }
}
