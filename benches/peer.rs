//! The peer benchmark: one learner scorecard, as a tidemark metric model and as hand-written
//! DuckDB SQL, on the same generated events; plus tidemark's compiled SQL run by DataFusion alone.
//!
//! `cargo bench --bench peer [-- --learners N] [--runs R]` (default 40,000 learners ≈ 10.2M
//! events, 3 runs):
//!
//! 1. generates xAPI-style events and learners as Parquet (deterministic; cached under the
//!    build's target folder, `peer-data/`);
//! 2. copies `benches/peer/project` (the metric model) into a temporary folder next to the data;
//! 3. runs, paired and `R` times each: `tidemark build` (the release binary next to this
//!    benchmark, or `TIDEMARK_BIN`), `benches/peer/duckdb_scorecard.sql` through DuckDB from PyPI
//!    at 2 threads, and the SQL tidemark compiled run by a bare DataFusion `SessionContext`
//!    (this benchmark re-run with `--raw`: the same SQL, the same Parquet writes, none of
//!    tidemark's planning, locking, commits or artifacts);
//! 4. checks that every value of tidemark's scorecard and alerts equals DuckDB's within 1e-9
//!    (`benches/peer/compare.py`) and prints wall time, CPU time and peak memory (each measured
//!    on the child process by `benches/peer/measure.py`) with their medians and ratios.
//!
//! `cargo bench --bench peer -- --binaries label=path,label=path [--runs R]` times only
//! `tidemark build`, by each binary in turn (builds of different Cargo profiles), R rounds, and
//! checks each binary's scorecard against DuckDB's (run once).
//!
//! Needs python3 with pip (it installs `duckdb` when missing).

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a benchmark reports on standard output"
)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int32Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;

/// Bumped whenever the generator changes, so cached data is regenerated.
const DATA_VERSION: u32 = 3;
const DAYS: i64 = 182;
/// 2026-05-18 as days since 1970-01-01.
const FIRST_DAY: i64 = 20_591;
const TEAM_SIZE: usize = 20;
const VERBS: [&str; 8] = [
    "launched",
    "experienced",
    "completed",
    "passed",
    "failed",
    "commented",
    "posted",
    "reviewed",
];
/// Cumulative shares of the verbs above (per mille).
const VERB_SHARES: [u64; 8] = [240, 520, 640, 720, 780, 880, 940, 1000];

/// SplitMix64: a deterministic hash of a few integers, uniform in [0, 1).
fn uniform(a: u64, b: u64, c: u64) -> f64 {
    let mut z = a
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(b.wrapping_mul(0xBF58_476D_1CE4_E5B9))
        .wrapping_add(c.wrapping_mul(0x94D0_49BB_1331_11EB))
        .wrapping_add(0x2545_F491_4F6C_DD1D);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).expect("zstd level")))
        .set_max_row_group_row_count(Some(1 << 20))
        .build()
}

fn learner_id(learner: usize) -> String {
    format!("L{learner:06}")
}

/// Writes `learners.parquet`: id, team, role, department.
fn write_learners(path: &Path, learners: usize) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("learner_id", DataType::Utf8, false),
        Field::new("team_id", DataType::Utf8, false),
        Field::new("role", DataType::Utf8, false),
        Field::new("department", DataType::Utf8, false),
    ]));
    let (mut ids, mut teams, mut roles, mut departments) = (
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
    );
    for learner in 0..learners {
        let team = learner / TEAM_SIZE;
        ids.append_value(learner_id(learner));
        teams.append_value(format!("T{team:05}"));
        roles.append_value(["engineer", "analyst", "manager", "sales", "support"][learner % 5]);
        departments.append_value(format!("D{:02}", team % 40));
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(ids.finish()),
        Arc::new(teams.finish()),
        Arc::new(roles.finish()),
        Arc::new(departments.finish()),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns).expect("learners batch");
    let file = std::fs::File::create(path).expect("learners.parquet");
    let mut writer = ArrowWriter::try_new(file, schema, Some(writer_properties())).expect("writer");
    writer.write(&batch).expect("write learners");
    writer.close().expect("close learners");
}

/// Writes `events.parquet`: about 255 events per learner over 182 days. Each learner has a base
/// daily rate; weekends are quieter; 8% of learners fall to a quarter of their rate from a day
/// between 90 and 150 (what the alerts should catch); a few teams dip for a while.
fn write_events(path: &Path, learners: usize) -> u64 {
    let schema = Arc::new(Schema::new(vec![
        Field::new("learner_id", DataType::Utf8, false),
        Field::new("verb", DataType::Utf8, false),
        Field::new("course_id", DataType::Utf8, false),
        Field::new("event_at", DataType::Timestamp(TimeUnit::Microsecond, None), false),
        Field::new("duration_minutes", DataType::Int32, false),
        Field::new("score", DataType::Float64, true),
        Field::new("mandatory", DataType::Boolean, false),
    ]));
    let file = std::fs::File::create(path).expect("events.parquet");
    let mut writer = ArrowWriter::try_new(file, schema.clone(), Some(writer_properties())).expect("writer");
    let mut rows = 0u64;
    let chunk = 2_000;
    for first in (0..learners).step_by(chunk) {
        let (mut ids, mut verbs, mut courses) = (StringBuilder::new(), StringBuilder::new(), StringBuilder::new());
        let mut times = TimestampMicrosecondBuilder::new();
        let mut durations = Int32Builder::new();
        let mut scores = Float64Builder::new();
        let mut mandatory = BooleanBuilder::new();
        for learner in first..(first + chunk).min(learners) {
            let l = learner as u64;
            let id = learner_id(learner);
            let rate = 0.85 + 1.7 * uniform(l, 1, 0);
            let skill = 45.0 + 40.0 * uniform(l, 2, 0);
            let drops = uniform(l, 3, 0) < 0.08;
            let drop_day = 90 + (uniform(l, 4, 0) * 60.0) as i64;
            let team = (learner / TEAM_SIZE) as u64;
            let team_dip = uniform(team, 5, 0) < 0.05;
            for day in 0..DAYS {
                let d = day as u64;
                let mut daily = rate * if (FIRST_DAY + day + 3) % 7 >= 5 { 0.4 } else { 1.0 };
                daily *= 0.85 + 0.3 * uniform(l, d, 6);
                if drops && day >= drop_day {
                    daily *= 0.25;
                }
                if team_dip && (120..140).contains(&day) {
                    daily *= 0.7;
                }
                // Events of the day: the integer part, plus one more with the fractional chance.
                let count = daily.floor() as u64 + u64::from(uniform(l, d, 7) < daily.fract());
                for k in 0..count {
                    let u = |salt: u64| uniform(l * 64 + k, d, salt);
                    let pick = (u(8) * 1000.0) as u64;
                    let verb = VERB_SHARES.iter().position(|&share| pick < share).unwrap_or(7);
                    let course = (u(9) * 60.0) as u64;
                    let seconds = ((FIRST_DAY + day) * 86_400) as u64 + 7 * 3600 + (u(10) * 50_000.0) as u64;
                    let assessed = verb == 3 || verb == 4;
                    ids.append_value(&id);
                    verbs.append_value(VERBS[verb]);
                    courses.append_value(format!("C{course:03}"));
                    times.append_value(seconds as i64 * 1_000_000);
                    durations.append_value(1 + (u(11) * 59.0) as i32);
                    if assessed {
                        let score = (skill + 30.0 * (u(12) - 0.5)).clamp(0.0, 100.0);
                        scores.append_value((score * 10.0).round() / 10.0);
                    } else {
                        scores.append_null();
                    }
                    mandatory.append_value(course < 12);
                    rows += 1;
                }
            }
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(ids.finish()),
            Arc::new(verbs.finish()),
            Arc::new(courses.finish()),
            Arc::new(times.finish()),
            Arc::new(durations.finish()),
            Arc::new(scores.finish()),
            Arc::new(mandatory.finish()),
        ];
        let batch = RecordBatch::try_new(schema.clone(), columns).expect("events batch");
        writer.write(&batch).expect("write events");
    }
    writer.close().expect("close events");
    rows
}

/// The generated data for `learners`, made once and kept under the target folder.
fn data(learners: usize) -> PathBuf {
    let me = std::env::current_exe().expect("current exe");
    let target = me
        .parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .expect("target folder");
    let folder = target.join(format!("peer-data/v{DATA_VERSION}-{learners}"));
    let done = folder.join("rows");
    if !done.exists() {
        std::fs::create_dir_all(&folder).expect("data folder");
        let clock = std::time::Instant::now();
        write_learners(&folder.join("learners.parquet"), learners);
        let rows = write_events(&folder.join("events.parquet"), learners);
        std::fs::write(&done, rows.to_string()).expect("rows");
        println!(
            "generated {rows} events of {learners} learners in {:.1}s ({})",
            clock.elapsed().as_secs_f64(),
            folder.display()
        );
    }
    folder
}

fn binary() -> PathBuf {
    if let Ok(path) = std::env::var("TIDEMARK_BIN") {
        return PathBuf::from(path);
    }
    let me = std::env::current_exe().expect("current exe");
    me.parent()
        .and_then(Path::parent)
        .expect("target folder")
        .join("tidemark")
}

fn copy_tree(source: &Path, destination: &Path) {
    for entry in walkdir::WalkDir::new(source) {
        let entry = entry.expect("walk");
        let target = destination.join(entry.path().strip_prefix(source).expect("inside"));
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&target).expect("mkdir");
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

fn ensure_duckdb() {
    let found = Command::new(python())
        .args(["-c", "import duckdb"])
        .status()
        .is_ok_and(|status| status.success());
    if !found {
        let status = Command::new(python())
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "duckdb",
            ])
            .status()
            .expect("pip");
        assert!(status.success(), "pip install duckdb failed");
    }
}

struct Measured {
    wall: f64,
    cpu: f64,
    peak_gib: f64,
}

/// Runs `command` in `cwd` under measure.py: the child's wall, CPU and peak RSS.
fn measure(cwd: &Path, command: &[&str]) -> Measured {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peer/measure.py");
    let output = Command::new(python())
        .arg(script)
        .arg("--cwd")
        .arg(cwd)
        .arg("--")
        .args(command)
        .output()
        .expect("measure.py");
    let text = String::from_utf8_lossy(&output.stdout);
    let report: serde_json::Value = serde_json::from_str(text.trim())
        .unwrap_or_else(|_| panic!("measure.py printed {text} {}", String::from_utf8_lossy(&output.stderr)));
    assert_eq!(
        report["exit_code"],
        0,
        "{command:?} failed: {}",
        report["stderr"].as_str().unwrap_or_default()
    );
    Measured {
        wall: report["wall_s"].as_f64().unwrap_or_default(),
        cpu: report["cpu_s"].as_f64().unwrap_or_default(),
        peak_gib: report["peak_rss_kib"].as_f64().unwrap_or_default() / 1024.0 / 1024.0,
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

fn flag(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    if let Some(project) = flag("--raw") {
        raw::run(Path::new(&project));
        return;
    }
    let learners: usize = flag("--learners").and_then(|v| v.parse().ok()).unwrap_or(40_000);
    let runs: usize = flag("--runs").and_then(|v| v.parse().ok()).unwrap_or(3);
    if let Some(list) = flag("--binaries") {
        compare_binaries(&list, learners, runs);
        return;
    }
    let binary = binary();
    assert!(
        binary.exists(),
        "no tidemark binary at {} (cargo build --release, or set TIDEMARK_BIN)",
        binary.display()
    );
    let (work, events) = setup(learners);
    let project = work.path();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peer");
    let sql = root.join("duckdb_scorecard.sql");
    let sql = sql.to_str().expect("utf-8 path");
    let me = std::env::current_exe().expect("current exe");
    let me = me.to_str().expect("utf-8 path");
    let project_arg = project.to_str().expect("utf-8 path");
    let tidemark = binary.to_str().expect("utf-8 path");
    let duckdb_script = root.join("duckdb_scorecard.py");
    let duckdb_script = duckdb_script.to_str().expect("utf-8 path");
    let python = python();
    println!("peer benchmark: {events} events, {learners} learners, 26 weekly periods; {runs} paired runs");
    let (mut tidemark_runs, mut duckdb_runs, mut raw_runs) = (Vec::new(), Vec::new(), Vec::new());
    for run in 1..=runs {
        let _ = std::fs::remove_dir_all(project.join("warehouse"));
        let t = measure(project, &[tidemark, "build", "--no-progress"]);
        let d = measure(project, &[&python, duckdb_script, sql]);
        let r = measure(project, &[me, "--raw", project_arg]);
        println!(
            "run {run}: tidemark {:.2}s (cpu {:.1}s, {:.2} GiB) | DuckDB {:.2}s (cpu {:.1}s, {:.2} GiB) | DataFusion alone {:.2}s (cpu {:.1}s, {:.2} GiB)",
            t.wall, t.cpu, t.peak_gib, d.wall, d.cpu, d.peak_gib, r.wall, r.cpu, r.peak_gib
        );
        if run == 1 {
            check_equal(project);
        }
        tidemark_runs.push(t);
        duckdb_runs.push(d);
        raw_runs.push(r);
    }
    let summary = |runs: &[Measured]| {
        (
            median(&mut runs.iter().map(|m| m.wall).collect::<Vec<_>>()),
            median(&mut runs.iter().map(|m| m.cpu).collect::<Vec<_>>()),
            runs.iter().map(|m| m.peak_gib).fold(0.0, f64::max),
        )
    };
    let (tw, tc, tp) = summary(&tidemark_runs);
    let (dw, dc, dp) = summary(&duckdb_runs);
    let (rw, rc, rp) = summary(&raw_runs);
    println!();
    println!("| {events} events | wall (median of {runs}) | CPU (median) | peak RSS (max) |");
    println!("|---|---|---|---|");
    println!("| tidemark build | {tw:.2} s | {tc:.1} s | {tp:.2} GiB |");
    println!(
        "| DuckDB {} script | {dw:.2} s | {dc:.1} s | {dp:.2} GiB |",
        duckdb_version()
    );
    println!(
        "| tidemark / DuckDB | **{:.2}×** | {:.2}× | {:.2}× |",
        tw / dw,
        tc / dc,
        tp / dp
    );
    println!("| DataFusion alone, tidemark's compiled SQL | {rw:.2} s | {rc:.1} s | {rp:.2} GiB |");
    println!(
        "| tidemark overhead over DataFusion alone | {:+.1}% | {:+.1}% | |",
        (tw / rw - 1.0) * 100.0,
        (tc / rc - 1.0) * 100.0
    );
}

/// The generated data, and a copy of `benches/peer/project` in a temporary folder that links to
/// it; with the number of events.
fn setup(learners: usize) -> (tempfile::TempDir, u64) {
    ensure_duckdb();
    let data = data(learners);
    let events: u64 = std::fs::read_to_string(data.join("rows"))
        .expect("rows")
        .trim()
        .parse()
        .expect("row count");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peer");
    let work = tempfile::tempdir().expect("temp dir");
    copy_tree(&root.join("project"), work.path());
    std::fs::create_dir_all(work.path().join("data")).expect("data folder");
    for file in ["events.parquet", "learners.parquet"] {
        std::os::unix::fs::symlink(data.join(file), work.path().join("data").join(file)).expect("link data");
    }
    (work, events)
}

/// `--binaries label=path,label=path`: the same `tidemark build` by several binaries (builds of
/// different Cargo profiles), one after another in turn for `runs` rounds so that the machine's
/// drift touches each alike. DuckDB runs once, and every binary's first scorecard is checked
/// against it.
fn compare_binaries(list: &str, learners: usize, runs: usize) {
    let binaries: Vec<(String, String)> = list
        .split(',')
        .map(|entry| {
            let (label, path) = entry.split_once('=').unwrap_or((entry, entry));
            assert!(Path::new(path).exists(), "--binaries: no tidemark binary at {path}");
            (label.to_string(), path.to_string())
        })
        .collect();
    let (work, events) = setup(learners);
    let project = work.path();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peer");
    let script = root.join("duckdb_scorecard.py");
    let sql = root.join("duckdb_scorecard.sql");
    let d = measure(
        project,
        &[
            &python(),
            script.to_str().expect("utf-8 path"),
            sql.to_str().expect("utf-8 path"),
        ],
    );
    println!(
        "peer benchmark, {} binaries: {events} events, {learners} learners; {runs} rounds; DuckDB once: {:.2}s",
        binaries.len(),
        d.wall
    );
    let mut measured: Vec<Vec<Measured>> = binaries.iter().map(|_| Vec::new()).collect();
    for run in 1..=runs {
        for ((label, path), runs_of) in binaries.iter().zip(&mut measured) {
            let _ = std::fs::remove_dir_all(project.join("warehouse"));
            let t = measure(project, &[path, "build", "--no-progress"]);
            println!(
                "round {run}: {label} {:.2}s (cpu {:.1}s, {:.2} GiB)",
                t.wall, t.cpu, t.peak_gib
            );
            if run == 1 {
                check_equal(project);
            }
            runs_of.push(t);
        }
    }
    println!();
    println!(
        "| {events} events, tidemark build | wall (median of {runs}) | CPU (median) | peak RSS (max) | binary size |"
    );
    println!("|---|---|---|---|---|");
    for ((label, path), runs_of) in binaries.iter().zip(&measured) {
        let wall = median(&mut runs_of.iter().map(|m| m.wall).collect::<Vec<_>>());
        let cpu = median(&mut runs_of.iter().map(|m| m.cpu).collect::<Vec<_>>());
        let peak = runs_of.iter().map(|m| m.peak_gib).fold(0.0, f64::max);
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or_default() as f64 / 1e6;
        println!("| {label} | {wall:.2} s | {cpu:.1} s | {peak:.2} GiB | {size:.1} MB |");
    }
}

fn duckdb_version() -> String {
    Command::new(python())
        .args(["-c", "import duckdb; print(duckdb.__version__)"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn check_equal(project: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peer/compare.py");
    let output = Command::new(python())
        .arg(script)
        .arg(project)
        .output()
        .expect("compare.py");
    let text = String::from_utf8_lossy(&output.stdout);
    let report: serde_json::Value = serde_json::from_str(text.trim())
        .unwrap_or_else(|_| panic!("compare.py printed {text} {}", String::from_utf8_lossy(&output.stderr)));
    let mismatches = report["mismatches"].as_array().cloned().unwrap_or_default();
    println!(
        "values compared: scorecard {} rows ({} values), alerts {} rows; alerts by rule {}; mismatches beyond 1e-9: {}",
        report["scorecard_rows"],
        report["scorecard_values"],
        report["alerts_rows"],
        report["alerts_by_rule"],
        mismatches.len()
    );
    assert!(
        mismatches.is_empty(),
        "tidemark and DuckDB disagree:\n{}",
        mismatches
            .iter()
            .filter_map(|m| m.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// DataFusion alone: the SQL of every node tidemark compiled (`target/manifest.json`), run in
/// DAG order by one `SessionContext` configured as tidemark's embedded target (2 partitions,
/// the same memory limit and session settings, tidemark's SQL functions), writing each table as Parquet (partitioned the same way) into
/// `raw/`. Views become DataFusion views; nothing is locked, committed or recorded.
mod raw {
    use std::path::Path;

    use datafusion::dataframe::DataFrameWriteOptions;
    use datafusion::execution::memory_pool::FairSpillPool;
    use datafusion::execution::runtime_env::RuntimeEnvBuilder;
    use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};

    /// The manifest's nodes, each after the nodes it depends on.
    fn dag_order(manifest: &serde_json::Value) -> Vec<String> {
        let nodes = manifest["nodes"].as_object().expect("nodes");
        let mut done: Vec<String> = Vec::new();
        while done.len() < nodes.len() {
            let before = done.len();
            for (id, node) in nodes {
                let ready = node["depends_on"]["nodes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|d| d.as_str())
                    .all(|d| !nodes.contains_key(d) || done.iter().any(|x| x == d));
                if ready && !done.contains(id) {
                    done.push(id.clone());
                }
            }
            assert!(done.len() > before, "a cycle in the manifest");
        }
        done
    }

    pub(crate) fn run(project: &Path) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(execute(project));
    }

    async fn execute(project: &Path) {
        let manifest: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(project.join("target/manifest.json")).expect("manifest.json (run tidemark first)"),
        )
        .expect("manifest");
        // tidemark's session settings (execute/session.rs), so only tidemark's own work differs.
        let mut config = SessionConfig::new();
        for (key, value) in [
            ("datafusion.execution.parquet.schema_force_view_types", "false"),
            ("datafusion.sql_parser.map_string_types_to_utf8view", "false"),
            (
                "datafusion.execution.skip_partial_aggregation_probe_ratio_threshold",
                "0.5",
            ),
        ] {
            config.options_mut().set(key, value).expect("option");
        }
        let config = config
            .with_target_partitions(2)
            .with_information_schema(false)
            .with_create_default_catalog_and_schema(true)
            .with_default_catalog_and_schema("tidemark", "main");
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(std::sync::Arc::new(FairSpillPool::new(8 << 30)))
            .build_arc()
            .expect("runtime");
        let context = SessionContext::new_with_config_rt(config, runtime);
        tidemark::functions::register(&context);
        for (schema, table, location) in [
            ("lms", "events", "data/events.parquet"),
            ("lms", "learners", "data/learners.parquet"),
        ] {
            context
                .sql(&format!("create schema if not exists tidemark.{schema}"))
                .await
                .expect("schema");
            context
                .register_parquet(
                    format!("tidemark.{schema}.{table}"),
                    project.join(location).to_str().expect("path"),
                    ParquetReadOptions::default(),
                )
                .await
                .expect("register source");
        }
        let output = project.join("raw");
        let _ = std::fs::remove_dir_all(&output);
        for id in dag_order(&manifest) {
            let node = &manifest["nodes"][id.as_str()];
            if node["resource_type"] != "model" {
                continue;
            }
            let name = node["name"].as_str().expect("name");
            let sql = std::fs::read_to_string(project.join(node["compiled_path"].as_str().expect("path")))
                .expect("compiled sql");
            if node["config"]["materialized"] == "view" {
                context
                    .sql(&format!("create view tidemark.main.{name} as {sql}"))
                    .await
                    .expect("view");
                continue;
            }
            let frame = context.sql(&sql).await.expect("plan");
            let partition_by: Vec<String> = node["config"]["partition_by"]
                .as_str()
                .map(|c| vec![c.to_string()])
                .unwrap_or_default();
            let folder = output.join(name);
            // Hive partition folders are read back with the columns' types.
            let partition_types: Vec<(String, datafusion::arrow::datatypes::DataType)> = partition_by
                .iter()
                .map(|column| {
                    let field = frame
                        .schema()
                        .field_with_unqualified_name(column)
                        .expect("partition column");
                    (column.clone(), field.data_type().clone())
                })
                .collect();
            let options = DataFrameWriteOptions::new().with_partition_by(partition_by);
            frame
                .write_parquet(&format!("{}/", folder.display()), options, None)
                .await
                .expect("write");
            context
                .register_parquet(
                    format!("tidemark.main.{name}"),
                    &format!("{}/", folder.display()),
                    ParquetReadOptions::default().table_partition_cols(partition_types),
                )
                .await
                .expect("register written table");
        }
    }
}
