//! `show`: preview the rows of a model (or seed, or inline query) without writing anything.

use std::collections::BTreeSet;
use std::sync::Arc;

use clap::Args;
use datafusion::arrow::util::pretty::pretty_format_batches;

use crate::cli::load::load;
use crate::cli::{ExitStatus, GlobalArgs, Printer};
use crate::compile;
use crate::diagnostics::{did_you_mean, Diagnostic, Error};
use crate::execute::run::open_warehouse;
use crate::execute::{run_query_preview, Session};
use crate::graph::ResourceType;

#[derive(Debug, Args)]
pub(crate) struct ShowArgs {
    /// The model or seed to preview.
    #[arg(long, short = 's', conflicts_with = "inline", required_unless_present = "inline")]
    pub select: Option<String>,
    /// A query to preview instead; it may use ref() and source().
    #[arg(long)]
    pub inline: Option<String>,
    /// Rows to show.
    #[arg(long, default_value_t = 10)]
    pub limit: usize,
    /// Print the plan DataFusion makes of the query (the model's compiled SQL) instead of rows.
    #[arg(long)]
    pub explain: bool,
    /// With --explain: run the query (nothing is written) and print every operator's rows and
    /// time (`EXPLAIN ANALYZE`).
    #[arg(long, requires = "explain")]
    pub analyze: bool,
}

pub(crate) async fn execute(
    global: &GlobalArgs,
    printer: &std::sync::Arc<Printer>,
    args: ShowArgs,
) -> Result<ExitStatus, Error> {
    let loaded = load(global, printer)?;
    let mut graph = (*loaded.graph).clone();
    let inline_sql = match (&args.inline, &args.select) {
        (Some(sql), _) => sql.clone(),
        (None, Some(name)) => match graph.find_by_name(name) {
            Some(node) if node.resource_type == ResourceType::Model => String::new(),
            Some(node) if node.resource_type == ResourceType::Seed => {
                format!("select * from {{{{ ref('{}') }}}}", node.name)
            }
            Some(node) => {
                return Err(Diagnostic::new(format!(
                    "'{}' is a {}; show previews models and seeds",
                    node.name,
                    node.resource_type.as_str()
                ))
                .into());
            }
            None => {
                let names = graph
                    .nodes
                    .values()
                    .filter(|n| n.resource_type != ResourceType::Test)
                    .map(|n| n.name.as_str());
                let mut diagnostic = Diagnostic::new(format!("no model or seed named '{name}'"));
                if let Some(near) = did_you_mean(name, names) {
                    diagnostic = diagnostic.with_help(format!("did you mean '{near}'?"));
                }
                return Err(diagnostic.into());
            }
        },
        (None, None) => unreachable!("clap requires --select or --inline"),
    };
    let node_id = if inline_sql.is_empty() {
        graph
            .find_by_name(args.select.as_deref().unwrap_or_default())
            .map(|node| node.unique_id.clone())
            .unwrap_or_default()
    } else {
        let node = compile::inline_node(&graph, &loaded.engine, &inline_sql)?;
        let id = node.unique_id.clone();
        graph.nodes.insert(id.clone(), node);
        id
    };
    let selected: BTreeSet<String> = [node_id.clone()].into();
    let mut compiled = loaded.compile(&graph, &selected, &Default::default())?;
    if args.inline.is_some() {
        if let Some(node) = compiled.nodes.get_mut(&node_id) {
            node.compiled_path = "(inline query, not written)".into();
        }
    }
    let sql = match (args.explain, args.analyze) {
        (true, true) => format!("explain analyze {}", compiled.nodes[&node_id].sql),
        (true, false) => format!("explain {}", compiled.nodes[&node_id].sql),
        _ => compiled.nodes[&node_id].sql.clone(),
    };
    let warehouse = open_warehouse(&loaded.project, &loaded.target)?;
    let graph = Arc::new(graph);
    let session = Session::new(&loaded.target, warehouse, graph.clone(), Arc::new(compiled))
        .map_err(|error| Error::Environment(error.to_string()))?;
    match run_query_preview(&session, &graph.nodes[&node_id], &sql, args.limit).await {
        Ok(batches) => match pretty_format_batches(&batches) {
            Ok(table) => {
                let label = args.select.clone().unwrap_or_else(|| "inline query".into());
                if args.explain {
                    printer.info(&format!("Plan of {label}:"));
                } else {
                    printer.info(&format!("Previewing {label} (up to {} rows):", args.limit));
                }
                printer.result(&table.to_string());
                Ok(ExitStatus::Success)
            }
            Err(error) => Err(Error::Internal(format!("cannot format the preview: {error}"))),
        },
        Err(error) => {
            printer.fatal(&error.to_string());
            Ok(ExitStatus::Failure)
        }
    }
}
