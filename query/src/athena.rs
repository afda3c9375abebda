//! Athena, the second engine: for lakes too big for one machine, the same SQL runs on Athena
//! over the Glue table the Terraform stack defines.
//!
//! `StartQueryExecution` in a workgroup, polling `GetQueryExecution` with exponential backoff,
//! `StopQueryExecution` on cancel or timeout; results are read from the CSV file Athena writes
//! to S3 (streamed, not 1,000-row `GetQueryResults` pages), or handed out as a presigned URL.

use std::{sync::Arc, time::Duration};

use aws_sdk_athena::{
    Client,
    types::{QueryExecutionContext, QueryExecutionState, ResultConfiguration},
};
use datafusion::{
    arrow::{
        array::{ArrayRef, StringBuilder},
        compute::cast,
        datatypes::{DataType, Field, Schema, SchemaRef},
        record_batch::RecordBatch,
    },
    execution::SendableRecordBatchStream,
    physical_plan::stream::RecordBatchStreamAdapter,
};
use futures::StreamExt;
use object_store::{ObjectStore, ObjectStoreExt, path::Path, signer::Signer};

use crate::error::{Error, Limit, Result};

/// Where and how queries run on Athena.
#[derive(Debug, Clone)]
pub struct AthenaConfig {
    /// The workgroup (the stack's `athena_workgroup` output).
    pub workgroup: String,
    /// The Glue database holding `logs` (the stack's `glue_database` output).
    pub database: String,
    /// Where results go when the workgroup does not enforce its own location (`s3://…/`).
    pub output_location: Option<String>,
    /// Longest wait for one query; it is stopped after that.
    pub timeout: Duration,
    /// Longest pause between two polls (polls start at 100 ms and double up to this).
    pub max_poll: Duration,
    /// Largest SQL text accepted.
    pub max_sql_bytes: usize,
}

impl Default for AthenaConfig {
    fn default() -> Self {
        Self {
            workgroup: "sluice".into(),
            database: "sluice".into(),
            output_location: None,
            timeout: Duration::from_secs(1800),
            max_poll: Duration::from_secs(5),
            max_sql_bytes: 64 * 1024,
        }
    }
}

/// A finished Athena query.
#[derive(Debug, Clone)]
pub struct Finished {
    /// The query execution id.
    pub id: String,
    /// The result file (`s3://bucket/key.csv`).
    pub output_location: String,
    /// Bytes Athena scanned.
    pub bytes_scanned: u64,
    /// Result columns: name and Athena type.
    pub columns: Vec<(String, String)>,
}

/// The Athena engine.
#[derive(Debug, Clone)]
pub struct Athena {
    client: Client,
    config: Arc<AthenaConfig>,
}

impl Athena {
    /// An engine with the process's AWS settings (region, credentials, `AWS_ENDPOINT_URL_ATHENA`
    /// or `AWS_ENDPOINT_URL`; see `sluice_aws`).
    pub async fn new(config: AthenaConfig) -> Self {
        let sdk = sluice_aws::sdk_config().await;
        Self::with_client(Client::new(sdk), config)
    }

    /// An engine over a client configured by the caller.
    pub fn with_client(client: Client, config: AthenaConfig) -> Self {
        Self { client, config: Arc::new(config) }
    }

    /// The configuration.
    pub fn config(&self) -> &AthenaConfig {
        &self.config
    }

    /// Starts `sql`; returns the query execution id.
    pub async fn start(&self, sql: &str) -> Result<String> {
        crate::guard::check_sql(sql, self.config.max_sql_bytes)?;
        let mut req = self
            .client
            .start_query_execution()
            .query_string(sql)
            .work_group(&self.config.workgroup)
            .query_execution_context(QueryExecutionContext::builder().database(&self.config.database).build());
        if let Some(loc) = &self.config.output_location {
            req = req.result_configuration(ResultConfiguration::builder().output_location(loc).build());
        }
        let out = req.send().await.map_err(|e| aws_error("StartQueryExecution", &e))?;
        out.query_execution_id()
            .map(str::to_owned)
            .ok_or_else(|| Error::Aws { call: "StartQueryExecution", message: "Athena returned no query id".into() })
    }

    /// Polls `id` with exponential backoff until it finishes; `on_poll` sees the bytes scanned so
    /// far. Past the timeout the query is stopped.
    pub async fn wait(&self, id: &str, mut on_poll: impl FnMut(u64)) -> Result<Finished> {
        let deadline = tokio::time::Instant::now() + self.config.timeout;
        let mut pause = Duration::from_millis(100);
        loop {
            let out = self
                .client
                .get_query_execution()
                .query_execution_id(id)
                .send()
                .await
                .map_err(|e| aws_error("GetQueryExecution", &e))?;
            let exec = out.query_execution().ok_or_else(|| Error::Aws {
                call: "GetQueryExecution",
                message: format!("Athena forgot query {id}"),
            })?;
            let scanned = exec.statistics().and_then(|s| s.data_scanned_in_bytes()).unwrap_or(0).max(0) as u64;
            on_poll(scanned);
            let status = exec.status();
            match status.and_then(|s| s.state()) {
                Some(QueryExecutionState::Succeeded) => {
                    let output_location = exec
                        .result_configuration()
                        .and_then(|r| r.output_location())
                        .ok_or_else(|| Error::Aws {
                            call: "GetQueryExecution",
                            message: format!("Athena query {id} has no result location"),
                        })?
                        .to_owned();
                    let columns = self.columns(id).await?;
                    return Ok(Finished { id: id.to_owned(), output_location, bytes_scanned: scanned, columns });
                }
                Some(QueryExecutionState::Failed) => {
                    let reason = status.and_then(|s| s.state_change_reason()).unwrap_or("no reason given").to_owned();
                    // Athena's error category 2 is a user error (syntax, unknown table, …).
                    let user = status.and_then(|s| s.athena_error()).is_some_and(|e| e.error_category() == Some(2));
                    return Err(if user {
                        Error::AthenaSql { reason }
                    } else {
                        Error::Aws { call: "Athena", message: reason }
                    });
                }
                Some(QueryExecutionState::Cancelled) => return Err(Error::Cancelled),
                _ => {}
            }
            if tokio::time::Instant::now() + pause > deadline {
                self.stop(id).await.ok();
                return Err(Limit::Time { secs: self.config.timeout.as_secs(), planning: false }.into());
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(self.config.max_poll);
        }
    }

    /// Stops a query.
    pub async fn stop(&self, id: &str) -> Result<()> {
        self.client
            .stop_query_execution()
            .query_execution_id(id)
            .send()
            .await
            .map_err(|e| aws_error("StopQueryExecution", &e))?;
        Ok(())
    }

    /// Starts `sql` and waits for it; if this future is dropped before the end (Ctrl-C, a
    /// cancelled request) the query is stopped.
    pub async fn run(&self, sql: &str, on_poll: impl FnMut(u64)) -> Result<Finished> {
        let id = self.start(sql).await?;
        let guard = self.stop_on_drop(&id);
        let result = self.wait(&id, on_poll).await;
        guard.disarm();
        result
    }

    /// A guard that stops query `id` if it is dropped before [`StopOnDrop::disarm`] (a
    /// cancelled execution is dropped mid-wait).
    pub fn stop_on_drop(&self, id: &str) -> StopOnDrop {
        StopOnDrop { athena: self.clone(), id: Some(id.to_owned()) }
    }

    /// Uploads a local CSV to `exports/{query id}.csv` in the bucket of Athena's results (the
    /// stack expires `exports/` after a day) and returns a presigned URL of it.
    pub async fn upload_export(
        &self,
        finished: &Finished,
        file: &std::path::Path,
        expires_in: Duration,
    ) -> Result<String> {
        let (store, _) = self.result_object(finished).await?;
        let key = Path::from(format!("exports/{}.csv", finished.id));
        let fail =
            |e: String| Error::Aws { call: "PutObject", message: format!("cannot upload the export to {key}: {e}") };
        let mut upload =
            object_store::buffered::BufWriter::new(Arc::clone(&store) as Arc<dyn ObjectStore>, key.clone());
        let mut local = tokio::fs::File::open(file).await.map_err(|e| fail(e.to_string()))?;
        tokio::io::copy(&mut local, &mut upload).await.map_err(|e| fail(e.to_string()))?;
        tokio::io::AsyncWriteExt::shutdown(&mut upload).await.map_err(|e| fail(e.to_string()))?;
        let expires_in = expires_in.min(Duration::from_secs(7 * 24 * 3600));
        let url = store.signed_url(reqwest::Method::GET, &key, expires_in).await.map_err(|e| fail(e.to_string()))?;
        Ok(url.to_string())
    }

    /// Column names and Athena types of a finished query (one small `GetQueryResults` call).
    async fn columns(&self, id: &str) -> Result<Vec<(String, String)>> {
        let out = self
            .client
            .get_query_results()
            .query_execution_id(id)
            .max_results(1)
            .send()
            .await
            .map_err(|e| aws_error("GetQueryResults", &e))?;
        Ok(out
            .result_set()
            .and_then(|r| r.result_set_metadata())
            .map(|m| m.column_info().iter().map(|c| (c.name().to_owned(), c.r#type().to_owned())).collect())
            .unwrap_or_default())
    }

    /// The store and key of a result file.
    pub async fn result_object(&self, finished: &Finished) -> Result<(Arc<object_store::aws::AmazonS3>, Path)> {
        let bad = |reason: String| Error::Location { url: finished.output_location.clone(), reason };
        let location = sluice_aws::S3Location::parse(&finished.output_location)
            .ok_or_else(|| bad("not an s3:// location".into()))?
            .map_err(|e| bad(e.to_string()))?;
        let store = sluice_aws::s3_store(&location.bucket).await.map_err(|e| bad(e.to_string()))?;
        let key = Path::parse(&location.prefix).map_err(|e| bad(e.to_string()))?;
        Ok((Arc::new(store), key))
    }

    /// A presigned GET URL of the result CSV, valid for `expires_in` (at most 7 days, and never
    /// longer than the credentials that sign it).
    pub async fn presigned_url(&self, finished: &Finished, expires_in: Duration) -> Result<String> {
        let (store, key) = self.result_object(finished).await?;
        let expires_in = expires_in.min(Duration::from_secs(7 * 24 * 3600));
        let url = store.signed_url(reqwest::Method::GET, &key, expires_in).await.map_err(|e| Error::Aws {
            call: "presigning",
            message: format!("cannot presign {}: {e}", finished.output_location),
        })?;
        Ok(url.to_string())
    }

    /// The raw bytes of the result CSV, as a stream.
    pub async fn result_bytes(
        &self,
        finished: &Finished,
    ) -> Result<futures::stream::BoxStream<'static, object_store::Result<bytes::Bytes>>> {
        let (store, key) = self.result_object(finished).await?;
        let got = store.get(&key).await.map_err(|e| Error::Location {
            url: finished.output_location.clone(),
            reason: format!("{e}; the reader needs s3:GetObject on Athena's result location"),
        })?;
        Ok(got.into_stream())
    }

    /// The result as Arrow batches, parsed from the result CSV as it streams in (memory stays
    /// bounded), typed from Athena's column types.
    pub async fn result_batches(&self, finished: &Finished) -> Result<SendableRecordBatchStream> {
        let schema = result_schema(&finished.columns);
        let mut bytes = self.result_bytes(finished).await?;
        let (chunk_tx, chunk_rx) = std::sync::mpsc::sync_channel::<bytes::Bytes>(4);
        let (batch_tx, batch_rx) = tokio::sync::mpsc::channel::<Result<RecordBatch>>(2);
        tokio::spawn(async move {
            while let Some(chunk) = bytes.next().await {
                let Ok(chunk) = chunk else { break };
                let tx = chunk_tx.clone();
                if tokio::task::spawn_blocking(move || tx.send(chunk)).await.map_or(true, |r| r.is_err()) {
                    break;
                }
            }
        });
        let parse_schema = Arc::clone(&schema);
        tokio::task::spawn_blocking(move || {
            let reader = ChunkReader { rx: chunk_rx, current: bytes::Bytes::new() };
            if let Err(e) = parse_csv(reader, &parse_schema, &batch_tx) {
                batch_tx.blocking_send(Err(e)).ok();
            }
        });
        let stream = futures::stream::unfold(batch_rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) })
            .map(|b| b.map_err(|e| datafusion::error::DataFusionError::External(Box::new(e))));
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }
}

/// Stops an Athena query when dropped while armed.
#[derive(Debug)]
pub struct StopOnDrop {
    athena: Athena,
    id: Option<String>,
}

impl StopOnDrop {
    /// Leaves the query alone from now on.
    pub fn disarm(mut self) {
        self.id = None;
    }
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if let Some(id) = self.id.take()
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            let athena = self.athena.clone();
            handle.spawn(async move { athena.stop(&id).await.ok() });
        }
    }
}

/// The Arrow type of an Athena (Presto/Trino) type name.
fn arrow_type(athena: &str) -> DataType {
    match athena.to_ascii_lowercase().as_str() {
        "bigint" | "integer" | "int" | "smallint" | "tinyint" => DataType::Int64,
        "double" | "float" | "real" => DataType::Float64,
        "boolean" => DataType::Boolean,
        _ => DataType::Utf8,
    }
}

fn result_schema(columns: &[(String, String)]) -> SchemaRef {
    Arc::new(Schema::new(columns.iter().map(|(name, ty)| Field::new(name, arrow_type(ty), true)).collect::<Vec<_>>()))
}

/// Reads the chunks of a byte stream as one `Read`.
struct ChunkReader {
    rx: std::sync::mpsc::Receiver<bytes::Bytes>,
    current: bytes::Bytes,
}

impl std::io::Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.recv() {
                Ok(c) => self.current = c,
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current = self.current.slice(n..);
        Ok(n)
    }
}

/// Parses Athena's result CSV (a header line, every value quoted, NULL an empty unquoted field)
/// into batches of 8,192 rows.
fn parse_csv(
    reader: impl std::io::Read,
    schema: &SchemaRef,
    tx: &tokio::sync::mpsc::Sender<Result<RecordBatch>>,
) -> Result<()> {
    const ROWS: usize = 8192;
    let mut csv = csv::ReaderBuilder::new().has_headers(true).flexible(false).from_reader(reader);
    let width = schema.fields().len();
    let new_builders = || (0..width).map(|_| StringBuilder::new()).collect::<Vec<_>>();
    let mut builders = new_builders();
    let mut rows = 0;
    let mut record = csv::ByteRecord::new();
    let csv_error = |e: csv::Error| Error::Aws { call: "reading Athena's result file", message: e.to_string() };
    let finish = |builders: &mut Vec<StringBuilder>| -> Result<RecordBatch> {
        let columns = builders
            .iter_mut()
            .zip(schema.fields())
            .map(|(b, f)| cast(&(Arc::new(b.finish()) as ArrayRef), f.data_type()))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::Aws { call: "reading Athena's result file", message: e.to_string() })?;
        RecordBatch::try_new(Arc::clone(schema), columns)
            .map_err(|e| Error::Aws { call: "reading Athena's result file", message: e.to_string() })
    };
    while csv.read_byte_record(&mut record).map_err(csv_error)? {
        for (i, b) in builders.iter_mut().enumerate() {
            match record.get(i) {
                // An empty field is NULL (Athena quotes empty strings, which the csv crate reads as empty too).
                Some(v) if !v.is_empty() => b.append_value(String::from_utf8_lossy(v)),
                _ => b.append_null(),
            }
        }
        rows += 1;
        if rows == ROWS {
            if tx.blocking_send(finish(&mut builders)).is_err() {
                return Ok(());
            }
            rows = 0;
        }
    }
    if rows > 0 || width > 0 {
        tx.blocking_send(finish(&mut builders)).ok();
    }
    Ok(())
}

fn aws_error<E: std::error::Error + 'static>(call: &'static str, e: &E) -> Error {
    Error::Aws {
        call,
        message: sluice_aws::error_text(
            &format!("Athena {call}"),
            e,
            "check --workgroup and --database (the stack's outputs), the region (AWS_REGION) and \
             credentials with the stack's analyst policy",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn athena_csv_becomes_typed_batches() {
        let schema = result_schema(&[
            ("logtype".into(), "varchar".into()),
            ("n".into(), "bigint".into()),
            ("ok".into(), "boolean".into()),
        ]);
        let text = "\"logtype\",\"n\",\"ok\"\n\"web\",\"12\",\"true\"\n\"a \"\"b\"\", c\",,\"false\"\n";
        let (tx, mut rx) = tokio::sync::mpsc::channel(4);
        parse_csv(text.as_bytes(), &schema, &tx).expect("parse");
        drop(tx);
        let batch = rx.blocking_recv().expect("batch").expect("ok");
        assert_eq!(batch.num_rows(), 2);
        let text = datafusion::arrow::util::pretty::pretty_format_batches(&[batch]).expect("format").to_string();
        assert!(text.contains("| web      | 12 | true  |"), "{text}");
        assert!(text.contains("| a \"b\", c |    | false |"), "{text}");
    }
}
