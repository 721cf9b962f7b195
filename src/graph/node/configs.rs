//! What a node's configs say, read and checked: partitions, column types, contracts, time
//! ranges, incremental strategies.

use super::*;

impl Node {
    /// `partition_by` of a table model: the columns its Hive-style partition folders are named by.
    pub fn partition_by(&self) -> Vec<String> {
        string_list(self.config.get("partition_by"))
    }

    /// Checks `partition_by`: its columns name folders, and Hive readers (Spark, pyarrow,
    /// DuckDB's `hive_partitioning` globs, Hive itself) skip folders whose names start with `_`
    /// or `.`, so such a column would make the table look empty to them.
    pub fn check_partition_by(&self) -> Result<(), Diagnostic> {
        for column in self.partition_by() {
            if column.is_empty() || column.starts_with('_') || column.starts_with('.') {
                return Err(Diagnostic::new(format!(
                    "partition_by column '{column}' cannot be a folder name: readers such as Spark, pyarrow and Hive skip folders starting with '_' or '.' (rename the column)"
                )));
            }
        }
        Ok(())
    }

    /// A seed's `column_types` (column → SQL type), in their order.
    pub fn column_types(&self) -> Result<Vec<(String, String)>, Diagnostic> {
        match self.config.get("column_types") {
            None => Ok(Vec::new()),
            Some(Json::Object(types)) => Ok(types
                .iter()
                .map(|(column, data_type)| {
                    let data_type = data_type
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| data_type.to_string());
                    (column.clone(), data_type)
                })
                .collect()),
            Some(_) => Err(Diagnostic::new("column_types must map column names to SQL types")),
        }
    }

    /// The SQL types declared for the node's columns: a seed's `column_types`, else the
    /// `data_type` of its columns in property files.
    pub fn declared_types(&self) -> Vec<(String, String)> {
        let seed_types = self.column_types().unwrap_or_default();
        if !seed_types.is_empty() {
            return seed_types;
        }
        self.columns
            .iter()
            .filter_map(|column| {
                column
                    .data_type
                    .clone()
                    .map(|data_type| (column.name.clone(), data_type))
            })
            .collect()
    }

    /// Whether `contract: {enforced: true}` is configured.
    pub fn contract_enforced(&self) -> bool {
        self.config
            .get("contract")
            .and_then(|contract| contract.get("enforced"))
            .and_then(Json::as_bool)
            .unwrap_or(false)
    }

    /// An enforced contract declares every column with a `data_type`, on a table or
    /// incremental model.
    pub fn check_contract(&self) -> Result<(), Diagnostic> {
        if !self.contract_enforced() {
            return Ok(());
        }
        if !matches!(self.materialized, Materialization::Table | Materialization::Incremental) {
            return Err(Diagnostic::new(format!(
                "contract: {{enforced: true}} applies to table and incremental models, not {} models",
                self.materialized.as_str()
            )));
        }
        if self.columns.is_empty() {
            return Err(
                "an enforced contract needs the model's columns: declare them under columns: with a data_type each"
                    .into(),
            );
        }
        let untyped: Vec<&str> = self
            .columns
            .iter()
            .filter(|column| column.data_type.is_none())
            .map(|column| column.name.as_str())
            .collect();
        if !untyped.is_empty() {
            return Err(Diagnostic::new(format!(
                "an enforced contract needs a data_type for every column; missing for {}",
                untyped.join(", ")
            )));
        }
        Ok(())
    }

    /// `event_time`: the column that places the model's rows in time.
    pub fn event_time(&self) -> Option<String> {
        self.config
            .get("event_time")
            .and_then(serde_json::Value::as_str)
            .map(str::to_string)
    }

    /// `lookback_days`: how many days before its range a time-range run reads its inputs from
    /// (`Ok(None)`: `all`, the whole history; default 0).
    pub fn lookback_days(&self) -> Result<Option<i64>, Diagnostic> {
        match self.config.get("lookback_days") {
            None => Ok(Some(0)),
            Some(serde_json::Value::Number(n)) if n.as_i64().is_some_and(|n| n >= 0) => Ok(n.as_i64()),
            Some(serde_json::Value::String(text)) if text == "all" => Ok(None),
            Some(other) => Err(Diagnostic::new(format!(
                "lookback_days must be a number of days or 'all', not {other}"
            ))),
        }
    }

    /// How an incremental model adds its new rows (validated when the graph is built).
    pub fn incremental(&self) -> Result<Incremental, Diagnostic> {
        let unique_key = string_list(self.config.get("unique_key"));
        let partition_by = self.partition_by();
        let strategy = match self
            .config
            .get("incremental_strategy")
            .and_then(serde_json::Value::as_str)
        {
            None if !unique_key.is_empty() => Strategy::Merge,
            None => Strategy::Append,
            Some("append") => Strategy::Append,
            Some("merge") => Strategy::Merge,
            Some("delete+insert") => Strategy::DeleteInsert,
            Some("insert_overwrite") => Strategy::InsertOverwrite,
            Some(other) => {
                return Err(Diagnostic::new(format!(
                    "incremental_strategy '{other}' is not append, merge, delete+insert or insert_overwrite"
                )))
            }
        };
        if matches!(strategy, Strategy::Merge | Strategy::DeleteInsert) && unique_key.is_empty() {
            return Err(Diagnostic::new(format!(
                "incremental_strategy '{}' needs a unique_key",
                strategy.as_str()
            )));
        }
        if strategy == Strategy::InsertOverwrite && partition_by.is_empty() {
            return Err(Diagnostic::new(
                "incremental_strategy 'insert_overwrite' needs partition_by",
            ));
        }
        let on_schema_change = match self.config.get("on_schema_change").and_then(serde_json::Value::as_str) {
            None | Some("ignore") => SchemaChange::Ignore,
            Some("fail") => SchemaChange::Fail,
            Some("append_new_columns") => SchemaChange::AppendNewColumns,
            Some("sync_all_columns") => SchemaChange::SyncAllColumns,
            Some(other) => {
                return Err(Diagnostic::new(format!(
                    "on_schema_change '{other}' is not ignore, fail, append_new_columns or sync_all_columns"
                )))
            }
        };
        self.lookback_days()?;
        Ok(Incremental {
            strategy,
            unique_key,
            on_schema_change,
            full_refresh: self.config.get("full_refresh").and_then(serde_json::Value::as_bool),
        })
    }
}
