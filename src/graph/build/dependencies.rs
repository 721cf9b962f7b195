//! Dependencies: every `ref` and `source` call resolved to the unique id it names.

use std::collections::{BTreeMap, BTreeSet};

use super::Parse;
use crate::diagnostics::{did_you_mean, Diagnostic};
use crate::graph::node::{Node, ResourceType};
use crate::graph::refs::{ref_miss_message, RefMiss};

impl Parse<'_> {
    /// Fills in each node's `depends_on`; unknown refs and sources are problems with the
    /// nearest name as a hint, and so is a ref its target's `access` forbids.
    pub(super) fn dependencies(&mut self) {
        let restricted: BTreeSet<&str> = self
            .project
            .packages
            .iter()
            .filter(|package| package.file.restrict_access)
            .map(|package| package.name.as_str())
            .collect();
        let Parse {
            nodes,
            refs,
            disabled,
            source_ids,
            problems,
            ..
        } = self;
        // What a ref must be allowed to read: each model's access, group and package.
        let access: BTreeMap<String, (String, Option<String>, String)> = nodes
            .values()
            .filter(|node| node.resource_type == ResourceType::Model)
            .map(|node| {
                let entry = (
                    node.access().to_string(),
                    node.group().map(str::to_string),
                    node.package().to_string(),
                );
                (node.unique_id.clone(), entry)
            })
            .collect();
        let names: Vec<&str> = refs.names().collect();
        let source_names: Vec<String> = source_ids.keys().map(|(s, t)| format!("{s}.{t}")).collect();
        for node in nodes.values_mut() {
            let mut depends_on = BTreeSet::new();
            for call in &node.refs {
                let resolved = refs.resolve(
                    node.package(),
                    call.package.as_deref(),
                    &call.name,
                    call.version.as_deref(),
                );
                match resolved {
                    Ok(id) => {
                        let denied = access.get(id).and_then(|(access, group, package)| {
                            denied_access(node, id, (access, group, package), &restricted)
                        });
                        if let Some(denied) = denied {
                            problems.push(denied.in_file(&node.path).at_line(call.line));
                        }
                        depends_on.insert(id.to_string());
                    }
                    Err(RefMiss::Name) if call.package.is_none() => {
                        problems.push(unknown_ref(node, &call.name, call.line, &names, disabled))
                    }
                    Err(miss) => problems.push(
                        Diagnostic::new(format!(
                            "{} '{}': {}",
                            node.resource_type.as_str(),
                            node.display_name(),
                            ref_miss_message(call, &miss, names.iter().copied())
                        ))
                        .in_file(&node.path)
                        .at_line(call.line),
                    ),
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

/// dbt's access rule for a ref from `node` to the model `target` (its access, group and
/// package): a private model is read only from its own group (and package, when that package
/// sets `restrict-access`); a protected model of a `restrict-access` package only from that
/// package. Tests may read anything.
fn denied_access(
    node: &Node,
    target: &str,
    (access, group, package): (&String, &Option<String>, &String),
    restricted: &BTreeSet<&str>,
) -> Option<Diagnostic> {
    if node.resource_type == ResourceType::Test {
        return None;
    }
    let other_package = node.package() != package && restricted.contains(package.as_str());
    let reason = match access.as_str() {
        "private" if node.group().is_none() || node.group() != group.as_deref() || other_package => {
            format!("private to the '{}' group", group.as_deref().unwrap_or_default())
        }
        "protected" if other_package => format!("protected to the '{package}' package"),
        _ => return None,
    };
    Some(
        Diagnostic::new(format!(
            "{} '{}' ({}) refers to {target}, which it may not: the referenced node is {reason}",
            node.resource_type.as_str(),
            node.display_name(),
            node.unique_id,
        ))
        .with_help(match access.as_str() {
            "private" => {
                "put both in one group (group: config), or make the referenced model access: protected or public"
            }
            _ => "make the referenced model access: public in its package",
        }),
    )
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
    // Never the node itself: depending on itself would be a cycle.
    if let Some(near) = did_you_mean(name, names.iter().copied().filter(|candidate| *candidate != node.name)) {
        diagnostic = diagnostic.with_help(format!("did you mean '{near}'?"));
    }
    diagnostic
}
