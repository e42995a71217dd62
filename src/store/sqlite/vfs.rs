//! The writer's SQLite VFS: the platform's default VFS with the write-ahead log's writes
//! gathered into one `pwrite` per commit.
//!
//! SQLite writes each WAL frame as two calls, the 24-byte frame header and then the page,
//! so a commit that changes 40 pages costs 80 `pwrite`s. The store's writer commits thousands
//! of times a second, and those calls were about a third of its CPU time. This VFS keeps the
//! frames of the running transaction in a buffer as long as they are contiguous and writes
//! them in one call:
//! - after the page of a commit frame (a frame header with a non-zero database size), so a
//!   commit is in the file before SQLite publishes it to readers in the wal-index, in every
//!   `synchronous` mode;
//! - before any read, sync, truncate, size query or file control on the WAL, and before a
//!   write that is not contiguous with the buffer (checksum rewrites, a new WAL header);
//! - when the buffer reaches [`FLUSH_BYTES`], and when the file is closed.
//!
//! Durability is unchanged: nothing is acknowledged before `xSync`, and `xSync` writes the
//! buffer first. Every other file (the database, temporary files) is the default VFS's own,
//! with no wrapper at all.

use std::ffi::{CStr, c_char, c_int, c_void};
use std::ptr;
use std::sync::OnceLock;

use rusqlite::ffi;

/// The name connections pass to use this VFS.
pub const NAME: &CStr = c"rk3s-wal";

/// A buffer this large is written even before its commit frame arrives.
const FLUSH_BYTES: usize = 120 * 1024;
/// The most the default VFS writes in one call: the unix VFS masks a write's length with
/// 0x1ffff, so a longer buffer goes out in pieces of 31 pages.
const MAX_WRITE: usize = 31 * 4096;
/// The size of a WAL frame header.
const FRAME_HEADER: usize = 24;

/// A WAL file: SQLite's `sqlite3_file` header (pointing at [`WAL_METHODS`]) followed by the
/// default VFS's file, at `inner`, in the same allocation.
#[repr(C)]
struct WalFile {
    base: ffi::sqlite3_file,
    inner: *mut ffi::sqlite3_file,
    /// Bytes not yet written, which belong at `offset` in the file.
    pending: Vec<u8>,
    offset: i64,
    /// The last buffered write was the header of a commit frame: write out after its page.
    commit: bool,
}

/// Where the default VFS's file starts inside a [`WalFile`] allocation.
const INNER_OFFSET: usize = std::mem::size_of::<WalFile>().next_multiple_of(16);

/// SQLite's default VFS, which this one wraps.
struct Base(*mut ffi::sqlite3_vfs);

// SAFETY: the pointer names the process-wide default VFS, which SQLite never frees.
unsafe impl Send for Base {}
// SAFETY: as above; the pointer is only read.
unsafe impl Sync for Base {}

/// The outcome of registering, once per process.
static REGISTERED: OnceLock<Result<Base, String>> = OnceLock::new();

/// Registers the VFS (once per process). Connections then open with [`NAME`].
pub fn register() -> Result<(), String> {
    let registered = REGISTERED.get_or_init(|| {
        // SAFETY: sqlite3_vfs_find with a null name returns the default VFS, or null.
        let base = unsafe { ffi::sqlite3_vfs_find(ptr::null()) };
        if base.is_null() {
            return Err("SQLite has no default VFS".into());
        }
        // SAFETY: base is SQLite's default VFS, valid for the life of the process. The copy
        // keeps its pAppData and mxPathname, which its own methods (called with this VFS)
        // read; only xOpen is replaced, and it calls the default xOpen with `base` itself.
        let vfs = unsafe {
            let mut v: ffi::sqlite3_vfs = ptr::read(base);
            let size = INNER_OFFSET + (*base).szOsFile as usize;
            v.szOsFile = size as c_int;
            v.zName = NAME.as_ptr();
            v.pNext = ptr::null_mut();
            v.xOpen = Some(open);
            Box::leak(Box::new(v))
        };
        // SAFETY: vfs is leaked, so it outlives every connection; 0 = not the default VFS.
        let rc = unsafe { ffi::sqlite3_vfs_register(vfs, 0) };
        if rc != ffi::SQLITE_OK {
            return Err(format!("registering the SQLite VFS failed (code {rc})"));
        }
        Ok(Base(base))
    });
    registered.as_ref().map(|_| ()).map_err(Clone::clone)
}

unsafe extern "C" fn open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    // SQLite calls xOpen only on a registered VFS, so registration succeeded.
    let Some(Ok(Base(base))) = REGISTERED.get() else {
        return ffi::SQLITE_CANTOPEN;
    };
    let base = *base;
    // SAFETY: base is the default VFS; `file` has room for szOsFile bytes.
    unsafe {
        let Some(base_open) = (*base).xOpen else {
            return ffi::SQLITE_CANTOPEN;
        };
        if flags & ffi::SQLITE_OPEN_WAL == 0 {
            // Not the WAL: the default VFS's file, unwrapped.
            return base_open(base, name, file, flags, out_flags);
        }
        let inner = (file as *mut u8).add(INNER_OFFSET) as *mut ffi::sqlite3_file;
        let rc = base_open(base, name, inner, flags, out_flags);
        if rc != ffi::SQLITE_OK {
            // A failed xOpen must leave pMethods null so that SQLite does not close it.
            (*file).pMethods = ptr::null();
            return rc;
        }
        ptr::write(
            file as *mut WalFile,
            WalFile {
                base: ffi::sqlite3_file {
                    pMethods: &WAL_METHODS,
                },
                inner,
                pending: Vec::new(),
                offset: 0,
                commit: false,
            },
        );
        ffi::SQLITE_OK
    }
}

#[cfg(test)]
thread_local! {
    /// The WAL writes this thread made through the default VFS, for tests.
    static FLUSHES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

impl WalFile {
    /// # Safety
    /// `file` must be a WAL file opened by [`open`].
    unsafe fn get<'a>(file: *mut ffi::sqlite3_file) -> &'a mut WalFile {
        // SAFETY: per the contract, file starts with a WalFile.
        unsafe { &mut *(file as *mut WalFile) }
    }

    fn methods(&self) -> &ffi::sqlite3_io_methods {
        // SAFETY: inner was opened successfully, so its pMethods is set and static.
        unsafe { &*(*self.inner).pMethods }
    }

    /// Writes the buffer out. On failure the buffer is dropped: SQLite rolls the transaction
    /// back, and frames past the last commit are never read.
    fn flush(&mut self) -> c_int {
        if self.pending.is_empty() {
            return ffi::SQLITE_OK;
        }
        #[cfg(test)]
        FLUSHES.set(FLUSHES.get() + 1);
        let rc = match self.methods().xWrite {
            None => ffi::SQLITE_IOERR_WRITE,
            Some(write) => {
                let mut offset = self.offset;
                let mut pieces = self.pending.chunks(MAX_WRITE).map(|piece| {
                    // SAFETY: inner is open; the piece is valid for its length.
                    let rc = unsafe {
                        write(
                            self.inner,
                            piece.as_ptr() as *const c_void,
                            piece.len() as c_int,
                            offset,
                        )
                    };
                    offset += piece.len() as i64;
                    rc
                });
                pieces
                    .find(|&rc| rc != ffi::SQLITE_OK)
                    .unwrap_or(ffi::SQLITE_OK)
            }
        };
        self.pending.clear();
        self.commit = false;
        rc
    }
}

/// Calls the default file's method `$m` with the arguments after writing the buffer out.
macro_rules! flush_then {
    ($file:expr, $m:ident $(, $arg:expr)*) => {{
        // SAFETY: SQLite passes the WAL file it opened with this VFS.
        let f = unsafe { WalFile::get($file) };
        let rc = f.flush();
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        match f.methods().$m {
            // SAFETY: forwarding SQLite's own arguments to the file's own method.
            Some(m) => unsafe { m(f.inner $(, $arg)*) },
            None => ffi::SQLITE_IOERR,
        }
    }};
}

/// Calls the default file's method `$m` with the arguments, buffer untouched.
macro_rules! forward {
    ($file:expr, $m:ident, $none:expr $(, $arg:expr)*) => {{
        // SAFETY: SQLite passes the WAL file it opened with this VFS.
        let f = unsafe { WalFile::get($file) };
        match f.methods().$m {
            // SAFETY: forwarding SQLite's own arguments to the file's own method.
            Some(m) => unsafe { m(f.inner $(, $arg)*) },
            None => $none,
        }
    }};
}

unsafe extern "C" fn close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite passes the WAL file it opened with this VFS, once, at close.
    let f = unsafe { WalFile::get(file) };
    let flushed = f.flush();
    let closed = match f.methods().xClose {
        // SAFETY: closing the inner file that open() opened.
        Some(c) => unsafe { c(f.inner) },
        None => ffi::SQLITE_OK,
    };
    // SAFETY: the WalFile was written by open() and is not used after xClose.
    unsafe { ptr::drop_in_place(file as *mut WalFile) };
    if flushed != ffi::SQLITE_OK {
        flushed
    } else {
        closed
    }
}

unsafe extern "C" fn read(
    file: *mut ffi::sqlite3_file,
    buf: *mut c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    flush_then!(file, xRead, buf, amount, offset)
}

unsafe extern "C" fn write(
    file: *mut ffi::sqlite3_file,
    buf: *const c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    // SAFETY: SQLite passes the WAL file it opened with this VFS.
    let f = unsafe { WalFile::get(file) };
    let Ok(len) = usize::try_from(amount) else {
        return ffi::SQLITE_IOERR_WRITE;
    };
    if !f.pending.is_empty() && offset != f.offset + f.pending.len() as i64 {
        let rc = f.flush();
        if rc != ffi::SQLITE_OK {
            return rc;
        }
    }
    if f.pending.is_empty() {
        f.offset = offset;
        if f.pending.capacity() == 0 {
            f.pending.reserve(FLUSH_BYTES + 8 * 1024);
        }
    }
    // SAFETY: SQLite passes `amount` readable bytes at buf.
    let data = unsafe { std::slice::from_raw_parts(buf as *const u8, len) };
    f.pending.extend_from_slice(data);
    if len == FRAME_HEADER {
        // Bytes 4..8 of a frame header: the database size after a commit, 0 otherwise.
        f.commit = data[4..8] != [0, 0, 0, 0];
        ffi::SQLITE_OK
    } else if f.commit || f.pending.len() >= FLUSH_BYTES {
        f.flush()
    } else {
        ffi::SQLITE_OK
    }
}

unsafe extern "C" fn truncate(file: *mut ffi::sqlite3_file, size: i64) -> c_int {
    flush_then!(file, xTruncate, size)
}

unsafe extern "C" fn sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    flush_then!(file, xSync, flags)
}

unsafe extern "C" fn file_size(file: *mut ffi::sqlite3_file, size: *mut i64) -> c_int {
    flush_then!(file, xFileSize, size)
}

unsafe extern "C" fn lock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    forward!(file, xLock, ffi::SQLITE_OK, level)
}

unsafe extern "C" fn unlock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    forward!(file, xUnlock, ffi::SQLITE_OK, level)
}

unsafe extern "C" fn check_reserved_lock(file: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
    forward!(file, xCheckReservedLock, ffi::SQLITE_OK, out)
}

unsafe extern "C" fn file_control(
    file: *mut ffi::sqlite3_file,
    op: c_int,
    arg: *mut c_void,
) -> c_int {
    flush_then!(file, xFileControl, op, arg)
}

unsafe extern "C" fn sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    forward!(file, xSectorSize, 4096)
}

unsafe extern "C" fn device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    forward!(file, xDeviceCharacteristics, 0)
}

/// Version 1 methods: SQLite maps the wal-index and database pages through the database
/// file, never through the WAL, so the WAL needs no shared-memory or fetch methods.
static WAL_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 1,
    xClose: Some(close),
    xRead: Some(read),
    xWrite: Some(write),
    xTruncate: Some(truncate),
    xSync: Some(sync),
    xFileSize: Some(file_size),
    xLock: Some(lock),
    xUnlock: Some(unlock),
    xCheckReservedLock: Some(check_reserved_lock),
    xFileControl: Some(file_control),
    xSectorSize: Some(sector_size),
    xDeviceCharacteristics: Some(device_characteristics),
    xShmMap: None,
    xShmLock: None,
    xShmBarrier: None,
    xShmUnmap: None,
    xFetch: None,
    xUnfetch: None,
};

#[cfg(test)]
mod tests {
    use rusqlite::{Connection, OpenFlags};

    use super::*;

    fn writer(path: &std::path::Path, sync: &str) -> Connection {
        register().unwrap();
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE;
        let c = Connection::open_with_flags_and_vfs(path, flags, NAME).unwrap();
        let mode: String = c
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        c.pragma_update(None, "synchronous", sync).unwrap();
        c.execute_batch("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB NOT NULL)")
            .unwrap();
        c
    }

    fn reader(path: &std::path::Path) -> Connection {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY;
        Connection::open_with_flags(path, flags).unwrap()
    }

    fn count(c: &Connection) -> i64 {
        c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap()
    }

    fn insert(c: &Connection, from: i64, n: i64) {
        let tx = c.unchecked_transaction().unwrap();
        for k in from..from + n {
            tx.execute("INSERT INTO t VALUES (?1, zeroblob(1000))", [k])
                .unwrap();
        }
        tx.commit().unwrap();
    }

    /// A temporary database with a writer through this VFS and a plain reader.
    fn setup(
        sync: &str,
    ) -> (
        tempfile::TempDir,
        std::path::PathBuf,
        Connection,
        Connection,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let w = writer(&path, sync);
        let r = reader(&path);
        (dir, path, w, r)
    }

    fn assert_intact(c: &Connection) {
        let ok: String = c
            .query_row("PRAGMA integrity_check", [], |row| row.get(0))
            .unwrap();
        assert_eq!(ok, "ok");
    }

    fn wal_frames(path: &std::path::Path) -> u64 {
        let wal = path.with_extension("db-wal");
        (std::fs::metadata(wal).unwrap().len() - 32) / (4096 + 24)
    }

    #[test]
    fn a_commit_reaches_the_file_in_one_write_and_readers_see_it_at_once() {
        // NORMAL does not sync at commit: the commit frame alone must trigger the write.
        let (_dir, path, w, r) = setup("NORMAL");
        for round in 0..20 {
            let before = FLUSHES.get();
            insert(&w, round * 60, 60);
            assert_eq!(count(&r), (round + 1) * 60, "round {round} visible");
            let writes = FLUSHES.get() - before;
            assert!(writes <= 2, "round {round}: {writes} writes");
        }
        assert!(
            wal_frames(&path) > 20 * 15,
            "each commit wrote many frames: {}",
            wal_frames(&path)
        );
    }

    #[test]
    fn full_sync_commits_write_once_before_the_sync() {
        let (_dir, _, w, r) = setup("FULL");
        let before = FLUSHES.get();
        for round in 0..10 {
            insert(&w, round * 50, 50);
        }
        assert_eq!(count(&r), 500);
        assert!(FLUSHES.get() - before <= 20, "{}", FLUSHES.get() - before);
    }

    #[test]
    fn a_commit_larger_than_the_buffer_is_written_in_pieces() {
        let (_dir, _, w, r) = setup("NORMAL");
        let before = FLUSHES.get();
        // About 1.1 MB of frames, several buffers' worth.
        insert(&w, 0, 1000);
        assert_eq!(count(&r), 1000);
        let writes = FLUSHES.get() - before;
        assert!((5..=12).contains(&writes), "{writes} writes");
        assert_intact(&r);
    }

    #[test]
    fn spilled_and_rewritten_frames_and_rollbacks_stay_consistent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let w = writer(&path, "NORMAL");
        // A tiny page cache makes a large transaction spill pages into the WAL before its
        // commit and read them back (and rewrite frames it changes again).
        w.pragma_update(None, "cache_size", 10).unwrap();
        insert(&w, 0, 2000);
        {
            let tx = w.unchecked_transaction().unwrap();
            tx.execute("UPDATE t SET v = zeroblob(900) WHERE k % 3 = 0", [])
                .unwrap();
            tx.execute("INSERT INTO t SELECT k + 10000, v FROM t WHERE k < 500", [])
                .unwrap();
            tx.rollback().unwrap();
        }
        {
            let tx = w.unchecked_transaction().unwrap();
            tx.execute("DELETE FROM t WHERE k % 2 = 1", []).unwrap();
            tx.execute("UPDATE t SET v = zeroblob(1100) WHERE k % 4 = 0", [])
                .unwrap();
            tx.commit().unwrap();
        }
        let r = reader(&path);
        assert_eq!(count(&r), 1000);
        assert_intact(&r);
        drop(r);
        // Closing checkpoints and removes the WAL; a plain connection reads the same data.
        drop(w);
        let again = reader(&path);
        assert_eq!(count(&again), 1000);
        let big: i64 = again
            .query_row("SELECT count(*) FROM t WHERE length(v) = 1100", [], |row| {
                row.get(0)
            })
            .unwrap();
        assert_eq!(big, 500);
    }
}
