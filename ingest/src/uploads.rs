//! Uploads as jobs (`POST /v1/imports`, docs/ingest.md#uploads): an NDJSON or CSV file (gzip
//! allowed) streamed to disk as it arrives, never held whole in memory, then imported in the
//! background the way `sluice import` imports a file, with the caller's organizations enforced.
//! A job has an id, a status with progress (`GET /v1/imports/{id}`, server-sent events at
//! `…/events`), an optional webhook called when it ends, and a CSV report of its rejected rows
//! (`…/rejected.csv`: line, reason code, message).
//!
//! The registry of processed files: the same content uploaded again by the same caller (token
//! subject and organizations) is not imported again; the answer is the first job. An upload whose
//! job a restart interrupted is marked failed; uploading the file again rewrites the same files
//! (names and record ids derive from the caller, the content and the line) and counts nothing
//! twice.
//!
//! Memory: one job runs at a time, on a runtime of its own with [`JOB_THREADS`] blocking threads,
//! with its own small budget ([`UploadConfig::budget`]), one chunk of records on its way and one
//! file written at a time, so an upload of any size grows the server by tens of MiB.

use std::{
    collections::HashMap,
    io::Write as _,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use axum::body::Body;
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sluice_auth::webhook::Webhook;
use sluice_lake::Lake;
use sluice_partitioner::Partitioner;
use sluice_schemas::Orgs;
use tokio::sync::watch;

use crate::import::ImportRun;

/// Settings of upload jobs.
#[derive(Debug, Clone)]
pub struct UploadConfig {
    /// Where uploads, job statuses and reports are kept.
    pub dir: PathBuf,
    /// Memory for one job's buffered rows, bytes.
    pub budget: u64,
    /// Largest upload, bytes.
    pub max_upload: u64,
}

/// Memory for one upload job's buffered rows by default.
pub const DEFAULT_BUDGET: u64 = 6 << 20;
/// Blocking threads of an upload job's own runtime (reading, transforming, encoding).
const JOB_THREADS: usize = 2;
/// How long finished jobs' statuses and reports are kept.
pub const KEEP: std::time::Duration = std::time::Duration::from_secs(7 * 86_400);

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobState {
    /// Uploaded, waiting for its turn.
    Queued,
    /// Importing.
    Running,
    /// Every record is in the lake or the error output.
    Succeeded,
    /// Stopped; `error` says why and what to do.
    Failed,
}

/// A job as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobStatus {
    /// The job's id.
    pub id: String,
    /// Where it is.
    pub state: JobState,
    /// The file's name as the caller gave it (`?name=`), or `upload`.
    pub name: String,
    /// `ndjson` or `csv`.
    pub format: String,
    /// Bytes uploaded (as sent, compressed or not).
    pub bytes: u64,
    /// SHA-256 of the bytes uploaded, hex.
    pub sha256: String,
    /// Records read so far.
    pub records_read: u64,
    /// Records accepted (in the lake).
    pub accepted: u64,
    /// Records rejected (in the error output and the report).
    pub rejected: u64,
    /// Data files written.
    pub files: u64,
    /// Why it failed, and what to do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When it was uploaded, RFC 3339.
    pub created_at: String,
    /// When it ended, RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// The CSV of rejected rows (line, code, message).
    pub report_url: String,
}

/// A status as kept on disk: with its owner.
#[derive(Serialize, Deserialize)]
struct Kept {
    owner: String,
    status: JobStatus,
}

/// The upload jobs of a server.
#[derive(Debug)]
pub struct Uploads {
    config: UploadConfig,
    lake: Lake,
    partitioner: Arc<Partitioner>,
    /// Jobs of this process: owner and status.
    jobs: Mutex<HashMap<String, (String, watch::Sender<JobStatus>)>>,
    /// One job imports at a time.
    turn: tokio::sync::Semaphore,
    /// The server's counters (records by protocol).
    metrics: Arc<crate::metrics::Metrics>,
    /// Uploads of each owner being received, queued or imported: at most [`PER_OWNER`], so one
    /// tenant cannot fill the imports folder with queued files or keep others' jobs waiting long.
    active: Mutex<HashMap<String, usize>>,
}

/// Uploads one owner may have on their way, queued or running at once.
pub const PER_OWNER: usize = 2;

/// One of an owner's places for an upload, given back when dropped.
struct Place {
    uploads: Arc<Uploads>,
    owner: String,
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut active = self.uploads.active.lock().expect("active uploads");
        if let Some(n) = active.get_mut(&self.owner) {
            *n -= 1;
            if *n == 0 {
                active.remove(&self.owner);
            }
        }
    }
}

/// Why an upload was refused.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// Over the size limit.
    #[error("the upload is over {0} bytes; split the file, or raise --max-upload")]
    TooLarge(u64),
    /// The body could not be read (a client gone, a deadline).
    #[error("the upload stopped: {0}; upload the file again")]
    Body(String),
    /// The server's disk.
    #[error("cannot keep the upload in the imports folder: {0}; upload again once it has room")]
    Io(#[from] std::io::Error),
    /// The owner has [`PER_OWNER`] uploads on their way already.
    #[error("this token has {PER_OWNER} uploads on their way or waiting to be imported; wait for one to end")]
    Busy,
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The key of a caller's content: what names its files, record ids and registry entry.
fn owner_content_key(owner: &str, sha: &str) -> String {
    format!("{:x}", Sha256::digest(format!("{owner}\u{1f}{sha}").as_bytes()))
}

/// Writes `bytes` to `path` durably (a temporary file, fsynced, renamed).
fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

impl Uploads {
    /// The jobs kept in `config.dir` (made when missing). Jobs a stopped server left queued or
    /// running are marked failed, their uploads deleted; finished jobs older than [`KEEP`] are
    /// forgotten with their reports.
    pub fn open(
        config: UploadConfig,
        lake: Lake,
        partitioner: Arc<Partitioner>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> std::io::Result<Self> {
        std::fs::create_dir_all(config.dir.join("registry"))?;
        for entry in std::fs::read_dir(&config.dir)? {
            let path = entry?.path();
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if name.starts_with("upload-") {
                std::fs::remove_file(&path)?;
            } else if name.ends_with(".json")
                && let Ok(mut kept) = serde_json::from_slice::<Kept>(&std::fs::read(&path)?)
            {
                if matches!(kept.status.state, JobState::Queued | JobState::Running) {
                    kept.status.state = JobState::Failed;
                    kept.status.error = Some(
                        "the server stopped during the import; upload the file again (it rewrites the same files \
                         and counts nothing twice)"
                            .into(),
                    );
                    kept.status.finished_at = Some(now());
                    write_durably(&path, &serde_json::to_vec(&kept).expect("a status serializes"))?;
                } else if entry_age(&path) > KEEP {
                    std::fs::remove_file(&path)?;
                    std::fs::remove_file(path.with_extension("rejected.csv")).ok();
                }
            }
        }
        Ok(Self {
            config,
            lake,
            partitioner,
            jobs: Mutex::new(HashMap::new()),
            turn: tokio::sync::Semaphore::new(1),
            metrics,
            active: Mutex::new(HashMap::new()),
        })
    }

    /// The largest upload taken, bytes.
    pub fn max_upload(&self) -> u64 {
        self.config.max_upload
    }

    fn status_path(&self, id: &str) -> PathBuf {
        self.config.dir.join(format!("{id}.json"))
    }

    /// The CSV report of a job's rejected rows.
    pub fn report_path(&self, id: &str) -> PathBuf {
        self.config.dir.join(format!("{id}.rejected.csv"))
    }

    fn registry_path(&self, key: &str) -> PathBuf {
        self.config.dir.join("registry").join(key)
    }

    /// A job of `owner`'s, running here or kept on disk.
    pub fn status(&self, id: &str, owner: &str) -> Option<JobStatus> {
        if let Some((o, tx)) = self.jobs.lock().expect("jobs").get(id) {
            return (o == owner).then(|| tx.borrow().clone());
        }
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return None;
        }
        let kept: Kept = serde_json::from_slice(&std::fs::read(self.status_path(id)).ok()?).ok()?;
        (kept.owner == owner).then_some(kept.status)
    }

    /// Changes of a job of `owner`'s running here; for a job kept on disk, its status alone.
    pub fn watch(&self, id: &str, owner: &str) -> Option<watch::Receiver<JobStatus>> {
        if let Some((o, tx)) = self.jobs.lock().expect("jobs").get(id) {
            return (o == owner).then(|| tx.subscribe());
        }
        let status = self.status(id, owner)?;
        Some(watch::channel(status).1)
    }

    /// Takes an upload: streams `body` to disk with its hash, then answers the first job of
    /// this content for this owner (`Ok((status, false))`), or starts a job (`Ok((status, true))`).
    #[allow(clippy::too_many_arguments)]
    pub async fn start(
        self: &Arc<Self>,
        owner: &str,
        orgs: Orgs,
        body: Body,
        name: String,
        format: &str,
        gzip: bool,
        webhook: Option<Webhook>,
    ) -> Result<(JobStatus, bool), UploadError> {
        let place = {
            let mut active = self.active.lock().expect("active uploads");
            let n = active.entry(owner.to_owned()).or_default();
            if *n >= PER_OWNER {
                return Err(UploadError::Busy);
            }
            *n += 1;
            Place { uploads: Arc::clone(self), owner: owner.to_owned() }
        };
        let id = uuid::Uuid::new_v4().to_string();
        let suffix = if gzip { ".gz" } else { "" };
        let path = self.config.dir.join(format!("upload-{id}.{format}{suffix}"));
        let received = self.receive(&path, body).await;
        let (sha, bytes) = match received {
            Ok(r) => r,
            Err(e) => {
                tokio::fs::remove_file(&path).await.ok();
                return Err(e);
            }
        };
        let key = owner_content_key(owner, &sha);
        let first = std::fs::read_to_string(self.registry_path(&key)).ok();
        // A failed job (a restart cut it off, say) does not count: the content is imported anew.
        if let Some(first) = first.and_then(|id| self.status(id.trim(), owner)).filter(|s| s.state != JobState::Failed)
        {
            tokio::fs::remove_file(&path).await.ok();
            return Ok((first, false));
        }
        // The registry names the job from its start, so an upload of the same content while it
        // runs is answered with it too.
        write_durably(&self.registry_path(&key), id.as_bytes())?;
        let status = JobStatus {
            id: id.clone(),
            state: JobState::Queued,
            name,
            format: format.to_owned(),
            bytes,
            sha256: sha.clone(),
            records_read: 0,
            accepted: 0,
            rejected: 0,
            files: 0,
            error: None,
            created_at: now(),
            finished_at: None,
            report_url: format!("/v1/imports/{id}/rejected.csv"),
        };
        self.keep(owner, &status)?;
        let (tx, _) = watch::channel(status.clone());
        self.jobs.lock().expect("jobs").insert(id.clone(), (owner.to_owned(), tx.clone()));
        let (me, owner) = (Arc::clone(self), owner.to_owned());
        tokio::spawn(async move {
            let _place = place;
            let _turn = me.turn.acquire().await;
            tx.send_modify(|s| s.state = JobState::Running);
            // The job runs on a runtime of its own with two blocking threads: its allocations stay
            // on three threads, not on every thread of the server's pools, whose allocator caches
            // would each keep some of what it touched.
            let result = {
                let (me, path, sha, key, tx) = (Arc::clone(&me), path.clone(), sha.clone(), key.clone(), tx.clone());
                tokio::task::spawn_blocking(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .max_blocking_threads(JOB_THREADS)
                        .thread_name("sluice-upload")
                        .build()
                        .map_err(|e| crate::Error::io(&path)(e))?;
                    rt.block_on(me.run(&path, &sha, &key, bytes, orgs, &tx))
                })
                .await
                .map_err(crate::Error::task("an upload job"))
                .and_then(|r| r)
            };
            tokio::fs::remove_file(&path).await.ok();
            tx.send_modify(|s| {
                s.finished_at = Some(now());
                match result {
                    Ok(()) => s.state = JobState::Succeeded,
                    Err(e) => {
                        s.state = JobState::Failed;
                        s.error = Some(format!(
                            "{e}; upload the file again (it rewrites the same files and counts nothing twice)"
                        ));
                    }
                }
            });
            let status = tx.borrow().clone();
            me.metrics.protocol(crate::metrics::Protocol::Upload, status.accepted, status.rejected);
            if let Err(e) = me.keep(&owner, &status) {
                tracing::warn!(error = %e, id = %status.id, "cannot keep an upload job's status");
            }
            if status.state == JobState::Failed {
                // The same content may be uploaded again and imported then.
                std::fs::remove_file(me.registry_path(&key)).ok();
            }
            if let Some(hook) = webhook {
                hook.call(serde_json::to_value(&status).unwrap_or_default());
            }
        });
        Ok((status, true))
    }

    fn keep(&self, owner: &str, status: &JobStatus) -> std::io::Result<()> {
        let kept = Kept { owner: owner.to_owned(), status: status.clone() };
        write_durably(&self.status_path(&status.id), &serde_json::to_vec(&kept).expect("a status serializes"))
    }

    /// Streams `body` into `path`, fsynced, within the size limit: its SHA-256 and size. One
    /// blocking thread hashes and writes; at most a few chunks wait for it, so a fast client
    /// never makes the server hold more than that.
    async fn receive(&self, path: &Path, body: Body) -> Result<(String, u64), UploadError> {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(4);
        let path = path.to_owned();
        let writer = tokio::task::spawn_blocking(move || {
            let mut file = std::fs::File::create(&path)?;
            let mut hash = Sha256::new();
            while let Some(chunk) = rx.blocking_recv() {
                hash.update(&chunk);
                file.write_all(&chunk)?;
            }
            file.sync_all()?;
            Ok::<_, std::io::Error>(format!("{:x}", hash.finalize()))
        });
        let mut size = 0u64;
        let mut stream = body.into_data_stream();
        let mut failed = None;
        while let Some(chunk) = stream.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    failed = Some(UploadError::Body(e.to_string()));
                    break;
                }
            };
            size += chunk.len() as u64;
            if size > self.config.max_upload {
                failed = Some(UploadError::TooLarge(self.config.max_upload));
                break;
            }
            if tx.send(chunk).await.is_err() {
                break;
            }
        }
        drop(tx);
        let written = writer.await.map_err(|e| UploadError::Io(std::io::Error::other(e)))?;
        match failed {
            Some(e) => Err(e),
            None => Ok((written?, size)),
        }
    }

    /// Imports an upload, writing the report of its rejected rows as they come.
    async fn run(
        &self,
        path: &Path,
        sha: &str,
        key: &str,
        bytes: u64,
        orgs: Orgs,
        tx: &watch::Sender<JobStatus>,
    ) -> crate::Result<()> {
        let id = tx.borrow().id.clone();
        let report_path = self.report_path(&id);
        let report = std::fs::File::create(&report_path).map_err(crate::Error::io(&report_path))?;
        let mut report = csv::Writer::from_writer(std::io::BufWriter::new(report));
        report.write_record(["line", "code", "message"]).map_err(|e| crate::Error::io(&report_path)(e.into()))?;
        let run = ImportRun {
            budget: self.config.budget,
            orgs,
            key: format!("upload:{key}"),
            names: format!("upload-{}", &key[..16]),
            in_flight: 1,
            writes: 1,
        };
        let mut failed = None;
        let imported = run
            .run(
                &self.lake,
                &self.partitioner,
                path,
                (sha, bytes),
                |n| tx.send_modify(|s| s.records_read = n),
                |line, e| {
                    if failed.is_none()
                        && let Err(err) =
                            report.write_record([line.to_string().as_str(), &e.error_code, &e.error_message])
                    {
                        failed = Some(err);
                    }
                },
            )
            .await?;
        if let Some(e) = failed {
            return Err(crate::Error::io(&report_path)(e.into()));
        }
        let file = report.into_inner().map_err(|e| crate::Error::io(&report_path)(e.into_error()))?;
        file.into_inner()
            .map_err(|e| crate::Error::io(&report_path)(e.into_error()))?
            .sync_all()
            .map_err(crate::Error::io(&report_path))?;
        tx.send_modify(|s| {
            s.records_read = imported.records;
            s.accepted = imported.accepted;
            s.rejected = imported.rejected;
            s.files = imported.files;
        });
        Ok(())
    }
}

fn entry_age(path: &Path) -> std::time::Duration {
    std::fs::metadata(path).and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok()).unwrap_or_default()
}
