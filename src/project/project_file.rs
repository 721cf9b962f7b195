//! The project file (`tidemark.yml`, or dbt's `dbt_project.yml`) and its per-folder configs.
//!
//! Folder configs follow dbt: under `models:` / `seeds:` the first key is the project name, nested
//! keys are folders (and finally node names), and keys starting with `+` are configs that apply to
//! everything below. Deeper levels override shallower ones; `tags` accumulate and `meta` merges.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value as Json;

use super::keys::ConfigKind;
use super::yaml::Positions;
use crate::diagnostics::{Diagnostic, Position};

/// Configs as written by the user: key → JSON value. Ordered, so anything serialised is stable.
pub type ConfigMap = BTreeMap<String, Json>;

/// The parsed project file.
#[derive(Debug, Clone)]
pub struct ProjectFile {
    /// The file it came from, relative to the project root.
    pub file_name: String,
    pub name: String,
    pub profile: String,
    pub model_paths: Vec<String>,
    pub macro_paths: Vec<String>,
    pub seed_paths: Vec<String>,
    pub test_paths: Vec<String>,
    /// `dispatch:`: for a macro namespace, the packages `adapter.dispatch` searches, in order.
    pub dispatch: BTreeMap<String, Vec<String>>,
    /// Where `tidemark deps` installs packages (`packages-install-path`, default `dbt_packages`).
    pub packages_install_path: String,
    /// Snapshot folders (their `{% snapshot %}` blocks are built) and analysis folders (not
    /// compiled; a warning names their files).
    pub snapshot_paths: Vec<String>,
    pub analysis_paths: Vec<String>,
    pub target_path: String,
    pub clean_targets: Vec<String>,
    pub vars: BTreeMap<String, Json>,
    /// SQL run before a `build`/`run`/`seed`/`test` (`on-run-start:`) and after it
    /// (`on-run-end:`, which sees `results` and `schemas`), rendered when they run.
    pub on_run_start: Vec<String>,
    pub on_run_end: Vec<String>,
    pub models: FolderConfigs,
    pub seeds: FolderConfigs,
    pub data_tests: FolderConfigs,
    /// `snapshots:` folder configs (under the project name, then folders of the snapshot paths).
    pub snapshots: FolderConfigs,
    /// `restrict-access: true` (in a package): its protected models can only be read by its own.
    pub restrict_access: bool,
    /// `show: <model>`: after a successful `build` or `run`, preview that model's rows (as
    /// `--show` does, which overrides it).
    pub show: Option<String>,
    /// What the file sets that tidemark ignores: dbt features it does not implement, custom keys.
    pub warnings: Vec<Diagnostic>,
}

/// A `dispatch:` entry: where `adapter.dispatch(name, namespace)` looks, in order.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDispatch {
    macro_namespace: String,
    search_order: Vec<String>,
}

/// `on-run-start:` / `on-run-end:`: one statement or a list.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Hooks {
    One(String),
    Many(Vec<String>),
}

impl Hooks {
    fn into_vec(self) -> Vec<String> {
        match self {
            Hooks::One(one) => vec![one],
            Hooks::Many(many) => many,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RawProjectFile {
    name: String,
    #[serde(default)]
    profile: Option<String>,
    #[serde(default, alias = "source-paths")]
    model_paths: Option<Vec<String>>,
    #[serde(default)]
    macro_paths: Option<Vec<String>>,
    #[serde(default, alias = "data-paths")]
    seed_paths: Option<Vec<String>>,
    #[serde(default)]
    test_paths: Option<Vec<String>>,
    #[serde(default)]
    packages_install_path: Option<String>,
    #[serde(default)]
    dispatch: Vec<RawDispatch>,
    #[serde(default)]
    snapshot_paths: Option<Vec<String>>,
    #[serde(default)]
    analysis_paths: Option<Vec<String>>,
    #[serde(default)]
    target_path: Option<String>,
    #[serde(default)]
    clean_targets: Option<Vec<String>>,
    #[serde(default)]
    vars: Option<BTreeMap<String, Json>>,
    #[serde(default, rename = "on-run-start")]
    on_run_start: Option<Hooks>,
    #[serde(default, rename = "on-run-end")]
    on_run_end: Option<Hooks>,
    #[serde(default)]
    models: Option<serde_yaml::Value>,
    #[serde(default)]
    seeds: Option<serde_yaml::Value>,
    // `data_tests:` as dbt writes it (the struct's kebab-case would read `data-tests`).
    #[serde(default, rename = "data_tests", alias = "tests")]
    data_tests: Option<serde_yaml::Value>,
    #[serde(default)]
    snapshots: Option<serde_yaml::Value>,
    #[serde(default)]
    restrict_access: Option<bool>,
    #[serde(default)]
    show: Option<String>,
    #[serde(flatten)]
    other: BTreeMap<String, serde_yaml::Value>,
}

/// Parses the project file text. `file_name` is used in diagnostics.
pub fn parse(file_name: &str, text: &str) -> Result<ProjectFile, Vec<Diagnostic>> {
    let raw: RawProjectFile = super::yaml::parse(file_name, text).map_err(|d| vec![d])?;
    let positions = super::yaml::Positions::of(text);
    // `{{ env_var('X') }}` in values, each at its place; hooks are SQL rendered when they run.
    let raw = if text.contains("{{") || text.contains("{%") {
        let mut value: serde_yaml::Value = super::yaml::parse(file_name, text).map_err(|d| vec![d])?;
        let problems = super::render::render_project_values(&mut value, file_name, &positions);
        if !problems.is_empty() {
            return Err(problems);
        }
        serde_yaml::from_value(value)
            .map_err(|error| vec![Diagnostic::new(format!("after rendering its Jinja: {error}")).in_file(file_name)])?
    } else {
        raw
    };
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    for key in raw.other.keys() {
        if let Some((diagnostic, error)) = super::keys::project_key_problem(key) {
            let diagnostic = diagnostic.in_file(file_name).at_position(positions.at(key));
            if error {
                problems.push(diagnostic);
            } else {
                warnings.push(diagnostic);
            }
        }
    }
    let mut folder = |value: Option<serde_yaml::Value>, key: &str, kind: ConfigKind| {
        let Some(value) = value else {
            return FolderConfigs::default();
        };
        let mut reader = FolderReader {
            file_name,
            positions: &positions,
            kind,
            problems: &mut problems,
            warnings: &mut warnings,
        };
        reader.read(&value, key).unwrap_or_else(|diagnostic| {
            reader.problems.push(
                diagnostic
                    .context(format_args!("invalid '{key}:' configs"))
                    .in_file(file_name)
                    .at_position(positions.at(key)),
            );
            FolderConfigs::default()
        })
    };
    let models = folder(raw.models, "models", ConfigKind::Model);
    let seeds = folder(raw.seeds, "seeds", ConfigKind::Seed);
    // `data_tests:` is also accepted as `tests:`.
    let tests_key = if positions.contains("data_tests") {
        "data_tests"
    } else {
        "tests"
    };
    let data_tests = folder(raw.data_tests, tests_key, ConfigKind::Test);
    let snapshots = folder(raw.snapshots, "snapshots", ConfigKind::Snapshot);
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(ProjectFile {
        file_name: file_name.to_string(),
        profile: raw.profile.unwrap_or_else(|| raw.name.clone()),
        name: raw.name,
        model_paths: raw.model_paths.unwrap_or_else(|| vec!["models".into()]),
        macro_paths: raw.macro_paths.unwrap_or_else(|| vec!["macros".into()]),
        seed_paths: raw.seed_paths.unwrap_or_else(|| vec!["seeds".into()]),
        test_paths: raw.test_paths.unwrap_or_else(|| vec!["tests".into()]),
        dispatch: raw
            .dispatch
            .into_iter()
            .map(|entry| (entry.macro_namespace, entry.search_order))
            .collect(),
        packages_install_path: raw.packages_install_path.unwrap_or_else(|| "dbt_packages".into()),
        snapshot_paths: raw.snapshot_paths.unwrap_or_else(|| vec!["snapshots".into()]),
        analysis_paths: raw.analysis_paths.unwrap_or_else(|| vec!["analyses".into()]),
        target_path: raw.target_path.unwrap_or_else(|| "target".into()),
        clean_targets: raw.clean_targets.unwrap_or_else(|| vec!["target".into()]),
        vars: raw.vars.unwrap_or_default(),
        on_run_start: raw.on_run_start.map(Hooks::into_vec).unwrap_or_default(),
        on_run_end: raw.on_run_end.map(Hooks::into_vec).unwrap_or_default(),
        models,
        snapshots,
        restrict_access: raw.restrict_access.unwrap_or(false),
        show: raw.show,
        seeds,
        data_tests,
        warnings,
    })
}

/// A tree of folder-level configs (`+materialized: table` and friends).
#[derive(Debug, Clone, Default)]
pub struct FolderConfigs {
    pub configs: ConfigMap,
    pub children: BTreeMap<String, FolderConfigs>,
    /// Where this folder's key is in the project file (for "applies to nothing" warnings).
    pub position: Option<Position>,
}

/// Reads a `models:` / `seeds:` / `data_tests:` tree, checking each config key it sets.
struct FolderReader<'a> {
    file_name: &'a str,
    positions: &'a Positions,
    kind: ConfigKind,
    problems: &'a mut Vec<Diagnostic>,
    warnings: &'a mut Vec<Diagnostic>,
}

impl FolderReader<'_> {
    fn read(&mut self, value: &serde_yaml::Value, path: &str) -> Result<FolderConfigs, Diagnostic> {
        let mut tree = FolderConfigs {
            position: self.positions.at(path),
            ..FolderConfigs::default()
        };
        let serde_yaml::Value::Mapping(mapping) = value else {
            return Err(Diagnostic::new("expected a mapping of folders and +configs"));
        };
        for (key, value) in mapping {
            let key = key.as_str().ok_or("keys must be strings")?;
            let key_path = format!("{path}/{key}");
            // dbt also accepts configs without the '+' when the value is not a mapping.
            let config = match key.strip_prefix('+') {
                Some(config) => config,
                None if value.is_mapping() => {
                    tree.children.insert(key.to_string(), self.read(value, &key_path)?);
                    continue;
                }
                None => key,
            };
            if let Some((diagnostic, error)) = super::keys::config_problem(self.kind, config) {
                let diagnostic = diagnostic
                    .in_file(self.file_name)
                    .at_position(self.positions.at(&key_path));
                if error {
                    self.problems.push(diagnostic);
                } else {
                    self.warnings.push(diagnostic);
                }
            }
            tree.configs.insert(config.to_string(), yaml_to_json(value)?);
        }
        Ok(tree)
    }
}

impl FolderConfigs {
    /// Folder paths below this level (`[project, folder, ...]`) that set configs or have
    /// children, each with where it is written.
    pub fn paths(&self) -> Vec<(Vec<String>, Option<Position>)> {
        let mut found = Vec::new();
        for (name, child) in &self.children {
            found.push((vec![name.clone()], child.position));
            for (mut below, position) in child.paths() {
                below.insert(0, name.clone());
                found.push((below, position));
            }
        }
        found
    }

    /// The configs that apply to a node with this fully qualified name
    /// (`[project, folder, ..., node_name]`), shallow to deep.
    pub fn resolve(&self, fqn: &[String]) -> ConfigMap {
        let mut resolved = ConfigMap::new();
        let mut level = self;
        merge_configs(&mut resolved, &level.configs);
        for part in fqn {
            match level.children.get(part) {
                Some(child) => {
                    level = child;
                    merge_configs(&mut resolved, &level.configs);
                }
                None => break,
            }
        }
        resolved
    }
}

/// Merges `overrides` into `base` with dbt's rules: `tags` and hooks (`pre_hook`, `post_hook`,
/// also written `pre-hook`) accumulate, `meta` merges, others replace.
pub fn merge_configs(base: &mut ConfigMap, overrides: &ConfigMap) {
    for (key, value) in overrides {
        let key = match key.as_str() {
            "pre-hook" => "pre_hook",
            "post-hook" => "post_hook",
            other => other,
        };
        if key == "pre_hook" || key == "post_hook" {
            let mut hooks = match base.remove(key) {
                Some(Json::Array(hooks)) => hooks,
                Some(Json::Null) | None => Vec::new(),
                Some(one) => vec![one],
            };
            match value {
                Json::Array(more) => hooks.extend(more.iter().cloned()),
                Json::Null => {}
                one => hooks.push(one.clone()),
            }
            base.insert(key.to_string(), Json::Array(hooks));
            continue;
        }
        match (key, base.get_mut(key)) {
            ("tags", Some(existing)) => {
                let mut tags = tags_of(existing);
                for tag in tags_of(value) {
                    if !tags.contains(&tag) {
                        tags.push(tag);
                    }
                }
                *existing = Json::from(tags);
            }
            ("meta", Some(Json::Object(existing))) => {
                if let Json::Object(extra) = value {
                    for (k, v) in extra {
                        existing.insert(k.clone(), v.clone());
                    }
                }
            }
            _ => {
                base.insert(key.to_string(), value.clone());
            }
        }
    }
}

/// Tags as a list, whether written as one string or a list.
pub fn tags_of(value: &Json) -> Vec<String> {
    match value {
        Json::String(tag) => vec![tag.clone()],
        Json::Array(items) => items
            .iter()
            .filter_map(|item| item.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

/// Converts YAML to JSON (configs are stored as JSON so they serialise into the manifest as-is).
pub fn yaml_to_json(value: &serde_yaml::Value) -> Result<Json, Diagnostic> {
    serde_json::to_value(value).map_err(|error| Diagnostic::new(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_configs_inherit_with_tags_accumulating() {
        let text = "name: p\nmodels:\n  p:\n    +materialized: table\n    +tags: [all]\n    staging:\n      +materialized: view\n      +tags: staging\n      stg_x:\n        +alias: x\n";
        let file = parse("tidemark.yml", text).expect("parses");
        let fqn: Vec<String> = ["p", "staging", "stg_x"].iter().map(|s| s.to_string()).collect();
        let resolved = file.models.resolve(&fqn);
        assert_eq!(resolved["materialized"], Json::from("view"));
        assert_eq!(resolved["tags"], serde_json::json!(["all", "staging"]));
        assert_eq!(resolved["alias"], Json::from("x"));
        let other: Vec<String> = ["p", "marts", "y"].iter().map(|s| s.to_string()).collect();
        assert_eq!(file.models.resolve(&other)["materialized"], Json::from("table"));
    }

    #[test]
    fn unknown_keys_are_reported_with_a_suggestion() {
        let problems = parse("tidemark.yml", "name: p\nmodel-path: [x]\n").expect_err("unknown key");
        assert_eq!(problems[0].line, Some(2));
        assert_eq!(problems[0].help.as_deref(), Some("did you mean 'model-paths'?"));
    }
}
