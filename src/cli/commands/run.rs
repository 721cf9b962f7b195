//! `build`, `run`, `seed` and `test`: select, compile, execute, record.

use std::sync::Arc;
use std::time::Instant;

use crate::artifacts::{Artifacts, RunSummary, TIDEMARK_VERSION};
use crate::cli::load::{compile_or_report, load};
use crate::cli::{ExitStatus, GlobalArgs, Printer, RunArgs};
use crate::documents::{InvocationArgs, RunResults};
use crate::execute::{self, ExecuteOptions, Reporter, Session};
use crate::graph::select::Scope;

/// Which of the executing commands this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Build,
    Run,
    Seed,
    Test,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Build => "build",
            Kind::Run => "run",
            Kind::Seed => "seed",
            Kind::Test => "test",
        }
    }

    fn scope(self) -> Scope {
        let none = Scope {
            models: false,
            seeds: false,
            tests: false,
            sources: false,
        };
        match self {
            Kind::Build => Scope {
                models: true,
                seeds: true,
                tests: true,
                sources: false,
            },
            Kind::Run => Scope { models: true, ..none },
            Kind::Seed => Scope { seeds: true, ..none },
            Kind::Test => Scope { tests: true, ..none },
        }
    }
}

pub(crate) async fn execute(global: &GlobalArgs, printer: &Arc<Printer>, kind: Kind, args: RunArgs) -> ExitStatus {
    let clock = Instant::now();
    let Ok(loaded) = load(global, printer) else {
        return ExitStatus::Error;
    };
    let Ok(selected) = loaded.select(&args.selection, kind.scope(), printer) else {
        return ExitStatus::Error;
    };
    // Unit tests alone never touch the warehouse: they run on an in-memory store.
    let offline = only_unit_tests(&loaded.graph, &selected);
    let warehouse = if offline {
        crate::materialize::Warehouse::open_url("memory://", &Default::default()).map_err(|error| {
            printer.fatal(&format!("cannot open an in-memory store: {error}"));
        })
    } else {
        super::open_warehouse(&loaded.project, &loaded.target, printer)
    };
    let Ok(warehouse) = warehouse else {
        return ExitStatus::Error;
    };
    // Fail early, with the setting to fix, when the warehouse cannot be written.
    if kind != Kind::Test {
        if let Err(error) = warehouse.check_writable().await {
            printer.fatal(&format!(
                "warehouse {} is not reachable or not writable: {error}",
                warehouse.display()
            ));
            return ExitStatus::Error;
        }
    }
    // One run at a time per project (target/) and per warehouse: a second run waits.
    let run_id = uuid::Uuid::new_v4().to_string();
    let command = format!("tidemark {}", kind.name());
    let timeout = std::time::Duration::from_secs(args.lock_timeout);
    let waiting = |holder: &str| {
        printer.info(&format!(
            "Waiting for another run to finish ({holder}); giving up after {} s (--lock-timeout)",
            args.lock_timeout
        ))
    };
    let artifacts = Artifacts::new(&loaded.project);
    let target_lock = match artifacts
        .lock(&run_id, &command, loaded.target.lock_lease, timeout, waiting)
        .await
    {
        Ok(lock) => lock,
        Err(message) => {
            printer.fatal(&message);
            return ExitStatus::Error;
        }
    };
    let warehouse_lock = match offline {
        true => None,
        false => match warehouse.lock_run(&run_id, &command, timeout, waiting).await {
            Ok(lock) => Some(lock),
            Err(message) => {
                target_lock.release().await;
                printer.fatal(&message);
                return ExitStatus::Error;
            }
        },
    };
    let held = [Some(&target_lock), warehouse_lock.as_ref()];
    for message in held.into_iter().flatten().filter_map(|lock| lock.recovered.as_ref()) {
        crate::execute::Reporter::notice(printer.as_ref(), message);
    }
    let status = run_locked(global, printer, kind, args, loaded, selected, warehouse, run_id, clock).await;
    if let Some(lock) = warehouse_lock {
        lock.release().await;
    }
    target_lock.release().await;
    status
}

/// Whether the selection is unit tests alone (which need no warehouse).
fn only_unit_tests(graph: &crate::graph::Graph, selected: &std::collections::BTreeSet<String>) -> bool {
    !selected.is_empty() && selected.iter().all(|id| graph.unit_tests.contains_key(id))
}

/// The rest of a run, with the run locks held.
#[allow(clippy::too_many_arguments, reason = "the state of one run, passed once")]
async fn run_locked(
    global: &GlobalArgs,
    printer: &Arc<Printer>,
    kind: Kind,
    args: RunArgs,
    loaded: crate::cli::load::Loaded,
    selected: std::collections::BTreeSet<String>,
    warehouse: crate::materialize::Warehouse,
    run_id: String,
    clock: Instant,
) -> ExitStatus {
    let incremental =
        match crate::execute::time_range::incremental_models(&loaded.graph, &selected, &warehouse, args.full_refresh)
            .await
        {
            Ok(incremental) => incremental,
            Err(message) => {
                printer.fatal(&message);
                return ExitStatus::Error;
            }
        };
    // Time-range incremental models: those with an `event_time` that run incrementally.
    let planned = async {
        use crate::execute::time_range::{date_flag, plan};
        let start = date_flag("event-time-start", &args.event_time_start)?;
        let end = date_flag("event-time-end", &args.event_time_end)?;
        plan(&loaded.target, &loaded.graph, &warehouse, &incremental, start, end).await
    };
    let (time_filters, ranges) = match planned.await {
        Ok(plan) => plan,
        Err(message) => {
            printer.fatal(&message);
            return ExitStatus::Error;
        }
    };
    let mut options = crate::compile::CompileOptions {
        time_filters,
        ..Default::default()
    };
    options.incremental = incremental;
    let Ok(compiled) = compile_or_report(&loaded, &loaded.graph, &selected, &options, printer) else {
        return ExitStatus::Error;
    };
    let artifacts = Artifacts::new(&loaded.project);
    if let Err(error) = artifacts
        .write_compiled(&compiled)
        .and_then(|()| artifacts.write_manifest(&loaded.graph, &loaded.target).map(|_| ()))
    {
        printer.fatal(&format!(
            "cannot write to {}/: {error}",
            loaded.project.file.target_path
        ));
        return ExitStatus::Error;
    }

    let plan = execute::plan(&loaded.graph, &selected, kind == Kind::Build);
    let threads = args.threads.unwrap_or(loaded.target.threads).max(1);
    printer.info(&format!("Running with tidemark={TIDEMARK_VERSION}"));
    printer.info(&super::project_counts(&loaded.graph));
    let offline = only_unit_tests(&loaded.graph, &selected);
    printer.info(&format!(
        "Target '{}' ({}), {}, {} thread{}",
        loaded.target.name,
        loaded.target.engine.as_str(),
        if offline {
            "unit tests only: no warehouse is read or written".to_string()
        } else {
            format!("warehouse {}", loaded.target.warehouse)
        },
        threads,
        if threads == 1 { "" } else { "s" }
    ));
    printer.info("");
    if plan.nodes.is_empty() {
        printer.info("Nothing to do: the selection matched no nodes this command runs.");
        return ExitStatus::Success;
    }

    let deferred = if args.defer {
        let Ok(deferred) = deferrals(
            &loaded,
            global.profiles_dir.as_deref(),
            &args,
            &selected,
            &warehouse,
            printer,
        )
        .await
        else {
            return ExitStatus::Error;
        };
        deferred
    } else {
        Vec::new()
    };
    let graph = Arc::new(loaded.graph);
    let session = match Session::new(&loaded.target, warehouse, graph.clone(), Arc::new(compiled)) {
        Ok(mut session) => {
            session.incremental = options.incremental;
            session.time_ranges = ranges;
            session.store_failures = args.store_failures;
            for (id, warehouse, relation) in deferred {
                session.defer(&id, warehouse, relation);
            }
            Arc::new(session)
        }
        Err(error) => {
            printer.fatal(&error.to_string());
            return ExitStatus::Error;
        }
    };
    let options = ExecuteOptions {
        threads,
        fail_fast: args.fail_fast,
        run_id: run_id.clone(),
    };
    printer.start_progress(plan.nodes.len());
    let reporter: Arc<dyn Reporter> = printer.clone();
    let results = execute::execute(session, &plan, &options, reporter).await;
    printer.finish_progress();

    let elapsed = clock.elapsed().as_secs_f64();
    let summary = RunSummary {
        run_id: &run_id,
        command: kind.name(),
        target: &loaded.target,
        args: InvocationArgs {
            select: args.selection.select,
            exclude: args.selection.exclude,
            selector: args.selection.selector,
            state: args.selection.state,
            defer: args.defer,
            favor_state: args.favor_state,
            full_refresh: args.full_refresh,
            store_failures: args.store_failures,
            event_time_start: args.event_time_start,
            event_time_end: args.event_time_end,
            lock_timeout: args.lock_timeout,
            threads: Some(threads),
            fail_fast: args.fail_fast,
            vars: global.vars.clone(),
        },
        elapsed_seconds: elapsed,
        results: &results,
    };
    if let Err(error) = artifacts.write_run_results(&summary) {
        printer.fatal(&format!("cannot write run_results.json: {error}"));
    }
    if let Some(path) = &args.junit {
        if let Err(error) = tidemark_junit(path, &summary, &graph) {
            printer.fatal(&format!("cannot write the JUnit report {}: {error}", path.display()));
            return ExitStatus::Error;
        }
    }
    let pairs: Vec<_> = results
        .iter()
        .map(|result| (&graph.nodes[&result.unique_id], result))
        .collect();
    printer.run_summary(&pairs, elapsed);
    if results.iter().any(|result| result.status.is_failure()) {
        return ExitStatus::Failure;
    }
    match args.show {
        Some(model) => {
            printer.info("");
            let show = super::show::ShowArgs {
                select: Some(model),
                inline: None,
                limit: 20,
                explain: false,
                analyze: false,
            };
            super::show::execute(global, printer, show).await
        }
        None => ExitStatus::Success,
    }
}

fn tidemark_junit(
    path: &std::path::Path,
    summary: &RunSummary<'_>,
    graph: &crate::graph::Graph,
) -> std::io::Result<()> {
    crate::artifacts::write_atomically(path, crate::artifacts::junit_xml(summary, graph).as_bytes())
}

/// `--defer`: the unselected tables the selection reads that this target has not built, read
/// from the `--state` run's warehouse (see [`crate::execute::defer`]).
async fn deferrals(
    loaded: &crate::cli::load::Loaded,
    profiles_dir: Option<&std::path::Path>,
    args: &RunArgs,
    selected: &std::collections::BTreeSet<String>,
    warehouse: &crate::materialize::Warehouse,
    printer: &Printer,
) -> Result<Vec<crate::execute::defer::Deferred>, ()> {
    let report = |diagnostic: crate::diagnostics::Diagnostic| printer.diagnostics(&diagnostic.into());
    let Some(state) = loaded.state(&args.selection).map_err(report)? else {
        return Ok(Vec::new());
    };
    let needs = crate::execute::defer::Needs {
        project: &loaded.project,
        target: &loaded.target,
        profiles_dir,
        graph: &loaded.graph,
        selected,
        favor_state: args.favor_state,
    };
    let (base, deferred) = crate::execute::defer::deferrals(&state, &needs, warehouse)
        .await
        .map_err(report)?;
    printer.info(&format!(
        "Deferring {} unselected table{} to the --state run's warehouse {}",
        deferred.len(),
        if deferred.len() == 1 { "" } else { "s" },
        base.display()
    ));
    Ok(deferred)
}

/// `tidemark retry`: the nodes of the last `build`/`run`/`seed`/`test` that errored, failed or
/// were skipped, run again by the same command with the same options. Its own
/// `run_results.json` records the same command and options, so a retry can be retried.
pub(crate) async fn retry(global: &GlobalArgs, printer: &Arc<Printer>) -> ExitStatus {
    let Ok(project) = crate::project::load(&global.project_dir).map_err(|d| printer.diagnostics(&d)) else {
        return ExitStatus::Error;
    };
    let path = project.root.join(&project.file.target_path).join("run_results.json");
    let previous: RunResults = match std::fs::read_to_string(&path)
        .map_err(|error| error.to_string())
        .and_then(|text| serde_json::from_str(&text).map_err(|error| error.to_string()))
    {
        Ok(previous) => previous,
        Err(error) => {
            printer.fatal(&format!(
                "nothing to retry: cannot read {}/run_results.json ({error}); run build, run, seed or test first",
                project.file.target_path
            ));
            return ExitStatus::Error;
        }
    };
    let kind = match previous.command.as_str() {
        "build" => Kind::Build,
        "run" => Kind::Run,
        "seed" => Kind::Seed,
        "test" => Kind::Test,
        other => {
            printer.fatal(&format!(
                "the last invocation ({}) is not build, run, seed or test; nothing to retry",
                if other.is_empty() { "unknown" } else { other }
            ));
            return ExitStatus::Error;
        }
    };
    let retried: Vec<String> = previous
        .results
        .iter()
        .filter(|result| matches!(result.status.as_str(), "error" | "fail" | "skipped"))
        .map(|result| format!("unique_id:{}", result.unique_id))
        .collect();
    if retried.is_empty() {
        printer.info(&format!(
            "Nothing to retry: every node of the last `tidemark {}` succeeded.",
            kind.name()
        ));
        return ExitStatus::Success;
    }
    let args = previous.args;
    let run_args = RunArgs {
        selection: crate::cli::SelectArgs {
            select: retried,
            exclude: args.exclude,
            selector: None,
            state: args.state,
        },
        threads: args.threads,
        fail_fast: args.fail_fast,
        junit: None,
        show: None,
        full_refresh: args.full_refresh,
        event_time_start: args.event_time_start,
        event_time_end: args.event_time_end,
        store_failures: args.store_failures,
        defer: args.defer,
        favor_state: args.favor_state,
        lock_timeout: args.lock_timeout,
    };
    let mut global = global.clone();
    if global.vars.is_none() {
        global.vars = args.vars;
    }
    printer.info(&format!(
        "Retrying {} node{} of the last `tidemark {}`",
        run_args.selection.select.len(),
        if run_args.selection.select.len() == 1 { "" } else { "s" },
        kind.name()
    ));
    execute(&global, printer, kind, run_args).await
}
