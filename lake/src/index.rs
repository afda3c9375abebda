//! The partition index of a lake ([`sluice_schemas::PARTITION_INDEX`]): an empty object a
//! pair of organization and environment, written before the first data file of their folder,
//! so that a reader scoped to some organizations lists only their environments.

use bytes::Bytes;
use object_store::{ObjectStoreExt, path::Path};
use sluice_schemas::{PARTITION_INDEX, PARTITION_INDEX_COMPLETE};

use crate::{Lake, error::Result};

impl Lake {
    /// The environment and organization of a data file's key (`logs/environment=E/organization=O/…`).
    fn env_org(&self, key: &Path) -> Option<(String, String)> {
        let rel = key.prefix_match(&self.prefix)?;
        let parts: Vec<_> = rel.take(4).collect();
        let [logs, env, org, _] = parts.as_slice() else { return None };
        if logs.as_ref() != "logs" {
            return None;
        }
        Some((
            env.as_ref().strip_prefix("environment=")?.to_owned(),
            org.as_ref().strip_prefix("organization=")?.to_owned(),
        ))
    }

    fn index_key(&self, env: &str, org: &str) -> Path {
        self.key(&format!("{PARTITION_INDEX}/organization={org}/environment={env}"))
    }

    /// Makes sure the partition index has the environment and organization of the data file
    /// `key` before the file is written (once a pair and process).
    pub(crate) async fn index(&self, key: &Path) -> Result<()> {
        let Some(pair) = self.env_org(key) else { return Ok(()) };
        if self.indexed.lock().expect("index lock").contains(&pair) {
            return Ok(());
        }
        self.put_object(&self.index_key(&pair.0, &pair.1), Bytes::new()).await?;
        self.indexed.lock().expect("index lock").insert(pair);
        Ok(())
    }

    /// Indexes a lake that has no complete partition index yet (written by an earlier version,
    /// or empty), listing each environment folder once, then marks the index complete. Run by
    /// `sluice serve` at start; from then on every sluice writer keeps the index.
    pub async fn complete_index(&self) -> Result<()> {
        let complete = self.key(PARTITION_INDEX_COMPLETE);
        if self.store().head(&complete).await.is_ok() {
            return Ok(());
        }
        let values = |listing: object_store::ListResult, key: &str| -> Vec<String> {
            listing
                .common_prefixes
                .iter()
                .filter_map(|p| p.filename()?.strip_prefix(key).map(str::to_owned))
                .filter(|v| sluice_schemas::validate_partition_value(v).is_ok())
                .collect()
        };
        let logs = self.key("logs");
        for env in values(self.store().list_with_delimiter(Some(&logs)).await?, "environment=") {
            let at = logs.clone().join(format!("environment={env}"));
            for org in values(self.store().list_with_delimiter(Some(&at)).await?, "organization=") {
                self.put_object(&self.index_key(&env, &org), Bytes::new()).await?;
                self.indexed.lock().expect("index lock").insert((env.clone(), org));
            }
        }
        self.put_object(&complete, Bytes::new()).await
    }
}
