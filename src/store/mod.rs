//! The datastore: an etcd-v3-compatible MVCC key-value store on one SQLite table (kine's layout),
//! with a single writer task doing group commit, watch fan-out from memory, leases and
//! incremental compaction. The etcd gRPC façade in [`grpc`] serves it to etcdctl and any etcd
//! client; later the API server is its only other user.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::proto::{
    PbDeleteRequest, PbDeleteResponse, PbEvent, PbLeaseTimeToLiveResponse, PbPutRequest,
    PbPutResponse, PbRangeRequest, PbRangeResponse, PbResponseHeader, PbTxnRequest, PbTxnResponse,
};
use rusqlite::Connection;
use tokio::sync::{Semaphore, mpsc, oneshot};

mod authority;
pub mod grpc;
pub mod snapshot;
mod sqlite;
#[cfg(test)]
mod tests;
mod watch;
mod writer;

pub use watch::{Watch, WatchFilter};

/// `--datastore-sync`: how hard a commit waits for the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncMode {
    /// fsync every group commit: no acknowledged write is ever lost to a crash.
    #[default]
    Full,
    /// WAL without fsync on commit: survives a process crash, may lose the last commits on power loss.
    Normal,
}

impl std::str::FromStr for SyncMode {
    type Err = String;
    fn from_str(s: &str) -> Result<SyncMode, String> {
        match s {
            "full" => Ok(SyncMode::Full),
            "normal" => Ok(SyncMode::Normal),
            other => Err(format!(
                "invalid sync mode {other:?}: expected \"full\" or \"normal\""
            )),
        }
    }
}

/// Where the data lives (`--datastore-endpoint`, `rk3s datastore --endpoint`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `sqlite:///absolute/path.db` (or `sqlite://relative/path.db`).
    Sqlite(PathBuf),
}

impl std::str::FromStr for Endpoint {
    type Err = String;
    fn from_str(s: &str) -> Result<Endpoint, String> {
        if let Some(path) = s.strip_prefix("sqlite://") {
            let path = path.split('?').next().unwrap_or_default();
            if path.is_empty() {
                return Err(format!("datastore endpoint {s:?} has no file path"));
            }
            return Ok(Endpoint::Sqlite(PathBuf::from(path)));
        }
        let scheme = s.split("://").next().unwrap_or(s);
        Err(format!(
            "unsupported datastore endpoint {s:?}: scheme {scheme:?} is not supported yet (use sqlite:///PATH)"
        ))
    }
}

/// Store settings, built by `cli`.
#[derive(Debug, Clone)]
pub struct Config {
    pub endpoint: Endpoint,
    pub sync: SyncMode,
    /// How often automatic compaction runs (`--datastore-compact-interval`); zero turns it off.
    pub compaction_interval: Duration,
    /// How many revisions automatic compaction keeps (`--datastore-compact-retention`).
    pub compaction_retention: i64,
}

impl Config {
    /// Defaults for a database file: full sync, compaction every 5 minutes keeping 1000 revisions.
    pub fn sqlite(path: impl Into<PathBuf>) -> Config {
        Config {
            endpoint: Endpoint::Sqlite(path.into()),
            sync: SyncMode::Full,
            compaction_interval: Duration::from_secs(300),
            compaction_retention: 1000,
        }
    }
}

/// Errors of the store. Outcomes such as a failed compare are not errors. The etcd-visible
/// ones carry etcd's own messages; `grpc` maps them to etcd's status codes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "database {path} is in use by another rk3s process (lock {lock} is held); stop it first"
    )]
    Locked { path: PathBuf, lock: PathBuf },
    #[error("database {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("sqlite: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("internal store error: {0}")]
    Internal(String),
    #[error("the store is shut down")]
    Stopped,
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted,
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRevision,
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    #[error("etcdserver: key not found")]
    KeyNotFound,
    #[error("etcdserver: value is provided")]
    ValueProvided,
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    #[error("etcdserver: request is too large")]
    RequestTooLarge,
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    #[error("etcdserver: lease already exists")]
    LeaseExists,
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
}

/// The keys a request covers, from etcd's `key`/`range_end` pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRange {
    /// `range_end` empty: one key.
    Key(Vec<u8>),
    /// `range_end` = `"\0"`: every key ≥ `key`.
    From(Vec<u8>),
    /// `[key, range_end)`.
    Between(Vec<u8>, Vec<u8>),
}

impl KeyRange {
    pub fn new(key: &[u8], range_end: &[u8]) -> KeyRange {
        match range_end {
            [] => KeyRange::Key(key.to_vec()),
            [0] => KeyRange::From(key.to_vec()),
            end => KeyRange::Between(key.to_vec(), end.to_vec()),
        }
    }

    pub fn contains(&self, k: &[u8]) -> bool {
        match self {
            KeyRange::Key(key) => key.as_slice() == k,
            KeyRange::From(key) => k >= key.as_slice(),
            KeyRange::Between(key, end) => k >= key.as_slice() && k < end.as_slice(),
        }
    }
}

/// All the events of one revision, in the order they were applied.
#[derive(Debug, Clone)]
pub struct Change {
    pub revision: i64,
    pub events: Vec<PbEvent>,
}

/// etcd's smallest lease TTL with default timing (1.5 × election timeout, rounded up).
const MIN_LEASE_TTL: i64 = 2;

/// A lease in memory. Its deadline is not persisted: as etcd does on a leader change, a
/// restart gives every lease its full TTL again.
#[derive(Debug)]
struct Lease {
    ttl: i64,
    deadline: Instant,
    keys: BTreeSet<Vec<u8>>,
}

impl Lease {
    fn new(ttl: i64) -> Lease {
        Lease {
            ttl,
            deadline: Instant::now() + Duration::from_secs(ttl.max(0) as u64),
            keys: BTreeSet::new(),
        }
    }
}

/// Figures for Maintenance.Status.
#[derive(Debug, Clone, Copy)]
pub struct Status {
    pub revision: i64,
    pub compact_revision: i64,
    pub db_size: i64,
    pub db_size_in_use: i64,
}

/// State shared by the handle, the writer thread and the watchers.
struct Shared {
    path: PathBuf,
    cluster_id: u64,
    member_id: u64,
    /// The newest committed revision, published after the commit.
    revision: AtomicI64,
    compact_revision: AtomicI64,
    leases: Mutex<HashMap<i64, Lease>>,
    hub: Mutex<watch::Hub>,
    readers: Mutex<Vec<Connection>>,
    reader_permits: Semaphore,
    /// Set by `Store::close`: read connections in use are closed instead of pooled.
    closed: AtomicBool,
}

impl Shared {
    fn header(&self, revision: i64) -> PbResponseHeader {
        PbResponseHeader {
            cluster_id: self.cluster_id,
            member_id: self.member_id,
            revision,
            raft_term: 1,
        }
    }

    /// Makes a committed batch visible: watchers first, then readers, all under the hub lock
    /// so a watcher that subscribes sees each revision exactly once (from history or live).
    fn publish(&self, revision: i64, changes: Vec<Change>) {
        let mut hub = self.hub.lock().unwrap_or_else(|p| p.into_inner());
        // Reads see the revision before watchers hear of it, so a client reacting to a watch
        // event reads at least that revision (as etcd guarantees). New watchers subscribe
        // under the same lock, so none misses these changes.
        self.revision.store(revision, Ordering::Release);
        for change in changes {
            hub.push(Arc::new(change));
        }
    }

    fn load_leases(&self, conn: &Connection) -> Result<(), Error> {
        let mut map: HashMap<i64, Lease> = sqlite::leases(conn)?
            .into_iter()
            .map(|(id, ttl)| (id, Lease::new(ttl)))
            .collect();
        for (lease, key) in sqlite::leased_keys(conn)? {
            if let Some(l) = map.get_mut(&lease) {
                l.keys.insert(key);
            }
        }
        let mut leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        // Keep the deadlines of leases that still exist (a reload must not extend them).
        for (id, l) in map.iter_mut() {
            if let Some(old) = leases.get(id) {
                l.deadline = old.deadline;
            }
        }
        *leases = map;
        Ok(())
    }

    /// Runs `f` on a pooled read-only connection on the blocking thread pool.
    async fn read<T, F>(self: &Arc<Self>, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &Shared) -> Result<T, Error> + Send + 'static,
    {
        let _permit = self
            .reader_permits
            .acquire()
            .await
            .map_err(|_| Error::Stopped)?;
        let pooled = self.readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match pooled {
            Some(c) => c,
            None => sqlite::open_reader(&self.path)?,
        };
        let shared = Arc::clone(self);
        let (conn, result) = tokio::task::spawn_blocking(move || {
            let r = f(&conn, &shared);
            (conn, r)
        })
        .await
        .map_err(|e| Error::Internal(format!("read task failed: {e}")))?;
        if !self.closed.load(Ordering::Acquire) {
            self.readers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(conn);
        }
        result
    }
}

/// A handle to the store; cheap to clone. The writer stops when the last handle is dropped.
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
    tx: mpsc::Sender<writer::Command>,
    _lock: Arc<File>,
}

/// How many blocking reads run at once.
const READERS: usize = 4;

impl Store {
    /// Opens the store: takes the database lock, checks the file, starts the writer thread and
    /// the lease and compaction timers (which need a tokio runtime).
    pub fn open(config: &Config) -> Result<Store, Error> {
        let Endpoint::Sqlite(path) = &config.endpoint;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| Error::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let lock = lock(path)?;
        let (conn, meta) = sqlite::open_writer(path, config.sync)?;
        let shared = Arc::new(Shared {
            path: path.clone(),
            cluster_id: meta.cluster_id,
            member_id: meta.member_id,
            revision: AtomicI64::new(meta.revision),
            compact_revision: AtomicI64::new(meta.compact_revision),
            leases: Mutex::new(HashMap::new()),
            hub: Mutex::new(watch::Hub::new()),
            readers: Mutex::new(Vec::new()),
            reader_permits: Semaphore::new(READERS),
            closed: AtomicBool::new(false),
        });
        // The first full reads: a damaged file shows here, so name it.
        shared.load_leases(&conn).map_err(|e| match e {
            Error::Sql(source) => Error::Open {
                path: path.clone(),
                source,
            },
            e => e,
        })?;
        let (tx, rx) = mpsc::channel(4096);
        writer::spawn(conn, Arc::clone(&shared), rx, meta.compacted_to).map_err(|source| {
            Error::Io {
                path: path.clone(),
                source,
            }
        })?;
        let store = Store {
            shared,
            tx,
            _lock: Arc::new(lock),
        };
        store.spawn_lease_expiry();
        if !config.compaction_interval.is_zero() {
            store.spawn_auto_compaction(config.compaction_interval, config.compaction_retention);
        }
        tracing::info!(
            path = %path.display(),
            revision = meta.revision,
            compact_revision = meta.compact_revision,
            "store opened"
        );
        Ok(store)
    }

    pub fn revision(&self) -> i64 {
        self.shared.revision.load(Ordering::Acquire)
    }

    pub fn compact_revision(&self) -> i64 {
        self.shared.compact_revision.load(Ordering::Acquire)
    }

    pub fn header(&self) -> PbResponseHeader {
        self.shared.header(self.revision())
    }

    pub fn ids(&self) -> (u64, u64) {
        (self.shared.cluster_id, self.shared.member_id)
    }

    async fn send<T>(
        &self,
        make: impl FnOnce(writer::Reply<T>) -> writer::Command,
    ) -> Result<T, Error> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)?
    }

    pub async fn range(&self, req: PbRangeRequest) -> Result<PbRangeResponse, Error> {
        writer::check_range(&req)?;
        let current = self.revision();
        let mut resp = self
            .shared
            .read(move |conn, shared| writer::range_at(conn, &req, current, shared))
            .await?;
        resp.header = Some(self.shared.header(current));
        Ok(resp)
    }

    pub async fn put(&self, req: PbPutRequest) -> Result<PbPutResponse, Error> {
        self.send(|r| writer::Command::Put(req, r)).await
    }

    pub async fn delete_range(&self, req: PbDeleteRequest) -> Result<PbDeleteResponse, Error> {
        self.send(|r| writer::Command::Delete(req, r)).await
    }

    pub async fn txn(&self, req: PbTxnRequest) -> Result<PbTxnResponse, Error> {
        self.send(|r| writer::Command::Txn(req, r)).await
    }

    /// Compacts to `revision`: reads below it fail at once; the rows go in small background
    /// steps (or before returning, with `physical`).
    pub async fn compact(&self, revision: i64, physical: bool) -> Result<(), Error> {
        self.send(|reply| writer::Command::Compact {
            revision,
            physical,
            reply,
        })
        .await
    }

    /// Grants a lease; `id` 0 lets the store choose. Returns the id and the granted TTL.
    pub async fn lease_grant(&self, id: i64, ttl: i64) -> Result<(i64, i64), Error> {
        let ttl = ttl.max(MIN_LEASE_TTL);
        self.send(|reply| writer::Command::LeaseGrant { id, ttl, reply })
            .await
    }

    /// Revokes a lease, deleting its keys in one revision.
    pub async fn lease_revoke(&self, id: i64) -> Result<(), Error> {
        self.send(|reply| writer::Command::LeaseRevoke {
            id,
            only_if_expired: false,
            reply,
        })
        .await
    }

    /// Renews a lease; returns its TTL, or `None` if it does not exist (etcd then answers TTL 0).
    pub fn lease_keep_alive(&self, id: i64) -> Option<i64> {
        let mut leases = self.shared.leases.lock().unwrap_or_else(|p| p.into_inner());
        let l = leases.get_mut(&id)?;
        l.deadline = Instant::now() + Duration::from_secs(l.ttl as u64);
        Some(l.ttl)
    }

    /// etcd's LeaseTimeToLive: a missing lease answers TTL -1.
    pub fn lease_time_to_live(&self, id: i64, keys: bool) -> PbLeaseTimeToLiveResponse {
        let leases = self.shared.leases.lock().unwrap_or_else(|p| p.into_inner());
        let header = Some(self.header());
        match leases.get(&id) {
            None => PbLeaseTimeToLiveResponse {
                header,
                id,
                ttl: -1,
                granted_ttl: 0,
                keys: Vec::new(),
            },
            Some(l) => PbLeaseTimeToLiveResponse {
                header,
                id,
                ttl: l
                    .deadline
                    .saturating_duration_since(Instant::now())
                    .as_secs() as i64,
                granted_ttl: l.ttl,
                keys: if keys {
                    l.keys.iter().cloned().collect()
                } else {
                    Vec::new()
                },
            },
        }
    }

    pub fn leases(&self) -> Vec<i64> {
        let leases = self.shared.leases.lock().unwrap_or_else(|p| p.into_inner());
        let mut ids: Vec<i64> = leases.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Starts a watch; events from `start_revision` (0: from now on) arrive through
    /// [`Watch::next`]. A start below the compact revision makes the first `next` fail.
    pub fn watch(&self, range: KeyRange, start_revision: i64, filter: WatchFilter) -> Watch {
        Watch::new(Arc::clone(&self.shared), range, start_revision, filter)
    }

    pub async fn status(&self) -> Result<Status, Error> {
        let (db_size, db_size_in_use) = self.shared.read(|conn, _| sqlite::size(conn)).await?;
        Ok(Status {
            revision: self.revision(),
            compact_revision: self.compact_revision(),
            db_size,
            db_size_in_use,
        })
    }

    /// etcd's Defragment: rebuilds the file without free pages (writes wait meanwhile).
    pub async fn defragment(&self) -> Result<(), Error> {
        self.send(writer::Command::Defragment).await
    }

    /// Stops the store cleanly: no new reads start, the read connections close, and the writer
    /// finishes the queued writes, checkpoints the WAL into the database and closes it. Every
    /// later request on any handle fails with `Stopped`.
    pub async fn close(&self) -> Result<(), Error> {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.reader_permits.close();
        self.shared
            .readers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.send(writer::Command::Close).await
    }

    fn spawn_lease_expiry(&self) {
        let shared = Arc::downgrade(&self.shared);
        let tx = self.tx.downgrade();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let (Some(shared), Some(tx)) = (shared.upgrade(), tx.upgrade()) else {
                    return;
                };
                let now = Instant::now();
                let expired: Vec<i64> = {
                    let leases = shared.leases.lock().unwrap_or_else(|p| p.into_inner());
                    leases
                        .iter()
                        .filter(|(_, l)| l.deadline <= now)
                        .map(|(id, _)| *id)
                        .collect()
                };
                for id in expired {
                    let (reply, rx) = oneshot::channel();
                    let cmd = writer::Command::LeaseRevoke {
                        id,
                        only_if_expired: true,
                        reply,
                    };
                    if tx.send(cmd).await.is_err() {
                        return;
                    }
                    match rx.await {
                        Ok(Ok(())) | Ok(Err(Error::LeaseNotFound)) => {
                            tracing::debug!(lease = id, "lease expired")
                        }
                        Ok(Err(e)) => tracing::warn!(lease = id, error = %e, "lease expiry failed"),
                        Err(_) => return,
                    }
                }
            }
        });
    }

    /// Compacts every `interval`, keeping the last `retention` revisions (kine's default policy,
    /// but in small steps that never hold writers for long).
    fn spawn_auto_compaction(&self, interval: Duration, retention: i64) {
        let shared = Arc::downgrade(&self.shared);
        let tx = self.tx.downgrade();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let (Some(shared), Some(tx)) = (shared.upgrade(), tx.upgrade()) else {
                    return;
                };
                let target = shared.revision.load(Ordering::Acquire) - retention;
                if target <= shared.compact_revision.load(Ordering::Acquire) {
                    continue;
                }
                let (reply, rx) = oneshot::channel();
                let cmd = writer::Command::Compact {
                    revision: target,
                    physical: false,
                    reply,
                };
                if tx.send(cmd).await.is_err() {
                    return;
                }
                match rx.await {
                    Ok(Ok(())) => tracing::debug!(revision = target, "automatic compaction"),
                    Ok(Err(Error::Compacted)) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e, "automatic compaction failed"),
                    Err(_) => return,
                }
            }
        });
    }
}

/// The lock file next to the database, held while a store has it open (so that
/// `etcd-snapshot restore` can refuse to replace a database in use).
pub(crate) fn lock_path(db: &Path) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

fn lock(db: &Path) -> Result<File, Error> {
    let path = lock_path(db);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::Locked {
            path: db.to_path_buf(),
            lock: path,
        }),
        Err(std::fs::TryLockError::Error(source)) => Err(Error::Io { path, source }),
    }
}
