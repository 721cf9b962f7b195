//! Rows of a unit test as data: the given rows as Arrow batches, and the expected rows compared
//! with what the model returned, as text, order-insensitive.

use super::*;

/// Rows as text: column → displayed value (None for NULL).
pub(super) type TextRow = BTreeMap<String, Option<String>>;

/// Given rows as one record batch: dict rows through arrow-json (see [`dicts_as_batch`]), CSV
/// rows (`format: csv`, fixtures) with types inferred as a CSV reader infers them.
pub(super) fn rows_as_batch(rows: &Rows) -> Result<RecordBatch, UnitError> {
    use datafusion::arrow::csv::reader::Format;
    use datafusion::arrow::csv::ReaderBuilder;
    let csv = match rows {
        Rows::Dicts(items) => return dicts_as_batch(items),
        Rows::Csv(text) => text.clone(),
        Rows::Fixture(name) => return Err(UnitError::Internal(format!("fixture '{name}' was not read"))),
    };
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

/// Dict rows as one record batch, columns in the order of their first mention. Values keep
/// their JSON types (arrow-json: whole numbers Int64, numbers Float64 once any has a fraction,
/// booleans, strings stay strings, so `'007'` keeps its zeros); a column of nothing but NULLs
/// is text. A text column whose every value is an ISO date becomes a date, and one whose every
/// value is an ISO timestamp a timestamp, as a CSV reader would type them; the input's own
/// column types, when known, are applied afterwards.
pub(super) fn dicts_as_batch(items: &[serde_json::Map<String, Json>]) -> Result<RecordBatch, UnitError> {
    use datafusion::arrow::datatypes::{DataType, TimeUnit};
    use datafusion::arrow::json::reader::{infer_json_schema_from_iterator, ReaderBuilder};
    let unreadable =
        |error: datafusion::arrow::error::ArrowError| UnitError::Rows(format!("cannot read the rows: {error}"));
    let mut order: Vec<&str> = Vec::new();
    for item in items {
        for key in item.keys() {
            if !order.contains(&key.as_str()) {
                order.push(key);
            }
        }
    }
    let values: Vec<Json> = items.iter().cloned().map(Json::Object).collect();
    let inferred = infer_json_schema_from_iterator(values.iter().map(Ok)).map_err(unreadable)?;
    let fields: Vec<Field> = order
        .iter()
        .filter_map(|name| inferred.field_with_name(name).ok())
        .map(|field| match field.data_type() {
            DataType::Null => Field::new(field.name(), DataType::Utf8, true),
            other => Field::new(field.name(), other.clone(), true),
        })
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let mut decoder = ReaderBuilder::new(schema.clone())
        .with_batch_size(items.len().max(1))
        .build_decoder()
        .map_err(unreadable)?;
    decoder.serialize(&values).map_err(unreadable)?;
    let batch = decoder
        .flush()
        .map_err(unreadable)?
        .unwrap_or_else(|| RecordBatch::new_empty(schema.clone()));
    // Dates and timestamps written as text.
    let mut columns: Vec<ArrayRef> = Vec::new();
    let mut fields: Vec<Field> = Vec::new();
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        let temporal = match column.as_any().downcast_ref::<datafusion::arrow::array::StringArray>() {
            Some(text) if text.null_count() < text.len() => {
                let every = |test: fn(&str) -> bool| text.iter().flatten().all(test);
                if every(is_iso_date) {
                    Some(DataType::Date32)
                } else if every(is_iso_timestamp) {
                    Some(DataType::Timestamp(TimeUnit::Nanosecond, None))
                } else {
                    None
                }
            }
            _ => None,
        };
        match temporal {
            Some(data_type) => {
                columns.push(datafusion::arrow::compute::cast(column, &data_type)?);
                fields.push(Field::new(field.name(), data_type, true));
            }
            None => {
                columns.push(column.clone());
                fields.push(field.as_ref().clone());
            }
        }
    }
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?)
}

/// `2026-01-31`.
fn is_iso_date(text: &str) -> bool {
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").is_ok() && text.len() == 10
}

/// `2026-01-31 08:30:00`, `2026-01-31T08:30:00.250` (no time zone).
fn is_iso_timestamp(text: &str) -> bool {
    ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"]
        .iter()
        .any(|format| chrono::NaiveDateTime::parse_from_str(text, format).is_ok())
}

/// Expected rows as column → text (None for NULL), with the column order of their first mention.
pub(super) fn rows_as_text(rows: &Rows) -> Result<(Vec<String>, Vec<TextRow>), UnitError> {
    let batch = rows_as_batch(rows)?;
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

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::{DataType, TimeUnit};

    use super::*;

    fn rows(json: &str) -> Vec<serde_json::Map<String, Json>> {
        serde_json::from_str(json).expect("rows")
    }

    #[test]
    fn dict_rows_keep_json_types_and_type_iso_dates() {
        let batch = dicts_as_batch(&rows(
            r#"[{"id": "007", "n": 1, "x": 1, "day": "2026-01-31", "at": "2026-01-31 08:30:00"},
                {"id": "010", "x": 2.5, "day": null, "at": "2026-02-01T09:00:00.250", "flag": true}]"#,
        ))
        .expect("batch");
        let schema = batch.schema();
        let types: Vec<(&str, &DataType)> = schema
            .fields()
            .iter()
            .map(|f| (f.name().as_str(), f.data_type()))
            .collect();
        assert_eq!(
            types,
            vec![
                ("id", &DataType::Utf8),
                ("n", &DataType::Int64),
                ("x", &DataType::Float64),
                ("day", &DataType::Date32),
                ("at", &DataType::Timestamp(TimeUnit::Nanosecond, None)),
                ("flag", &DataType::Boolean),
            ]
        );
        let text = batch_as_text(&[batch]);
        assert_eq!(text[0]["id"].as_deref(), Some("007"));
        assert_eq!(text[1]["n"], None);
        assert_eq!(text[0]["day"].as_deref(), Some("2026-01-31"));
        assert_eq!(text[1]["day"], None);
        assert_eq!(text[0]["flag"], None);
    }

    #[test]
    fn text_that_is_not_all_dates_stays_text_and_null_columns_are_text() {
        let batch =
            dicts_as_batch(&rows(r#"[{"d": "2026-01-31", "e": null}, {"d": "soon", "e": null}]"#)).expect("batch");
        assert_eq!(batch.schema().field(0).data_type(), &DataType::Utf8);
        assert_eq!(batch.schema().field(1).data_type(), &DataType::Utf8);
        assert_eq!(batch.num_rows(), 2);
    }
}
