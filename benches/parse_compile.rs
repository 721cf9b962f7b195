//! Parse + compile benchmark on a generated project of 10,000 models.
//!
//! Run with `cargo bench --bench parse_compile` (optionally `-- <models> <runs>`). The project
//! is generated into a temporary folder: models in 100 folders, each reading one or two earlier
//! models through `ref`, with a Jinja `{% for %}` loop and a project macro, plus one property
//! file per folder declaring every model's columns and a `not_null` test. Each run loads the
//! project, renders every model (parse phase), builds the DAG and compiles every node; the
//! median of the runs is printed. `tidemark ls` and `tidemark compile` on the same project are
//! timed too, repeated (unchanged files are not written again) and into an empty `target/`,
//! beside the floor of the disk: the same files written by a plain loop. `--one-file` keeps
//! every model's properties in one `models/schema.yml` instead, as many real projects do.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a benchmark reports on standard output"
)]

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

fn generate(root: &Path, models: usize, one_file: bool) {
    std::fs::create_dir_all(root.join("macros")).unwrap();
    std::fs::write(
        root.join("tidemark.yml"),
        "name: bench\nvars:\n  measures: [events, completions, minutes, score]\nmodels:\n  bench:\n    +materialized: view\n",
    )
    .unwrap();
    std::fs::write(
        root.join("macros/measures.sql"),
        "{% macro measure(name, source) -%}\nsum(case when kind = '{{ name }}' then {{ source }}.value else 0 end)\n{%- endmacro %}\n",
    )
    .unwrap();
    let folders = 100;
    let mut schema = String::from("version: 2\nmodels:\n");
    for folder in 0..folders {
        let dir = root.join(format!("models/area_{folder:03}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut properties = String::from("version: 2\nmodels:\n");
        for index in (folder..models).step_by(folders) {
            let name = format!("model_{index:05}");
            let upstream = if index == 0 {
                "(select 1 as id, 'events' as kind, 1.0 as value)".to_string()
            } else if index % 3 == 0 && index > 1 {
                format!(
                    "{{{{ ref('model_{:05}') }}}} as a join {{{{ ref('model_{:05}') }}}} as b using (id)",
                    index - 1,
                    index / 2
                )
            } else {
                format!("{{{{ ref('model_{:05}') }}}} as a", index - 1)
            };
            let sql = format!(
                "{{{{ config(tags=['area_{folder}']) }}}}\nselect\n    id,\n    'events' as kind,\n    1.0 as value,\n{{% for m in var('measures') %}}    {{{{ measure(m, 'a') }}}} as {{{{ m }}}}_total{{{{ ',' if not loop.last }}}}\n{{% endfor %}}from {upstream}\ngroup by id\n"
            );
            std::fs::write(dir.join(format!("{name}.sql")), sql).unwrap();
            write!(
                properties,
                "  - name: {name}\n    description: Model {index} of the benchmark.\n    columns:\n      - name: id\n        description: The key.\n        tests: [not_null]\n      - name: events_total\n        description: Events.\n"
            )
            .unwrap();
        }
        if one_file {
            schema.push_str(properties.trim_start_matches("version: 2\nmodels:\n"));
        } else {
            std::fs::write(dir.join("properties.yml"), properties).unwrap();
        }
    }
    if one_file {
        std::fs::write(root.join("models/schema.yml"), schema).unwrap();
    }
}

fn parse_and_compile(root: &Path, verbose: bool) -> usize {
    let clock = Instant::now();
    let stage = |name: &str| {
        if verbose {
            println!("  {name:<10} done at {:.3}s", clock.elapsed().as_secs_f64());
        }
    };
    let project = tidemark::project::load(root).expect("project loads");
    stage("load");
    let target = tidemark::project::load_target(&project, None, None).expect("target");
    let engine =
        tidemark::template::TemplateEngine::new(&project, &target, project.file.vars.clone()).expect("templates");
    stage("templates");
    let graph = tidemark::graph::build(&project, &engine, &target).expect("graph");
    stage("parse+dag");
    let selected: BTreeSet<String> = graph.nodes.keys().cloned().collect();
    let compiled =
        tidemark::compile::compile(&graph, &engine, "target", &selected, &Default::default()).expect("compile");
    stage("compile");
    compiled.nodes.len()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// `tidemark compile` into an empty `target/` (every file created), beside the floor of this
/// disk: the same files written by a plain loop of `std::fs::write` on one thread.
fn first_compile(binary: &str, root: &Path, runs: usize) {
    let compiled = root.join("target/compiled");
    let mut first = Vec::new();
    for _ in 0..runs {
        std::fs::remove_dir_all(root.join("target")).unwrap();
        let clock = Instant::now();
        let output = std::process::Command::new(binary)
            .args(["compile", "--no-progress"])
            .current_dir(root)
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        first.push(clock.elapsed().as_secs_f64());
    }
    println!(
        "median `tidemark compile` into an empty target/ ({runs} runs): {:.3}s",
        median(first)
    );
    let mut files = Vec::new();
    let mut folders = vec![compiled.clone()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
            } else {
                let text = std::fs::read(&path).unwrap();
                files.push((path, text));
            }
        }
    }
    let mut floor = Vec::new();
    for _ in 0..runs {
        std::fs::remove_dir_all(&compiled).unwrap();
        let clock = Instant::now();
        for (path, text) in &files {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        floor.push(clock.elapsed().as_secs_f64());
    }
    println!(
        "median floor: the same {} files written by a plain loop ({runs} runs): {:.3}s",
        files.len(),
        median(floor)
    );
}

fn main() {
    let one_file = std::env::args().any(|a| a == "--one-file");
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let models: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let runs: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(7);
    let folder = tempfile::tempdir().unwrap();
    generate(folder.path(), models, one_file);
    if let Ok(keep) = std::env::var("TIDEMARK_BENCH_DIR") {
        // Keep a copy of the generated project for profiling by hand.
        generate(Path::new(&keep), models, one_file);
    }
    let layout = if one_file {
        "one models/schema.yml"
    } else {
        "one property file per folder"
    };
    println!("generated {models} models ({layout}) in {}", folder.path().display());

    let mut in_process = Vec::new();
    for run in 0..runs {
        let clock = Instant::now();
        let nodes = parse_and_compile(folder.path(), run == 0);
        let seconds = clock.elapsed().as_secs_f64();
        println!("run {}: parsed and compiled {nodes} nodes in {seconds:.3}s", run + 1);
        in_process.push(seconds);
    }
    println!(
        "median parse + compile (library, {runs} runs): {:.3}s",
        median(in_process)
    );

    let binary = std::env::var("TIDEMARK_BIN").ok().or_else(|| {
        let release = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/tidemark");
        release.exists().then(|| release.display().to_string())
    });
    if let Some(binary) = binary {
        for (command, what) in [
            (["ls", "--no-progress"], "`tidemark ls` wall time"),
            (
                ["compile", "--no-progress"],
                "`tidemark compile` wall time incl. writing target/",
            ),
        ] {
            let mut cli = Vec::new();
            for _ in 0..runs {
                let clock = Instant::now();
                let status = std::process::Command::new(&binary)
                    .args(command)
                    .current_dir(folder.path())
                    .output()
                    .unwrap();
                assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
                cli.push(clock.elapsed().as_secs_f64());
            }
            println!("median {what} ({runs} runs): {:.3}s", median(cli));
        }
        first_compile(&binary, folder.path(), runs);
    } else {
        println!("(set TIDEMARK_BIN to a tidemark binary to also time `tidemark compile` end to end)");
    }
}
