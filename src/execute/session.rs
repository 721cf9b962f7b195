//! The DataFusion session of a run and the relations registered in it.
//!
//! Embedded and distributed (Ballista) runs differ only in how [`Session::new`] builds the
//! `SessionContext`: the same configuration and runtime, plus Ballista's query planner that sends
//! every plan to the target's scheduler. Relations are registered lazily, just before a node that
//! reads them runs: warehouse tables as Parquet, sources from their files, views by re-planning
//! their SQL (so a view always sees the tables as they are at that moment of the run).

use std::collections::BTreeSet;
use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::catalog::MemorySchemaProvider;
use datafusion::common::TableReference;
use datafusion::datasource::file_format::csv::CsvFormat;
use datafusion::datasource::file_format::json::JsonFormat;
use datafusion::datasource::file_format::options::ParquetReadOptions;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::{FairSpillPool, GreedyMemoryPool, MemoryPool, UnboundedMemoryPool};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use tokio::sync::Mutex;

use super::ExecuteError;
use crate::compile::CompiledProject;
use crate::graph::{Graph, Materialization, Node, Resource};
use crate::materialize::Warehouse;
use crate::project::SourceFormat;
use crate::project::{Engine, Target};
use crate::relation::RelationName;

/// Name of the default catalog relations are registered in.
pub const CATALOG: &str = "tidemark";

/// A DataFusion session bound to a warehouse and a compiled project.
pub struct Session {
    pub ctx: SessionContext,
    pub warehouse: Warehouse,
    graph: Arc<Graph>,
    compiled: Arc<CompiledProject>,
    /// Tables registered so far (views are re-planned every time they are needed).
    registered: Mutex<BTreeSet<String>>,
    /// Incremental models that run incrementally (compiled with `is_incremental()` true).
    pub incremental: BTreeSet<String>,
    /// Time-range incremental models: the SQL condition (over their `event_time` column) of the
    /// rows this run recomputes and replaces.
    pub time_ranges: std::collections::BTreeMap<String, String>,
    /// Plans run on a Ballista cluster, whose executors also write the tables' files.
    pub distributed: bool,
    /// The cluster's scheduler (`http://host:port`), watched while a node's query runs there.
    pub scheduler: Option<String>,
    /// The target's `query_timeout`.
    pub query_timeout: Option<std::time::Duration>,
    /// The target's `job_retries`.
    pub job_retries: usize,
    /// `--defer`: unselected nodes read from another run's warehouse (node id → that warehouse
    /// and the node's relation there). Set with [`Session::defer`].
    deferred: std::collections::BTreeMap<String, (Warehouse, RelationName)>,
    /// `--store-failures`: every test writes its failing rows to a table.
    pub store_failures: bool,
    /// `--warn-error`: a test that would warn fails.
    pub warn_error: bool,
    /// Compiles a node again (its SQL as compiling renders it now): for introspective nodes,
    /// whose SQL depends on what the run has built so far.
    pub recompile: Option<Recompile>,
    /// The target's `sql_dialect` (unit tests' own sessions follow it too).
    pub(crate) sql_dialect: crate::project::SqlDialect,
    /// The target's schema.
    pub schema: String,
    /// The target's memory and spill limits, named in the errors they cause.
    pub limits: super::limits::Limits,
}

/// A session whose plans run on the Ballista cluster of `target.url`: the embedded configuration
/// upgraded by Ballista (its query planner submits each plan to the scheduler; results stream
/// back from the executors).
#[cfg(feature = "ballista")]
fn distributed_context(
    target: &Target,
    config: SessionConfig,
    runtime: Arc<datafusion::execution::runtime_env::RuntimeEnv>,
) -> Result<SessionContext, ExecuteError> {
    use ballista_core::extension::SessionStateExt;
    let address = crate::project::profiles::scheduler_address(target.url.as_deref().unwrap_or_default())
        .map_err(|problem| ExecuteError::Setup(problem.to_string()))?;
    let state = datafusion::execution::SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(runtime)
        .with_default_features()
        .build()
        .upgrade_for_ballista(address)
        .map_err(|error| ExecuteError::Setup(error.strip_backtrace()))?;
    Ok(SessionContext::new_with_state(state))
}

/// The configuration of a session on a cluster: Ballista's settings (`ballista.*`, which a
/// target's `options` may set) added to the embedded configuration, with the static distributed
/// planner. Ballista 55's adaptive planner (its default) never finishes some plans tidemark
/// compiles (an ORDER BY over a UNION ALL of aggregates) and loses the ordering that chained
/// window functions rely on; `ballista.planner.adaptive.enabled: "true"` in `options` turns it
/// back on.
#[cfg(feature = "ballista")]
fn cluster_config(config: SessionConfig) -> SessionConfig {
    use ballista_core::extension::SessionConfigExt;
    let mut config = config.upgrade_for_ballista();
    config
        .options_mut()
        .set(ballista_core::config::BALLISTA_ADAPTIVE_PLANNER_ENABLED, "false")
        .expect("Ballista registers its planner setting");
    config
}

#[cfg(not(feature = "ballista"))]
fn cluster_config(config: SessionConfig) -> SessionConfig {
    config
}

#[cfg(not(feature = "ballista"))]
fn distributed_context(
    target: &Target,
    _config: SessionConfig,
    _runtime: Arc<datafusion::execution::runtime_env::RuntimeEnv>,
) -> Result<SessionContext, ExecuteError> {
    Err(ExecuteError::Setup(crate::project::profiles::without_ballista(target)))
}

/// Renders a node's SQL again, or says why it cannot.
pub type Recompile = Arc<dyn Fn(&Node) -> Result<String, String> + Send + Sync>;

impl Session {
    /// Runs statements (hooks) in order, each to its end; the first that fails stops them: its
    /// number (1-based) and the engine's message.
    pub async fn run_statements(&self, statements: &[String]) -> Result<(), (usize, String)> {
        for (index, sql) in statements.iter().enumerate() {
            let frame = self
                .ctx
                .sql(sql)
                .await
                .map_err(|error| (index + 1, error.strip_backtrace()))?;
            frame
                .collect()
                .await
                .map_err(|error| (index + 1, error.strip_backtrace()))?;
        }
        Ok(())
    }
}

/// Applies a target's `sql_dialect` to a session: DuckDB's integer division.
pub(crate) fn apply_dialect(ctx: &SessionContext, dialect: crate::project::SqlDialect) {
    if dialect == crate::project::SqlDialect::DuckDb {
        ctx.add_analyzer_rule(Arc::new(crate::functions::duckdb::IntegerDivision));
    }
}

impl Session {
    /// The session of a target: embedded DataFusion with the target's memory limit, spill folder
    /// and options, or the same configured for the target's Ballista cluster.
    pub fn new(
        target: &Target,
        warehouse: Warehouse,
        graph: Arc<Graph>,
        compiled: Arc<CompiledProject>,
    ) -> Result<Session, ExecuteError> {
        let mut config = SessionConfig::new()
            .with_default_catalog_and_schema(CATALOG, &target.schema)
            .with_create_default_catalog_and_schema(true)
            .with_information_schema(true);
        // Plain strings rather than string views: deep window pipelines (metric scorecards) sort
        // and concatenate view arrays whose shared buffers are copied at every stage, which grows
        // memory geometrically. A target's `options` may turn views back on.
        // A partial aggregation that does not halve its rows (a daily roll-up of events, where
        // most entity × day groups hold one or two events) costs more than it saves: pass the
        // rows on once 100,000 of them show it. A target's `options` may change it.
        for (key, value) in [
            ("datafusion.execution.parquet.schema_force_view_types", "false"),
            ("datafusion.sql_parser.map_string_types_to_utf8view", "false"),
            (
                "datafusion.execution.skip_partial_aggregation_probe_ratio_threshold",
                "0.5",
            ),
        ] {
            config
                .options_mut()
                .set(key, value)
                .map_err(|error| ExecuteError::Internal(error.strip_backtrace()))?;
        }
        if target.engine == Engine::Ballista {
            config = cluster_config(config);
        }
        for (key, value) in &target.options {
            config.options_mut().set(key, value).map_err(|error| {
                ExecuteError::Setup(format!("profile option '{key}: {value}': {}", error.strip_backtrace()))
            })?;
        }
        let memory_limit = target.memory_limit.unwrap_or_else(super::limits::default_memory_limit);
        let disk = match &target.spill_dir {
            Some(folder) => DiskManagerBuilder::default().with_mode(DiskManagerMode::Directories(vec![folder.clone()])),
            None => DiskManagerBuilder::default().with_mode(DiskManagerMode::OsTmpDirectory),
        };
        let disk = match target.spill_limit {
            Some(bytes) => disk.with_max_temp_directory_size(bytes),
            None => disk,
        };
        // Greedy by default: a fair pool splits the limit evenly between every operator that can
        // spill, which starves the sorts of a deep window pipeline (metric scorecards) even when
        // only one of them is active at a time.
        let pool: Arc<dyn MemoryPool> = match target.memory_pool {
            crate::project::profiles::MemoryPool::Fair => Arc::new(FairSpillPool::new(memory_limit as usize)),
            // No accounting limit: for plans whose sliced batches DataFusion over-counts (deep
            // window pipelines); the process's real memory is what the LMS benchmark reports.
            crate::project::profiles::MemoryPool::Unbounded => Arc::new(UnboundedMemoryPool::default()),
            crate::project::profiles::MemoryPool::Greedy => Arc::new(GreedyMemoryPool::new(memory_limit as usize)),
        };
        // No cache of directory listings: a run rewrites the partitions of tables it reads
        // again later in the same session.
        let caches =
            datafusion::execution::cache::cache_manager::CacheManagerConfig::default().with_list_files_cache_limit(0);
        let runtime = RuntimeEnvBuilder::new()
            .with_cache_manager(caches)
            .with_memory_pool(pool)
            .with_disk_manager_builder(disk)
            .build_arc()
            .map_err(|error| ExecuteError::Setup(error.strip_backtrace()))?;
        let ctx = match target.engine {
            Engine::Embedded => SessionContext::new_with_config_rt(config, runtime),
            Engine::Ballista => distributed_context(target, config, runtime)?,
        };
        crate::functions::register(&ctx);
        apply_dialect(&ctx, target.sql_dialect);
        if let Some((url, store)) = warehouse.registration() {
            ctx.register_object_store(url, store);
        }
        Ok(Session {
            ctx,
            warehouse,
            graph,
            compiled,
            registered: Mutex::new(BTreeSet::new()),
            incremental: BTreeSet::new(),
            time_ranges: std::collections::BTreeMap::new(),
            distributed: target.engine == Engine::Ballista,
            scheduler: target
                .url
                .as_deref()
                .and_then(|url| crate::project::profiles::scheduler_address(url).ok()),
            query_timeout: target.query_timeout,
            job_retries: target.job_retries,
            deferred: std::collections::BTreeMap::new(),
            store_failures: false,
            warn_error: false,
            recompile: None,
            sql_dialect: target.sql_dialect,
            schema: target.schema.clone(),
            limits: super::limits::Limits::of(target, memory_limit),
        })
    }

    /// `--defer`: read node `id` from `relation` in `warehouse` (another run's) instead of this
    /// target's warehouse. The node keeps its own name in compiled SQL.
    pub fn defer(&mut self, id: &str, warehouse: Warehouse, relation: RelationName) {
        if let Some((url, store)) = warehouse.registration() {
            self.ctx.register_object_store(url, store);
        }
        self.deferred.insert(id.to_string(), (warehouse, relation));
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    pub fn compiled(&self) -> &CompiledProject {
        &self.compiled
    }

    /// Registers every relation `node` reads (and, for views, what they read).
    pub async fn register_inputs(&self, node: &Node) -> Result<(), ExecuteError> {
        let mut guard = self.registered.lock().await;
        let mut visiting = BTreeSet::new();
        for parent in &node.depends_on {
            self.register(&mut guard, parent, &mut visiting).await?;
        }
        Ok(())
    }

    /// Registers (or re-registers) a table just written by this run.
    pub async fn register_written_table(&self, relation: &RelationName) -> Result<(), ExecuteError> {
        let mut guard = self.registered.lock().await;
        self.register_parquet_table(relation).await?;
        guard.insert(format!("{}.{}", relation.schema, relation.identifier));
        Ok(())
    }

    /// Registers a view so later nodes can read it.
    pub async fn create_view(&self, node: &Node, relation: &RelationName) -> Result<(), ExecuteError> {
        let mut guard = self.registered.lock().await;
        let mut visiting = BTreeSet::new();
        for parent in &node.depends_on {
            self.register(&mut guard, parent, &mut visiting).await?;
        }
        self.register_view(node, relation).await
    }

    fn register<'a>(
        &'a self,
        registered: &'a mut BTreeSet<String>,
        id: &'a str,
        visiting: &'a mut BTreeSet<String>,
    ) -> futures::future::BoxFuture<'a, Result<(), ExecuteError>> {
        Box::pin(async move {
            let node = &self.graph.nodes[id];
            match (&node.resource, node.materialized) {
                (Resource::Ephemeral, _) => {
                    // Inlined as a CTE; what it reads must be registered.
                    for parent in &node.depends_on {
                        self.register(registered, parent, visiting).await?;
                    }
                }
                (Resource::Model { relation }, Materialization::View) => {
                    if !visiting.insert(id.to_string()) {
                        return Ok(());
                    }
                    for parent in &node.depends_on {
                        self.register(registered, parent, visiting).await?;
                    }
                    self.register_view(node, relation).await?;
                }
                (
                    Resource::Model { relation }
                    | Resource::Seed { relation, .. }
                    | Resource::Snapshot { relation, .. },
                    _,
                ) => {
                    let key = format!("{}.{}", relation.schema, relation.identifier);
                    if registered.contains(&key) {
                        return Ok(());
                    }
                    if let Some((warehouse, stored)) = self.deferred.get(id) {
                        if !warehouse
                            .table_exists(stored)
                            .await
                            .map_err(ExecuteError::Materialize)?
                        {
                            return Err(ExecuteError::MissingRelation {
                                relation: format!("{}.{}", stored.schema, stored.identifier),
                                hint: format!(
                                    "--defer reads {} '{}' from the --state run's warehouse {}, which does not hold it",
                                    node.resource_type.as_str(),
                                    node.name,
                                    warehouse.display()
                                ),
                            });
                        }
                        self.register_table_of(warehouse, stored, relation).await?;
                        registered.insert(key);
                        return Ok(());
                    }
                    if !self
                        .warehouse
                        .table_exists(relation)
                        .await
                        .map_err(ExecuteError::Materialize)?
                    {
                        return Err(ExecuteError::MissingRelation {
                            relation: key,
                            hint: format!(
                                "{} '{}' has not been built yet: run `tidemark build --select {}` first",
                                node.resource_type.as_str(),
                                node.name,
                                node.name
                            ),
                        });
                    }
                    self.register_parquet_table(relation).await?;
                    registered.insert(key);
                }
                (
                    Resource::Source {
                        relation,
                        location,
                        format,
                    },
                    _,
                ) => {
                    let key = format!("{}.{}", relation.schema, relation.identifier);
                    if registered.contains(&key) {
                        return Ok(());
                    }
                    self.register_source(node, relation, location.as_ref(), *format).await?;
                    registered.insert(key);
                }
                (Resource::Test { .. }, _) => {}
            }
            Ok(())
        })
    }

    pub(crate) fn ensure_schema(&self, schema: &str) -> Result<(), ExecuteError> {
        let catalog = self
            .ctx
            .catalog(CATALOG)
            .ok_or_else(|| ExecuteError::Internal(format!("catalog {CATALOG} is missing")))?;
        if catalog.schema(schema).is_none() {
            catalog
                .register_schema(schema, Arc::new(MemorySchemaProvider::new()))
                .map_err(|error| ExecuteError::Internal(error.strip_backtrace()))?;
        }
        Ok(())
    }

    fn reference(relation: &RelationName) -> TableReference {
        TableReference::full(CATALOG, relation.schema.clone(), relation.identifier.clone())
    }

    async fn register_parquet_table(&self, relation: &RelationName) -> Result<(), ExecuteError> {
        self.register_table_of(&self.warehouse, relation, relation).await
    }

    /// Registers the table `stored` of `warehouse` under the name `relation`.
    async fn register_table_of(
        &self,
        warehouse: &Warehouse,
        stored: &RelationName,
        relation: &RelationName,
    ) -> Result<(), ExecuteError> {
        self.ensure_schema(&relation.schema)?;
        let reference = Self::reference(relation);
        self.ctx
            .deregister_table(reference.clone())
            .map_err(ExecuteError::from_datafusion)?;
        let partitioned = warehouse
            .partitioned_commit(stored)
            .await
            .map_err(ExecuteError::Materialize)?;
        match partitioned {
            Some(commit) => self
                .register_listing(
                    reference,
                    &warehouse.table_folder_url(stored),
                    SourceFormat::Parquet,
                    Some(crate::materialize::partitioned::reader_partition_columns(&commit)),
                )
                .await
                .map_err(ExecuteError::from_datafusion),
            None => self
                .ctx
                .register_parquet(reference, warehouse.table_url(stored), ParquetReadOptions::default())
                .await
                .map_err(ExecuteError::from_datafusion),
        }
    }

    /// Registers files (a file, a folder, a glob; Hive partition folders inferred when
    /// `partitions` is `None`) as a listing table.
    async fn register_listing(
        &self,
        reference: TableReference,
        location: &str,
        format: SourceFormat,
        partitions: Option<Vec<(String, DataType)>>,
    ) -> datafusion::error::Result<()> {
        let table_path = ListingTableUrl::parse(location)?;
        let lower = location.to_ascii_lowercase();
        let known = [".parquet", ".csv", ".csv.gz", ".json", ".ndjson", ".jsonl", ".json.gz"];
        let extension = known
            .iter()
            .find(|extension| lower.ends_with(*extension))
            .map(|extension| extension.to_string())
            .unwrap_or_else(|| match format {
                // Folders of text files: every file (.json, .ndjson, .jsonl, .csv, .tsv ...);
                // hidden files are never listed.
                SourceFormat::Csv | SourceFormat::Json => String::new(),
                SourceFormat::Parquet => ".parquet".into(),
            });
        let state = self.ctx.state();
        // The session's reading options (plain strings rather than views, ...).
        let options = state.table_options();
        let file_format: Arc<dyn FileFormat> = match format {
            SourceFormat::Csv => Arc::new(
                CsvFormat::default()
                    .with_options(options.csv.clone())
                    .with_has_header(true),
            ),
            SourceFormat::Json => Arc::new(JsonFormat::default().with_options(options.json.clone())),
            SourceFormat::Parquet => Arc::new(ParquetFormat::default().with_options(options.parquet.clone())),
        };
        let mut options = ListingOptions::new(file_format).with_file_extension(extension);
        let partitions = match partitions {
            Some(columns) => columns,
            None => options
                .infer_partitions(&state, &table_path)
                .await?
                .into_iter()
                .map(|name| (name, DataType::Utf8))
                .collect(),
        };
        options = options.with_table_partition_cols(partitions);
        let config = ListingTableConfig::new(table_path)
            .with_listing_options(options)
            .infer_schema(&state)
            .await?;
        let table = ListingTable::try_new(config)?;
        self.ctx.register_table(reference, Arc::new(table))?;
        Ok(())
    }

    async fn register_view(&self, node: &Node, relation: &RelationName) -> Result<(), ExecuteError> {
        self.ensure_schema(&relation.schema)?;
        let compiled = self.compiled.nodes.get(&node.unique_id).ok_or_else(|| {
            ExecuteError::Internal(format!(
                "view {} was not compiled; this is likely a bug",
                node.unique_id
            ))
        })?;
        let statement = format!("create or replace view {} as\n{}", relation.rendered, compiled.sql);
        let frame = self.ctx.sql(&statement).await.map_err(|error| ExecuteError::Sql {
            node: node.name.clone(),
            compiled_path: compiled.compiled_path.clone(),
            message: error.strip_backtrace(),
        })?;
        frame.collect().await.map_err(ExecuteError::from_datafusion)?;
        Ok(())
    }

    /// Registers a source table: its files at `location` (read as `format`, else as their
    /// extension says), or without a location the warehouse table of its name.
    async fn register_source(
        &self,
        node: &Node,
        relation: &RelationName,
        location: Option<&String>,
        format: Option<SourceFormat>,
    ) -> Result<(), ExecuteError> {
        self.ensure_schema(&relation.schema)?;
        let reference = Self::reference(relation);
        let Some(location) = location else {
            // A warehouse table produced elsewhere.
            if !self
                .warehouse
                .table_exists(relation)
                .await
                .map_err(ExecuteError::Materialize)?
            {
                return Err(ExecuteError::MissingRelation {
                    relation: format!("{}.{}", relation.schema, relation.identifier),
                    hint: format!(
                        "source '{}.{}' has no external_location and no table {} in the warehouse ({})",
                        node.fqn[1], node.name, relation.identifier, node.path
                    ),
                });
            }
            return self.register_parquet_table(relation).await;
        };
        self.ensure_store(location).map_err(|error| ExecuteError::Source {
            source_name: format!("{}.{}", node.fqn[1], node.name),
            location: location.clone(),
            message: error.to_string(),
        })?;
        let format = format.unwrap_or_else(|| SourceFormat::of_location(location));
        let registered = self.register_listing(reference, location, format, None).await;
        registered.map_err(|error| ExecuteError::Source {
            source_name: format!("{}.{}", node.fqn[1], node.name),
            location: location.clone(),
            message: error.strip_backtrace(),
        })
    }
}

impl Session {
    /// Registers the object store of a URL source with DataFusion (once per bucket), opened
    /// with the target's storage settings.
    fn ensure_store(&self, location: &str) -> Result<(), ExecuteError> {
        if !crate::materialize::store::is_store_url(location) {
            return Ok(());
        }
        let url =
            url::Url::parse(location).map_err(|error| ExecuteError::Setup(format!("not a valid URL: {error}")))?;
        let base = datafusion::execution::object_store::ObjectStoreUrl::parse(&url[..url::Position::BeforePath])
            .map_err(|error| ExecuteError::Setup(error.strip_backtrace()))?;
        if self.ctx.runtime_env().object_store(&base).is_ok() {
            return Ok(());
        }
        let opened = crate::materialize::store::open(location, self.warehouse.settings())
            .map_err(|error| ExecuteError::Setup(error.to_string()))?;
        self.ctx.register_object_store(&opened.base, opened.store);
        Ok(())
    }
}
