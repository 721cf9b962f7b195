//! Bad-input cases as data: every folder of `tests/fixtures/errors/` is a small project that
//! tidemark must refuse, run as one snapshot case (the way minijinja's and ruff's fixture globs
//! are), so adding an error case means adding a folder.
//!
//! A case folder holds the project (`tidemark.yml`, `models/`, `profiles.yml`, ...) and:
//! - `cmd`: the tidemark arguments on one line, separated by spaces (`build`, `source freshness`);
//! - `exit` (optional): the expected exit code, 2 when absent (refused while loading); 1 for an
//!   input only a run can find wrong (a corrupt source file, a seed whose values do not fit).
//!
//! The transcript (exit code, stdout, stderr) is snapshot as
//! `snapshots/integration__errors__<case>.snap`; no run may panic. A case refused while loading
//! must write nothing at all in the project (no `warehouse/`, no `target/`); one that fails
//! while running leaves the project's own files as they were. Every case runs even when an earlier one fails, and
//! the test then lists the failed cases. New snapshots are written with
//! `INSTA_UPDATE=always cargo test --test integration errors::`: read each one and check that its
//! `file:line:col` points at the bad value in the fixture.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use crate::common::{copy_tree, repository_root, tidemark, transcript};

/// The files of a case folder that describe the case rather than belong to its project.
const CASE_FILES: [&str; 2] = ["cmd", "exit"];

/// The case folders under `tests/fixtures/errors/`, sorted by name.
fn case_folders() -> Vec<PathBuf> {
    let root = repository_root().join("tests/fixtures/errors");
    let mut folders: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|error| panic!("{}: {error}", root.display()))
        .map(|entry| entry.expect("read tests/fixtures/errors").path())
        .filter(|path| path.is_dir())
        .collect();
    folders.sort();
    folders
}

/// Every file and folder under `folder`, relative, sorted.
fn entries_under(folder: &Path) -> Vec<String> {
    let mut entries: Vec<String> = walkdir::WalkDir::new(folder)
        .min_depth(1)
        .into_iter()
        .map(|entry| {
            let entry = entry.expect("walk project");
            entry.path().strip_prefix(folder).expect("inside").display().to_string()
        })
        .collect();
    entries.sort();
    entries
}

/// Runs one case folder; panics (on a snapshot mismatch too) when it does not hold.
fn run_case(name: &str, source: &Path) {
    let read = |file: &str| std::fs::read_to_string(source.join(file)).map(|text| text.trim().to_string());
    let command = read("cmd").unwrap_or_else(|error| panic!("{name}/cmd: {error}"));
    let args: Vec<&str> = command.split_whitespace().collect();
    assert!(!args.is_empty(), "{name}/cmd is empty");
    let expected_exit: i32 = match read("exit") {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|error| panic!("{name}/exit: '{text}': {error}")),
        Err(_) => 2,
    };

    let project = tempfile::Builder::new()
        .prefix(&format!("tidemark-error-{name}-"))
        .tempdir()
        .expect("temp dir");
    copy_tree(source, project.path());
    for file in CASE_FILES {
        let _ = std::fs::remove_file(project.path().join(file));
    }
    let before = entries_under(project.path());

    let output = tidemark(project.path(), &args);
    let text = transcript(&output, project.path());
    insta::with_settings!({ description => format!("tidemark {command}  (tests/fixtures/errors/{name})") }, {
        insta::assert_snapshot!(name, text);
    });
    assert_eq!(output.status.code(), Some(expected_exit), "exit code\n{text}");
    assert!(!text.contains("panicked"), "a panic\n{text}");
    if expected_exit == 2 {
        // Refused while loading: nothing at all is written.
        assert!(!project.path().join("warehouse").exists(), "the warehouse was created");
        assert!(!project.path().join("target").exists(), "target/ was written");
        assert_eq!(entries_under(project.path()), before, "the project's files changed");
    } else {
        // Failed while running: the project's own files are untouched, and no table of the
        // failed node was published (its staging is under `_tidemark/staging/`).
        let written: Vec<String> = entries_under(project.path())
            .into_iter()
            .filter(|entry| !entry.starts_with("target") && !entry.starts_with("warehouse"))
            .collect();
        assert_eq!(written, before, "the project's files changed");
    }
}

/// The text of a caught panic.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|text| text.to_string()))
        .unwrap_or_else(|| "(panic without a message)".into())
}

#[test]
fn every_error_case_is_refused_with_its_snapshot_and_writes_nothing() {
    let cases = case_folders();
    assert!(!cases.is_empty(), "no case folders under tests/fixtures/errors");
    let mut failures = Vec::new();
    for source in &cases {
        let name = source.file_name().expect("case name").to_string_lossy().into_owned();
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| run_case(&name, source))) {
            let message = panic_message(payload.as_ref());
            let first_line = message.lines().next().unwrap_or_default().to_string();
            failures.push(format!("{name}: {first_line}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} error cases failed (each one's panic is printed above):\n  {}",
        failures.len(),
        cases.len(),
        failures.join("\n  ")
    );
}
