//! Which keys tidemark knows, so that nothing a dbt project sets is dropped without a word.
//!
//! Every config key (in the project file's folder configs, a property file's `config:`, or a
//! SQL file's `config()`) and every project-file key is one of:
//! - known: tidemark implements it (or it only documents, like `meta` and `docs`);
//! - a dbt feature tidemark does not implement: a warning names it and says it is ignored;
//! - unknown: an error with "did you mean" when it is close to a known key (a typo such as
//!   `materialzed` would otherwise leave a model a view), else a warning naming it (dbt lets
//!   projects set custom keys that their own macros read).
//!
//! Keys are compared with `-` read as `_` (`pre-hook` is `pre_hook`). `--warn-error` turns the
//! warnings into errors.

use crate::diagnostics::{did_you_mean, Diagnostic};

/// The kind of node a config applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigKind {
    Model,
    Seed,
    Test,
    Source,
    Snapshot,
}

impl ConfigKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ConfigKind::Model => "model",
            ConfigKind::Seed => "seed",
            ConfigKind::Test => "test",
            ConfigKind::Source => "source",
            ConfigKind::Snapshot => "snapshot",
        }
    }

    /// The config keys tidemark implements for this kind.
    fn known(self) -> &'static [&'static str] {
        match self {
            ConfigKind::Model => &[
                "access",
                "materialized",
                "schema",
                "alias",
                "unique_key",
                "incremental_strategy",
                "on_schema_change",
                "partition_by",
                "full_refresh",
                "contract",
                "event_time",
                "lookback_days",
                "pre_hook",
                "post_hook",
            ],
            ConfigKind::Seed => &[
                "schema",
                "alias",
                "column_types",
                "full_refresh",
                "event_time",
                "pre_hook",
                "post_hook",
            ],
            ConfigKind::Test => &[
                "severity",
                "warn_if",
                "error_if",
                "where",
                "store_failures",
                "schema",
                "alias",
            ],
            ConfigKind::Source => &["event_time", "freshness", "loaded_at_field", "external_location"],
            ConfigKind::Snapshot => &[
                "unique_key",
                "strategy",
                "updated_at",
                "check_cols",
                "hard_deletes",
                "invalidate_hard_deletes",
                "dbt_valid_to_current",
                "target_schema",
                "schema",
                "alias",
                "pre_hook",
                "post_hook",
            ],
        }
    }

    /// dbt configs of this kind that tidemark reads and does not implement, with what is lost.
    fn unimplemented(self) -> &'static [(&'static str, &'static str)] {
        match self {
            ConfigKind::Model => &[
                ("sql_header", "the header is not run before the model"),
                ("cluster_by", "tables are not clustered"),
                ("incremental_predicates", "merges compare whole tables"),
                ("merge_update_columns", "a merge replaces whole rows"),
                ("merge_exclude_columns", "a merge replaces whole rows"),
                (
                    "batch_size",
                    "microbatch models are not supported; use lookback_days and event_time",
                ),
                (
                    "begin",
                    "microbatch models are not supported; use lookback_days and event_time",
                ),
                ("lookback", "microbatch models are not supported; use lookback_days"),
                ("concurrent_batches", "microbatch models are not supported"),
                ("packages", "Python models are not supported"),
                ("submission_method", "Python models are not supported"),
            ],
            ConfigKind::Seed => &[
                ("quote_columns", "seed columns are named as the header writes them"),
                ("delimiter", "seeds are read as comma-separated"),
            ],
            ConfigKind::Test => &[
                ("store_failures_as", "stored failures are tables"),
                ("limit", "every failing row is counted"),
                ("fail_calc", "failures are the count of rows returned"),
            ],
            ConfigKind::Source => &[],
            ConfigKind::Snapshot => &[
                (
                    "snapshot_meta_column_names",
                    "the columns keep dbt's names: dbt_scd_id, dbt_updated_at, dbt_valid_from, dbt_valid_to",
                ),
                (
                    "target_database",
                    "a target writes to one warehouse; set target_schema instead",
                ),
            ],
        }
    }
}

/// Config keys every kind accepts: `enabled` and `tags` are implemented, `meta` and `docs` only
/// document.
const COMMON: &[&str] = &["enabled", "tags", "meta", "docs", "group"];

/// dbt configs of every kind that tidemark does not implement.
const COMMON_UNIMPLEMENTED: &[(&str, &str)] = &[
    ("grants", "no grants are applied"),
    ("persist_docs", "descriptions are not written to the warehouse"),
    ("database", "a target writes to one warehouse; set schema instead"),
    ("quoting", "identifiers are always quoted"),
];

/// Keys only tidemark sets itself.
const INTERNAL: &[&str] = &["test_type", "tidemark_notify", "tidemark_report_only"];

/// What a key is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyCheck {
    Known,
    /// A dbt feature tidemark ignores, and what that means.
    Unimplemented(&'static str),
    /// Not a key tidemark or dbt knows; the known key it is probably a typo of.
    Unknown(Option<&'static str>),
}

/// Classifies a config key of `kind`.
pub fn check_config(kind: ConfigKind, key: &str) -> KeyCheck {
    let key = key.replace('-', "_");
    let known = || COMMON.iter().chain(kind.known()).copied();
    if known().any(|known| known == key) || INTERNAL.contains(&key.as_str()) {
        return KeyCheck::Known;
    }
    if let Some((_, lost)) = COMMON_UNIMPLEMENTED
        .iter()
        .chain(kind.unimplemented())
        .find(|(name, _)| *name == key)
    {
        return KeyCheck::Unimplemented(lost);
    }
    KeyCheck::Unknown(did_you_mean(&key, known()))
}

/// What to report about a config key, if anything: `(diagnostic, is_error)`. `place` says where
/// it was set (`"+materialized in models: of dbt_project.yml"`-like wording is the caller's).
pub fn config_problem(kind: ConfigKind, key: &str) -> Option<(Diagnostic, bool)> {
    match check_config(kind, key) {
        KeyCheck::Known => None,
        KeyCheck::Unimplemented(lost) => Some((
            Diagnostic::new(format!(
                "{} config '{key}' is a dbt feature tidemark does not implement; it is ignored ({lost})",
                kind.as_str()
            )),
            false,
        )),
        KeyCheck::Unknown(Some(near)) => Some((
            Diagnostic::new(format!("unknown {} config '{key}'", kind.as_str()))
                .with_help(format!("did you mean '{near}'?")),
            true,
        )),
        KeyCheck::Unknown(None) => Some((
            Diagnostic::new(format!("unknown {} config '{key}'; tidemark ignores it", kind.as_str()))
                .with_help("a custom value your macros read belongs under meta: (config.get('meta'))"),
            false,
        )),
    }
}

/// Project-file keys tidemark implements.
pub const PROJECT_KEYS: &[&str] = &[
    "name",
    "profile",
    "model-paths",
    "source-paths",
    "macro-paths",
    "seed-paths",
    "data-paths",
    "test-paths",
    "target-path",
    "clean-targets",
    "vars",
    "models",
    "seeds",
    "data_tests",
    "tests",
    "on-run-start",
    "on-run-end",
    "dispatch",
    "snapshots",
    "restrict-access",
    "show",
];

/// Project-file keys that only describe the project or configure dbt's own tooling: read and
/// not needed (snapshot and analysis folders are checked for files separately).
const PROJECT_KEYS_WITHOUT_EFFECT: &[&str] = &[
    "version",
    "config-version",
    "require-dbt-version",
    "docs-paths",
    "asset-paths",
    "log-path",
    "packages-install-path",
    "snapshot-paths",
    "analysis-paths",
    "flags",
    "dbt-cloud",
    "query-comment",
];

/// dbt project-file keys whose feature tidemark does not implement.
const PROJECT_KEYS_UNIMPLEMENTED: &[(&str, &str)] = &[
    (
        "sources",
        "source configs here are not applied; set them in the sources' property files",
    ),
    ("exposures", "exposures are not read"),
    (
        "metrics",
        "dbt metrics are not read (tidemark's own are metric_models: in property files)",
    ),
    ("semantic-models", "semantic models are not read"),
    ("saved-queries", "saved queries are not read"),
    ("analyses", "analyses are not compiled"),
    ("unit_tests", "unit-test configs here are not applied"),
    ("quoting", "identifiers are always quoted"),
];

/// What to report about a project-file key, if anything: `(diagnostic, is_error)`.
pub fn project_key_problem(key: &str) -> Option<(Diagnostic, bool)> {
    if PROJECT_KEYS.contains(&key) || PROJECT_KEYS_WITHOUT_EFFECT.contains(&key) {
        return None;
    }
    if let Some((_, lost)) = PROJECT_KEYS_UNIMPLEMENTED.iter().find(|(name, _)| *name == key) {
        return Some((
            Diagnostic::new(format!(
                "'{key}:' is a dbt feature tidemark does not implement; it is ignored ({lost})"
            )),
            false,
        ));
    }
    let candidates = PROJECT_KEYS.iter().chain(PROJECT_KEYS_WITHOUT_EFFECT).copied();
    Some(match did_you_mean(key, candidates) {
        Some(near) => (
            Diagnostic::new(format!("unknown key '{key}' in the project file"))
                .with_help(format!("did you mean '{near}'?")),
            true,
        ),
        None => (
            Diagnostic::new(format!("unknown key '{key}' in the project file; tidemark ignores it")),
            false,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_keys_are_known_unimplemented_typos_or_custom() {
        assert_eq!(check_config(ConfigKind::Model, "materialized"), KeyCheck::Known);
        assert_eq!(check_config(ConfigKind::Model, "tags"), KeyCheck::Known);
        assert_eq!(
            check_config(ConfigKind::Model, "materialzed"),
            KeyCheck::Unknown(Some("materialized"))
        );
        assert_eq!(check_config(ConfigKind::Model, "post-hook"), KeyCheck::Known);
        assert!(matches!(
            check_config(ConfigKind::Model, "sql_header"),
            KeyCheck::Unimplemented(_)
        ));
        assert!(matches!(
            check_config(ConfigKind::Seed, "grants"),
            KeyCheck::Unimplemented(_)
        ));
        assert_eq!(check_config(ConfigKind::Model, "owner_team"), KeyCheck::Unknown(None));
        // Seeds have no materialization to set, tests have a severity.
        assert_eq!(check_config(ConfigKind::Test, "severity"), KeyCheck::Known);
        assert_eq!(
            check_config(ConfigKind::Test, "severty"),
            KeyCheck::Unknown(Some("severity"))
        );
        let (typo, error) = config_problem(ConfigKind::Model, "materialzed").expect("reported");
        assert!(error);
        assert_eq!(typo.help.as_deref(), Some("did you mean 'materialized'?"));
        let (custom, error) = config_problem(ConfigKind::Model, "owner_team").expect("reported");
        assert!(!error);
        assert!(custom.message.contains("owner_team"));
    }

    #[test]
    fn project_keys() {
        assert!(project_key_problem("model-paths").is_none());
        assert!(project_key_problem("snapshot-paths").is_none());
        let (typo, error) = project_key_problem("model-path").expect("reported");
        assert!(error && typo.help.is_some());
        assert!(project_key_problem("on-run-start").is_none());
        assert!(project_key_problem("dispatch").is_none());
        let (exposures, error) = project_key_problem("exposures").expect("reported");
        assert!(!error && exposures.message.contains("does not implement"));
        let (custom, error) = project_key_problem("my-company-settings").expect("reported");
        assert!(!error && custom.message.contains("ignores"));
    }
}
