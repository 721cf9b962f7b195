//! Stage 8 — cli: arguments, commands and the printer (the only code that writes to the terminal).
//!
//! One file per command under `commands/`: each parses its arguments, calls the stages, prints
//! what they report, and returns an [`ExitStatus`] or the [`crate::diagnostics::Error`] that
//! stopped it, which [`main`] renders (the one place errors are printed). Exit codes: 0
//! everything succeeded, 1 the command ran but something failed, 2 it could not run (usage,
//! project, profile or environment error, or an internal error).

mod commands;
mod load;
mod printer;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub use printer::Printer;

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Everything succeeded.
    Success = 0,
    /// The command ran, but a node, test or check failed.
    Failure = 1,
    /// The command could not run: bad arguments, project, profile or compile error.
    Error = 2,
}

impl From<ExitStatus> for ExitCode {
    fn from(status: ExitStatus) -> ExitCode {
        ExitCode::from(status as u8)
    }
}

/// `tidemark --version`: tidemark's version and the DataFusion it runs.
static VERSION: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "{} (DataFusion {})",
        env!("CARGO_PKG_VERSION"),
        datafusion::DATAFUSION_VERSION
    )
});

#[derive(Debug, Parser)]
#[command(
    name = "tidemark",
    version = VERSION.as_str(),
    about = "SQL-first transformation engine: SQL and YAML models compiled to DataFusion, materialised as Parquet"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    global: GlobalArgs,
}

/// Options every command accepts.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Project folder (holding tidemark.yml or dbt_project.yml).
    #[arg(long, global = true, env = "TIDEMARK_PROJECT_DIR", default_value = ".")]
    pub project_dir: PathBuf,
    /// Folder holding profiles.yml (default: the project folder; none means the embedded default).
    #[arg(long, global = true, env = "TIDEMARK_PROFILES_DIR")]
    pub profiles_dir: Option<PathBuf>,
    /// Target of the profile to use (default: the profile's `target:`).
    #[arg(long, short = 't', global = true, env = "TIDEMARK_TARGET")]
    pub target: Option<String>,
    /// Treat warnings as errors: what loading the project warns about stops the command (exit
    /// 2), a test that would warn fails, a freshness warning is an error, and a selection that
    /// matches nothing is an error.
    #[arg(long, global = true, env = "TIDEMARK_WARN_ERROR")]
    pub warn_error: bool,
    /// Variables overriding the project's `vars:`, as YAML or JSON: --vars '{start: 2026-01-01}'.
    #[arg(long, global = true)]
    pub vars: Option<String>,
    /// Output format of log lines.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Never draw a progress bar (it is only drawn on a terminal anyway).
    #[arg(long, global = true)]
    pub no_progress: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines, as dbt prints them.
    Text,
    /// One JSON object per line.
    Json,
}

/// Node selection.
#[derive(Debug, Clone, Args, Default)]
pub struct SelectArgs {
    /// Nodes to include: names, +model, model+, tag:x, path:models/x, config.materialized:table, ...
    #[arg(long, short = 's', num_args = 1.., value_name = "SELECTOR")]
    pub select: Vec<String>,
    /// Nodes to leave out (same syntax as --select).
    #[arg(long, num_args = 1.., value_name = "SELECTOR")]
    pub exclude: Vec<String>,
    /// A named selector of selectors.yml (instead of --select).
    #[arg(long, value_name = "NAME", conflicts_with = "select")]
    pub selector: Option<String>,
    /// The target/ folder of another run (its manifest.json and run_results.json), for
    /// `state:` and `result:` selectors and for --defer.
    #[arg(long, value_name = "DIR", env = "TIDEMARK_STATE")]
    pub state: Option<PathBuf>,
}

/// Options of commands that execute nodes.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub selection: SelectArgs,
    /// Nodes to run at once (default: the target's `threads`).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Stop starting new nodes after the first failure.
    #[arg(long, short = 'x')]
    pub fail_fast: bool,
    /// Also write the results as a JUnit XML report to FILE (for CI test reporting): one
    /// testcase per node, data tests and models alike.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<std::path::PathBuf>,
    /// Write each data test's failing rows to the table `<schema>_test_failures.<test name>`
    /// (replaced every run; also per test with `store_failures: true`).
    #[arg(long)]
    pub store_failures: bool,
    /// Read unselected models, seeds and snapshots that this target has not built from the
    /// tables of the --state run (its manifest's warehouse), so a pull request builds only what
    /// it changed.
    #[arg(long, requires = "state")]
    pub defer: bool,
    /// With --defer: read unselected nodes from the --state run even when this target has
    /// built them.
    #[arg(long, requires = "defer")]
    pub favor_state: bool,
    /// Seconds to wait for another run holding the project's `target/run.lock` or the
    /// warehouse's run lock before giving up (0: do not wait).
    #[arg(long, value_name = "SECONDS", env = "TIDEMARK_LOCK_TIMEOUT", default_value_t = 600)]
    pub lock_timeout: u64,
    /// After a successful run, preview this model's rows (as `tidemark show` does).
    #[arg(long, value_name = "MODEL")]
    pub show: Option<String>,
    /// Rebuild incremental models from scratch (unless their config says `full_refresh: false`).
    #[arg(long)]
    pub full_refresh: bool,
    /// Exit 1 when a metric model's alerts opened new cases (status open or reopened) at or
    /// above SEVERITY: each is a failing row of the model's `<name>_alert_gate` test, so it is
    /// in run_results.json and the JUnit report (the var `fail_on_alert` does the same).
    #[arg(long, value_name = "SEVERITY", value_parser = ["low", "medium", "high"])]
    pub fail_on_alert: Option<String>,
    /// Send no notifications of alert cases this run (they are sent by a later run).
    #[arg(long)]
    pub no_notify: bool,
    /// Time-range incremental models recompute from this date (YYYY-MM-DD, inclusive) instead
    /// of from the latest period they hold; their inputs are read from this date minus their
    /// lookback.
    #[arg(long, value_name = "DATE")]
    pub event_time_start: Option<String>,
    /// ...up to this date (inclusive; default: no end).
    #[arg(long, value_name = "DATE")]
    pub event_time_end: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Load seeds, run models and test them, in dependency order.
    #[command(
        after_help = "Examples:\n  tidemark build\n  tidemark build --select +learner_engagement --target prod\n  tidemark build --select state:modified+ --defer --state prod-artifacts/"
    )]
    Build(RunArgs),
    /// Run models (tables and views) in dependency order.
    #[command(
        after_help = "Examples:\n  tidemark run\n  tidemark run --select tag:daily --exclude stg_events\n  tidemark run --full-refresh --select learner_engagement"
    )]
    Run(RunArgs),
    /// Load the CSV files under seeds/ into tables.
    #[command(after_help = "Examples:\n  tidemark seed\n  tidemark seed --select alert_actions")]
    Seed(RunArgs),
    /// Run data and unit tests.
    #[command(
        after_help = "Examples:\n  tidemark test\n  tidemark test --select learner_engagement --store-failures --junit reports/tests.xml"
    )]
    Test(RunArgs),
    /// Take snapshots: record each changed row's new version (type-2 history).
    #[command(after_help = "Examples:\n  tidemark snapshot\n  tidemark snapshot --select learners_history")]
    Snapshot(RunArgs),
    /// Re-run what failed or was skipped in the last build/run/seed/test (target/run_results.json),
    /// with that invocation's options.
    #[command(
        after_help = "Examples:\n  tidemark build --select tag:nightly   # some nodes fail\n  tidemark retry                       # runs those again, with the same options"
    )]
    Retry,
    /// Commands about sources: `source freshness`.
    #[command(subcommand)]
    #[command(after_help = "Examples:\n  tidemark source freshness\n  tidemark source freshness --select source:lms")]
    Source(commands::source::SourceCommand),
    /// Render every selected node's SQL into target/compiled/ and write target/manifest.json.
    #[command(after_help = "Examples:\n  tidemark compile\n  tidemark compile --select learner_engagement")]
    Compile(commands::compile::CompileArgs),
    /// The documentation site, catalog.json and typed DuckDB views: `docs generate`, `docs serve`.
    #[command(subcommand)]
    #[command(after_help = "Examples:\n  tidemark docs generate\n  tidemark docs serve --port 8080 --open")]
    Docs(commands::docs::DocsCommand),
    /// List nodes.
    #[command(after_help = "Examples:\n  tidemark ls\n  tidemark ls --select tag:metric_model")]
    Ls(commands::ls::LsArgs),
    /// Preview the rows of a model or of an inline query.
    #[command(
        after_help = "Examples:\n  tidemark show --select learner_engagement --limit 5\n  tidemark show --inline \"select count(*) from {{ ref('stg_events') }}\""
    )]
    Show(commands::show::ShowArgs),
    /// Check the project, the profile and access to the warehouse.
    #[command(after_help = "Examples:\n  tidemark debug\n  tidemark debug --target prod")]
    Debug,
    /// Install the packages of packages.yml (local folders, git repositories, tarballs) into
    /// dbt_packages/, at the commits package-lock.yml pins (written on the first install).
    #[command(after_help = "Examples:\n  tidemark deps")]
    Deps(commands::deps::DepsArgs),
    /// Call a project macro (its `run_query` and `statement` calls run on the target's engine):
    /// `run-operation grant_reader --args '{role: bi}'`.
    #[command(after_help = "Examples:\n  tidemark run-operation grant_reader --args '{role: bi}'")]
    RunOperation(commands::operation::OperationArgs),
    /// Create a new project that builds at once: a source over sample events, models, a metric
    /// model with windows, comparisons, a weighted score and an alert, profiles, a .gitignore
    /// and a CI workflow. Existing files are never overwritten without --force.
    #[command(after_help = "Examples:\n  tidemark init demo && cd demo && tidemark build\n  tidemark init . --force")]
    Init(commands::init::InitArgs),
    /// Delete the project's clean-targets (target/ by default).
    #[command(after_help = "Examples:\n  tidemark clean")]
    Clean,
    /// Run a Ballista scheduler that knows tidemark's SQL functions (for `type: ballista`
    /// targets; flags as `ballista-scheduler`'s).
    #[cfg(feature = "ballista")]
    #[command(after_help = "Examples:\n  tidemark scheduler --bind-host 127.0.0.1 --bind-port 50050")]
    Scheduler(commands::cluster::SchedulerArgs),
    /// Run a Ballista executor that knows tidemark's SQL functions and reads object-store
    /// credentials from the environment (flags as `ballista-executor`'s).
    #[cfg(feature = "ballista")]
    #[command(after_help = "Examples:\n  tidemark executor --scheduler-host 127.0.0.1 --scheduler-port 50050")]
    Executor(commands::cluster::ExecutorArgs),
    /// Print a completion script for a shell: `source <(tidemark completions bash)`.
    #[command(
        after_help = "Examples:\n  tidemark completions bash > ~/.local/share/bash-completion/completions/tidemark\n  tidemark completions zsh > ~/.zfunc/_tidemark\n  tidemark completions fish > ~/.config/fish/completions/tidemark.fish"
    )]
    Completions {
        /// The shell to complete in.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// Entry point of the `tidemark` binary.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let status = if error.use_stderr() {
                ExitStatus::Error
            } else {
                ExitStatus::Success
            };
            let _ = error.print();
            return status.into();
        }
    };
    let printer = std::sync::Arc::new(Printer::new(cli.global.log_format, !cli.global.no_progress));
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    // Cluster processes decode plans without prost's recursion limit: deep plans need deep stacks.
    #[cfg(feature = "ballista")]
    if matches!(cli.command, Command::Scheduler(_) | Command::Executor(_)) {
        builder.thread_stack_size(32 << 20);
    }
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            printer.fatal(&format!("cannot start the async runtime: {error}"));
            return ExitStatus::Error.into();
        }
    };
    let outcome = runtime.block_on(async {
        match cli.command {
            Command::Build(args) => {
                commands::run::execute(&cli.global, &printer, commands::run::Kind::Build, args).await
            }
            Command::Run(args) => commands::run::execute(&cli.global, &printer, commands::run::Kind::Run, args).await,
            Command::Seed(args) => commands::run::execute(&cli.global, &printer, commands::run::Kind::Seed, args).await,
            Command::Test(args) => commands::run::execute(&cli.global, &printer, commands::run::Kind::Test, args).await,
            Command::Snapshot(args) => {
                commands::run::execute(&cli.global, &printer, commands::run::Kind::Snapshot, args).await
            }
            Command::Retry => commands::run::retry(&cli.global, &printer).await,
            Command::Source(command) => commands::source::execute(&cli.global, &printer, command).await,
            Command::Compile(args) => commands::compile::execute(&cli.global, &printer, args).await,
            Command::Docs(command) => commands::docs::execute(&cli.global, &printer, command).await,
            Command::Ls(args) => commands::ls::execute(&cli.global, &printer, args),
            Command::Show(args) => commands::show::execute(&cli.global, &printer, args).await,
            Command::Debug => commands::debug::execute(&cli.global, &printer).await,
            Command::Deps(args) => commands::deps::execute(&cli.global, &printer, args).await,
            Command::RunOperation(args) => commands::operation::execute(&cli.global, &printer, args).await,
            Command::Clean => commands::clean::execute(&cli.global, &printer).await,
            Command::Init(args) => commands::init::execute(&printer, args),
            Command::Completions { shell } => {
                let mut script = Vec::new();
                let mut command = <Cli as clap::CommandFactory>::command();
                clap_complete::generate(shell, &mut command, "tidemark", &mut script);
                printer.result(String::from_utf8_lossy(&script).trim_end());
                Ok(ExitStatus::Success)
            }
            #[cfg(feature = "ballista")]
            Command::Scheduler(args) => commands::cluster::scheduler(&printer, args).await,
            #[cfg(feature = "ballista")]
            Command::Executor(args) => commands::cluster::executor(&printer, args).await,
        }
    });
    // Tasks still running (a failed node's siblings, lock heartbeats) are dropped, and with them
    // what they hold: spill files are deleted as their owners go. Work stuck in a blocking call
    // is left behind after a moment rather than holding up the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    match outcome {
        Ok(status) => status.into(),
        Err(error) => {
            printer.error(&error);
            ExitStatus::Error.into()
        }
    }
}
