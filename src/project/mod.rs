//! Stage 1 — project: the only module that reads project files.
//!
//! [`load`] finds the project file (`tidemark.yml`, else `dbt_project.yml`), then reads every
//! model, macro, singular test, seed path and property file under the configured folders, in a
//! stable order. It collects every problem before failing. [`load_target`] reads `profiles.yml`.

pub mod keys;
pub mod packages;
pub mod profiles;
pub mod project_file;
pub mod properties;
pub mod render;
pub mod scaffold;
pub mod selectors;
pub mod yaml;

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::diagnostics::{Diagnostic, Diagnostics};
pub use profiles::{Engine, Secret, SqlDialect, StorageSettings, Target};
pub use project_file::{ConfigMap, ProjectFile};
pub use properties::{
    ColumnProperties, GroupProperties, NodeProperties, PropertyFile, Rows, SourceFormat, SourceProperties, SourceTable,
    TestDeclaration, UnitTestProperties, VersionProperties,
};

/// Project file names, in order of preference.
pub const PROJECT_FILE_NAMES: &[&str] = &["tidemark.yml", "dbt_project.yml"];

/// A source file of the project (model, macro or singular test).
#[derive(Debug, Clone)]
pub struct SqlFile {
    /// Path relative to the project root, with `/` separators (`models/staging/stg_events.sql`).
    pub path: String,
    /// Path relative to its model/macro/test folder, without extension, split into parts
    /// (`["staging", "stg_events"]`); the node's fully qualified name is built from it.
    pub parts: Vec<String>,
    pub text: String,
    /// The installed package it belongs to (`None`: the project's own).
    pub package: Option<String>,
}

impl SqlFile {
    /// The file's stem: the node name.
    pub fn name(&self) -> &str {
        self.parts.last().map(String::as_str).unwrap_or_default()
    }
}

/// A seed CSV. Its contents are data: the engine reads it when the seed is loaded.
#[derive(Debug, Clone)]
pub struct SeedFile {
    pub path: String,
    pub parts: Vec<String>,
    pub absolute_path: PathBuf,
    /// SHA-256 of the file's bytes (what `state:modified` compares); empty if it is unreadable,
    /// which loading the seed reports.
    pub checksum: String,
    /// The installed package it belongs to (`None`: the project's own).
    pub package: Option<String>,
}

/// Everything read from a project folder.
#[derive(Debug, Clone)]
pub struct Project {
    pub root: PathBuf,
    pub file: ProjectFile,
    pub models: Vec<SqlFile>,
    pub macros: Vec<SqlFile>,
    pub singular_tests: Vec<SqlFile>,
    pub seeds: Vec<SeedFile>,
    pub property_files: Vec<PropertyFile>,
    /// Named selectors of `selectors.yml` (empty without one).
    pub selectors: Vec<selectors::Selector>,
    /// Snapshot files (`snapshot-paths`), each holding `{% snapshot name %}` blocks.
    pub snapshots: Vec<SqlFile>,
    /// Installed packages (`tidemark deps`), each with its macros.
    pub packages: Vec<packages::Package>,
    /// Docs blocks (`{% docs name %}` in `.md` files), by name: what `doc('name')` returns.
    pub docs: std::sync::Arc<std::collections::BTreeMap<String, render::DocsBlock>>,
}

/// A project loaded for a target: its property files rendered with the target and the vars.
pub struct Loaded {
    pub project: Project,
    pub target: Target,
    /// The project's vars with `--vars` applied.
    pub vars: std::collections::BTreeMap<String, serde_json::Value>,
}

/// Reads only the project file at `root` (`tidemark deps` needs no more).
pub fn read_project_file(root: &Path) -> Result<ProjectFile, Diagnostics> {
    let Some((file_name, path)) = PROJECT_FILE_NAMES
        .iter()
        .map(|name| (*name, root.join(name)))
        .find(|(_, path)| path.is_file())
    else {
        return Err(Diagnostic::new(format!("no tidemark.yml or dbt_project.yml in '{}'", root.display())).into());
    };
    let text = read(&path, file_name)?;
    project_file::parse(file_name, &text).map_err(Diagnostics)
}

/// Reads the project at `root` as it is written: Jinja in property-file values is not rendered
/// (see [`load_for_target`]).
pub fn load(root: &Path) -> Result<Project, Diagnostics> {
    load_project(root, |_, _, _| Ok(None))
}

/// Reads the project at `root` and picks its target (see [`load_target`]); property-file values
/// are rendered with `var` (the project's vars, overridden by `vars`: `--vars` as YAML or
/// JSON), `env_var`, `target` and `doc`.
pub fn load_for_target(
    root: &Path,
    profiles_dir: Option<&Path>,
    requested_target: Option<&str>,
    vars: Option<&str>,
) -> Result<Loaded, Diagnostics> {
    let mut chosen = None;
    let project = load_project(root, |root, file, docs| {
        let target = load_target_of(root, &file.profile, profiles_dir, requested_target)?;
        let vars = merged_vars(&file.vars, vars)?;
        let context = render::PropertyContext::new(&file.name, &target, vars.clone(), docs);
        chosen = Some((target, vars));
        Ok(Some(context))
    })?;
    let (target, vars) = chosen.ok_or_else(|| Diagnostic::new("internal error: the target was not loaded"))?;
    Ok(Loaded { project, target, vars })
}

/// The project's vars overridden by `--vars` (YAML or JSON).
pub(crate) fn merged_vars(
    project_vars: &std::collections::BTreeMap<String, serde_json::Value>,
    overrides: Option<&str>,
) -> Result<std::collections::BTreeMap<String, serde_json::Value>, Diagnostic> {
    let mut vars = project_vars.clone();
    if let Some(text) = overrides {
        let parsed: std::collections::BTreeMap<String, serde_json::Value> =
            serde_yaml::from_str(text).map_err(|error| {
                Diagnostic::new(format!("--vars is not a YAML/JSON mapping: {error}"))
                    .with_help("write it as --vars '{name: value, other: 2}'")
            })?;
        vars.extend(parsed);
    }
    Ok(vars)
}

/// Reads the project; `context_for` makes the context its property files are rendered in
/// (none: as written) once the project file and docs blocks are read.
fn load_project<'a>(
    root: &Path,
    context_for: impl FnOnce(
            &Path,
            &ProjectFile,
            std::sync::Arc<std::collections::BTreeMap<String, render::DocsBlock>>,
        ) -> Result<Option<render::PropertyContext>, Diagnostic>
        + 'a,
) -> Result<Project, Diagnostics> {
    let root = root
        .canonicalize()
        .map_err(|error| Diagnostic::new(format!("cannot open project folder '{}': {error}", root.display())))?;
    let Some((file_name, project_file_path)) = PROJECT_FILE_NAMES
        .iter()
        .map(|name| (*name, root.join(name)))
        .find(|(_, path)| path.is_file())
    else {
        return Err(
            Diagnostic::new(format!("no tidemark.yml or dbt_project.yml in '{}'", root.display()))
                .with_help("run tidemark inside a project folder, or pass --project-dir")
                .into(),
        );
    };
    let text = read(&project_file_path, file_name)?;
    let file = project_file::parse(file_name, &text).map_err(Diagnostics)?;

    let mut problems = Diagnostics::default();
    // Each folder is listed once, however many kinds of file are then taken from it.
    let listings: std::cell::RefCell<std::collections::HashMap<PathBuf, Vec<PathBuf>>> = Default::default();
    let collect =
        |folders: &[String], extension: &str, problems: &mut Diagnostics| -> Vec<(String, Vec<String>, PathBuf)> {
            let mut found = Vec::new();
            for folder in folders {
                let base = root.join(folder);
                if !base.is_dir() {
                    continue;
                }
                let mut listed = listings.borrow_mut();
                let files = listed.entry(base.clone()).or_insert_with(|| {
                    let mut files = Vec::new();
                    for entry in walkdir::WalkDir::new(&base).sort_by_file_name() {
                        match entry {
                            Ok(entry) if entry.file_type().is_file() => files.push(entry.into_path()),
                            Ok(_) => {}
                            Err(error) => problems.push(Diagnostic::new(format!("cannot read '{folder}': {error}"))),
                        }
                    }
                    files
                });
                for path in files.iter() {
                    if path.extension().and_then(|e| e.to_str()) != Some(extension) {
                        continue;
                    }
                    let relative_to_root = relative_path(&root, path);
                    let mut parts: Vec<String> = path
                        .strip_prefix(&base)
                        .unwrap_or(path)
                        .with_extension("")
                        .components()
                        .map(|c| c.as_os_str().to_string_lossy().into_owned())
                        .collect();
                    if parts.is_empty() {
                        parts.push(String::new());
                    }
                    found.push((relative_to_root, parts, path.clone()));
                }
            }
            found
        };

    let read_all = |entries: Vec<(String, Vec<String>, PathBuf)>| -> (Vec<SqlFile>, Diagnostics) {
        let results: Vec<Result<SqlFile, Diagnostic>> = entries
            .into_par_iter()
            .map(|(path, parts, absolute)| {
                Ok(SqlFile {
                    text: read(&absolute, &path)?,
                    path,
                    parts,
                    package: None,
                })
            })
            .collect();
        let mut files = Vec::new();
        let mut problems = Diagnostics::default();
        for result in results {
            match result {
                Ok(file) => files.push(file),
                Err(diagnostic) => problems.push(diagnostic),
            }
        }
        (files, problems)
    };

    let (mut models, model_problems) = read_all(collect(&file.model_paths, "sql", &mut problems));
    let (macros, macro_problems) = read_all(collect(&file.macro_paths, "sql", &mut problems));
    let (tests, test_problems) = read_all(collect(&file.test_paths, "sql", &mut problems));
    // `<test-path>/generic/` holds custom generic tests (`{% test %}` blocks): macro files.
    let (generic, singular_tests): (Vec<SqlFile>, Vec<SqlFile>) = tests
        .into_iter()
        .partition(|test| test.parts.len() > 1 && test.parts[0] == "generic");
    let mut macros = macros;
    macros.extend(generic);
    problems.extend(model_problems);
    problems.extend(macro_problems);
    problems.extend(test_problems);

    // Installed packages: each folder of the install path with a project file; every listed
    // package must be installed.
    let mut packages = Vec::new();
    // Package models, seeds and property files join the project's, marked with their package.
    let mut package_seeds = Vec::new();
    let mut package_yaml = Vec::new();
    let install = root.join(&file.packages_install_path);
    match packages::specs(&root) {
        Ok(specs) => {
            let installed = std::fs::read_dir(&install)
                .map(|entries| {
                    entries
                        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default();
            if installed.len() < specs.len() {
                problems.push(
                    Diagnostic::new(format!(
                        "{} package{} listed in {}, {} installed in {}/",
                        specs.len(),
                        if specs.len() == 1 { " is" } else { "s are" },
                        specs.first().map(|spec| spec.file.as_str()).unwrap_or("packages.yml"),
                        installed.len(),
                        file.packages_install_path
                    ))
                    .with_help("run `tidemark deps` to install them"),
                );
            }
            let mut folders: Vec<PathBuf> = installed.into_iter().filter(|path| path.is_dir()).collect();
            folders.sort();
            for folder in folders {
                let Some(name) = PROJECT_FILE_NAMES.iter().find(|name| folder.join(name).is_file()) else {
                    continue;
                };
                let base = relative_path(&root, &folder);
                let package_file = match read(&folder.join(name), &format!("{base}/{name}")) {
                    Ok(text) => project_file::parse(&format!("{base}/{name}"), &text),
                    Err(diagnostic) => Err(vec![diagnostic]),
                };
                let package_file = match package_file {
                    Ok(package_file) => package_file,
                    Err(diagnostics) => {
                        diagnostics.into_iter().for_each(|d| problems.push(d));
                        continue;
                    }
                };
                let within = |folders: &[String]| folders.iter().map(|f| format!("{base}/{f}")).collect::<Vec<_>>();
                let (mut package_macros, macro_problems) =
                    read_all(collect(&within(&package_file.macro_paths), "sql", &mut problems));
                let (tests, test_problems) = read_all(collect(&within(&package_file.test_paths), "sql", &mut problems));
                package_macros.extend(
                    tests
                        .into_iter()
                        .filter(|test| test.parts.len() > 1 && test.parts[0] == "generic"),
                );
                problems.extend(macro_problems);
                problems.extend(test_problems);
                let (package_models, model_problems) =
                    read_all(collect(&within(&package_file.model_paths), "sql", &mut problems));
                problems.extend(model_problems);
                models.extend(package_models.into_iter().map(|model| SqlFile {
                    package: Some(package_file.name.clone()),
                    ..model
                }));
                for (path, parts, absolute_path) in collect(&within(&package_file.seed_paths), "csv", &mut problems) {
                    package_seeds.push((path, parts, absolute_path, package_file.name.clone()));
                }
                let mut files = Vec::new();
                for extension in ["yml", "yaml"] {
                    files.extend(collect(&within(&package_file.model_paths), extension, &mut problems));
                }
                files.extend(collect(&within(&package_file.seed_paths), "yml", &mut problems));
                package_yaml.extend(files.into_iter().map(|entry| (entry, Some(package_file.name.clone()))));
                packages.push(packages::Package {
                    name: package_file.name.clone(),
                    file: package_file,
                    macros: package_macros,
                });
            }
        }
        Err(diagnostics) => problems.extend(diagnostics),
    }

    // dbt resources tidemark does not build yet: said, not skipped in silence.
    let mut file = file;
    let mut ignored = Vec::new();
    for (path, _, _) in collect(&file.analysis_paths, "sql", &mut problems) {
        ignored.push(
            Diagnostic::new("this file is an analysis: tidemark does not compile analyses, so it is ignored")
                .in_file(path),
        );
    }
    file.warnings.extend(ignored);
    // Snapshots (`{% snapshot name %}` blocks).
    let (snapshots, snapshot_problems) = read_all(collect(&file.snapshot_paths, "sql", &mut problems));
    problems.extend(snapshot_problems);

    let seeds = collect(&file.seed_paths, "csv", &mut problems)
        .into_iter()
        .map(|(path, parts, absolute_path)| (path, parts, absolute_path, None))
        .chain(
            package_seeds
                .into_iter()
                .map(|(path, parts, absolute_path, package)| (path, parts, absolute_path, Some(package))),
        )
        .map(|(path, parts, absolute_path, package)| SeedFile {
            checksum: std::fs::read(&absolute_path)
                .map(|bytes| sha256(&bytes))
                .unwrap_or_default(),
            path,
            parts,
            absolute_path,
            package,
        })
        .collect();

    // Docs blocks, then the context property files are rendered in.
    let mut docs = std::collections::BTreeMap::new();
    let doc_folders: Vec<String> = [&file.model_paths, &file.seed_paths, &file.macro_paths, &file.test_paths]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
    for (path, _, absolute) in collect(&doc_folders, "md", &mut problems) {
        let blocks = read(&absolute, &path).and_then(|text| render::docs_blocks(&path, &text));
        match blocks {
            Ok(blocks) => {
                for (name, block) in blocks {
                    if let Some(previous) = docs.get(&name) {
                        let previous: &render::DocsBlock = previous;
                        problems.push(
                            Diagnostic::new(format!(
                                "docs block '{name}' is defined twice (also in {}:{})",
                                previous.file, previous.line
                            ))
                            .in_file(&block.file)
                            .at_line(Some(block.line)),
                        );
                        continue;
                    }
                    docs.insert(name, block);
                }
            }
            Err(diagnostic) => problems.push(diagnostic),
        }
    }
    let docs = std::sync::Arc::new(docs);
    let context = match context_for(&root, &file, docs.clone()) {
        Ok(context) => context,
        Err(diagnostic) => {
            problems.push(diagnostic);
            return Err(problems);
        }
    };

    let mut yaml_entries: Vec<_> = collect(&file.model_paths, "yml", &mut problems)
        .into_iter()
        .chain(collect(&file.model_paths, "yaml", &mut problems))
        .chain(collect(&file.seed_paths, "yml", &mut problems))
        .map(|entry| (entry, None))
        .collect();
    yaml_entries.extend(package_yaml);
    yaml_entries.sort_by(|a, b| a.0 .0.cmp(&b.0 .0));
    yaml_entries.dedup_by(|a, b| a.0 .0 == b.0 .0);
    let parsed: Vec<Result<PropertyFile, Vec<Diagnostic>>> = yaml_entries
        .into_par_iter()
        .map(|((path, _, absolute), package)| {
            let text = read(&absolute, &path).map_err(|d| vec![d])?;
            let mut parsed = properties::parse(&path, &text, context.as_ref())?;
            parsed.package = package;
            Ok(parsed)
        })
        .collect();
    let mut property_files: Vec<PropertyFile> = Vec::new();
    for result in parsed {
        match result {
            Ok(file) => property_files.push(file),
            Err(diagnostics) => diagnostics.into_iter().for_each(|d| problems.push(d)),
        }
    }

    // Unit test fixtures (CSV files) are read now, like every other project file.
    for property_file in &mut property_files {
        let file_name = property_file.file.clone();
        for test in &mut property_file.unit_tests {
            let line = test.line;
            let rows = test
                .given
                .iter_mut()
                .map(|(_, rows)| rows)
                .chain(std::iter::once(&mut test.expect));
            for rows in rows {
                let Rows::Fixture(name) = rows else { continue };
                let candidates: Vec<PathBuf> = std::iter::once(root.join(name.as_str()))
                    .chain(file.test_paths.iter().flat_map(|folder| {
                        let base = root.join(folder).join("fixtures");
                        [base.join(name.as_str()), base.join(format!("{name}.csv"))]
                    }))
                    .collect();
                match candidates.iter().find(|path| path.is_file()) {
                    Some(path) => match read(path, &relative_path(&root, path)) {
                        Ok(text) => *rows = Rows::Csv(text),
                        Err(diagnostic) => problems.push(diagnostic),
                    },
                    None => problems.push(
                        Diagnostic::new(format!(
                            "unit test '{}': fixture '{name}' not found (looked for {})",
                            test.name,
                            candidates
                                .iter()
                                .map(|path| relative_path(&root, path))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ))
                        .in_file(&file_name)
                        .at_line(line),
                    ),
                }
            }
        }
    }

    let selectors_path = root.join("selectors.yml");
    let mut selectors = Vec::new();
    if selectors_path.is_file() {
        match read(&selectors_path, "selectors.yml").and_then(|text| selectors::parse("selectors.yml", &text)) {
            Ok(parsed) => selectors = parsed,
            Err(diagnostic) => problems.push(diagnostic),
        }
    }

    problems.into_result(Project {
        root,
        file,
        models,
        macros,
        singular_tests,
        snapshots,
        seeds,
        property_files,
        selectors,
        packages,
        docs,
    })
}

/// Reads `profiles.yml` (from `profiles_dir`, else the project folder) and picks the target.
/// Without a profiles file the embedded default target is used.
pub fn load_target(
    project: &Project,
    profiles_dir: Option<&Path>,
    requested_target: Option<&str>,
) -> Result<Target, Diagnostic> {
    load_target_of(&project.root, &project.file.profile, profiles_dir, requested_target)
}

/// [`load_target`] for the project at `root` whose profile is `profile`.
fn load_target_of(
    root: &Path,
    profile: &str,
    profiles_dir: Option<&Path>,
    requested_target: Option<&str>,
) -> Result<Target, Diagnostic> {
    let folder = profiles_dir
        .map(Path::to_path_buf)
        .unwrap_or_else(|| root.to_path_buf());
    let mut path = folder.join("profiles.yml");
    let mut display_name = match profiles_dir {
        Some(_) => path.display().to_string(),
        None => "profiles.yml".to_string(),
    };
    // As dbt: without one in the project, `~/.dbt/profiles.yml` when it defines this profile.
    if profiles_dir.is_none() && !path.is_file() {
        if let Some(home) = dbt_profiles_defining(profile) {
            path = home;
            display_name = "~/.dbt/profiles.yml".to_string();
        }
    }
    if !path.is_file() {
        if profiles_dir.is_some() {
            return Err(Diagnostic::new(format!("no profiles.yml in '{}'", folder.display())));
        }
        let mut target = Target::embedded_default(profile);
        if let Some(name) = requested_target {
            if name != target.name {
                return Err(Diagnostic::new(format!(
                    "target '{name}' was requested, but there is no profiles.yml; the built-in target is 'dev'"
                )));
            }
            target.name = name.to_string();
        }
        return Ok(target);
    }
    let text = read(&path, &display_name)?;
    let text =
        crate::jinja::render_config_text(&display_name, &text).map_err(|mut diagnostics| diagnostics.0.remove(0))?;
    profiles::select_target(&path, &display_name, &text, profile, requested_target)
}

/// `~/.dbt/profiles.yml` (dbt's default place) if it exists and defines `profile`.
fn dbt_profiles_defining(profile: &str) -> Option<PathBuf> {
    let home = std::env::var_os("HOME").or_else(|| std::env::var_os("USERPROFILE"))?;
    let path = PathBuf::from(home).join(".dbt").join("profiles.yml");
    let text = std::fs::read_to_string(&path).ok()?;
    let profiles: serde_yaml::Mapping = serde_yaml::from_str(&text).ok()?;
    profiles.contains_key(profile).then_some(path)
}

fn read(path: &Path, display: &str) -> Result<String, Diagnostic> {
    std::fs::read_to_string(path)
        .map_err(|error| Diagnostic::new(format!("cannot read file: {error}")).in_file(display))
}

fn relative_path(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// Lower-case hex SHA-256 of `bytes`: the checksums of models, seeds and macros in
/// `manifest.json`, compared by `state:modified`.
pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}
