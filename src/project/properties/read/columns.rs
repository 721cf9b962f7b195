//! Columns (`columns:`) and the generic data tests declared on them or on their node.

use super::*;

impl Reader<'_> {
    /// Each column with its index in the `columns:` list at `path`; `owner` names the node in
    /// diagnostics.
    pub(super) fn columns_of(
        &mut self,
        raw_columns: Vec<(usize, RawColumn)>,
        owner: &str,
        path: &str,
    ) -> Vec<ColumnProperties> {
        raw_columns
            .into_iter()
            .map(|(index, column)| {
                let column_path = format!("{path}/columns/{index}");
                self.ignored(
                    &column_path,
                    &[(
                        "constraints",
                        "constraints are not checked; contract: {enforced: true} checks names and data_types",
                    )],
                );
                let tests = self.test_declarations(&column.tests, &format!("{owner}.{}", column.name), &column_path);
                ColumnProperties {
                    tests,
                    name: column.name,
                    description: column.description,
                    data_type: column.data_type,
                }
            })
            .collect()
    }

    /// The tests of `owner`, the node at `path`, under its `tests:` or `data_tests:`; an invalid
    /// one is reported and left out.
    pub(super) fn test_declarations(
        &mut self,
        entries: &[serde_yaml::Value],
        owner: &str,
        path: &str,
    ) -> Vec<TestDeclaration> {
        let key = if self.positions.contains(&format!("{path}/data_tests")) {
            "data_tests"
        } else {
            "tests"
        };
        entries
            .iter()
            .enumerate()
            .filter_map(|(index, entry)| {
                let at = self.positions.at(&format!("{path}/{key}/{index}"));
                match test_declaration(entry) {
                    Ok(mut declaration) => {
                        for key in declaration.config.keys() {
                            self.check_config_key(ConfigKind::Test, key, at);
                        }
                        declaration.line = at.map(|position| position.line);
                        declaration.column = at.map(|position| position.column);
                        Some(declaration)
                    }
                    Err(message) => {
                        self.problem(Diagnostic::new(format!("invalid test on {owner}: {message}")), at);
                        None
                    }
                }
            })
            .collect()
    }
}

/// Reads `unique`, `{accepted_values: {values: [...]}}` or `{accepted_values: {arguments: {...}, config: {...}}}`.
fn test_declaration(entry: &serde_yaml::Value) -> Result<TestDeclaration, Diagnostic> {
    let json = crate::project::project_file::yaml_to_json(entry)?;
    let (test_name, body) = match json {
        Json::String(test_name) => (test_name, Json::Null),
        Json::Object(map) => {
            let mut entries = map.into_iter();
            match (entries.next(), entries.next()) {
                (Some(entry), None) => entry,
                _ => return Err(not_a_test()),
            }
        }
        _ => return Err(not_a_test()),
    };
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

/// What an entry of `tests:` that is neither a name nor a one-key mapping is told.
fn not_a_test() -> Diagnostic {
    Diagnostic::new("a test is a name or a mapping with a single test name as its key")
}
