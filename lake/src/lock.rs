//! One writer of a kind per lake: a second `sluice serve` (or `replay`, or `compact`) on a lake
//! that one already writes refuses to start, saying who holds it.
//!
//! * **A lake on local disk**: an exclusive `flock` on `_sluice/{name}.lock`, held while the
//!   process lives. The operating system lets go when the process ends, however it ends, so a
//!   crashed holder never blocks the next one.
//! * **A lake on S3** (or any object store): a lease object `_sluice/{name}.lease` holding who
//!   has it and until when. It is created only if absent (`If-None-Match: *`), renewed every
//!   [`RENEW_EVERY`] only if unchanged since (`If-Match` on its ETag), and taken over once it
//!   has expired ([`LEASE_TTL`] after its last renewal: a holder that crashed), again only if
//!   unchanged since it was read, so of two takers one wins. A holder whose renewals fail until
//!   the lease may have expired, or find it changed, has lost it ([`LakeLock::lost`]). A store
//!   without conditional writes cannot hold a lease: a warning says to run one writer at a time.
//!
//! Which writers exclude each other: two servers (both would deliver into the same lake with
//! its own write-ahead log each, and an operator running two by mistake is told so); two
//! replays (both would deliver the same error records and replace the same error files); two
//! compactions. A server, imports, a replay and a compaction may run side by side: their file
//! names never collide and compaction's swap is atomic for readers.

use std::{
    fs::{File, OpenOptions},
    io::{Read, Write},
    sync::{Arc, Mutex},
    time::Duration,
};

use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion, path::Path};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::{
    error::{Error, Result},
    lake::Lake,
};

/// How long a lease lasts after its last renewal.
pub const LEASE_TTL: Duration = Duration::from_secs(30);
/// How often a lease is renewed.
pub const RENEW_EVERY: Duration = Duration::from_secs(10);

/// What a lease object holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LeaseBody {
    holder: String,
    /// Milliseconds since the epoch.
    expires_at_ms: i64,
}

/// An exclusive hold on a lake for one kind of writer, given back when dropped (a lease is also
/// deleted by [`LakeLock::release`]).
#[derive(Debug)]
pub struct LakeLock {
    hold: Hold,
    lost: watch::Receiver<bool>,
}

#[derive(Debug)]
enum Hold {
    /// The `flock`ed file of a local lake.
    File(#[allow(dead_code, reason = "held for its lock")] File),
    /// A lease on an object store, renewed by a task.
    Lease {
        store: Arc<dyn ObjectStore>,
        key: Path,
        version: Arc<Mutex<UpdateVersion>>,
        renew: tokio::task::AbortHandle,
    },
    /// A store that cannot hold a lease.
    Unheld,
}

/// Takes an advisory lock (`flock`) on the file at `path` (created if missing) and writes `holder`
/// into it, for the message another process gets. `Ok(Err(who))` when another process holds it:
/// what that one wrote. The lock lasts as long as the returned file is open, and the operating
/// system drops it with a process that dies.
pub fn lock_file(path: &std::path::Path, holder: &str) -> std::io::Result<std::result::Result<File, String>> {
    let mut f = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
    match f.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut who = String::new();
            f.read_to_string(&mut who).ok();
            return Ok(Err(who.trim().to_owned()));
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(e),
    }
    f.set_len(0)?;
    f.write_all(holder.as_bytes())?;
    Ok(Ok(f))
}

/// Who this process is, for the message another one gets.
fn holder(what: &str) -> String {
    let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_owned()).unwrap_or_default();
    format!(
        "`sluice {what}`, pid {} on {}, since {}",
        std::process::id(),
        if host.is_empty() { "?" } else { &host },
        chrono::Utc::now().to_rfc3339()
    )
}

fn in_use(lake: &Lake, name: &str, holder: String) -> Error {
    Error::InUse {
        what: format!("the lake {} (for `sluice {name}`)", lake.url()),
        holder,
        fix: format!(
            "run one `sluice {name}` a lake at a time: stop that one first. A holder that crashed lets go by itself \
             (at once on local disk, after {} s on S3)",
            LEASE_TTL.as_secs()
        ),
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn version(e_tag: Option<String>, version: Option<String>) -> UpdateVersion {
    UpdateVersion { e_tag, version }
}

impl LakeLock {
    /// Takes the lake's lock for `name` (`serve`, `replay`, `compact`), or says who holds it.
    pub async fn acquire(lake: &Lake, name: &str) -> Result<Self> {
        let (lost_tx, lost) = watch::channel(false);
        let hold = match lake.local_root() {
            Some(root) => {
                let dir = root.join("_sluice");
                let path = dir.join(format!("{name}.lock"));
                let lake2 = lake.clone();
                let name2 = name.to_owned();
                tokio::task::spawn_blocking(move || -> Result<Hold> {
                    std::fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
                    match lock_file(&path, &holder(&name2)).map_err(Error::io(&path))? {
                        Ok(f) => Ok(Hold::File(f)),
                        Err(who) => Err(in_use(&lake2, &name2, who)),
                    }
                })
                .await
                .map_err(Error::task("taking a lock"))??
            }
            None => {
                let store = Arc::clone(lake.store());
                let key = lake.key(&format!("_sluice/{name}.lease"));
                match take_lease(store.as_ref(), &key, &holder(name)).await {
                    Ok(Some(v)) => {
                        let version = Arc::new(Mutex::new(v));
                        let renew = tokio::spawn(renew(
                            Arc::clone(&store),
                            key.clone(),
                            holder(name),
                            Arc::clone(&version),
                            lost_tx,
                        ))
                        .abort_handle();
                        Hold::Lease { store, key, version, renew }
                    }
                    Ok(None) => {
                        tracing::warn!(
                            lake = lake.url(),
                            "this store cannot write conditionally, so it holds no lease: run one `sluice {name}` a lake at a time"
                        );
                        Hold::Unheld
                    }
                    Err(LeaseError::Held(who)) => return Err(in_use(lake, name, who)),
                    Err(LeaseError::Store(e)) => return Err(e.into()),
                }
            }
        };
        Ok(Self { hold, lost })
    }

    /// Resolves if the lease is lost (never for a lock on local disk): this process must stop
    /// writing the lake.
    pub async fn lost(&self) {
        let mut rx = self.lost.clone();
        while !*rx.borrow_and_update() {
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Gives the lock back: the lease is deleted if it is still this process's.
    pub async fn release(self) -> Result<()> {
        if let Hold::Lease { store, key, version, renew } = &self.hold {
            renew.abort();
            let ours = version.lock().expect("lease lock").e_tag.clone();
            let current = store.head(key).await.ok().and_then(|m| m.e_tag);
            if ours.is_some() && current == ours {
                store.delete(key).await?;
            }
        }
        Ok(())
    }
}

impl Drop for LakeLock {
    fn drop(&mut self) {
        if let Hold::Lease { renew, .. } = &self.hold {
            renew.abort();
        }
    }
}

enum LeaseError {
    /// Another process holds it: who.
    Held(String),
    Store(object_store::Error),
}

/// Creates the lease, or takes over an expired one; `Ok(None)` when the store cannot write
/// conditionally.
async fn take_lease(store: &dyn ObjectStore, key: &Path, me: &str) -> Result<Option<UpdateVersion>, LeaseError> {
    let body = || {
        let b = LeaseBody { holder: me.to_owned(), expires_at_ms: now_ms() + LEASE_TTL.as_millis() as i64 };
        PutPayload::from(serde_json::to_vec(&b).unwrap_or_default())
    };
    let create = PutOptions { mode: PutMode::Create, ..Default::default() };
    match store.put_opts(key, body(), create).await {
        Ok(r) => return Ok(Some(version(r.e_tag, r.version))),
        Err(object_store::Error::AlreadyExists { .. }) => {}
        Err(object_store::Error::NotImplemented { .. } | object_store::Error::NotSupported { .. }) => return Ok(None),
        Err(e) => return Err(LeaseError::Store(e)),
    }
    let got = store.get(key).await.map_err(LeaseError::Store)?;
    let meta = got.meta.clone();
    let bytes = got.bytes().await.map_err(LeaseError::Store)?;
    let current: Option<LeaseBody> = serde_json::from_slice(&bytes).ok();
    if let Some(c) = &current
        && c.expires_at_ms > now_ms()
    {
        let until =
            chrono::DateTime::from_timestamp_millis(c.expires_at_ms).map(|t| t.to_rfc3339()).unwrap_or_default();
        return Err(LeaseError::Held(format!("{}; its lease runs until {until} unless renewed", c.holder)));
    }
    // Expired (or unreadable): taken over only if nobody changed it since it was read.
    let update = PutOptions { mode: PutMode::Update(version(meta.e_tag, meta.version)), ..Default::default() };
    match store.put_opts(key, body(), update).await {
        Ok(r) => {
            let was = current.map_or_else(|| "an unreadable lease".to_owned(), |c| c.holder);
            tracing::warn!(lease = %key, previous = was, "took over an expired lease on the lake");
            Ok(Some(version(r.e_tag, r.version)))
        }
        Err(object_store::Error::Precondition { .. } | object_store::Error::AlreadyExists { .. }) => {
            Err(LeaseError::Held("another process that took it over at the same moment".into()))
        }
        Err(object_store::Error::NotImplemented { .. } | object_store::Error::NotSupported { .. }) => Ok(None),
        Err(e) => Err(LeaseError::Store(e)),
    }
}

/// Renews the lease every [`RENEW_EVERY`] until it is lost: changed by another process, or not
/// renewed for so long that it may have expired.
async fn renew(
    store: Arc<dyn ObjectStore>,
    key: Path,
    me: String,
    version: Arc<Mutex<UpdateVersion>>,
    lost: watch::Sender<bool>,
) {
    let mut renewed = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(RENEW_EVERY).await;
        let b = LeaseBody { holder: me.clone(), expires_at_ms: now_ms() + LEASE_TTL.as_millis() as i64 };
        let current = version.lock().expect("lease lock").clone();
        let opts = PutOptions { mode: PutMode::Update(current), ..Default::default() };
        match store.put_opts(&key, PutPayload::from(serde_json::to_vec(&b).unwrap_or_default()), opts).await {
            Ok(r) => {
                *version.lock().expect("lease lock") = UpdateVersion { e_tag: r.e_tag, version: r.version };
                renewed = tokio::time::Instant::now();
            }
            Err(object_store::Error::Precondition { .. } | object_store::Error::NotFound { .. }) => {
                tracing::error!(lease = %key, "the lease on the lake was taken by another process; stopping");
                lost.send(true).ok();
                return;
            }
            Err(e) if renewed.elapsed() + RENEW_EVERY >= LEASE_TTL => {
                tracing::error!(lease = %key, error = %e, "the lease on the lake could not be renewed in time; stopping");
                lost.send(true).ok();
                return;
            }
            Err(e) => tracing::warn!(lease = %key, error = %e, "renewing the lease on the lake failed; retrying"),
        }
    }
}

#[cfg(test)]
mod tests {
    use object_store::memory::InMemory;

    use super::*;

    #[tokio::test]
    async fn a_local_lake_has_one_holder_and_a_dead_ones_lock_is_free() {
        let dir = tempfile::tempdir().expect("tmp");
        let lake = Lake::open(dir.path().to_str().expect("utf8")).await.expect("lake");
        let first = LakeLock::acquire(&lake, "serve").await.expect("first");
        let e = LakeLock::acquire(&lake, "serve").await.expect_err("second").to_string();
        assert!(e.contains("in use by another sluice process") && e.contains("`sluice serve`, pid"), "{e}");
        let _other_kind = LakeLock::acquire(&lake, "replay").await.expect("another kind of writer");
        drop(first);
        LakeLock::acquire(&lake, "serve").await.expect("free once its holder is gone");
    }

    #[tokio::test]
    async fn a_lease_is_refused_while_alive_and_taken_over_once_expired() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let lake = Lake::with_store(Arc::clone(&store), "p", "s3://b/p");
        let first = LakeLock::acquire(&lake, "serve").await.expect("first");
        let e = LakeLock::acquire(&lake, "serve").await.expect_err("second").to_string();
        assert!(e.contains("lease runs until"), "{e}");
        first.release().await.expect("release");
        let second = LakeLock::acquire(&lake, "serve").await.expect("free once released");
        drop(second);
        // A holder that crashed: its lease stays until it expires, then is taken over.
        let key = lake.key("_sluice/serve.lease");
        let dead = LeaseBody { holder: "a crashed server".into(), expires_at_ms: now_ms() - 1 };
        store.put(&key, PutPayload::from(serde_json::to_vec(&dead).expect("json"))).await.expect("put");
        let third = LakeLock::acquire(&lake, "serve").await.expect("an expired lease is taken over");
        let body: LeaseBody =
            serde_json::from_slice(&store.get(&key).await.expect("get").bytes().await.expect("bytes")).expect("json");
        assert!(body.holder.contains(&format!("pid {}", std::process::id())) && body.expires_at_ms > now_ms());
        // Changed behind its holder's back: the holder finds out at its next renewal.
        store.put(&key, PutPayload::from(serde_json::to_vec(&dead).expect("json"))).await.expect("put");
        tokio::time::pause();
        tokio::time::timeout(RENEW_EVERY * 2, third.lost()).await.expect("the holder learns it lost the lease");
    }
}
