//! Snapshots: the query of a type-2 slowly changing dimension, as dbt's snapshots build it.
//!
//! The table holds every version of each row (by `unique_key`) with `dbt_scd_id` (a hash of the
//! key and the version's time), `dbt_updated_at`, `dbt_valid_from` and `dbt_valid_to` (NULL for
//! the current version). A run compares the snapshot's query with the current versions:
//! - `timestamp`: a row changed when its `updated_at` is later than its current version's
//!   `dbt_valid_from`; the new version is valid from that `updated_at`, which closes the old one;
//! - `check`: a row changed when a `check_cols` column differs (NULLs compare equal); the new
//!   version is valid from the run's time;
//! - a new key is a new version; with `hard_deletes: invalidate` a key gone from the query closes
//!   its current version at the run's time;
//! - with `hard_deletes: new_record` it also opens a deletion record (a copy of the closed
//!   version, `dbt_is_deleted = 'True'`, valid from the run's time), and a key that comes back
//!   closes its deletion record with a new version; every version has `dbt_is_deleted`;
//! - `dbt_valid_to_current` is the `dbt_valid_to` of current versions instead of NULL.
//!
//! The whole table is rewritten and committed atomically, like any table: a failed or killed
//! run leaves the previous history readable and whole.

use super::{ExecuteError, Session};
use crate::graph::{HardDeletes, Node, SnapshotSpec, SnapshotStrategy};
use crate::relation::{quote_identifier, RelationName};

/// The type of the snapshot's time columns: microseconds, as dbt-duckdb writes them, which
/// also hold far dates such as a `dbt_valid_to_current` of 9999-12-31 (nanoseconds end in 2262).
const MICROS: &str = "Timestamp(Microsecond, None)";

/// The columns dbt's snapshots add.
const META: [&str; 5] = [
    "dbt_scd_id",
    "dbt_updated_at",
    "dbt_valid_from",
    "dbt_valid_to",
    "dbt_is_deleted",
];

/// The query of the snapshot's new table: its history so far (when `exists`) and this run's
/// versions of `source_sql`'s rows.
pub(super) async fn sql(
    session: &Session,
    node: &Node,
    relation: &RelationName,
    spec: &SnapshotSpec,
    source_sql: &str,
    exists: bool,
) -> Result<String, ExecuteError> {
    let planned = session
        .ctx
        .sql(source_sql)
        .await
        .map_err(|error| super::write::sql_error(session, node, error.strip_backtrace()))?;
    let columns: Vec<String> = planned
        .schema()
        .fields()
        .iter()
        .map(|field| field.name().clone())
        .collect();
    for column in &columns {
        if META.contains(&column.as_str()) {
            return Err(ExecuteError::Setup(format!(
                "snapshot '{}': its query has a column named {column}, which the snapshot adds",
                node.name
            )));
        }
    }
    for key in &spec.unique_key {
        if !columns.contains(key) {
            return Err(ExecuteError::Setup(format!(
                "snapshot '{}': unique_key column '{key}' is not a column of its query ({})",
                node.name,
                columns.join(", ")
            )));
        }
    }
    let now = format!(
        "arrow_cast('{}', '{MICROS}')",
        chrono::Utc::now().naive_utc().format("%Y-%m-%d %H:%M:%S%.6f")
    );
    let quoted = |alias: &str, names: &[String]| -> Vec<String> {
        names
            .iter()
            .map(|name| format!("{alias}.{}", quote_identifier(name)))
            .collect()
    };
    let version_time = |alias: &str| match &spec.strategy {
        SnapshotStrategy::Timestamp { updated_at } => {
            format!(
                "arrow_cast(cast({alias}.{} as timestamp), '{MICROS}')",
                quote_identifier(updated_at)
            )
        }
        SnapshotStrategy::Check { .. } => now.clone(),
    };
    // dbt's snapshot_hash_arguments: md5 of the key columns and the version time, '|'-joined
    // (the time written as DuckDB writes a whole-second timestamp, so the ids match dbt-duckdb's).
    let hash = |alias: &str| {
        let parts: Vec<String> = quoted(alias, &spec.unique_key)
            .into_iter()
            .map(|part| format!("coalesce(cast({part} as varchar), '')"))
            .chain(std::iter::once(format!(
                "coalesce(to_char({alias}.__tidemark_version, '%Y-%m-%d %H:%M:%S'), '')"
            )))
            .collect();
        format!("md5({})", parts.join(" || '|' || "))
    };
    let key_match = |left: &str, right: &str| {
        spec.unique_key
            .iter()
            .map(|key| format!("{left}.{q} = {right}.{q}", q = quote_identifier(key)))
            .collect::<Vec<_>>()
            .join(" and ")
    };
    let new_record = spec.hard_deletes == HardDeletes::NewRecord;
    let table = relation.rendered.as_str();
    // A table that has `dbt_is_deleted` keeps it, also once `hard_deletes` is no longer
    // `new_record` (its deletion records stay what they are).
    let has_deleted = exists && has_deleted_column(session, node, table).await?;
    let with_deleted = new_record || has_deleted;
    // What `dbt_valid_to` of a current version is: NULL, or `dbt_valid_to_current`.
    let open = match &spec.valid_to_current {
        Some(value) => format!("arrow_cast({value}, '{MICROS}')"),
        None => format!("arrow_cast(null, '{MICROS}')"),
    };
    let is_current = |column: &str| match &spec.valid_to_current {
        Some(_) => format!("{column} is null or {column} = {open}"),
        None => format!("{column} is null"),
    };
    let source_list = quoted("s", &columns).join(", ");
    let new_versions = format!(
        "select {source_list}, {hash} as dbt_scd_id, s.__tidemark_version as dbt_updated_at, \
         s.__tidemark_version as dbt_valid_from, {open} as dbt_valid_to{deleted}",
        hash = hash("s"),
        deleted = if with_deleted {
            ", 'False' as dbt_is_deleted"
        } else {
            ""
        },
    );
    if !exists {
        return Ok(format!(
            "{new_versions}\nfrom (select source_data.*, {} as __tidemark_version from (\n{source_sql}\n) as source_data) as s",
            version_time("source_data")
        ));
    }
    let changed_condition = match &spec.strategy {
        SnapshotStrategy::Timestamp { .. } => format!("c.dbt_valid_from < {}", version_time("s")),
        SnapshotStrategy::Check { columns: checked } => {
            let checked = checked.clone().unwrap_or_else(|| columns.clone());
            checked
                .iter()
                .map(|column| format!("s.{q} is distinct from c.{q}", q = quote_identifier(column)))
                .collect::<Vec<_>>()
                .join(" or ")
        }
    };
    // A key back after its deletion record opens a new version, changed or not.
    let changed_condition = match new_record && has_deleted {
        true => format!("({changed_condition}) or c.dbt_is_deleted = 'True'"),
        false => changed_condition,
    };
    // `dbt_is_deleted` of the versions already kept ('False' when the table predates it).
    let kept_deleted = |alias: &str| match (with_deleted, has_deleted) {
        (false, _) => String::new(),
        (true, true) => format!(", {alias}.dbt_is_deleted"),
        (true, false) => ", 'False' as dbt_is_deleted".to_string(),
    };
    let history_deleted = kept_deleted("h");
    let current_deleted = kept_deleted("c");
    let keys_of = |alias: &str| quoted(alias, &spec.unique_key).join(", ");
    // Keys gone from the query whose current version is not already their deletion record.
    let gone = format!(
        "gone as (\n    select {}, {now} as __tidemark_gone from current_rows c left anti join source_data s on {}{}\n)",
        keys_of("c"),
        key_match("c", "s"),
        if new_record && has_deleted {
            " where coalesce(c.dbt_is_deleted, 'False') <> 'True'"
        } else {
            ""
        }
    );
    let (gone_cte, closing) = match spec.hard_deletes {
        HardDeletes::Ignore => (
            String::new(),
            format!(
                "coalesce(ch.__tidemark_version, c.dbt_valid_to)\nfrom current_rows c\nleft join (select {}, __tidemark_version from changed) ch on {}",
                keys_of("changed"),
                key_match("c", "ch"),
            ),
        ),
        HardDeletes::Invalidate | HardDeletes::NewRecord => (
            format!(",\n{gone}"),
            format!(
                "coalesce(ch.__tidemark_version, g.__tidemark_gone, c.dbt_valid_to)\nfrom current_rows c\n\
                 left join (select {}, __tidemark_version from changed) ch on {}\n\
                 left join gone g on {}",
                keys_of("changed"),
                key_match("c", "ch"),
                key_match("c", "g"),
            ),
        ),
    };
    // new_record: the deletion record of each gone key, a copy of its closed version.
    let deletion_records = match new_record {
        true => format!(
            "\nunion all\nselect {current_list}, md5(coalesce(cast(c.dbt_scd_id as varchar), '') || '|' || \
             coalesce(to_char({now}, '%Y-%m-%d %H:%M:%S'), '')), {now}, {now}, {open}, 'True'\n\
             from current_rows c join gone g on {}",
            key_match("c", "g"),
            current_list = quoted("c", &columns).join(", "),
            open = open,
        ),
        false => String::new(),
    };
    let history_list = quoted("h", &columns).join(", ");
    let current_list = quoted("c", &columns).join(", ");
    Ok(format!(
        "with source_data as (\n{source_sql}\n),\n\
         snapshotted as (select * from {table}),\n\
         current_rows as (select * from snapshotted where {current}),\n\
         changed as (\n    select s.*, {version} as __tidemark_version from source_data s\n    join current_rows c on {key_sc}\n    where {changed_condition}\n),\n\
         fresh as (\n    select s.*, {version} as __tidemark_version from source_data s\n    left anti join current_rows c on {key_sc}\n){gone_cte}\n\
         select {history_list}, h.dbt_scd_id, h.dbt_updated_at, h.dbt_valid_from, h.dbt_valid_to{history_deleted}\nfrom snapshotted h where not ({history_current})\n\
         union all\n\
         select {current_list}, c.dbt_scd_id, c.dbt_updated_at, c.dbt_valid_from, {closing_with_deleted}\n\
         union all\n\
         {new_versions}\nfrom (select * from changed union all select * from fresh) s{deletion_records}",
        current = is_current("dbt_valid_to"),
        history_current = is_current("h.dbt_valid_to"),
        closing_with_deleted = closing.replacen("\nfrom current_rows c", &format!("{current_deleted}\nfrom current_rows c"), 1),
        version = version_time("s"),
        key_sc = key_match("s", "c"),
    ))
}

/// Whether the snapshot's table already has the `dbt_is_deleted` column.
async fn has_deleted_column(session: &Session, node: &Node, table: &str) -> Result<bool, ExecuteError> {
    let planned = session
        .ctx
        .sql(&format!("select * from {table} limit 0"))
        .await
        .map_err(|error| super::write::sql_error(session, node, error.strip_backtrace()))?;
    Ok(planned
        .schema()
        .fields()
        .iter()
        .any(|field| field.name() == "dbt_is_deleted"))
}
