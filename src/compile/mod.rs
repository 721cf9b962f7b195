//! Stage 4 — compile: nodes → the SQL DataFusion runs. Pure and deterministic.
//!
//! Models and singular tests are rendered in the compile phase with every `ref`/`source`
//! resolved to its relation; ephemeral models become CTEs injected at the top of each query
//! that uses them (directly or through other ephemeral models); generic tests are generated
//! from their declaration (`tests`). Nothing is executed or written here.

mod operations;
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use rayon::prelude::*;

use crate::diagnostics::{did_you_mean, Diagnostic, Diagnostics};
use crate::graph::refs::ref_miss_message;
use crate::graph::{Graph, Materialization, Node, Resource, ResourceType};
use crate::project::ConfigMap;
use crate::relation::RelationName;
/// The Jinja engine of a project: loading renders models with it, compiling renders them again.
pub use crate::template::TemplateEngine;
use crate::template::{CompileContext, RefCall, RelationResolver};
/// What a template's `run_query` / `statement` run on, and what `log` prints through.
pub use crate::template::{Logger, QueryRunner, QueryTable};
pub use operations::{run_hooks, run_operation};

/// The SQL of one node, ready to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledNode {
    pub unique_id: String,
    /// The final query (for tests: the query returning failing rows).
    pub sql: String,
    /// Where `tidemark` writes it, relative to the project root (`target/compiled/...`).
    pub compiled_path: String,
    /// Its `pre_hook` and `post_hook` statements, rendered (models and seeds).
    pub pre_hooks: Vec<String>,
    pub post_hooks: Vec<String>,
}

/// Compiled SQL of the nodes a command needs, by unique id.
#[derive(Debug, Clone, Default)]
pub struct CompiledProject {
    pub nodes: BTreeMap<String, CompiledNode>,
    /// For unit tests: the SQL of the models they test and of everything those read, compiled
    /// as a first build would (`is_incremental()` false, no time range), by unique id; and by
    /// a unit test's id, its model as an incremental run renders it, when the test says so.
    pub unit_sql: BTreeMap<String, String>,
}

/// What a run decides about nodes before they are compiled (from the warehouse and the CLI).
#[derive(Debug, Clone, Default)]
pub struct CompileOptions {
    /// Incremental models rendered with `is_incremental()` true (their table exists and this
    /// is not a full refresh).
    pub incremental: BTreeSet<String>,
    /// Time-range incremental models and the range their inputs are read in.
    pub time_filters: BTreeMap<String, crate::relation::TimeFilter>,
    /// Render introspective nodes (`run_query` in their SQL) with `execute` false: a run
    /// compiles them again right before they run, once what they read is built.
    pub defer_introspection: bool,
}

/// Prefix of the CTE an ephemeral model is inlined as.
pub const EPHEMERAL_PREFIX: &str = "__tidemark_cte__";

/// The name of the CTE an ephemeral model is inlined as (`__tidemark_cte__name`, with
/// `_v<version>` for a model version).
pub fn cte_name(node: &Node) -> String {
    match &node.version {
        Some(version) => format!("{EPHEMERAL_PREFIX}{}_v{version}", node.name),
        None => format!("{EPHEMERAL_PREFIX}{}", node.name),
    }
}

/// Compiles like [`compile`], then renders each selected unit test with
/// `overrides: {vars: ...}` again with those vars on top of `vars` (the project's, after
/// `--vars`), each in an engine of its own.
pub fn compile_with_unit_test_vars(
    project: &crate::project::Project,
    target: &crate::project::Target,
    vars: &BTreeMap<String, serde_json::Value>,
    graph: &Graph,
    engine: &TemplateEngine,
    selected: &BTreeSet<String>,
    options: &CompileOptions,
) -> Result<CompiledProject, Diagnostics> {
    let target_path = &project.file.target_path;
    let mut compiled = compile(graph, engine, target_path, selected, options)?;
    for id in selected {
        let Some(unit) = graph.unit_tests.get(id).filter(|unit| !unit.vars.is_empty()) else {
            continue;
        };
        let mut unit_vars = vars.clone();
        unit_vars.extend(unit.vars.clone());
        let engine = TemplateEngine::new(project, target, unit_vars)?;
        let single = [id.clone()].into();
        let mut inner = compile(graph, &engine, target_path, &single, &CompileOptions::default())?;
        let sql = inner
            .unit_sql
            .remove(id)
            .or_else(|| inner.unit_sql.remove(&unit.model))
            .unwrap_or_default();
        compiled.unit_sql.insert(id.clone(), sql);
        if let Some(node) = inner.nodes.remove(id) {
            compiled.nodes.insert(id.clone(), node);
        }
    }
    Ok(compiled)
}

/// Compiles `selected` and every view or ephemeral model they read through (their SQL is needed
/// to resolve them at run time). See [`CompileOptions`] for what a run decides before compiling.
pub fn compile(
    graph: &Graph,
    engine: &TemplateEngine,
    target_path: &str,
    selected: &BTreeSet<String>,
    options: &CompileOptions,
) -> Result<CompiledProject, Diagnostics> {
    // Unit tests run their model's SQL as a first build would, whatever this run decided.
    let unit_tests: Vec<&String> = selected
        .iter()
        .filter(|id| graph.unit_tests.contains_key(*id))
        .collect();
    let mut unit_sql = BTreeMap::new();
    if !unit_tests.is_empty() {
        let mut models = BTreeSet::new();
        for id in &unit_tests {
            let model = &graph.unit_tests[*id].model;
            models.insert(model.clone());
            models.extend(
                graph
                    .ancestors(model, None)
                    .into_iter()
                    .filter(|parent| graph.nodes[parent].resource_type != ResourceType::Source),
            );
        }
        let inner = compile(graph, engine, target_path, &models, &CompileOptions::default())?;
        unit_sql = inner.nodes.into_iter().map(|(id, node)| (id, node.sql)).collect();
        // Tests of incremental runs: their model as `is_incremental()` renders it, by test id.
        for id in &unit_tests {
            let unit = &graph.unit_tests[*id];
            if unit.incremental {
                let options = CompileOptions {
                    incremental: [unit.model.clone()].into(),
                    ..Default::default()
                };
                let single: BTreeSet<String> = [unit.model.clone()].into();
                let mut inner = compile(graph, engine, target_path, &single, &options)?;
                if let Some(node) = inner.nodes.remove(&unit.model) {
                    unit_sql.insert((*id).clone(), node.sql);
                }
            }
        }
    }
    let plain: BTreeSet<String> = selected
        .iter()
        .filter(|id| !graph.unit_tests.contains_key(*id))
        .cloned()
        .collect();
    let selected = &plain;
    let needed = needed_nodes(graph, selected);
    let resolver: Arc<dyn RelationResolver> = Arc::new(GraphResolver::new(graph));

    // Ephemeral bodies first (they are inlined into others), then everything else.
    let render = |node: &Node| -> Result<String, Diagnostic> {
        match node.generic_test() {
            Some(test) if engine.custom_test(&test.test_name).is_some() => engine.compile(
                &node.path,
                &tests::custom_test_call(graph, test),
                CompileContext {
                    this: this_relation(node),
                    package: node.package().to_string(),
                    config: node.config.clone(),
                    is_incremental: false,
                    resolver: resolver.clone(),
                    time_filter: None,
                    execute: true,
                },
            ),
            Some(test) => tests::generic_test_sql(graph, node, test, resolver.as_ref()),
            _ => engine.compile(
                &node.path,
                &node.raw_code,
                CompileContext {
                    this: this_relation(node),
                    package: node.package().to_string(),
                    config: node.config.clone(),
                    is_incremental: options.incremental.contains(&node.unique_id),
                    resolver: resolver.clone(),
                    time_filter: options.time_filters.get(&node.unique_id).cloned(),
                    execute: !(options.defer_introspection && node.introspective),
                },
            ),
        }
    };
    let ids: Vec<&String> = needed
        .iter()
        .filter(|id| graph.nodes[*id].resource_type != ResourceType::Source)
        .collect();
    let bodies: Vec<(String, Result<String, Diagnostic>)> = ids
        .par_iter()
        .map(|id| ((*id).clone(), render(&graph.nodes[*id])))
        .collect();
    let mut problems = Diagnostics::default();
    let mut rendered: BTreeMap<String, String> = BTreeMap::new();
    for (id, body) in bodies {
        match body {
            Ok(sql) => {
                rendered.insert(id, sql);
            }
            Err(diagnostic) => problems.push(diagnostic),
        }
    }
    if !problems.is_empty() {
        return problems.into_result(CompiledProject::default());
    }

    let nodes = rendered
        .iter()
        .filter(|(id, _)| selected.contains(*id) || graph.nodes[*id].materialized != Materialization::Ephemeral)
        .map(|(id, body)| {
            let node = &graph.nodes[id];
            let ctes = ephemeral_ancestors(graph, node);
            let sql = if ctes.is_empty() {
                body.clone()
            } else {
                let definitions: Vec<String> = ctes
                    .iter()
                    .map(|cte| format!("{} as (\n{}\n)", cte_name(&graph.nodes[cte]), rendered[cte].trim()))
                    .collect();
                inject_ctes(body, &definitions)
            };
            let compiled_path = compiled_path(target_path, &graph.project_name, node);
            (
                id.clone(),
                CompiledNode {
                    unique_id: id.clone(),
                    sql,
                    compiled_path,
                    pre_hooks: Vec::new(),
                    post_hooks: Vec::new(),
                },
            )
        })
        .collect::<BTreeMap<String, CompiledNode>>();
    let mut nodes = nodes;
    // Hooks render like the node's own SQL (`{{ this }}` is its relation).
    for (id, compiled) in nodes.iter_mut() {
        let node = &graph.nodes[id];
        for (key, rendered) in [
            ("pre_hook", &mut compiled.pre_hooks),
            ("post_hook", &mut compiled.post_hooks),
        ] {
            for hook in node.hooks(key) {
                let context = CompileContext {
                    this: this_relation(node),
                    package: node.package().to_string(),
                    config: node.config.clone(),
                    is_incremental: options.incremental.contains(id),
                    resolver: resolver.clone(),
                    time_filter: None,
                    execute: true,
                };
                match engine.compile(&node.path, &hook, context) {
                    Ok(sql) => rendered.push(sql),
                    Err(problem) => problems.push(problem.context(format_args!("{key} of {}", node.name))),
                }
            }
        }
    }
    if !problems.is_empty() {
        return problems.into_result(CompiledProject::default());
    }
    for id in unit_tests {
        let node = &graph.nodes[id];
        let model = &graph.nodes[&graph.unit_tests[id].model];
        let sql = format!(
            "-- unit test {} of model {}: the model's SQL, run offline on the test's given rows\n{}",
            node.name,
            model.name,
            unit_sql
                .get(id)
                .or_else(|| unit_sql.get(&model.unique_id))
                .map(String::as_str)
                .unwrap_or_default()
        );
        nodes.insert(
            id.clone(),
            CompiledNode {
                unique_id: id.clone(),
                sql,
                compiled_path: compiled_path(target_path, &graph.project_name, node),
                pre_hooks: Vec::new(),
                post_hooks: Vec::new(),
            },
        );
    }
    Ok(CompiledProject { nodes, unit_sql })
}

/// `target/compiled/<project>/<file>`.
pub fn compiled_path(target_path: &str, project_name: &str, node: &Node) -> String {
    // Nodes declared in property files (generic tests, metric models) live under that file's path.
    if node.path.ends_with(".sql") {
        format!("{target_path}/compiled/{project_name}/{}", node.path)
    } else {
        format!("{target_path}/compiled/{project_name}/{}/{}.sql", node.path, node.name)
    }
}

fn this_relation(node: &Node) -> RelationName {
    node.relation().cloned().unwrap_or_else(|| RelationName {
        schema: String::new(),
        identifier: node.name.clone(),
        rendered: cte_name(node),
    })
}

/// `selected` plus the views and ephemeral models they read, transitively through such models.
fn needed_nodes(graph: &Graph, selected: &BTreeSet<String>) -> BTreeSet<String> {
    let mut needed = selected.clone();
    let mut frontier: Vec<String> = selected.iter().cloned().collect();
    while let Some(id) = frontier.pop() {
        for parent in &graph.nodes[&id].depends_on {
            let node = &graph.nodes[parent];
            if matches!(node.materialized, Materialization::View | Materialization::Ephemeral)
                && needed.insert(parent.clone())
            {
                frontier.push(parent.clone());
            }
        }
    }
    needed
}

/// Ephemeral models `node` reads, directly or through other ephemeral models, parents first.
fn ephemeral_ancestors(graph: &Graph, node: &Node) -> Vec<String> {
    let mut found = BTreeSet::new();
    let mut frontier: Vec<&str> = node.depends_on.iter().map(String::as_str).collect();
    while let Some(id) = frontier.pop() {
        let parent = &graph.nodes[id];
        if parent.materialized == Materialization::Ephemeral && found.insert(id.to_string()) {
            frontier.extend(parent.depends_on.iter().map(String::as_str));
        }
    }
    if found.is_empty() {
        return Vec::new();
    }
    let mut ordered: Vec<String> = found.into_iter().collect();
    ordered.sort_by_key(|id| graph.position(id));
    ordered
}

/// Puts CTE definitions in front of `sql`, merging with its own `WITH` clause when it has one.
pub fn inject_ctes(sql: &str, definitions: &[String]) -> String {
    let joined = definitions.join(",\n");
    let start = skip_comments_and_space(sql);
    let rest = &sql[start..];
    let keyword_end = |keyword: &str| -> Option<usize> {
        let candidate = rest.get(..keyword.len())?;
        let boundary = rest[keyword.len()..]
            .chars()
            .next()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
        (candidate.eq_ignore_ascii_case(keyword) && boundary).then_some(keyword.len())
    };
    if let Some(length) = keyword_end("with") {
        let after_with = &rest[length..];
        let trimmed = after_with.trim_start();
        if trimmed.len() >= 9 && trimmed[..9].eq_ignore_ascii_case("recursive") {
            let after = &trimmed[9..];
            return format!("{}with recursive {joined},{after}", &sql[..start]);
        }
        return format!("{}with {joined},{after_with}", &sql[..start]);
    }
    format!("{}with {joined}\n{rest}", &sql[..start])
}

/// Byte offset of the first token that is not whitespace or an SQL comment.
fn skip_comments_and_space(sql: &str) -> usize {
    let mut index = 0;
    loop {
        let rest = &sql[index..];
        let trimmed = rest.trim_start();
        index += rest.len() - trimmed.len();
        if trimmed.starts_with("--") {
            index += trimmed.find('\n').map(|n| n + 1).unwrap_or(trimmed.len());
        } else if trimmed.starts_with("/*") {
            index += trimmed.find("*/").map(|n| n + 2).unwrap_or(trimmed.len());
        } else {
            return index;
        }
    }
}

/// Resolves refs and sources from the graph.
struct GraphResolver {
    refs: crate::graph::refs::RefIndex,
    /// unique id → the relation a ref to it reads.
    relations: BTreeMap<String, RelationName>,
    sources: BTreeMap<(String, String), RelationName>,
    /// unique id (models, seeds, snapshots) or (source, table) → its `event_time` column.
    event_times: BTreeMap<String, String>,
    source_event_times: BTreeMap<(String, String), String>,
}

impl GraphResolver {
    fn new(graph: &Graph) -> Self {
        let mut relations = BTreeMap::new();
        let mut sources = BTreeMap::new();
        let mut event_times = BTreeMap::new();
        let mut source_event_times = BTreeMap::new();
        for node in graph.nodes.values() {
            let event_time = node.config.get("event_time").and_then(serde_json::Value::as_str);
            match &node.resource {
                Resource::Model { .. } | Resource::Ephemeral | Resource::Seed { .. } | Resource::Snapshot { .. } => {
                    relations.insert(node.unique_id.clone(), this_relation(node));
                    if let Some(column) = event_time {
                        event_times.insert(node.unique_id.clone(), column.to_string());
                    }
                }
                Resource::Source { relation, .. } => {
                    let key = (node.fqn[1].clone(), node.name.clone());
                    if let Some(column) = event_time {
                        source_event_times.insert(key.clone(), column.to_string());
                    }
                    sources.insert(key, relation.clone());
                }
                Resource::Test { .. } => {}
            }
        }
        GraphResolver {
            refs: graph.ref_index(),
            relations,
            sources,
            event_times,
            source_event_times,
        }
    }
}

impl RelationResolver for GraphResolver {
    fn resolve_ref(&self, from_package: &str, call: &RefCall) -> Result<(RelationName, Option<String>), Diagnostic> {
        let id = self
            .refs
            .resolve(
                from_package,
                call.package.as_deref(),
                &call.name,
                call.version.as_deref(),
            )
            .map_err(|miss| Diagnostic::new(ref_miss_message(call, &miss, self.refs.names())))?;
        let relation = self
            .relations
            .get(id)
            .cloned()
            .ok_or_else(|| Diagnostic::new(format!("ref('{}'): {id} has no relation", call.name)))?;
        Ok((relation, self.event_times.get(id).cloned()))
    }

    fn source_event_time(&self, source: &str, table: &str) -> Option<String> {
        self.source_event_times
            .get(&(source.to_string(), table.to_string()))
            .cloned()
    }

    fn resolve_source(&self, source: &str, table: &str) -> Result<RelationName, Diagnostic> {
        self.sources
            .get(&(source.to_string(), table.to_string()))
            .cloned()
            .ok_or_else(|| Diagnostic::new(format!("source('{source}', '{table}') is not declared")))
    }
}

/// A node for an inline query (`tidemark show --inline "select ... from {{ ref('x') }}"`),
/// with the dependencies its refs and sources name. Add it to a copy of the graph to compile it.
pub fn inline_node(graph: &Graph, engine: &TemplateEngine, sql: &str) -> Result<Node, Diagnostics> {
    const NAME: &str = "inline query";
    let capture = engine.parse(NAME, sql).map_err(Diagnostics::from)?;
    let mut problems = Diagnostics::default();
    let mut depends_on = BTreeSet::new();
    for call in &capture.refs {
        match graph
            .nodes
            .values()
            .find(|n| matches!(n.resource_type, ResourceType::Model | ResourceType::Seed) && n.name == call.name)
        {
            Some(node) => {
                depends_on.insert(node.unique_id.clone());
            }
            None => problems.push(
                Diagnostic::new(format!(
                    "the inline query refers to '{}', which was not found",
                    call.name
                ))
                .in_file(NAME),
            ),
        }
    }
    for call in &capture.sources {
        match graph
            .nodes
            .values()
            .find(|n| n.resource_type == ResourceType::Source && n.fqn[1] == call.source && n.name == call.table)
        {
            Some(node) => {
                depends_on.insert(node.unique_id.clone());
            }
            None => problems.push(
                Diagnostic::new(format!(
                    "the inline query reads source('{}', '{}'), which is not declared",
                    call.source, call.table
                ))
                .in_file(NAME),
            ),
        }
    }
    problems.into_result(Node {
        fqn: vec![graph.project_name.clone(), "inline".into()],
        raw_code: sql.to_string(),
        refs: capture.refs,
        sources: capture.sources,
        depends_on: depends_on.into_iter().collect(),
        ..Node::new(
            format!("sql_operation.{}.inline", graph.project_name),
            "inline".into(),
            NAME.into(),
            Materialization::Test,
            Resource::Test {
                severity: crate::graph::Severity::Error,
                generic: None,
            },
        )
    })
}

#[cfg(test)]
mod unit_tests {
    use super::inject_ctes;

    #[test]
    fn ctes_go_in_front_of_a_plain_select() {
        assert_eq!(
            inject_ctes("select * from a", &["a as (select 1)".into()]),
            "with a as (select 1)\nselect * from a"
        );
    }

    #[test]
    fn ctes_merge_into_an_existing_with_after_leading_comments() {
        let sql = "-- comment\n/* block */ WITH b as (select 2) select * from a, b";
        assert_eq!(
            inject_ctes(sql, &["a as (select 1)".into()]),
            "-- comment\n/* block */ with a as (select 1), b as (select 2) select * from a, b"
        );
    }

    #[test]
    fn ctes_keep_recursive() {
        let sql = "with recursive r as (select 1) select * from r, a";
        assert_eq!(
            inject_ctes(sql, &["a as (select 1)".into()]),
            "with recursive a as (select 1), r as (select 1) select * from r, a"
        );
    }

    #[test]
    fn a_column_named_with_something_is_not_a_with_clause() {
        assert_eq!(
            inject_ctes("with_x", &["a as (select 1)".into()]),
            "with a as (select 1)\nwith_x"
        );
    }
}
