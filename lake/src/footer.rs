//! Parquet files of a lake read through the object store. The footer is read by parquet's own
//! `ParquetMetaDataReader` from a 64 KiB suffix (which holds the footer of a file of the lake
//! whole; a larger footer takes a second request). parquet 59 deprecates its
//! `ParquetObjectReader` and asks for an `AsyncFileReader` of one's own instead, so this is one:
//! byte ranges from the store, the size from the listing.

use std::{ops::Range, sync::Arc};

use bytes::Bytes;
use futures::{FutureExt, future::BoxFuture};
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use parquet::{
    arrow::{arrow_reader::ArrowReaderOptions, async_reader::AsyncFileReader},
    errors::ParquetError,
    file::metadata::{ParquetMetaData, ParquetMetaDataReader},
};

use crate::error::Result;

/// Bytes read from the end of a file for its footer at first.
const FOOTER_HINT: usize = 64 << 10;

/// A Parquet file of a lake, read through its object store.
#[derive(Debug, Clone)]
pub struct LakeFile {
    store: Arc<dyn ObjectStore>,
    meta: ObjectMeta,
}

impl LakeFile {
    /// The file `meta` (from a listing) of `store`.
    pub fn new(store: &Arc<dyn ObjectStore>, meta: &ObjectMeta) -> Self {
        Self { store: Arc::clone(store), meta: meta.clone() }
    }
}

fn store_error(e: object_store::Error) -> ParquetError {
    ParquetError::External(Box::new(e))
}

impl AsyncFileReader for LakeFile {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        async move { self.store.get_range(&self.meta.location, range).await.map_err(store_error) }.boxed()
    }

    fn get_byte_ranges(&mut self, ranges: Vec<Range<u64>>) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        async move { self.store.get_ranges(&self.meta.location, &ranges).await.map_err(store_error) }.boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        _options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        let size = self.meta.size;
        async move {
            let meta =
                ParquetMetaDataReader::new().with_prefetch_hint(Some(FOOTER_HINT)).load_and_finish(self, size).await?;
            Ok(Arc::new(meta))
        }
        .boxed()
    }
}

/// The metadata of the Parquet file `m` of `store`, from its footer.
pub async fn read_footer(store: &Arc<dyn ObjectStore>, m: &ObjectMeta) -> Result<Arc<ParquetMetaData>> {
    Ok(LakeFile::new(store, m).get_metadata(None).await?)
}
