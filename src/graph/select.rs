//! Node selection with dbt's syntax.
//!
//! - Terms separated by spaces (or given as separate `--select` values) are unioned; parts of a
//!   term separated by commas are intersected.
//! - A part is `[@][N]+]method:value[+[N]]`. Methods: `tag:`, `path:`, `fqn:`, `unique_id:`, `resource_type:`,
//!   `source:`, `test_name:`, `config.<key>:`; without a method, a value with `/` or a file
//!   extension is a path and anything else is a name or an fqn pattern (`staging.*`, `*_daily`).
//! - `+x` adds ancestors, `x+` descendants (`2+x`, `x+1` limit the depth), `@x` adds the
//!   descendants and all their ancestors.
//! - `state:new|old|modified[.body|.configs|.macros|.contract|.vars]|unmodified` and `result:<status>`
//!   compare with the saved run given by `--state` ([`super::state`]); `test_type:` picks
//!   unit, data, generic or singular tests; `selector:NAME` is a named selector of
//!   `selectors.yml`.
//! - Tests are selected along with the nodes they test ("eager" indirect selection).

use std::collections::BTreeSet;

use globset::{Glob, GlobMatcher};
use serde_json::Value as Json;

use super::state::{Change, State};
use super::{Graph, Node, ResourceType};
use crate::diagnostics::Diagnostic;
use crate::project::selectors::{Expression, Selector};

/// What selection can compare with besides the graph: the saved run of `--state` and the
/// named selectors of `selectors.yml`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Context<'a> {
    pub state: Option<&'a State>,
    pub selectors: &'a [Selector],
}

/// Which nodes a command considers at all.
#[derive(Debug, Clone, Copy)]
pub struct Scope {
    pub models: bool,
    pub seeds: bool,
    pub tests: bool,
    pub sources: bool,
    pub snapshots: bool,
}

impl Scope {
    pub const ALL: Scope = Scope {
        models: true,
        seeds: true,
        tests: true,
        sources: true,
        snapshots: true,
    };

    fn includes(&self, node: &Node) -> bool {
        match node.resource_type {
            ResourceType::Model => self.models,
            ResourceType::Seed => self.seeds,
            ResourceType::Test => self.tests,
            ResourceType::Source => self.sources,
            ResourceType::Snapshot => self.snapshots,
        }
    }
}

/// Selects node ids: everything in `scope` when `select` is empty, minus `exclude`.
pub fn select(
    graph: &Graph,
    select: &[String],
    exclude: &[String],
    scope: Scope,
    context: &Context<'_>,
) -> Result<BTreeSet<String>, Diagnostic> {
    let mut selected = if select.iter().all(|s| s.trim().is_empty()) {
        graph.nodes.keys().cloned().collect()
    } else {
        evaluate(graph, select, context)?
    };
    if scope.tests {
        let tests: Vec<String> = graph
            .nodes
            .values()
            .filter(|node| node.resource_type == ResourceType::Test)
            .filter(|node| node.depends_on.iter().any(|parent| selected.contains(parent)))
            .map(|node| node.unique_id.clone())
            .collect();
        selected.extend(tests);
    }
    if !exclude.iter().all(|s| s.trim().is_empty()) {
        let excluded = evaluate(graph, exclude, context)?;
        // Tests of excluded nodes go too.
        let excluded_tests: BTreeSet<String> = graph
            .nodes
            .values()
            .filter(|node| {
                node.resource_type == ResourceType::Test && node.depends_on.iter().any(|p| excluded.contains(p))
            })
            .map(|node| node.unique_id.clone())
            .collect();
        selected.retain(|id| !excluded.contains(id) && !excluded_tests.contains(id));
    }
    selected.retain(|id| scope.includes(&graph.nodes[id]));
    Ok(selected)
}

fn evaluate(graph: &Graph, expressions: &[String], context: &Context<'_>) -> Result<BTreeSet<String>, Diagnostic> {
    let mut union = BTreeSet::new();
    for term in expressions.iter().flat_map(|expression| expression.split_whitespace()) {
        let mut intersection: Option<BTreeSet<String>> = None;
        for part in term.split(',').filter(|part| !part.is_empty()) {
            let matched = evaluate_part(graph, part, context)?;
            intersection = Some(match intersection {
                None => matched,
                Some(previous) => previous.intersection(&matched).cloned().collect(),
            });
        }
        union.extend(intersection.unwrap_or_default());
    }
    Ok(union)
}

fn evaluate_part(graph: &Graph, part: &str, context: &Context<'_>) -> Result<BTreeSet<String>, Diagnostic> {
    let invalid = |problem: Diagnostic| problem.context(format_args!("invalid selector '{part}'"));
    let (at, rest) = match part.strip_prefix('@') {
        Some(rest) => (true, rest),
        None => (false, part),
    };
    let (ancestors, rest) = split_leading_plus(rest).map_err(invalid)?;
    let (rest, descendants) = split_trailing_plus(rest).map_err(invalid)?;
    if at && (ancestors.is_some() || descendants.is_some()) {
        return Err(invalid(Diagnostic::new("'@' cannot be combined with '+'")));
    }
    let base = match rest.strip_prefix("selector:") {
        Some(name) => named_selector(graph, name, context)?,
        None => match_method(graph, rest, context).map_err(invalid)?,
    };
    let mut result = base.clone();
    for id in &base {
        if let Some(depth) = ancestors {
            result.extend(graph.ancestors(id, depth));
        }
        if let Some(depth) = descendants {
            result.extend(graph.descendants(id, depth));
        }
        if at {
            let below = graph.descendants(id, None);
            for child in &below {
                result.extend(graph.ancestors(child, None));
            }
            result.extend(graph.ancestors(id, None));
            result.extend(below);
        }
    }
    Ok(result)
}

/// `2+x` → (Some(Some(2)), "x"); `+x` → (Some(None), "x"); `x` → (None, "x").
type Depth = Option<Option<usize>>;

fn split_leading_plus(text: &str) -> Result<(Depth, &str), Diagnostic> {
    let digits = text.chars().take_while(char::is_ascii_digit).count();
    if text[digits..].starts_with('+') {
        let depth = if digits == 0 {
            None
        } else {
            Some(text[..digits].parse().map_err(|_| "bad depth".to_string())?)
        };
        Ok((Some(depth), &text[digits + 1..]))
    } else {
        Ok((None, text))
    }
}

fn split_trailing_plus(text: &str) -> Result<(&str, Depth), Diagnostic> {
    let digits = text.chars().rev().take_while(char::is_ascii_digit).count();
    let head = &text[..text.len() - digits];
    if let Some(head) = head.strip_suffix('+') {
        let depth = if digits == 0 {
            None
        } else {
            Some(
                text[text.len() - digits..]
                    .parse()
                    .map_err(|_| "bad depth".to_string())?,
            )
        };
        Ok((head, Some(depth)))
    } else {
        Ok((text, None))
    }
}

fn glob(pattern: &str) -> Result<GlobMatcher, Diagnostic> {
    Glob::new(pattern)
        .map(|g| g.compile_matcher())
        .map_err(|e| Diagnostic::new(e.to_string()))
}

/// The nodes a named selector of `selectors.yml` picks.
fn named_selector(graph: &Graph, name: &str, context: &Context<'_>) -> Result<BTreeSet<String>, Diagnostic> {
    thread_local! {
        static EXPANDING: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let Some(selector) = context.selectors.iter().find(|selector| selector.name == name) else {
        let names = context.selectors.iter().map(|selector| selector.name.as_str());
        let mut diagnostic = Diagnostic::new(format!("no selector named '{name}' in selectors.yml"));
        if let Some(near) = crate::diagnostics::did_you_mean(name, names) {
            diagnostic = diagnostic.with_help(format!("did you mean '{near}'?"));
        }
        return Err(diagnostic);
    };
    let cycle = EXPANDING.with(|stack| {
        let mut stack = stack.borrow_mut();
        if stack.iter().any(|open| open == name) {
            Some(format!("{} → {name}", stack.join(" → ")))
        } else {
            stack.push(name.to_string());
            None
        }
    });
    if let Some(path) = cycle {
        return Err(
            Diagnostic::new(format!("selectors.yml: selector '{name}' uses itself: {path}")).in_file("selectors.yml"),
        );
    }
    let result = evaluate_expression(graph, &selector.definition, context)
        .map_err(|diagnostic| diagnostic.in_file("selectors.yml"));
    EXPANDING.with(|stack| stack.borrow_mut().pop());
    result
}

fn evaluate_expression(
    graph: &Graph,
    expression: &Expression,
    context: &Context<'_>,
) -> Result<BTreeSet<String>, Diagnostic> {
    let combine = |items: &[Expression], intersect: bool| -> Result<BTreeSet<String>, Diagnostic> {
        let mut result: Option<BTreeSet<String>> = None;
        let mut excluded = BTreeSet::new();
        for item in items {
            match item {
                Expression::Exclude { exclude } => {
                    for inner in exclude {
                        excluded.extend(evaluate_expression(graph, inner, context)?);
                    }
                }
                other => {
                    let matched = evaluate_expression(graph, other, context)?;
                    result = Some(match result {
                        None => matched,
                        Some(previous) if intersect => previous.intersection(&matched).cloned().collect(),
                        Some(mut previous) => {
                            previous.extend(matched);
                            previous
                        }
                    });
                }
            }
        }
        let mut result = result.unwrap_or_default();
        result.retain(|id| !excluded.contains(id));
        Ok(result)
    };
    match expression {
        Expression::Text(text) => evaluate(graph, std::slice::from_ref(text), context),
        Expression::Method(method) => evaluate_part(graph, &method.as_text(), context),
        Expression::Union { union } => combine(union, false),
        Expression::Intersection { intersection } => combine(intersection, true),
        Expression::Exclude { .. } => Err(Diagnostic::new(
            "an `exclude:` in selectors.yml must be an item of a `union:` or `intersection:`",
        )),
    }
}

fn match_method(graph: &Graph, text: &str, context: &Context<'_>) -> Result<BTreeSet<String>, Diagnostic> {
    let (method, value) = match text.split_once(':') {
        Some((method, value)) => (method, value),
        None if text.contains('/') || text.ends_with(".sql") || text.ends_with(".csv") || text.ends_with(".yml") => {
            ("path", text)
        }
        None => ("fqn", text),
    };
    if value.is_empty() {
        return Err(Diagnostic::new(format!("'{method}:' needs a value")));
    }
    let matcher = glob(value)?;
    let nodes = graph.nodes.values();
    let matched: BTreeSet<String> = match method {
        "fqn" => {
            let parts: Vec<GlobMatcher> = value.split('.').map(glob).collect::<Result<_, _>>()?;
            nodes.filter(|node| fqn_matches(node, &parts, &matcher)).map(|n| n.unique_id.clone()).collect()
        }
        "tag" => nodes.filter(|node| node.tags.iter().any(|tag| matcher.is_match(tag))).map(|n| n.unique_id.clone()).collect(),
        "path" => {
            let prefix = value.trim_end_matches('/');
            nodes
                .filter(|node| {
                    node.resource_type != ResourceType::Test || node.generic_test().is_none()
                })
                .filter(|node| {
                    node.path == prefix
                        || node.path.starts_with(&format!("{prefix}/"))
                        || matcher.is_match(&node.path)
                })
                .map(|n| n.unique_id.clone())
                .collect()
        }
        "unique_id" => nodes.filter(|node| matcher.is_match(&node.unique_id)).map(|n| n.unique_id.clone()).collect(),
        "resource_type" => nodes
            .filter(|node| match value {
                "unit_test" => node.is_unit_test(),
                "test" => node.resource_type == ResourceType::Test && !node.is_unit_test(),
                _ => node.resource_type.as_str() == value,
            })
            .map(|n| n.unique_id.clone())
            .collect(),
        "source" => nodes
            .filter(|node| node.resource_type == ResourceType::Source)
            .filter(|node| {
                let source = &node.fqn[1];
                matcher.is_match(source) || matcher.is_match(format!("{source}.{}", node.name))
            })
            .map(|n| n.unique_id.clone())
            .collect(),
        // dbt's version selector: where a model version stands against its latest version.
        "version" => {
            let stands = |node: &Node| -> Option<std::cmp::Ordering> {
                let (version, latest) = (node.version.as_ref()?, node.latest_version.as_ref()?);
                Some(crate::graph::refs::compare_versions(version, latest))
            };
            let wanted: fn(Option<std::cmp::Ordering>) -> bool = match value {
                "latest" => |o| o == Some(std::cmp::Ordering::Equal),
                "prerelease" => |o| o == Some(std::cmp::Ordering::Greater),
                "old" => |o| o == Some(std::cmp::Ordering::Less),
                "none" => |o| o.is_none(),
                other => {
                    return Err(Diagnostic::new(format!(
                        "unknown version selector '{other}'; use latest, prerelease, old or none"
                    )))
                }
            };
            nodes
                .filter(|node| node.resource_type == ResourceType::Model && wanted(stands(node)))
                .map(|n| n.unique_id.clone())
                .collect()
        }
        "test_name" => nodes
            .filter(|node| node.generic_test().is_some_and(|test| matcher.is_match(&test.test_name)))
            .map(|n| n.unique_id.clone())
            .collect(),
        method if method.starts_with("config.") => {
            let key = &method["config.".len()..];
            nodes
                .filter(|node| match node.config.get(key) {
                    Some(Json::String(text)) => matcher.is_match(text),
                    Some(Json::Array(items)) => items.iter().any(|item| item.as_str().is_some_and(|t| matcher.is_match(t))),
                    Some(other) => matcher.is_match(other.to_string()),
                    None => false,
                })
                .map(|n| n.unique_id.clone())
                .collect()
        }
        "test_type" => nodes
            .filter(|node| node.resource_type == ResourceType::Test)
            .filter(|node| match value {
                "data" => !node.is_unit_test(),
                "unit" => node.is_unit_test(),
                "generic" => node.generic_test().is_some(),
                "singular" => node.generic_test().is_none() && !node.is_unit_test(),
                _ => false,
            })
            .map(|n| n.unique_id.clone())
            .collect(),
        "state" => {
            let state = context.state.ok_or_else(|| {
                format!("'state:{value}' compares with a saved run: pass --state DIR (the target/ folder of that run)")
            })?;
            let wanted: Option<Change> = match value {
                "modified" | "new" | "old" | "unmodified" => None,
                "modified.body" => Some(Change::Body),
                "modified.configs" => Some(Change::Configs),
                "modified.macros" => Some(Change::Macros),
                "modified.contract" => Some(Change::Contract),
                "modified.vars" => Some(Change::Vars),
                other => {
                    return Err(Diagnostic::new(format!(
                        "unknown state '{other}'; use new, old, modified, modified.body, modified.configs, modified.macros, modified.contract, modified.vars or unmodified"
                    )))
                }
            };
            nodes
                .filter(|node| {
                    let known = state.has(&node.unique_id);
                    match value {
                        "new" => !known,
                        "old" => known,
                        "unmodified" => known && state.changes(graph, node).is_empty(),
                        "modified" => !known || !state.changes(graph, node).is_empty(),
                        _ => known && wanted.is_some_and(|change| state.changes(graph, node).contains(&change)),
                    }
                })
                .map(|n| n.unique_id.clone())
                .collect()
        }
        "result" => {
            let state = context.state.ok_or_else(|| {
                format!("'result:{value}' reads the results of a saved run: pass --state DIR (the target/ folder of that run)")
            })?;
            const STATUSES: &[&str] = &["success", "error", "skipped", "skip", "pass", "fail", "warn"];
            if !STATUSES.contains(&value) {
                return Err(Diagnostic::new(format!("unknown result '{value}'; use {}", STATUSES.join(", "))));
            }
            let ids = state.with_result(value)?;
            nodes.filter(|node| ids.contains(&node.unique_id)).map(|n| n.unique_id.clone()).collect()
        }
        other => {
            return Err(Diagnostic::new(format!(
                "unknown selector method '{other}'; use tag:, path:, fqn:, unique_id:, resource_type:, source:, test_name:, test_type:, version:, config.<key>:, state:, result: or selector:"
            )))
        }
    };
    Ok(matched)
}

/// A name, a dotted fqn pattern (`staging.*`, `lms.staging`), or a folder of the fqn.
fn fqn_matches(node: &Node, parts: &[GlobMatcher], matcher: &GlobMatcher) -> bool {
    if node.resource_type == ResourceType::Source {
        return false;
    }
    // A model version answers to its model's name and to `name.v2` / `name_v2`.
    if matcher.is_match(&node.name)
        || node.version.as_ref().is_some_and(|version| {
            matcher.is_match(format!("{}.v{version}", node.name))
                || matcher.is_match(format!("{}_v{version}", node.name))
        })
    {
        return true;
    }
    let fqn = &node.fqn;
    // Match with or without the project name, as a prefix of the fqn (folders select their contents).
    [0usize, 1].iter().any(|&skip| {
        let candidate = &fqn[skip.min(fqn.len())..];
        parts.len() <= candidate.len()
            && parts
                .iter()
                .zip(candidate)
                .all(|(pattern, part)| pattern.is_match(part))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A project of four models, `a → b → c` and `a → d`, in two folders, with a test on `b`.
    fn graph() -> (tempfile::TempDir, Graph) {
        let folder = tempfile::tempdir().expect("temp");
        let root = folder.path();
        let write = |path: &str, text: &str| {
            let path = root.join(path);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("folder");
            std::fs::write(path, text).expect("write");
        };
        write("tidemark.yml", "name: sel\n");
        write("models/staging/a.sql", "{{ config(tags=['raw']) }}\nselect 1 as id\n");
        write("models/staging/b.sql", "select id from {{ ref('a') }}\n");
        write(
            "models/marts/c.sql",
            "{{ config(tags=['mart'], materialized='table') }}\nselect id from {{ ref('b') }}\n",
        );
        write(
            "models/marts/d.sql",
            "{{ config(tags=['mart']) }}\nselect id from {{ ref('a') }}\n",
        );
        write(
            "models/schema.yml",
            "version: 2\nmodels:\n  - name: b\n    columns:\n      - name: id\n        tests: [not_null]\n",
        );
        let project = crate::project::load(root).expect("project loads");
        let target = crate::project::load_target(&project, None, None).expect("target");
        let engine =
            crate::template::TemplateEngine::new(&project, &target, project.file.vars.clone()).expect("templates");
        let graph = crate::graph::build(&project, &engine, &target).expect("graph");
        (folder, graph)
    }

    /// Selected nodes by name (tests as `test:<name>`), sorted.
    fn names(graph: &Graph, select_: &[&str], exclude: &[&str], scope: Scope) -> Vec<String> {
        let owned = |values: &[&str]| values.iter().map(|v| v.to_string()).collect::<Vec<_>>();
        let ids = select(graph, &owned(select_), &owned(exclude), scope, &Context::default()).expect("selects");
        ids.iter()
            .map(|id| {
                let node = &graph.nodes[id];
                match node.resource_type {
                    ResourceType::Test => format!("test:{}", node.name),
                    _ => node.name.clone(),
                }
            })
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    const MODELS: Scope = Scope {
        models: true,
        seeds: false,
        tests: false,
        sources: false,
        snapshots: false,
    };

    #[test]
    fn graph_operators_walk_ancestors_and_descendants_to_a_depth() {
        let (_folder, graph) = graph();
        assert_eq!(names(&graph, &["+c"], &[], MODELS), ["a", "b", "c"]);
        assert_eq!(names(&graph, &["1+c"], &[], MODELS), ["b", "c"]);
        assert_eq!(names(&graph, &["a+"], &[], MODELS), ["a", "b", "c", "d"]);
        assert_eq!(names(&graph, &["a+1"], &[], MODELS), ["a", "b", "d"]);
        // `@b`: b, its descendants, and every ancestor of those.
        assert_eq!(names(&graph, &["@b"], &[], MODELS), ["a", "b", "c"]);
    }

    #[test]
    fn spaces_union_commas_intersect_and_exclude_subtracts() {
        let (_folder, graph) = graph();
        assert_eq!(names(&graph, &["tag:raw tag:mart"], &[], MODELS), ["a", "c", "d"]);
        assert_eq!(
            names(&graph, &["tag:mart,config.materialized:table"], &[], MODELS),
            ["c"]
        );
        assert_eq!(names(&graph, &["path:models/marts"], &["d"], MODELS), ["c"]);
        assert_eq!(names(&graph, &["staging.*"], &[], MODELS), ["a", "b"]);
    }

    #[test]
    fn tests_follow_the_nodes_they_test_in_and_out() {
        let (_folder, graph) = graph();
        let selected = names(&graph, &["b"], &[], Scope::ALL);
        assert_eq!(selected.len(), 2, "{selected:?}");
        assert!(selected[1].starts_with("test:not_null_b_id"), "{selected:?}");
        let excluded = names(&graph, &[], &["b"], Scope::ALL);
        assert!(!excluded.iter().any(|name| name.starts_with("test:")), "{excluded:?}");
    }

    #[test]
    fn a_bad_selector_says_what_is_wrong() {
        let (_folder, graph) = graph();
        let error = |selector: &str| {
            select(&graph, &[selector.to_string()], &[], Scope::ALL, &Context::default())
                .expect_err("rejected")
                .message
        };
        assert!(error("colour:red").contains("unknown selector method 'colour'"));
        assert!(error("@+b").contains("'@' cannot be combined with '+'"));
        assert!(error("state:modified").contains("--state"));
    }
}
