//! `package-lock.yml`: what `deps` installed for each entry of `packages.yml`, with each git
//! package pinned to the commit its `revision:` (a branch or tag) was at. While `packages.yml`
//! is unchanged (its SHA-256 is in the lock), `deps` installs the pinned commits, so every clone
//! and CI run gets the same code; `deps --upgrade` resolves the revisions again. Commit the
//! file, as with dbt.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::Source;

/// The lock file's name, beside `packages.yml`.
pub const LOCK_FILE: &str = "package-lock.yml";

#[derive(Debug, Default, Serialize, Deserialize)]
struct RawLock {
    #[serde(default)]
    packages: Vec<LockEntry>,
    /// SHA-256 of the `packages.yml` it locks: a changed file (another `revision:`, say) is
    /// resolved again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    packages_sha256: Option<String>,
}

/// One locked entry, in `packages.yml`'s own form.
#[derive(Debug, Default, Serialize, Deserialize)]
struct LockEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    local: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    git: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    revision: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    subdirectory: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tarball: Option<String>,
    /// The installed package's name (dbt writes it too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
}

/// The locked sources of `root`'s lock file, in `packages.yml` order, when it locks the
/// packages file whose text hashes to `listed_sha256`; none otherwise (no lock, another
/// packages file, or not a lock file: it is then resolved again and rewritten).
pub fn read(root: &Path, listed_sha256: &str) -> Vec<Source> {
    let Ok(text) = std::fs::read_to_string(root.join(LOCK_FILE)) else {
        return Vec::new();
    };
    let raw: RawLock = serde_yaml::from_str(&text).unwrap_or_default();
    if raw.packages_sha256.as_deref() != Some(listed_sha256) {
        return Vec::new();
    }
    raw.packages
        .into_iter()
        .filter_map(|entry| match (entry.local, entry.git, entry.tarball) {
            (Some(path), None, None) => Some(Source::Local(path)),
            (None, Some(url), None) => Some(Source::Git {
                url,
                revision: entry.revision,
                subdirectory: entry.subdirectory,
            }),
            (None, None, Some(url)) => Some(Source::Tarball(url)),
            _ => None,
        })
        .collect()
}

/// Whether `locked` locks exactly the entries `listed` (the same packages, in order; git
/// revisions may differ, since the lock pins them).
pub fn matches(listed: &[Source], locked: &[Source]) -> bool {
    listed.len() == locked.len()
        && listed.iter().zip(locked).all(|pair| match pair {
            (Source::Local(a), Source::Local(b)) | (Source::Tarball(a), Source::Tarball(b)) => a == b,
            (
                Source::Git {
                    url: a,
                    subdirectory: sa,
                    ..
                },
                Source::Git {
                    url: b,
                    subdirectory: sb,
                    ..
                },
            ) => a == b && sa == sb,
            _ => false,
        })
}

/// Writes the lock file of what was installed (each source as resolved, with its package's
/// name), through a temporary file and a rename.
pub fn write(root: &Path, installed: &[(Source, String)], listed_sha256: &str) -> std::io::Result<()> {
    let packages = installed
        .iter()
        .map(|(source, name)| {
            let mut entry = LockEntry {
                name: Some(name.clone()),
                ..LockEntry::default()
            };
            match source {
                Source::Local(path) => entry.local = Some(path.clone()),
                Source::Git {
                    url,
                    revision,
                    subdirectory,
                } => {
                    entry.git = Some(url.clone());
                    entry.revision = revision.clone();
                    entry.subdirectory = subdirectory.clone();
                }
                Source::Tarball(url) => entry.tarball = Some(url.clone()),
                Source::Hub { .. } => {}
            }
            entry
        })
        .collect();
    let lock = RawLock {
        packages,
        packages_sha256: Some(listed_sha256.to_string()),
    };
    let text = serde_yaml::to_string(&lock).map_err(std::io::Error::other)?;
    let text =
        format!("# Written by `tidemark deps`: the packages it installed, git revisions pinned to commits.\n{text}");
    let temporary = root.join(format!("{LOCK_FILE}.tmp-{}", std::process::id()));
    std::fs::write(&temporary, text)?;
    std::fs::rename(&temporary, root.join(LOCK_FILE))
}
