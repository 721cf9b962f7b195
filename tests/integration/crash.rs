//! Crash trials: `tidemark build` SIGKILLed at random moments while it commits a table, a
//! Hive-partitioned table, incremental `merge`, `append`, `delete+insert` and
//! `insert_overwrite` models and a seed, on a warehouse that holds the previous run's tables.
//!
//! After every kill, each table must read back (with pyarrow, an independent reader) as exactly
//! its previous or its new version; the commit log's latest record of each table must agree with
//! it (its row count; for a partitioned table, the partitions it wrote are there), or be the
//! previous version's when the kill came between publishing the new data and recording it (the
//! record is written after the publish; the next run records its own commit), or, for a
//! partitioned table still at its previous version, be the record of a publish not yet begun
//! (that record comes first; the next writer rolls the publish forward). A partitioned
//! table whose publish was cut short may show partitions of both versions until the next run
//! rolls it forward (README: commit guarantees); each partition must then be whole, of one
//! version or the other, and such tables are counted. The next `build`
//! must recover the run lock and succeed, leaving every table at the new version, which a full
//! refresh reproduces.
//!
//! The trials run on local disk and on the test S3 server (each trial's warehouse under a prefix
//! of its own, copied from the previous version's). `TIDEMARK_CRASH_TRIALS` and
//! `TIDEMARK_CRASH_S3_TRIALS` set the number of trials (default 5 and 3, what CI runs; the README
//! gives the long runs), `TIDEMARK_CRASH_SEED` the sequence of kill moments.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::Instant;

use serde_json::{json, Value as Json};

use crate::common::s3::{assert_same_tables, read_tables_with_pyarrow, S3Server, BUCKET};
use crate::common::{command, copy_tree, fixture, transcript};

/// Where the trials' warehouses are: on local disk in each project's `warehouse/`, or on the test
/// S3 server under a prefix of each project's own (`crash-<n>`, named in its `profiles.yml`).
#[derive(Clone, Copy)]
enum Place {
    Local,
    S3(&'static S3Server),
}

static PREFIXES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Place {
    /// Points `root` at a warehouse of its own (on S3: a new prefix, holding a copy of what
    /// `from`'s warehouse holds, when given).
    fn own_warehouse(self, root: &Path, from: Option<&Path>) {
        let Place::S3(server) = self else { return };
        let prefix = format!(
            "crash-{}-{}",
            std::process::id(),
            PREFIXES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        if let Some(from) = from {
            let source = self.prefix(from);
            let store = server.client();
            crate::common::s3::runtime().block_on(async {
                use futures::TryStreamExt;
                use object_store::{ObjectStore, ObjectStoreExt};
                let objects: Vec<_> = store
                    .list(Some(&object_store::path::Path::from(source.as_str())))
                    .try_collect()
                    .await
                    .expect("list the warehouse");
                for object in objects {
                    let key = object.location.to_string();
                    let target = format!("{prefix}{}", &key[source.len()..]);
                    store
                        .copy(&object.location, &object_store::path::Path::from(target))
                        .await
                        .expect("copy the warehouse");
                }
            });
        }
        std::fs::write(
            root.join("profiles.yml"),
            format!(
                "incremental:\n  target: s3\n  outputs:\n    s3:\n      type: datafusion\n      warehouse: s3://{BUCKET}/{prefix}\n      storage:\n{}\n",
                server.storage_yaml("        ")
            ),
        )
        .unwrap();
    }

    /// The S3 prefix `root`'s profile names.
    fn prefix(self, root: &Path) -> String {
        let profile = std::fs::read_to_string(root.join("profiles.yml")).unwrap_or_default();
        let start = profile.find(&format!("s3://{BUCKET}/")).expect("an S3 warehouse") + BUCKET.len() + 6;
        profile[start..].lines().next().unwrap_or_default().trim().to_string()
    }

    fn tables(self, root: &Path) -> Json {
        match self {
            Place::Local => read_tables_with_pyarrow(&root.join("warehouse").display().to_string(), None),
            Place::S3(server) => {
                read_tables_with_pyarrow(&format!("s3://{BUCKET}/{}", self.prefix(root)), Some(server))
            }
        }
    }

    /// The newest commit record of `schema.name`, if any.
    fn latest_record(self, root: &Path, schema: &str, name: &str) -> Option<Json> {
        let folder = format!("_tidemark/log/{schema}/{name}");
        let text = match self {
            Place::Local => {
                let mut records: Vec<_> = std::fs::read_dir(root.join("warehouse").join(&folder))
                    .ok()?
                    .flatten()
                    .map(|e| e.path())
                    .collect();
                records.sort();
                std::fs::read(records.last()?).ok()?
            }
            Place::S3(server) => {
                let store = server.client();
                let folder = object_store::path::Path::from(format!("{}/{folder}", self.prefix(root)));
                crate::common::s3::runtime().block_on(async {
                    use futures::TryStreamExt;
                    use object_store::{ObjectStore, ObjectStoreExt};
                    let mut records: Vec<_> = store.list(Some(&folder)).try_collect().await.ok()?;
                    records.sort_by(|a, b| a.location.cmp(&b.location));
                    let latest = records.last()?;
                    store
                        .get(&latest.location)
                        .await
                        .ok()?
                        .bytes()
                        .await
                        .ok()
                        .map(|b| b.to_vec())
                })?
            }
        };
        serde_json::from_slice(&text).ok()
    }

    /// Whether the table's partition folder `partition` holds its data file.
    fn has_partition(self, root: &Path, schema: &str, name: &str, partition: &str) -> bool {
        match self {
            Place::Local => root
                .join("warehouse")
                .join(schema)
                .join(name)
                .join(partition)
                .join("data.parquet")
                .is_file(),
            Place::S3(server) => {
                use object_store::ObjectStoreExt;
                let path = object_store::path::Path::from(format!(
                    "{}/{schema}/{name}/{partition}/data.parquet",
                    self.prefix(root)
                ));
                crate::common::s3::runtime()
                    .block_on(server.client().head(&path))
                    .is_ok()
            }
        }
    }
}

/// The fixture with a seed and a table model added: every kind of commit in one build.
fn project_at_previous_version(place: Place) -> tempfile::TempDir {
    let project = fixture("incremental");
    let root = project.path();
    place.own_warehouse(root, None);
    std::fs::create_dir_all(root.join("seeds")).unwrap();
    std::fs::write(root.join("seeds/learners.csv"), "learner,team\nana,t1\nbo,t2\n").unwrap();
    std::fs::write(
        root.join("models/summary.sql"),
        "{{ config(materialized='table') }}\nselect count(*) as statements, count(distinct learner) as learners, max(day) as last_day\nfrom {{ ref('stg_events') }}\n",
    )
    .unwrap();
    let output = command(root).args(["build"]).output().expect("build");
    assert_eq!(output.status.code(), Some(0), "{}", transcript(&output, root));
    project
}

/// New statements (two more days and a late one) and a changed seed: what the killed run brings.
fn add_new_data(root: &Path) {
    for (from, to) in [
        ("later/day=4/statements.ndjson", "data/events/day=4/statements.ndjson"),
        ("later/day=5/statements.ndjson", "data/events/day=5/statements.ndjson"),
        ("later/day=3/late.ndjson", "data/events/day=3/late.ndjson"),
    ] {
        std::fs::create_dir_all(root.join(to).parent().unwrap()).unwrap();
        std::fs::copy(root.join(from), root.join(to)).unwrap();
    }
    std::fs::write(root.join("seeds/learners.csv"), "learner,team\nana,t1\nbo,t3\ncy,t3\n").unwrap();
}

fn same(a: &Json, b: &Json) -> bool {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let equal = catch_unwind(AssertUnwindSafe(|| {
        assert_same_tables(&json!({ "t": a }), &json!({ "t": b }), "")
    }))
    .is_ok();
    std::panic::set_hook(hook);
    equal
}

/// Whether the commit log's latest record of `table` (`schema.name`) agrees with what is read:
/// its row count for a whole table; for a partitioned one (whose record counts the partitions
/// it wrote), that each partition it wrote is there.
fn log_agrees(place: Place, root: &Path, table: &str, read: &Json) -> Result<(), String> {
    let Some((schema, name)) = table.split_once('.') else {
        return Ok(());
    };
    let Some(record) = place.latest_record(root, schema, name) else {
        return Ok(());
    };
    match record["written"].as_array() {
        Some(written) => {
            for partition in written.iter().filter_map(Json::as_str) {
                if !place.has_partition(root, schema, name, partition) {
                    return Err(format!("its commit log wrote {partition}, which is not there"));
                }
            }
            Ok(())
        }
        None => match (record["rows"].as_u64(), read["rows"].as_u64()) {
            (Some(logged), Some(rows)) if logged != rows => Err(format!("{rows} rows, its commit log says {logged}")),
            _ => Ok(()),
        },
    }
}

/// Whether `table` is a partitioned table whose commit record is written and whose every
/// partition is whole, each as in the previous or the new version (a publish cut short).
fn mixed_whole_partitions(place: Place, root: &Path, table: &str, read: &Json, previous: &Json, new: &Json) -> bool {
    let Some((schema, name)) = table.split_once('.') else {
        return false;
    };
    let Some(record) = place.latest_record(root, schema, name) else {
        return false;
    };
    let Some(partition_by) = record["partition_by"].as_array() else {
        return false;
    };
    let columns: Vec<&str> = read["columns"]
        .as_array()
        .map(|c| c.iter().filter_map(Json::as_str).collect())
        .unwrap_or_default();
    let keys: Vec<usize> = partition_by
        .iter()
        .filter_map(|p| p["name"].as_str())
        .filter_map(|key| columns.iter().position(|c| *c == key))
        .collect();
    // Rows by partition, as text.
    let groups = |version: &Json| {
        let mut groups: std::collections::BTreeMap<String, Vec<String>> = std::collections::BTreeMap::new();
        for row in version["data"].as_array().into_iter().flatten() {
            let key: Vec<String> = keys.iter().map(|k| row[*k].to_string()).collect();
            groups.entry(key.join("/")).or_default().push(row.to_string());
        }
        groups
    };
    let (read, previous, new) = (groups(read), groups(previous), groups(new));
    !keys.is_empty()
        && read
            .iter()
            .all(|(key, rows)| previous.get(key) == Some(rows) || new.get(key) == Some(rows))
}

struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(default)
}

#[test]
fn killed_builds_leave_every_table_at_its_previous_or_its_new_version() {
    let trials = setting("TIDEMARK_CRASH_TRIALS", 5) as usize;
    crash_trials(Place::Local, trials, setting("TIDEMARK_CRASH_SEED", 0x5eed_cafe));
}

#[test]
fn killed_builds_on_s3_leave_every_table_at_its_previous_or_its_new_version() {
    let trials = setting("TIDEMARK_CRASH_S3_TRIALS", 3) as usize;
    let place = Place::S3(S3Server::shared());
    crash_trials(place, trials, setting("TIDEMARK_CRASH_SEED", 0x5eed_cafe));
}

#[allow(clippy::print_stderr, reason = "the trials report their counts")]
fn crash_trials(place: Place, trials: usize, seed: u64) {
    let previous_project = project_at_previous_version(place);
    let previous = place.tables(previous_project.path());

    // The new version: the same warehouse built again with the new data, uninterrupted.
    let new_project = tempfile::tempdir().unwrap();
    copy_tree(previous_project.path(), new_project.path());
    place.own_warehouse(new_project.path(), Some(previous_project.path()));
    add_new_data(new_project.path());
    let clock = Instant::now();
    let output = command(new_project.path()).args(["build"]).output().expect("build");
    let duration = clock.elapsed();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        transcript(&output, new_project.path())
    );
    let new = place.tables(new_project.path());
    // A full refresh gives the same tables.
    let output = command(new_project.path())
        .args(["build", "--full-refresh"])
        .output()
        .expect("build");
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        transcript(&output, new_project.path())
    );
    assert_same_tables(
        &place.tables(new_project.path()),
        &new,
        "full refresh vs the incremental new version",
    );
    let names: Vec<String> = new.as_object().unwrap().keys().cloned().collect();
    assert!(names.len() >= 7, "{names:?}");
    let changing = names.iter().filter(|name| !same(&previous[*name], &new[*name])).count();
    assert!(
        changing >= 6,
        "only {changing} of the tables change between the versions"
    );

    let mut rng = Rng(seed | 1);
    let (mut at_previous, mut at_new, mut lagging, mut pending, mut mixed, mut partial) =
        (0usize, 0usize, 0usize, 0usize, 0usize, Vec::new());
    for trial in 0..trials {
        let project = tempfile::tempdir().unwrap();
        let root = project.path();
        copy_tree(previous_project.path(), root);
        place.own_warehouse(root, Some(previous_project.path()));
        add_new_data(root);
        let mut child = command(root)
            .args(["build", "--no-progress"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("build");
        // Anywhere from the start to a little past the uninterrupted run's end.
        std::thread::sleep(duration.mul_f64(rng.unit() * 1.1));
        let _ = child.kill();
        let _ = child.wait();
        let now = place.tables(root);
        for name in &names {
            let table = &now[name];
            let is_new = if same(table, &previous[name]) {
                at_previous += 1;
                false
            } else if same(table, &new[name]) {
                at_new += 1;
                true
            } else if mixed_whole_partitions(place, root, name, table, &previous[name], &new[name]) {
                // A partitioned publish cut short: every partition whole, of one version or the
                // other; the next run rolls the publish forward (README, commit guarantees).
                mixed += 1;
                continue;
            } else {
                partial.push(format!("trial {trial}: {name} is neither version: {table}"));
                continue;
            };
            if let Err(problem) = log_agrees(place, root, name, table) {
                if is_new && log_agrees(place, root, name, &previous[name]).is_ok() {
                    // Killed between publishing a whole table and writing its record: the log is
                    // one commit behind (the next run records its own).
                    lagging += 1;
                } else if !is_new && problem.contains("commit log wrote") {
                    // Killed between a partitioned table's record and its publish: the record
                    // is ahead; the next writer rolls the publish forward.
                    pending += 1;
                } else {
                    partial.push(format!("trial {trial}: {name}: {problem}"));
                }
            }
        }
        // The next run recovers the lock the killed one left and brings every table to the new version.
        let output = command(root).args(["build"]).output().expect("build");
        assert_eq!(
            output.status.code(),
            Some(0),
            "trial {trial}: {}",
            transcript(&output, root)
        );
        assert_same_tables(
            &place.tables(root),
            &new,
            &format!("trial {trial}: after the recovering run"),
        );
    }
    eprintln!(
        "crash trials{}: {trials} kills, {} tables each: {at_previous} at their previous version, {at_new} at their new one ({lagging} of them with the commit record not yet written, {pending} partitioned ones with the record written and the publish not begun), {mixed} partitioned tables mid-publish (each partition whole), {} partial",
        if matches!(place, Place::S3(_)) { " on S3" } else { "" },
        names.len(),
        partial.len()
    );
    assert!(partial.is_empty(), "{}", partial.join("\n"));
}
