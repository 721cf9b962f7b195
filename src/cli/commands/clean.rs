//! `clean`: delete the project's clean-targets.

use crate::artifacts::Artifacts;
use crate::cli::{ExitStatus, GlobalArgs, Printer};
use crate::diagnostics::Error;
use crate::project;

pub(crate) async fn execute(global: &GlobalArgs, printer: &Printer) -> Result<ExitStatus, Error> {
    let project = project::load(&global.project_dir)?;
    // Never delete target/ under a running build: wait for its run lock first.
    let artifacts = Artifacts::new(&project);
    let lock = if project.root.join(&project.file.target_path).is_dir() {
        let waiting = |holder: &str| printer.info(&format!("Waiting for another run to finish ({holder})"));
        let id = uuid::Uuid::new_v4().to_string();
        let lease = project::profiles::DEFAULT_LOCK_LEASE;
        let timeout = std::time::Duration::from_secs(600);
        Some(artifacts.lock(&id, "tidemark clean", lease, timeout, waiting).await?)
    } else {
        None
    };
    let outcome = Artifacts::clean(&project);
    if let Some(lock) = lock {
        // Usually deleted with target/ already.
        lock.release().await;
    }
    let removed = outcome?;
    if removed.is_empty() {
        printer.info("Nothing to clean.");
    }
    for folder in removed {
        printer.info(&format!("Removed {folder}/"));
    }
    Ok(ExitStatus::Success)
}
