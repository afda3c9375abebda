//! Summaries kept in a local lake (`_sluice/summaries/`), so that a new process (a `sluice query`,
//! a server after a restart) knows the summaries an earlier one read, instead of reading the
//! footer of every file of the lake again.
//!
//! The folder holds *segments*; each is written whole under a fresh name (temporary file and
//! rename) by a process that read summaries no segment had or wrote the files they are of
//! ([`super::Written`]), and is never changed. A segment is
//! a cache: one that cannot be read whole (a torn write after a power cut, a foreign file) is
//! ignored, and an entry is used only for the file it was read from: the same path, size and
//! modification time. When the folder has more than [`MAX_SEGMENTS`], the process loading them
//! writes one segment of the entries whose files are still there and deletes those it read (and
//! the temporary files of saves a crash interrupted).
//!
//! A segment: `sluice-summaries 1\n`, then its entries, then the CRC-32 of everything before it
//! (little-endian). An entry: the file's path under the lake (`u32` length, UTF-8), its size
//! (`u64`), modification time (`i64` nanoseconds), `time` range (`u8` 2 when no record lacks a time, 1
//! when one may, and two `i64`; or `u8` 0), and bloom filters (`u8` 1, a `u32` count, each a `u32` length and its bitset, or `u8` 0).

use std::{
    io::{self, Write},
    path::{Path as DiskPath, PathBuf},
    time::Duration,
};

use chrono::{DateTime, Utc};
use parquet::bloom_filter::Sbbf;

use super::Summary;

const MAGIC: &[u8] = b"sluice-summaries 1\n";

/// Segments beyond which the next process to load them merges them into one.
pub const MAX_SEGMENTS: usize = 16;

/// Where a local lake keeps its summaries.
pub fn folder(root: &DiskPath) -> PathBuf {
    root.join("_sluice").join("summaries")
}

/// A summary as kept: the file's path under the lake, and its summary.
pub type Entry = (String, Summary);

/// The entries of every segment in `dir` that could be read whole, and the segments read.
pub fn load(dir: &DiskPath) -> (Vec<Entry>, Vec<PathBuf>) {
    let mut entries = Vec::new();
    let mut segments = Vec::new();
    let Ok(names) = std::fs::read_dir(dir) else { return (entries, segments) };
    for e in names.flatten() {
        let path = e.path();
        if path.extension().is_none_or(|x| x != "seg") {
            continue;
        }
        // A segment deleted by a merge meanwhile: its entries are in the merged one.
        let Ok(bytes) = std::fs::read(&path) else { continue };
        match decode(&bytes) {
            Some(mut read) => {
                entries.append(&mut read);
                segments.push(path);
            }
            None => tracing::debug!(segment = %path.display(), "summaries not readable whole; ignored"),
        }
    }
    (entries, segments)
}

/// Writes a segment of `entries` into `dir` (created if missing); its path.
pub fn save<'a>(dir: &DiskPath, entries: impl IntoIterator<Item = (&'a str, &'a Summary)>) -> io::Result<PathBuf> {
    let mut out = MAGIC.to_vec();
    for (path, s) in entries {
        encode(&mut out, path, s)?;
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    std::fs::create_dir_all(dir)?;
    let name = format!("{}", uuid::Uuid::new_v4().simple());
    let tmp = dir.join(format!(".{name}.tmp"));
    let segment = dir.join(format!("{name}.seg"));
    // A save that fails (a full disk) leaves nothing behind.
    std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(&out))
        .and_then(|()| std::fs::rename(&tmp, &segment))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })?;
    Ok(segment)
}

/// Replaces `segments` (all of `dir` a process read) with one segment of the `entries` whose
/// files are still in the lake at `root` as they were; the path of the new segment.
pub fn merge(root: &DiskPath, dir: &DiskPath, entries: &[Entry], segments: &[PathBuf]) -> io::Result<PathBuf> {
    let kept = entries.iter().filter(|(path, s)| {
        std::fs::symlink_metadata(root.join(path))
            .is_ok_and(|m| m.len() == s.size && m.modified().is_ok_and(|t| DateTime::<Utc>::from(t) == s.modified))
    });
    let merged = save(dir, kept.map(|(p, s)| (p.as_str(), s)))?;
    remove(segments)?;
    sweep_unfinished(dir);
    Ok(merged)
}

/// How long a segment being written may take before its temporary file counts as left behind.
const UNFINISHED_AGE: Duration = Duration::from_secs(600);

/// Deletes the temporary files of segments whose writer died before renaming them (a kill or a
/// power cut mid-save), once they are [`UNFINISHED_AGE`] old.
fn sweep_unfinished(dir: &DiskPath) {
    let Ok(names) = std::fs::read_dir(dir) else { return };
    for e in names.flatten() {
        let name = e.file_name();
        let unfinished = name.to_str().is_some_and(|n| n.starts_with('.') && n.ends_with(".tmp"));
        let old = e.metadata().and_then(|m| m.modified()).is_ok_and(|t| t.elapsed().is_ok_and(|a| a > UNFINISHED_AGE));
        if unfinished && old {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Deletes `segments` (those already gone, deleted by another process's merge, included).
pub fn remove(segments: &[PathBuf]) -> io::Result<()> {
    for segment in segments {
        match std::fs::remove_file(segment) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

fn encode(out: &mut Vec<u8>, path: &str, s: &Summary) -> io::Result<()> {
    let len = |n: usize| u32::try_from(n).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "too long"));
    out.extend_from_slice(&len(path.len())?.to_le_bytes());
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(&s.size.to_le_bytes());
    out.extend_from_slice(&s.modified.timestamp_nanos_opt().unwrap_or(i64::MIN).to_le_bytes());
    match s.time {
        Some((lo, hi)) => {
            out.push(if s.time_complete { 2 } else { 1 });
            out.extend_from_slice(&lo.to_le_bytes());
            out.extend_from_slice(&hi.to_le_bytes());
        }
        None => out.push(0),
    }
    match &s.blooms {
        Some(blooms) => {
            out.push(1);
            out.extend_from_slice(&len(blooms.len())?.to_le_bytes());
            for b in blooms {
                let mut bits = Vec::with_capacity(b.num_blocks() * 32);
                b.write_bitset(&mut bits).map_err(io::Error::other)?;
                out.extend_from_slice(&len(bits.len())?.to_le_bytes());
                out.extend_from_slice(&bits);
            }
        }
        None => out.push(0),
    }
    Ok(())
}

/// The entries of a segment, if it is whole.
fn decode(bytes: &[u8]) -> Option<Vec<Entry>> {
    let (body, crc) = bytes.split_at_checked(bytes.len().checked_sub(4)?)?;
    if crc32fast::hash(body).to_le_bytes() != crc || !body.starts_with(MAGIC) {
        return None;
    }
    let mut r = Reader(&body[MAGIC.len()..]);
    let mut entries = Vec::new();
    while !r.0.is_empty() {
        let path = std::str::from_utf8(r.counted()?).ok()?.to_owned();
        let size = r.u64()?;
        let modified = DateTime::from_timestamp_nanos(r.u64()? as i64);
        let (time, time_complete) = match r.u8()? {
            0 => (None, false),
            flag => (Some((r.u64()? as i64, r.u64()? as i64)), flag == 2),
        };
        let blooms = match r.u8()? {
            0 => None,
            _ => {
                let n = r.u32()? as usize;
                let mut blooms = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    let bits = r.counted()?;
                    if bits.is_empty() || bits.len() % 32 != 0 {
                        return None;
                    }
                    blooms.push(Sbbf::new(bits));
                }
                Some(blooms)
            }
        };
        entries.push((path, Summary { time, time_complete, blooms, size, modified }));
    }
    Some(entries)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    /// Bytes after their `u32` count.
    fn counted(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}
