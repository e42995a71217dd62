//! Host-local IP address management for the node's pod CIDR.
//!
//! Same model as the CNI `host-local` plugin: the gateway takes the first address (`.1`), pods get
//! `.2` up to the last address before broadcast, and every allocation is one small file
//! `<dir>/<ip>` whose content is the pod UID. The files are the only source of truth, so a daemon
//! restart or crash can neither leak an address nor hand it out twice.
//!
//! Allocation order is round-robin after the last address handed out (persisted in
//! `<dir>/last_reserved_ip`), like `host-local`, rather than lowest-free: a just-released address
//! is then reused as late as possible, so stale conntrack entries, ARP caches and not-yet-updated
//! Endpoints that still point at a deleted pod do not send traffic to its successor.
//!
//! [`pick`] and [`Range`] are pure; [`Store`] is the thin file layer around them.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ipnet::Ipv4Net;

/// The file remembering the last handed-out address (name taken from `host-local`).
const LAST_RESERVED: &str = "last_reserved_ip";
/// Prefix of temporary files; they are written completely, then hard-linked to their final name.
const TMP_PREFIX: &str = ".tmp-";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "pod CIDR {0} is too small: it needs room for a gateway and at least one pod (/30 or larger)"
    )]
    CidrTooSmall(Ipv4Net),
    #[error("no free address left in pod CIDR {cidr} ({used} of {size} in use) for pod {uid}")]
    Exhausted {
        cidr: Ipv4Net,
        uid: String,
        used: usize,
        size: u32,
    },
    #[error("ipam {op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The addresses pods may get from one pod CIDR: gateway + 1 ..= broadcast - 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub cidr: Ipv4Net,
    first: u32,
    last: u32,
}

impl Range {
    pub fn new(cidr: Ipv4Net) -> Result<Range, Error> {
        let cidr = cidr.trunc();
        // /31 and /32 have no room for network, gateway, a pod and broadcast.
        if cidr.prefix_len() > 30 {
            return Err(Error::CidrTooSmall(cidr));
        }
        let network = u32::from(cidr.network());
        let broadcast = u32::from(cidr.broadcast());
        Ok(Range {
            cidr,
            first: network + 2,
            last: broadcast - 1,
        })
    }

    /// The bridge address: the first host address of the CIDR.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.cidr.network()) + 1)
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        (self.first..=self.last).contains(&u32::from(ip))
    }

    pub fn size(&self) -> u32 {
        self.last - self.first + 1
    }
}

/// Chooses the next free address: the first free one after `last` (wrapping around), or from the
/// start of the range when `last` is unknown or outside it. `None` when the range is full.
pub fn pick(
    range: &Range,
    allocated: &BTreeSet<Ipv4Addr>,
    last: Option<Ipv4Addr>,
) -> Option<Ipv4Addr> {
    let start = match last {
        Some(ip) if range.contains(ip) => {
            let next = u32::from(ip) + 1;
            if next > range.last { range.first } else { next }
        }
        _ => range.first,
    };
    (start..=range.last)
        .chain(range.first..start)
        .map(Ipv4Addr::from)
        .find(|ip| !allocated.contains(ip))
}

/// Allocations on disk. All methods block (small file I/O); call them off the async runtime.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    /// Serialises read-modify-write cycles of this process; the files themselves stay consistent
    /// across crashes because every allocation is claimed with one atomic `link(2)`.
    lock: Mutex<()>,
}

impl Store {
    pub fn new(dir: impl Into<PathBuf>) -> Store {
        Store {
            dir: dir.into(),
            lock: Mutex::new(()),
        }
    }

    /// Returns the address of `uid` in `cidr`, allocating one if the pod has none there yet.
    /// An allocation of `uid` outside `cidr` (the node's CIDR changed) is dropped first.
    pub fn allocate(&self, cidr: Ipv4Net, uid: &str) -> Result<Ipv4Addr, Error> {
        let range = Range::new(cidr)?;
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.ensure_dir()?;
        let mut allocations = self.read()?;
        let mut mine = None;
        for (ip, owner) in &allocations {
            if owner == uid {
                if range.contains(*ip) && mine.is_none() {
                    mine = Some(*ip);
                } else {
                    self.remove(*ip)?;
                }
            }
        }
        if let Some(ip) = mine {
            return Ok(ip);
        }
        allocations.retain(|_, owner| owner != uid);
        let taken: BTreeSet<Ipv4Addr> = allocations.keys().copied().collect();
        let last = self.last_reserved();
        let Some(ip) = pick(&range, &taken, last) else {
            return Err(Error::Exhausted {
                cidr: range.cidr,
                uid: uid.to_string(),
                used: taken.iter().filter(|ip| range.contains(**ip)).count(),
                size: range.size(),
            });
        };
        if self.claim(ip, uid)? {
            self.write_file(LAST_RESERVED, &ip.to_string())?;
            return Ok(ip);
        }
        // Another writer of the directory took it between our read and claim: rescan.
        self.retry_after_race(&range, uid)
    }

    fn retry_after_race(&self, range: &Range, uid: &str) -> Result<Ipv4Addr, Error> {
        let taken: BTreeSet<Ipv4Addr> = self.read()?.keys().copied().collect();
        for ip in (range.first..=range.last).map(Ipv4Addr::from) {
            if !taken.contains(&ip) && self.claim(ip, uid)? {
                self.write_file(LAST_RESERVED, &ip.to_string())?;
                return Ok(ip);
            }
        }
        Err(Error::Exhausted {
            cidr: range.cidr,
            uid: uid.to_string(),
            used: taken.len(),
            size: range.size(),
        })
    }

    /// Frees every address held by `uid`; returns them (empty for an unknown uid).
    pub fn release(&self, uid: &str) -> Result<Vec<Ipv4Addr>, Error> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut released = Vec::new();
        for (ip, owner) in self.read()? {
            if owner == uid {
                self.remove(ip)?;
                released.push(ip);
            }
        }
        Ok(released)
    }

    /// Drops allocations that are not usable pod addresses of `cidr` (the node's CIDR changed).
    pub fn retain_in(&self, cidr: Ipv4Net) -> Result<Vec<(Ipv4Addr, String)>, Error> {
        let range = Range::new(cidr)?;
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut dropped = Vec::new();
        for (ip, owner) in self.read()? {
            if !range.contains(ip) {
                self.remove(ip)?;
                dropped.push((ip, owner));
            }
        }
        Ok(dropped)
    }

    /// All allocations, address → pod UID.
    pub fn allocations(&self) -> Result<BTreeMap<Ipv4Addr, String>, Error> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.read()
    }

    fn read(&self) -> Result<BTreeMap<Ipv4Addr, String>, Error> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(e) => return Err(self.io("read", &self.dir, e)),
        };
        let mut out = BTreeMap::new();
        for entry in entries {
            let entry = entry.map_err(|e| self.io("read", &self.dir, e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with(TMP_PREFIX) {
                // Left behind by a crash between write and link/unlink; never an allocation.
                let _ = fs::remove_file(entry.path());
                continue;
            }
            let Ok(ip) = name.parse::<Ipv4Addr>() else {
                continue;
            };
            let path = entry.path();
            let owner = match fs::read_to_string(&path) {
                Ok(owner) => owner,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(self.io("read", &path, e)),
            };
            out.insert(ip, owner.trim().to_string());
        }
        Ok(out)
    }

    fn last_reserved(&self) -> Option<Ipv4Addr> {
        fs::read_to_string(self.dir.join(LAST_RESERVED))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    /// Claims `ip` for `uid`: the content is written to a temporary file first and then linked
    /// to `<ip>`, which fails if the address is taken. So the file either does not exist or holds
    /// the complete UID. Returns false when the address was already taken.
    fn claim(&self, ip: Ipv4Addr, uid: &str) -> Result<bool, Error> {
        let tmp = self.write_tmp(uid)?;
        let path = self.dir.join(ip.to_string());
        let linked = fs::hard_link(&tmp, &path);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                self.sync_dir();
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(self.io("link", &path, e)),
        }
    }

    /// Replaces `<dir>/<name>` atomically (write temporary file, rename).
    fn write_file(&self, name: &str, content: &str) -> Result<(), Error> {
        let tmp = self.write_tmp(content)?;
        let path = self.dir.join(name);
        fs::rename(&tmp, &path).map_err(|e| {
            let _ = fs::remove_file(&tmp);
            self.io("rename", &path, e)
        })
    }

    fn write_tmp(&self, content: &str) -> Result<PathBuf, Error> {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = self
            .dir
            .join(format!("{TMP_PREFIX}{}-{n}", std::process::id()));
        let write = || -> io::Result<()> {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(content.as_bytes())?;
            f.sync_all()
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            self.io("write", &tmp, e)
        })?;
        Ok(tmp)
    }

    fn remove(&self, ip: Ipv4Addr) -> Result<(), Error> {
        let path = self.dir.join(ip.to_string());
        match fs::remove_file(&path) {
            Ok(()) => {
                self.sync_dir();
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.io("remove", &path, e)),
        }
    }

    fn ensure_dir(&self) -> Result<(), Error> {
        fs::create_dir_all(&self.dir).map_err(|e| self.io("create", &self.dir, e))
    }

    /// Makes a new or removed directory entry durable. Best effort: a failure here only weakens
    /// crash durability, never consistency, so it is not reported.
    fn sync_dir(&self) {
        if let Ok(dir) = fs::File::open(&self.dir) {
            let _ = dir.sync_all();
        }
    }

    fn io(&self, op: &'static str, path: &Path, source: io::Error) -> Error {
        Error::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn range_skips_network_gateway_and_broadcast() {
        let r = Range::new(net("10.42.0.0/24")).unwrap();
        assert_eq!(r.gateway(), ip("10.42.0.1"));
        assert!(!r.contains(ip("10.42.0.0")));
        assert!(!r.contains(ip("10.42.0.1")));
        assert!(r.contains(ip("10.42.0.2")));
        assert!(r.contains(ip("10.42.0.254")));
        assert!(!r.contains(ip("10.42.0.255")));
        assert_eq!(r.size(), 253);
        assert!(matches!(
            Range::new(net("10.42.0.0/31")),
            Err(Error::CidrTooSmall(_))
        ));
        assert_eq!(Range::new(net("10.42.0.0/30")).unwrap().size(), 1);
    }

    #[test]
    fn pick_is_round_robin_after_last() {
        let r = Range::new(net("10.42.0.0/29")).unwrap(); // .2 ..= .6
        let mut taken = BTreeSet::new();
        assert_eq!(pick(&r, &taken, None), Some(ip("10.42.0.2")));
        assert_eq!(
            pick(&r, &taken, Some(ip("10.42.0.3"))),
            Some(ip("10.42.0.4"))
        );
        // Wraps around after the last address.
        assert_eq!(
            pick(&r, &taken, Some(ip("10.42.0.6"))),
            Some(ip("10.42.0.2"))
        );
        taken.insert(ip("10.42.0.2"));
        assert_eq!(
            pick(&r, &taken, Some(ip("10.42.0.6"))),
            Some(ip("10.42.0.3"))
        );
        // A `last` from another CIDR is ignored.
        assert_eq!(
            pick(&r, &taken, Some(ip("192.168.0.9"))),
            Some(ip("10.42.0.3"))
        );
    }

    #[test]
    fn same_uid_gets_same_address_and_persists_across_instances() {
        let dir = tempfile::tempdir().unwrap();
        let cidr = net("10.42.0.0/24");
        let a = Store::new(dir.path()).allocate(cidr, "pod-a").unwrap();
        let b = Store::new(dir.path()).allocate(cidr, "pod-b").unwrap();
        assert_eq!(a, ip("10.42.0.2"));
        assert_eq!(b, ip("10.42.0.3"));
        let again = Store::new(dir.path());
        assert_eq!(again.allocate(cidr, "pod-a").unwrap(), a);
        assert_eq!(again.allocations().unwrap().len(), 2);
        assert_eq!(
            fs::read_to_string(dir.path().join("10.42.0.2")).unwrap(),
            "pod-a"
        );
    }

    #[test]
    fn release_frees_the_address_and_round_robin_moves_on() {
        let dir = tempfile::tempdir().unwrap();
        let cidr = net("10.42.0.0/24");
        let store = Store::new(dir.path());
        let a = store.allocate(cidr, "a").unwrap();
        assert_eq!(store.release("a").unwrap(), vec![a]);
        assert!(store.release("a").unwrap().is_empty());
        assert!(store.allocations().unwrap().is_empty());
        // The released address is not reused immediately (host-local round-robin).
        assert_eq!(store.allocate(cidr, "b").unwrap(), ip("10.42.0.3"));
    }

    #[test]
    fn exhaustion_gives_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let cidr = net("10.42.0.0/29");
        let store = Store::new(dir.path());
        for i in 0..5 {
            store.allocate(cidr, &format!("pod-{i}")).unwrap();
        }
        let err = store.allocate(cidr, "one-too-many").unwrap_err();
        assert!(matches!(
            err,
            Error::Exhausted {
                used: 5,
                size: 5,
                ..
            }
        ));
        assert_eq!(
            err.to_string(),
            "no free address left in pod CIDR 10.42.0.0/29 (5 of 5 in use) for pod one-too-many"
        );
        // Existing pods still get theirs back, and a release makes room again.
        assert_eq!(store.allocate(cidr, "pod-0").unwrap(), ip("10.42.0.2"));
        store.release("pod-3").unwrap();
        assert_eq!(
            store.allocate(cidr, "one-too-many").unwrap(),
            ip("10.42.0.5")
        );
    }

    #[test]
    fn cidr_change_drops_allocations_outside_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let old = net("10.42.0.0/24");
        let new = net("10.42.7.0/24");
        store.allocate(old, "a").unwrap();
        store.allocate(old, "b").unwrap();
        let dropped = store.retain_in(new).unwrap();
        assert_eq!(dropped.len(), 2);
        assert!(store.allocations().unwrap().is_empty());
        // A pod asking again after the change gets an address in the new CIDR, and an old
        // allocation found at allocate time is dropped as well.
        store.allocate(old, "c").unwrap();
        let c = store.allocate(new, "c").unwrap();
        assert!(new.contains(&c));
        assert_eq!(store.allocations().unwrap().len(), 1);
    }

    #[test]
    fn leftover_temporary_files_are_ignored_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(".tmp-1-1"), "ghost").unwrap();
        fs::write(dir.path().join("not-an-ip"), "x").unwrap();
        let store = Store::new(dir.path());
        assert!(store.allocations().unwrap().is_empty());
        assert!(!dir.path().join(".tmp-1-1").exists());
    }

    proptest! {
        #[test]
        fn pick_returns_a_free_address_in_range_unless_full(
            prefix in 24u8..=30,
            taken_offsets in proptest::collection::btree_set(0u32..256, 0..256),
            last_offset in proptest::option::of(0u32..300),
        ) {
            let range = Range::new(Ipv4Net::new(ip("10.42.0.0"), prefix).unwrap()).unwrap();
            let base = u32::from(ip("10.42.0.0"));
            let taken: BTreeSet<Ipv4Addr> =
                taken_offsets.iter().map(|o| Ipv4Addr::from(base + o)).collect();
            let last = last_offset.map(|o| Ipv4Addr::from(base + o));
            let free = (0..range.size())
                .map(|i| Ipv4Addr::from(base + 2 + i))
                .filter(|a| !taken.contains(a))
                .count();
            match pick(&range, &taken, last) {
                Some(a) => {
                    prop_assert!(range.contains(a));
                    prop_assert!(!taken.contains(&a));
                }
                None => prop_assert_eq!(free, 0),
            }
        }
    }
}
