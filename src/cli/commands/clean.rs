//! `clean`: delete the project's clean-targets.

use crate::artifacts::Artifacts;
use crate::cli::{ExitStatus, GlobalArgs, Printer};
use crate::project;

pub(crate) async fn execute(global: &GlobalArgs, printer: &Printer) -> ExitStatus {
    let project = match project::load(&global.project_dir) {
        Ok(project) => project,
        Err(diagnostics) => {
            printer.diagnostics(&diagnostics);
            return ExitStatus::Error;
        }
    };
    // Never delete target/ under a running build: wait for its run lock first.
    let artifacts = Artifacts::new(&project);
    let lock = if project.root.join(&project.file.target_path).is_dir() {
        let waiting = |holder: &str| printer.info(&format!("Waiting for another run to finish ({holder})"));
        let id = uuid::Uuid::new_v4().to_string();
        match artifacts
            .lock(
                &id,
                "tidemark clean",
                crate::materialize::lock::DEFAULT_LEASE,
                std::time::Duration::from_secs(600),
                waiting,
            )
            .await
        {
            Ok(lock) => Some(lock),
            Err(message) => {
                printer.fatal(&message);
                return ExitStatus::Error;
            }
        }
    } else {
        None
    };
    let outcome = Artifacts::clean(&project);
    if let Some(lock) = lock {
        // Usually deleted with target/ already.
        lock.release().await;
    }
    match outcome {
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
