//! Packages: what `packages.yml` (or `dependencies.yml`) lists, what `tidemark deps` installs
//! into `dbt_packages/` (the project file's `packages-install-path`), and the installed
//! packages a project loads (their macros, under the package's name).
//!
//! Entries, as in dbt:
//! - `local: ../shared_macros`: a folder, copied;
//! - `git: https://…/repo.git` with `revision:` (branch, tag or commit) and `subdirectory:`,
//!   cloned with the system `git`;
//! - `tarball: https://…/pkg.tar.gz`: a gzipped tar archive, downloaded and unpacked;
//! - `package: dbt-labs/dbt_utils` (the dbt Hub) needs the Hub's index: an error that names
//!   the package and the entry forms that work (a `git:` URL or a `tarball:`).
//!
//! `package-lock.yml` pins what was installed (see [`lock`]).
//!
//! Each package is installed under its project name (the `name:` of its `dbt_project.yml` or
//! `tidemark.yml`), first into a staging folder, then moved into place, so an interrupted
//! `deps` never leaves a half-copied package.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;

pub mod lock;

use super::{ProjectFile, SqlFile};
use crate::diagnostics::{Diagnostic, Diagnostics, Position};

/// Where a package comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Local(String),
    Git {
        url: String,
        revision: Option<String>,
        subdirectory: Option<String>,
    },
    Tarball(String),
    Hub {
        package: String,
        version: Option<String>,
    },
}

/// One entry of `packages.yml`, with where it is written.
#[derive(Debug, Clone)]
pub struct Spec {
    pub source: Source,
    pub file: String,
    pub position: Option<Position>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    packages: Vec<RawEntry>,
    /// dbt 1.6's `dependencies.yml` may list other projects (dbt Mesh), which need dbt Cloud.
    #[serde(default)]
    projects: Option<serde_yaml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    #[serde(default)]
    local: Option<String>,
    #[serde(default)]
    git: Option<String>,
    #[serde(default)]
    revision: Option<serde_yaml::Value>,
    #[serde(default)]
    subdirectory: Option<String>,
    #[serde(default)]
    tarball: Option<String>,
    #[serde(default)]
    package: Option<String>,
    #[serde(default)]
    version: Option<serde_yaml::Value>,
    /// dbt: the name of a tarball package; here the package's own project file names it.
    #[serde(default)]
    #[expect(dead_code, reason = "accepted as dbt does; the package's project file names it")]
    name: Option<String>,
    #[serde(default, rename = "warn-unpinned")]
    #[expect(dead_code, reason = "accepted as dbt does; tidemark never warns about pins")]
    warn_unpinned: Option<bool>,
}

fn scalar_text(value: &Option<serde_yaml::Value>) -> Option<String> {
    value.as_ref().map(|value| match value {
        serde_yaml::Value::String(text) => text.clone(),
        other => serde_yaml::to_string(other).unwrap_or_default().trim().to_string(),
    })
}

/// The packages the project lists (`packages.yml`, else `dependencies.yml`); none without one.
pub fn specs(root: &Path) -> Result<Vec<Spec>, Diagnostics> {
    let Some(file) = ["packages.yml", "dependencies.yml"]
        .into_iter()
        .find(|name| root.join(name).is_file())
    else {
        return Ok(Vec::new());
    };
    let text = std::fs::read_to_string(root.join(file))
        .map_err(|error| Diagnostic::new(format!("cannot read file: {error}")).in_file(file))?;
    let raw: RawFile = super::yaml::parse(file, &text)?;
    let positions = super::yaml::Positions::of(&text);
    let mut problems = Diagnostics::default();
    if raw.projects.is_some() {
        problems.push(
            Diagnostic::new("'projects:' (dbt Mesh dependencies) needs dbt Cloud; tidemark installs packages only")
                .in_file(file)
                .at_position(positions.at("projects")),
        );
    }
    let mut specs = Vec::new();
    for (index, entry) in raw.packages.into_iter().enumerate() {
        let position = positions.at(&format!("packages/{index}"));
        let at = |message: String| Diagnostic::new(message).in_file(file).at_position(position);
        let source = match (entry.local, entry.git, entry.tarball, entry.package) {
            (Some(path), None, None, None) => Source::Local(path),
            (None, Some(url), None, None) => Source::Git {
                url,
                revision: scalar_text(&entry.revision),
                subdirectory: entry.subdirectory,
            },
            (None, None, Some(url), None) => Source::Tarball(url),
            (None, None, None, Some(package)) => Source::Hub {
                package,
                version: scalar_text(&entry.version),
            },
            _ => {
                problems.push(at(
                    "a package entry has exactly one of local:, git:, tarball: or package:".into(),
                ));
                continue;
            }
        };
        specs.push(Spec {
            source,
            file: file.to_string(),
            position,
        });
    }
    problems.into_result(specs)
}

/// What `deps` did with one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    pub name: String,
    pub from: String,
    /// The entry as installed: a git revision is the commit it was at.
    pub locked: Source,
}

/// Installs every listed package into `install_path` (relative to `root`); packages no longer
/// listed are removed. A git entry with a `locked` source (same url and subdirectory) is
/// installed at the locked commit. `progress` is told about each one.
pub async fn install(
    root: &Path,
    install_path: &str,
    specs: &[Spec],
    locked: &[Source],
    mut progress: impl FnMut(&str),
) -> Result<Vec<Installed>, Diagnostics> {
    let folder = root.join(install_path);
    let staging = root.join(format!("{install_path}.staging"));
    let fail = |message: String| Diagnostics::from(Diagnostic::new(message));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).map_err(|error| fail(format!("cannot create {}: {error}", staging.display())))?;
    let mut installed = Vec::new();
    let mut problems = Diagnostics::default();
    for (index, spec) in specs.iter().enumerate() {
        let fetched = staging.join(format!("fetched-{index}"));
        let at = |message: String| Diagnostic::new(message).in_file(&spec.file).at_position(spec.position);
        let source = match (&spec.source, locked.get(index)) {
            (Source::Git { .. }, Some(pinned @ Source::Git { .. })) => pinned,
            _ => &spec.source,
        };
        let described = describe(source);
        progress(&format!("Installing {described}"));
        let package_root = match fetch(root, source, &fetched).await {
            Ok(package_root) => package_root,
            Err(message) => {
                problems.push(at(message));
                continue;
            }
        };
        let name = match package_name(&package_root) {
            Ok(name) => name,
            Err(message) => {
                problems.push(at(format!("{described}: {message}")));
                continue;
            }
        };
        if let Err(error) = copy_tree(&package_root, &staging.join("ready").join(&name)) {
            problems.push(at(format!("{described}: cannot copy it: {error}")));
            continue;
        }
        let locked = match source {
            Source::Git { url, subdirectory, .. } => Source::Git {
                url: url.clone(),
                revision: commit_of(&fetched).or_else(|| spec_revision(source)),
                subdirectory: subdirectory.clone(),
            },
            other => other.clone(),
        };
        let _ = std::fs::remove_dir_all(fetched.join(".git"));
        installed.push(Installed {
            name,
            from: described,
            locked,
        });
    }
    if !problems.is_empty() {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(problems);
    }
    // Everything fetched: replace the install folder's packages.
    let _ = std::fs::remove_dir_all(&folder);
    std::fs::create_dir_all(&folder).map_err(|error| fail(format!("cannot create {install_path}/: {error}")))?;
    for package in &installed {
        let from = staging.join("ready").join(&package.name);
        std::fs::rename(&from, folder.join(&package.name))
            .map_err(|error| fail(format!("cannot move {} into {install_path}/: {error}", package.name)))?;
    }
    let _ = std::fs::remove_dir_all(&staging);
    Ok(installed)
}

fn describe(source: &Source) -> String {
    match source {
        Source::Local(path) => format!("local package {path}"),
        Source::Git { url, revision, .. } => match revision {
            Some(revision) => format!("git package {url}@{revision}"),
            None => format!("git package {url}"),
        },
        Source::Tarball(url) => format!("tarball {url}"),
        Source::Hub { package, .. } => format!("hub package {package}"),
    }
}

/// Fetches a package into `into`; returns its root folder (where its project file is).
async fn fetch(root: &Path, source: &Source, into: &Path) -> Result<PathBuf, String> {
    match source {
        Source::Local(path) => {
            let folder = root.join(path);
            if !folder.is_dir() {
                return Err(format!("local package '{path}' is not a folder"));
            }
            Ok(folder)
        }
        Source::Git {
            url,
            revision,
            subdirectory,
        } => {
            let git = |args: &[&str]| -> Result<(), String> {
                let output = Command::new("git")
                    .args(args)
                    .env("GIT_TERMINAL_PROMPT", "0")
                    .output()
                    .map_err(|error| format!("cannot run git (is it installed?): {error}"))?;
                if output.status.success() {
                    Ok(())
                } else {
                    Err(format!(
                        "git {} failed: {}",
                        args.first().copied().unwrap_or_default(),
                        String::from_utf8_lossy(&output.stderr).trim()
                    ))
                }
            };
            let target = into.to_string_lossy().into_owned();
            git(&["clone", "--quiet", url, &target]).map_err(|message| format!("{url}: {message}"))?;
            if let Some(revision) = revision {
                git(&["-C", &target, "checkout", "--quiet", revision])
                    .map_err(|message| format!("{url}: revision '{revision}': {message}"))?;
            }
            match subdirectory {
                Some(sub) => {
                    let folder = into.join(sub);
                    match folder.is_dir() {
                        true => Ok(folder),
                        false => Err(format!("{url}: no subdirectory '{sub}'")),
                    }
                }
                None => Ok(into.to_path_buf()),
            }
        }
        Source::Tarball(url) => {
            let response = reqwest::get(url)
                .await
                .and_then(reqwest::Response::error_for_status)
                .map_err(|error| format!("cannot download {url}: {error}"))?;
            let bytes = response
                .bytes()
                .await
                .map_err(|error| format!("cannot download {url}: {error}"))?;
            let archive = flate2::read::GzDecoder::new(std::io::Cursor::new(bytes));
            tar::Archive::new(archive)
                .unpack(into)
                .map_err(|error| format!("{url} is not a gzipped tar archive: {error}"))?;
            // Archives usually hold one top folder (GitHub's do): the package is in it.
            let entries: Vec<PathBuf> = std::fs::read_dir(into)
                .map_err(|error| error.to_string())?
                .filter_map(|entry| entry.ok().map(|entry| entry.path()))
                .collect();
            match entries.as_slice() {
                [only] if only.is_dir() && package_name(into).is_err() => Ok(only.clone()),
                _ => Ok(into.to_path_buf()),
            }
        }
        Source::Hub { package, version } => Err(format!(
            "'{package}'{} is a dbt Hub package, which needs the Hub's index on the network; list it by its \
             repository instead (git: https://github.com/{package}.git with revision: <tag>) or by a \
             release archive (tarball: https://…/{package}/archive/refs/tags/<tag>.tar.gz), or as local: \
             for a copy on disk",
            version
                .as_ref()
                .map(|version| format!(" (version {version})"))
                .unwrap_or_default()
        )),
    }
}

/// The commit a clone at `folder` is at.
fn commit_of(folder: &Path) -> Option<String> {
    let output = Command::new("git")
        .args(["-C", &folder.to_string_lossy(), "rev-parse", "HEAD"])
        .output()
        .ok()?;
    let commit = String::from_utf8_lossy(&output.stdout).trim().to_string();
    (output.status.success() && !commit.is_empty()).then_some(commit)
}

fn spec_revision(source: &Source) -> Option<String> {
    match source {
        Source::Git { revision, .. } => revision.clone(),
        _ => None,
    }
}

/// The `name:` of the project file at `folder`.
fn package_name(folder: &Path) -> Result<String, String> {
    let file = super::PROJECT_FILE_NAMES
        .iter()
        .map(|name| folder.join(name))
        .find(|path| path.is_file())
        .ok_or("it has no dbt_project.yml or tidemark.yml")?;
    let text = std::fs::read_to_string(&file).map_err(|error| error.to_string())?;
    #[derive(Deserialize)]
    struct Named {
        name: String,
    }
    serde_yaml::from_str::<Named>(&text)
        .map(|named| named.name)
        .map_err(|error| format!("its project file has no name: {error}"))
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    for entry in walkdir::WalkDir::new(from) {
        let entry = entry.map_err(std::io::Error::other)?;
        let relative = entry.path().strip_prefix(from).map_err(std::io::Error::other)?;
        // Not a package's own build output, history or packages.
        if relative.components().next().is_some_and(|first| {
            [".git", "target", "dbt_packages", "logs"].contains(&&*first.as_os_str().to_string_lossy())
        }) {
            continue;
        }
        let destination = to.join(relative);
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&destination)?;
        } else if entry.file_type().is_file() {
            std::fs::copy(entry.path(), &destination)?;
        }
    }
    Ok(())
}

/// An installed package: its name and the macros it defines (generic tests included).
#[derive(Debug, Clone)]
pub struct Package {
    pub name: String,
    /// Its project file.
    pub file: ProjectFile,
    pub macros: Vec<SqlFile>,
}
