//! `docs generate` and `docs serve`: the documentation site, `catalog.json` and typed DuckDB
//! views.

use std::collections::BTreeMap;
use std::sync::Arc;

use clap::{Args, Subcommand};

use crate::artifacts::docs::{self, serve::DocsServer, Site};
use crate::artifacts::{catalog, Artifacts, ColumnLineage};
use crate::cli::load::load;
use crate::cli::{ExitStatus, GlobalArgs, Printer};
use crate::diagnostics::{Diagnostic, Error};
use crate::documents::RunResults;
use crate::execute::catalog::WarehouseReader;
use crate::execute::lineage::column_lineage;
use crate::graph::{Graph, Materialization, Resource, ResourceType};

#[derive(Debug, Subcommand)]
pub(crate) enum DocsCommand {
    /// Write the documentation site (target/docs/index.html, viewable offline), target/catalog.json
    /// (every table's columns with their types, rows and bytes, read from the warehouse) and
    /// target/duckdb_views.sql (one typed DuckDB view per table). Example: `tidemark docs generate`.
    Generate,
    /// Serve target/docs/ on 127.0.0.1. Example: `tidemark docs serve --port 8080 --open`.
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// The port (0: any free port; the address is printed).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Open the site in the default browser.
    #[arg(long)]
    pub open: bool,
}

pub(crate) async fn execute(
    global: &GlobalArgs,
    printer: &Arc<Printer>,
    command: DocsCommand,
) -> Result<ExitStatus, Error> {
    match command {
        DocsCommand::Generate => generate(global, printer).await,
        DocsCommand::Serve(args) => serve(global, printer, args),
    }
}

async fn generate(global: &GlobalArgs, printer: &Arc<Printer>) -> Result<ExitStatus, Error> {
    let loaded = load(global, printer)?;
    let graph = loaded.graph.clone();
    let selected = graph
        .nodes
        .values()
        .filter(|node| node.resource_type != ResourceType::Source)
        .map(|node| node.unique_id.clone())
        .collect();
    let compiled = Arc::new(loaded.compile(&graph, &selected, &Default::default())?);
    let artifacts = Artifacts::new(&loaded.project);
    let id = uuid::Uuid::new_v4().to_string();
    let waiting = |holder: &str| printer.info(&format!("Waiting for another run to finish ({holder})"));
    let lock = artifacts
        .lock(
            &id,
            "tidemark docs generate",
            loaded.target.lock_lease,
            std::time::Duration::from_secs(600),
            waiting,
        )
        .await?;
    let written = write(&loaded, &artifacts, &graph, compiled, &id, printer).await;
    lock.release().await;
    written
}

async fn write(
    loaded: &crate::cli::load::Loaded,
    artifacts: &Artifacts,
    graph: &Arc<Graph>,
    compiled: Arc<crate::compile::CompiledProject>,
    id: &str,
    printer: &Arc<Printer>,
) -> Result<ExitStatus, Error> {
    let target_path = &loaded.project.file.target_path;
    let cannot_write = |error: std::io::Error| Error::Environment(format!("cannot write to {target_path}/: {error}"));
    artifacts.write_compiled(&compiled).map_err(cannot_write)?;
    printer.info("Reading the warehouse");
    let reader = WarehouseReader::open(&loaded.project, &loaded.target, graph.clone(), compiled.clone()).await?;
    let (tables, mut problems) = reader.tables(graph).await;
    let lineage = lineage(&reader, graph, &compiled, &mut problems).await;
    let run_results: Option<RunResults> = std::fs::read_to_string(artifacts_path(loaded, "run_results.json"))
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok());
    let mut metric_models = Vec::new();
    for (spec, file) in crate::graph::metric_model_specs(&loaded.project) {
        let charts = docs::metric_chart_data(&reader, graph, &spec).await;
        metric_models.push((spec, file, charts));
    }
    artifacts
        .write_manifest_with_lineage(graph, &loaded.target, &lineage)
        .map_err(cannot_write)?;
    let document = catalog::catalog(graph, &tables, &problems, id);
    crate::artifacts::write_json(&artifacts_path(loaded, "catalog.json"), &document).map_err(cannot_write)?;
    let warehouse = match loaded.target.local_warehouse(&loaded.project.root) {
        Some(folder) => folder.canonicalize().unwrap_or(folder).display().to_string(),
        None => loaded.target.warehouse.clone(),
    };
    crate::artifacts::write_atomically(
        &artifacts_path(loaded, "duckdb_views.sql"),
        catalog::duckdb_views(graph, &tables, &warehouse).as_bytes(),
    )
    .map_err(cannot_write)?;
    let site = Site {
        graph,
        compiled: &compiled,
        tables: &tables,
        lineage: &lineage,
        run_results: run_results.as_ref(),
        metric_models,
        invocation_id: id,
    };
    let index = docs::write_site(artifacts, &site).map_err(cannot_write)?;
    for problem in &problems {
        printer.warning(&Diagnostic::new(format!("docs: {problem}")));
    }
    printer.info(&format!(
        "Wrote {target_path}/catalog.json ({} tables, {} sources), {target_path}/duckdb_views.sql and the site {}",
        document.nodes.len(),
        document.sources.len(),
        index.strip_prefix(&loaded.project.root).unwrap_or(&index).display()
    ));
    printer.info("Open it from disk, or with `tidemark docs serve`");
    Ok(ExitStatus::Success)
}

fn artifacts_path(loaded: &crate::cli::load::Loaded, file: &str) -> std::path::PathBuf {
    loaded.project.root.join(&loaded.project.file.target_path).join(file)
}

/// Each model's columns and the columns of the nodes they read that feed them.
async fn lineage(
    reader: &WarehouseReader,
    graph: &Graph,
    compiled: &crate::compile::CompiledProject,
    problems: &mut Vec<String>,
) -> ColumnLineage {
    let relations: BTreeMap<String, &str> = graph
        .nodes
        .values()
        .filter_map(|node| {
            let relation = node.relation()?;
            Some((
                format!("{}.{}", relation.schema, relation.identifier),
                node.unique_id.as_str(),
            ))
        })
        .collect();
    let mut out = ColumnLineage::new();
    for id in &graph.order {
        let node = &graph.nodes[id];
        let is_model =
            matches!(node.resource, Resource::Model { .. }) && node.materialized != Materialization::Ephemeral;
        let Some(sql) = compiled.nodes.get(id).map(|c| c.sql.as_str()).filter(|_| is_model) else {
            continue;
        };
        let plan = match reader.plan(sql).await {
            Ok(plan) => plan,
            Err(error) => {
                problems.push(format!("no column lineage for {}: {}", node.name, first_line(&error)));
                continue;
            }
        };
        let columns = column_lineage(&plan)
            .into_iter()
            .map(|(column, sources)| {
                let fed: Vec<String> = sources
                    .into_iter()
                    .map(|(relation, source_column)| match relations.get(&relation) {
                        Some(unique_id) => format!("{unique_id}.{source_column}"),
                        None => format!("{relation}.{source_column}"),
                    })
                    .collect();
                (column, fed)
            })
            .collect();
        out.insert(id.clone(), columns);
    }
    out
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text)
}

fn serve(global: &GlobalArgs, printer: &Arc<Printer>, args: ServeArgs) -> Result<ExitStatus, Error> {
    let project = crate::project::load(&global.project_dir)?;
    let artifacts = Artifacts::new(&project);
    let root = docs::folder(&artifacts);
    if !root.join("index.html").is_file() {
        return Err(
            Diagnostic::new(format!("no site in {}/docs/", project.file.target_path))
                .with_help("run `tidemark docs generate` first")
                .into(),
        );
    }
    let server = DocsServer::bind(root, args.port)
        .map_err(|error| Error::Environment(format!("cannot listen on 127.0.0.1:{}: {error}", args.port)))?;
    let url = server.url();
    printer.info(&format!("Serving the docs at {url} (Ctrl-C to stop)"));
    if args.open {
        let opener = if cfg!(target_os = "macos") { "open" } else { "xdg-open" };
        if let Err(error) = std::process::Command::new(opener).arg(&url).spawn() {
            printer.warning(&Diagnostic::new(format!(
                "cannot open a browser ({opener}: {error}); open {url}"
            )));
        }
    }
    server.serve();
    Ok(ExitStatus::Success)
}
