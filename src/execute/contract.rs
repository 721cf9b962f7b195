//! Model contracts (`contract: {enforced: true}`): the columns a model returns must be exactly
//! its declared columns, each of its declared `data_type`. Checked on the planned query before
//! anything is written; the table's columns follow the declared order.

use datafusion::arrow::datatypes::DataType;
use datafusion::dataframe::DataFrame;
use datafusion::prelude::SessionContext;

use super::ExecuteError;
use crate::graph::Node;
use crate::relation::quote_identifier;

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
    let declared = node.declared_types();
    let types = arrow_types(&declared).await.map_err(|(column, sql_type, message)| {
        ExecuteError::Setup(format!(
            "model '{}': column '{column}' has data_type '{sql_type}', which is not a SQL type DataFusion knows: {message}",
            node.name
        ))
    })?;
    Ok(declared
        .into_iter()
        .zip(types)
        .map(|((name, sql_type), data_type)| (name, sql_type, data_type))
        .collect())
}

/// The Arrow type of each SQL type (`cast(null as <type>)` planned by DataFusion; nothing runs).
/// An unknown type is `Err((column, type, message))`.
pub(super) async fn arrow_types(declared: &[(String, String)]) -> Result<Vec<DataType>, (String, String, String)> {
    let ctx = SessionContext::new();
    let mut types = Vec::with_capacity(declared.len());
    for (column, sql_type) in declared {
        let frame = ctx
            .sql(&format!("select cast(null as {sql_type}) as x"))
            .await
            .map_err(|error| (column.clone(), sql_type.clone(), error.strip_backtrace()))?;
        types.push(frame.schema().field(0).data_type().clone());
    }
    Ok(types)
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
