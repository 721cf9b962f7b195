//! `ls`: list the selected nodes.

use clap::{Args, ValueEnum};
use serde_json::json;

use crate::cli::load::load;
use crate::cli::{ExitStatus, GlobalArgs, Printer, SelectArgs};
use crate::diagnostics::Error;
use crate::graph::select::Scope;
use crate::graph::ResourceType;

#[derive(Debug, Args)]
pub(crate) struct LsArgs {
    #[command(flatten)]
    pub selection: SelectArgs,
    /// Only these kinds of nodes.
    #[arg(long, value_enum, num_args = 1..)]
    pub resource_type: Vec<ResourceTypeArg>,
    /// What to print for each node.
    #[arg(long, short = 'o', value_enum, default_value_t = LsOutput::Selector)]
    pub output: LsOutput,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ResourceTypeArg {
    Model,
    Seed,
    /// Data tests (generic and singular).
    Test,
    /// Unit tests (`unit_tests:`).
    #[value(name = "unit_test")]
    UnitTest,
    Source,
    Snapshot,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LsOutput {
    /// The fully qualified name (`project.folder.model`), usable in --select.
    Selector,
    /// The node name.
    Name,
    /// The file the node comes from.
    Path,
    /// One JSON object per node.
    Json,
}

pub(crate) fn execute(
    global: &GlobalArgs,
    printer: &std::sync::Arc<Printer>,
    args: LsArgs,
) -> Result<ExitStatus, Error> {
    let loaded = load(global, printer)?;
    let scope = if args.resource_type.is_empty() {
        Scope::ALL
    } else {
        let has = |kind| args.resource_type.contains(&kind);
        Scope {
            models: has(ResourceTypeArg::Model),
            seeds: has(ResourceTypeArg::Seed),
            tests: has(ResourceTypeArg::Test) || has(ResourceTypeArg::UnitTest),
            sources: has(ResourceTypeArg::Source),
            snapshots: has(ResourceTypeArg::Snapshot),
        }
    };
    let mut selected = loaded.select(&args.selection, scope)?;
    if !args.resource_type.is_empty() {
        let (data, unit) = (
            args.resource_type.contains(&ResourceTypeArg::Test),
            args.resource_type.contains(&ResourceTypeArg::UnitTest),
        );
        selected.retain(|id| {
            let node = &loaded.graph.nodes[id];
            node.resource_type != ResourceType::Test || if node.is_unit_test() { unit } else { data }
        });
    }
    let mut lines = Vec::new();
    for id in loaded.graph.order.iter().filter(|id| selected.contains(*id)) {
        let node = &loaded.graph.nodes[id];
        lines.push(match args.output {
            LsOutput::Selector if node.resource_type == ResourceType::Source => {
                format!("source:{}", node.fqn.join("."))
            }
            LsOutput::Selector => node.fqn.join("."),
            LsOutput::Name => node.name.clone(),
            LsOutput::Path => node.path.clone(),
            LsOutput::Json => json!({
                "unique_id": node.unique_id,
                "name": node.name,
                "resource_type": node.resource_type,
                "materialized": node.materialized,
                "path": node.path,
                "relation": node.relation().map(|r| format!("{}.{}", r.schema, r.identifier)),
                "tags": node.tags,
                "depends_on": node.depends_on,
            })
            .to_string(),
        });
    }
    if args.output == LsOutput::Path {
        lines.dedup();
    }
    for line in lines {
        printer.result(&line);
    }
    Ok(ExitStatus::Success)
}
