//! `target/catalog.json`: what the warehouse holds, in dbt's catalog shape, so that tools that
//! read a dbt catalog (docs sites, lineage and data-catalog tools) read tidemark's too.
//!
//! ```text
//! { "metadata": { "dbt_schema_version", "dbt_version", "tidemark_version", "generated_at", "invocation_id", "env" },
//!   "nodes":   { "<unique_id>": { "metadata": { "type", "schema", "name", "database", "comment", "owner" },
//!                                 "columns":  { "<name>": { "type", "index", "name", "comment" } },
//!                                 "stats":    { "row_count", "bytes", "has_stats": { "id", "label", "value", "include", "description" } },
//!                                 "unique_id" } },
//!   "sources": { "<unique_id>": ... the same ... },
//!   "errors": null or [ "what could not be read" ] }
//! ```
//!
//! `type` is `BASE TABLE` (Parquet in the warehouse), `VIEW` or `EXTERNAL` (a source's files);
//! column types are SQL names (`VARCHAR`, `BIGINT`, `DOUBLE`, `DATE`, ...) as DataFusion reads
//! the data, partition columns included; `index` counts from 1.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::execute::catalog::{TableFacts, TableKind};
use crate::graph::Graph;

#[derive(Debug, Serialize)]
pub struct Catalog {
    pub metadata: CatalogMetadata,
    pub nodes: BTreeMap<String, CatalogTable>,
    pub sources: BTreeMap<String, CatalogTable>,
    pub errors: Option<Vec<String>>,
}

#[derive(Debug, Serialize)]
pub struct CatalogMetadata {
    pub dbt_schema_version: String,
    /// The tool that wrote it (dbt's readers show this field).
    pub dbt_version: String,
    pub tidemark_version: String,
    pub generated_at: String,
    pub invocation_id: String,
    pub env: BTreeMap<String, String>,
}

#[derive(Debug, Serialize)]
pub struct CatalogTable {
    pub metadata: TableMetadata,
    pub columns: BTreeMap<String, CatalogColumn>,
    pub stats: BTreeMap<String, Stat>,
    pub unique_id: String,
}

#[derive(Debug, Serialize)]
pub struct TableMetadata {
    #[serde(rename = "type")]
    pub kind: String,
    pub schema: String,
    pub name: String,
    pub database: Option<String>,
    pub comment: Option<String>,
    pub owner: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct CatalogColumn {
    #[serde(rename = "type")]
    pub data_type: String,
    pub index: usize,
    pub name: String,
    pub comment: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Stat {
    pub id: String,
    pub label: String,
    pub value: Json,
    pub include: bool,
    pub description: String,
}

type Json = serde_json::Value;

fn stat(id: &str, label: &str, value: Json, include: bool, description: &str) -> (String, Stat) {
    (
        id.to_string(),
        Stat {
            id: id.to_string(),
            label: label.to_string(),
            value,
            include,
            description: description.to_string(),
        },
    )
}

/// The catalog of `tables` (from [`crate::execute::catalog::WarehouseReader::tables`]).
pub fn catalog(graph: &Graph, tables: &[TableFacts], problems: &[String], invocation_id: &str) -> Catalog {
    let metadata = super::invocation_metadata(invocation_id);
    let mut nodes = BTreeMap::new();
    let mut sources = BTreeMap::new();
    for facts in tables {
        let Some(node) = graph.nodes.get(&facts.unique_id) else {
            continue;
        };
        let Some(relation) = node.relation() else {
            continue;
        };
        let columns = facts
            .columns
            .iter()
            .enumerate()
            .map(|(index, (name, data_type))| {
                let comment = node
                    .columns
                    .iter()
                    .find(|column| column.name.eq_ignore_ascii_case(name))
                    .map(|column| column.description.clone())
                    .filter(|text| !text.is_empty());
                (
                    name.clone(),
                    CatalogColumn {
                        data_type: data_type.clone(),
                        index: index + 1,
                        name: name.clone(),
                        comment,
                    },
                )
            })
            .collect();
        let mut stats: BTreeMap<String, Stat> = BTreeMap::new();
        let has_stats = facts.rows.is_some() || facts.bytes.is_some();
        stats.extend([stat(
            "has_stats",
            "Has Stats?",
            Json::Bool(has_stats),
            false,
            "Indicates whether there are statistics for this table",
        )]);
        if let Some(rows) = facts.rows {
            stats.extend([stat(
                "row_count",
                "Row count",
                Json::from(rows),
                true,
                "Rows in the table",
            )]);
        }
        if let Some(bytes) = facts.bytes {
            stats.extend([stat(
                "bytes",
                "Approximate size",
                Json::from(bytes),
                true,
                "Bytes of the table's Parquet files",
            )]);
        }
        let table = CatalogTable {
            metadata: TableMetadata {
                kind: match facts.kind {
                    TableKind::Table => "BASE TABLE",
                    TableKind::View => "VIEW",
                    TableKind::Source => "EXTERNAL",
                }
                .to_string(),
                schema: relation.schema.clone(),
                name: relation.identifier.clone(),
                database: None,
                comment: Some(node.description.clone()).filter(|text| !text.is_empty()),
                owner: None,
            },
            columns,
            stats,
            unique_id: facts.unique_id.clone(),
        };
        match facts.kind {
            TableKind::Source => sources.insert(facts.unique_id.clone(), table),
            _ => nodes.insert(facts.unique_id.clone(), table),
        };
    }
    Catalog {
        metadata: CatalogMetadata {
            dbt_schema_version: "https://schemas.getdbt.com/dbt/catalog/v1.json".to_string(),
            dbt_version: format!("tidemark {}", metadata.tidemark_version),
            tidemark_version: metadata.tidemark_version,
            generated_at: metadata.generated_at,
            invocation_id: metadata.invocation_id,
            env: BTreeMap::new(),
        },
        nodes,
        sources,
        errors: (!problems.is_empty()).then(|| problems.to_vec()),
    }
}

/// `target/duckdb_views.sql`: one typed DuckDB view per table of the warehouse folder, so
/// `duckdb -init target/duckdb_views.sql` (or `.read`) gives every table with its types.
/// Partitioned tables read their folders with `hive_partitioning` and the partition columns'
/// types from the catalog (`hive_types`).
pub fn duckdb_views(graph: &Graph, tables: &[TableFacts], warehouse: &str) -> String {
    let mut sql = format!(
        "-- Typed DuckDB views of the tidemark warehouse {warehouse} (written by `tidemark docs generate`).\n\
         -- Run `duckdb -init target/duckdb_views.sql`, or `.read target/duckdb_views.sql` in a DuckDB shell.\n"
    );
    let quote = crate::relation::quote_identifier;
    let literal = |text: &str| format!("'{}'", text.replace('\'', "''"));
    let mut schemas = std::collections::BTreeSet::new();
    for facts in tables.iter().filter(|facts| facts.kind == TableKind::Table) {
        let Some(relation) = graph.nodes.get(&facts.unique_id).and_then(|node| node.relation()) else {
            continue;
        };
        if schemas.insert(relation.schema.clone()) {
            sql.push_str(&format!("create schema if not exists {};\n", quote(&relation.schema)));
        }
        let folder = format!("{warehouse}/{}/{}", relation.schema, relation.identifier);
        let partition_by = graph.nodes[&facts.unique_id].partition_by();
        let reader = if partition_by.is_empty() {
            format!("read_parquet({})", literal(&format!("{folder}/data.parquet")))
        } else {
            let types: Vec<String> = partition_by
                .iter()
                .filter_map(|column| {
                    let data_type = facts.columns.iter().find(|(name, _)| name == column)?.1.clone();
                    Some(format!("{}: {}", literal(column), literal(&data_type)))
                })
                .collect();
            format!(
                "read_parquet({}, hive_partitioning = true, hive_types = {{{}}})",
                // One folder level per partition column (`period_end=…/data.parquet`).
                literal(&format!("{folder}/{}data.parquet", "*/".repeat(partition_by.len()))),
                types.join(", ")
            )
        };
        let columns: Vec<String> = facts
            .columns
            .iter()
            .map(|(name, data_type)| {
                // Casts only to the SQL types both engines name alike; the rest as DuckDB reads them.
                let portable = data_type.starts_with("DECIMAL(")
                    || [
                        "BOOLEAN",
                        "SMALLINT",
                        "INTEGER",
                        "BIGINT",
                        "REAL",
                        "DOUBLE",
                        "VARCHAR",
                        "DATE",
                        "TIMESTAMP",
                        "TIMESTAMP WITH TIME ZONE",
                    ]
                    .contains(&data_type.as_str());
                match portable {
                    true => format!("cast({} as {data_type}) as {}", quote(name), quote(name)),
                    false => quote(name),
                }
            })
            .collect();
        sql.push_str(&format!(
            "create or replace view {}.{} as select {} from {reader};\n",
            quote(&relation.schema),
            quote(&relation.identifier),
            columns.join(", ")
        ));
    }
    sql
}
