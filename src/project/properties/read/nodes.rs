//! Model and seed properties (`models:`, `seeds:`), a model's `versions:`, and `snapshots:`.

use super::*;

impl Reader<'_> {
    /// Reads the `models:` or `seeds:` entries (`kind` is the section's key).
    pub(super) fn node_properties(&mut self, entries: Vec<RawNodeProperties>, kind: &str) -> Vec<NodeProperties> {
        let config_kind = if kind == "models" {
            ConfigKind::Model
        } else {
            ConfigKind::Seed
        };
        entries
            .into_iter()
            .enumerate()
            .map(|(index, entry)| self.node(format!("{kind}/{index}"), config_kind, entry))
            .collect()
    }

    /// Reads the model or seed at `path`.
    fn node(&mut self, path: String, config_kind: ConfigKind, entry: RawNodeProperties) -> NodeProperties {
        self.ignored(
            &path,
            &[
                (
                    "constraints",
                    "constraints are not checked; contract: {enforced: true} checks names and data_types",
                ),
                ("deprecation_date", "deprecations are not reported"),
            ],
        );
        self.check_config(
            config_kind,
            entry.config.iter().flat_map(|config| config.keys()),
            &format!("{path}/config"),
        );
        let mut config = access_and_group(entry.access.as_deref(), entry.group.as_deref());
        config.extend(entry.config.clone().unwrap_or_default());
        let columns = self.columns_of(entry.columns.into_iter().enumerate().collect(), &entry.name, &path);
        if config_kind == ConfigKind::Seed && !entry.versions.is_empty() {
            self.problem(
                Diagnostic::new(format!("seed '{}': only models have versions:", entry.name)),
                self.positions.at(&format!("{path}/versions")),
            );
        }
        let mut versions = Vec::new();
        for (version_index, version) in entry.versions.into_iter().enumerate() {
            let version_path = format!("{path}/versions/{version_index}");
            if let Some(version) = self.version(&entry.name, &version_path, config_kind, version, &columns) {
                versions.push(version);
            }
        }
        let latest_version = entry.latest_version.as_ref().map(|value| {
            let text = versions::version_text(value).unwrap_or_else(|| value.to_string());
            (text, self.positions.value_at(&format!("{path}/latest_version")))
        });
        NodeProperties {
            line: self.line_at(&path),
            column: self.column_at(&path),
            config_positions: ["access", "group"]
                .into_iter()
                .filter_map(|key| Some((key.to_string(), self.positions.value_at(&format!("{path}/{key}"))?)))
                .chain(entry.config.iter().flatten().filter_map(|(key, _)| {
                    let at = self.positions.value_at(&format!("{path}/config/{key}"))?;
                    Some((key.clone(), at))
                }))
                .collect(),
            config,
            // Read after the versions, so their diagnostics come first.
            tests: self.test_declarations(&entry.tests, &entry.name, &path),
            columns,
            versions,
            latest_version,
            name: entry.name,
            description: entry.description,
            file: self.file.to_string(),
        }
    }

    /// Reads the version of model `model` at `version_path`, over the model's `columns`; a
    /// version whose `v:` or `columns:` is invalid is reported and left out.
    fn version(
        &mut self,
        model: &str,
        version_path: &str,
        config_kind: ConfigKind,
        version: RawVersion,
        columns: &[ColumnProperties],
    ) -> Option<VersionProperties> {
        let at = self.positions.at(version_path);
        let Some(v) = versions::version_text(&version.v) else {
            self.problem(
                Diagnostic::new(format!("model '{model}': a version's v: must be a number or a name")),
                self.positions.at(&format!("{version_path}/v")).or(at),
            );
            return None;
        };
        self.ignored(
            version_path,
            &[
                ("constraints", "constraints are not checked"),
                ("deprecation_date", "deprecations are not reported"),
            ],
        );
        self.check_config(
            config_kind,
            version.config.iter().flat_map(|config| config.keys()),
            &format!("{version_path}/config"),
        );
        let chosen = match versions::VersionColumns::read(version.columns) {
            Ok(chosen) => chosen,
            Err((column_index, message)) => {
                self.problem(
                    Diagnostic::new(format!("model '{model}' version {v}: columns: {message}")),
                    self.positions.at(&format!("{version_path}/columns/{column_index}")),
                );
                return None;
            }
        };
        let own_columns = self.columns_of(chosen.own.clone(), &format!("{model}_v{v}"), version_path);
        let mut config = access_and_group(version.access.as_deref(), version.group.as_deref());
        config.extend(version.config.unwrap_or_default());
        Some(VersionProperties {
            tests: self.test_declarations(&version.tests, &format!("{model}_v{v}"), version_path),
            columns: chosen.resolve(columns, own_columns),
            v,
            defined_in: version.defined_in,
            description: version.description,
            config,
            line: at.map(|position| position.line),
            column: at.map(|position| position.column),
        })
    }

    /// Checks the `snapshots:` entries' configs and reads them.
    pub(super) fn snapshots(&mut self, raw: Vec<RawSnapshot>) -> Vec<SnapshotProperties> {
        for (index, snapshot) in raw.iter().enumerate() {
            self.check_config(
                ConfigKind::Snapshot,
                snapshot.config.iter().flat_map(|config| config.keys()),
                &format!("snapshots/{index}/config"),
            );
        }
        raw.into_iter()
            .enumerate()
            .map(|(index, snapshot)| {
                let path = format!("snapshots/{index}");
                SnapshotProperties {
                    line: self.line_at(&path),
                    column: self.column_at(&path),
                    name: snapshot.name,
                    description: snapshot.description,
                    relation: snapshot.relation,
                    config: snapshot.config.unwrap_or_default(),
                }
            })
            .collect()
    }
}

/// `access:` and `group:` written beside `config:` (dbt before 1.10), as the configs they are.
fn access_and_group(access: Option<&str>, group: Option<&str>) -> ConfigMap {
    let mut config = ConfigMap::new();
    for (key, value) in [("access", access), ("group", group)] {
        if let Some(value) = value {
            config.insert(key.to_string(), Json::from(value));
        }
    }
    config
}
