//! What `ref()` can name: models, seeds and snapshots by package, name and version, resolved in
//! dbt's order.
//!
//! `ref('name')` from a node of package `p` looks in the root project, then in `p`, then in any
//! package (the first by name, so the choice is stable); `ref('package', 'name')` looks only in
//! that package. A versioned model answers `ref('name')` with its latest version and
//! `ref('name', v=2)` with version 2.

use std::collections::BTreeMap;

use crate::template::RefCall;

/// One name in one package: an unversioned node, or the versions of a model.
#[derive(Debug, Clone, Default)]
struct Entry {
    /// The unique id of an unversioned model, seed or snapshot.
    unversioned: Option<String>,
    /// Version → unique id.
    versions: BTreeMap<String, String>,
    /// The version an unpinned ref reads.
    latest: Option<String>,
}

/// Why a ref names nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefMiss {
    /// No node has the name (in the package asked for, when one is).
    Name,
    /// The name is a model, but not one with this version; its versions.
    Version(Vec<String>),
    /// The name is not a versioned model, so `v=` cannot pick one.
    NotVersioned,
}

/// Every refable node by name and package.
#[derive(Debug, Clone, Default)]
pub struct RefIndex {
    root: String,
    /// name → package → entry.
    entries: BTreeMap<String, BTreeMap<String, Entry>>,
}

impl RefIndex {
    /// An empty index for a project named `root`.
    pub fn new(root: &str) -> RefIndex {
        RefIndex {
            root: root.to_string(),
            entries: BTreeMap::new(),
        }
    }

    /// Adds a node; the unique id already under this package, name and version when there is one.
    pub fn insert(&mut self, package: &str, name: &str, version: Option<&str>, unique_id: &str) -> Result<(), String> {
        let entry = self
            .entries
            .entry(name.to_string())
            .or_default()
            .entry(package.to_string())
            .or_default();
        let slot = match version {
            Some(version) => entry.versions.entry(version.to_string()).or_default(),
            None => entry.unversioned.get_or_insert_with(String::new),
        };
        if !slot.is_empty() {
            return Err(slot.clone());
        }
        unique_id.clone_into(slot);
        Ok(())
    }

    /// Sets the version an unpinned `ref('name')` reads.
    pub fn set_latest(&mut self, package: &str, name: &str, version: &str) {
        if let Some(entry) = self
            .entries
            .get_mut(name)
            .and_then(|packages| packages.get_mut(package))
        {
            entry.latest = Some(version.to_string());
        }
    }

    /// Resolves `ref([package,] name [, v=version])` made by a node of `from_package`.
    pub fn resolve(
        &self,
        from_package: &str,
        package: Option<&str>,
        name: &str,
        version: Option<&str>,
    ) -> Result<&str, RefMiss> {
        let packages = self.entries.get(name).ok_or(RefMiss::Name)?;
        let entry = match package {
            Some(package) => packages.get(package),
            None => packages
                .get(&self.root)
                .or_else(|| packages.get(from_package))
                .or_else(|| packages.values().next()),
        }
        .ok_or(RefMiss::Name)?;
        match version {
            Some(_) if entry.versions.is_empty() => Err(RefMiss::NotVersioned),
            Some(version) => entry
                .versions
                .get(version)
                .map(String::as_str)
                .ok_or_else(|| RefMiss::Version(entry.versions.keys().cloned().collect())),
            None => entry
                .latest
                .as_ref()
                .and_then(|latest| entry.versions.get(latest))
                .or(entry.unversioned.as_ref())
                .map(String::as_str)
                .ok_or(RefMiss::Name),
        }
    }

    /// What `ref('name')` from the root project names.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.resolve(&self.root, None, name, None).ok()
    }

    /// Every refable name, for "did you mean".
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// Every name with what `ref('name')` from the root project names.
    pub fn resolved(&self) -> impl Iterator<Item = (&str, &str)> {
        self.names().filter_map(|name| Some((name, self.get(name)?)))
    }

    /// The unique ids of every version of the model `name` in `package` (its one id when it is
    /// not versioned).
    pub fn all_versions(&self, package: &str, name: &str) -> Vec<&str> {
        let Some(entry) = self.entries.get(name).and_then(|packages| packages.get(package)) else {
            return Vec::new();
        };
        entry
            .unversioned
            .iter()
            .chain(entry.versions.values())
            .map(String::as_str)
            .collect()
    }
}

/// What is wrong with `call` (`ref(...)` as written), given why it names nothing and the names
/// there are.
pub fn ref_miss_message<'a>(call: &RefCall, miss: &RefMiss, names: impl Iterator<Item = &'a str>) -> String {
    let written = ref_text(call);
    match miss {
        RefMiss::Name => {
            let mut message = match &call.package {
                Some(package) => format!(
                    "{written}: no model, seed or snapshot named '{}' in package '{package}'",
                    call.name
                ),
                None => format!("{written}: no model, seed or snapshot named '{}'", call.name),
            };
            match (crate::diagnostics::did_you_mean(&call.name, names), &call.package) {
                (Some(near), Some(package)) if near == call.name => message.push_str(&format!(
                    " ('{near}' exists outside '{package}': is the package named right, and installed with `tidemark deps`?)"
                )),
                (Some(near), _) => message.push_str(&format!(" (did you mean '{near}'?)")),
                (None, _) => {}
            }
            message
        }
        RefMiss::Version(versions) => format!(
            "{written}: model '{}' has no version {}; its versions are {}",
            call.name,
            call.version.as_deref().unwrap_or_default(),
            versions.join(", ")
        ),
        RefMiss::NotVersioned => format!(
            "{written}: '{}' is not a versioned model (its properties declare no versions:), so v= cannot pick one",
            call.name
        ),
    }
}

/// A ref call as it is written in SQL.
pub fn ref_text(call: &RefCall) -> String {
    let mut arguments: Vec<String> = call
        .package
        .iter()
        .chain([&call.name])
        .map(|a| format!("'{a}'"))
        .collect();
    if let Some(version) = &call.version {
        arguments.push(format!("v={version}"));
    }
    format!("ref({})", arguments.join(", "))
}

/// Orders version identifiers as dbt does: numerically when both are numbers, else as text.
pub fn compare_versions(left: &str, right: &str) -> std::cmp::Ordering {
    match (left.parse::<f64>(), right.parse::<f64>()) {
        (Ok(left), Ok(right)) => left.total_cmp(&right),
        _ => left.cmp(right),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> RefIndex {
        let mut index = RefIndex::new("shop");
        index.insert("shop", "orders", None, "model.shop.orders").unwrap();
        index.insert("utils", "orders", None, "model.utils.orders").unwrap();
        index.insert("utils", "calendar", None, "model.utils.calendar").unwrap();
        index
            .insert("shop", "customers", Some("1"), "model.shop.customers.v1")
            .unwrap();
        index
            .insert("shop", "customers", Some("2"), "model.shop.customers.v2")
            .unwrap();
        index.set_latest("shop", "customers", "1");
        index
    }

    #[test]
    fn unpinned_refs_look_in_the_root_project_then_the_own_package_then_any() {
        let index = index();
        assert_eq!(index.resolve("shop", None, "orders", None), Ok("model.shop.orders"));
        assert_eq!(index.resolve("utils", None, "orders", None), Ok("model.shop.orders"));
        assert_eq!(
            index.resolve("utils", Some("utils"), "orders", None),
            Ok("model.utils.orders")
        );
        assert_eq!(
            index.resolve("shop", None, "calendar", None),
            Ok("model.utils.calendar")
        );
        assert_eq!(
            index.resolve("shop", Some("shop"), "calendar", None),
            Err(RefMiss::Name)
        );
    }

    #[test]
    fn versions_resolve_to_the_latest_unless_pinned() {
        let index = index();
        assert_eq!(index.get("customers"), Some("model.shop.customers.v1"));
        assert_eq!(
            index.resolve("shop", None, "customers", Some("2")),
            Ok("model.shop.customers.v2")
        );
        assert_eq!(
            index.resolve("shop", None, "customers", Some("3")),
            Err(RefMiss::Version(vec!["1".into(), "2".into()]))
        );
        assert_eq!(
            index.resolve("shop", None, "orders", Some("1")),
            Err(RefMiss::NotVersioned)
        );
        assert_eq!(index.all_versions("shop", "customers").len(), 2);
    }

    #[test]
    fn a_second_node_with_the_same_package_name_and_version_is_refused() {
        let mut index = index();
        assert_eq!(
            index.insert("shop", "orders", None, "seed.shop.orders"),
            Err("model.shop.orders".to_string())
        );
        assert!(index
            .insert("shop", "customers", Some("3"), "model.shop.customers.v3")
            .is_ok());
    }

    #[test]
    fn numeric_versions_order_as_numbers() {
        let mut versions = vec!["10", "9", "2.5"];
        versions.sort_by(|a, b| compare_versions(a, b));
        assert_eq!(versions, ["2.5", "9", "10"]);
    }
}
