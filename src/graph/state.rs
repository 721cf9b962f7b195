//! Comparing a project with a saved run: `state:` and `result:` selectors and `--defer`.
//!
//! `--state DIR` points at the `target/` folder of another invocation (usually the production
//! run's, kept as a CI artifact). Its `manifest.json` records, for every node, the checksum of
//! what the node is made of, its resolved config, the project macros it calls and the values of
//! the vars it reads, and every macro's checksum; [`State::changes`] compares them with the current project. Its
//! `run_results.json` (if present) gives `result:<status>`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value as Json;

use super::{Graph, Materialization, Node, ResourceType};
use crate::diagnostics::Diagnostic;
use crate::project::{sha256, Project};
use crate::template::TemplateEngine;

/// Fills in each node's checksum and the macros it calls (directly or through other macros).
pub fn fingerprint(nodes: &mut BTreeMap<String, Node>, project: &Project, engine: &TemplateEngine) {
    let seeds: BTreeMap<&str, &str> = project
        .seeds
        .iter()
        .map(|seed| (seed.path.as_str(), seed.checksum.as_str()))
        .collect();
    let macros = engine.macros();
    // Macros each macro calls, then their closure.
    let calls = |text: &str| -> BTreeSet<String> {
        called_names(text)
            .into_iter()
            .filter(|name| macros.contains_key(*name))
            .map(str::to_string)
            .collect()
    };
    let direct: BTreeMap<&str, BTreeSet<String>> = macros
        .iter()
        .map(|(name, definition)| (name.as_str(), calls(&definition.text)))
        .collect();
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
                serde_json::json!({"location": node.location, "format": node.format, "relation": node.relation.as_ref().map(|r| &r.identifier)})
                    .to_string()
                    .as_bytes(),
            ),
            _ => match &node.test {
                Some(test) => sha256(serde_json::to_string(test).expect("test serialises").as_bytes()),
                None => sha256(node.raw_code.as_bytes()),
            },
        };
        node.macros = closure(calls(&node.raw_code));
    }
}

/// Every name `text` calls as a function: a word followed by `(`, not an attribute (`x.name(`).
/// One pass over the text, whatever the number of macros.
fn called_names(text: &str) -> BTreeSet<&str> {
    let bytes = text.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut names = BTreeSet::new();
    let mut at = 0;
    while at < bytes.len() {
        if !word(bytes[at]) {
            at += 1;
            continue;
        }
        let start = at;
        while at < bytes.len() && word(bytes[at]) {
            at += 1;
        }
        let after = text[at..].trim_start();
        if after.starts_with('(') && (start == 0 || bytes[start - 1] != b'.') {
            names.insert(&text[start..at]);
        }
    }
    names
}

/// A saved invocation to compare with.
#[derive(Debug)]
pub struct State {
    pub folder: PathBuf,
    manifest: Json,
    run_results: Option<Json>,
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
    /// Reads `manifest.json` (required) and `run_results.json` (optional) from `folder`.
    pub fn load(folder: &Path) -> Result<State, Diagnostic> {
        let manifest_path = folder.join("manifest.json");
        let text = std::fs::read_to_string(&manifest_path).map_err(|error| {
            Diagnostic::new(format!(
                "--state {}: cannot read manifest.json: {error}",
                folder.display()
            ))
            .with_help("point --state at the target/ folder of the run to compare with (it holds manifest.json)")
        })?;
        let manifest: Json = serde_json::from_str(&text)
            .map_err(|error| Diagnostic::new(format!("{} is not a manifest: {error}", manifest_path.display())))?;
        if !manifest.get("nodes").is_some_and(Json::is_object) {
            return Err(Diagnostic::new(format!(
                "{} has no \"nodes\": it is not a tidemark manifest",
                manifest_path.display()
            )));
        }
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
    pub fn node(&self, unique_id: &str) -> Option<&Json> {
        self.manifest["nodes"]
            .get(unique_id)
            .or_else(|| self.manifest["sources"].get(unique_id))
    }

    /// The saved run's warehouse (a URL), if the manifest records it.
    pub fn warehouse(&self) -> Option<&str> {
        self.manifest["metadata"]["warehouse"].as_str()
    }

    /// The name of the saved run's target.
    pub fn target_name(&self) -> Option<&str> {
        self.manifest["metadata"]["target"].as_str()
    }

    /// The node's `schema.identifier` in the saved run.
    pub fn relation(&self, unique_id: &str) -> Option<&str> {
        self.node(unique_id)?.get("relation")?.as_str()
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
        if saved["checksum"]["checksum"].as_str() != Some(node.checksum.as_str())
            || self.upstream_ephemeral_changed(graph, node)
        {
            changes.insert(Change::Body);
        }
        if saved.get("config") != Some(&serde_json::to_value(&node.config).expect("config serialises")) {
            changes.insert(Change::Configs);
        }
        let saved_macros = &self.manifest["macros"];
        let macro_changed = node.macros.iter().any(|name| {
            let id = format!("macro.{}.{name}", graph.project_name);
            saved_macros[&id]["checksum"]["checksum"].as_str() != Some(self_macro_checksum(graph, name).as_str())
        });
        if macro_changed || saved["depends_on"]["macros"] != serde_json::json!(macro_ids(graph, node)) {
            changes.insert(Change::Macros);
        }
        let empty = Json::Object(Default::default());
        if saved.get("vars").unwrap_or(&empty) != &serde_json::to_value(&node.vars).expect("vars serialise") {
            changes.insert(Change::Vars);
        }
        if saved.get("contract").unwrap_or(&Json::Null) != &contract_of(node) {
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
                    .and_then(|saved| saved["checksum"]["checksum"].as_str())
                    != Some(parent.checksum.as_str())
                    || self.upstream_ephemeral_changed(graph, parent))
        })
    }

    /// Ids of nodes whose status in the saved `run_results.json` is `status` (`skip` is an
    /// alias of `skipped`).
    pub fn with_result(&self, status: &str) -> Result<BTreeSet<String>, String> {
        let status = if status == "skip" { "skipped" } else { status };
        let Some(results) = &self.run_results else {
            return Err(format!(
                "'result:' needs {}/run_results.json, which is missing",
                self.folder.display()
            ));
        };
        Ok(results["results"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|result| result["status"].as_str() == Some(status))
            .filter_map(|result| result["unique_id"].as_str().map(str::to_string))
            .collect())
    }

    /// The saved run's `run_results.json`, if there is one.
    pub fn run_results(&self) -> Option<&Json> {
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

/// A model's enforced contract as the manifest records it: `{"enforced": true, "columns":
/// [[name, type], ...]}`, or null.
pub fn contract_of(node: &Node) -> Json {
    let enforced = node
        .config
        .get("contract")
        .and_then(|contract| contract.get("enforced"))
        .and_then(Json::as_bool)
        .unwrap_or(false);
    if !enforced {
        return Json::Null;
    }
    let columns: Vec<Json> = node
        .columns
        .iter()
        .map(|column| serde_json::json!([column.name, column.data_type]))
        .collect();
    serde_json::json!({"enforced": true, "columns": columns})
}

#[cfg(test)]
mod tests {
    use super::called_names;

    #[test]
    fn called_names_are_words_before_a_parenthesis() {
        let names = called_names("select {{ to_hours('m') }}, x.not_me(1), sum (a), {{ ref('b') }} from t");
        assert_eq!(names.into_iter().collect::<Vec<_>>(), ["ref", "sum", "to_hours"]);
    }
}
