//! `sluice replay`: re-ingests the records of the error output (after a log type was added, say).
//!
//! For each error file under `errors/`, written by either mode: every record is run through the
//! transform again. Those accepted are written to the lake; those that fail again are kept, with
//! the new reason and one more attempt. A file none of whose records was delivered and whose
//! reasons did not change is left as it is, so a second replay does nothing. The new rows are
//! durable before the error file is replaced, so a crash in between can duplicate (same
//! `record_id`) but never lose a record. Records refused as `forbidden_organization` are kept
//! as they are: the transform cannot tell who sent them.

use std::{collections::BTreeMap, io::Read};

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::{ObjectStoreExt, path::Path};
use sluice_partitioner::{Outcome, Partitioner};
use sluice_schemas::{Context, ReasonCode, record_id, record_id_at};

use sluice_lake::{Lake, error_record::ErrorRecord, lock::LakeLock};

use crate::{
    batch::Item,
    error::{Error, Result},
    import::LakeWriter,
};

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Error files read.
    pub files: u64,
    /// Error records read.
    pub records: u64,
    /// Records delivered to the lake.
    pub delivered: u64,
    /// Records still failing, by reason code.
    pub still_failing: BTreeMap<String, u64>,
    /// Lines that are not error records (kept as they are).
    pub unreadable: u64,
}

fn gunzip_if_needed(bytes: Bytes) -> Result<Vec<u8>> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&bytes[..]).read_to_end(&mut out).map_err(Error::io("gzip error file"))?;
        Ok(out)
    } else {
        Ok(bytes.to_vec())
    }
}

/// Replays the error output of `lake`. `progress` is called after each file. One replay runs
/// on a lake at a time ([`LakeLock`]).
pub async fn replay(
    lake: &Lake,
    partitioner: &Partitioner,
    memory_budget: u64,
    progress: impl FnMut(&ReplayReport),
) -> Result<ReplayReport> {
    let lock = LakeLock::acquire(lake, "replay").await?;
    let result = tokio::select! {
        r = replay_files(lake, partitioner, memory_budget, progress) => r,
        () = lock.lost() => Err(sluice_lake::Error::LeaseLost.into()),
    };
    lock.release().await?;
    result
}

async fn replay_files(
    lake: &Lake,
    partitioner: &Partitioner,
    memory_budget: u64,
    mut progress: impl FnMut(&ReplayReport),
) -> Result<ReplayReport> {
    let prefix = lake.key("errors");
    let mut keys: Vec<Path> = lake.store().list(Some(&prefix)).map_ok(|m| m.location).try_collect().await?;
    keys.sort();
    let mut report = ReplayReport::default();
    for key in keys {
        report.files += 1;
        let data = gunzip_if_needed(lake.store().get(&key).await?.bytes().await?)?;
        let key_s = key.to_string();
        let mut writer =
            LakeWriter::new(lake, partitioner, memory_budget, format!("replay-{}", &record_id(&key_s)[..16]));
        let source = format!("replay:{key_s}");
        let mut kept: Vec<Vec<u8>> = Vec::new();
        let mut changed = false;
        let mut delivered = 0u64;
        for (i, line) in data.split(|b| *b == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let Ok(rec) = serde_json::from_slice::<ErrorRecord>(line) else {
                report.unreadable += 1;
                kept.push(line.to_vec());
                continue;
            };
            report.records += 1;
            let Some(raw) = rec.raw() else {
                report.unreadable += 1;
                kept.push(line.to_vec());
                continue;
            };
            if rec.error_code == ReasonCode::ForbiddenOrganization.as_str() {
                // Refused for who sent it, not for what it is: a replay has no token to vouch for
                // it, so it stays in the error output for an operator to look at.
                *report.still_failing.entry(rec.error_code.clone()).or_default() += 1;
                kept.push(line.to_vec());
                continue;
            }
            let ctx = Context {
                record_id: record_id_at(&source, i as u64),
                arrival_micros: rec.arrival_timestamp.saturating_mul(1000),
            };
            match partitioner.transform(&raw, &ctx) {
                Outcome::Ok { partition, row } => {
                    writer.add(i as u64, Item::Row { partition, row, size: raw.len() as u64 + 256 }).await?;
                    delivered += 1;
                }
                Outcome::Dropped => {
                    delivered += 1;
                }
                Outcome::ProcessingFailed(e) => {
                    *report.still_failing.entry(e.code.as_str().to_owned()).or_default() += 1;
                    if e.code.as_str() != rec.error_code || e.message != rec.error_message {
                        changed = true;
                    }
                    let again = ErrorRecord {
                        attempts_made: rec.attempts_made + 1,
                        error_code: e.code.as_str().to_owned(),
                        error_message: e.message,
                        attempt_ending_timestamp: chrono::Utc::now().timestamp_millis(),
                        ..rec
                    };
                    kept.push(again.to_line().trim_ascii_end().to_vec());
                }
            }
        }
        report.delivered += delivered;
        if delivered == 0 && !changed {
            progress(&report);
            continue;
        }
        // The delivered rows are durable first; then the error file is replaced.
        writer.finish().await?;
        if !kept.is_empty() {
            let mut body = kept.join(&b'\n');
            body.push(b'\n');
            let name = key.filename().unwrap_or("errors");
            let stem = name.split(".replay-").next().unwrap_or(name);
            let new_name = format!("{stem}.replay-{}", &record_id(&String::from_utf8_lossy(&body))[..16]);
            let new_key = Path::from(format!("{}/{new_name}", key.as_ref().rsplit_once('/').map_or("", |(d, _)| d)));
            lake.put(&new_key, Bytes::from(body)).await?;
            if new_key != key {
                lake.store().delete(&key).await?;
            }
        } else {
            lake.store().delete(&key).await?;
        }
        progress(&report);
    }
    Ok(report)
}
