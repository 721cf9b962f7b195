//! The `unit_tests:` section: each test's given inputs, expected rows and overrides.

use super::*;

impl Reader<'_> {
    /// Reads the `unit_tests:` entries; one with a problem is reported and left out.
    pub(super) fn unit_tests(&mut self, raw: Vec<RawUnitTest>) -> Vec<UnitTestProperties> {
        raw.into_iter()
            .enumerate()
            .filter_map(|(index, test)| self.unit_test(format!("unit_tests/{index}"), test))
            .collect()
    }

    /// Reads the unit test at `test_path`.
    fn unit_test(&mut self, test_path: String, test: RawUnitTest) -> Option<UnitTestProperties> {
        let owner = format!("unit test '{}'", test.name);
        let mut given = Vec::new();
        let mut failed = false;
        for (input_index, input) in test.given.into_iter().enumerate() {
            match rows_of(input.rows, &format!("{owner}, given {}", input.input)) {
                Ok(rows) => given.push((input.input, rows)),
                Err(problem) => {
                    self.problem(problem, self.positions.at(&format!("{test_path}/given/{input_index}")));
                    failed = true;
                }
            }
        }
        let expect = match rows_of(test.expect, &format!("{owner}, expect")) {
            Ok(rows) => rows,
            Err(problem) => {
                self.problem(problem, self.positions.at(&format!("{test_path}/expect")));
                return None;
            }
        };
        let mut incremental = false;
        let (macros, vars) = test.overrides.map(|o| (o.macros, o.vars)).unwrap_or_default();
        for (name, value) in macros {
            match (name.as_str(), value) {
                ("is_incremental", Json::Bool(on)) => incremental = on,
                (other, _) => {
                    self.problem(
                        Diagnostic::new(format!(
                            "{owner}: overrides.macros supports is_incremental: true|false, not '{other}'"
                        )),
                        self.positions.at(&format!("{test_path}/overrides/macros/{name}")),
                    );
                    failed = true;
                }
            }
        }
        if failed {
            return None;
        }
        Some(UnitTestProperties {
            incremental,
            vars,
            name: test.name,
            model: test.model,
            description: test.description,
            given,
            expect,
            config: test.config.unwrap_or_default().into_iter().collect(),
            file: self.file.to_string(),
            line: self.line_at(&test_path),
            column: self.column_at(&test_path),
        })
    }
}
