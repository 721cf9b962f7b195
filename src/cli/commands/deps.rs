//! `deps`: install the packages of `packages.yml` (or `dependencies.yml`) into `dbt_packages/`.

use std::sync::Arc;

use clap::Args;

use crate::cli::{ExitStatus, GlobalArgs, Printer};
use crate::diagnostics::Error;
use crate::project::packages::{self, lock};

#[derive(Debug, Args)]
pub(crate) struct DepsArgs {
    /// Resolve git revisions again (the newest commit of each branch or tag) instead of the
    /// commits package-lock.yml pins, and rewrite the lock.
    #[arg(long)]
    pub upgrade: bool,
}

pub(crate) async fn execute(global: &GlobalArgs, printer: &Arc<Printer>, args: DepsArgs) -> Result<ExitStatus, Error> {
    let root = global.project_dir.canonicalize().map_err(|error| {
        Error::Environment(format!(
            "cannot open project folder '{}': {error}",
            global.project_dir.display()
        ))
    })?;
    // The project file names the install folder; its packages need not be installed yet.
    let file = crate::project::read_project_file(&root)?;
    let specs = packages::specs(&root)?;
    if specs.is_empty() {
        printer.info("No packages: packages.yml (or dependencies.yml) lists none.");
        return Ok(ExitStatus::Success);
    }
    // The lock pins git commits while packages.yml lists the same packages.
    let listed: Vec<packages::Source> = specs.iter().map(|spec| spec.source.clone()).collect();
    let listed_file = root.join(&specs[0].file);
    let listed_sha256 = crate::project::sha256(&std::fs::read(&listed_file).unwrap_or_default());
    let had_lock = root.join(lock::LOCK_FILE).is_file();
    let locked = lock::read(&root, &listed_sha256);
    let locked = match (args.upgrade, !locked.is_empty() && lock::matches(&listed, &locked)) {
        (false, true) => {
            printer.info(&format!("Installing the commits {} pins", lock::LOCK_FILE));
            locked
        }
        (false, false) if had_lock => {
            printer.info(&format!(
                "{} changed since {} was written: resolving the packages again",
                specs[0].file,
                lock::LOCK_FILE
            ));
            Vec::new()
        }
        _ => Vec::new(),
    };
    let installed = packages::install(&root, &file.packages_install_path, &specs, &locked, |message| {
        printer.info(message)
    })
    .await?;
    let pinned: Vec<(packages::Source, String)> = installed
        .iter()
        .map(|package| (package.locked.clone(), package.name.clone()))
        .collect();
    lock::write(&root, &pinned, &listed_sha256)
        .map_err(|error| Error::Environment(format!("cannot write {}: {error}", lock::LOCK_FILE)))?;
    for package in &installed {
        printer.info(&format!("Installed {} from {}", package.name, package.from));
    }
    printer.info(&format!(
        "Installed {} package{} into {}/",
        installed.len(),
        if installed.len() == 1 { "" } else { "s" },
        file.packages_install_path
    ));
    Ok(ExitStatus::Success)
}
