//! `debug`: check the project, the profile and the warehouse, one line per check.

use std::sync::Arc;

use crate::artifacts::TIDEMARK_VERSION;
use crate::cli::{ExitStatus, GlobalArgs, Printer};
use crate::compile::CompiledProject;
use crate::execute::Session;
use crate::graph::Graph;
use crate::project;

pub(crate) async fn execute(global: &GlobalArgs, printer: &Printer) -> ExitStatus {
    let mut failed = false;
    let mut check = |name: &str, outcome: Result<String, String>| match outcome {
        Ok(detail) => printer.info(&format!("  {name:<10} OK    {detail}")),
        Err(detail) => {
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
                Ok(format!(
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
            check("project", Err(diagnostics.to_string()));
            return ExitStatus::Failure;
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
                Ok(format!(
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
            check("profile", Err(diagnostic.to_string()));
            return ExitStatus::Failure;
        }
    };
    let warehouse = match crate::materialize::Warehouse::open(&target, &project.root) {
        Err(error) => {
            check("warehouse", Err(format!("{}: {error}", target.warehouse)));
            return ExitStatus::Failure;
        }
        Ok(warehouse) => match warehouse.check_writable().await {
            Ok(()) => {
                check(
                    "warehouse",
                    Ok(format!("{} is reachable, readable and writable", warehouse.display())),
                );
                warehouse
            }
            Err(error) => {
                check("warehouse", Err(format!("{}: {error}", warehouse.display())));
                return ExitStatus::Failure;
            }
        },
    };
    // Every other store the project reads from (URL sources).
    let mut bases = std::collections::BTreeSet::new();
    for source in project.property_files.iter().flat_map(|file| file.sources.iter()) {
        for table in &source.tables {
            let Some(location) = table.location.as_deref() else {
                continue;
            };
            if !crate::materialize::store::is_store_url(location) {
                continue;
            }
            let Ok(url) = url::Url::parse(location) else { continue };
            let base = url[..url::Position::BeforePath].to_string();
            if !bases.insert(base.clone()) || warehouse.display().starts_with(&base) {
                continue;
            }
            let outcome = match crate::materialize::store::open(location, &target.storage) {
                Err(error) => Err(error.to_string()),
                Ok(opened) => {
                    use futures::{StreamExt, TryStreamExt};
                    let listing: Result<Vec<_>, _> =
                        opened.store.list(Some(&opened.prefix)).take(1).try_collect().await;
                    listing
                        .map(|_| format!("{base} is reachable and readable"))
                        .map_err(|error| crate::materialize::describe_store_error(&error))
                }
            };
            check("source", outcome.map_err(|error| format!("{location}: {error}")));
        }
    }
    let graph = Arc::new(Graph::empty(project.file.name.clone()));
    if target.engine == project::Engine::Ballista {
        let cluster = cluster_check(&target).await;
        let reachable = cluster.is_ok();
        check("cluster", cluster);
        if !reachable {
            printer.info("Some checks failed.");
            return ExitStatus::Failure;
        }
    }
    let answers = match target.engine {
        project::Engine::Embedded => "embedded DataFusion session answers queries",
        project::Engine::Ballista => "a query ran on the cluster and its result came back",
    };
    let engine = match Session::new(&target, warehouse, graph, Arc::new(CompiledProject::default())) {
        Ok(session) => match session.ctx.sql("select 1 as ok").await {
            Ok(frame) => frame
                .collect()
                .await
                .map(|_| answers.to_string())
                .map_err(|e| e.strip_backtrace()),
            Err(error) => Err(error.strip_backtrace()),
        },
        Err(error) => Err(error.to_string()),
    };
    check("engine", engine);
    if failed {
        printer.info("Some checks failed.");
        ExitStatus::Failure
    } else {
        printer.info("All checks passed!");
        ExitStatus::Success
    }
}

/// The scheduler of a `ballista` target: reachable, and how many executors it has.
#[cfg(feature = "ballista")]
async fn cluster_check(target: &project::Target) -> Result<String, String> {
    let url = target.url.clone().unwrap_or_default();
    let address = project::profiles::scheduler_address(&url)?;
    match crate::cluster::executor_count(&address).await {
        Ok(0) => Err(format!(
            "scheduler {url} is reachable but has no executors: start ballista-executor processes pointing at it"
        )),
        Ok(count) => Ok(format!(
            "scheduler {url} is reachable, {count} executor{} registered",
            if count == 1 { "" } else { "s" }
        )),
        Err(error) => Err(format!(
            "{error} (check url: in the target, and that ballista-scheduler runs there)"
        )),
    }
}

#[cfg(not(feature = "ballista"))]
async fn cluster_check(target: &project::Target) -> Result<String, String> {
    Err(project::profiles::without_ballista(target))
}
