//! # tidemark
//!
//! A SQL-first transformation engine: analytics engineers keep SQL models and YAML metric
//! models (scorecards and alerts) in git; tidemark compiles them to Apache DataFusion SQL, runs
//! them in dependency order and materialises the results as Parquet tables that any reader can
//! open.
//!
//! ## Pipeline
//!
//! One module per stage; stages talk through plain data types and never reach back.
//!
//! ```text
//!  files ──project──▶ Project ──metrics (metric_models: YAML → generated SQL models)──▶
//!        ──template (parse phase: ref/source/config calls)──▶ Capture
//!        ──graph──▶ Graph (nodes, DAG, order) + selection ──compile──▶ CompiledProject (SQL per node)
//!        ──execute (embedded DataFusion SessionContext | Ballista SessionContext)──▶ record batch streams
//!        ──materialize──▶ Parquet tables, committed atomically
//!        ──artifacts──▶ target/{manifest.json, run_results.json, compiled/**.sql, catalog.json, docs/}
//! ```
//!
//! | module | owns |
//! |---|---|
//! | [`project`] | reading project files: `tidemark.yml`/`dbt_project.yml`, `profiles.yml`, `selectors.yml`, models, macros, seeds, snapshots, property YAML (its Jinja values rendered with the target and vars, [`project::render`]), docs blocks, installed packages (and `tidemark deps`, [`project::packages`]); which keys it knows ([`project::keys`]); the new project `tidemark init` writes ([`project::scaffold`]) |
//! | [`template`] | minijinja environment with the dbt context (`ref`, `source`, `config`, `var`, `env_var`, `this`, `is_incremental`, macros, package namespaces, `adapter` with `dispatch`, the `dbt` namespace of cross-database macros) and runtime (`execute`, `run_query`/`statement` through a [`template::QueryRunner`] the caller sets, `return`, `log`, `modules`, lists and dicts that change in place); parse and compile renders |
//! | [`graph`] | nodes with resolved configs and checksums (what only one kind of node has, its relation, files, generic test or snapshot strategy, is its [`graph::Resource`]), the DAG (cycles rejected with their path), what `ref()` names (package, name and model version, in dbt's order: [`graph::refs`]) and who may read it (groups and `access`), dbt selection syntax, comparison with a saved run (`state:`/`result:` selectors, what `--defer` reads) |
//! | [`metrics`] | metric models (`metric_models:` YAML) expanded into generated SQL models: daily roll-up, scorecard, alerts, alert cases (with gate and action-log tests), score validations (with a floor test), interventions (drawn arms, difference-in-differences and ROI, with an arms test) |
//! | [`compile`] | refs → relations, ephemeral models → CTEs, generic tests → SQL; pure and deterministic |
//! | [`functions`] | SQL functions tidemark registers in every session: `tidemark_periods`, the `tidemark_window_*` aggregates (every trailing window of a group at a list of period ends, in one pass) and the window functions `tidemark_streak*`, `tidemark_trailing_*` (baselines), `tidemark_recent_mean` and `tidemark_change` (event sequences), `tidemark_ewma` and `tidemark_cusum_low` (control charts) that metric models compile to, each computing a whole ordering in one pass with the entity as its key; DuckDB's names (`date_diff`, `strftime`, `regexp_extract`, `arg_max`, ...), its `//` operator, and `sql_dialect: duckdb`'s integer division ([`functions::duckdb`]) |
//! | [`execute`] | a run's set-up ([`execute::run`]: the warehouse and its run lock, the sweep of staged objects killed runs left, which models run incrementally and over which dates, `--defer`, `on-run-start`/`on-run-end`), the DataFusion session, node hooks, snapshots (type-2 history), template queries ([`execute::introspect`]), relation registration (tables, Hive-partitioned folders, file/glob/URL sources, `--defer`red tables of another run), scheduling with `--threads`, skip-on-failure, `--fail-fast`, incremental strategies, unit tests (in-memory tables of given rows, no warehouse), source freshness, `debug`'s checks, notifications of alert cases after the commits ([`execute::notify`]), the cluster processes ([`execute::cluster`], feature `ballista`: `tidemark scheduler`/`executor` with tidemark's SQL functions and object stores from the environment), what the warehouse holds for `docs generate` ([`execute::catalog`]: types, rows, bytes, chart queries) and column lineage from logical plans ([`execute::lineage`]), the target's memory and spill limits named in the errors they cause ([`execute::limits`]) |
//! | [`materialize`] | the warehouse on local disk or any `object_store` URL (S3, GCS, Azure, memory), the layout and the commit protocol (locks, atomic publish, partitioned commits rolled forward, commit log), the notification ledger |
//! | [`artifacts`] | `target/`: compiled SQL, `manifest.json`, `run_results.json`, `sources.json`, JUnit reports, `target/run.lock`; `docs generate`'s `catalog.json`, `duckdb_views.sql` and the static site `target/docs/` (`artifacts::docs`: its data and charts, and `docs serve`) |
//! | [`documents`] | the typed JSON documents of `target/` (`manifest.json`, `run_results.json`, `sources.json`): written by [`artifacts`], read back by the state comparison and `tidemark retry` |
//! | [`cli`] | arguments, one file per command, the printer, exit codes; the one place errors are rendered |
//! | [`diagnostics`] | user-facing errors with `file:line:col` and "did you mean"; [`diagnostics::Error`], what every stage returns when a command cannot go on |
//! | [`relation`] | plain data every stage shares: relation names (`"schema"."table"`) and a time-range run's filter |
//! | [`jinja`] | the base Jinja environment, `env_var()`, and Jinja errors as diagnostics (used by [`project`] for `tidemark.yml`/`profiles.yml` and by [`template`]) |
//!
//! ## Module graph
//!
//! Imports go one way, with no cycle between modules or between files:
//!
//! ```text
//!  cli         ─▶ artifacts, execute, compile, graph, project
//!  artifacts   ─▶ execute, compile, graph, materialize, project
//!  execute     ─▶ compile, graph, materialize, functions, project
//!  compile     ─▶ graph, template (the engine type is re-exported as compile::TemplateEngine)
//!  graph       ─▶ metrics, template, project
//!  template    ─▶ project, jinja, functions
//!  metrics     ─▶ project, functions
//!  materialize ─▶ project
//!  project     ─▶ jinja
//!  (relation, diagnostics and documents are leaves any module may use; functions uses only DataFusion)
//! ```
//!
//! Inside [`execute`], `node` (what each kind of node does) and `incremental` (merges) both use
//! `write` (planning a node's query and handing it to [`materialize`]'s sink), never each other's
//! way back. Run planning is [`execute`]'s too: [`execute::run`] opens the warehouse and takes its
//! run lock, then (through `execute::time_range`) decides which models run incrementally and what
//! dates a time-range run recomputes, and (through `execute::defer`) which tables `--defer` reads
//! from the saved run's warehouse; the CLI parses flags, calls these in order and prints.
//!
//! ## Errors
//!
//! A user's mistake is a [`diagnostics::Diagnostic`] (file, line, column, message, help); parse
//! helpers return one without a place and their caller adds it. A stage that cannot go on
//! returns a [`diagnostics::Error`]: `Input` (every diagnostic found), `Environment` (a store,
//! cluster, folder or lock), or `Internal` (a bug, which says so). Commands return
//! `Result<ExitStatus, Error>` and [`cli`] renders the error once. A node's failure is not an
//! error of the command: it is an [`execute::ExecuteError`] recorded in its result (unit tests
//! have their own reasons, with engine and Arrow errors kept typed).
//!
//! Lints keep the map true: `clippy::print_stdout`/`print_stderr` are denied outside [`cli`]
//! (CI runs clippy with `-D warnings`), and `unreachable_pub` keeps `pub` for what other modules
//! use.
//!
//! ## Invariants
//!
//! - Metric models are only SQL generation: every number of a scorecard or alert is computed by
//!   DataFusion from the generated SQL, which `tidemark compile` shows.
//! - Only [`project`] reads project files; only [`materialize`] writes or publishes warehouse
//!   data: its sink ([`materialize::sink`]) turns a query into a table, its partitions or a
//!   scratch object (the plans it ends in DataFusion's Parquet writer, run here or on a
//!   cluster's executors, write a folder of the run's staging folder of their own); only
//!   [`artifacts`] writes `target/`; only the CLI's printer writes to the terminal.
//! - [`compile`] is pure: the same project gives byte-identical SQL and manifest. Everything
//!   serialised uses ordered maps.
//! - A reader never sees a partial table, and a run killed mid-write leaves the previous
//!   version readable (see [`materialize`] for the protocol).
//! - User mistakes are [`diagnostics::Diagnostic`]s that point at the file and line (and the
//!   column: YAML positions come from the parser's own events, [`project::yaml::Positions`]);
//!   internal errors say they are bugs. Loading collects every problem before stopping.
//! - Exit codes: 0 all good, 1 ran but something failed, 2 could not run (input, environment or
//!   internal error).
//! - Profile secrets (`storage:` credentials) are registered with [`diagnostics::redact`] when
//!   the warehouse opens; the printer and every artifact pass through it.
//! - Embedded and distributed runs differ only in how [`execute::Session::new`] builds the
//!   `SessionContext` (a `type: ballista` target adds Ballista's query planner, static): every
//!   table's plan ends in DataFusion's Parquet writer ([`materialize::staged`]), which writes
//!   the run's staging folder, in parallel here or on the executors of a cluster, never a
//!   table's own path; [`materialize`] then renames the staged files into place and writes the
//!   commit record under the table's lock. Compilation, registration and commits are the same
//!   code. On a cluster, `tidemark scheduler` and `tidemark executor` ([`execute::cluster`]) provide
//!   tidemark's SQL functions ([`functions`]).
//! - One `build`/`run`/`seed`/`test` at a time per `target/` and per warehouse: both run locks
//!   are held for the whole command ([`artifacts::Artifacts::lock`],
//!   [`materialize::Warehouse::lock_run`]); a second command waits, up to `--lock-timeout`.
//!   Every lock carries a lease its holder renews ([`materialize::lock`]): a crashed run's lock is
//!   replaced at once on its own host and after `lock_lease` on any other.
//! - Unit tests never touch the warehouse: each runs its model's SQL in its own in-memory
//!   `SessionContext` on the given rows; a command that runs only unit tests opens no warehouse.
//! - `--defer` changes only where an unselected table is registered from (the `--state` run's
//!   warehouse); compiled SQL and the manifest are the same as without it.
//! - `is_incremental()` is decided before compiling ([`execute::run`] asks the warehouse which
//!   incremental tables exist), so compile stays pure given that set and the warehouse.
//!   Introspective nodes (`run_query` in their SQL) are the exception: they are compiled again
//!   right before they run (the CLI gives the session a [`execute::session::Recompile`]), and
//!   their queries run through [`execute::introspect`], which implements the template stage's
//!   [`template::QueryRunner`] without the template stage knowing execute.

pub mod artifacts;
pub mod cli;
pub mod compile;
pub mod diagnostics;
pub mod documents;
pub mod execute;
pub mod functions;
#[cfg(test)]
mod fuzz;
pub mod graph;
pub mod jinja;
pub mod materialize;
pub mod metrics;
pub mod project;
pub mod relation;
pub mod template;
