//! A local Apache DataFusion Ballista cluster (feature `ballista`): one scheduler and N executors
//! listening on the loopback interface, inside the calling process — what Ballista's standalone
//! helpers start, with the warehouse's object stores registered on the scheduler (it lists files
//! while planning) and on every executor (they read and shuffle the data).
//!
//! The test suite runs the LMS project against it through a `type: ballista` target; a real
//! cluster uses the `ballista-scheduler` and `ballista-executor` binaries instead (README). Each
//! executor runs on its own Tokio runtime so that a test can kill one mid-run
//! ([`LocalCluster::kill_executor`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;
use ballista_core::serde::BallistaCodec;
use ballista_core::utils::{default_config_producer, default_session_builder};
use ballista_core::{ConfigProducer, RuntimeProducer};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::{create_scheduler, start_grpc_service_with_listener};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::object_store::ObjectStore;
use datafusion::prelude::SessionConfig;
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};

/// Object stores the cluster's nodes must know (`s3://bucket` → store).
pub type Stores = Vec<(url::Url, Arc<dyn ObjectStore>)>;

/// A running local cluster. Dropping it stops the executors; the scheduler stops with the
/// runtime it was started on.
pub struct LocalCluster {
    /// The scheduler's gRPC address (`127.0.0.1:port`).
    pub scheduler: SocketAddr,
    executors: Vec<Option<tokio::runtime::Runtime>>,
}

impl LocalCluster {
    /// The URL a `type: ballista` target gives as `url:`.
    pub fn url(&self) -> String {
        format!("df://127.0.0.1:{}", self.scheduler.port())
    }

    /// Stops executor `index` at once, as if its process were killed: its tasks are dropped
    /// mid-flight and its Flight server stops serving shuffle data.
    pub fn kill_executor(&mut self, index: usize) {
        if let Some(runtime) = self.executors.get_mut(index).and_then(Option::take) {
            runtime.shutdown_background();
        }
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for runtime in self.executors.iter_mut().filter_map(Option::take) {
            runtime.shutdown_background();
        }
    }
}

fn register(runtime: &RuntimeEnv, stores: &Stores) {
    for (url, store) in stores {
        runtime.register_object_store(url, store.clone());
    }
}

fn runtime_with(stores: &Stores) -> datafusion::error::Result<Arc<RuntimeEnv>> {
    let runtime = RuntimeEnvBuilder::new().build_arc()?;
    register(&runtime, stores);
    Ok(runtime)
}

/// Starts a scheduler on the current Tokio runtime and `executors` executors (each with
/// `vcores` task slots) on runtimes of their own, all on 127.0.0.1, and waits until every
/// executor has registered.
pub async fn start(executors: usize, vcores: usize, stores: Stores) -> Result<LocalCluster, String> {
    let stores = Arc::new(stores);
    let scheduler_stores = stores.clone();
    let session_builder: ballista_scheduler::scheduler_server::SessionBuilder =
        Arc::new(move |config: SessionConfig| {
            let state = default_session_builder(config)?;
            register(state.runtime_env(), &scheduler_stores);
            Ok(state)
        });
    let config_producer: ConfigProducer = Arc::new(default_config_producer);
    let cluster = BallistaCluster::new_memory("127.0.0.1:0", session_builder, config_producer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|error| format!("binding the scheduler to 127.0.0.1: {error}"))?;
    let address = listener.local_addr().map_err(|error| error.to_string())?;
    let config = SchedulerConfig {
        bind_host: "127.0.0.1".into(),
        external_host: "127.0.0.1".into(),
        bind_port: address.port(),
        // Executors pull their tasks (as Ballista's standalone cluster does).
        scheduling_policy: ballista_core::config::TaskSchedulingPolicy::PullStaged,
        // A lost executor is noticed within seconds (its polls stop), not the default 3 minutes.
        executor_timeout_seconds: 10,
        expire_dead_executor_interval_seconds: 2,
        ..SchedulerConfig::default()
    };
    let scheduler = create_scheduler::<LogicalPlanNode, PhysicalPlanNode>(cluster, Arc::new(config))
        .await
        .map_err(|error| format!("starting the scheduler: {error}"))?;
    tokio::spawn(async move {
        if let Err(error) = start_grpc_service_with_listener(listener, scheduler).await {
            eprintln!("ballista scheduler stopped: {error}");
        }
    });
    let scheduler_url = format!("http://127.0.0.1:{}", address.port());

    let mut runtimes = Vec::new();
    for index in 0..executors {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(vcores.max(1))
            .thread_name(format!("ballista-executor-{index}"))
            .enable_all()
            .build()
            .map_err(|error| format!("starting executor {index}: {error}"))?;
        let stores = stores.clone();
        let scheduler_url = scheduler_url.clone();
        runtime
            .spawn(async move {
                let client = connect(&scheduler_url).await?;
                let runtime_producer: RuntimeProducer = Arc::new(move |_: &SessionConfig| runtime_with(&stores));
                let state = default_session_builder(default_config_producer()).map_err(|error| error.to_string())?;
                ballista_executor::new_standalone_executor_from_builder(
                    client,
                    vcores,
                    Arc::new(default_config_producer),
                    runtime_producer,
                    BallistaCodec::default(),
                    (&state).into(),
                )
                .await
                .map_err(|error| format!("starting an executor: {error}"))
            })
            .await
            .map_err(|error| format!("starting executor {index}: {error}"))??;
        runtimes.push(Some(runtime));
    }
    let cluster = LocalCluster {
        scheduler: address,
        executors: runtimes,
    };
    // Executors register with their first poll; wait until the scheduler counts them all.
    let mut last = String::new();
    for _ in 0..100 {
        match executor_count(&scheduler_url).await {
            Ok(count) if count >= executors => return Ok(cluster),
            Ok(count) => last = format!("{count} of {executors} registered"),
            Err(error) => last = error,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!(
        "the executors did not register with the scheduler at {scheduler_url} within 10 s ({last})"
    ))
}

async fn connect(scheduler_url: &str) -> Result<SchedulerGrpcClient<tonic::transport::Channel>, String> {
    let mut last = String::new();
    for _ in 0..50 {
        match SchedulerGrpcClient::connect(scheduler_url.to_string()).await {
            Ok(client) => return Ok(client),
            Err(error) => last = error.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("cannot reach the scheduler at {scheduler_url}: {last}"))
}

/// How many live executors the scheduler at `scheduler_url` (`http://host:port`) has, from its
/// `/readyz` health route (served on the gRPC port by Ballista's schedulers).
pub async fn executor_count(scheduler_url: &str) -> Result<usize, String> {
    let response = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|error| error.to_string())?
        .get(format!("{scheduler_url}/readyz"))
        .send()
        .await
        .map_err(|error| format!("cannot reach the scheduler at {scheduler_url}: {error}"))?;
    let text = response.text().await.map_err(|error| error.to_string())?;
    // "ready: 2 executors registered" or "not ready: 0/1 executors registered".
    let count = text
        .split_whitespace()
        .find_map(|word| word.split('/').next().and_then(|n| n.parse::<usize>().ok()))
        .ok_or_else(|| {
            format!(
                "the scheduler at {scheduler_url} answered /readyz with '{}'",
                text.trim()
            )
        })?;
    Ok(count)
}
