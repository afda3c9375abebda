//! Requests already answered: a shipper that retries a request it was acknowledged for (its
//! answer lost) must not have the records taken twice.

use std::{
    collections::{HashSet, VecDeque},
    io::Write as _,
    path::PathBuf,
    sync::Mutex,
};

/// Ids remembered (a retry of one is answered without taking it again).
pub const REMEMBERED: usize = 4096;

/// The ids of requests this server has answered 200, newest last, kept in a file beside the
/// write-ahead log (one id a line, appended and fsynced before the answer goes out), so that a
/// retry of an acknowledged request is recognized after a restart too. Ids must not hold line
/// breaks (the callers check).
#[derive(Debug)]
pub struct Answered {
    path: Option<PathBuf>,
    ids: Mutex<(HashSet<String>, VecDeque<String>)>,
}

impl Answered {
    /// The ids kept at `path` (made when missing); `None` keeps them in memory only.
    pub fn open(path: Option<PathBuf>) -> std::io::Result<Self> {
        let mut ids = (HashSet::new(), VecDeque::new());
        if let Some(p) = &path {
            match std::fs::read_to_string(p) {
                Ok(text) => {
                    for id in text.lines().filter(|l| !l.is_empty()) {
                        remember(&mut ids, id.to_owned());
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        let d = Self { path, ids: Mutex::new(ids) };
        d.rewrite()?;
        Ok(d)
    }

    pub fn contains(&self, id: &str) -> bool {
        self.ids.lock().expect("delivered ids").0.contains(id)
    }

    /// Remembers `id`, durably when kept in a file.
    pub fn insert(&self, id: String) -> std::io::Result<()> {
        let mut g = self.ids.lock().expect("delivered ids");
        if g.0.contains(&id) {
            return Ok(());
        }
        remember(&mut g, id.clone());
        let full = g.1.len() >= REMEMBERED;
        drop(g);
        let Some(path) = &self.path else { return Ok(()) };
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        f.write_all(format!("{id}\n").as_bytes())?;
        f.sync_data()?;
        let len = f.metadata()?.len();
        // Rewritten once it holds twice what is remembered, so it stays small.
        if full && len > (2 * REMEMBERED * 40) as u64 { self.rewrite() } else { Ok(()) }
    }

    /// Writes the remembered ids anew (a temporary file, fsynced, renamed over the old one).
    fn rewrite(&self) -> std::io::Result<()> {
        let Some(path) = &self.path else { return Ok(()) };
        let text: String = self.ids.lock().expect("delivered ids").1.iter().map(|id| format!("{id}\n")).collect();
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

fn remember((set, order): &mut (HashSet<String>, VecDeque<String>), id: String) {
    if set.insert(id.clone()) {
        order.push_back(id);
        if order.len() > REMEMBERED
            && let Some(old) = order.pop_front()
        {
            set.remove(&old);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answered_ids_survive_a_reopen_and_the_oldest_are_forgotten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("answered");
        let a = Answered::open(Some(path.clone())).expect("open");
        for i in 0..REMEMBERED + 10 {
            a.insert(format!("id-{i}")).expect("insert");
        }
        drop(a);
        let b = Answered::open(Some(path.clone())).expect("reopen");
        assert!(b.contains("id-10") && b.contains(&format!("id-{}", REMEMBERED + 9)));
        assert!(!b.contains("id-9"), "the oldest ids are forgotten");
        let lines = std::fs::read_to_string(&path).expect("read").lines().count();
        assert_eq!(lines, REMEMBERED, "a reopen writes only what is remembered");
        assert!(!Answered::open(None).expect("in memory").contains("id-10"));
    }
}
