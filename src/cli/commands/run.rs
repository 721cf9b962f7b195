//! `build`, `run`, `seed` and `test`: select, compile, execute, record.

use std::sync::Arc;
use std::time::Instant;

use crate::artifacts::{Artifacts, RunSummary, TIDEMARK_VERSION};
use crate::cli::load::{load, Loaded};
use crate::cli::{ExitStatus, GlobalArgs, Printer, RunArgs};
use crate::diagnostics::{Diagnostic, Error};
use crate::documents::{InvocationArgs, NodeStatus, RunResults};
use crate::execute::run::{self, RunFlags, RunRequest, StartedRun};
use crate::execute::{self, ExecuteOptions, Reporter};
use crate::graph::select::Scope;

/// Which of the executing commands this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Build,
    Run,
    Seed,
    Test,
    Snapshot,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Build => "build",
            Kind::Run => "run",
            Kind::Seed => "seed",
            Kind::Test => "test",
            Kind::Snapshot => "snapshot",
        }
    }

    fn scope(self) -> Scope {
        let none = Scope {
            models: false,
            seeds: false,
            tests: false,
            sources: false,
            snapshots: false,
        };
        match self {
            Kind::Build => Scope {
                models: true,
                seeds: true,
                tests: true,
                sources: false,
                snapshots: true,
            },
            Kind::Run => Scope { models: true, ..none },
            Kind::Seed => Scope { seeds: true, ..none },
            Kind::Test => Scope { tests: true, ..none },
            Kind::Snapshot => Scope {
                snapshots: true,
                ..none
            },
        }
    }
}

/// `--fail-on-alert SEVERITY` is the var `fail_on_alert` (so `retry` runs with it too).
fn with_fail_on_alert(global: &GlobalArgs, severity: Option<&str>) -> Result<GlobalArgs, Error> {
    let mut global = global.clone();
    let Some(severity) = severity else {
        return Ok(global);
    };
    let mut vars: serde_yaml::Mapping = match &global.vars {
        Some(text) => serde_yaml::from_str(text).map_err(|error| {
            Diagnostic::new(format!("--vars is not a YAML/JSON mapping: {error}"))
                .with_help("write it as --vars '{name: value, other: 2}'")
        })?,
        None => serde_yaml::Mapping::new(),
    };
    vars.insert(
        crate::graph::FAIL_ON_ALERT_VAR.into(),
        serde_yaml::Value::from(severity),
    );
    let text = serde_json::to_string(&vars).map_err(|error| Error::Internal(error.to_string()))?;
    global.vars = Some(text);
    Ok(global)
}

pub(crate) async fn execute(
    global: &GlobalArgs,
    printer: &Arc<Printer>,
    kind: Kind,
    args: RunArgs,
) -> Result<ExitStatus, Error> {
    let clock = Instant::now();
    if args.fail_on_alert.is_some() && !matches!(kind, Kind::Build | Kind::Test) {
        return Err(Diagnostic::new(format!(
            "--fail-on-alert gates on a data test: use it with build or test, not {}",
            kind.name()
        ))
        .into());
    }
    let global = &with_fail_on_alert(global, args.fail_on_alert.as_deref())?;
    let loaded = load(global, printer)?;
    let selected = loaded.select(&args.selection, kind.scope())?;
    let run_id = uuid::Uuid::new_v4().to_string();
    let command = format!("tidemark {}", kind.name());
    let request = RunRequest {
        project: &loaded.project,
        target: &loaded.target,
        graph: &loaded.graph,
        selected: &selected,
        command: &command,
        writes: kind != Kind::Test,
        run_id: &run_id,
        lock_timeout: std::time::Duration::from_secs(args.lock_timeout),
    };
    let waiting = |holder: &str| {
        printer.info(&format!(
            "Waiting for another run to finish ({holder}); giving up after {} s (--lock-timeout)",
            args.lock_timeout
        ))
    };
    // One run at a time per project (target/) and per warehouse: a second run waits.
    let artifacts = Artifacts::new(&loaded.project);
    let target_lock = artifacts
        .lock(
            &run_id,
            &command,
            loaded.target.lock_lease,
            request.lock_timeout,
            waiting,
        )
        .await?;
    let started = match run::start(&request, waiting).await {
        Ok(started) => started,
        Err(error) => {
            target_lock.release().await;
            return Err(error);
        }
    };
    let recovered = [target_lock.recovered.as_ref(), started.recovered.as_ref()];
    for message in recovered.into_iter().flatten() {
        Reporter::notice(printer.as_ref(), message);
    }
    if started.swept > 0 {
        let message = format!(
            "deleted {} leftover object(s) from _tidemark/staging/ of runs that ended without cleaning up",
            started.swept
        );
        Reporter::notice(printer.as_ref(), &message);
    }
    let outcome = run_locked(global, printer, kind, &args, &loaded, &request, &started, clock).await;
    started.release().await;
    target_lock.release().await;
    match outcome? {
        ExitStatus::Success => match args.show.clone().or_else(|| match kind {
            Kind::Build | Kind::Run => loaded.project.file.show.clone(),
            _ => None,
        }) {
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
            None => Ok(ExitStatus::Success),
        },
        other => Ok(other),
    }
}

/// The rest of a run, with the run locks held.
#[allow(clippy::too_many_arguments, reason = "the state of one run, passed once")]
async fn run_locked(
    global: &GlobalArgs,
    printer: &Arc<Printer>,
    kind: Kind,
    args: &RunArgs,
    loaded: &Loaded,
    request: &RunRequest<'_>,
    started: &StartedRun,
    clock: Instant,
) -> Result<ExitStatus, Error> {
    let flags = RunFlags {
        full_refresh: args.full_refresh,
        event_time_start: args.event_time_start.clone(),
        event_time_end: args.event_time_end.clone(),
        defer: match args.defer {
            true => loaded.state(&args.selection)?,
            false => None,
        },
        favor_state: args.favor_state,
        profiles_dir: global.profiles_dir.clone(),
        store_failures: args.store_failures,
        warn_error: global.warn_error,
    };
    let planned = started.plan(request, &flags).await?;
    loaded.engine.set_full_refresh(args.full_refresh);
    // Introspective nodes are compiled again right before they run (see CompileOptions).
    let upfront = crate::compile::CompileOptions {
        defer_introspection: true,
        ..planned.compile.clone()
    };
    let compiled = loaded.compile(&loaded.graph, request.selected, &upfront)?;
    let recompile = loaded.recompiler(planned.compile.clone());
    let artifacts = Artifacts::new(&loaded.project);
    artifacts
        .write_compiled(&compiled)
        .and_then(|()| artifacts.write_manifest(&loaded.graph, &loaded.target).map(|_| ()))
        .map_err(|error| {
            Error::Environment(format!("cannot write to {}/: {error}", loaded.project.file.target_path))
        })?;

    let plan = execute::plan(&loaded.graph, request.selected, kind == Kind::Build);
    let threads = args.threads.unwrap_or(loaded.target.threads).max(1);
    printer.info(&format!("Running with tidemark={TIDEMARK_VERSION}"));
    printer.info(&super::project_counts(&loaded.graph));
    printer.info(&format!(
        "Target '{}' ({}), {}, {} thread{}",
        loaded.target.name,
        loaded.target.engine.as_str(),
        if started.offline {
            "unit tests only: no warehouse is read or written".to_string()
        } else {
            format!("warehouse {}", loaded.target.warehouse)
        },
        threads,
        if threads == 1 { "" } else { "s" }
    ));
    printer.info("");
    if plan.nodes.is_empty() {
        let nothing = Diagnostic::new("nothing to do: the selection matched no nodes this command runs").with_help(
            "check --select/--exclude and the nodes' enabled: configs (`tidemark ls` lists what a selection matches)",
        );
        if global.warn_error {
            return Err(nothing.into());
        }
        printer.warning(&nothing);
        return Ok(ExitStatus::Success);
    }

    let graph = loaded.graph.clone();
    let ready = started
        .session(request, &flags, planned, graph.clone(), compiled)
        .await?;
    if let Some((base, count)) = &ready.deferred {
        printer.info(&format!(
            "Deferring {count} unselected table{} to the --state run's warehouse {base}",
            if *count == 1 { "" } else { "s" },
        ));
    }
    let options = ExecuteOptions {
        threads,
        fail_fast: args.fail_fast,
        run_id: request.run_id.to_string(),
    };
    let mut session = ready.session;
    session.recompile = Some(recompile);
    let session = Arc::new(session);
    let on_start = crate::compile::run_hooks(&loaded.project, &loaded.engine, None)?;
    run_statements(printer, &session, "on-run-start", &on_start).await?;
    printer.start_progress(plan.nodes.len());
    let reporter: Arc<dyn Reporter> = printer.clone();
    let results = execute::execute(session.clone(), &plan, &options, reporter).await;
    printer.finish_progress();

    let elapsed = clock.elapsed().as_secs_f64();
    let selection = args.selection.clone();
    let summary = RunSummary {
        run_id: request.run_id,
        command: kind.name(),
        target: &loaded.target,
        args: InvocationArgs {
            select: selection.select,
            exclude: selection.exclude,
            selector: selection.selector,
            state: selection.state,
            defer: args.defer,
            favor_state: args.favor_state,
            full_refresh: args.full_refresh,
            store_failures: args.store_failures,
            event_time_start: args.event_time_start.clone(),
            event_time_end: args.event_time_end.clone(),
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
        tidemark_junit(path, &summary, &graph).map_err(|error| {
            Error::Environment(format!("cannot write the JUnit report {}: {error}", path.display()))
        })?;
    }
    let pairs: Vec<_> = results
        .iter()
        .map(|result| (&graph.nodes[&result.unique_id], result))
        .collect();
    printer.run_summary(&pairs, elapsed);
    // Alert cases are notified once their tables are committed.
    if !args.no_notify && !started.offline {
        let notified = execute::notify::notify(&session, &results, &loaded.engine).await;
        for line in &notified.sent {
            printer.info(&format!("Notified the {line}"));
        }
        for warning in &notified.warnings {
            printer.warning(&Diagnostic::new(warning.clone()));
        }
    }
    let on_end = crate::compile::run_hooks(&loaded.project, &loaded.engine, Some((&graph, &results)))?;
    run_statements(printer, &session, "on-run-end", &on_end).await?;
    if results.iter().any(|result| result.status.is_failure()) {
        return Ok(ExitStatus::Failure);
    }
    Ok(ExitStatus::Success)
}

/// Runs the project's `on-run-start` or `on-run-end` statements, saying how many.
async fn run_statements(
    printer: &Printer,
    session: &execute::Session,
    what: &str,
    statements: &[String],
) -> Result<(), Error> {
    if statements.is_empty() {
        return Ok(());
    }
    printer.info(&format!(
        "Running {} {what} hook{}",
        statements.len(),
        if statements.len() == 1 { "" } else { "s" }
    ));
    StartedRun::run_statements(session, what, statements).await
}

fn tidemark_junit(
    path: &std::path::Path,
    summary: &RunSummary<'_>,
    graph: &crate::graph::Graph,
) -> std::io::Result<()> {
    crate::artifacts::write_atomically(path, crate::artifacts::junit_xml(summary, graph).as_bytes())
}

/// `tidemark retry`: the nodes of the last `build`/`run`/`seed`/`test` that errored, failed or
/// were skipped, run again by the same command with the same options. Its own
/// `run_results.json` records the same command and options, so a retry can be retried.
pub(crate) async fn retry(global: &GlobalArgs, printer: &Arc<Printer>) -> Result<ExitStatus, Error> {
    let project = crate::project::load(&global.project_dir)?;
    let path = project.root.join(&project.file.target_path).join("run_results.json");
    let previous: RunResults = std::fs::read_to_string(&path)
        .map_err(|error| error.to_string())
        .and_then(|text| serde_json::from_str(&text).map_err(|error| error.to_string()))
        .map_err(|error| {
            Diagnostic::new(format!(
                "nothing to retry: cannot read {}/run_results.json ({error})",
                project.file.target_path
            ))
            .with_help("run build, run, seed or test first")
        })?;
    let kind = match previous.command.as_str() {
        "build" => Kind::Build,
        "run" => Kind::Run,
        "seed" => Kind::Seed,
        "test" => Kind::Test,
        "snapshot" => Kind::Snapshot,
        other => {
            return Err(Diagnostic::new(format!(
                "the last invocation ({}) is not build, run, seed or test; nothing to retry",
                if other.is_empty() { "unknown" } else { other }
            ))
            .into());
        }
    };
    let retried: Vec<String> = previous
        .results
        .iter()
        .filter(|result| result.status.is_failure() || result.status == NodeStatus::Skipped)
        .map(|result| format!("unique_id:{}", result.unique_id))
        .collect();
    if retried.is_empty() {
        printer.info(&format!(
            "Nothing to retry: every node of the last `tidemark {}` succeeded.",
            kind.name()
        ));
        return Ok(ExitStatus::Success);
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
        // Kept in the recorded vars.
        fail_on_alert: None,
        no_notify: false,
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
