//! The SQL adapter: the only file that talks to SQLite (with its child `vfs`, the writer's
//! WAL write batching).
//!
//! Layout (kine's single-table MVCC log, see docs/adr/0001-store-layout.md): every change is a
//! new row of `kv`. `revision` is the etcd main revision of the change (one per write request,
//! shared by all keys a Txn or DeleteRange touches, as in etcd); the rowid orders rows within a
//! revision. `prev_revision` names the row this one supersedes, and `UNIQUE(name,
//! prev_revision)` makes a lost compare-and-swap impossible even with several writers (the
//! PostgreSQL backend will rely on that; with SQLite there is one writer anyway). `old_value` and
//! `old_lease` keep what a watch event's `prev_kv` needs without a join.
//!
//! That unique index is also the only index by name. A key's rows have strictly increasing
//! `prev_revision`s (each new row points at the newest one before it), so its entries are in
//! revision order too: the newest row is the last entry, and "the newest row as of R" is the
//! last entry whose row has `revision <= R`. An index on `(name, revision)` as well would cost
//! every write one more B-tree leaf in the WAL (a write touches one leaf per name index, since
//! concurrent clients write at different places in key order); dropping it took the WAL from
//! about three pages per 1 KiB put to two. `kv_revision` serves watch catch-up and compaction.

use std::path::Path;
use std::time::Duration;

use etcd_client::proto::{PbEvent, PbKeyValue};
use rusqlite::{
    Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior, params,
};

use super::{Error, KeyRange, SyncMode};

mod vfs;

/// etcd's event types (mvccpb.Event.EventType).
pub const EVENT_PUT: i32 = 0;
pub const EVENT_DELETE: i32 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS kv (
    id INTEGER PRIMARY KEY,
    name BLOB NOT NULL,
    revision INTEGER NOT NULL,
    created INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    create_revision INTEGER NOT NULL,
    prev_revision INTEGER NOT NULL,
    version INTEGER NOT NULL,
    lease INTEGER NOT NULL,
    value BLOB NOT NULL,
    old_value BLOB NOT NULL,
    old_lease INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS kv_name_prev_revision ON kv(name, prev_revision);
DROP INDEX IF EXISTS kv_name_revision;
CREATE INDEX IF NOT EXISTS kv_revision ON kv(revision);
CREATE TABLE IF NOT EXISTS lease (id INTEGER PRIMARY KEY, ttl INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
";

/// The persistent counters of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub revision: i64,
    pub compact_revision: i64,
    /// How far physical compaction has gone (≤ compact_revision).
    pub compacted_to: i64,
    pub cluster_id: u64,
    pub member_id: u64,
}

/// The newest row of one key, live or tombstone.
#[derive(Debug, Clone)]
pub struct Latest {
    pub revision: i64,
    /// The live value, or `None` when the newest row is a tombstone.
    pub kv: Option<PbKeyValue>,
}

/// One row to append.
pub struct Row<'a> {
    pub name: &'a [u8],
    pub revision: i64,
    pub created: bool,
    pub deleted: bool,
    pub create_revision: i64,
    pub prev_revision: i64,
    pub version: i64,
    pub lease: i64,
    pub value: &'a [u8],
    pub old_value: &'a [u8],
    pub old_lease: i64,
}

fn open_error(path: &Path) -> impl Fn(rusqlite::Error) -> Error + '_ {
    move |source| Error::Open {
        path: path.to_path_buf(),
        source,
    }
}

/// Opens (creating if needed) the database for writing, checks it is writable and an rk3s store,
/// and returns the writer connection with its counters.
pub fn open_writer(path: &Path, sync: SyncMode) -> Result<(Connection, Meta), Error> {
    let err = open_error(path);
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    vfs::register().map_err(Error::Internal)?;
    let conn = Connection::open_with_flags_and_vfs(path, flags, vfs::NAME).map_err(&err)?;
    // auto_vacuum must be chosen before the first table exists; on an existing file it is a no-op.
    conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")
        .map_err(&err)?;
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
        .map_err(&err)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::Internal(format!(
            "database {}: cannot switch to WAL mode (got {mode})",
            path.display()
        )));
    }
    let sync = match sync {
        SyncMode::Full => "FULL",
        SyncMode::Normal => "NORMAL",
    };
    conn.pragma_update(None, "synchronous", sync)
        .map_err(&err)?;
    // Small automatic checkpoints (4 MiB of WAL) keep each one short. A separate checkpointing
    // connection was measured to be worse: its fsyncs compete with the commits'.
    conn.pragma_update(None, "wal_autocheckpoint", 1000)
        .map_err(&err)?;
    conn.pragma_update(None, "cache_size", -8000)
        .map_err(&err)?;
    conn.pragma_update(None, "temp_store", "MEMORY")
        .map_err(&err)?;
    conn.busy_timeout(Duration::from_secs(30)).map_err(&err)?;
    // BEGIN IMMEDIATE takes the write lock: a read-only file or directory fails here, at start,
    // rather than on the first client write.
    let tx = Transaction::new_unchecked(&conn, TransactionBehavior::Immediate).map_err(&err)?;
    tx.execute_batch(SCHEMA).map_err(&err)?;
    let meta = read_or_init_meta(&tx).map_err(&err)?;
    tx.commit().map_err(&err)?;
    Ok((conn, meta))
}

fn read_or_init_meta(conn: &Connection) -> rusqlite::Result<Meta> {
    let get = |key: &str| -> rusqlite::Result<Option<i64>> {
        conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
    };
    let cluster_id = match get("cluster_id")? {
        Some(v) => v as u64,
        None => {
            let (cluster_id, member_id) = fresh_ids();
            conn.execute(
                "INSERT INTO meta(key, value) VALUES ('cluster_id', ?1), ('member_id', ?2)",
                params![cluster_id as i64, member_id as i64],
            )?;
            cluster_id
        }
    };
    Ok(Meta {
        revision: get("revision")?.unwrap_or(1),
        compact_revision: get("compact_revision")?.unwrap_or(0),
        compacted_to: get("compacted_to")?.unwrap_or(0),
        cluster_id,
        member_id: get("member_id")?.unwrap_or(0) as u64,
    })
}

/// Random-enough identifiers for a new store (etcd derives them from member URLs and time).
fn fresh_ids() -> (u64, u64) {
    use std::hash::{BuildHasher, Hasher};
    let seed = std::collections::hash_map::RandomState::new();
    let mut h = seed.build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    let a = h.finish();
    h.write_u32(std::process::id());
    // Positive as i64 so that they round-trip through SQLite's signed integers unchanged.
    (a >> 1, h.finish() >> 1)
}

/// Opens a read-only connection for the read pool.
pub fn open_reader(path: &Path) -> Result<Connection, Error> {
    let err = open_error(path);
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(&err)?;
    conn.pragma_update(None, "cache_size", -2000)
        .map_err(&err)?;
    conn.busy_timeout(Duration::from_secs(30)).map_err(&err)?;
    // Room for every variant of the range, count and events statements (and a few limits).
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// Starts a write transaction for the writer's background work (compaction steps); batches of
/// requests use [`Statements::begin`] instead.
pub fn begin(conn: &Connection) -> Result<Transaction<'_>, Error> {
    Ok(Transaction::new_unchecked(
        conn,
        TransactionBehavior::Immediate,
    )?)
}

const SET_META: &str = "INSERT INTO meta(key, value) VALUES (?1, ?2)
     ON CONFLICT(key) DO UPDATE SET value = excluded.value";

pub fn set_meta(conn: &Connection, key: &str, value: i64) -> Result<(), Error> {
    conn.prepare_cached(SET_META)?
        .execute(params![key, value])?;
    Ok(())
}

/// Undoes the open transaction, if one is open (a statement or the commit failed).
pub fn rollback(conn: &Connection) {
    if !conn.is_autocommit()
        && let Err(e) = conn.execute_batch("ROLLBACK")
    {
        tracing::error!(error = %e, "rolling back the write transaction failed");
    }
}

/// The writer's statements, prepared on its first batch and kept for its lifetime:
/// a batch of a few dozen puts costs a few microseconds each, and preparing the five statements
/// of a batch again every time took as long as writing one more page.
///
/// Not `prepare_cached`: returning a statement to rusqlite's cache clears its bindings, and with
/// SQLITE_ENABLE_STAT4 (on in the bundled build) that expires the statement, so every cached use
/// was a full recompile (measured: 6.8 µs instead of 0.7 µs per lookup).
pub struct Statements<'c> {
    begin: rusqlite::Statement<'c>,
    commit: rusqlite::Statement<'c>,
    set_meta: rusqlite::Statement<'c>,
    latest: rusqlite::Statement<'c>,
    insert: rusqlite::Statement<'c>,
}

impl<'c> Statements<'c> {
    pub fn new(conn: &'c Connection) -> Result<Statements<'c>, Error> {
        Ok(Statements {
            // IMMEDIATE takes the write lock at once (group commit: many requests, one
            // transaction).
            begin: conn.prepare("BEGIN IMMEDIATE")?,
            commit: conn.prepare("COMMIT")?,
            set_meta: conn.prepare(SET_META)?,
            latest: conn.prepare(
                "SELECT revision, deleted, create_revision, version, lease, value
                 FROM kv WHERE name = ?1 ORDER BY prev_revision DESC LIMIT 1",
            )?,
            insert: conn.prepare(
                "INSERT INTO kv(name, revision, created, deleted, create_revision, prev_revision,
                                version, lease, value, old_value, old_lease)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?,
        })
    }

    /// Starts a batch's write transaction. On any error before [`Statements::commit`]
    /// returns, the caller rolls back with [`rollback`].
    pub fn begin(&mut self) -> Result<(), Error> {
        self.begin.execute([])?;
        Ok(())
    }

    pub fn commit(&mut self) -> Result<(), Error> {
        self.commit.execute([])?;
        Ok(())
    }

    pub fn set_meta(&mut self, key: &str, value: i64) -> Result<(), Error> {
        self.set_meta.execute(params![key, value])?;
        Ok(())
    }

    pub fn insert(&mut self, row: &Row<'_>) -> Result<(), Error> {
        self.insert.execute(params![
            row.name,
            row.revision,
            row.created,
            row.deleted,
            row.create_revision,
            row.prev_revision,
            row.version,
            row.lease,
            row.value,
            row.old_value,
            row.old_lease,
        ])?;
        Ok(())
    }

    /// The newest row of `key`, if any row is left.
    pub fn latest(&mut self, key: &[u8]) -> Result<Option<Latest>, Error> {
        let row = self
            .latest
            .query_row([key], |r| {
                let revision: i64 = r.get(0)?;
                let deleted: bool = r.get(1)?;
                let kv = if deleted {
                    None
                } else {
                    Some(PbKeyValue {
                        key: key.to_vec(),
                        create_revision: r.get(2)?,
                        mod_revision: revision,
                        version: r.get(3)?,
                        lease: r.get(4)?,
                        value: r.get(5)?,
                    })
                };
                Ok(Latest { revision, kv })
            })
            .optional()?;
        Ok(row)
    }
}

/// `name` bounds of a key range as SQL fragments and parameters.
fn range_clause(range: &KeyRange) -> (&'static str, Vec<Vec<u8>>) {
    match range {
        KeyRange::Key(k) => ("name = ?2", vec![k.clone()]),
        KeyRange::From(k) => ("name >= ?2", vec![k.clone()]),
        KeyRange::Between(k, e) => ("name >= ?2 AND name < ?3", vec![k.clone(), e.clone()]),
    }
}

/// The live key-values of `range` at `revision`, in key order, at most `limit` (0: all).
///
/// SQLite takes the bare columns (also in HAVING) from the row holding MAX(revision) in a GROUP
/// BY, which gives "the newest row of each key as of `revision`" in one scan of the name index
/// in key order (no sort: the grouping already yields names in order).
///
/// The limit is part of the SQL text, not a bound parameter: SQLite's planner looks at a bound
/// LIMIT value, so a statement with one is compiled again whenever it is bound or returned to
/// the statement cache (measured with the bundled SQLite: 14.7 µs per cached query instead of
/// 2.4 µs; the recompiles were half the read pool's time in the control-plane benchmark).
pub fn range(
    conn: &Connection,
    range: &KeyRange,
    revision: i64,
    limit: i64,
    keys_only: bool,
) -> Result<Vec<PbKeyValue>, Error> {
    let (clause, keys) = range_clause(range);
    let value = if keys_only { "x''" } else { "value" };
    let limit = if limit > 0 { limit } else { -1 };
    let sql = format!(
        "SELECT name, MAX(revision), create_revision, version, lease, {value}
         FROM kv INDEXED BY kv_name_prev_revision WHERE revision <= ?1 AND {clause}
         GROUP BY name HAVING deleted = 0 ORDER BY name LIMIT {limit}"
    );
    let mut st = conn.prepare_cached(&sql)?;
    let mut p: Vec<&dyn rusqlite::ToSql> = vec![&revision];
    for k in &keys {
        p.push(k);
    }
    let rows = st.query_map(p.as_slice(), |r| {
        Ok(PbKeyValue {
            key: r.get(0)?,
            mod_revision: r.get(1)?,
            create_revision: r.get(2)?,
            version: r.get(3)?,
            lease: r.get(4)?,
            value: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// How many live keys `range` holds at `revision`.
pub fn count(conn: &Connection, range: &KeyRange, revision: i64) -> Result<i64, Error> {
    let (clause, keys) = range_clause(range);
    let sql = format!(
        "SELECT COUNT(*) FROM (
            SELECT MAX(revision), deleted FROM kv INDEXED BY kv_name_prev_revision
            WHERE revision <= ?1 AND {clause} GROUP BY name)
         WHERE deleted = 0"
    );
    let mut st = conn.prepare_cached(&sql)?;
    let mut p: Vec<&dyn rusqlite::ToSql> = vec![&revision];
    for k in &keys {
        p.push(k);
    }
    Ok(st.query_row(p.as_slice(), |r| r.get(0))?)
}

/// The changes with `from <= revision <= to` as watch events (with prev_kv), in commit order,
/// at most `limit` rows; the caller continues from the last revision it got. The limit is in
/// the SQL text for the reason [`range`] gives.
pub fn events(
    conn: &Connection,
    from: i64,
    to: i64,
    limit: i64,
) -> Result<Vec<(i64, PbEvent)>, Error> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT name, revision, created, deleted, create_revision, prev_revision, version, lease,
                value, old_value, old_lease
         FROM kv WHERE revision >= ?1 AND revision <= ?2 ORDER BY id LIMIT {limit}"
    ))?;
    let rows = st.query_map(params![from, to], |r| {
        let name: Vec<u8> = r.get(0)?;
        let revision: i64 = r.get(1)?;
        let created: bool = r.get(2)?;
        let deleted: bool = r.get(3)?;
        let create_revision: i64 = r.get(4)?;
        let prev_revision: i64 = r.get(5)?;
        let version: i64 = r.get(6)?;
        let lease: i64 = r.get(7)?;
        let value: Vec<u8> = r.get(8)?;
        let old_value: Vec<u8> = r.get(9)?;
        let old_lease: i64 = r.get(10)?;
        let event = if deleted {
            PbEvent {
                r#type: EVENT_DELETE,
                kv: Some(PbKeyValue {
                    key: name.clone(),
                    mod_revision: revision,
                    ..Default::default()
                }),
                prev_kv: Some(PbKeyValue {
                    key: name,
                    create_revision,
                    mod_revision: prev_revision,
                    version,
                    value: old_value,
                    lease: old_lease,
                }),
            }
        } else {
            let prev_kv = (!created).then(|| PbKeyValue {
                key: name.clone(),
                create_revision,
                mod_revision: prev_revision,
                version: version - 1,
                value: old_value,
                lease: old_lease,
            });
            PbEvent {
                r#type: EVENT_PUT,
                kv: Some(PbKeyValue {
                    key: name,
                    create_revision,
                    mod_revision: revision,
                    version,
                    value,
                    lease,
                }),
                prev_kv,
            }
        };
        Ok((revision, event))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Live keys carrying a lease, to rebuild the lease → keys index at start.
pub fn leased_keys(conn: &Connection) -> Result<Vec<(i64, Vec<u8>)>, Error> {
    let mut st = conn.prepare(
        "SELECT lease, name FROM (
            SELECT name, MAX(revision), deleted, lease FROM kv GROUP BY name)
         WHERE deleted = 0 AND lease != 0",
    )?;
    let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn leases(conn: &Connection) -> Result<Vec<(i64, i64)>, Error> {
    let mut st = conn.prepare("SELECT id, ttl FROM lease")?;
    let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn insert_lease(conn: &Connection, id: i64, ttl: i64) -> Result<(), Error> {
    conn.prepare_cached("INSERT INTO lease(id, ttl) VALUES (?1, ?2)")?
        .execute(params![id, ttl])?;
    Ok(())
}

pub fn delete_lease(conn: &Connection, id: i64) -> Result<(), Error> {
    conn.prepare_cached("DELETE FROM lease WHERE id = ?1")?
        .execute([id])?;
    Ok(())
}

/// One bounded step of physical compaction over revisions `(from, to]`: removes the rows that a
/// row in that span superseded (found through the name index: the superseded row is an earlier
/// entry of the same name whose revision is the superseding row's `prev_revision`), and the
/// tombstones in `[from, to)` (a tombstone at exactly the compact revision stays until the next
/// compaction, so a watch starting there still sees it). Returns the number of rows removed.
pub fn compact_step(conn: &Connection, from: i64, to: i64) -> Result<usize, Error> {
    let superseded = conn
        .prepare_cached(
            "DELETE FROM kv WHERE id IN (
                SELECT s.id FROM kv AS t, kv AS s
                WHERE t.revision > ?1 AND t.revision <= ?2 AND t.prev_revision > 0
                  AND s.name = t.name AND s.prev_revision < t.prev_revision
                  AND s.revision = t.prev_revision)",
        )?
        .execute(params![from, to])?;
    let tombstones = conn
        .prepare_cached("DELETE FROM kv WHERE deleted = 1 AND revision >= ?1 AND revision < ?2")?
        .execute(params![from, to])?;
    Ok(superseded + tombstones)
}

/// Returns up to `pages` free pages to the file system (the file shrinks after compaction).
pub fn incremental_vacuum(conn: &Connection, pages: u32) -> Result<(), Error> {
    let mut st = conn.prepare(&format!("PRAGMA incremental_vacuum({pages})"))?;
    let mut rows = st.query([])?;
    while rows.next()?.is_some() {}
    Ok(())
}

pub fn free_pages(conn: &Connection) -> Result<i64, Error> {
    Ok(conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?)
}

/// Moves the WAL into the database file and truncates the WAL when no reader holds it.
pub fn checkpoint(conn: &Connection) -> Result<(), Error> {
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    Ok(())
}

/// Rebuilds the whole file without free space (etcd's Defragment).
pub fn vacuum(conn: &Connection) -> Result<(), Error> {
    conn.execute_batch("VACUUM")?;
    checkpoint(conn)
}

/// Bytes the database occupies, and the bytes in use (without free pages).
pub fn size(conn: &Connection) -> Result<(i64, i64), Error> {
    let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    let free = free_pages(conn)?;
    Ok((page_size * pages, page_size * (pages - free)))
}

/// Copies the live database at `src` into a new file `dest` with SQLite's online backup,
/// returning the revision the copy holds.
pub fn backup(src: &Path, dest: &Path) -> Result<i64, Error> {
    let from = open_reader(src)?;
    let mut to = Connection::open(dest).map_err(open_error(dest))?;
    {
        let b = rusqlite::backup::Backup::new(&from, &mut to)?;
        b.run_to_completion(256, Duration::from_millis(5), None)?;
    }
    // The copy must not depend on a WAL file next to it.
    to.pragma_update(None, "journal_mode", "DELETE")?;
    snapshot_revision(&to)
}

/// Reads the revision of a snapshot or database file, checking it is an rk3s store.
pub fn file_revision(path: &Path) -> Result<i64, Error> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(open_error(path))?;
    snapshot_revision(&conn).map_err(|e| match e {
        Error::Sql(source) => Error::Open {
            path: path.to_path_buf(),
            source,
        },
        other => other,
    })
}

fn snapshot_revision(conn: &Connection) -> Result<i64, Error> {
    Ok(conn
        .query_row("SELECT value FROM meta WHERE key = 'revision'", [], |r| {
            r.get(0)
        })
        .optional()?
        .unwrap_or(1))
}
