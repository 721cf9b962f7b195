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
//!   its current version at the run's time.
//!
//! The whole table is rewritten and committed atomically, like any table: a failed or killed
//! run leaves the previous history readable and whole.

use super::{ExecuteError, Session};
use crate::graph::{Node, SnapshotSpec, SnapshotStrategy};
use crate::relation::{quote_identifier, RelationName};

/// The columns dbt's snapshots add.
const META: [&str; 4] = ["dbt_scd_id", "dbt_updated_at", "dbt_valid_from", "dbt_valid_to"];

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
        "cast('{}' as timestamp)",
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
            format!("cast({alias}.{} as timestamp)", quote_identifier(updated_at))
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
    let source_list = quoted("s", &columns).join(", ");
    let new_versions = format!(
        "select {source_list}, {hash} as dbt_scd_id, s.__tidemark_version as dbt_updated_at, \
         s.__tidemark_version as dbt_valid_from, cast(null as timestamp) as dbt_valid_to",
        hash = hash("s")
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
    let keys_of = |alias: &str| quoted(alias, &spec.unique_key).join(", ");
    let closing = match spec.invalidate_deletes {
        true => format!(
            "coalesce(ch.__tidemark_version, g.__tidemark_gone)\nfrom current_rows c\n\
             left join (select {}, __tidemark_version from changed) ch on {}\n\
             left join (select {}, {now} as __tidemark_gone from current_rows c left anti join source_data s on {}) g on {}",
            keys_of("changed"),
            key_match("c", "ch"),
            keys_of("c"),
            key_match("c", "s"),
            key_match("c", "g"),
        ),
        false => format!(
            "ch.__tidemark_version\nfrom current_rows c\nleft join (select {}, __tidemark_version from changed) ch on {}",
            keys_of("changed"),
            key_match("c", "ch"),
        ),
    };
    let history_list = quoted("h", &columns).join(", ");
    let current_list = quoted("c", &columns).join(", ");
    Ok(format!(
        "with source_data as (\n{source_sql}\n),\n\
         snapshotted as (select * from {table}),\n\
         current_rows as (select * from snapshotted where dbt_valid_to is null),\n\
         changed as (\n    select s.*, {version} as __tidemark_version from source_data s\n    join current_rows c on {key_sc}\n    where {changed_condition}\n),\n\
         fresh as (\n    select s.*, {version} as __tidemark_version from source_data s\n    left anti join current_rows c on {key_sc}\n)\n\
         select {history_list}, h.dbt_scd_id, h.dbt_updated_at, h.dbt_valid_from, h.dbt_valid_to\nfrom snapshotted h where h.dbt_valid_to is not null\n\
         union all\n\
         select {current_list}, c.dbt_scd_id, c.dbt_updated_at, c.dbt_valid_from, {closing}\n\
         union all\n\
         {new_versions}\nfrom (select * from changed union all select * from fresh) s",
        table = relation.rendered,
        version = version_time("s"),
        key_sc = key_match("s", "c"),
    ))
}
