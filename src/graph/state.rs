//! Comparing a project with a saved run: `state:` and `result:` selectors and `--defer`.
//!
//! `--state DIR` points at the `target/` folder of another invocation (usually the production
//! run's, kept as a CI artifact). Its `manifest.json` records, for every node, the checksum of
//! what the node is made of, its resolved config, the project macros it calls and the values of
//! the vars it reads, and every macro's checksum; [`State::changes`] compares them with the current project. Its
//! `run_results.json` (if present) gives `result:<status>`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::{Graph, Materialization, Node, ResourceType};
use crate::diagnostics::Diagnostic;
use crate::documents::{Contract, Manifest, NodeEntry, RunResults};
use crate::project::{sha256, Project};
use crate::template::TemplateEngine;

/// Fills in each node's checksum and the macros it calls (directly or through other macros).
pub fn fingerprint(nodes: &mut BTreeMap<String, Node>, project: &Project, engine: &TemplateEngine) {
    let seeds: BTreeMap<&str, &str> = project
        .seeds
        .iter()
        .map(|seed| (seed.path.as_str(), seed.checksum.as_str()))
        .collect();
    // Macros each macro calls directly; a node's direct calls were recorded by its parse render.
    let direct = engine.macro_calls();
    let closure = |start: BTreeSet<String>| -> Vec<String> {
        let mut seen = BTreeSet::new();
        let mut frontier: Vec<String> = start.into_iter().collect();
        while let Some(name) = frontier.pop() {
            if seen.insert(name.clone()) {
                frontier.extend(direct.get(name.as_str()).into_iter().flatten().cloned());
            }
        }
        seen.into_iter().collect()
    };
    for node in nodes.values_mut() {
        node.checksum = match node.resource_type {
            ResourceType::Seed => seeds.get(node.path.as_str()).copied().unwrap_or_default().to_string(),
            ResourceType::Source => sha256(
                serde_json::json!({"location": node.files(), "format": node.file_format(), "relation": node.relation().map(|r| &r.identifier)})
                    .to_string()
                    .as_bytes(),
            ),
            _ => match node.generic_test() {
                Some(test) => sha256(serde_json::to_string(test).expect("test serialises").as_bytes()),
                None => sha256(node.raw_code.as_bytes()),
            },
        };
        node.macros = closure(std::mem::take(&mut node.macros).into_iter().collect());
    }
}

/// A saved invocation to compare with.
#[derive(Debug)]
pub struct State {
    pub folder: PathBuf,
    manifest: Manifest,
    run_results: Option<RunResults>,
}

/// Why a node counts as modified (`state:modified.<kind>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    Body,
    Configs,
    Macros,
    Contract,
    /// A var the node reads has another value.
    Vars,
}

impl State {
    /// Reads `manifest.json` (required) and `run_results.json` (optional: an unreadable one
    /// counts as missing) from `folder`.
    pub fn load(folder: &Path) -> Result<State, Diagnostic> {
        let manifest_path = folder.join("manifest.json");
        let text = std::fs::read_to_string(&manifest_path).map_err(|error| {
            Diagnostic::new(format!(
                "--state {}: cannot read manifest.json: {error}",
                folder.display()
            ))
            .with_help("point --state at the target/ folder of the run to compare with (it holds manifest.json)")
        })?;
        let manifest: Manifest = serde_json::from_str(&text).map_err(|error| {
            Diagnostic::new(format!(
                "{} is not a tidemark manifest: {error}",
                manifest_path.display()
            ))
        })?;
        let run_results = std::fs::read_to_string(folder.join("run_results.json"))
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok());
        Ok(State {
            folder: folder.to_path_buf(),
            manifest,
            run_results,
        })
    }

    /// The saved manifest's entry of a node or source.
    pub fn node(&self, unique_id: &str) -> Option<&NodeEntry> {
        self.manifest.entry(unique_id)
    }

    /// The saved run's warehouse (a URL), if the manifest records it.
    pub fn warehouse(&self) -> Option<&str> {
        self.manifest.metadata.warehouse.as_deref()
    }

    /// The name of the saved run's target.
    pub fn target_name(&self) -> Option<&str> {
        self.manifest.metadata.target.as_deref()
    }

    /// The node's `schema.identifier` in the saved run.
    pub fn relation(&self, unique_id: &str) -> Option<&str> {
        self.node(unique_id)?.relation.as_deref()
    }

    /// Whether the saved manifest has the node.
    pub fn has(&self, unique_id: &str) -> bool {
        self.node(unique_id).is_some()
    }

    /// How `node` differs from its saved version (empty: unmodified, or new).
    pub fn changes(&self, graph: &Graph, node: &Node) -> BTreeSet<Change> {
        let mut changes = BTreeSet::new();
        let Some(saved) = self.node(&node.unique_id) else {
            return changes;
        };
        if saved.checksum.checksum != node.checksum || self.upstream_ephemeral_changed(graph, node) {
            changes.insert(Change::Body);
        }
        if saved.config != node.config {
            changes.insert(Change::Configs);
        }
        let macro_changed = node.macros.iter().any(|name| {
            let id = format!("macro.{}.{name}", graph.project_name);
            let saved_checksum = self
                .manifest
                .macros
                .get(&id)
                .map(|saved| saved.checksum.checksum.as_str());
            saved_checksum != Some(self_macro_checksum(graph, name).as_str())
        });
        if macro_changed || saved.depends_on.macros != macro_ids(graph, node) {
            changes.insert(Change::Macros);
        }
        if saved.vars != node.vars {
            changes.insert(Change::Vars);
        }
        if saved.contract != contract_of(node) {
            changes.insert(Change::Contract);
        }
        changes
    }

    /// An ephemeral model is compiled into the models that read it, so its change is theirs.
    fn upstream_ephemeral_changed(&self, graph: &Graph, node: &Node) -> bool {
        node.depends_on.iter().any(|parent| {
            let parent = &graph.nodes[parent];
            parent.materialized == Materialization::Ephemeral
                && (self
                    .node(&parent.unique_id)
                    .map(|saved| saved.checksum.checksum.as_str())
                    != Some(parent.checksum.as_str())
                    || self.upstream_ephemeral_changed(graph, parent))
        })
    }

    /// Ids of nodes whose status in the saved `run_results.json` is `status` (`skip` is an
    /// alias of `skipped`).
    pub fn with_result(&self, status: &str) -> Result<BTreeSet<String>, Diagnostic> {
        let status = if status == "skip" { "skipped" } else { status };
        let Some(run_results) = &self.run_results else {
            return Err(Diagnostic::new(format!(
                "'result:' needs {}/run_results.json, which is missing",
                self.folder.display()
            )));
        };
        Ok(run_results
            .results
            .iter()
            .filter(|result| result.status.as_str() == status)
            .map(|result| result.unique_id.clone())
            .collect())
    }

    /// The saved run's `run_results.json`, if there is one.
    pub fn run_results(&self) -> Option<&RunResults> {
        self.run_results.as_ref()
    }
}

/// The checksum recorded for a project macro: that of its definition text.
fn self_macro_checksum(graph: &Graph, name: &str) -> String {
    graph
        .macros
        .get(name)
        .map(|(_, checksum)| checksum.clone())
        .unwrap_or_default()
}

/// `macro.<project>.<name>` of every macro a node calls.
pub fn macro_ids(graph: &Graph, node: &Node) -> Vec<String> {
    node.macros
        .iter()
        .map(|name| format!("macro.{}.{name}", graph.project_name))
        .collect()
}

/// A model's enforced contract as the manifest records it (none unless enforced).
pub fn contract_of(node: &Node) -> Option<Contract> {
    if !node.contract_enforced() {
        return None;
    }
    let columns = node
        .columns
        .iter()
        .map(|column| (column.name.clone(), column.data_type.clone()))
        .collect();
    Some(Contract {
        enforced: true,
        columns,
    })
}
