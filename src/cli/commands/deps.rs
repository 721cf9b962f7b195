//! `deps`: install the packages of `packages.yml` (or `dependencies.yml`) into `dbt_packages/`.

use std::sync::Arc;

use crate::cli::{ExitStatus, GlobalArgs, Printer};
use crate::diagnostics::Error;
use crate::project::packages;

pub(crate) async fn execute(global: &GlobalArgs, printer: &Arc<Printer>) -> Result<ExitStatus, Error> {
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
    let installed = packages::install(&root, &file.packages_install_path, &specs, |message| {
        printer.info(message)
    })
    .await?;
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
