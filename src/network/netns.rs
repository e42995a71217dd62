//! Persistent network namespaces: one bind-mounted nsfs file per pod, the way `ip netns add` keeps
//! a namespace alive without a process in it.
//!
//! Every function that changes the calling thread's namespace runs on a fresh `std::thread` that
//! ends afterwards, so neither a tokio worker nor any other long-lived thread ever leaves the host
//! namespace. The daemon is never forked (which is why `rtnetlink::NetworkNamespace::add`, which
//! forks, is not used). All functions here block; call them off the async runtime.

use std::fs;
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("netns {op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("netns {op} {path}")]
    Sys {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: Errno,
    },
    #[error("netns helper thread for {0} panicked")]
    Thread(PathBuf),
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> Error + use<> {
    let path = path.to_path_buf();
    move |source| Error::Io { op, path, source }
}

fn sys_err(op: &'static str, path: &Path) -> impl FnOnce(Errno) -> Error + use<> {
    let path = path.to_path_buf();
    move |source| Error::Sys { op, path, source }
}

/// Creates `dir` and makes it a shared mount point, as iproute2 does for `/run/netns`: netns
/// bind mounts made later then propagate into mount namespaces copied from ours (containers), and
/// so do their unmounts, so a container's copy of the mount cannot keep a deleted pod's namespace
/// alive.
pub fn prepare_dir(dir: &Path) -> Result<(), Error> {
    fs::create_dir_all(dir).map_err(io_err("create", dir))?;
    let share = || {
        nix::mount::mount(
            None::<&str>,
            dir,
            None::<&str>,
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
    };
    match share() {
        Ok(()) => Ok(()),
        // EINVAL: not a mount point yet. Bind it onto itself, then share it (iproute2's order).
        Err(Errno::EINVAL) => {
            nix::mount::mount(
                Some(dir),
                dir,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(sys_err("bind-mount", dir))?;
            share().map_err(sys_err("make-shared", dir))
        }
        Err(e) => Err(sys_err("make-shared", dir)(e)),
    }
}

/// True if `path` is a mounted network namespace (an nsfs bind mount).
pub fn is_netns(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .map(|s| s.filesystem_type() == nix::sys::statfs::NSFS_MAGIC)
        .unwrap_or(false)
}

/// Creates a new network namespace kept alive by a bind mount at `path`. Idempotent: an existing
/// namespace at `path` is kept as it is.
pub fn create(path: &Path) -> Result<(), Error> {
    if is_netns(path) {
        return Ok(());
    }
    // The mount point must exist as a file; an empty leftover from a crash is reused.
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(io_err("create", path))?;
    let target = path.to_path_buf();
    let made = std::thread::Builder::new()
        .name("rk3s-netns-add".into())
        .spawn(move || -> Result<(), Error> {
            // Only this thread moves to the new namespace; the thread ends right after, and the
            // bind mount is what keeps the namespace alive.
            nix::sched::unshare(CloneFlags::CLONE_NEWNET).map_err(sys_err("unshare", &target))?;
            let own = PathBuf::from(format!("/proc/self/task/{}/ns/net", nix::unistd::gettid()));
            nix::mount::mount(
                Some(&own),
                &target,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(sys_err("bind-mount", &target))
        })
        .map_err(io_err("spawn thread for", path))?
        .join()
        .map_err(|_| Error::Thread(path.to_path_buf()))?;
    if made.is_err() {
        let _ = fs::remove_file(path);
    }
    made
}

/// Unmounts and removes the namespace file. Idempotent: a missing or unmounted file is fine.
pub fn remove(path: &Path) -> Result<(), Error> {
    // MNT_DETACH, like `ip netns delete`: a process still holding the namespace (a container that
    // is being killed) does not make the teardown fail; the kernel frees it with the last user.
    match nix::mount::umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => {}
        Err(e) => return Err(sys_err("unmount", path)(e)),
    }
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("remove", path)(e)),
    }
}

/// Names of the entries in `dir` (pod UIDs); empty if the directory does not exist.
pub fn list(dir: &Path) -> Result<Vec<String>, Error> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("read", dir)(e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err("read", dir))?;
        if let Some(name) = entry.file_name().to_str() {
            out.push(name.to_string());
        }
    }
    out.sort();
    Ok(out)
}

/// Runs `f` on a new thread that has joined the network namespace at `path`, and returns its
/// result. The thread ends afterwards, so its namespace switch cannot leak anywhere else.
pub fn run_in<T, F>(path: &Path, f: F) -> Result<T, Error>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let ns = fs::File::open(path).map_err(io_err("open", path))?;
    if !is_netns(path) {
        return Err(Error::Io {
            op: "enter",
            path: path.to_path_buf(),
            source: io::Error::new(io::ErrorKind::InvalidInput, "not a network namespace"),
        });
    }
    let target = path.to_path_buf();
    std::thread::Builder::new()
        .name("rk3s-netns-run".into())
        .spawn(move || -> Result<T, Error> {
            nix::sched::setns(ns.as_fd(), CloneFlags::CLONE_NEWNET)
                .map_err(sys_err("setns", &target))?;
            Ok(f())
        })
        .map_err(io_err("spawn thread for", path))?
        .join()
        .map_err(|_| Error::Thread(path.to_path_buf()))?
}
