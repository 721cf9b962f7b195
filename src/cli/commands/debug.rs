//! `debug`: check the project, the profile and the warehouse, one line per check.

use crate::artifacts::TIDEMARK_VERSION;
use crate::cli::{ExitStatus, GlobalArgs, Printer};
use crate::diagnostics::Error;
use crate::execute::checks::{self, Check};
use crate::project;

/// Every check runs and prints its line; a failed check exits 1 (never an `Err`).
pub(crate) async fn execute(global: &GlobalArgs, printer: &Printer) -> Result<ExitStatus, Error> {
    let mut failed = false;
    let mut check = |name: &str, outcome: Check| match outcome {
        Check::Passed(detail) => printer.info(&format!("  {name:<10} OK    {detail}")),
        Check::Failed(detail) => {
            failed = true;
            printer.info(&format!("  {name:<10} FAIL  {detail}"));
        }
    };
    printer.info(&format!(
        "tidemark {TIDEMARK_VERSION} (DataFusion {})",
        datafusion::DATAFUSION_VERSION
    ));
    let project = match project::load(&global.project_dir) {
        Ok(project) => {
            check(
                "project",
                Check::Passed(format!(
                    "{} ({}): {} models, {} seeds, {} macros, {} property files",
                    project.file.name,
                    project.root.join(&project.file.file_name).display(),
                    project.models.len(),
                    project.seeds.len(),
                    project.macros.len(),
                    project.property_files.len()
                )),
            );
            project
        }
        Err(diagnostics) => {
            check("project", Check::Failed(diagnostics.to_string()));
            return Ok(ExitStatus::Failure);
        }
    };
    let target = match project::load_target(&project, global.profiles_dir.as_deref(), global.target.as_deref()) {
        Ok(target) => {
            let source = match &target.defined_in {
                Some(path) => format!("profile '{}' in {}", target.profile, path.display()),
                None => "no profiles.yml: built-in embedded default".into(),
            };
            check(
                "profile",
                Check::Passed(format!(
                    "target '{}' ({source}): type {}, schema {}, {} threads",
                    target.name,
                    target.engine.as_str(),
                    target.schema,
                    target.threads
                )),
            );
            target
        }
        Err(diagnostic) => {
            check("profile", Check::Failed(diagnostic.to_string()));
            return Ok(ExitStatus::Failure);
        }
    };
    let (outcome, warehouse) = checks::warehouse(&project, &target).await;
    check("warehouse", outcome);
    let Some(warehouse) = warehouse else {
        return Ok(ExitStatus::Failure);
    };
    for outcome in checks::source_stores(&project, &target, &warehouse).await {
        check("source", outcome);
    }
    // Every source opened and its first row read, as a run reads it.
    let vars = project::merged_vars(&project.file.vars, global.vars.as_deref());
    let graph = vars.map_err(|error| error.to_string()).and_then(|vars| {
        let engine = crate::compile::TemplateEngine::new(&project, &target, vars).map_err(|e| e.to_string())?;
        crate::graph::build(&project, &engine, &target).map_err(|e| e.to_string())
    });
    match graph {
        Ok(graph) => {
            for outcome in checks::sources(&target, warehouse.clone(), std::sync::Arc::new(graph)).await {
                check("source", outcome);
            }
        }
        Err(problem) => check("graph", Check::Failed(problem)),
    }
    if target.engine == project::Engine::Ballista {
        let cluster = checks::cluster(&target).await;
        let reachable = cluster.passed();
        check("cluster", cluster);
        if !reachable {
            printer.info("Some checks failed.");
            return Ok(ExitStatus::Failure);
        }
    }
    check("engine", checks::engine(&project, &target, warehouse).await);
    if failed {
        printer.info("Some checks failed.");
        Ok(ExitStatus::Failure)
    } else {
        printer.info("All checks passed!");
        Ok(ExitStatus::Success)
    }
}
