//! Apache DataFusion Ballista cluster processes (feature `ballista`): `tidemark scheduler` and
//! `tidemark executor`.
//!
//! They are Ballista 55's scheduler and executor, built into the tidemark binary with what a
//! stock `ballista-scheduler`/`ballista-executor` lacks: tidemark's SQL functions
//! ([`crate::functions`], which compiled metric models call and plans carry by name), plan
//! decoding without prost's recursion limit (scorecard plans are deep), and object stores opened
//! from the provider's standard environment (`AWS_*`, `GOOGLE_*`, `AZURE_*`) for any
//! `s3://`, `gs://` or `az://` URL a plan reads or writes. The scheduler needs them to list a
//! table's files while planning, the executors to read and write them.
//!
//! The test suite and the `lms_build --cluster` benchmark start these as separate processes on
//! 127.0.0.1; [`executor_count`] asks a scheduler how many executors it has (`tidemark debug`,
//! and a node's watch for a cluster that lost every executor).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::diagnostics::Error;
use ballista_core::config::TaskSchedulingPolicy;
use ballista_core::registry::BallistaFunctionRegistry;
use ballista_core::utils::{default_config_producer, default_session_builder};
use ballista_core::{ConfigProducer, RuntimeProducer};
use ballista_executor::executor_process::{start_executor_process, ExecutorProcessConfig};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::{create_scheduler, start_grpc_service_with_listener};
use datafusion::execution::object_store::{DefaultObjectStoreRegistry, ObjectStoreRegistry};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use datafusion::object_store::ObjectStore;
use datafusion::prelude::SessionConfig;
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};
use url::Url;

/// How executors get their tasks; scheduler and executors must agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Executors poll the scheduler for tasks (a lost executor is noticed within seconds).
    PullStaged,
    /// The scheduler pushes tasks to the executors' gRPC port.
    PushStaged,
}

impl From<Policy> for TaskSchedulingPolicy {
    fn from(policy: Policy) -> TaskSchedulingPolicy {
        match policy {
            Policy::PullStaged => TaskSchedulingPolicy::PullStaged,
            Policy::PushStaged => TaskSchedulingPolicy::PushStaged,
        }
    }
}

/// What `tidemark scheduler` is started with.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    pub bind_host: String,
    pub bind_port: u16,
    /// The host name executors and clients reach this scheduler by.
    pub external_host: String,
    pub policy: Policy,
    /// An executor silent for this long is considered lost and its tasks run elsewhere.
    pub executor_timeout_seconds: u64,
    pub expire_dead_executor_interval_seconds: u64,
}

/// What `tidemark executor` is started with.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    pub scheduler_host: String,
    pub scheduler_port: u16,
    pub bind_host: String,
    /// Arrow Flight port: other executors and clients fetch shuffle data and results here.
    pub bind_port: u16,
    /// The gRPC port the scheduler pushes tasks to (push-staged only).
    pub bind_grpc_port: u16,
    pub external_host: Option<String>,
    /// Task slots.
    pub concurrent_tasks: usize,
    /// Shuffle files and spills.
    pub work_dir: String,
    pub policy: Policy,
    /// Bytes of memory the executor's queries may use (None: Ballista's default share of the
    /// machine's memory).
    pub memory_pool_size: Option<u64>,
}

/// Object stores for the URLs plans use: a store registered by the session, else one opened
/// once per bucket from the provider's environment (through [`crate::materialize::store`]).
#[derive(Debug, Default)]
struct EnvironmentStores {
    registered: DefaultObjectStoreRegistry,
}

impl ObjectStoreRegistry for EnvironmentStores {
    fn register_store(&self, url: &Url, store: Arc<dyn ObjectStore>) -> Option<Arc<dyn ObjectStore>> {
        self.registered.register_store(url, store)
    }

    fn deregister_store(&self, url: &Url) -> datafusion::error::Result<Arc<dyn ObjectStore>> {
        self.registered.deregister_store(url)
    }

    fn get_store(&self, url: &Url) -> datafusion::error::Result<Arc<dyn ObjectStore>> {
        if let Ok(store) = self.registered.get_store(url) {
            return Ok(store);
        }
        if !crate::materialize::store::is_store_url(url.as_str()) {
            return Err(datafusion::error::DataFusionError::Execution(format!(
                "no object store for '{url}'"
            )));
        }
        let opened = crate::materialize::store::open(url.as_str(), &Default::default())
            .map_err(|error| datafusion::error::DataFusionError::Execution(error.to_string()))?;
        self.registered.register_store(&opened.base, opened.store.clone());
        Ok(opened.store)
    }
}

/// A Ballista session state with tidemark's functions and the environment's object stores.
fn session_state(config: SessionConfig, stores: &Arc<EnvironmentStores>) -> datafusion::error::Result<SessionState> {
    let state = default_session_builder(config)?;
    let runtime = RuntimeEnvBuilder::new()
        .with_object_store_registry(stores.clone())
        .build_arc()?;
    let mut state = SessionStateBuilder::new_from_existing(state)
        .with_runtime_env(runtime)
        .build();
    crate::functions::register_in(&mut state)?;
    Ok(state)
}

/// Runs a scheduler until the process is stopped (Ctrl-C or SIGTERM end it at once: its state
/// lives in memory).
pub async fn run_scheduler(options: SchedulerOptions, ready: impl FnOnce(SocketAddr)) -> Result<(), Error> {
    let stores = Arc::new(EnvironmentStores::default());
    let session_builder: ballista_scheduler::scheduler_server::SessionBuilder =
        Arc::new(move |config: SessionConfig| session_state(config, &stores));
    let config_producer: ConfigProducer = Arc::new(default_config_producer);
    let address = format!("{}:{}", options.bind_host, options.bind_port);
    let listener = tokio::net::TcpListener::bind(&address)
        .await
        .map_err(|error| Error::Environment(format!("cannot listen on {address}: {error}")))?;
    let bound = listener
        .local_addr()
        .map_err(|error| Error::Environment(error.to_string()))?;
    let cluster = BallistaCluster::new_memory(
        format!("{}:{}", options.external_host, bound.port()),
        session_builder,
        config_producer,
    );
    let config = SchedulerConfig {
        bind_host: options.bind_host.clone(),
        external_host: options.external_host.clone(),
        bind_port: bound.port(),
        scheduling_policy: options.policy.into(),
        executor_timeout_seconds: options.executor_timeout_seconds,
        expire_dead_executor_interval_seconds: options.expire_dead_executor_interval_seconds,
        no_executors_grace_period_seconds: options.executor_timeout_seconds,
        ..SchedulerConfig::default()
    };
    let scheduler = create_scheduler::<LogicalPlanNode, PhysicalPlanNode>(cluster, Arc::new(config))
        .await
        .map_err(|error| Error::Environment(format!("starting the scheduler: {error}")))?;
    ready(bound);
    tokio::select! {
        served = start_grpc_service_with_listener(listener, scheduler) => {
            served.map_err(|error| Error::Environment(format!("the scheduler stopped: {error}")))
        }
        _ = stop_signal() => Ok(()),
    }
}

async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Runs an executor until the process is stopped (Ctrl-C or SIGTERM: it tells the scheduler,
/// lets its running tasks finish, then exits).
pub async fn run_executor(options: ExecutorOptions) -> Result<(), Error> {
    std::fs::create_dir_all(&options.work_dir)
        .map_err(|error| Error::Environment(format!("cannot create the work folder {}: {error}", options.work_dir)))?;
    let stores = Arc::new(EnvironmentStores::default());
    let state =
        session_state(default_config_producer(), &stores).map_err(|error| Error::Environment(error.to_string()))?;
    let functions = Arc::new(BallistaFunctionRegistry::from(&state));
    let work_dir = options.work_dir.clone();
    let runtime_producer: RuntimeProducer =
        Arc::new(move |_: &SessionConfig| -> datafusion::error::Result<Arc<RuntimeEnv>> {
            RuntimeEnvBuilder::new()
                .with_object_store_registry(stores.clone())
                .with_temp_file_path(&work_dir)
                .build_arc()
        });
    let config = ExecutorProcessConfig {
        bind_host: options.bind_host,
        external_host: options.external_host,
        port: options.bind_port,
        grpc_port: options.bind_grpc_port,
        scheduler_host: options.scheduler_host,
        scheduler_port: options.scheduler_port,
        // Executors may start before their scheduler: keep trying for a minute.
        scheduler_connect_timeout_seconds: 60,
        vcores: options.concurrent_tasks.max(1),
        task_scheduling_policy: options.policy.into(),
        work_dir: Some(options.work_dir),
        memory_pool_size: options.memory_pool_size,
        // Pushed tasks: heartbeats well inside the scheduler's executor timeout.
        executor_heartbeat_interval_seconds: 5,
        override_function_registry: Some(functions),
        override_runtime_producer: Some(runtime_producer),
        ..ExecutorProcessConfig::default()
    };
    start_executor_process(Arc::new(config))
        .await
        .map_err(|error| Error::Environment(format!("the executor stopped: {error}")))
}

/// How many live executors the scheduler at `scheduler_url` (`http://host:port`) has, from its
/// `/readyz` health route (served on the gRPC port by Ballista's schedulers).
pub async fn executor_count(scheduler_url: &str) -> Result<usize, Error> {
    let response = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|error| Error::Environment(error.to_string()))?
        .get(format!("{scheduler_url}/readyz"))
        .send()
        .await
        .map_err(|error| Error::Environment(format!("cannot reach the scheduler at {scheduler_url}: {error}")))?;
    let text = response
        .text()
        .await
        .map_err(|error| Error::Environment(error.to_string()))?;
    // "ready: 2 executors registered" or "not ready: 0/1 executors registered".
    let count = text
        .split_whitespace()
        .find_map(|word| word.split('/').next().and_then(|n| n.parse::<usize>().ok()))
        .ok_or_else(|| {
            Error::Environment(format!(
                "the scheduler at {scheduler_url} answered /readyz with '{}'",
                text.trim()
            ))
        })?;
    Ok(count)
}
