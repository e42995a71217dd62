//! Unpacks one layer blob (tar, tar+gzip or tar+zstd) into an overlayfs lower directory, the way
//! containerd's `archive.Apply` with the overlay converter does: OCI whiteouts become overlay
//! whiteouts (`.wh.x` → char device 0:0 at `x`, `.wh..wh..opq` → `trusted.overlay.opaque=y`),
//! ownership, modes, times and `SCHILY.xattr.*` are kept, links are created verbatim.
//!
//! Safety: tar entries are attacker-controlled. `tar::Archive::unpack` has had escapes through
//! symlinked parents, so entries are applied one by one: the path is cleaned lexically (`..`
//! cannot climb above the layer root, as in containerd's `filepath.Join("/", name)`), every parent
//! directory is opened with `openat2(RESOLVE_IN_ROOT)` (so a symlink in the layer is followed but
//! clamped to the layer root), and the last component is only ever touched through `*at` calls
//! on that parent descriptor that do not follow symlinks.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::{
    Mode, SFlag, UtimensatFlags, fchmod, fchmodat, makedev, mkdirat, mknodat, utimensat,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchown, fchownat, linkat, symlinkat, unlinkat};

/// What went wrong while applying a layer; the caller adds which layer.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("reading layer: {0}")]
    Read(#[source] io::Error),
    #[error("entry {path:?}: {source}")]
    Entry {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("uncompressed layer digest is {actual}, the image config says {expected}")]
    DiffId { expected: String, actual: String },
}

/// Compression of a layer blob, known from the media type or sniffed from the magic bytes
/// (Docker schema 2 and OCI both mislabel layers in the wild).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Compression {
    None,
    Gzip,
    Zstd,
}

pub(super) fn sniff(head: &[u8]) -> Compression {
    if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// A reader that hashes what passes through it, to check the layer's diff id.
struct Hashing<R> {
    inner: R,
    ctx: ring::digest::Context,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.ctx.update(&buf[..n]);
        Ok(n)
    }
}

/// Unpacks the layer blob at `blob` into the empty directory `dest`, checking that the
/// uncompressed stream hashes to `diff_id` (`sha256:<hex>`; empty skips the check).
pub fn unpack_layer(blob: &Path, dest: &Path, diff_id: &str) -> Result<(), UnpackError> {
    let mut file = File::open(blob).map_err(UnpackError::Read)?;
    let mut head = [0u8; 4];
    let n = read_full(&mut file, &mut head).map_err(UnpackError::Read)?;
    let prefix = io::Cursor::new(head[..n].to_vec());
    let raw = prefix.chain(file);
    let decoded: Box<dyn Read> = match sniff(&head[..n]) {
        Compression::None => Box::new(raw),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(raw)),
        Compression::Zstd => {
            Box::new(zstd::stream::read::Decoder::new(raw).map_err(UnpackError::Read)?)
        }
    };
    let mut hashing = Hashing {
        inner: decoded,
        ctx: ring::digest::Context::new(&ring::digest::SHA256),
    };
    apply(&mut hashing, dest)?;
    // The tar reader stops at the end-of-archive marker; the digest covers the whole stream.
    io::copy(&mut hashing, &mut io::sink()).map_err(UnpackError::Read)?;
    let actual = format!("sha256:{}", hex(hashing.ctx.finish().as_ref()));
    if !diff_id.is_empty() && actual != diff_id {
        return Err(UnpackError::DiffId {
            expected: diff_id.to_string(),
            actual,
        });
    }
    Ok(())
}

pub(super) fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Applies an uncompressed tar stream to `dest`.
pub fn apply(reader: &mut dyn Read, dest: &Path) -> Result<(), UnpackError> {
    let root =
        open_dir(libc_at_fdcwd(), dest.as_os_str().as_bytes(), false).map_err(UnpackError::Read)?;
    let mut archive = tar::Archive::new(reader);
    // Directory times are set last: creating entries inside a directory changes its mtime.
    let mut dir_times: Vec<(Vec<String>, u64)> = Vec::new();
    for entry in archive.entries().map_err(UnpackError::Read)? {
        let mut entry = entry.map_err(UnpackError::Read)?;
        let raw_path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let result = apply_entry(&root, &mut entry, &mut dir_times);
        result.map_err(|source| UnpackError::Entry {
            path: raw_path,
            source,
        })?;
    }
    for (components, mtime) in dir_times.iter().rev() {
        let time = TimeSpec::new(*mtime as i64, 0);
        if components.is_empty() {
            let _ = nix::sys::stat::futimens(root.as_raw_fd(), &time, &time);
            continue;
        }
        if let Ok(dir) = resolve(&root, components, false) {
            let _ = nix::sys::stat::futimens(dir.as_raw_fd(), &time, &time);
        }
    }
    Ok(())
}

fn libc_at_fdcwd() -> RawFd {
    nix::libc::AT_FDCWD
}

/// Cleans a tar path lexically: `/`, `.` and empty parts vanish, `..` pops but never above the
/// root.
pub fn clean(path: &Path) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(s) => out.push(s.to_string_lossy().into_owned()),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

fn apply_entry<R: Read>(
    root: &OwnedFd,
    entry: &mut tar::Entry<'_, R>,
    dir_times: &mut Vec<(Vec<String>, u64)>,
) -> io::Result<()> {
    let path = entry.path()?.into_owned();
    let components = clean(&path);
    let header = entry.header().clone();
    let kind = header.entry_type();
    let uid = header.uid()? as u32;
    let gid = header.gid()? as u32;
    let mode = header.mode()? & 0o7777;
    let mtime = header.mtime().unwrap_or(0);
    let xattrs = pax_xattrs(entry)?;

    let Some((name, parents)) = components.split_last() else {
        // The layer root itself (`./`): only its metadata applies.
        if kind.is_dir() {
            fchown(
                root.as_raw_fd(),
                Some(Uid::from_raw(uid)),
                Some(Gid::from_raw(gid)),
            )?;
            fchmod(root.as_raw_fd(), Mode::from_bits_truncate(mode))?;
            dir_times.push((Vec::new(), mtime));
        }
        return Ok(());
    };
    let parent = resolve(root, parents, true)?;
    let pfd = parent.as_raw_fd();

    // OCI whiteouts (image-spec layer.md "Whiteouts") in overlayfs form.
    if name == ".wh..wh..opq" {
        set_xattr(pfd, b"trusted.overlay.opaque", b"y")?;
        return Ok(());
    }
    if let Some(hidden) = name.strip_prefix(".wh.") {
        if hidden.is_empty() {
            return Ok(());
        }
        remove_existing(pfd, hidden, false)?;
        mknodat(
            Some(pfd),
            hidden,
            SFlag::S_IFCHR,
            Mode::empty(),
            makedev(0, 0),
        )?;
        fchownat(
            Some(pfd),
            hidden,
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )?;
        return Ok(());
    }

    let owner = |nofollow: bool| -> io::Result<()> {
        fchownat(
            Some(pfd),
            name.as_str(),
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
            if nofollow {
                AtFlags::AT_SYMLINK_NOFOLLOW
            } else {
                AtFlags::empty()
            },
        )?;
        Ok(())
    };
    let times = |follow: bool| -> io::Result<()> {
        let t = TimeSpec::new(mtime as i64, 0);
        utimensat(
            Some(pfd),
            name.as_str(),
            &t,
            &t,
            if follow {
                UtimensatFlags::FollowSymlink
            } else {
                UtimensatFlags::NoFollowSymlink
            },
        )?;
        Ok(())
    };

    use tar::EntryType as T;
    match kind {
        T::Directory => {
            remove_existing(pfd, name, true)?;
            match mkdirat(Some(pfd), name.as_str(), Mode::from_bits_truncate(0o700)) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(e.into()),
            }
            let dir = open_dir(pfd, name.as_bytes(), true)?;
            fchown(
                dir.as_raw_fd(),
                Some(Uid::from_raw(uid)),
                Some(Gid::from_raw(gid)),
            )?;
            fchmod(dir.as_raw_fd(), Mode::from_bits_truncate(mode))?;
            for (k, v) in &xattrs {
                set_xattr(dir.as_raw_fd(), k, v)?;
            }
            let mut full = parents.to_vec();
            full.push(name.clone());
            dir_times.push((full, mtime));
        }
        T::Regular | T::Continuous | T::GNUSparse => {
            remove_existing(pfd, name, false)?;
            let fd = nix::fcntl::openat(
                Some(pfd),
                name.as_str(),
                OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_WRONLY
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o600),
            )?;
            // SAFETY: `openat` just returned this descriptor and nothing else owns it.
            let mut file = unsafe { File::from_raw_fd(fd) };
            io::copy(entry, &mut file)?;
            // chown before chmod: chown clears set-uid/set-gid bits.
            fchown(
                file.as_raw_fd(),
                Some(Uid::from_raw(uid)),
                Some(Gid::from_raw(gid)),
            )?;
            fchmod(file.as_raw_fd(), Mode::from_bits_truncate(mode))?;
            for (k, v) in &xattrs {
                set_xattr(file.as_raw_fd(), k, v)?;
            }
            let t = TimeSpec::new(mtime as i64, 0);
            nix::sys::stat::futimens(file.as_raw_fd(), &t, &t)?;
        }
        T::Symlink => {
            let target = entry
                .link_name_bytes()
                .ok_or_else(|| io::Error::other("symlink without a target"))?
                .into_owned();
            remove_existing(pfd, name, false)?;
            // The target is stored verbatim: it is only ever resolved inside the container's
            // root (or inside this layer root by `resolve`), never by us on the host.
            symlinkat(OsStr::from_bytes(&target), Some(pfd), name.as_str())?;
            owner(true)?;
            times(false)?;
        }
        T::Link => {
            let target = entry
                .link_name()?
                .ok_or_else(|| io::Error::other("hard link without a target"))?
                .into_owned();
            let tcomp = clean(&target);
            let Some((tname, tparents)) = tcomp.split_last() else {
                return Err(io::Error::other("hard link to the layer root"));
            };
            let tparent = resolve(root, tparents, false)?;
            remove_existing(pfd, name, false)?;
            linkat(
                Some(tparent.as_raw_fd()),
                tname.as_str(),
                Some(pfd),
                name.as_str(),
                AtFlags::empty(),
            )?;
        }
        T::Char | T::Block | T::Fifo => {
            let (ftype, dev) = match kind {
                T::Char => (SFlag::S_IFCHR, dev_of(&header)?),
                T::Block => (SFlag::S_IFBLK, dev_of(&header)?),
                _ => (SFlag::S_IFIFO, 0),
            };
            remove_existing(pfd, name, false)?;
            mknodat(
                Some(pfd),
                name.as_str(),
                ftype,
                Mode::from_bits_truncate(mode),
                dev,
            )?;
            owner(true)?;
            fchmodat(
                Some(pfd),
                name.as_str(),
                Mode::from_bits_truncate(mode),
                nix::sys::stat::FchmodatFlags::FollowSymlink,
            )?;
            times(false)?;
        }
        // PAX/GNU headers are consumed by the tar reader; anything else has no file form.
        _ => tracing::debug!(path = %path.display(), ?kind, "skipping tar entry"),
    }
    Ok(())
}

fn dev_of(header: &tar::Header) -> io::Result<u64> {
    let major = header.device_major()?.unwrap_or(0);
    let minor = header.device_minor()?.unwrap_or(0);
    Ok(makedev(u64::from(major), u64::from(minor)))
}

/// `SCHILY.xattr.<name>` PAX records, which is how Docker and BuildKit store file capabilities.
fn pax_xattrs<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut out = Vec::new();
    if let Some(exts) = entry.pax_extensions()? {
        for ext in exts {
            let ext = ext?;
            if let Some(name) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.") {
                out.push((name.to_vec(), ext.value_bytes().to_vec()));
            }
        }
    }
    Ok(out)
}

/// Removes whatever is at `name` in `dir` so a later tar entry replaces it, as tar does. An
/// existing directory is kept when the new entry is a directory too (its metadata is updated);
/// otherwise it is removed with its contents.
fn remove_existing(dir: RawFd, name: &str, keep_dir: bool) -> io::Result<()> {
    let st =
        match nix::sys::stat::fstatat(Some(dir), name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::ENOENT) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
    let is_dir = st.st_mode & nix::libc::S_IFMT == nix::libc::S_IFDIR;
    if is_dir {
        if keep_dir {
            return Ok(());
        }
        let sub = open_dir(dir, name.as_bytes(), true)?;
        remove_tree(&sub)?;
        unlinkat(Some(dir), name, UnlinkatFlags::RemoveDir)?;
    } else {
        unlinkat(Some(dir), name, UnlinkatFlags::NoRemoveDir)?;
    }
    Ok(())
}

/// Empties the directory `dir`: names are listed through the descriptor (nix's `dir` feature is
/// not enabled) and each is removed with `*at` calls that never follow symlinks.
fn remove_tree(dir: &OwnedFd) -> io::Result<()> {
    let listing = std::fs::read_dir(format!("/proc/self/fd/{}", dir.as_raw_fd()))?;
    let mut names = Vec::new();
    for entry in listing {
        names.push(entry?.file_name().to_string_lossy().into_owned());
    }
    for name in names {
        remove_existing(dir.as_raw_fd(), &name, false)?;
    }
    Ok(())
}

/// Opens the directory `name` under `dir` without following a symlink at `name` itself.
fn open_dir(dir: RawFd, name: &[u8], nofollow: bool) -> io::Result<OwnedFd> {
    let mut flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    if nofollow {
        flags |= OFlag::O_NOFOLLOW;
    }
    let fd = nix::fcntl::openat(Some(dir), OsStr::from_bytes(name), flags, Mode::empty())?;
    // SAFETY: `openat` just returned this descriptor and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens the directory `components` below `root`, resolving symlinks as if `root` were `/`
/// (`openat2(RESOLVE_IN_ROOT)`); with `create`, missing directories are made (mode 0755,
/// root-owned, as containerd does for implied parents).
fn resolve(root: &OwnedFd, components: &[String], create: bool) -> io::Result<OwnedFd> {
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let open = |upto: usize| -> nix::Result<OwnedFd> {
        let rel = if upto == 0 {
            ".".to_string()
        } else {
            components[..upto].join("/")
        };
        let fd = openat2(root.as_raw_fd(), rel.as_str(), how)?;
        // SAFETY: `openat2` just returned this descriptor and nothing else owns it.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    };
    match open(components.len()) {
        Ok(fd) => return Ok(fd),
        Err(Errno::ENOENT) if create => {}
        Err(e) => return Err(e.into()),
    }
    let mut current = open(0)?;
    for (i, component) in components.iter().enumerate() {
        match open(i + 1) {
            Ok(fd) => current = fd,
            Err(Errno::ENOENT) => {
                // `current` is the safely resolved parent; the new name is one plain component.
                match mkdirat(
                    Some(current.as_raw_fd()),
                    component.as_str(),
                    Mode::from_bits_truncate(0o755),
                ) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(e.into()),
                }
                current = open(i + 1)?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(current)
}

/// `fsetxattr` on an open descriptor (nix has no xattr wrapper).
fn set_xattr(fd: RawFd, name: &[u8], value: &[u8]) -> io::Result<()> {
    let name = CString::new(name).map_err(|_| io::Error::other("xattr name contains NUL"))?;
    // SAFETY: `name` is NUL-terminated, `value` is a valid slice for its length, `fd` is open.
    let rc =
        unsafe { nix::libc::fsetxattr(fd, name.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn is_root() -> bool {
        if nix::unistd::geteuid().is_root() {
            return true;
        }
        if std::env::var_os("RK3S_TESTS_STRICT").is_some_and(|v| v == "1") {
            panic!("unpack tests need root (chown, mknod) and RK3S_TESTS_STRICT=1");
        }
        println!("SKIP: unpack tests need root (chown, mknod)");
        false
    }

    /// A tar built entry by entry, with raw names so that hostile paths can be written.
    struct Tar(tar::Builder<Vec<u8>>);

    impl Tar {
        fn new() -> Tar {
            Tar(tar::Builder::new(Vec::new()))
        }
        fn entry(
            &mut self,
            kind: tar::EntryType,
            name: &str,
            link: Option<&str>,
            data: &[u8],
            mode: u32,
        ) -> &mut Tar {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_size(data.len() as u64);
            h.set_mode(mode);
            h.set_uid(1000);
            h.set_gid(1001);
            h.set_mtime(1_600_000_000);
            // Write the name bytes raw: `set_path` refuses `..`, an attacker's tar does not.
            let gnu = h.as_gnu_mut().unwrap();
            gnu.name[..name.len()].copy_from_slice(name.as_bytes());
            if let Some(l) = link {
                gnu.linkname[..l.len()].copy_from_slice(l.as_bytes());
            }
            h.set_cksum();
            self.0.append(&h, data).unwrap();
            self
        }
        fn file(&mut self, name: &str, data: &[u8]) -> &mut Tar {
            self.entry(tar::EntryType::Regular, name, None, data, 0o644)
        }
        fn dir(&mut self, name: &str) -> &mut Tar {
            self.entry(tar::EntryType::Directory, name, None, b"", 0o755)
        }
        fn symlink(&mut self, name: &str, target: &str) -> &mut Tar {
            self.entry(tar::EntryType::Symlink, name, Some(target), b"", 0o777)
        }
        fn finish(&mut self) -> Vec<u8> {
            let b = std::mem::replace(&mut self.0, tar::Builder::new(Vec::new()));
            b.into_inner().unwrap()
        }
    }

    #[test]
    fn regular_entries_keep_owner_mode_and_time() {
        if !is_root() {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let layer = tmp.path().join("fs");
        std::fs::create_dir(&layer).unwrap();
        let data = Tar::new()
            .dir("usr/")
            .entry(
                tar::EntryType::Regular,
                "usr/bin/tool",
                None,
                b"#!x",
                0o4755,
            )
            .symlink("bin", "/usr/bin")
            .entry(
                tar::EntryType::Link,
                "usr/bin/tool2",
                Some("usr/bin/tool"),
                b"",
                0o755,
            )
            .entry(tar::EntryType::Fifo, "run.fifo", None, b"", 0o600)
            .finish();
        apply(&mut data.as_slice(), &layer).unwrap();
        let tool = std::fs::metadata(layer.join("usr/bin/tool")).unwrap();
        assert_eq!(tool.uid(), 1000);
        assert_eq!(tool.gid(), 1001);
        assert_eq!(tool.permissions().mode() & 0o7777, 0o4755);
        assert_eq!(tool.mtime(), 1_600_000_000);
        assert_eq!(
            std::fs::read_link(layer.join("bin")).unwrap(),
            Path::new("/usr/bin")
        );
        assert_eq!(
            std::fs::metadata(layer.join("usr/bin/tool2"))
                .unwrap()
                .ino(),
            tool.ino()
        );
        assert_eq!(
            std::fs::metadata(layer.join("usr")).unwrap().mtime(),
            1_600_000_000
        );
        // The implied parent `usr/bin` was made with containerd's defaults.
        assert_eq!(std::fs::metadata(layer.join("usr/bin")).unwrap().uid(), 0);
    }

    #[test]
    fn whiteouts_become_overlay_whiteouts() {
        if !is_root() {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let layer = tmp.path().join("fs");
        std::fs::create_dir(&layer).unwrap();
        let data = Tar::new()
            .file("etc/.wh.gone", b"")
            .dir("var/")
            .file("var/.wh..wh..opq", b"")
            .finish();
        apply(&mut data.as_slice(), &layer).unwrap();
        let st = nix::sys::stat::lstat(&layer.join("etc/gone")).unwrap();
        assert_eq!(st.st_mode & nix::libc::S_IFMT, nix::libc::S_IFCHR);
        assert_eq!(st.st_rdev, 0);
        assert!(!layer.join("etc/.wh.gone").exists());
        assert!(!layer.join("var/.wh..wh..opq").exists());
        let mut buf = [0u8; 4];
        let path = CString::new(layer.join("var").as_os_str().as_bytes()).unwrap();
        let name = CString::new("trusted.overlay.opaque").unwrap();
        // SAFETY: valid C strings and buffer.
        let n = unsafe {
            nix::libc::lgetxattr(
                path.as_ptr(),
                name.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        assert_eq!(n, 1);
        assert_eq!(buf[0], b'y');
    }

    #[test]
    fn hostile_paths_stay_inside_the_layer() {
        if !is_root() {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let layer = tmp.path().join("fs");
        std::fs::create_dir(&layer).unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        let data = Tar::new()
            .file("../escape", b"dotdot")
            .file("/abs", b"abs")
            // Symlinked parents are followed as if the layer root were `/`.
            .symlink("up", "../../..")
            .file("up/tmp/pwned2", b"relative")
            .symlink("rootlink", "/")
            .file(
                &format!("rootlink{}/pwned3", outside.display()),
                b"absolute",
            )
            .finish();
        apply(&mut data.as_slice(), &layer).unwrap();
        assert!(!tmp.path().join("escape").exists());
        assert_eq!(std::fs::read(layer.join("escape")).unwrap(), b"dotdot");
        assert_eq!(std::fs::read(layer.join("abs")).unwrap(), b"abs");
        assert!(!Path::new("/tmp/pwned2").exists());
        assert_eq!(
            std::fs::read(layer.join("tmp/pwned2")).unwrap(),
            b"relative"
        );
        assert!(!outside.join("pwned3").exists());
        let inside = layer
            .join(outside.strip_prefix("/").unwrap())
            .join("pwned3");
        assert_eq!(std::fs::read(inside).unwrap(), b"absolute");

        // A parent that is a dangling symlink to the host is refused, not followed.
        let layer2 = tmp.path().join("fs2");
        std::fs::create_dir(&layer2).unwrap();
        let data = Tar::new()
            .symlink("link", outside.to_str().unwrap())
            .file("link/pwned", b"symlink")
            .finish();
        assert!(apply(&mut data.as_slice(), &layer2).is_err());
        assert!(!outside.join("pwned").exists());

        // A hard link naming a host file resolves inside the layer, where it does not exist.
        let layer3 = tmp.path().join("fs3");
        std::fs::create_dir(&layer3).unwrap();
        let data = Tar::new()
            .entry(
                tar::EntryType::Link,
                "hl",
                Some("../../../../etc/hostname"),
                b"",
                0o644,
            )
            .finish();
        assert!(apply(&mut data.as_slice(), &layer3).is_err());
        assert!(!layer3.join("hl").exists());

        // A regular file written over a symlink replaces the link instead of writing through it.
        let layer4 = tmp.path().join("fs4");
        std::fs::create_dir(&layer4).unwrap();
        let victim = outside.join("victim");
        std::fs::write(&victim, b"intact").unwrap();
        let data = Tar::new()
            .symlink("f", victim.to_str().unwrap())
            .file("f", b"new")
            .finish();
        apply(&mut data.as_slice(), &layer4).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"intact");
        assert_eq!(std::fs::read(layer4.join("f")).unwrap(), b"new");
    }

    #[test]
    fn compressed_layers_are_checked_against_the_diff_id() {
        if !is_root() {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let data = Tar::new().file("hello", b"world").finish();
        let diff_id = format!(
            "sha256:{}",
            hex(ring::digest::digest(&ring::digest::SHA256, &data).as_ref())
        );
        let gz = {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            std::io::Write::write_all(&mut e, &data).unwrap();
            e.finish().unwrap()
        };
        let zst = zstd::stream::encode_all(data.as_slice(), 1).unwrap();
        for (i, blob) in [data.clone(), gz, zst].into_iter().enumerate() {
            let file = tmp.path().join(format!("blob{i}"));
            std::fs::write(&file, blob).unwrap();
            let dest = tmp.path().join(format!("fs{i}"));
            std::fs::create_dir(&dest).unwrap();
            unpack_layer(&file, &dest, &diff_id).unwrap();
            assert_eq!(std::fs::read(dest.join("hello")).unwrap(), b"world");
            let again = tmp.path().join(format!("bad{i}"));
            std::fs::create_dir(&again).unwrap();
            let err = unpack_layer(&file, &again, "sha256:00").unwrap_err();
            assert!(matches!(err, UnpackError::DiffId { .. }), "{err}");
        }
    }
}
