//! The write-ahead log: every record the ingest API accepts (and every record it rejects) is
//! appended here and fsynced before the API answers.
//!
//! * One writer thread does **group commit**: it takes every append waiting in its queue, writes
//!   them, and fsyncs once for all of them. Concurrent requests therefore share fsyncs.
//! * Entries carry a sequence number; a record's `record_id` is derived from the log's id and that
//!   number, so replaying the log after a crash yields the same ids.
//! * Segments (`wal-{first_seq}.log`) rotate at a size; a segment is deleted once every entry in it
//!   is in the lake (the delivery stream calls [`Wal::trim`] with its low watermark, which is also
//!   written to `checkpoint`).
//! * On open, entries at or past the checkpoint are handed back for delivery. A torn tail (a crash
//!   in the middle of a write) is cut off; nothing before it was acknowledged.
//!
//! Entry layout: `len: u32 | crc32(body): u32 | body`, where body is
//! `kind: u8 | seq: u64 | arrival_micros: i64 | raw_len: u32 | raw | [code_len: u16 | code | msg_len: u32 | msg]`.

use std::{
    fs::{self, File, OpenOptions},
    io::{BufWriter, Read, Write},
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc,
    },
    thread,
};

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::error::{Error, Result};

/// One logged record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// When the record arrived, microseconds since the epoch.
    pub arrival_micros: i64,
    /// The record's bytes as received (a slice of the request's body, not a copy).
    pub raw: Bytes,
    /// For a rejected record: its reason code and message.
    pub rejection: Option<(String, String)>,
}

/// Settings of the log.
#[derive(Debug, Clone)]
pub struct WalConfig {
    /// Folder of the segments.
    pub dir: PathBuf,
    /// Size at which a segment is closed and a new one started.
    pub segment_bytes: u64,
    /// Size of all segments above which [`Wal::is_full`] is true (the API answers 503).
    pub max_bytes: u64,
}

#[derive(Debug)]
struct Segment {
    first_seq: u64,
    path: PathBuf,
    bytes: u64,
}

#[derive(Debug)]
struct Shared {
    dir: PathBuf,
    id: String,
    total_bytes: AtomicU64,
    max_bytes: u64,
    failed: AtomicBool,
    segments: Mutex<Vec<Segment>>,
}

type Sink<T> = Box<dyn FnMut(u64, T) + Send>;

struct Append<T> {
    entries: Vec<Entry>,
    payload: T,
    reply: oneshot::Sender<Result<u64, String>>,
}

/// Handle of an open write-ahead log. Cheap to clone.
pub struct Wal<T> {
    tx: mpsc::Sender<Append<T>>,
    shared: Arc<Shared>,
}

impl<T> Clone for Wal<T> {
    fn clone(&self) -> Self {
        Self { tx: self.tx.clone(), shared: Arc::clone(&self.shared) }
    }
}

impl<T> std::fmt::Debug for Wal<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal").field("dir", &self.shared.dir).field("id", &self.shared.id).finish()
    }
}

/// What [`Wal::open`] found.
#[derive(Debug, Clone, Copy)]
pub struct Recovery {
    /// Entries handed back for delivery.
    pub entries: u64,
    /// Sequence number of the next append.
    pub next_seq: u64,
    /// Bytes cut off a torn tail.
    pub torn_bytes: u64,
}

fn encode(out: &mut Vec<u8>, seq: u64, e: &Entry) {
    let start = out.len();
    out.extend_from_slice(&[0; 8]);
    out.push(if e.rejection.is_some() { 2 } else { 1 });
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&e.arrival_micros.to_le_bytes());
    out.extend_from_slice(&(e.raw.len() as u32).to_le_bytes());
    out.extend_from_slice(&e.raw);
    if let Some((code, msg)) = &e.rejection {
        out.extend_from_slice(&(code.len() as u16).to_le_bytes());
        out.extend_from_slice(code.as_bytes());
        out.extend_from_slice(&(msg.len() as u32).to_le_bytes());
        out.extend_from_slice(msg.as_bytes());
    }
    let body_len = (out.len() - start - 8) as u32;
    let crc = crc32fast::hash(&out[start + 8..]);
    out[start..start + 4].copy_from_slice(&body_len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if b.len() < n {
        return None;
    }
    let (h, t) = b.split_at(n);
    *b = t;
    Some(h)
}

fn decode_body(mut b: &[u8]) -> Option<(u64, Entry)> {
    let kind = take(&mut b, 1)?[0];
    let seq = u64::from_le_bytes(take(&mut b, 8)?.try_into().ok()?);
    let arrival_micros = i64::from_le_bytes(take(&mut b, 8)?.try_into().ok()?);
    let raw_len = u32::from_le_bytes(take(&mut b, 4)?.try_into().ok()?) as usize;
    let raw = Bytes::copy_from_slice(take(&mut b, raw_len)?);
    let rejection = match kind {
        1 => None,
        2 => {
            let cl = u16::from_le_bytes(take(&mut b, 2)?.try_into().ok()?) as usize;
            let code = String::from_utf8(take(&mut b, cl)?.to_vec()).ok()?;
            let ml = u32::from_le_bytes(take(&mut b, 4)?.try_into().ok()?) as usize;
            let msg = String::from_utf8(take(&mut b, ml)?.to_vec()).ok()?;
            Some((code, msg))
        }
        _ => return None,
    };
    b.is_empty().then_some((seq, Entry { arrival_micros, raw, rejection }))
}

fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("wal-{first_seq:020}.log"))
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|f| f.sync_all()).map_err(Error::io(dir))
}

fn read_checkpoint(dir: &Path) -> Result<u64> {
    let path = dir.join("checkpoint");
    match fs::read_to_string(&path) {
        Ok(s) => s
            .trim()
            .parse()
            .map_err(|_| Error::WalCorrupt { path, reason: format!("checkpoint {s:?} is not a number") }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(Error::io(path)(e)),
    }
}

/// The id of the log in `dir` (16 hex digits), created on first use. Record ids derive from it.
pub fn log_id(dir: &Path) -> Result<String> {
    fs::create_dir_all(dir).map_err(Error::io(dir))?;
    let path = dir.join("id");
    match fs::read_to_string(&path) {
        Ok(s) if s.trim().len() == 16 && s.trim().bytes().all(|b| b.is_ascii_hexdigit()) => Ok(s.trim().to_owned()),
        Ok(s) => Err(Error::WalCorrupt { path, reason: format!("id {s:?} is not 16 hex digits") }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let seed = format!(
                "{}:{}:{}",
                dir.display(),
                std::process::id(),
                chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
            );
            let id = sluice_schemas::record_id(&seed)[..16].to_owned();
            let tmp = dir.join("id.tmp");
            fs::write(&tmp, &id).map_err(Error::io(&tmp))?;
            File::open(&tmp).and_then(|f| f.sync_all()).map_err(Error::io(&tmp))?;
            fs::rename(&tmp, &path).map_err(Error::io(&path))?;
            sync_dir(dir)?;
            Ok(id)
        }
        Err(e) => Err(Error::io(path)(e)),
    }
}

impl<T: Send + 'static> Wal<T> {
    /// Opens (or creates) the log in `config.dir`. Every entry at or past the checkpoint is passed to
    /// `recovered` in order; then `sink` receives each later append's payload, in sequence order,
    /// right after it is durable.
    pub fn open(
        config: &WalConfig,
        mut recovered: impl FnMut(u64, Entry),
        sink: impl FnMut(u64, T) + Send + 'static,
    ) -> Result<(Self, Recovery)> {
        let dir = &config.dir;
        fs::create_dir_all(dir).map_err(Error::io(dir))?;
        let id = log_id(dir)?;
        let checkpoint = read_checkpoint(dir)?;
        let mut firsts: Vec<(u64, PathBuf)> = Vec::new();
        for e in fs::read_dir(dir).map_err(Error::io(dir))? {
            let path = e.map_err(Error::io(dir))?.path();
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if let Some(n) = name.strip_prefix("wal-").and_then(|n| n.strip_suffix(".log")) {
                let first: u64 = n.parse().map_err(|_| Error::WalCorrupt {
                    path: path.clone(),
                    reason: "segment name is not wal-<number>.log; move the file out of the log folder".into(),
                })?;
                firsts.push((first, path));
            }
        }
        firsts.sort();
        let mut rec = Recovery { entries: 0, next_seq: checkpoint, torn_bytes: 0 };
        let mut segments = Vec::new();
        let count = firsts.len();
        for (i, (first, path)) in firsts.into_iter().enumerate() {
            let mut data = Vec::new();
            File::open(&path).and_then(|mut f| f.read_to_end(&mut data)).map_err(Error::io(&path))?;
            let mut off = 0usize;
            let mut expect = first;
            while off < data.len() {
                let ok = (|| {
                    let len = u32::from_le_bytes(data.get(off..off + 4)?.try_into().ok()?) as usize;
                    let crc = u32::from_le_bytes(data.get(off + 4..off + 8)?.try_into().ok()?);
                    let body = data.get(off + 8..off + 8 + len)?;
                    (crc32fast::hash(body) == crc).then_some(())?;
                    let (seq, entry) = decode_body(body)?;
                    Some((seq, entry, 8 + len))
                })();
                match ok {
                    Some((seq, entry, n)) if seq == expect => {
                        if seq >= checkpoint {
                            recovered(seq, entry);
                            rec.entries += 1;
                        }
                        expect += 1;
                        off += n;
                    }
                    _ if i + 1 == count => {
                        // A torn tail of the last segment: never acknowledged, cut it off.
                        rec.torn_bytes = (data.len() - off) as u64;
                        let f = OpenOptions::new().write(true).open(&path).map_err(Error::io(&path))?;
                        f.set_len(off as u64).and_then(|()| f.sync_all()).map_err(Error::io(&path))?;
                        tracing::warn!(segment = %path.display(), bytes = rec.torn_bytes, "cut a torn tail off the write-ahead log");
                        break;
                    }
                    _ => {
                        return Err(Error::WalCorrupt {
                            path,
                            reason: format!(
                                "damaged entry at byte {off} in a segment that is not the last; the disk may be failing. \
                                 Move the segment aside to start (its records after byte {off} would be lost)"
                            ),
                        });
                    }
                }
            }
            rec.next_seq = rec.next_seq.max(expect);
            segments.push(Segment { first_seq: first, path, bytes: off as u64 });
        }
        let total: u64 = segments.iter().map(|s| s.bytes).sum();
        let shared = Arc::new(Shared {
            dir: dir.clone(),
            id,
            total_bytes: AtomicU64::new(total),
            max_bytes: config.max_bytes,
            failed: AtomicBool::new(false),
            segments: Mutex::new(segments),
        });
        let (tx, rx) = mpsc::channel::<Append<T>>();
        let writer = Writer::start(Arc::clone(&shared), rec.next_seq, config.segment_bytes)?;
        let sink: Sink<T> = Box::new(sink);
        thread::Builder::new().name("sluice-wal".into()).spawn(move || writer.run(rx, sink)).map_err(Error::io(dir))?;
        Ok((Self { tx, shared }, rec))
    }

    /// Appends entries and waits until they are durable. Returns the first entry's sequence number;
    /// the others follow it. `payload` goes to the sink, in sequence order, before this returns.
    pub async fn append(&self, entries: Vec<Entry>, payload: T) -> Result<u64> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Append { entries, payload, reply })
            .map_err(|_| Error::Stopped("write-ahead log writer".into()))?;
        rx.await
            .map_err(|_| Error::Stopped("write-ahead log writer".into()))?
            .map_err(|e| Error::Stopped(format!("write-ahead log: {e}")))
    }
}

impl<T> Wal<T> {
    /// The log's id (part of every `record_id` derived from it).
    pub fn id(&self) -> &str {
        &self.shared.id
    }

    /// Bytes in all segments.
    pub fn bytes(&self) -> u64 {
        self.shared.total_bytes.load(Ordering::Relaxed)
    }

    /// Fraction of the size limit in use.
    pub fn usage(&self) -> f64 {
        self.bytes() as f64 / self.shared.max_bytes.max(1) as f64
    }

    /// Whether writing has failed (a disk error): the log takes no more appends.
    pub fn has_failed(&self) -> bool {
        self.shared.failed.load(Ordering::Relaxed)
    }

    /// Whether the log is over its size limit (or broken): new appends should wait.
    pub fn is_full(&self) -> bool {
        self.bytes() >= self.shared.max_bytes || self.shared.failed.load(Ordering::Relaxed)
    }

    /// First sequence number of the segment being written.
    pub fn active_first_seq(&self) -> u64 {
        self.shared.segments.lock().expect("wal lock").last().map_or(0, |s| s.first_seq)
    }

    /// Records that every entry before `watermark` is in the lake: writes the checkpoint and deletes
    /// the segments that hold only such entries.
    pub fn trim(&self, watermark: u64) -> Result<()> {
        let dir = &self.shared.dir;
        let tmp = dir.join("checkpoint.tmp");
        let mut f = File::create(&tmp).map_err(Error::io(&tmp))?;
        f.write_all(watermark.to_string().as_bytes()).and_then(|()| f.sync_all()).map_err(Error::io(&tmp))?;
        fs::rename(&tmp, dir.join("checkpoint")).map_err(Error::io(dir))?;
        let mut segs = self.shared.segments.lock().expect("wal lock");
        while segs.len() > 1 && segs[1].first_seq <= watermark {
            let s = segs.remove(0);
            fs::remove_file(&s.path).map_err(Error::io(&s.path))?;
            self.shared.total_bytes.fetch_sub(s.bytes, Ordering::Relaxed);
        }
        drop(segs);
        sync_dir(dir)
    }
}

struct Writer {
    shared: Arc<Shared>,
    next_seq: u64,
    segment_bytes: u64,
    file: BufWriter<File>,
    current: u64,
}

impl Writer {
    fn start(shared: Arc<Shared>, next_seq: u64, segment_bytes: u64) -> Result<Self> {
        let (file, path) = Self::create(&shared.dir, next_seq)?;
        shared.segments.lock().expect("wal lock").push(Segment { first_seq: next_seq, path, bytes: 0 });
        Ok(Self { shared, next_seq, segment_bytes, file, current: 0 })
    }

    fn create(dir: &Path, first_seq: u64) -> Result<(BufWriter<File>, PathBuf)> {
        let path = segment_path(dir, first_seq);
        let f = OpenOptions::new().create(true).append(true).open(&path).map_err(Error::io(&path))?;
        sync_dir(dir)?;
        Ok((BufWriter::with_capacity(1 << 20, f), path))
    }

    fn run<T>(mut self, rx: mpsc::Receiver<Append<T>>, mut sink: Sink<T>) {
        let mut buf = Vec::with_capacity(1 << 20);
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            let mut pending: usize = batch[0].entries.iter().map(|e| e.raw.len()).sum();
            while pending < 16 << 20 {
                match rx.try_recv() {
                    Ok(m) => {
                        pending += m.entries.iter().map(|e| e.raw.len()).sum::<usize>();
                        batch.push(m);
                    }
                    Err(_) => break,
                }
            }
            buf.clear();
            let mut firsts = Vec::with_capacity(batch.len());
            let mut seq = self.next_seq;
            for m in &batch {
                firsts.push(seq);
                for e in &m.entries {
                    encode(&mut buf, seq, e);
                    seq += 1;
                }
            }
            let result = self.write(&buf);
            match result {
                Ok(()) => {
                    self.next_seq = seq;
                    for (m, first) in batch.into_iter().zip(firsts) {
                        sink(first, m.payload);
                        m.reply.send(Ok(first)).ok();
                    }
                    if self.current >= self.segment_bytes
                        && let Err(e) = self.rotate()
                    {
                        tracing::error!(error = %e, "write-ahead log rotation failed");
                        self.shared.failed.store(true, Ordering::Relaxed);
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "write-ahead log write failed; ingest stops accepting records");
                    self.shared.failed.store(true, Ordering::Relaxed);
                    for m in batch {
                        m.reply.send(Err(e.to_string())).ok();
                    }
                }
            }
        }
        self.file.flush().ok();
    }

    fn write(&mut self, buf: &[u8]) -> Result<()> {
        if self.shared.failed.load(Ordering::Relaxed) {
            return Err(Error::Stopped("an earlier write failed".into()));
        }
        let path = segment_path(&self.shared.dir, self.next_seq);
        self.file.write_all(buf).map_err(Error::io(&path))?;
        self.file.flush().map_err(Error::io(&path))?;
        self.file.get_ref().sync_data().map_err(Error::io(&path))?;
        self.current += buf.len() as u64;
        self.shared.total_bytes.fetch_add(buf.len() as u64, Ordering::Relaxed);
        if let Some(s) = self.shared.segments.lock().expect("wal lock").last_mut() {
            s.bytes += buf.len() as u64;
        }
        Ok(())
    }

    fn rotate(&mut self) -> Result<()> {
        let (file, path) = Self::create(&self.shared.dir, self.next_seq)?;
        self.file = file;
        self.current = 0;
        self.shared.segments.lock().expect("wal lock").push(Segment { first_seq: self.next_seq, path, bytes: 0 });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: usize) -> Entry {
        Entry {
            arrival_micros: i as i64,
            raw: format!("{{\"n\":{i}}}").into(),
            rejection: i.is_multiple_of(3).then(|| ("invalid_json".to_owned(), format!("bad {i}"))),
        }
    }

    fn config(dir: &Path, segment_bytes: u64) -> WalConfig {
        WalConfig { dir: dir.to_owned(), segment_bytes, max_bytes: 1 << 30 }
    }

    #[tokio::test]
    async fn appends_survive_reopen_and_trim_deletes_segments() {
        let dir = tempfile::tempdir().unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        {
            let g = Arc::clone(&got);
            let (wal, rec) = Wal::open(
                &config(dir.path(), 200),
                |_, _| panic!("empty log"),
                move |seq, p: usize| g.lock().unwrap().push((seq, p)),
            )
            .unwrap();
            assert_eq!(rec.next_seq, 0);
            for i in 0..30 {
                let first = wal.append(vec![entry(2 * i), entry(2 * i + 1)], i).await.unwrap();
                assert_eq!(first, 2 * i as u64);
            }
            assert!(fs::read_dir(dir.path()).unwrap().count() > 4, "segments rotated");
            wal.trim(20).unwrap();
        }
        assert_eq!(got.lock().unwrap().len(), 30);
        let mut again = Vec::new();
        let (wal, rec) = Wal::<()>::open(&config(dir.path(), 200), |seq, e| again.push((seq, e)), |_, _| {}).unwrap();
        assert_eq!(rec.next_seq, 60);
        assert_eq!(again.len(), 40);
        for (seq, e) in &again {
            assert_eq!(e, &entry(*seq as usize));
        }
        assert!(wal.bytes() > 0);
    }

    #[tokio::test]
    async fn a_torn_tail_is_cut_and_the_rest_recovered() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (wal, _) = Wal::open(&config(dir.path(), 1 << 20), |_, _| {}, |_, _: ()| {}).unwrap();
            for i in 0..5 {
                wal.append(vec![entry(i)], ()).await.unwrap();
            }
        }
        let seg = segment_path(dir.path(), 0);
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&[40, 0, 0, 0, 1, 2, 3]).unwrap();
        drop(f);
        let mut n = 0;
        let (_, rec) = Wal::<()>::open(&config(dir.path(), 1 << 20), |_, _| n += 1, |_, _| {}).unwrap();
        assert_eq!((n, rec.next_seq, rec.torn_bytes), (5, 5, 7));
    }
}
