//! `rk3s etcd-snapshot`: online, consistent copies of the SQLite database and their restore.
//!
//! A snapshot is a plain SQLite file made with SQLite's online backup API, so it can be taken
//! while the server writes, and restoring is a file replacement while the server is stopped.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::{Error, sqlite};

/// One snapshot file as `rk3s etcd-snapshot ls` shows it.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub name: String,
    pub path: PathBuf,
    pub size: u64,
    /// The store revision the copy holds.
    pub revision: i64,
    pub created: SystemTime,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn describe(path: &Path) -> Result<Snapshot, Error> {
    let md = std::fs::metadata(path).map_err(io(path))?;
    Ok(Snapshot {
        name: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        path: path.to_path_buf(),
        size: md.len(),
        revision: sqlite::file_revision(path)?,
        created: md.modified().unwrap_or(UNIX_EPOCH),
    })
}

/// Copies the live database `db` into `dir` as `<name>-<unix seconds>` (k3s names on-demand
/// snapshots `on-demand-<node>-<time>`; the default name here is `on-demand`).
pub fn save(db: &Path, dir: &Path, name: Option<&str>) -> Result<Snapshot, Error> {
    if !db.exists() {
        return Err(Error::Io {
            path: db.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no database to snapshot"),
        });
    }
    let name = name.unwrap_or("on-demand");
    if name.is_empty() || name.contains('/') {
        return Err(Error::Internal(format!(
            "invalid snapshot name {name:?}: it must be non-empty and contain no '/'"
        )));
    }
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let path = dir.join(format!("{name}-{secs}"));
    let tmp = dir.join(format!(".{name}-{secs}.partial"));
    let _ = std::fs::remove_file(&tmp);
    if let Err(e) = sqlite::backup(db, &tmp) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    describe(&path)
}

/// Lists the snapshots in `dir`, oldest first. A missing directory means none.
pub fn list(dir: &Path) -> Result<Vec<Snapshot>, Error> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(dir)(e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io(dir))?;
        let path = entry.path();
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if hidden || !path.is_file() {
            continue;
        }
        // Files that are not rk3s snapshots are skipped rather than failing the listing.
        if let Ok(s) = describe(&path) {
            out.push(s);
        }
    }
    out.sort_by(|a, b| a.created.cmp(&b.created).then(a.name.cmp(&b.name)));
    Ok(out)
}

/// Replaces `db` with `snapshot`; refuses while a server holds the database.
pub fn restore(snapshot: &Path, db: &Path) -> Result<(), Error> {
    // Validate first: a bad file must not replace a good database.
    sqlite::file_revision(snapshot)?;
    let lock = super::lock(db)?;
    if let Some(dir) = db.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let mut tmp = db.as_os_str().to_owned();
    tmp.push(".restore");
    let tmp = PathBuf::from(tmp);
    std::fs::copy(snapshot, &tmp).map_err(io(&tmp))?;
    // The old WAL belongs to the old database and must not be replayed into the new one.
    for suffix in ["-wal", "-shm"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        match std::fs::remove_file(PathBuf::from(p)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(db)(e)),
        }
    }
    std::fs::rename(&tmp, db).map_err(io(db))?;
    drop(lock);
    Ok(())
}
