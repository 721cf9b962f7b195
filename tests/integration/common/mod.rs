//! Helpers of the integration tests: fixture projects in temp folders, the real binary, and an
//! independent read of the tables it writes.

pub(crate) mod cluster;
#[cfg(feature = "ballista")]
pub(crate) mod fault_proxy;
pub(crate) mod s3;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use datafusion::arrow::csv::WriterBuilder;
use datafusion::prelude::{ParquetReadOptions, SessionContext};

/// The repository root.
pub(crate) fn repository_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Copies `tests/fixtures/<name>` into a fresh temp folder and returns it.
pub(crate) fn fixture(name: &str) -> tempfile::TempDir {
    let source = repository_root().join("tests/fixtures").join(name);
    let folder = tempfile::Builder::new()
        .prefix(&format!("tidemark-{}-", name.replace('/', "-")))
        .tempdir()
        .expect("temp dir");
    copy_tree(&source, folder.path());
    folder
}

pub(crate) fn copy_tree(source: &Path, destination: &Path) {
    for entry in walkdir::WalkDir::new(source) {
        let entry = entry.expect("walk fixture");
        let relative = entry.path().strip_prefix(source).expect("inside");
        let target = destination.join(relative);
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&target).expect("mkdir");
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// A `tidemark` command in `project`, with no inherited tidemark settings and the project as
/// its home folder (so no `~/.dbt/profiles.yml` of the machine is read).
pub(crate) fn command(project: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tidemark"));
    command
        .current_dir(project)
        .env_remove("TIDEMARK_TARGET")
        .env_remove("TIDEMARK_PROFILES_DIR")
        .env_remove("TIDEMARK_PROJECT_DIR")
        .env_remove("TIDEMARK_WAREHOUSE")
        .env_remove("TIDEMARK_WARN_ERROR")
        .env("HOME", project)
        .env("NO_COLOR", "1");
    command
}

/// Makes sure python3 can import `module`, installing `package` from PyPI when it cannot.
pub(crate) fn python_module(module: &str, package: &str) {
    let present = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .status()
        .map(|status| status.success())
        .unwrap_or(false);
    if !present {
        let status = Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", package])
            .status()
            .expect("python3 is needed for the reference implementations");
        assert!(status.success(), "pip install {package} failed");
    }
}

/// Runs `tidemark <args>` in `project`.
pub(crate) fn tidemark(project: &Path, args: &[&str]) -> Output {
    command(project).args(args).output().expect("run tidemark")
}

/// stdout, stderr and exit code with timestamps, timings, ids and temp paths masked.
pub(crate) fn transcript(output: &Output, project: &Path) -> String {
    let text = format!(
        "exit code: {}\n--- stdout\n{}--- stderr\n{}",
        output
            .status
            .code()
            .map(|c| c.to_string())
            .unwrap_or_else(|| "signal".into()),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    mask(&text, project)
}

pub(crate) fn mask(text: &str, project: &Path) -> String {
    let project_path = project.canonicalize().unwrap_or(project.to_path_buf());
    let text = text
        .replace(&project_path.display().to_string(), "[PROJECT]")
        .replace(&project.display().to_string(), "[PROJECT]");
    let patterns = [
        (r"(?m)^\d{2}:\d{2}:\d{2}", "[TIME]"),
        (r"in \d+\.\d+s", "in [SECONDS]s"),
        (r"\.+ \[", "... ["),
        (
            r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
            "[UUID]",
        ),
        (r"tidemark=\d+\.\d+\.\d+", "tidemark=[VERSION]"),
        (r"\b\d+ threads\b", "[N] threads"),
    ];
    let mut masked = text;
    for (pattern, replacement) in patterns {
        masked = regex_replace(&masked, pattern, replacement);
    }
    masked
}

fn regex_replace(text: &str, pattern: &str, replacement: &str) -> String {
    regex::Regex::new(pattern)
        .expect("valid regex")
        .replace_all(text, replacement)
        .into_owned()
}

/// Reads a Parquet table with DataFusion (independently of tidemark's code) and returns it as
/// CSV with a header, rows sorted.
pub(crate) fn table_csv(parquet: &Path) -> String {
    table_csv_ordered(parquet, None)
}

/// [`table_csv`] of a file or of a Hive-partitioned table folder (partition values read as
/// text), with the columns in `order` when given.
pub(crate) fn table_csv_ordered(parquet: &Path, order: Option<&[&str]>) -> String {
    use datafusion::datasource::file_format::parquet::ParquetFormat;
    use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let ctx = SessionContext::new();
        let mut frame = if parquet.is_dir() {
            let url = ListingTableUrl::parse(format!("{}/", parquet.display())).expect("url");
            let state = ctx.state();
            let options =
                ListingOptions::new(std::sync::Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
            let partitions = options.infer_partitions(&state, &url).await.expect("partitions");
            let options = options.with_table_partition_cols(
                partitions
                    .into_iter()
                    .map(|name| (name, datafusion::arrow::datatypes::DataType::Utf8))
                    .collect(),
            );
            let config = ListingTableConfig::new(url)
                .with_listing_options(options)
                .infer_schema(&state)
                .await
                .expect("schema");
            ctx.read_table(std::sync::Arc::new(ListingTable::try_new(config).expect("table")))
                .expect("read table")
        } else {
            ctx.read_parquet(parquet.to_str().expect("utf-8 path"), ParquetReadOptions::default())
                .await
                .expect("read parquet")
        };
        if let Some(order) = order {
            frame = frame.select_columns(order).expect("columns in order");
        }
        let batches = frame.collect().await.expect("collect");
        let mut buffer = Vec::new();
        {
            let mut writer = WriterBuilder::new().with_header(true).build(&mut buffer);
            for batch in &batches {
                let batch = cast_views(batch);
                writer.write(&batch).expect("csv");
            }
        }
        let text = String::from_utf8(buffer).expect("utf-8");
        let mut lines: Vec<&str> = text.lines().collect();
        if lines.is_empty() {
            return String::new();
        }
        let header = lines.remove(0);
        // Several batches repeat the header.
        lines.retain(|line| *line != header);
        lines.sort();
        format!("{header}\n{}\n", lines.join("\n"))
    })
}

/// String views are written by the CSV writer too, but normalise them to plain strings.
fn cast_views(batch: &datafusion::arrow::record_batch::RecordBatch) -> datafusion::arrow::record_batch::RecordBatch {
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;
    let schema = batch.schema();
    let mut fields = Vec::new();
    let mut columns = Vec::new();
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        if matches!(field.data_type(), DataType::Utf8View | DataType::LargeUtf8) {
            columns.push(datafusion::arrow::compute::cast(column, &DataType::Utf8).expect("cast"));
            fields.push(Field::new(field.name(), DataType::Utf8, field.is_nullable()));
        } else {
            columns.push(column.clone());
            fields.push(field.as_ref().clone());
        }
    }
    datafusion::arrow::record_batch::RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).expect("batch")
}

/// Sorted CSV of an expected-results file.
pub(crate) fn expected_csv(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("expected csv");
    let mut lines: Vec<&str> = text.lines().collect();
    let header = lines.remove(0);
    lines.sort();
    format!("{header}\n{}\n", lines.join("\n"))
}

/// Every file under `folder`, relative, sorted (empty when the folder does not exist).
pub(crate) fn files_under(folder: &Path) -> Vec<String> {
    if !folder.exists() {
        return Vec::new();
    }
    let mut files: Vec<String> = walkdir::WalkDir::new(folder)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_file())
        .map(|entry| entry.path().strip_prefix(folder).expect("inside").display().to_string())
        .collect();
    files.sort();
    files
}

/// `column: type` of every column of a Parquet file, as Arrow reads it.
pub(crate) fn parquet_columns(parquet: &Path) -> Vec<String> {
    let file = std::fs::File::open(parquet).expect("open parquet");
    let builder =
        datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).expect("parquet");
    builder
        .schema()
        .fields()
        .iter()
        .map(|field| format!("{}: {}", field.name(), field.data_type()))
        .collect()
}

/// A copy of the repository's own LMS example project in a fresh temp folder.
pub(crate) fn example_project() -> tempfile::TempDir {
    let project = tempfile::Builder::new()
        .prefix("tidemark-lms-")
        .tempdir()
        .expect("temp dir");
    let root = repository_root();
    for item in [
        "tidemark.yml",
        "profiles.yml",
        "models",
        "macros",
        "seeds",
        "data_tests",
    ] {
        let source = root.join(item);
        if source.is_dir() {
            copy_tree(&source, &project.path().join(item));
        } else if source.is_file() {
            std::fs::copy(&source, project.path().join(item)).expect("copy");
        }
    }
    project
}

/// Rows of every node in `run_results.json`, by table name.
pub(crate) fn reported_rows(project: &Path) -> std::collections::BTreeMap<String, u64> {
    let text = std::fs::read_to_string(project.join("target/tidemark/run_results.json")).expect("run_results");
    let results: serde_json::Value = serde_json::from_str(&text).expect("json");
    results["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter_map(|result| {
            let rows = result["rows_affected"].as_u64()?;
            let id = result["unique_id"].as_str()?;
            Some((format!("main.{}", id.rsplit('.').next()?), rows))
        })
        .collect()
}

/// The JSON of a lock held by process `pid` on this host (run `other-run`, and `command` when
/// given), as tidemark writes it.
pub(crate) fn lock_record(pid: u32, command: Option<&str>) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("hostname")
        .trim()
        .to_string();
    let command = command.map(|c| format!(",\"command\":\"{c}\"")).unwrap_or_default();
    format!(
        "{{\"run_id\":\"other-run\",\"pid\":{pid},\"host\":\"{host}\",\"since\":\"2026-11-22T00:00:00Z\"{command}}}"
    )
}

/// Spawns `command` (a `tidemark` run with `--log-format json`) and returns it once a node has
/// started. The rest of its standard output is drained in the background, so it never blocks
/// on a full pipe.
pub(crate) fn spawn_until_node_started(command: &mut Command) -> std::process::Child {
    use std::io::BufRead;
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn tidemark");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = std::io::BufReader::new(stdout).lines();
    loop {
        let line = lines
            .next()
            .expect("tidemark ended before starting the node")
            .expect("read line");
        if line.contains("\"node_started\"") {
            break;
        }
    }
    std::thread::spawn(move || lines.for_each(drop));
    child
}
