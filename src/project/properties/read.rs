//! Reading one property file: its entries checked, positioned, and (with a context) rendered.

use super::*;

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
    let raw: RawPropertyFile = crate::project::yaml::parse(file, text).map_err(|d| vec![d])?;
    let positions = Positions::of(text);
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
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let ignored = |path: &str, features: &[(&str, &str)], warnings: &mut Vec<Diagnostic>| {
        for (key, lost) in features {
            let at = if path.is_empty() {
                key.to_string()
            } else {
                format!("{path}/{key}")
            };
            if positions.contains(&at) {
                warnings.push(
                    Diagnostic::new(format!(
                        "'{key}:' is a dbt feature tidemark does not implement; it is ignored ({lost})"
                    ))
                    .in_file(file)
                    .at_position(positions.at(&at)),
                );
            }
        }
    };
    ignored(
        "",
        &[
            ("metrics", "dbt metrics are not read; tidemark's own are metric_models:"),
            ("semantic_models", "semantic models are not read"),
            ("saved_queries", "saved queries are not read"),
            ("analyses", "analyses are not compiled"),
        ],
        &mut warnings,
    );
    // A config key of `kind` set at `path`: a typo is an error, anything else ignored a warning.
    let check_config = |kind: ConfigKind,
                        config: &mut dyn Iterator<Item = &String>,
                        path: &str,
                        problems: &mut Vec<Diagnostic>,
                        warnings: &mut Vec<Diagnostic>| {
        for key in config {
            if let Some((diagnostic, error)) = crate::project::keys::config_problem(kind, key) {
                let diagnostic = diagnostic
                    .in_file(file)
                    .at_position(positions.at(&format!("{path}/{key}")));
                if error {
                    problems.push(diagnostic);
                } else {
                    warnings.push(diagnostic);
                }
            }
        }
    };
    let line_at = |path: &str| positions.at(path).map(|position| position.line);

    // `path` is the owner's node; its tests are under `tests:` or `data_tests:`.
    let test_declarations = |entries: &[serde_yaml::Value],
                             owner: &str,
                             path: &str,
                             problems: &mut Vec<Diagnostic>,
                             warnings: &mut Vec<Diagnostic>| {
        let key = if positions.contains(&format!("{path}/data_tests")) {
            "data_tests"
        } else {
            "tests"
        };
        entries
            .iter()
            .enumerate()
            .filter_map(|(index, entry)| {
                let at = positions.at(&format!("{path}/{key}/{index}"));
                match test_declaration(entry) {
                    Ok(mut declaration) => {
                        for key in declaration.config.keys() {
                            if let Some((diagnostic, error)) =
                                crate::project::keys::config_problem(ConfigKind::Test, key)
                            {
                                let diagnostic = diagnostic.in_file(file).at_position(at);
                                if error {
                                    problems.push(diagnostic);
                                } else {
                                    warnings.push(diagnostic);
                                }
                            }
                        }
                        declaration.line = at.map(|position| position.line);
                        declaration.column = at.map(|position| position.column);
                        Some(declaration)
                    }
                    Err(message) => {
                        problems.push(
                            Diagnostic::new(format!("invalid test on {owner}: {message}"))
                                .in_file(file)
                                .at_position(at),
                        );
                        None
                    }
                }
            })
            .collect::<Vec<_>>()
    };

    // Each column with its index in the `columns:` list at `path`.
    let columns_of = |raw_columns: Vec<(usize, RawColumn)>,
                      owner: &str,
                      path: &str,
                      problems: &mut Vec<Diagnostic>,
                      warnings: &mut Vec<Diagnostic>| {
        raw_columns
            .into_iter()
            .map(|(index, column)| ColumnProperties {
                tests: {
                    let column_path = format!("{path}/columns/{index}");
                    ignored(
                        &column_path,
                        &[(
                            "constraints",
                            "constraints are not checked; contract: {enforced: true} checks names and data_types",
                        )],
                        warnings,
                    );
                    test_declarations(
                        &column.tests,
                        &format!("{owner}.{}", column.name),
                        &column_path,
                        problems,
                        warnings,
                    )
                },
                name: column.name,
                description: column.description,
                data_type: column.data_type,
            })
            .collect::<Vec<_>>()
    };

    let mut sources = Vec::new();
    for (source_index, source) in raw.sources.into_iter().enumerate() {
        let source_path = format!("sources/{source_index}");
        let line = line_at(&source_path);
        let mut tables = Vec::new();
        for (table_index, table) in source.tables.into_iter().enumerate() {
            let table_path = format!("{source_path}/tables/{table_index}");
            let identifier = table.identifier.unwrap_or_else(|| table.name.clone());
            let location = table
                .external_location
                .or_else(|| meta_string(&table.meta, "external_location"))
                .or_else(|| meta_string(&table.config, "external_location"))
                .or_else(|| {
                    source
                        .external_location
                        .as_ref()
                        .map(|pattern| pattern.replace("{name}", &identifier))
                });
            let owner = format!("{}.{}", source.name, table.name);
            let source_features = [
                (
                    "database",
                    "a target reads one warehouse; sources are found by schema, external_location or files",
                ),
                ("quoting", "identifiers are always quoted"),
            ];
            if table_index == 0 {
                ignored(&source_path, &source_features, &mut warnings);
                check_config(
                    ConfigKind::Source,
                    &mut config_keys(&source.config),
                    &format!("{source_path}/config"),
                    &mut problems,
                    &mut warnings,
                );
            }
            ignored(&table_path, &source_features, &mut warnings);
            check_config(
                ConfigKind::Source,
                &mut config_keys(&table.config),
                &format!("{table_path}/config"),
                &mut problems,
                &mut warnings,
            );
            let format = match table.format.as_deref().or(source.format.as_deref()) {
                None => None,
                Some(text) => match SourceFormat::parse(text) {
                    Some(format) => Some(format),
                    None => {
                        // A source's own format is reported once, not once per table.
                        let (at, what) = match table.format {
                            Some(_) => (format!("{table_path}/format"), format!("source table {owner}")),
                            None => (format!("{source_path}/format"), format!("source {}", source.name)),
                        };
                        let problem =
                            Diagnostic::new(format!("{what}: unknown format '{text}'; use parquet, csv or json"))
                                .in_file(file)
                                .at_position(positions.value_at(&at));
                        if !problems.contains(&problem) {
                            problems.push(problem);
                        }
                        None
                    }
                },
            };
            tables.push(SourceTable {
                line: line_at(&table_path),
                columns: columns_of(
                    table.columns.into_iter().enumerate().collect(),
                    &owner,
                    &table_path,
                    &mut problems,
                    &mut warnings,
                ),
                name: table.name,
                identifier,
                description: table.description,
                location,
                format,
                event_time: meta_string(&table.config, "event_time")
                    .or_else(|| meta_string(&source.config, "event_time")),
                freshness: match table.freshness.as_ref().or(source.freshness.as_ref()).map(freshness_of) {
                    None => None,
                    Some(Ok(freshness)) => freshness,
                    Some(Err(message)) => {
                        problems.push(
                            Diagnostic::new(format!("source table {owner}: {message}"))
                                .in_file(file)
                                .at_position(positions.at(&match table.freshness {
                                    Some(_) => format!("{table_path}/freshness"),
                                    None => format!("{source_path}/freshness"),
                                })),
                        );
                        None
                    }
                },
                loaded_at_field: table.loaded_at_field.or_else(|| source.loaded_at_field.clone()),
            });
        }
        sources.push(SourceProperties {
            schema: source.schema.unwrap_or_else(|| source.name.clone()),
            name: source.name,
            description: source.description,
            tables,
            line,
        });
    }

    let node_properties = |entries: Vec<RawNodeProperties>,
                           kind: &str,
                           problems: &mut Vec<Diagnostic>,
                           warnings: &mut Vec<Diagnostic>| {
        let config_kind = if kind == "models" {
            ConfigKind::Model
        } else {
            ConfigKind::Seed
        };
        entries
            .into_iter()
            .enumerate()
            .map(|(index, entry)| {
                let path = format!("{kind}/{index}");
                ignored(
                    &path,
                    &[
                        (
                            "constraints",
                            "constraints are not checked; contract: {enforced: true} checks names and data_types",
                        ),
                        ("deprecation_date", "deprecations are not reported"),
                    ],
                    warnings,
                );
                check_config(
                    config_kind,
                    &mut entry.config.iter().flat_map(|config| config.keys()),
                    &format!("{path}/config"),
                    problems,
                    warnings,
                );
                // `access:` and `group:` beside `config:` (dbt before 1.10) are configs too.
                let mut config = ConfigMap::new();
                for (key, value) in [("access", &entry.access), ("group", &entry.group)] {
                    if let Some(value) = value {
                        config.insert(key.to_string(), Json::from(value.as_str()));
                    }
                }
                config.extend(entry.config.clone().unwrap_or_default());
                let columns = columns_of(
                    entry.columns.into_iter().enumerate().collect(),
                    &entry.name,
                    &path,
                    problems,
                    warnings,
                );
                if config_kind == ConfigKind::Seed && !entry.versions.is_empty() {
                    problems.push(
                        Diagnostic::new(format!("seed '{}': only models have versions:", entry.name))
                            .in_file(file)
                            .at_position(positions.at(&format!("{path}/versions"))),
                    );
                }
                let mut versions = Vec::new();
                for (version_index, version) in entry.versions.into_iter().enumerate() {
                    let version_path = format!("{path}/versions/{version_index}");
                    let at = positions.at(&version_path);
                    let Some(v) = versions::version_text(&version.v) else {
                        problems.push(
                            Diagnostic::new(format!(
                                "model '{}': a version's v: must be a number or a name",
                                entry.name
                            ))
                            .in_file(file)
                            .at_position(positions.at(&format!("{version_path}/v")).or(at)),
                        );
                        continue;
                    };
                    ignored(
                        &version_path,
                        &[
                            ("constraints", "constraints are not checked"),
                            ("deprecation_date", "deprecations are not reported"),
                        ],
                        warnings,
                    );
                    check_config(
                        config_kind,
                        &mut version.config.iter().flat_map(|config| config.keys()),
                        &format!("{version_path}/config"),
                        problems,
                        warnings,
                    );
                    let chosen = match versions::VersionColumns::read(version.columns) {
                        Ok(chosen) => chosen,
                        Err((column_index, message)) => {
                            problems.push(
                                Diagnostic::new(format!("model '{}' version {v}: columns: {message}", entry.name))
                                    .in_file(file)
                                    .at_position(positions.at(&format!("{version_path}/columns/{column_index}"))),
                            );
                            continue;
                        }
                    };
                    let own_columns = columns_of(
                        chosen.own.clone(),
                        &format!("{}_v{v}", entry.name),
                        &version_path,
                        problems,
                        warnings,
                    );
                    let mut version_config = ConfigMap::new();
                    for (key, value) in [("access", &version.access), ("group", &version.group)] {
                        if let Some(value) = value {
                            version_config.insert(key.to_string(), Json::from(value.as_str()));
                        }
                    }
                    version_config.extend(version.config.unwrap_or_default());
                    versions.push(VersionProperties {
                        tests: test_declarations(
                            &version.tests,
                            &format!("{}_v{v}", entry.name),
                            &version_path,
                            problems,
                            warnings,
                        ),
                        columns: chosen.resolve(&columns, own_columns),
                        v,
                        defined_in: version.defined_in,
                        description: version.description,
                        config: version_config,
                        line: at.map(|position| position.line),
                        column: at.map(|position| position.column),
                    });
                }
                let latest_version = entry.latest_version.as_ref().map(|value| {
                    let text = versions::version_text(value).unwrap_or_else(|| value.to_string());
                    (text, positions.value_at(&format!("{path}/latest_version")))
                });
                NodeProperties {
                    line: line_at(&path),
                    column: positions.at(&path).map(|position| position.column),
                    config_positions: ["access", "group"]
                        .into_iter()
                        .filter_map(|key| Some((key.to_string(), positions.value_at(&format!("{path}/{key}"))?)))
                        .chain(entry.config.iter().flatten().filter_map(|(key, _)| {
                            let at = positions.value_at(&format!("{path}/config/{key}"))?;
                            Some((key.clone(), at))
                        }))
                        .collect(),
                    config,
                    tests: test_declarations(&entry.tests, &entry.name, &path, problems, warnings),
                    columns,
                    versions,
                    latest_version,
                    name: entry.name,
                    description: entry.description,
                    file: file.to_string(),
                }
            })
            .collect::<Vec<_>>()
    };
    let models = node_properties(raw.models, "models", &mut problems, &mut warnings);
    let seeds = node_properties(raw.seeds, "seeds", &mut problems, &mut warnings);
    for (index, snapshot) in raw.snapshots.iter().enumerate() {
        check_config(
            ConfigKind::Snapshot,
            &mut snapshot.config.iter().flat_map(|config| config.keys()),
            &format!("snapshots/{index}/config"),
            &mut problems,
            &mut warnings,
        );
    }
    let mut unit_tests = Vec::new();
    for (test_index, test) in raw.unit_tests.into_iter().enumerate() {
        let test_path = format!("unit_tests/{test_index}");
        let line = line_at(&test_path);
        let column = positions.at(&test_path).map(|position| position.column);
        let owner = format!("unit test '{}'", test.name);
        let mut given = Vec::new();
        let mut failed = false;
        for (input_index, input) in test.given.into_iter().enumerate() {
            match rows_of(input.rows, &format!("{owner}, given {}", input.input)) {
                Ok(rows) => given.push((input.input, rows)),
                Err(problem) => {
                    problems.push(
                        problem
                            .in_file(file)
                            .at_position(positions.at(&format!("{test_path}/given/{input_index}"))),
                    );
                    failed = true;
                }
            }
        }
        let expect = match rows_of(test.expect, &format!("{owner}, expect")) {
            Ok(rows) => rows,
            Err(problem) => {
                problems.push(
                    problem
                        .in_file(file)
                        .at_position(positions.at(&format!("{test_path}/expect"))),
                );
                continue;
            }
        };
        let mut incremental = false;
        let (macros, vars) = test.overrides.map(|o| (o.macros, o.vars)).unwrap_or_default();
        for (name, value) in macros {
            match (name.as_str(), value) {
                ("is_incremental", Json::Bool(on)) => incremental = on,
                (other, _) => {
                    problems.push(
                        Diagnostic::new(format!(
                            "{owner}: overrides.macros supports is_incremental: true|false, not '{other}'"
                        ))
                        .in_file(file)
                        .at_position(positions.at(&format!("{test_path}/overrides/macros/{name}"))),
                    );
                    failed = true;
                }
            }
        }
        if failed {
            continue;
        }
        unit_tests.push(UnitTestProperties {
            incremental,
            vars,
            name: test.name,
            model: test.model,
            description: test.description,
            given,
            expect,
            config: test.config.unwrap_or_default().into_iter().collect(),
            file: file.to_string(),
            line,
            column,
        });
    }

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
        groups: raw
            .groups
            .into_iter()
            .enumerate()
            .map(|(index, group)| {
                let at = positions.at(&format!("groups/{index}"));
                GroupProperties {
                    name: group.name,
                    owner: group.owner,
                    description: group.description,
                    line: at.map(|position| position.line),
                    column: at.map(|position| position.column),
                }
            })
            .collect(),
        snapshots: raw
            .snapshots
            .into_iter()
            .enumerate()
            .map(|(index, snapshot)| SnapshotProperties {
                line: positions
                    .at(&format!("snapshots/{index}"))
                    .map(|position| position.line),
                column: positions
                    .at(&format!("snapshots/{index}"))
                    .map(|position| position.column),
                name: snapshot.name,
                description: snapshot.description,
                relation: snapshot.relation,
                config: snapshot.config.unwrap_or_default(),
            })
            .collect(),
        exposures: raw
            .exposures
            .into_iter()
            .enumerate()
            .map(|(index, exposure)| {
                let path = format!("exposures/{index}");
                ExposureProperties {
                    depends_on: exposure
                        .depends_on
                        .into_iter()
                        .enumerate()
                        .map(|(at, text)| (text, positions.value_at(&format!("{path}/depends_on/{at}"))))
                        .collect(),
                    line: positions.at(&path).map(|position| position.line),
                    column: positions.at(&path).map(|position| position.column),
                    name: exposure.name,
                    kind: exposure.kind,
                    owner: exposure.owner,
                    description: exposure.description,
                    url: exposure.url,
                    maturity: exposure.maturity,
                }
            })
            .collect(),
        positions,
        warnings,
    })
}

/// The keys of a `config:` mapping.
fn config_keys(config: &Option<Json>) -> impl Iterator<Item = &String> {
    config.iter().filter_map(Json::as_object).flat_map(|map| map.keys())
}

fn meta_string(meta: &Option<Json>, key: &str) -> Option<String> {
    meta.as_ref()?.get(key)?.as_str().map(str::to_string)
}

/// Reads `unique`, `{accepted_values: {values: [...]}}` or `{accepted_values: {arguments: {...}, config: {...}}}`.
fn test_declaration(entry: &serde_yaml::Value) -> Result<TestDeclaration, Diagnostic> {
    let json = crate::project::project_file::yaml_to_json(entry)?;
    match json {
        Json::String(test_name) => Ok(TestDeclaration {
            test_name,
            arguments: BTreeMap::new(),
            config: ConfigMap::new(),
            line: None,
            column: None,
        }),
        Json::Object(map) if map.len() == 1 => {
            let (test_name, body) = map.into_iter().next().expect("map has one entry");
            let mut arguments = BTreeMap::new();
            let mut config = ConfigMap::new();
            match body {
                Json::Object(body) => {
                    for (key, value) in body {
                        match key.as_str() {
                            "config" => {
                                let Json::Object(entries) = value else {
                                    return Err(Diagnostic::new(format!(
                                        "'config' of test '{test_name}' must be a mapping"
                                    )));
                                };
                                config.extend(entries);
                            }
                            "arguments" => {
                                let Json::Object(entries) = value else {
                                    return Err(Diagnostic::new(format!(
                                        "'arguments' of test '{test_name}' must be a mapping"
                                    )));
                                };
                                arguments.extend(entries);
                            }
                            key if TEST_CONFIG_KEYS.contains(&key) => {
                                config.insert(key.to_string(), value);
                            }
                            _ => {
                                arguments.insert(key, value);
                            }
                        }
                    }
                }
                Json::Null => {}
                _ => {
                    return Err(Diagnostic::new(format!(
                        "the arguments of test '{test_name}' must be a mapping"
                    )))
                }
            }
            Ok(TestDeclaration {
                test_name,
                arguments,
                config,
                line: None,
                column: None,
            })
        }
        _ => Err(Diagnostic::new(
            "a test is a name or a mapping with a single test name as its key",
        )),
    }
}
