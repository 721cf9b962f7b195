//! Builds the LMS example project at a given scale and reports wall time and peak memory.
//!
//! `cargo bench --bench lms_build -- [learners]` (default 17,200 learners ≈ 10M statements;
//! 172,000 ≈ 100M). It copies the project into a temporary folder, runs `tidemark build` there
//! with `--vars '{lms_learners: N}'` using the release binary next to this benchmark (or
//! `TIDEMARK_BIN`), samples the process's peak resident memory (VmHWM) while it runs, and prints
//! the statement count, wall time and peak memory.
//!
//! `-- [learners] --cluster` runs the same build on a Ballista cluster of processes this benchmark
//! starts (`tidemark scheduler` and two `tidemark executor`s with one task slot each on
//! 127.0.0.1, the warehouse a local folder they share) through a `type: ballista` target, and
//! reports the client's and the cluster's peak memory; `--nightly` runs the incremental scenario (embedded).

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a benchmark reports on standard output"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn binary() -> PathBuf {
    if let Ok(path) = std::env::var("TIDEMARK_BIN") {
        return PathBuf::from(path);
    }
    // The benchmark runs from target/<profile>/deps; the binary is one folder up.
    let me = std::env::current_exe().expect("current exe");
    let folder = me.parent().and_then(Path::parent).expect("target folder");
    folder.join("tidemark")
}

fn main() {
    let learners: u64 = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or(17_200);
    let binary = binary();
    assert!(
        binary.exists(),
        "no tidemark binary at {} (cargo build --release, or set TIDEMARK_BIN)",
        binary.display()
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let project = tempfile::tempdir().expect("temp dir");
    for item in [
        "tidemark.yml",
        "profiles.yml",
        "models",
        "macros",
        "seeds",
        "data_tests",
    ] {
        let source = root.join(item);
        if !source.exists() {
            continue;
        }
        if source.is_dir() {
            copy_tree(&source, &project.path().join(item));
        } else {
            std::fs::copy(&source, project.path().join(item)).expect("copy");
        }
    }
    if std::env::args().any(|a| a == "--nightly") {
        nightly(&binary, project.path(), learners);
        return;
    }
    let vars = format!("{{lms_learners: {learners}}}");
    let on_cluster = std::env::args().any(|a| a == "--cluster");
    // The cluster's processes live as long as this function.
    let mut cluster = None;
    let mut args = vec!["build", "--vars", &vars];
    if on_cluster {
        let processes = Cluster::start(&binary, project.path());
        std::fs::write(
            project.path().join("profiles.yml"),
            format!(
                "tidemark_lms:\n  target: cluster\n  outputs:\n    cluster:\n      type: ballista\n      url: df://127.0.0.1:{}\n      warehouse: warehouse\n      threads: 2\n      memory_limit: 8GiB\n",
                processes.port
            ),
        )
        .expect("profiles.yml");
        println!(
            "on a local Ballista cluster at df://127.0.0.1:{} (tidemark scheduler, 2 tidemark executors × 1 task slot)",
            processes.port
        );
        cluster = Some(processes);
        args.extend(["--target", "cluster"]);
    }
    println!(
        "building the LMS project with {learners} learners using {}",
        binary.display()
    );
    let (seconds, peak, log) = build(&binary, project.path(), &args);
    for line in log
        .lines()
        .filter(|l| l.contains(" OK created") || l.contains("Finished") || l.contains("Done."))
    {
        println!("{line}");
    }
    let statements = Command::new(&binary)
        .args([
            "show",
            "--inline",
            "select count(*) as statements from {{ ref('synthetic_events') }}",
        ])
        .args(&args[1..])
        .current_dir(project.path())
        .output()
        .expect("count");
    println!("{}", String::from_utf8_lossy(&statements.stdout).trim_end());
    println!(
        "wall time {seconds:.1}s, peak memory {:.2} GiB ({learners} learners)",
        peak as f64 / 1024.0 / 1024.0
    );
    if let Some(cluster) = cluster {
        println!(
            "peak memory of the scheduler and executors (summed): {:.2} GiB",
            cluster.peak_kib() as f64 / 1024.0 / 1024.0
        );
    }
}

/// A scheduler and two one-slot executors as processes on 127.0.0.1 (the warehouse is a local
/// folder they share).
struct Cluster {
    port: u16,
    children: Vec<std::process::Child>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("address")
        .port()
}

impl Cluster {
    fn start(binary: &Path, folder: &Path) -> Cluster {
        let port = free_port();
        let mut children = vec![Command::new(binary)
            .args(["scheduler", "--bind-host", "127.0.0.1", "--external-host", "127.0.0.1"])
            .args(["--bind-port", &port.to_string()])
            .stdout(Stdio::null())
            .spawn()
            .expect("start tidemark scheduler")];
        for index in 0..2 {
            children.push(
                Command::new(binary)
                    .args([
                        "executor",
                        "--scheduler-host",
                        "127.0.0.1",
                        "--scheduler-port",
                        &port.to_string(),
                    ])
                    .args(["--bind-host", "127.0.0.1", "--external-host", "127.0.0.1"])
                    .args([
                        "--bind-port",
                        &free_port().to_string(),
                        "--bind-grpc-port",
                        &free_port().to_string(),
                    ])
                    .args(["--concurrent-tasks", "1"])
                    .arg("--work-dir")
                    .arg(folder.join(format!("executor-{index}")))
                    .stdout(Stdio::null())
                    .spawn()
                    .expect("start tidemark executor"),
            );
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let url = format!("http://127.0.0.1:{port}");
        for _ in 0..600 {
            if matches!(runtime.block_on(tidemark::execute::cluster::executor_count(&url)), Ok(n) if n >= 2) {
                return Cluster { port, children };
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the cluster at {url} did not register 2 executors within 60 s");
    }

    fn peak_kib(&self) -> u64 {
        self.children.iter().filter_map(|child| peak_rss_kib(child.id())).sum()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs tidemark with `args` in `project`; returns wall seconds, peak RSS (KiB) and stdout.
fn build(binary: &Path, project: &Path, args: &[&str]) -> (f64, u64, String) {
    let clock = Instant::now();
    let mut child = Command::new(binary)
        .args(args)
        .arg("--no-progress")
        .current_dir(project)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start tidemark");
    let pid = child.id();
    let mut peak = 0;
    let status = loop {
        if let Some(kib) = peak_rss_kib(pid) {
            peak = peak.max(kib);
        }
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let seconds = clock.elapsed().as_secs_f64();
    let output = child.wait_with_output().expect("output");
    let log = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(status.success(), "tidemark {args:?} failed:\n{log}");
    (seconds, peak, log)
}

/// Rows and bytes every node of the last run scanned (`run_results.json`).
fn scanned(project: &Path) -> (u64, u64) {
    let text = std::fs::read_to_string(project.join("target/tidemark/run_results.json")).expect("run_results");
    let results: serde_json::Value = serde_json::from_str(&text).expect("json");
    let sum = |key: &str| {
        results["results"]
            .as_array()
            .expect("results")
            .iter()
            .filter_map(|r| r[key].as_u64())
            .sum::<u64>()
    };
    (sum("rows_scanned"), sum("bytes_scanned"))
}

/// The nightly scenario: history up to yesterday, then one new day incrementally, then the
/// same day as a full refresh.
fn nightly(binary: &Path, project: &Path, learners: u64) {
    let yesterday = format!("{{lms_learners: {learners}, lms_days: 181}}");
    let today = format!("{{lms_learners: {learners}, lms_days: 182}}");
    println!("LMS project, {learners} learners: history of 181 days, then one new day");
    let (history, _, _) = build(binary, project, &["build", "--vars", &yesterday]);
    println!("history build (181 days):        {history:>7.1}s");
    let (incremental, peak_incremental, _) = build(binary, project, &["build", "--vars", &today]);
    let (rows_i, bytes_i) = scanned(project);
    let (full, peak_full, _) = build(binary, project, &["build", "--full-refresh", "--vars", &today]);
    let (rows_f, bytes_f) = scanned(project);
    let gib = |kib: u64| kib as f64 / 1024.0 / 1024.0;
    println!(
        "nightly incremental (+1 day):    {incremental:>7.1}s  rows scanned {rows_i:>12}  bytes scanned {bytes_i:>12}  peak {:.2} GiB",
        gib(peak_incremental)
    );
    println!(
        "full refresh (182 days):         {full:>7.1}s  rows scanned {rows_f:>12}  bytes scanned {bytes_f:>12}  peak {:.2} GiB",
        gib(peak_full)
    );
}
