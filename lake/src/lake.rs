//! The lake: an object store chosen by URL (a path or `file://` for local disk, `s3://bucket/prefix`
//! for S3 or any S3-compatible store) and the key layout of DESIGN.md §2.

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Datelike, Timelike, Utc};
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, local::LocalFileSystem, path::Path};
use sluice_schemas::Partition;
use sluice_schemas::{PARTITION_INDEX, PARTITION_INDEX_COMPLETE};

use crate::{
    error::{Error, Result},
    files::Written,
    write::{self, StagedFile, write_durably},
};

/// A lake: where Parquet data files and error records go.
#[derive(Debug, Clone)]
pub struct Lake {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    url: String,
    local_root: Option<std::path::PathBuf>,
    /// The (environment, organization) pairs of the partition index written (or found) by
    /// this process.
    indexed: Arc<std::sync::Mutex<std::collections::HashSet<(String, String)>>>,
    /// For a local lake: the summaries of the data files written, kept for readers.
    written: Option<Arc<Written>>,
}

impl Lake {
    /// Opens the lake at `url` for writing: a plain path or `file://…` (the folder is created if
    /// missing), or `s3://bucket/prefix` with region, credentials and endpoint from the standard
    /// AWS settings (`AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_ENDPOINT_URL`, …).
    pub async fn open(url: &str) -> Result<Self> {
        Self::open_with(url, true).await
    }

    /// Opens the lake at `url` for reading: as [`Lake::open`], but a folder that does not exist
    /// is an error (a mistyped path is not a new, empty lake).
    pub async fn open_existing(url: &str) -> Result<Self> {
        Self::open_with(url, false).await
    }

    /// The one set of rules by which a URL names a lake, for every command and both engines.
    async fn open_with(url: &str, create: bool) -> Result<Self> {
        let bad = |reason: String| Error::LakeUrl { url: url.to_owned(), reason };
        if let Some(location) = sluice_aws::S3Location::parse(url) {
            let location = location.map_err(|e| bad(e.to_string()))?;
            let store = sluice_aws::s3_store(&location.bucket).await.map_err(|e| bad(e.to_string()))?;
            let prefix = Path::parse(&location.prefix).map_err(|e| bad(e.to_string()))?;
            return Ok(Self {
                store: Arc::new(store),
                prefix,
                url: url.trim_end_matches('/').to_owned(),
                local_root: None,
                indexed: Arc::default(),
                written: None,
            });
        }
        if url.contains("://") && !url.starts_with("file://") {
            return Err(bad("unsupported scheme; use a path, file:///path or s3://bucket/prefix".into()));
        }
        let path = std::path::PathBuf::from(url.strip_prefix("file://").unwrap_or(url));
        if create {
            std::fs::create_dir_all(&path).map_err(Error::io(&path))?;
        }
        let root =
            path.canonicalize().map_err(|e| bad(format!("{e}; is this the lake folder (the one holding logs/)?")))?;
        let store = LocalFileSystem::new_with_prefix(&root)?.with_automatic_cleanup(true);
        Ok(Self {
            store: Arc::new(store),
            prefix: Path::default(),
            url: root.display().to_string(),
            written: Some(Arc::new(Written::new(&root))),
            local_root: Some(root),
            indexed: Arc::default(),
        })
    }

    /// The lake as a query engine addresses it: an object store and the URL of the lake's root
    /// in it. A local lake's files are addressed by absolute path (`file:///…/`), in a store
    /// without a prefix that reads small ranges in place ([`crate::local_reads`]); an S3 lake's
    /// as `s3://bucket/prefix/`.
    pub fn engine_store(&self) -> Result<(Arc<dyn ObjectStore>, url::Url)> {
        let bad = |reason: String| Error::LakeUrl { url: self.url.clone(), reason };
        match &self.local_root {
            Some(root) => {
                let url = url::Url::from_directory_path(root).map_err(|()| bad("not an absolute path".into()))?;
                #[cfg(unix)]
                let store = crate::local_reads::LocalReads::new();
                #[cfg(not(unix))]
                let store = LocalFileSystem::new();
                Ok((Arc::new(store), url))
            }
            None => {
                let url =
                    url::Url::parse(&format!("{}/", self.url.trim_end_matches('/'))).map_err(|e| bad(e.to_string()))?;
                Ok((Arc::clone(&self.store), url))
            }
        }
    }

    /// A lake over any object store (used by tests with in-memory or counting stores).
    pub fn with_store(store: Arc<dyn ObjectStore>, prefix: &str, url: &str) -> Self {
        Self {
            store,
            prefix: Path::from(prefix),
            url: url.to_owned(),
            local_root: None,
            indexed: Arc::default(),
            written: None,
        }
    }

    /// The object store.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The lake's URL (an absolute path for local lakes).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Where the summaries of the data files this process writes are kept (a local lake).
    pub(crate) fn written(&self) -> Option<&Written> {
        self.written.as_deref()
    }

    /// The folder on local disk, when the lake is local.
    pub fn local_root(&self) -> Option<&std::path::Path> {
        self.local_root.as_deref()
    }

    /// The key of `rel` (a `/`-separated path under the lake).
    pub fn key(&self, rel: &str) -> Path {
        let mut p = self.prefix.clone();
        for part in rel.split('/').filter(|s| !s.is_empty()) {
            p = p.join(part);
        }
        p
    }

    /// The key of a data file: `logs/{partition}/{name}`.
    pub fn data_key(&self, partition: &Partition, name: &str) -> Path {
        self.key(&format!("logs/{}/{name}", partition.path()))
    }

    /// The key of an error file: `errors/{type}/year=…/month=…/day=…/hour=…/{name}`.
    pub fn error_key(&self, output_type: &str, hour: DateTime<Utc>, name: &str) -> Path {
        self.key(&format!(
            "errors/{output_type}/year={:04}/month={:02}/day={:02}/hour={:02}/{name}",
            hour.year(),
            hour.month(),
            hour.day(),
            hour.hour()
        ))
    }

    /// Writes an object in one PUT: it becomes visible only when complete (temp + rename on disk).
    /// On local disk the file and its folder are fsynced before this returns, so a write-ahead
    /// log may be trimmed after it.
    pub async fn put(&self, key: &Path, bytes: Bytes) -> Result<()> {
        self.index(key).await?;
        self.put_object(key, bytes).await
    }

    async fn put_object(&self, key: &Path, bytes: Bytes) -> Result<()> {
        let Some(root) = &self.local_root else {
            self.store.put(key, PutPayload::from_bytes(bytes)).await?;
            return Ok(());
        };
        let file = root.join(key.as_ref());
        let (written, key) = (self.written.clone(), key.clone());
        tokio::task::spawn_blocking(move || {
            write_durably(&file, &bytes)?;
            note_written(written.as_deref(), &key, &bytes, &file);
            Ok(())
        })
        .await
        .map_err(Error::task("a durable write"))?
    }
    /// The filesystem (device number) of a local lake's root, where files can be committed in
    /// groups ([`crate::write::commit_groups`]): on Linux, which has `syncfs(2)`. `None`
    /// otherwise: files are then made durable one by one ([`Lake::put`]).
    pub fn group_commit_device(&self) -> Option<u64> {
        write::group_commit_device(self.local_root.as_ref()?)
    }

    /// Writes `bytes` beside the file of `key` without syncing it, for
    /// [`crate::write::commit_groups`]. A file that lands on another filesystem than `device` (a
    /// mount inside the lake), or a lake not on local disk, is written durably at once, as
    /// [`Lake::put`] does: `Ok(None)`.
    pub async fn stage(&self, key: &Path, bytes: Bytes, device: u64) -> Result<Option<StagedFile>> {
        let Some(root) = &self.local_root else { return self.put(key, bytes).await.map(|()| None) };
        self.index(key).await?;
        let file = root.join(key.as_ref());
        let (written, key) = (self.written.clone(), key.clone());
        tokio::task::spawn_blocking(move || {
            let staged = write::stage_file(file.clone(), &bytes, device)?;
            // A staged file keeps its modification time when renamed into place.
            let on_disk = staged.as_ref().map_or(file.as_path(), StagedFile::staged_path);
            note_written(written.as_deref(), &key, &bytes, on_disk);
            Ok(staged)
        })
        .await
        .map_err(Error::task("staging a file"))?
    }

    /// Deletes the staged files a crashed writer left in a local lake for `older_than`
    /// ([`crate::write::sweep_staged`]); returns how many. Other lakes: 0 (an S3 multipart
    /// upload never completed is the bucket's lifecycle rule's to abort).
    pub fn sweep_staged(&self, older_than: std::time::Duration) -> usize {
        self.local_root.as_deref().map_or(0, |root| write::sweep_staged(root, older_than))
    }
}

/// Keeps the summary of the data file `key` just written to `file` with `bytes`.
fn note_written(written: Option<&Written>, key: &Path, bytes: &Bytes, file: &std::path::Path) {
    if let Some(written) = written
        && let Ok(modified) = std::fs::metadata(file).and_then(|m| m.modified())
    {
        written.note(key.as_ref(), bytes, modified);
    }
}

/// The partition index ([`sluice_schemas::PARTITION_INDEX`]): an empty object a pair of
/// organization and environment, written before the first data file of their folder, so that a
/// reader scoped to some organizations lists only their environments.
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
    async fn index(&self, key: &Path) -> Result<()> {
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
