//! Model versions (`versions:` in a model's properties): which of the model's columns each
//! version keeps (`include:` / `exclude:`), and its own columns.

use super::*;

/// How a version chooses among its model's columns.
const CHOICE: &str = "use include: all | [names] and exclude: [names]";

/// A version's `columns:` split into its choice among the model's columns and its own entries
/// (each with its index in the list, for positions).
pub(super) struct VersionColumns {
    /// `include:`: every column of the model (`all`, the default) or the listed ones.
    include: Option<Vec<String>>,
    exclude: Vec<String>,
    pub(super) own: Vec<(usize, RawColumn)>,
}

impl VersionColumns {
    /// Reads a version's `columns:` list; the message of an entry that is neither.
    pub(super) fn read(entries: Option<Vec<serde_yaml::Value>>) -> Result<VersionColumns, (usize, String)> {
        let mut columns = VersionColumns {
            include: None,
            exclude: Vec::new(),
            own: Vec::new(),
        };
        for (index, entry) in entries.into_iter().flatten().enumerate() {
            let choice = entry
                .as_mapping()
                .filter(|map| map.contains_key("include") || map.contains_key("exclude"));
            let Some(choice) = choice else {
                let column: RawColumn = serde_yaml::from_value(entry).map_err(|error| (index, error.to_string()))?;
                columns.own.push((index, column));
                continue;
            };
            for (key, value) in choice {
                let names = |value: &serde_yaml::Value| -> Result<Vec<String>, (usize, String)> {
                    serde_yaml::from_value(value.clone()).map_err(|_| {
                        (
                            index,
                            format!("{} must be a list of column names", key.as_str().unwrap_or("?")),
                        )
                    })
                };
                match key.as_str() {
                    Some("include") if value.as_str().is_some_and(|text| text == "all" || text == "*") => {
                        columns.include = None;
                    }
                    Some("include") => columns.include = Some(names(value)?),
                    Some("exclude") => columns.exclude = names(value)?,
                    other => {
                        let key = other.unwrap_or("?");
                        return Err((index, format!("unknown key '{key}' beside include/exclude; {CHOICE}")));
                    }
                }
            }
        }
        Ok(columns)
    }

    /// The version's columns: the model's it keeps, in order, then its own (which replace a
    /// model column of the same name).
    pub(super) fn resolve(&self, model: &[ColumnProperties], own: Vec<ColumnProperties>) -> Vec<ColumnProperties> {
        let mut columns: Vec<ColumnProperties> = model
            .iter()
            .filter(|column| {
                self.include.as_ref().is_none_or(|names| names.contains(&column.name))
                    && !self.exclude.contains(&column.name)
                    && !own.iter().any(|mine| mine.name == column.name)
            })
            .cloned()
            .collect();
        columns.extend(own);
        columns
    }
}

/// A version identifier as text: `2` for `v: 2`, `beta` for `v: beta`.
pub(super) fn version_text(value: &Json) -> Option<String> {
    match value {
        Json::String(text) if !text.is_empty() => Some(text.clone()),
        Json::Number(number) => Some(number.to_string()),
        _ => None,
    }
}
