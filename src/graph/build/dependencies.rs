//! Dependencies: every `ref` and `source` call resolved to the unique id it names.

use std::collections::BTreeSet;

use super::Parse;
use crate::diagnostics::{did_you_mean, Diagnostic};
use crate::graph::node::Node;

impl Parse<'_> {
    /// Fills in each node's `depends_on`; unknown refs and sources are problems with the
    /// nearest name as a hint.
    pub(super) fn dependencies(&mut self) {
        let project_name = self.project_name;
        let Parse {
            nodes,
            by_name,
            disabled,
            source_ids,
            problems,
            ..
        } = self;
        let names: Vec<&str> = by_name.keys().map(String::as_str).collect();
        let source_names: Vec<String> = source_ids.keys().map(|(s, t)| format!("{s}.{t}")).collect();
        for node in nodes.values_mut() {
            let mut depends_on = BTreeSet::new();
            for call in &node.refs {
                if let Some(package) = &call.package {
                    if package != project_name {
                        problems.push(
                            Diagnostic::new(format!(
                                "{} '{}' refers to package '{package}', but packages are not supported; only '{project_name}'",
                                node.resource_type.as_str(),
                                node.name
                            ))
                            .in_file(&node.path)
                            .at_line(call.line),
                        );
                        continue;
                    }
                }
                match by_name.get(&call.name) {
                    Some(id) => {
                        depends_on.insert(id.clone());
                    }
                    None => problems.push(unknown_ref(node, &call.name, call.line, &names, disabled)),
                }
            }
            for call in &node.sources {
                match source_ids.get(&(call.source.clone(), call.table.clone())) {
                    Some(id) => {
                        depends_on.insert(id.clone());
                    }
                    None => {
                        let wanted = format!("{}.{}", call.source, call.table);
                        let mut diagnostic = Diagnostic::new(format!(
                            "{} '{}' depends on source '{wanted}', which is not declared under sources: in any property file",
                            node.resource_type.as_str(),
                            node.name
                        ))
                        .in_file(&node.path)
                        .at_line(call.line);
                        if let Some(near) = did_you_mean(&wanted, source_names.iter().map(String::as_str)) {
                            diagnostic =
                                diagnostic.with_help(format!("did you mean source('{}')?", near.replace('.', "', '")));
                        }
                        problems.push(diagnostic);
                    }
                }
            }
            if let Some(test) = node.generic_test() {
                depends_on.insert(test.tested_node.clone());
            }
            node.depends_on = depends_on.into_iter().collect();
        }
    }
}

fn unknown_ref(
    node: &Node,
    name: &str,
    line: Option<usize>,
    names: &[&str],
    disabled: &BTreeSet<String>,
) -> Diagnostic {
    let what = node.resource_type.as_str();
    if disabled.contains(name) {
        return Diagnostic::new(format!(
            "{what} '{}' depends on '{name}', which is disabled (enabled: false)",
            node.name
        ))
        .in_file(&node.path)
        .at_line(line);
    }
    let mut diagnostic = Diagnostic::new(format!(
        "{what} '{}' depends on '{name}', which was not found",
        node.name
    ))
    .in_file(&node.path)
    .at_line(line);
    if let Some(near) = did_you_mean(name, names.iter().copied()) {
        diagnostic = diagnostic.with_help(format!("did you mean '{near}'?"));
    }
    diagnostic
}
