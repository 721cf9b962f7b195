//! `tidemark scheduler` and `tidemark executor`: the processes of a Ballista cluster that runs
//! tidemark's plans (see [`crate::execute::cluster`]). Flags mirror Ballista's own `ballista-scheduler`
//! and `ballista-executor`.

use clap::{Args, ValueEnum};

use crate::cli::{ExitStatus, Printer};
use crate::diagnostics::Error;
use crate::execute::cluster::{ExecutorOptions, Policy, SchedulerOptions};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PolicyArg {
    /// Executors poll the scheduler for tasks.
    PullStaged,
    /// The scheduler pushes tasks to the executors.
    PushStaged,
}

impl From<PolicyArg> for Policy {
    fn from(policy: PolicyArg) -> Policy {
        match policy {
            PolicyArg::PullStaged => Policy::PullStaged,
            PolicyArg::PushStaged => Policy::PushStaged,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub(crate) struct SchedulerArgs {
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind_host: String,
    /// Port to listen on (gRPC, and the /healthz and /readyz routes).
    #[arg(long, short = 'p', default_value_t = 50050)]
    pub bind_port: u16,
    /// Host name executors and clients reach the scheduler by.
    #[arg(long, default_value = "localhost")]
    pub external_host: String,
    /// How executors get tasks; the executors must be started with the same.
    #[arg(long, short = 's', value_enum, default_value_t = PolicyArg::PullStaged)]
    pub scheduler_policy: PolicyArg,
    /// Seconds without news from an executor before it counts as lost and its tasks run again
    /// elsewhere.
    #[arg(long, default_value_t = 180)]
    pub executor_timeout_seconds: u64,
    /// How often lost executors are looked for, in seconds.
    #[arg(long, default_value_t = 15)]
    pub expire_dead_executor_interval_seconds: u64,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct ExecutorArgs {
    /// Host of the scheduler.
    #[arg(long, default_value = "localhost")]
    pub scheduler_host: String,
    /// Port of the scheduler.
    #[arg(long, default_value_t = 50050)]
    pub scheduler_port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind_host: String,
    /// Arrow Flight port (shuffle data and results are fetched here).
    #[arg(long, short = 'p', default_value_t = 50051)]
    pub bind_port: u16,
    /// gRPC port the scheduler pushes tasks to (push-staged only).
    #[arg(long, default_value_t = 50052)]
    pub bind_grpc_port: u16,
    /// Host name other executors, the scheduler and clients reach this executor by (default:
    /// the address the scheduler sees).
    #[arg(long)]
    pub external_host: Option<String>,
    /// Task slots (usually the machine's cores; default: all of them).
    #[arg(long, short = 'c', visible_alias = "vcores")]
    pub concurrent_tasks: Option<usize>,
    /// Folder for shuffle files and spills (local disk with room for the largest intermediate
    /// result; default: a folder in the system's temporary folder).
    #[arg(long)]
    pub work_dir: Option<String>,
    /// How the executor gets tasks; must match the scheduler's.
    #[arg(long, short = 's', value_enum, default_value_t = PolicyArg::PullStaged)]
    pub task_scheduling_policy: PolicyArg,
    /// Memory the executor's queries may use, such as 8GiB (default: Ballista's share of the
    /// machine's memory).
    #[arg(long)]
    pub memory_pool_size: Option<String>,
}

pub(crate) async fn scheduler(printer: &Printer, args: SchedulerArgs) -> Result<ExitStatus, Error> {
    let options = SchedulerOptions {
        bind_host: args.bind_host,
        bind_port: args.bind_port,
        external_host: args.external_host,
        policy: args.scheduler_policy.into(),
        executor_timeout_seconds: args.executor_timeout_seconds,
        expire_dead_executor_interval_seconds: args.expire_dead_executor_interval_seconds,
    };
    let policy = format!("{:?}", args.scheduler_policy).to_lowercase();
    let ready = |address: std::net::SocketAddr| {
        printer.info(&format!(
            "tidemark scheduler listening on {address} ({policy}), with tidemark's SQL functions"
        ));
    };
    crate::execute::cluster::run_scheduler(options, ready).await?;
    Ok(ExitStatus::Success)
}

pub(crate) async fn executor(printer: &Printer, args: ExecutorArgs) -> Result<ExitStatus, Error> {
    let memory_pool_size = args
        .memory_pool_size
        .as_deref()
        .map(crate::project::profiles::parse_bytes)
        .transpose()
        .map_err(|problem| problem.context("--memory-pool-size"))?;
    let concurrent_tasks = args
        .concurrent_tasks
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    let work_dir = args.work_dir.unwrap_or_else(|| {
        std::env::temp_dir()
            .join(format!("tidemark-executor-{}", std::process::id()))
            .display()
            .to_string()
    });
    printer.info(&format!(
        "tidemark executor: {concurrent_tasks} task slots, Flight port {}, work folder {work_dir}, scheduler {}:{}",
        args.bind_port, args.scheduler_host, args.scheduler_port
    ));
    let options = ExecutorOptions {
        scheduler_host: args.scheduler_host,
        scheduler_port: args.scheduler_port,
        bind_host: args.bind_host,
        bind_port: args.bind_port,
        bind_grpc_port: args.bind_grpc_port,
        external_host: args.external_host,
        concurrent_tasks,
        work_dir,
        policy: args.task_scheduling_policy.into(),
        memory_pool_size,
    };
    crate::execute::cluster::run_executor(options).await?;
    Ok(ExitStatus::Success)
}
