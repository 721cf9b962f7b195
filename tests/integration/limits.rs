//! Memory and spill limits: a sort of about 300 MB of rows (6M rows) under a `memory_limit` of
//! 128 MiB spills to `spill_dir` and completes, leaving no spill file behind; with room for too little spill (`spill_limit`, a
//! full spill disk as far as the run can tell) or too little memory to work at all, the node
//! fails with a message naming the limit, and the process is never killed. The table's previous
//! version is kept in every case.

use std::path::Path;

use crate::common::{fixture, tidemark, transcript};

const SORTED: &str = "{{ config(materialized='table') }}
select id, digest from {{ ref('big') }} order by digest desc
";

/// The `big` fixture with a model that sorts it, on local disk with these target settings.
fn project(settings: &str) -> tempfile::TempDir {
    let project = fixture("big");
    let root = project.path();
    std::fs::write(root.join("models/sorted.sql"), SORTED).expect("sorted.sql");
    std::fs::create_dir_all(root.join("spill")).expect("spill folder");
    write_profile(root, settings);
    project
}

fn write_profile(root: &Path, settings: &str) {
    std::fs::write(
        root.join("profiles.yml"),
        format!(
            "big:\n  target: dev\n  outputs:\n    dev:\n      type: datafusion\n      warehouse: warehouse\n      threads: 1\n      spill_dir: {}\n      options:\n        datafusion.execution.target_partitions: 1\n{settings}",
            root.join("spill").display()
        ),
    )
    .expect("profiles.yml");
}

fn build(root: &Path, rows: u64) -> (Option<i32>, String) {
    let output = tidemark(root, &["build", "--vars", &format!("{{rows: {rows}}}")]);
    (output.status.code(), transcript(&output, root))
}

/// The first row of `sorted` and its row count, read with the parquet crate (the first row
/// group only: the highest digest).
fn first_sorted_row(root: &Path) -> (String, i64) {
    use datafusion::arrow::util::display::array_value_to_string;
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let file = std::fs::File::open(root.join("warehouse/main/sorted/data.parquet")).expect("open sorted");
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).expect("parquet");
    let rows = builder.metadata().file_metadata().num_rows();
    let mut reader = builder
        .with_batch_size(1)
        .with_row_groups(vec![0])
        .build()
        .expect("reader");
    let batch = reader.next().expect("a row").expect("a batch");
    let first = (0..batch.num_columns())
        .map(|column| array_value_to_string(batch.column(column), 0).expect("value"))
        .collect::<Vec<_>>()
        .join(",");
    (first, rows)
}

#[test]
fn a_sort_far_bigger_than_memory_limit_spills_and_completes() {
    let project = project("      memory_limit: 128MiB\n");
    let root = project.path();
    let (code, text) = build(root, 6_000_000);
    assert_eq!(code, Some(0), "{text}");
    // The same sort with the default limit (60% of the machine) gives the same first row.
    let spilled = first_sorted_row(root);
    assert_eq!(spilled.1, 6_000_000);
    write_profile(root, "");
    let (code, text) = build(root, 6_000_000);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(first_sorted_row(root), spilled);
    // Spill files are removed by the end of the run.
    assert_eq!(crate::common::files_under(&root.join("spill")), Vec::<String>::new());
}

#[test]
fn spill_files_past_spill_limit_fail_the_node_naming_the_limit() {
    let project = project("");
    let root = project.path();
    let (code, text) = build(root, 1000);
    assert_eq!(code, Some(0), "{text}");
    let before = first_sorted_row(root);
    write_profile(root, "      memory_limit: 128MiB\n      spill_limit: 2MiB\n");
    let (code, text) = build(root, 6_000_000);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("hint: the query's spill files outgrew spill_limit (2.0 MiB) in "),
        "{text}"
    );
    assert_eq!(first_sorted_row(root), before, "the previous version is kept");
}

#[test]
fn too_little_memory_to_work_fails_the_node_naming_memory_limit() {
    let project = project("");
    let root = project.path();
    let (code, text) = build(root, 1000);
    assert_eq!(code, Some(0), "{text}");
    let before = first_sorted_row(root);
    write_profile(root, "      memory_limit: 64KiB\n");
    let (code, text) = build(root, 200_000);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("hint: the query needed more memory than the target allows (memory_limit: 64.0 KiB)"),
        "{text}"
    );
    assert_eq!(first_sorted_row(root), before, "the previous version is kept");
}
