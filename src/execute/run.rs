//! A run's set-up around its nodes: the warehouse it writes, the warehouse's run lock, which
//! models run incrementally and over which dates, the tables `--defer` reads elsewhere, and the
//! [`Session`] that executes the plan. The CLI calls these in order and prints what they say.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::Session;
use crate::compile::{CompileOptions, CompiledProject};
use crate::diagnostics::{Diagnostic, Error};
use crate::graph::state::State;
use crate::graph::Graph;
use crate::materialize::lock::Lock;
use crate::materialize::Warehouse;
use crate::project::{Project, Target};

/// What a `build`, `run`, `seed` or `test` works on.
pub struct RunRequest<'a> {
    pub project: &'a Project,
    pub target: &'a Target,
    pub graph: &'a Graph,
    pub selected: &'a BTreeSet<String>,
    /// `tidemark build`, … (recorded in the lock, so a waiting run can say who it waits for).
    pub command: &'a str,
    /// Whether the command writes tables: the warehouse must then be writable.
    pub writes: bool,
    pub run_id: &'a str,
    /// How long to wait for another run's lock (`--lock-timeout`).
    pub lock_timeout: Duration,
}

/// Options that change what a run computes and where it reads from.
#[derive(Default)]
pub struct RunFlags {
    /// `--full-refresh`.
    pub full_refresh: bool,
    /// `--event-time-start` / `--event-time-end`, as given.
    pub event_time_start: Option<String>,
    pub event_time_end: Option<String>,
    /// `--defer` with the `--state` run it defers to.
    pub defer: Option<State>,
    /// `--favor-state`.
    pub favor_state: bool,
    /// `--profiles-dir` (the `--state` run's target is looked up there).
    pub profiles_dir: Option<PathBuf>,
    /// `--store-failures`.
    pub store_failures: bool,
    /// `--warn-error`: tests that would warn fail.
    pub warn_error: bool,
}

/// A run with its warehouse open and its lock held. [`StartedRun::release`] ends it.
pub struct StartedRun {
    pub warehouse: Warehouse,
    /// Unit tests alone: an in-memory store, no lock, nothing read or written.
    pub offline: bool,
    /// Said when a crashed run's lock was replaced.
    pub recovered: Option<String>,
    /// Objects deleted from the staging folders of runs that ended without cleaning up.
    pub swept: usize,
    lock: Option<Lock>,
}

/// What runs incrementally and over which dates: compile with `compile`, run with `ranges`.
pub struct Planned {
    pub compile: CompileOptions,
    ranges: std::collections::BTreeMap<String, String>,
}

/// The session and, with `--defer`, where deferred tables are read from and how many.
pub struct Ready {
    pub session: Session,
    pub deferred: Option<(String, usize)>,
}

/// Whether `selected` is unit tests alone (which need no warehouse).
pub fn only_unit_tests(graph: &Graph, selected: &BTreeSet<String>) -> bool {
    !selected.is_empty() && selected.iter().all(|id| graph.unit_tests.contains_key(id))
}

/// Opens the target's warehouse, or says which settings to check.
pub fn open_warehouse(project: &Project, target: &Target) -> Result<Warehouse, Diagnostic> {
    Warehouse::open(target, &project.root).map_err(|error| {
        Diagnostic::new(format!("target '{}': {error}", target.name))
            .with_help("check warehouse: and storage: of the target in profiles.yml (`tidemark debug` tests them)")
    })
}

/// Opens the warehouse (an in-memory one for unit tests alone), checks that it can be written,
/// and takes its run lock, waiting for another run while `waiting` is told who holds it.
pub async fn start(request: &RunRequest<'_>, waiting: impl FnMut(&str)) -> Result<StartedRun, Error> {
    let offline = only_unit_tests(request.graph, request.selected);
    if offline {
        let warehouse = Warehouse::open_url("memory://", &Default::default())
            .map_err(|error| Error::Internal(format!("cannot open an in-memory store: {error}")))?;
        return Ok(StartedRun {
            warehouse,
            offline,
            recovered: None,
            swept: 0,
            lock: None,
        });
    }
    let warehouse = open_warehouse(request.project, request.target)?;
    // Fail early, with the setting to fix, when the warehouse cannot be written.
    if request.writes {
        warehouse.check_writable().await.map_err(|error| {
            Error::Environment(format!(
                "warehouse {} is not reachable or not writable: {error}",
                warehouse.display()
            ))
        })?;
    }
    let lock = warehouse
        .lock_run(request.run_id, request.command, request.lock_timeout, waiting)
        .await?;
    // What killed or cut-off runs left half-written is deleted (best effort: it is never read).
    let swept = if request.writes {
        warehouse.sweep_staging(request.run_id).await.unwrap_or(0)
    } else {
        0
    };
    Ok(StartedRun {
        warehouse,
        offline,
        recovered: lock.recovered.clone(),
        swept,
        lock: Some(lock),
    })
}

impl StartedRun {
    /// Which selected incremental models run incrementally, and the dates each time-range model
    /// recomputes (the module notes of `execute::time_range`).
    pub async fn plan(&self, request: &RunRequest<'_>, flags: &RunFlags) -> Result<Planned, Error> {
        use super::time_range::{date_flag, incremental_models, plan};
        let incremental =
            incremental_models(request.graph, request.selected, &self.warehouse, flags.full_refresh).await?;
        let start = date_flag("event-time-start", &flags.event_time_start)?;
        let end = date_flag("event-time-end", &flags.event_time_end)?;
        let (time_filters, ranges) =
            plan(request.target, request.graph, &self.warehouse, &incremental, start, end).await?;
        Ok(Planned {
            compile: CompileOptions {
                time_filters,
                incremental,
                defer_introspection: false,
            },
            ranges,
        })
    }

    /// The session that runs `compiled`, reading deferred tables from the `--state` run.
    pub async fn session(
        &self,
        request: &RunRequest<'_>,
        flags: &RunFlags,
        planned: Planned,
        graph: Arc<Graph>,
        compiled: CompiledProject,
    ) -> Result<Ready, Error> {
        let mut deferrals = None;
        if let Some(state) = &flags.defer {
            let needs = super::defer::Needs {
                project: request.project,
                target: request.target,
                profiles_dir: flags.profiles_dir.as_deref(),
                graph: request.graph,
                selected: request.selected,
                favor_state: flags.favor_state,
            };
            deferrals = Some(super::defer::deferrals(state, &needs, &self.warehouse).await?);
        }
        let mut session = Session::new(request.target, self.warehouse.clone(), graph, Arc::new(compiled))
            .map_err(|error| Error::Environment(error.to_string()))?;
        session.incremental = planned.compile.incremental;
        session.time_ranges = planned.ranges;
        session.store_failures = flags.store_failures;
        session.warn_error = flags.warn_error;
        let mut deferred = None;
        if let Some((base, tables)) = deferrals {
            deferred = Some((base.display(), tables.len()));
            for (id, warehouse, relation) in tables {
                session.defer(&id, warehouse, relation);
            }
        }
        Ok(Ready { session, deferred })
    }

    /// Runs statements of the run itself (`on-run-start`, `on-run-end`) in `session`, in order;
    /// the first that fails stops them, with its number and the engine's message.
    pub async fn run_statements(session: &Session, what: &str, statements: &[String]) -> Result<(), Error> {
        session.run_statements(statements).await.map_err(|(number, message)| {
            Error::Environment(format!("{what} {number} of {} failed: {message}", statements.len()))
        })?;
        Ok(())
    }

    /// Releases the warehouse's run lock.
    pub async fn release(self) {
        if let Some(lock) = self.lock {
            lock.release().await;
        }
    }
}
