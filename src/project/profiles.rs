//! `profiles.yml`: named targets that say where and how a project runs.
//!
//! A profile has a default `target` and `outputs` keyed by target name. With no `profiles.yml` at
//! all, the project runs on [`Target::embedded_default`]: the embedded DataFusion engine writing
//! to `warehouse/` in the project folder. `{{ env_var('X', 'default') }}` is rendered before the
//! YAML is read, so secrets can stay in the environment.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value as Json;

use crate::diagnostics::{did_you_mean, Diagnostic};

/// Where and how a project runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// Target name (`dev`, `prod`, ...).
    pub name: String,
    /// Profile the target came from.
    pub profile: String,
    pub engine: Engine,
    /// Warehouse root as written: a path (relative to the project root) or a URL.
    pub warehouse: String,
    /// Default schema of models.
    pub schema: String,
    /// Concurrent nodes.
    pub threads: usize,
    /// Memory the engine may use before spilling, in bytes.
    pub memory_limit: Option<u64>,
    /// Folder for spill files (defaults to the system temp folder).
    pub spill_dir: Option<PathBuf>,
    /// Most bytes of spill files a run may hold at once (`spill_limit:`; DataFusion's 100 GiB
    /// when unset): past it the node fails instead of filling the disk.
    pub spill_limit: Option<u64>,
    /// How operators share `memory_limit`.
    pub memory_pool: MemoryPool,
    /// Which SQL dialect's semantics the target's SQL has where dialects differ (`sql_dialect:`).
    pub sql_dialect: SqlDialect,
    /// Extra DataFusion settings (`datafusion.execution.batch_size: 8192`, ...).
    pub options: BTreeMap<String, String>,
    /// How to reach an object-store warehouse and URL sources (`storage:`).
    pub storage: StorageSettings,
    /// Where the target was defined (`profiles.yml`), or `None` for the built-in default.
    pub defined_in: Option<PathBuf>,
    /// The scheduler of a `ballista` target (`df://host:50050`).
    pub url: Option<String>,
    /// The longest a node's query may run on the cluster (`query_timeout: 2h`) before the node
    /// fails; `None` waits as long as the cluster has executors.
    pub query_timeout: Option<std::time::Duration>,
    /// How many times a node's query is run again on the cluster when it failed because an
    /// executor was lost mid-query (`job_retries: 2`, the default on ballista targets; 0 on
    /// embedded ones).
    pub job_retries: usize,
    /// How long a run's locks outlive its last heartbeat (`lock_lease: 2m`, the default): a lock
    /// left by a run that crashed on another host is replaced after this long.
    pub lock_lease: std::time::Duration,
}

/// How a target's operators share its `memory_limit` (`memory_pool:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MemoryPool {
    /// Operators take memory as they need it, up to the limit (the default).
    #[default]
    Greedy,
    /// The limit is split evenly between the operators that can spill.
    Fair,
    /// No limit is enforced.
    Unbounded,
}

/// Which SQL dialect a target's SQL follows where DataFusion and the dialect differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SqlDialect {
    /// DataFusion's own semantics (the default): `/` between integers truncates.
    #[default]
    DataFusion,
    /// DuckDB's, for projects coming from dbt-duckdb: `/` between integers divides as floats
    /// (`7 / 2` is 3.5), as DuckDB does.
    DuckDb,
}

/// A value that must never be printed: `Debug` shows `***`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// `storage:` of a target: settings of the object store behind an `s3://`, `gs://` or `az://`
/// warehouse (and of URL sources). Anything not set here comes from the provider's usual
/// environment variables and instance credentials (`AWS_*`, `GOOGLE_*`, `AZURE_*`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSettings {
    /// Endpoint of an S3-compatible server (`http://127.0.0.1:8333`).
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    /// Path-style requests (`endpoint/bucket/key`) rather than virtual-hosted (`bucket.endpoint/key`).
    #[serde(default)]
    pub path_style: Option<bool>,
    /// Allow plain HTTP (local servers).
    #[serde(default)]
    pub allow_http: Option<bool>,
    #[serde(default)]
    pub access_key_id: Option<Secret>,
    #[serde(default)]
    pub secret_access_key: Option<Secret>,
    #[serde(default)]
    pub session_token: Option<Secret>,
    /// Retries of a failed request before the node fails (default 10).
    #[serde(default)]
    pub max_retries: Option<usize>,
    /// Give up retrying a request after this long (default `3min`).
    #[serde(default)]
    pub retry_timeout: Option<String>,
    /// Time allowed to open a connection (default `5s`).
    #[serde(default)]
    pub connect_timeout: Option<String>,
    /// Time allowed for one request, from sending it to the end of its response (default
    /// `30s`); a request that takes longer is retried like a failed one.
    #[serde(default)]
    pub request_timeout: Option<String>,
    /// Any other `object_store` configuration key (`aws_...`, `google_...`, `azure_...`).
    #[serde(default)]
    pub options: BTreeMap<String, Secret>,
}

impl StorageSettings {
    /// Every secret value, for redaction of messages.
    pub fn secrets(&self) -> Vec<String> {
        let mut secrets: Vec<String> = [&self.access_key_id, &self.secret_access_key, &self.session_token]
            .into_iter()
            .flatten()
            .map(|s| s.expose().to_string())
            .collect();
        secrets.extend(self.options.values().map(|s| s.expose().to_string()));
        secrets.retain(|s| s.len() >= 4);
        secrets
    }
}

/// The engine a target runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// DataFusion in this process.
    Embedded,
    /// A DataFusion Ballista cluster (`type: ballista`, `url: df://host:50050`).
    Ballista,
}

impl Engine {
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Embedded => "datafusion",
            Engine::Ballista => "ballista",
        }
    }
}

impl Target {
    /// `target` as Jinja sees it (models, macros, property files): name, profile_name, schema,
    /// type, threads.
    pub fn jinja_context(&self) -> Json {
        serde_json::json!({
            "name": self.name,
            "profile_name": self.profile,
            "schema": self.schema,
            "type": self.engine.as_str(),
            "threads": self.threads,
        })
    }

    /// The target used when there is no `profiles.yml`: embedded DataFusion, `warehouse/` folder.
    pub fn embedded_default(profile: &str) -> Target {
        Target {
            name: "dev".into(),
            profile: profile.into(),
            engine: Engine::Embedded,
            warehouse: "warehouse".into(),
            schema: "main".into(),
            threads: default_threads(),
            memory_limit: None,
            spill_dir: None,
            spill_limit: None,
            memory_pool: MemoryPool::Greedy,
            sql_dialect: SqlDialect::DataFusion,
            options: BTreeMap::new(),
            storage: StorageSettings::default(),
            defined_in: None,
            url: None,
            query_timeout: None,
            job_retries: 0,
            lock_lease: DEFAULT_LOCK_LEASE,
        }
    }

    /// The warehouse as an absolute local path when it is one (not a URL).
    pub fn local_warehouse(&self, project_root: &Path) -> Option<PathBuf> {
        let location = self.warehouse.strip_prefix("file://").unwrap_or(&self.warehouse);
        if location.contains("://") {
            return None;
        }
        let path = Path::new(location);
        Some(if path.is_absolute() {
            path.to_path_buf()
        } else {
            project_root.join(path)
        })
    }
}

fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .max(1)
}

#[derive(Debug, Deserialize)]
struct RawProfile {
    #[serde(default)]
    target: Option<String>,
    /// Targets, each read once chosen (another target's settings may be for another tool).
    outputs: BTreeMap<String, serde_yaml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    #[serde(rename = "type")]
    engine: String,
    #[serde(default)]
    warehouse: Option<String>,
    #[serde(default)]
    schema: Option<String>,
    #[serde(default)]
    threads: Option<usize>,
    #[serde(default)]
    memory_limit: Option<String>,
    #[serde(default)]
    spill_dir: Option<String>,
    #[serde(default)]
    spill_limit: Option<String>,
    #[serde(default)]
    memory_pool: Option<String>,
    #[serde(default)]
    sql_dialect: Option<String>,
    #[serde(default)]
    options: BTreeMap<String, Json>,
    #[serde(default)]
    storage: Option<StorageSettings>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    query_timeout: Option<String>,
    #[serde(default)]
    job_retries: Option<usize>,
    #[serde(default)]
    lock_lease: Option<String>,
}

/// The error of a target whose `type:` is a dbt adapter (`duckdb`, `postgres`, ...), placed
/// where `at` is: which setting to change, and what the adapter's other settings become.
fn foreign_adapter(name: &str, adapter: &str, at: Diagnostic) -> Diagnostic {
    let (message, help) = match adapter {
        "duckdb" => (
            format!("target '{name}' is a dbt-duckdb target (type: duckdb); tidemark runs models on DataFusion"),
            "change `type: duckdb` to `type: datafusion`. Its `path:` database file is not used: tables are \
             Parquet folders under `warehouse:` (default `warehouse/`); add `sql_dialect: duckdb` for DuckDB's \
             division and functions"
                .to_string(),
        ),
        other => (
            format!("target '{name}' has type '{other}', a dbt adapter tidemark does not run"),
            "change `type:` to `datafusion` (embedded, the default) or `ballista` (a cluster, with `url:`); \
             tables are Parquet folders under `warehouse:`"
                .to_string(),
        ),
    };
    Diagnostic { message, ..at }.with_help(help)
}

/// How many times a ballista target runs a node's query again after losing an executor.
const DEFAULT_JOB_RETRIES: usize = 2;

/// Picks the target for `profile` from the rendered text of a profiles file.
///
/// `requested` is `--target` (or `TIDEMARK_TARGET`); without it the profile's default is used.
pub fn select_target(
    file: &Path,
    display_name: &str,
    text: &str,
    profile: &str,
    requested: Option<&str>,
) -> Result<Target, Diagnostic> {
    let profiles: BTreeMap<String, serde_yaml::Value> = super::yaml::parse(display_name, text)?;
    let positions = super::yaml::Positions::of(text);
    let Some(raw_profile) = profiles.get(profile) else {
        let names: Vec<&str> = profiles
            .keys()
            .map(String::as_str)
            .filter(|name| *name != "config")
            .collect();
        let mut diagnostic = Diagnostic::new(format!(
            "profile '{profile}' (named by the project file) is not in {display_name}; it defines: {}",
            if names.is_empty() {
                "nothing".to_string()
            } else {
                names.join(", ")
            }
        ))
        .in_file(display_name);
        if let Some(near) = did_you_mean(profile, names.iter().copied()) {
            diagnostic = diagnostic.with_help(format!("did you mean '{near}'?"));
        }
        return Err(diagnostic);
    };
    let raw_profile: RawProfile = serde_yaml::from_value(raw_profile.clone()).map_err(|error| {
        Diagnostic::new(format!("invalid profile '{profile}': {error}"))
            .in_file(display_name)
            .at_position(positions.at(profile))
    })?;
    let name = requested
        .map(str::to_string)
        .or(raw_profile.target.clone())
        .or_else(|| {
            (raw_profile.outputs.len() == 1)
                .then(|| raw_profile.outputs.keys().next().cloned())
                .flatten()
        })
        .ok_or_else(|| {
            Diagnostic::new(format!(
                "profile '{profile}' has no default 'target:' and no --target was given"
            ))
            .in_file(display_name)
            .at_position(positions.at(profile))
        })?;
    let Some(raw_value) = raw_profile.outputs.get(&name) else {
        let names: Vec<&str> = raw_profile.outputs.keys().map(String::as_str).collect();
        let mut diagnostic = Diagnostic::new(format!(
            "target '{name}' is not defined in profile '{profile}'; its targets are: {}",
            names.join(", ")
        ))
        .in_file(display_name)
        .at_position(positions.at(&format!("{profile}/outputs")));
        if let Some(near) = did_you_mean(&name, names.iter().copied()) {
            diagnostic = diagnostic.with_help(format!("did you mean '{near}'?"));
        }
        return Err(diagnostic);
    };
    // A problem with the target's `key`, at its value (else at the target).
    let at_target = |key: &str, message: String| {
        Diagnostic::new(message)
            .in_file(display_name)
            .at_position(positions.value_at(&format!("{profile}/outputs/{name}/{key}")))
    };
    // A dbt adapter's target (a profile brought from dbt): say the one setting to change before
    // its other settings (`path:`, `account:`, ...) are reported as unknown.
    match raw_value.get("type").and_then(serde_yaml::Value::as_str) {
        Some("datafusion" | "embedded" | "ballista") | None => {}
        Some(adapter) => return Err(foreign_adapter(&name, adapter, at_target("type", String::new()))),
    }
    let raw: RawTarget = serde_yaml::from_value(raw_value.clone()).map_err(|error| {
        let error = crate::project::yaml::plain_types(&error.to_string());
        // serde names the value, not its key: the key is the one whose value that is.
        let key = error
            .split_once("invalid type: string \"")
            .and_then(|(_, rest)| rest.split_once('"'))
            .and_then(|(value, _)| {
                raw_value.as_mapping()?.iter().find_map(|(key, v)| {
                    (v.as_str() == Some(value))
                        .then(|| key.as_str().map(str::to_string))
                        .flatten()
                })
            });
        let (what, at) = match &key {
            Some(key) => (
                format!("{key}: "),
                positions.value_at(&format!("{profile}/outputs/{name}/{key}")),
            ),
            None => (String::new(), positions.at(&format!("{profile}/outputs/{name}"))),
        };
        Diagnostic::new(format!("invalid target '{name}' of profile '{profile}': {what}{error}"))
            .in_file(display_name)
            .at_position(at)
    })?;
    let raw = &raw;
    let engine = match raw.engine.as_str() {
        "datafusion" | "embedded" => Engine::Embedded,
        "ballista" => Engine::Ballista,
        other => {
            return Err(at_target(
                "type",
                format!(
            "target '{name}' has type '{other}', which tidemark does not run; use type: datafusion or type: ballista"
        ),
            ))
        }
    };
    let url = match (engine, &raw.url) {
        (Engine::Ballista, None) => {
            return Err(at_target(
                "url",
                format!("target '{name}' has type: ballista but no url: give the scheduler as url: df://host:50050"),
            ))
        }
        (Engine::Ballista, Some(url)) => Some(
            scheduler_address(url)
                .map(|_| url.clone())
                .map_err(|message| at_target("url", format!("url: {message}")))?,
        ),
        (Engine::Embedded, Some(_)) => {
            return Err(at_target(
                "url",
                format!(
                "target '{name}' has a url but type: datafusion runs embedded; use type: ballista to run on a cluster"
            ),
            ))
        }
        (Engine::Embedded, None) => None,
    };
    let query_timeout = match (engine, &raw.query_timeout) {
        (Engine::Ballista, Some(text)) => Some(
            parse_duration(text).map_err(|message| at_target("query_timeout", format!("query_timeout: {message}")))?,
        ),
        (Engine::Embedded, Some(_)) => {
            return Err(at_target(
                "query_timeout",
                format!("target '{name}' has a query_timeout, which applies to queries on a cluster (type: ballista)"),
            ))
        }
        (_, None) => None,
    };
    let job_retries = match (engine, raw.job_retries) {
        (Engine::Ballista, retries) => retries.unwrap_or(DEFAULT_JOB_RETRIES),
        (Engine::Embedded, Some(_)) => {
            return Err(at_target(
                "job_retries",
                format!("target '{name}' has job_retries, which applies to queries on a cluster (type: ballista)"),
            ))
        }
        (Engine::Embedded, None) => 0,
    };
    let lock_lease = match &raw.lock_lease {
        Some(text) => {
            let lease =
                parse_duration(text).map_err(|message| at_target("lock_lease", format!("lock_lease: {message}")))?;
            if lease < std::time::Duration::from_secs(1) {
                return Err(at_target(
                    "lock_lease",
                    format!("lock_lease: '{text}' is shorter than 1 s"),
                ));
            }
            lease
        }
        None => DEFAULT_LOCK_LEASE,
    };
    let memory_limit = match &raw.memory_limit {
        Some(text) => {
            Some(parse_bytes(text).map_err(|message| at_target("memory_limit", format!("memory_limit: {message}")))?)
        }
        None => None,
    };
    let spill_limit = match &raw.spill_limit {
        Some(text) => {
            Some(parse_bytes(text).map_err(|message| at_target("spill_limit", format!("spill_limit: {message}")))?)
        }
        None => None,
    };
    if raw.threads == Some(0) {
        return Err(at_target("threads", "threads must be at least 1".into()));
    }
    let options = raw
        .options
        .iter()
        .map(|(key, value)| {
            let value = match value {
                Json::String(text) => text.clone(),
                other => other.to_string(),
            };
            (key.clone(), value)
        })
        .collect();
    Ok(Target {
        name: name.clone(),
        profile: profile.to_string(),
        engine,
        warehouse: raw.warehouse.clone().unwrap_or_else(|| "warehouse".into()),
        schema: raw.schema.clone().unwrap_or_else(|| "main".into()),
        threads: raw.threads.unwrap_or_else(default_threads),
        memory_limit,
        spill_dir: raw.spill_dir.as_ref().map(PathBuf::from),
        spill_limit,
        memory_pool: match raw.memory_pool.as_deref() {
            None | Some("greedy") => MemoryPool::Greedy,
            Some("fair") => MemoryPool::Fair,
            Some("unbounded") => MemoryPool::Unbounded,
            Some(other) => {
                return Err(at_target(
                    "memory_pool",
                    format!("memory_pool '{other}' is not greedy, fair or unbounded"),
                ))
            }
        },
        sql_dialect: match raw.sql_dialect.as_deref() {
            None | Some("datafusion") => SqlDialect::DataFusion,
            Some("duckdb") => SqlDialect::DuckDb,
            Some(other) => {
                return Err(at_target(
                    "sql_dialect",
                    format!("sql_dialect '{other}' is not datafusion or duckdb"),
                ))
            }
        },
        options,
        storage: raw.storage.clone().unwrap_or_default(),
        defined_in: Some(file.to_path_buf()),
        url,
        query_timeout,
        job_retries,
        lock_lease,
    })
}

/// How long a run's locks outlive its last heartbeat, unless the target sets `lock_lease`.
pub const DEFAULT_LOCK_LEASE: std::time::Duration = std::time::Duration::from_secs(120);

/// Parses a size such as `4GiB`, `512 MB` or `1024` (bytes).
pub fn parse_bytes(text: &str) -> Result<u64, Diagnostic> {
    text.trim()
        .parse::<bytesize::ByteSize>()
        .map(|size| size.as_u64())
        .map_err(|_| {
            Diagnostic::new(format!(
                "'{text}' is not a size such as 4GiB or 512MB (units B, KB, MB, GB, KiB, MiB, GiB)"
            ))
        })
}

/// Parses a duration such as `500ms`, `30s`, `3min`, `2m`, `1h` or `1h 30m`; a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, Diagnostic> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<f64>() {
        return std::time::Duration::try_from_secs_f64(seconds).map_err(|_| {
            Diagnostic::new(format!(
                "'{text}' is not a duration tidemark can wait (a positive number of seconds)"
            ))
        });
    }
    humantime::parse_duration(text)
        .map_err(|_| Diagnostic::new(format!("'{text}' is not a duration such as 30s, 3min, 2h or 1h 30m")))
}

/// The gRPC address (`http://host:port`) of a Ballista scheduler given as `df://host[:port]`
/// (port 50050 by default).
pub fn scheduler_address(url: &str) -> Result<String, Diagnostic> {
    let parsed = url::Url::parse(url)
        .map_err(|error| Diagnostic::new(format!("'{url}' is not a URL ({error}); write df://host:50050")))?;
    if parsed.scheme() != "df" {
        return Err(Diagnostic::new(format!(
            "'{url}' must start with df:// (for example df://127.0.0.1:50050)"
        )));
    }
    let host = parsed
        .host_str()
        .filter(|host| !host.is_empty())
        .ok_or_else(|| format!("'{url}' names no host; write df://host:50050"))?;
    Ok(format!("http://{host}:{}", parsed.port().unwrap_or(50050)))
}

/// The error of a `type: ballista` target in a tidemark built without the `ballista` feature.
#[cfg(not(feature = "ballista"))]
pub fn without_ballista(target: &Target) -> String {
    format!(
        "target '{}' runs on Ballista, but this tidemark was built without it: build with `cargo build --features ballista`",
        target.name
    )
}

#[cfg(test)]
mod tests {
    use super::{parse_bytes, select_target};
    use std::path::Path;

    #[test]
    fn job_retries_default_to_two_on_a_cluster_and_are_refused_embedded() {
        let text = "lms:\n  target: cluster\n  outputs:\n    cluster: {type: ballista, url: 'df://127.0.0.1:50050'}\n    once: {type: ballista, url: 'df://127.0.0.1:50050', job_retries: 0}\n    local: {type: datafusion, job_retries: 1}\n";
        let pick = |name: &str| select_target(Path::new("profiles.yml"), "profiles.yml", text, "lms", Some(name));
        assert_eq!(pick("cluster").expect("cluster").job_retries, 2);
        assert_eq!(pick("once").expect("once").job_retries, 0);
        let error = pick("local").expect_err("embedded").to_string();
        assert!(
            error.contains("job_retries, which applies to queries on a cluster"),
            "{error}"
        );
    }

    #[test]
    fn sizes_parse_with_binary_and_decimal_units() {
        assert_eq!(parse_bytes("4GiB"), Ok(4 << 30));
        assert_eq!(parse_bytes("512 MB"), Ok(512_000_000));
        assert_eq!(parse_bytes("1024"), Ok(1024));
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("3 parsecs").is_err());
    }
}
