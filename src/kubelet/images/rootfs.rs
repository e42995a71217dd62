//! Container root filesystems: an overlayfs of the image's layer snapshots (read-only lowers)
//! with a per-container upper and work directory, as containerd's overlay snapshotter mounts them.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};

use super::Error;

/// The kernel copies mount data into one page; stay below it with room for the NUL.
const MAX_MOUNT_DATA: usize = 4095;

/// Mounts `dir/rootfs` as an overlay of `lowers` (topmost first) with `dir/upper` and `dir/work`.
/// Does nothing if it is already mounted.
pub fn mount(lowers: &[PathBuf], dir: &Path) -> Result<PathBuf, Error> {
    mount_with_limit(lowers, dir, MAX_MOUNT_DATA)
}

fn mount_with_limit(lowers: &[PathBuf], dir: &Path, limit: usize) -> Result<PathBuf, Error> {
    let rootfs = dir.join("rootfs");
    let upper = dir.join("upper");
    let work = dir.join("work");
    for d in [dir, &rootfs, &upper, &work] {
        std::fs::create_dir_all(d).map_err(|source| Error::Io {
            path: d.to_path_buf(),
            source,
        })?;
    }
    if is_mountpoint(&rootfs)? {
        return Ok(rootfs);
    }
    let mut lowers: Vec<PathBuf> = lowers.to_vec();
    if lowers.is_empty() {
        // An image without layers (`FROM scratch` plus config only) still needs one lower.
        let empty = dir.join("empty");
        std::fs::create_dir_all(&empty).map_err(|source| Error::Io {
            path: empty.clone(),
            source,
        })?;
        lowers.push(empty);
    }
    for p in lowers.iter().chain([&upper, &work]) {
        let s = p.to_string_lossy();
        // `:` separates lowers and `,` separates options; overlayfs has escapes for neither in
        // all kernels we support, so such paths are refused rather than mis-mounted.
        if s.contains(':') || s.contains(',') {
            return Err(Error::Mount {
                path: rootfs.clone(),
                message: format!("path {s:?} contains ':' or ','"),
            });
        }
    }
    let options = |lowerdir: String| {
        format!(
            "lowerdir={lowerdir},upperdir={},workdir={}",
            upper.display(),
            work.display()
        )
    };
    let join = |paths: Vec<&Path>| {
        paths
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(":")
    };
    let data = options(join(lowers.iter().map(PathBuf::as_path).collect()));
    if data.len() <= limit {
        do_mount(&rootfs, &data)?;
        return Ok(rootfs);
    }
    // Too long for one page (deep images): name the lowers relative to their common snapshot
    // directory, from a thread that has its own working directory (`unshare(CLONE_FS)`), so
    // the process's cwd is never changed. Snapshot names are short numbers, so this fits
    // hundreds of layers.
    let base = lowers[0]
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let relative: Option<Vec<&Path>> = lowers.iter().map(|l| l.strip_prefix(&base).ok()).collect();
    let too_long = |len: usize| Error::Mount {
        path: rootfs.clone(),
        message: format!(
            "{} layers make a {len}-byte overlay option string, more than the kernel's page",
            lowers.len()
        ),
    };
    let Some(relative) = relative else {
        return Err(too_long(data.len()));
    };
    let data = options(join(relative));
    if data.len() > limit {
        return Err(too_long(data.len()));
    }
    let target = rootfs.clone();
    std::thread::scope(|s| {
        s.spawn(|| -> Result<(), Error> {
            // SAFETY: unshare(CLONE_FS) only detaches this thread's fs context (cwd, root,
            // umask) from the rest of the process; it touches no memory.
            if unsafe { nix::libc::unshare(nix::libc::CLONE_FS) } != 0 {
                return Err(Error::Mount {
                    path: target.clone(),
                    message: format!("unshare(CLONE_FS): {}", std::io::Error::last_os_error()),
                });
            }
            nix::unistd::chdir(&base).map_err(|e| Error::Mount {
                path: target.clone(),
                message: format!("chdir {}: {e}", base.display()),
            })?;
            do_mount(&target, &data)
        })
        .join()
        .unwrap_or_else(|_| {
            Err(Error::Mount {
                path: target.clone(),
                message: "mount thread panicked".to_string(),
            })
        })
    })?;
    Ok(rootfs)
}

fn do_mount(rootfs: &Path, data: &str) -> Result<(), Error> {
    nix::mount::mount(
        Some("overlay"),
        rootfs,
        Some("overlay"),
        MsFlags::empty(),
        Some(data),
    )
    .map_err(|e| Error::Mount {
        path: rootfs.to_path_buf(),
        message: e.to_string(),
    })
}

/// Detaches `dir/rootfs` (lazily, so a process still inside does not block it) and removes `dir`.
pub fn unmount(dir: &Path) -> Result<(), Error> {
    let rootfs = dir.join("rootfs");
    if !dir.exists() {
        return Ok(());
    }
    // Stacked mounts (a mount made twice) are all taken off.
    while rootfs.exists() && is_mountpoint(&rootfs)? {
        nix::mount::umount2(&rootfs, MntFlags::MNT_DETACH).map_err(|e| Error::Mount {
            path: rootfs.clone(),
            message: format!("unmount: {e}"),
        })?;
    }
    std::fs::remove_dir_all(dir).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        source,
    })
}

/// Whether `path` is the root of a mount: it sits on another device than its parent (an
/// overlay always gets its own anonymous device).
fn is_mountpoint(path: &Path) -> Result<bool, Error> {
    let io = |source, p: &Path| Error::Io {
        path: p.to_path_buf(),
        source,
    };
    let me = std::fs::symlink_metadata(path).map_err(|e| io(e, path))?;
    let parent = path.parent().unwrap_or(Path::new("/"));
    let up = std::fs::metadata(parent).map_err(|e| io(e, parent))?;
    Ok(me.dev() != up.dev() || me.ino() == up.ino())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_option_strings_use_relative_lower_dirs() {
        if !nix::unistd::geteuid().is_root() {
            if std::env::var_os("RK3S_TESTS_STRICT").is_some_and(|v| v == "1") {
                panic!("mount tests need root and RK3S_TESTS_STRICT=1");
            }
            println!("SKIP: mount tests need root");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let mut lowers = Vec::new();
        for n in 1..=3 {
            let fs = tmp.path().join(format!("snapshots/{n}/fs"));
            std::fs::create_dir_all(&fs).unwrap();
            std::fs::write(fs.join(format!("f{n}")), n.to_string()).unwrap();
            lowers.push(fs);
        }
        lowers.reverse();
        let dir = tmp.path().join("c");
        let cwd = std::env::current_dir().unwrap();
        // Absolute paths under the temporary directory take ~165 bytes, relative ones ~90: a
        // 120-byte limit forces the relative form.
        let rootfs = mount_with_limit(&lowers, &dir, 120).unwrap();
        let result = (1..=3).all(|n| rootfs.join(format!("f{n}")).exists());
        unmount(&dir).unwrap();
        assert!(result);
        assert!(!dir.exists());
        assert_eq!(std::env::current_dir().unwrap(), cwd);
        assert!(mount_with_limit(&lowers, &dir, 20).is_err());
        let _ = unmount(&dir);
    }
}
