//! What a lake holds: files and rows by log type, from the Parquet footers, and error records.

use std::sync::Arc;

use futures::TryStreamExt;
use object_store::ObjectStoreExt;

use crate::{Lake, error::Result, footer::read_footer, live::LiveView};

/// Files and rows in a lake, by log type, read from the Parquet footers; and error records.
#[derive(Debug, Clone, Default)]
pub struct LakeStats {
    /// logtype → (files, rows).
    pub by_logtype: std::collections::BTreeMap<String, (u64, u64)>,
    /// Error records in `errors/`.
    pub error_records: u64,
    /// Error files.
    pub error_files: u64,
}

impl Lake {
    /// Reads the metadata of a Parquet file from its footer (a suffix of the file, not all of it).
    pub async fn footer(&self, m: &object_store::ObjectMeta) -> Result<Arc<parquet::file::metadata::ParquetMetaData>> {
        read_footer(self.store(), m).await
    }

    /// Counts files and rows (from Parquet footers) and error records.
    pub async fn stats(&self) -> Result<LakeStats> {
        let mut stats = LakeStats::default();
        let logs = self.key("logs");
        let metas: Vec<object_store::ObjectMeta> = self.store().list(Some(&logs)).try_collect().await?;
        for m in LiveView::new(Arc::clone(self.store())).live(metas).await? {
            let key = m.location.to_string();
            if !key.ends_with(".parquet") {
                continue;
            }
            let Some(lt) = key.split('/').find_map(|p| p.strip_prefix("logtype=")) else { continue };
            let meta = self.footer(&m).await?;
            let e = stats.by_logtype.entry(lt.to_owned()).or_default();
            e.0 += 1;
            e.1 += meta.file_metadata().num_rows() as u64;
        }
        let errors = self.key("errors");
        let metas: Vec<object_store::ObjectMeta> = self.store().list(Some(&errors)).try_collect().await?;
        for m in metas {
            let bytes = self.store().get(&m.location).await?.bytes().await?;
            stats.error_files += 1;
            stats.error_records += bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count() as u64;
        }
        Ok(stats)
    }
}
