//! The `sources:` section: each source's tables, where their files are, and their freshness.

use super::*;

/// dbt keys of a source or source table that tidemark ignores, and what ignoring them loses.
const SOURCE_FEATURES: [(&str, &str); 2] = [
    (
        "database",
        "a target reads one warehouse; sources are found by schema, external_location or files",
    ),
    ("quoting", "identifiers are always quoted"),
];

impl Reader<'_> {
    /// Reads the `sources:` entries.
    pub(super) fn sources(&mut self, raw: Vec<RawSource>) -> Vec<SourceProperties> {
        raw.into_iter()
            .enumerate()
            .map(|(index, source)| self.source(format!("sources/{index}"), source))
            .collect()
    }

    /// Reads the source at `source_path` and its tables.
    fn source(&mut self, source_path: String, mut source: RawSource) -> SourceProperties {
        let line = self.line_at(&source_path);
        let tables = std::mem::take(&mut source.tables)
            .into_iter()
            .enumerate()
            .map(|(table_index, table)| self.table(&source, &source_path, table_index, table))
            .collect();
        SourceProperties {
            schema: source.schema.unwrap_or_else(|| source.name.clone()),
            name: source.name,
            description: source.description,
            tables,
            line,
        }
    }

    /// Reads the table at `table_index` of `source` (at `source_path`). The source's own keys are
    /// checked with its first table.
    fn table(
        &mut self,
        source: &RawSource,
        source_path: &str,
        table_index: usize,
        mut table: RawSourceTable,
    ) -> SourceTable {
        let table_path = format!("{source_path}/tables/{table_index}");
        let identifier = table.identifier.take().unwrap_or_else(|| table.name.clone());
        let location = table
            .external_location
            .take()
            .or_else(|| meta_string(&table.meta, "external_location"))
            .or_else(|| meta_string(&table.config, "external_location"))
            .or_else(|| {
                source
                    .external_location
                    .as_ref()
                    .map(|pattern| pattern.replace("{name}", &identifier))
            });
        let owner = format!("{}.{}", source.name, table.name);
        if table_index == 0 {
            self.ignored(source_path, &SOURCE_FEATURES);
            self.check_config(
                ConfigKind::Source,
                config_keys(&source.config),
                &format!("{source_path}/config"),
            );
        }
        self.ignored(&table_path, &SOURCE_FEATURES);
        self.check_config(
            ConfigKind::Source,
            config_keys(&table.config),
            &format!("{table_path}/config"),
        );
        let format = self.format(source, source_path, &table, &table_path, &owner);
        let columns = self.columns_of(
            std::mem::take(&mut table.columns).into_iter().enumerate().collect(),
            &owner,
            &table_path,
        );
        let freshness = self.freshness(source, source_path, &table, &table_path, &owner);
        SourceTable {
            line: self.line_at(&table_path),
            columns,
            event_time: meta_string(&table.config, "event_time").or_else(|| meta_string(&source.config, "event_time")),
            loaded_at_field: table.loaded_at_field.or_else(|| source.loaded_at_field.clone()),
            name: table.name,
            identifier,
            description: table.description,
            location,
            format,
            freshness,
        }
    }

    /// The table's `format:`, else its source's. An unknown one is an error where it is written;
    /// a source's own is reported once, not once per table.
    fn format(
        &mut self,
        source: &RawSource,
        source_path: &str,
        table: &RawSourceTable,
        table_path: &str,
        owner: &str,
    ) -> Option<SourceFormat> {
        let text = table.format.as_deref().or(source.format.as_deref())?;
        if let Some(format) = SourceFormat::parse(text) {
            return Some(format);
        }
        let (at, what) = match table.format {
            Some(_) => (format!("{table_path}/format"), format!("source table {owner}")),
            None => (format!("{source_path}/format"), format!("source {}", source.name)),
        };
        let problem = Diagnostic::new(format!("{what}: unknown format '{text}'; use parquet, csv or json"))
            .in_file(self.file)
            .at_position(self.positions.value_at(&at));
        if !self.problems.contains(&problem) {
            self.problems.push(problem);
        }
        None
    }

    /// The table's `freshness:`, else its source's (`null` turns it off). An invalid one is an
    /// error where it is written.
    fn freshness(
        &mut self,
        source: &RawSource,
        source_path: &str,
        table: &RawSourceTable,
        table_path: &str,
        owner: &str,
    ) -> Option<Freshness> {
        match freshness_of(table.freshness.as_ref().or(source.freshness.as_ref())?) {
            Ok(freshness) => freshness,
            Err(message) => {
                let at = match table.freshness {
                    Some(_) => format!("{table_path}/freshness"),
                    None => format!("{source_path}/freshness"),
                };
                self.problem(
                    Diagnostic::new(format!("source table {owner}: {message}")),
                    self.positions.at(&at),
                );
                None
            }
        }
    }
}

/// The keys of a `config:` mapping.
fn config_keys(config: &Option<Json>) -> impl Iterator<Item = &String> {
    config.iter().filter_map(Json::as_object).flat_map(|map| map.keys())
}

/// The string at `key` of a `meta:` or `config:` mapping.
fn meta_string(meta: &Option<Json>, key: &str) -> Option<String> {
    meta.as_ref()?.get(key)?.as_str().map(str::to_string)
}
