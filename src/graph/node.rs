//! The nodes of the DAG: models, seeds, tests and sources, with their resolved configs.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value as Json;

use crate::project::{ColumnProperties, ConfigMap};
use crate::template::{RefCall, RelationName, SourceCall};

/// What a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceType {
    Model,
    Seed,
    Test,
    Source,
}

impl ResourceType {
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceType::Model => "model",
            ResourceType::Seed => "seed",
            ResourceType::Test => "test",
            ResourceType::Source => "source",
        }
    }
}

/// How a model is materialised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Materialization {
    /// Parquet in the warehouse, committed atomically.
    Table,
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
}

impl Materialization {
    pub fn as_str(self) -> &'static str {
        match self {
            Materialization::Table => "table",
            Materialization::View => "view",
            Materialization::Ephemeral => "ephemeral",
            Materialization::Seed => "seed",
            Materialization::Test => "test",
            Materialization::External => "external",
        }
    }

    /// Parses a model's `materialized` config.
    pub fn for_model(name: &str) -> Result<Materialization, String> {
        match name {
            "table" => Ok(Materialization::Table),
            "view" => Ok(Materialization::View),
            "ephemeral" => Ok(Materialization::Ephemeral),
            other => Err(format!(
                "unknown materialization '{other}'; tidemark supports table, view and ephemeral"
            )),
        }
    }
}

/// `error` fails the run; `warn` reports and goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Error,
    Warn,
}

/// A generic data test (`unique`, `not_null`, `accepted_values`, `relationships`).
#[derive(Debug, Clone, Serialize)]
pub struct GenericTest {
    pub test_name: String,
    pub column_name: Option<String>,
    pub arguments: BTreeMap<String, Json>,
    /// The node the test was declared on.
    pub attached_node: String,
    /// Unique id of the model, seed or source under test.
    pub tested_node: String,
    /// `where:` filter applied to the tested relation.
    pub where_clause: Option<String>,
}

/// A node of the project.
#[derive(Debug, Clone, Serialize)]
pub struct Node {
    /// `model.<project>.<name>`, `seed.…`, `test.…`, `source.<project>.<source>.<table>`.
    pub unique_id: String,
    pub name: String,
    pub resource_type: ResourceType,
    /// File the node comes from (for generic tests: the property file declaring it).
    pub path: String,
    pub line: Option<usize>,
    /// `[project, folders..., name]`.
    pub fqn: Vec<String>,
    pub materialized: Materialization,
    /// Resolved config (project folders < property file < `config()` in the model).
    pub config: ConfigMap,
    pub tags: Vec<String>,
    pub description: String,
    #[serde(skip)]
    pub columns: Vec<ColumnProperties>,
    /// The relation the node is read as (`None` for tests and ephemeral models).
    #[serde(skip)]
    pub relation: Option<RelationName>,
    /// Model / singular test SQL as written.
    #[serde(skip)]
    pub raw_code: String,
    #[serde(skip)]
    pub refs: Vec<RefCall>,
    #[serde(skip)]
    pub sources: Vec<SourceCall>,
    /// Unique ids of the nodes this one reads, sorted.
    pub depends_on: Vec<String>,
    pub severity: Severity,
    pub test: Option<GenericTest>,
    /// Source tables: where the files are and their format.
    pub location: Option<String>,
    pub format: Option<String>,
}

impl Node {
    /// Whether the node produces data in the warehouse when it runs.
    pub fn writes_table(&self) -> bool {
        matches!(self.materialized, Materialization::Table | Materialization::Seed)
    }

    /// Whether the node is something `run`/`build` executes (not sources or ephemeral models).
    pub fn is_executable(&self) -> bool {
        !matches!(
            self.materialized,
            Materialization::External | Materialization::Ephemeral
        )
    }

    /// `schema.identifier` for display.
    pub fn display_relation(&self) -> String {
        match &self.relation {
            Some(relation) => format!("{}.{}", relation.schema, relation.identifier),
            None => self.name.clone(),
        }
    }
}
