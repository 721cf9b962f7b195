//! `run-operation`: call a project macro, as dbt's `run-operation` does.

use std::sync::Arc;

use clap::Args;

use crate::cli::load::load;
use crate::cli::{ExitStatus, GlobalArgs, Printer};
use crate::diagnostics::{Diagnostic, Error};

#[derive(Debug, Args)]
pub(crate) struct OperationArgs {
    /// The macro to call.
    pub macro_name: String,
    /// Its keyword arguments, as YAML or JSON: --args '{table: orders, days: 7}'.
    #[arg(long)]
    pub args: Option<String>,
}

pub(crate) async fn execute(
    global: &GlobalArgs,
    printer: &Arc<Printer>,
    args: OperationArgs,
) -> Result<ExitStatus, Error> {
    let loaded = load(global, printer)?;
    let keywords: serde_json::Map<String, serde_json::Value> = match &args.args {
        None => serde_json::Map::new(),
        Some(text) => serde_yaml::from_str(text).map_err(|error| {
            Diagnostic::new(format!("--args is not a YAML/JSON mapping: {error}"))
                .with_help("write it as --args '{name: value, other: 2}'")
        })?,
    };
    printer.info(&format!("Running macro '{}'", args.macro_name));
    crate::compile::run_operation(&loaded.graph, &loaded.engine, &args.macro_name, &keywords)?;
    printer.info(&format!("Macro '{}' done", args.macro_name));
    Ok(ExitStatus::Success)
}
