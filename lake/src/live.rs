//! The live view of a lake: which files are part of it. A merged file of compaction names, in
//! its Parquet key-value metadata `sluice.replaces`, the files of its folder it replaces; a file
//! is part of the lake unless a merged file of its folder names it ([`crate::compact`] says how
//! that makes the swap atomic). Every sluice reader lists the lake through [`LiveView`].

use std::{
    collections::{BTreeSet, HashMap},
    fmt,
    sync::{Arc, Mutex, atomic::AtomicU64},
};

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt, stream::BoxStream};
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions,
    PutOptions, PutPayload, PutResult, RenameOptions, path::Path,
};

use crate::{
    error::{Error, Result},
    footer::read_footer,
};

/// File name prefix of a merged file.
pub const COMPACTED_PREFIX: &str = "compacted-";
/// Parquet key-value metadata of a merged file: a JSON list of the file names it replaces.
pub const REPLACES_KEY: &str = "sluice.replaces";

pub(crate) fn file_name(p: &Path) -> &str {
    p.as_ref().rsplit_once('/').map_or(p.as_ref(), |(_, n)| n)
}

pub(crate) fn folder(p: &Path) -> &str {
    p.as_ref().rsplit_once('/').map_or("", |(f, _)| f)
}

pub(crate) fn is_compacted(p: &Path) -> bool {
    let name = file_name(p);
    name.starts_with(COMPACTED_PREFIX) && name.ends_with(".parquet")
}

/// An object store that lists only the live files of the lake: a file that a merged file of the
/// same folder replaces is left out of every listing. Reads and writes pass through.
#[derive(Clone)]
pub struct LiveView {
    inner: Arc<dyn ObjectStore>,
    /// Merged file → (its size, the names it replaces). Merged files are never rewritten in place
    /// (each has a fresh name), so the size only guards against a foreign file of that name.
    replaced: Arc<Mutex<HashMap<Path, Replaced>>>,
    /// Bytes read through this view, when counted (see [`LiveView::counting_reads`]).
    read: Option<Arc<AtomicU64>>,
}

/// A merged file's size and the names it replaces.
type Replaced = (u64, Arc<BTreeSet<String>>);

impl fmt::Debug for LiveView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveView").field("inner", &self.inner.to_string()).finish_non_exhaustive()
    }
}

impl fmt::Display for LiveView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LiveView({})", self.inner)
    }
}

impl LiveView {
    /// A view over `inner`.
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        Self { inner, replaced: Arc::default(), read: None }
    }

    /// The same view (sharing its cache), adding the bytes of every read to `read`.
    pub fn counting_reads(&self, read: Arc<AtomicU64>) -> Self {
        Self { read: Some(read), ..self.clone() }
    }

    fn count(&self, bytes: u64) {
        if let Some(read) = &self.read {
            read.fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// The names a merged file replaces, from its footer (cached).
    pub async fn replaced_by(&self, m: &ObjectMeta) -> Result<Arc<BTreeSet<String>>> {
        if let Some((size, set)) = self.replaced.lock().expect("not poisoned").get(&m.location)
            && *size == m.size
        {
            return Ok(Arc::clone(set));
        }
        let meta = read_footer(&self.inner, m).await?;
        let value = meta
            .file_metadata()
            .key_value_metadata()
            .and_then(|kv| kv.iter().find(|k| k.key == REPLACES_KEY))
            .and_then(|k| k.value.clone())
            .unwrap_or_else(|| "[]".into());
        let names: BTreeSet<String> = serde_json::from_str(&value)
            .map_err(|source| Error::Json { what: format!("{REPLACES_KEY} of {}", m.location), source })?;
        let set = Arc::new(names);
        self.replaced.lock().expect("not poisoned").insert(m.location.clone(), (m.size, Arc::clone(&set)));
        Ok(set)
    }

    /// The live objects of a listing: those no merged file of their folder replaces. A merged
    /// file alone in its folder (a compacted hour once the files it replaced are deleted) hides
    /// nothing, so its footer is not read: a cold reader of a compacted lake of 13,824 files
    /// listed it in 0.55 s reading each one, 0.27 s without. The others are read 16 at once.
    pub async fn live(&self, objects: Vec<ObjectMeta>) -> Result<Vec<ObjectMeta>> {
        let mut in_folder: HashMap<&str, usize> = HashMap::new();
        for m in &objects {
            *in_folder.entry(folder(&m.location)).or_default() += 1;
        }
        let merged: Vec<ObjectMeta> = objects
            .iter()
            .filter(|m| is_compacted(&m.location) && in_folder.get(folder(&m.location)).is_some_and(|&n| n > 1))
            .cloned()
            .collect();
        let sets: Vec<(ObjectMeta, Arc<BTreeSet<String>>)> = futures::stream::iter(merged.into_iter().map(|m| {
            let view = self.clone();
            async move {
                let names = view.replaced_by(&m).await?;
                Ok::<_, Error>((m, names))
            }
        }))
        .buffer_unordered(16)
        .try_collect()
        .await?;
        let mut hidden: HashMap<String, BTreeSet<String>> = HashMap::new();
        for (m, names) in &sets {
            hidden.entry(folder(&m.location).to_owned()).or_default().extend(names.iter().cloned());
        }
        if hidden.is_empty() {
            return Ok(objects);
        }
        let keep: Vec<bool> = objects
            .iter()
            .map(|m| !hidden.get(folder(&m.location)).is_some_and(|h| h.contains(file_name(&m.location))))
            .collect();
        Ok(objects.into_iter().zip(keep).filter_map(|(m, k)| k.then_some(m)).collect())
    }
}

fn store_error(e: Error) -> object_store::Error {
    object_store::Error::Generic { store: "sluice lake", source: Box::new(e) }
}

#[async_trait]
impl ObjectStore for LiveView {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> object_store::Result<GetResult> {
        let got = self.inner.get_opts(location, options).await?;
        self.count(got.range.end - got.range.start);
        Ok(got)
    }

    async fn get_ranges(&self, location: &Path, ranges: &[std::ops::Range<u64>]) -> object_store::Result<Vec<Bytes>> {
        let got = self.inner.get_ranges(location, ranges).await?;
        self.count(got.iter().map(|b| b.len() as u64).sum());
        Ok(got)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let listing = self.inner.list(prefix);
        let view = self.clone();
        futures::stream::once(async move {
            let all: Vec<ObjectMeta> = listing.try_collect().await?;
            let live = view.live(all).await.map_err(store_error)?;
            Ok::<_, object_store::Error>(futures::stream::iter(live.into_iter().map(Ok)))
        })
        .try_flatten()
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let mut listing = self.inner.list_with_delimiter(prefix).await?;
        listing.objects = self.live(std::mem::take(&mut listing.objects)).await.map_err(store_error)?;
        Ok(listing)
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> object_store::Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use object_store::{ObjectStoreExt, memory::InMemory};

    use super::*;

    #[tokio::test]
    async fn a_merged_file_alone_in_its_folder_is_live_without_reading_its_footer() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        // Not Parquet: reading its footer fails, so a listing that reads it fails.
        let garbage = || PutPayload::from_static(b"not a parquet file");
        store.put(&Path::from("a/compacted-1.parquet"), garbage()).await.expect("put");
        let view = LiveView::new(Arc::clone(&store));
        let listed: Vec<ObjectMeta> = store.list(Some(&Path::from("a"))).try_collect().await.expect("list");
        assert_eq!(view.live(listed).await.expect("live").len(), 1);
        store.put(&Path::from("a/x.parquet"), garbage()).await.expect("put");
        let listed: Vec<ObjectMeta> = store.list(Some(&Path::from("a"))).try_collect().await.expect("list");
        assert!(view.live(listed).await.is_err(), "beside another file its footer says what it replaces");
    }
}
