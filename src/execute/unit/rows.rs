//! Rows of a unit test as data: the given rows as Arrow batches, and the expected rows compared
//! with what the model returned, as text, order-insensitive.

use super::*;

/// Rows as text: column → displayed value (None for NULL).
pub(super) type TextRow = BTreeMap<String, Option<String>>;

/// Rows as CSV text with a header (NULL = empty field).
pub(super) fn rows_as_csv(rows: &Rows) -> Result<String, UnitError> {
    match rows {
        Rows::Csv(text) => Ok(text.clone()),
        Rows::Fixture(name) => Err(UnitError::Internal(format!("fixture '{name}' was not read"))),
        Rows::Dicts(items) => {
            let mut columns: Vec<&str> = Vec::new();
            for item in items {
                for key in item.keys() {
                    if !columns.contains(&key.as_str()) {
                        columns.push(key);
                    }
                }
            }
            let field = |value: Option<&Json>| -> String {
                let text = match value {
                    None | Some(Json::Null) => return String::new(),
                    Some(Json::String(text)) => text.clone(),
                    Some(other) => other.to_string(),
                };
                if text.contains([',', '"', '\n', '\r']) || text.is_empty() {
                    format!("\"{}\"", text.replace('"', "\"\""))
                } else {
                    text
                }
            };
            let mut csv = columns.join(",");
            csv.push('\n');
            for item in items {
                let line: Vec<String> = columns.iter().map(|column| field(item.get(*column))).collect();
                csv.push_str(&line.join(","));
                csv.push('\n');
            }
            Ok(csv)
        }
    }
}

/// Given rows as one record batch, types inferred as a CSV reader infers them.
pub(super) fn rows_as_batch(rows: &Rows) -> Result<RecordBatch, UnitError> {
    use datafusion::arrow::csv::reader::Format;
    use datafusion::arrow::csv::ReaderBuilder;
    let csv = rows_as_csv(rows)?;
    let format = Format::default().with_header(true);
    let (schema, _) = format
        .infer_schema(std::io::Cursor::new(csv.as_bytes()), None)
        .map_err(|error| UnitError::Rows(format!("cannot read the rows: {error}")))?;
    let schema = Arc::new(schema);
    let reader = ReaderBuilder::new(schema.clone())
        .with_format(format)
        .build(std::io::Cursor::new(csv.into_bytes()))
        .map_err(|error| UnitError::Rows(format!("cannot read the rows: {error}")))?;
    let batches: Vec<RecordBatch> = reader
        .collect::<Result<_, _>>()
        .map_err(|error| UnitError::Rows(format!("cannot read the rows: {error}")))?;
    datafusion::arrow::compute::concat_batches(&schema, &batches).map_err(UnitError::from)
}

/// Expected rows as column → text (None for NULL), with the column order of their first mention.
pub(super) fn rows_as_text(rows: &Rows) -> Result<(Vec<String>, Vec<TextRow>), UnitError> {
    let batch = rows_as_batch(&match rows {
        // Every expected value is compared as text: read the CSV without inferring types.
        Rows::Dicts(_) | Rows::Csv(_) => Rows::Csv(rows_as_csv(rows)?),
        Rows::Fixture(_) => rows.clone(),
    })?;
    let columns: Vec<String> = batch.schema().fields().iter().map(|f| f.name().clone()).collect();
    Ok((columns, batch_as_text(&[batch])))
}

/// Every row of `batches` as column → displayed value (None for NULL).
pub(super) fn batch_as_text(batches: &[RecordBatch]) -> Vec<TextRow> {
    let options = FormatOptions::default();
    let mut rows = Vec::new();
    for batch in batches {
        let schema = batch.schema();
        let formatters: Vec<(String, &ArrayRef, Option<ArrayFormatter<'_>>)> = schema
            .fields()
            .iter()
            .zip(batch.columns())
            .map(|(field, column)| {
                (
                    field.name().clone(),
                    column,
                    ArrayFormatter::try_new(column.as_ref(), &options).ok(),
                )
            })
            .collect();
        for row in 0..batch.num_rows() {
            let mut values = BTreeMap::new();
            for (name, column, formatter) in &formatters {
                let value = if column.is_null(row) {
                    None
                } else {
                    formatter.as_ref().map(|f| f.value(row).to_string())
                };
                values.insert(name.clone(), value);
            }
            rows.push(values);
        }
    }
    rows
}

/// Whether an expected text equals an actual value.
pub(super) fn same(expected: &Option<String>, actual: &Option<String>) -> bool {
    match (expected, actual) {
        (None, None) => true,
        (Some(e), Some(a)) => {
            if e == a {
                return true;
            }
            if let (Ok(x), Ok(y)) = (e.trim().parse::<f64>(), a.trim().parse::<f64>()) {
                return (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0);
            }
            let normal = |text: &str| text.trim().replace(' ', "T").trim_end_matches('Z').to_string();
            let (e, a) = (normal(e), normal(a));
            e == a
                || a.strip_prefix(&e).is_some_and(|rest| rest == "T00:00:00")
                || e.strip_prefix(&a).is_some_and(|rest| rest == "T00:00:00")
        }
        _ => false,
    }
}

/// Matches expected rows with actual rows on the expected columns; returns the number of
/// unmatched rows on either side and a readable difference.
pub(super) fn compare(
    expected: &(Vec<String>, Vec<TextRow>),
    actual: &[RecordBatch],
) -> Result<(usize, Option<String>), UnitError> {
    let (expected_columns, expected_rows) = expected;
    let actual_rows = batch_as_text(actual);
    let actual_columns: Vec<String> = actual
        .first()
        .map(|batch| batch.schema().fields().iter().map(|f| f.name().clone()).collect())
        .unwrap_or_default();
    if !actual.is_empty() {
        for column in expected_columns {
            if !actual_columns.contains(column) {
                return Err(UnitError::Rows(format!(
                    "the model returns no column '{column}'; it returns {}",
                    actual_columns.join(", ")
                )));
            }
        }
    }
    let columns: Vec<String> = if expected_columns.is_empty() {
        actual_columns.clone()
    } else {
        expected_columns.clone()
    };
    let mut unmatched_actual: Vec<&TextRow> = actual_rows.iter().collect();
    let mut missing = Vec::new();
    for row in expected_rows {
        let position = unmatched_actual.iter().position(|candidate| {
            columns
                .iter()
                .all(|column| same(row.get(column).unwrap_or(&None), candidate.get(column).unwrap_or(&None)))
        });
        match position {
            Some(index) => {
                unmatched_actual.remove(index);
            }
            None => missing.push(row),
        }
    }
    let mismatches = missing.len() + unmatched_actual.len();
    if mismatches == 0 {
        return Ok((0, None));
    }
    let show = |row: &TextRow| -> String {
        columns
            .iter()
            .map(|column| {
                let value = row.get(column).cloned().flatten().unwrap_or_else(|| "NULL".into());
                format!("{column}={value}")
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut text = format!(
        "the model's rows differ from the expected rows ({} expected, {} returned; comparing {}):",
        expected_rows.len(),
        actual_rows.len(),
        columns.join(", ")
    );
    for row in missing {
        text.push_str(&format!("\n  - expected, not returned: {}", show(row)));
    }
    for row in unmatched_actual {
        text.push_str(&format!("\n  + returned, not expected: {}", show(row)));
    }
    Ok((mismatches, Some(text)))
}
