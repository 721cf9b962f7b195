//! Reading one property file: its entries checked, positioned, and (with a context) rendered.
//!
//! [`parse`] hands each section to a [`Reader`], which collects the file's diagnostics in the
//! order its sections are read: `sources:` ([`sources`]), `models:`, `seeds:` and `snapshots:`
//! ([`nodes`], their columns and data tests in [`columns`]), then `unit_tests:` ([`unit_tests`]).

use super::*;

mod columns;
mod nodes;
mod sources;
mod unit_tests;

/// Parses one property file, its Jinja values rendered in `context` (see [`crate::project::render`]).
pub fn parse(
    file: &str,
    text: &str,
    context: Option<&crate::project::render::PropertyContext>,
) -> Result<PropertyFile, Vec<Diagnostic>> {
    if text.trim().is_empty() {
        return Ok(PropertyFile {
            file: file.to_string(),
            ..PropertyFile::default()
        });
    }
    // Two passes over the text, one for the values and one for their positions: side by side,
    // as a big property file (one `schema.yml` for a whole project) is otherwise read alone.
    let (raw, positions) = rayon::join(
        || crate::project::yaml::parse::<RawPropertyFile>(file, text),
        || Positions::of(text),
    );
    let raw = raw.map_err(|d| vec![d])?;
    let raw = match context {
        Some(context) if text.contains("{{") || text.contains("{%") => {
            // The shape was checked as written; only string values change.
            let mut value: serde_yaml::Value = crate::project::yaml::parse(file, text).map_err(|d| vec![d])?;
            let problems = crate::project::render::render_values(&mut value, context, file, &positions);
            if !problems.is_empty() {
                return Err(problems);
            }
            serde_yaml::from_value(value)
                .map_err(|error| vec![Diagnostic::new(format!("after rendering its Jinja: {error}")).in_file(file)])?
        }
        _ => raw,
    };
    let mut reader = Reader {
        file,
        positions: &positions,
        problems: Vec::new(),
        warnings: Vec::new(),
    };
    reader.ignored(
        "",
        &[
            ("metrics", "dbt metrics are not read; tidemark's own are metric_models:"),
            ("semantic_models", "semantic models are not read"),
            ("saved_queries", "saved queries are not read"),
            ("analyses", "analyses are not compiled"),
        ],
    );
    let sources = reader.sources(raw.sources);
    let models = reader.node_properties(raw.models, "models");
    let seeds = reader.node_properties(raw.seeds, "seeds");
    let snapshots = reader.snapshots(raw.snapshots);
    let unit_tests = reader.unit_tests(raw.unit_tests);
    let groups = reader.groups(raw.groups);
    let exposures = reader.exposures(raw.exposures);
    let Reader { problems, warnings, .. } = reader;
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(PropertyFile {
        file: file.to_string(),
        package: None,
        sources,
        models,
        seeds,
        unit_tests,
        has_metric_models: !raw.metric_models.is_empty(),
        text: text.to_string(),
        groups,
        snapshots,
        exposures,
        positions,
        warnings,
    })
}

/// One property file being read: where its nodes are, and the diagnostics found so far (in the
/// order they are found, which is the order they are reported in).
struct Reader<'a> {
    file: &'a str,
    positions: &'a Positions,
    /// Errors: any one rejects the file.
    problems: Vec<Diagnostic>,
    /// What the file declares that tidemark ignores.
    warnings: Vec<Diagnostic>,
}

impl Reader<'_> {
    /// Warns of each of `features` (a dbt key, and what ignoring it loses) present under `path`.
    fn ignored(&mut self, path: &str, features: &[(&str, &str)]) {
        for (key, lost) in features {
            let at = if path.is_empty() {
                key.to_string()
            } else {
                format!("{path}/{key}")
            };
            if self.positions.contains(&at) {
                self.warnings.push(
                    Diagnostic::new(format!(
                        "'{key}:' is a dbt feature tidemark does not implement; it is ignored ({lost})"
                    ))
                    .in_file(self.file)
                    .at_position(self.positions.at(&at)),
                );
            }
        }
    }

    /// Checks the keys of a `config:` of `kind` at `path`: a typo is an error, anything else
    /// ignored a warning.
    fn check_config<'k>(&mut self, kind: ConfigKind, config: impl IntoIterator<Item = &'k String>, path: &str) {
        for key in config {
            let at = self.positions.at(&format!("{path}/{key}"));
            self.check_config_key(kind, key, at);
        }
    }

    /// Checks one config key of `kind`, reporting a problem with it at `at`.
    fn check_config_key(&mut self, kind: ConfigKind, key: &str, at: Option<Position>) {
        if let Some((diagnostic, error)) = crate::project::keys::config_problem(kind, key) {
            let diagnostic = diagnostic.in_file(self.file).at_position(at);
            if error {
                self.problems.push(diagnostic);
            } else {
                self.warnings.push(diagnostic);
            }
        }
    }

    /// Records an error at `at`.
    fn problem(&mut self, diagnostic: Diagnostic, at: Option<Position>) {
        self.problems.push(diagnostic.in_file(self.file).at_position(at));
    }

    /// The line the node at `path` starts on.
    fn line_at(&self, path: &str) -> Option<usize> {
        self.positions.at(path).map(|position| position.line)
    }

    /// The column the node at `path` starts at.
    fn column_at(&self, path: &str) -> Option<usize> {
        self.positions.at(path).map(|position| position.column)
    }

    /// `groups:`, each with where it is.
    fn groups(&self, raw: Vec<RawGroup>) -> Vec<GroupProperties> {
        raw.into_iter()
            .enumerate()
            .map(|(index, group)| {
                let at = self.positions.at(&format!("groups/{index}"));
                GroupProperties {
                    name: group.name,
                    owner: group.owner,
                    description: group.description,
                    line: at.map(|position| position.line),
                    column: at.map(|position| position.column),
                }
            })
            .collect()
    }

    /// `exposures:`, each with where it and each of its `depends_on:` entries are.
    fn exposures(&self, raw: Vec<RawExposure>) -> Vec<ExposureProperties> {
        raw.into_iter()
            .enumerate()
            .map(|(index, exposure)| {
                let path = format!("exposures/{index}");
                ExposureProperties {
                    depends_on: exposure
                        .depends_on
                        .into_iter()
                        .enumerate()
                        .map(|(at, text)| (text, self.positions.value_at(&format!("{path}/depends_on/{at}"))))
                        .collect(),
                    line: self.line_at(&path),
                    column: self.column_at(&path),
                    name: exposure.name,
                    kind: exposure.kind,
                    owner: exposure.owner,
                    description: exposure.description,
                    url: exposure.url,
                    maturity: exposure.maturity,
                }
            })
            .collect()
    }
}
