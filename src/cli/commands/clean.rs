//! `clean`: delete the project's clean-targets.

use crate::artifacts::Artifacts;
use crate::cli::{ExitStatus, GlobalArgs, Printer};
use crate::project;

pub fn execute(global: &GlobalArgs, printer: &Printer) -> ExitStatus {
    let project = match project::load(&global.project_dir) {
        Ok(project) => project,
        Err(diagnostics) => {
            printer.diagnostics(&diagnostics);
            return ExitStatus::Error;
        }
    };
    match Artifacts::clean(&project) {
        Ok(removed) if removed.is_empty() => {
            printer.info("Nothing to clean.");
            ExitStatus::Success
        }
        Ok(removed) => {
            for folder in removed {
                printer.info(&format!("Removed {folder}/"));
            }
            ExitStatus::Success
        }
        Err(message) => {
            printer.fatal(&message);
            ExitStatus::Error
        }
    }
}
