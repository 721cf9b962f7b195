//! The notification ledger of a table: one object per notification sent,
//! `_tidemark/notifications/<schema>/<table>/<key>.json`, created only if absent, so a case is
//! notified once across runs, retries and concurrent runs.

use datafusion::object_store::path::Path as StorePath;
use datafusion::object_store::{PutMode, PutPayload};
use futures::StreamExt;

use super::{MaterializeError, Warehouse};
use crate::relation::RelationName;

impl Warehouse {
    fn ledger_folder(relation: &RelationName) -> StorePath {
        StorePath::from_iter([
            "_tidemark",
            "notifications",
            relation.schema.as_str(),
            relation.identifier.as_str(),
        ])
    }

    /// The keys of the notifications already sent for `relation`'s rows.
    pub async fn notified(
        &self,
        relation: &RelationName,
    ) -> Result<std::collections::BTreeSet<String>, MaterializeError> {
        let mut keys = std::collections::BTreeSet::new();
        let mut listing = self.store.list(Some(&Self::ledger_folder(relation)));
        while let Some(entry) = listing.next().await {
            if let Some(key) = entry?.location.filename().and_then(|name| name.strip_suffix(".json")) {
                keys.insert(key.to_string());
            }
        }
        Ok(keys)
    }

    /// Records that the notification `key` was sent (`record`: what and when); one recorded
    /// already (by a concurrent run) is not an error.
    pub async fn record_notified(
        &self,
        relation: &RelationName,
        key: &str,
        record: &serde_json::Value,
    ) -> Result<(), MaterializeError> {
        let path = Self::ledger_folder(relation).join(format!("{key}.json"));
        let payload = PutPayload::from(serde_json::to_vec_pretty(record).unwrap_or_default());
        match self.store.put_opts(&path, payload, PutMode::Create.into()).await {
            Ok(_) | Err(datafusion::object_store::Error::AlreadyExists { .. }) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }
}
