//! Model contracts (`contract: {enforced: true}`): the columns a model returns must be exactly
//! its declared columns, each of its declared `data_type`. Checked on the planned query before
//! anything is written; the table's columns follow the declared order.

use datafusion::arrow::datatypes::DataType;
use datafusion::dataframe::DataFrame;
use datafusion::prelude::SessionContext;

use super::ExecuteError;
use crate::graph::Node;
use crate::template::quote_identifier;

/// Checks `frame` against `node`'s enforced contract and orders its columns as declared; a
/// mismatch is an error listing every difference.
pub(super) async fn enforce(node: &Node, frame: DataFrame) -> Result<DataFrame, ExecuteError> {
    if !node.contract_enforced() {
        return Ok(frame);
    }
    let declared = declared_types(node).await?;
    let returned: Vec<(String, DataType)> = frame
        .schema()
        .fields()
        .iter()
        .map(|field| (field.name().clone(), field.data_type().clone()))
        .collect();
    let mut differences = Vec::new();
    for (name, sql_type, data_type) in &declared {
        match returned.iter().find(|(column, _)| column == name) {
            None => differences.push(format!("  {name}: declared {sql_type}, not returned by the model")),
            Some((_, actual)) if !same_type(actual, data_type) => differences.push(format!(
                "  {name}: declared {sql_type} ({data_type}), the model returns {actual}"
            )),
            Some(_) => {}
        }
    }
    for (name, actual) in &returned {
        if !declared.iter().any(|(column, _, _)| column == name) {
            differences.push(format!(
                "  {name}: returned by the model ({actual}), not declared in the contract"
            ));
        }
    }
    if !differences.is_empty() {
        return Err(ExecuteError::Setup(format!(
            "the contract of model '{}' ({}) is not met:\n{}\n  fix the model's SQL or its columns: (name and data_type) in the property file",
            node.name,
            node.path,
            differences.join("\n")
        )));
    }
    let columns: Vec<String> = declared.iter().map(|(name, _, _)| quote_identifier(name)).collect();
    let columns: Vec<&str> = columns.iter().map(String::as_str).collect();
    frame
        .select_exprs(&columns)
        .map_err(|error| ExecuteError::DataFusion(error.strip_backtrace()))
}

/// Declared columns: name, the SQL type as written, its Arrow type (planned by DataFusion).
async fn declared_types(node: &Node) -> Result<Vec<(String, String, DataType)>, ExecuteError> {
    let mut declared = Vec::new();
    let ctx = SessionContext::new();
    for column in &node.columns {
        let sql_type = column.data_type.clone().unwrap_or_default();
        let frame = ctx
            .sql(&format!("select cast(null as {sql_type}) as x"))
            .await
            .map_err(|error| {
                ExecuteError::Setup(format!(
                    "model '{}': column '{}' has data_type '{sql_type}', which is not a SQL type DataFusion knows: {}",
                    node.name,
                    column.name,
                    error.strip_backtrace()
                ))
            })?;
        let data_type = frame.schema().field(0).data_type().clone();
        declared.push((column.name.clone(), sql_type, data_type));
    }
    Ok(declared)
}

/// Types are the same, counting string and binary views as their plain types.
fn same_type(actual: &DataType, declared: &DataType) -> bool {
    let plain = |data_type: &DataType| match data_type {
        DataType::Utf8View | DataType::LargeUtf8 => DataType::Utf8,
        DataType::BinaryView | DataType::LargeBinary => DataType::Binary,
        other => other.clone(),
    };
    plain(actual) == plain(declared)
}
