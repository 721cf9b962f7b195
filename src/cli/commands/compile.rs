//! `compile`: render the selected nodes' SQL into target/compiled/ and write the manifest.

use clap::Args;

use crate::artifacts::Artifacts;
use crate::cli::load::load;
use crate::cli::{ExitStatus, GlobalArgs, Printer, SelectArgs};
use crate::diagnostics::Error;
use crate::graph::select::Scope;
use crate::graph::ResourceType;

#[derive(Debug, Args)]
pub(crate) struct CompileArgs {
    #[command(flatten)]
    pub selection: SelectArgs,
}

pub(crate) async fn execute(
    global: &GlobalArgs,
    printer: &std::sync::Arc<Printer>,
    args: CompileArgs,
) -> Result<ExitStatus, Error> {
    let loaded = load(global, printer)?;
    let scope = Scope {
        sources: false,
        ..Scope::ALL
    };
    let selected = loaded.select(&args.selection, scope)?;
    let compiled = loaded.compile(&loaded.graph, &selected, &Default::default())?;
    let artifacts = Artifacts::new(&loaded.project);
    let waiting = |holder: &str| printer.info(&format!("Waiting for another run to finish ({holder})"));
    let id = uuid::Uuid::new_v4().to_string();
    let lock = artifacts
        .lock(
            &id,
            "tidemark compile",
            loaded.target.lock_lease,
            std::time::Duration::from_secs(600),
            waiting,
        )
        .await?;
    let written = artifacts
        .write_compiled(&compiled)
        .and_then(|()| artifacts.write_manifest(&loaded.graph, &loaded.target));
    lock.release().await;
    written.map_err(|error| {
        Error::Environment(format!("cannot write to {}/: {error}", loaded.project.file.target_path))
    })?;
    let models: Vec<&String> = selected
        .iter()
        .filter(|id| loaded.graph.nodes[*id].resource_type == ResourceType::Model)
        .collect();
    if let ([only], true) = (models.as_slice(), !args.selection.select.is_empty()) {
        let node = &compiled.nodes[*only];
        printer.info(&format!(
            "Compiled node '{}' ({}):",
            loaded.graph.nodes[*only].name, node.compiled_path
        ));
        printer.result(&node.sql);
    } else {
        printer.info(&format!(
            "Compiled {} node{} into {}/compiled/{}/",
            compiled.nodes.len(),
            if compiled.nodes.len() == 1 { "" } else { "s" },
            loaded.project.file.target_path,
            loaded.graph.project_name
        ));
    }
    Ok(ExitStatus::Success)
}
