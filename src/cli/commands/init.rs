//! `init`: scaffold a new project that builds at once (see [`crate::project::scaffold`]).

use std::path::PathBuf;

use clap::Args;

use crate::cli::{ExitStatus, Printer};
use crate::diagnostics::Error;

#[derive(Debug, Args)]
pub(crate) struct InitArgs {
    /// Folder of the new project (created when missing; default: the current folder). Its name
    /// becomes the project's name.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Overwrite the files init writes when they exist (other files are left alone).
    #[arg(long)]
    pub force: bool,
}

pub(crate) fn execute(printer: &Printer, args: InitArgs) -> Result<ExitStatus, Error> {
    let (name, written) = crate::project::scaffold::scaffold(&args.dir, args.force)?;
    printer.info(&format!("Created project '{name}' in {}:", args.dir.display()));
    for path in &written {
        printer.info(&format!("  {path}"));
    }
    let enter = if args.dir == std::path::Path::new(".") {
        String::new()
    } else {
        format!("cd {} && ", args.dir.display())
    };
    printer.info(&format!(
        "Next: `{enter}tidemark build` builds it and shows the latest week of the scorecard."
    ));
    Ok(ExitStatus::Success)
}
