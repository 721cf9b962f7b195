//! The JSON documents of `target/`: `manifest.json` ([`Manifest`]), `run_results.json`
//! ([`RunResults`]) and `sources.json` ([`Sources`]).
//!
//! One definition serves both sides: [`crate::artifacts`] writes these types, and the readers
//! (the state comparison of [`crate::graph::state`], `tidemark retry`) read them back. A leaf
//! module (serde and std only), so every stage may use it without a cycle.
//!
//! Field order is key order in the files (serde_json keeps insertion order), so reordering a
//! field changes the artifacts. Readers accept files of earlier versions: a key an older
//! version did not write reads as its default (`#[serde(default)]`), and unknown keys are
//! ignored.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

/// `manifest.json`: every node of a project with its config, dependencies and checksums.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    #[serde(default)]
    pub metadata: ManifestMetadata,
    /// Models, seeds and tests by unique id. The one key a manifest cannot do without.
    pub nodes: BTreeMap<String, ManifestNode>,
    /// Source tables by unique id.
    #[serde(default)]
    pub sources: BTreeMap<String, ManifestSource>,
    /// Project macros by `macro.<project>.<name>`.
    #[serde(default)]
    pub macros: BTreeMap<String, MacroEntry>,
    /// Unique id → ids of the nodes it reads.
    #[serde(default)]
    pub parent_map: BTreeMap<String, Vec<String>>,
    /// Unique id → ids of the nodes that read it.
    #[serde(default)]
    pub child_map: BTreeMap<String, Vec<String>>,
    /// Exposures (dashboards, notebooks, applications) by `exposure.<project>.<name>`.
    #[serde(default)]
    pub exposures: BTreeMap<String, Exposure>,
    /// Groups (`groups:`) by unique id (`group.<project>.<name>`).
    #[serde(default)]
    pub groups: BTreeMap<String, Group>,
}

/// An exposure: something outside the project (a dashboard, a notebook, an application) that
/// reads its nodes, declared under `exposures:` in a property file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Exposure {
    pub unique_id: String,
    pub name: String,
    /// `dashboard`, `notebook`, `analysis`, `ml` or `application`.
    #[serde(rename = "type")]
    pub kind: String,
    pub owner: Json,
    pub description: String,
    pub url: Option<String>,
    pub maturity: Option<String>,
    pub depends_on: DependsOn,
    pub original_file_path: String,
}

/// A group of nodes and who owns it, declared under `groups:` in a property file; nodes join
/// with the `group` config, and `access: private` models are read only from their group.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Group {
    pub unique_id: String,
    pub name: String,
    pub owner: Json,
    pub description: String,
    pub original_file_path: String,
}

impl Manifest {
    /// The entry of a node or a source table.
    pub fn entry(&self, unique_id: &str) -> Option<&NodeEntry> {
        self.nodes
            .get(unique_id)
            .map(|node| &node.entry)
            .or_else(|| self.sources.get(unique_id).map(|source| &source.entry))
    }
}

/// `manifest.json`'s `metadata`: which project and target the manifest describes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ManifestMetadata {
    pub tidemark_version: String,
    /// The layout version (`0`: written before layouts had a version).
    pub artifact_version: u32,
    pub project_name: String,
    /// Name of the target the project was compiled for.
    pub target: Option<String>,
    pub schema: String,
    /// The target's warehouse: a local folder or a URL.
    pub warehouse: Option<String>,
}

/// What the manifest records of every node and source table alike.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeEntry {
    pub unique_id: String,
    pub name: String,
    /// `model`, `seed`, `test` or `source`.
    pub resource_type: String,
    pub original_file_path: String,
    /// `[project, folders..., name]`.
    pub fqn: Vec<String>,
    /// `table`, `incremental`, `view`, `ephemeral`, `seed`, `test` or `external`.
    pub materialized: String,
    /// The resolved config, as configured.
    pub config: BTreeMap<String, Json>,
    pub tags: Vec<String>,
    pub description: String,
    /// Documented columns by name.
    pub columns: BTreeMap<String, ColumnEntry>,
    pub depends_on: DependsOn,
    /// `schema.identifier` the node is read as (none for tests and ephemeral models).
    pub relation: Option<String>,
    /// Of what the node is made of (SQL as written, seed file, test or source declaration).
    pub checksum: Checksum,
    /// The vars the node reads and their values.
    pub vars: BTreeMap<String, Json>,
    /// The enforced contract, if any.
    pub contract: Option<Contract>,
}

/// A model, seed or test in `manifest.json`'s `nodes`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ManifestNode {
    #[serde(flatten)]
    pub entry: NodeEntry,
    /// Where the compiled SQL is written (executable and ephemeral nodes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compiled_path: Option<String>,
    /// A unit test's model and rows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit_test: Option<UnitTestEntry>,
    /// A generic data test's definition.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_metadata: Option<GenericTest>,
    /// A generic data test's severity: `error` or `warn`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    /// A model's `access`: `private`, `protected` or `public`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access: Option<String>,
    /// The `group` the node belongs to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// A model version's version, and its model's latest version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latest_version: Option<String>,
    /// Written by `docs generate`: for each column of the model, the columns of the nodes it
    /// reads that feed it (`<unique_id>.<column>`), from the logical plan of its compiled SQL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column_lineage: Option<BTreeMap<String, Vec<String>>>,
}

/// A source table in `manifest.json`'s `sources`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ManifestSource {
    #[serde(flatten)]
    pub entry: NodeEntry,
    /// Where the table's files are (`external_location`).
    pub location: Option<String>,
    /// The files' format.
    pub format: Option<String>,
}

/// A documented column.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ColumnEntry {
    pub description: String,
    pub data_type: Option<String>,
}

/// What a node reads: nodes, and the project macros it calls (directly or through others).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DependsOn {
    pub nodes: Vec<String>,
    /// `macro.<project>.<name>` ids.
    pub macros: Vec<String>,
}

/// A checksum and the algorithm that made it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Checksum {
    /// Always `sha256`.
    pub name: String,
    /// Hex digest.
    pub checksum: String,
}

impl Checksum {
    /// A SHA-256 hex digest.
    pub fn sha256(checksum: &str) -> Checksum {
        Checksum {
            name: "sha256".to_string(),
            checksum: checksum.to_string(),
        }
    }
}

/// An enforced model contract: `{"enforced": true, "columns": [[name, type], ...]}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Contract {
    pub enforced: bool,
    /// Declared columns and their SQL types, in order.
    pub columns: Vec<(String, Option<String>)>,
}

/// A generic data test (`unique`, `not_null`, `accepted_values`, `relationships`, or a
/// project's `{% test %}`): the graph's test nodes carry it, the manifest records it as
/// `test_metadata`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GenericTest {
    pub test_name: String,
    pub column_name: Option<String>,
    pub arguments: BTreeMap<String, Json>,
    /// The node the test was declared on.
    pub attached_node: String,
    /// The model, seed or source under test.
    pub tested_node: String,
    /// `where:` filter applied to the tested relation.
    pub where_clause: Option<String>,
}

/// A unit test: its model, given inputs and expected rows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct UnitTestEntry {
    /// Unique id of the model under test.
    pub model: String,
    pub given: Vec<GivenEntry>,
    pub expect: TestRows,
}

/// One given input of a unit test.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GivenEntry {
    /// The input as written (`ref('x')`, `source('a', 'b')`).
    pub input: String,
    /// Unique id of the input node.
    pub node: String,
    pub rows: TestRows,
}

/// Rows of a unit test's input or expectation: `{"format": ..., "rows": ...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "format", content = "rows")]
pub enum TestRows {
    /// One mapping per row.
    #[serde(rename = "dict")]
    Dicts(Vec<serde_json::Map<String, Json>>),
    /// CSV text with a header line.
    #[serde(rename = "csv")]
    Csv(String),
    /// A CSV fixture file, by name.
    #[serde(rename = "fixture")]
    Fixture(String),
}

impl Default for TestRows {
    /// No rows.
    fn default() -> TestRows {
        TestRows::Dicts(Vec::new())
    }
}

/// A project macro.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MacroEntry {
    pub name: String,
    pub original_file_path: String,
    /// Of the macro's definition text.
    pub checksum: Checksum,
}

/// `metadata` of `run_results.json` and `sources.json`: which invocation wrote the file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InvocationMetadata {
    pub tidemark_version: String,
    /// The layout version (`0`: written before layouts had a version).
    pub artifact_version: u32,
    pub invocation_id: String,
    /// RFC 3339, in UTC, with milliseconds.
    pub generated_at: String,
}

/// `run_results.json`: what one `build`, `run`, `seed` or `test` did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunResults {
    pub metadata: InvocationMetadata,
    /// `build`, `run`, `seed` or `test`.
    pub command: String,
    /// Name of the target.
    pub target: String,
    /// The options of the invocation, which `tidemark retry` runs with again.
    pub args: InvocationArgs,
    /// Seconds the whole invocation took.
    pub elapsed_time: f64,
    /// One per node run, in the order they finished.
    pub results: Vec<RunResult>,
}

/// The options a run was invoked with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InvocationArgs {
    pub select: Vec<String>,
    pub exclude: Vec<String>,
    pub selector: Option<String>,
    /// `--state DIR`.
    pub state: Option<PathBuf>,
    pub defer: bool,
    pub favor_state: bool,
    pub full_refresh: bool,
    pub store_failures: bool,
    pub event_time_start: Option<String>,
    pub event_time_end: Option<String>,
    /// Seconds to wait for another run's locks.
    pub lock_timeout: u64,
    /// Threads the run used (absent: the target's setting).
    pub threads: Option<usize>,
    pub fail_fast: bool,
    /// `--vars`, as given.
    pub vars: Option<String>,
}

impl Default for InvocationArgs {
    /// The options of a plain run: nothing selected or set, the default lock timeout (600 s).
    fn default() -> InvocationArgs {
        InvocationArgs {
            select: Vec::new(),
            exclude: Vec::new(),
            selector: None,
            state: None,
            defer: false,
            favor_state: false,
            full_refresh: false,
            store_failures: false,
            event_time_start: None,
            event_time_end: None,
            lock_timeout: 600,
            threads: None,
            fail_fast: false,
            vars: None,
        }
    }
}

/// How a node ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeStatus {
    /// A model or seed was built.
    Success,
    /// A model or seed could not be built.
    Error,
    /// Not run because something it depends on failed (or `--fail-fast` stopped the run); also
    /// what a saved result without a status reads as.
    #[default]
    Skipped,
    /// A test found no failing rows.
    Pass,
    /// A test (severity error) found failing rows.
    Fail,
    /// A test (severity warn) found failing rows.
    Warn,
}

impl NodeStatus {
    pub fn is_failure(self) -> bool {
        matches!(self, NodeStatus::Error | NodeStatus::Fail)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Success => "success",
            NodeStatus::Error => "error",
            NodeStatus::Skipped => "skipped",
            NodeStatus::Pass => "pass",
            NodeStatus::Fail => "fail",
            NodeStatus::Warn => "warn",
        }
    }
}

/// The result of one node in `run_results.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunResult {
    pub unique_id: String,
    pub status: NodeStatus,
    /// Seconds the node took.
    pub execution_time: f64,
    pub started_at: Option<String>,
    pub completed_at: Option<String>,
    /// Rows written (models, seeds).
    pub rows_affected: Option<u64>,
    /// Failing rows (tests).
    pub failures: Option<u64>,
    pub bytes_written: Option<u64>,
    /// Rows the node's scans read from storage.
    pub rows_scanned: Option<u64>,
    /// Bytes the node's scans fetched from storage.
    pub bytes_scanned: Option<u64>,
    /// Table version committed.
    pub version: Option<u64>,
    /// Short outcome, e.g. `OK 1204`, `CREATE VIEW`, `PASS`, `FAIL 3`.
    pub message: String,
    /// What went wrong, for errors and skips.
    pub error: Option<String>,
    pub compiled_path: Option<String>,
}

impl RunResult {
    /// A node that did not run, and why.
    pub fn skipped(unique_id: &str, reason: String) -> RunResult {
        RunResult {
            unique_id: unique_id.to_string(),
            status: NodeStatus::Skipped,
            message: "SKIP".into(),
            error: Some(reason),
            ..Default::default()
        }
    }
}

/// `sources.json`: the results of `tidemark source freshness`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Sources {
    pub metadata: InvocationMetadata,
    /// Seconds the whole invocation took.
    pub elapsed_time: f64,
    /// One per checked source table.
    pub results: Vec<SourceFreshness>,
}

/// How fresh one source table is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SourceFreshness {
    pub unique_id: String,
    /// `pass`, `warn`, `error` or `runtime error`.
    pub status: String,
    /// The newest `loaded_at_field` value.
    pub max_loaded_at: Option<String>,
    /// When the check ran (RFC 3339, UTC, seconds).
    pub snapshotted_at: String,
    /// Age of the newest row in seconds.
    pub max_loaded_at_time_ago_in_s: Option<f64>,
    pub criteria: FreshnessCriteria,
    /// The table's `loaded_at_field`, as configured.
    pub loaded_at_field: Option<Json>,
    pub error: Option<String>,
}

/// The `freshness:` a source table was checked against.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FreshnessCriteria {
    pub warn_after: Option<FreshnessLimit>,
    pub error_after: Option<FreshnessLimit>,
    /// SQL condition the newest row is looked for under.
    pub filter: Option<String>,
}

/// `{count: 12, period: hour}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FreshnessLimit {
    pub count: u64,
    /// `minute`, `hour` or `day`.
    pub period: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_and_nodes_share_their_entry_and_keep_their_key_order() {
        let entry = NodeEntry {
            unique_id: "source.p.s.t".into(),
            relation: Some("s.t".into()),
            ..NodeEntry::default()
        };
        let source = ManifestSource {
            entry: entry.clone(),
            location: None,
            format: Some("csv".into()),
        };
        let text = serde_json::to_string(&source).unwrap();
        assert!(text.starts_with(r#"{"unique_id":"source.p.s.t","name":"#), "{text}");
        assert!(
            text.ends_with(r#""contract":null,"location":null,"format":"csv"}"#),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<ManifestSource>(&text).unwrap(), source);

        // Keys a node does not have are left out, not written as null.
        let node = ManifestNode {
            entry,
            ..ManifestNode::default()
        };
        let text = serde_json::to_string(&node).unwrap();
        assert!(text.ends_with(r#""contract":null}"#), "{text}");
        assert_eq!(serde_json::from_str::<ManifestNode>(&text).unwrap(), node);
    }

    #[test]
    fn older_documents_read_with_defaults() {
        // A manifest from before checksums, vars, contracts and artifact versions.
        let manifest: Manifest = serde_json::from_str(
            r#"{"metadata": {"project_name": "p"},
                "nodes": {"model.p.a": {"unique_id": "model.p.a", "config": {"materialized": "view"},
                                        "depends_on": {"nodes": []}}}}"#,
        )
        .unwrap();
        assert_eq!(manifest.metadata.artifact_version, 0);
        assert_eq!(manifest.metadata.warehouse, None);
        let entry = manifest.entry("model.p.a").unwrap();
        assert_eq!(entry.config["materialized"], "view");
        assert!(entry.checksum.checksum.is_empty() && entry.vars.is_empty() && entry.contract.is_none());
        assert!(manifest.entry("model.p.b").is_none());

        let error = serde_json::from_str::<Manifest>(r#"{"metadata": {}}"#).unwrap_err();
        assert!(error.to_string().contains("missing field `nodes`"), "{error}");

        let results: RunResults =
            serde_json::from_str(r#"{"command": "run", "args": {"select": ["a"]}, "results": [{"unique_id": "a"}]}"#)
                .unwrap();
        assert_eq!(results.args.lock_timeout, 600);
        assert_eq!(results.args.threads, None);
        assert_eq!(results.results[0].status, NodeStatus::Skipped);
        assert_eq!(RunResults::default().args.lock_timeout, 600);
    }

    #[test]
    fn unit_test_rows_are_tagged_with_their_format() {
        let given = GivenEntry {
            input: "ref('a')".into(),
            node: "model.p.a".into(),
            rows: TestRows::Csv("id\n1\n".into()),
        };
        let text = serde_json::to_string(&given).unwrap();
        assert_eq!(
            text,
            r#"{"input":"ref('a')","node":"model.p.a","rows":{"format":"csv","rows":"id\n1\n"}}"#
        );
        assert_eq!(serde_json::from_str::<GivenEntry>(&text).unwrap(), given);
    }
}
