//! `rk3s killall`: stop everything rk3s runs on this machine and remove what it set up in the
//! kernel, keeping the data (k3s's `k3s-killall.sh`). Used before an uninstall or to get a
//! clean node: containers outlive the daemon by design (restart safety), so stopping the
//! service alone leaves them running.
//!
//! Order matters: the daemons first (a running kubelet would restart containers and a running
//! proxy would put the rules back), then the shims with every process below them (containers and
//! exec sessions), then the mounts they leave (rootfs overlays, volumes, network namespaces),
//! then the cgroups, then the network: both nftables tables, the pod bridge with its veths, the
//! cluster DNS interface or address.
//!
//! Every step runs even when an earlier one failed; each failure is one line on stderr and makes
//! the exit code 1. Running it again is harmless.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::data_dir::DataDir;
use crate::kubelet::stats::unescape_mount;
use crate::network::{nat, netlink};

/// What to clean: the places and names the server was started with.
#[derive(Debug, Clone)]
pub struct Plan {
    pub data_dir: DataDir,
    /// `/run/rk3s`: container state and pod network namespaces.
    pub run_dir: PathBuf,
    /// The cluster DNS address, on the `rk3s-dns` dummy link or on `lo`.
    pub cluster_dns: Ipv4Addr,
    /// How long the daemons get between SIGTERM and SIGKILL.
    pub grace: Duration,
}

/// The bridge and nftables tables rk3s owns (see `network`, `proxy`, `netpol`).
const BRIDGE: &str = "rk3s0";
const NFT_SCRIPT: &str = "add table inet rk3s\ndelete table inet rk3s\n\
                          add table ip rk3s-hostports\ndelete table ip rk3s-hostports\n\
                          add table ip rk3s-podnet\ndelete table ip rk3s-podnet\n";

/// What one run did (stdout) and what failed (stderr).
#[derive(Debug, Default)]
pub struct Outcome {
    pub done: Vec<String>,
    pub failed: Vec<String>,
}

impl Outcome {
    fn fail(&mut self, what: impl std::fmt::Display) {
        self.failed.push(what.to_string());
    }
}

/// One process as /proc shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proc {
    pub pid: i32,
    pub ppid: i32,
    pub zombie: bool,
    /// Whether its executable is an rk3s binary.
    pub rk3s: bool,
    /// `rk3s shim …` (a container's shim, or an exec session's).
    pub shim: bool,
}

/// The processes to stop: rk3s daemons (every rk3s process that is not a shim) and the shims
/// together with all their descendants, never `me`.
pub fn targets(procs: &[Proc], me: i32) -> (Vec<i32>, Vec<i32>) {
    let live = |p: &&Proc| !p.zombie && p.pid != me;
    let daemons = procs
        .iter()
        .filter(live)
        .filter(|p| p.rk3s && !p.shim)
        .map(|p| p.pid)
        .collect();
    let mut children: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for p in procs.iter().filter(live) {
        children.entry(p.ppid).or_default().push(p.pid);
    }
    let mut tree = BTreeSet::new();
    let mut todo: Vec<i32> = procs
        .iter()
        .filter(live)
        .filter(|p| p.rk3s && p.shim)
        .map(|p| p.pid)
        .collect();
    while let Some(pid) = todo.pop() {
        if tree.insert(pid) {
            todo.extend(children.get(&pid).into_iter().flatten());
        }
    }
    (daemons, tree.into_iter().collect())
}

/// The mount points to detach, deepest first: everything under `run_dir` (itself included) and
/// under `<data-dir>/agent` (rootfs overlays, volumes), but never the data dir itself, which
/// may be a disk of its own.
pub fn mounts_to_detach(mountinfo: &str, run_dir: &Path, agent_dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(unescape_mount(m)))
        .filter(|m| m.starts_with(run_dir) || (m.starts_with(agent_dir) && m != agent_dir))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    out.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    out
}

/// The cgroup hierarchies' mount points (v1 controllers and the v2 tree).
pub fn cgroup_mounts(mountinfo: &str) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let fs = right.split(' ').next()?;
            let mount_point = left.split(' ').nth(4)?;
            matches!(fs, "cgroup" | "cgroup2").then(|| PathBuf::from(unescape_mount(mount_point)))
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// Reads /proc: every process with its parent, state and whether it runs an rk3s binary.
fn read_procs() -> Vec<Proc> {
    let me = std::fs::metadata("/proc/self/exe").ok();
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid …`: comm may hold spaces and parentheses, so split after the
        // last ')'.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let zombie = matches!(fields.next(), Some("Z" | "X"));
        let ppid = fields.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
        let named = exe.as_ref().is_some_and(|e| {
            let name = e.file_name().map(|n| n.to_string_lossy().into_owned());
            matches!(name.as_deref(), Some("rk3s" | "rk3s (deleted)"))
        });
        let same_binary = || {
            let theirs = std::fs::metadata(format!("/proc/{pid}/exe")).ok();
            match (&me, theirs) {
                (Some(a), Some(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
                _ => false,
            }
        };
        let rk3s = named || same_binary();
        let shim = rk3s && {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            cmdline.split(|b| *b == 0).nth(1) == Some(b"shim".as_slice())
        };
        out.push(Proc {
            pid,
            ppid,
            zombie,
            rk3s,
            shim,
        });
    }
    out
}

/// Whether `pid` still runs (gone or a zombie waiting for its parent counts as stopped).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| !r.trim_start().starts_with(['Z', 'X']))
        })
        .unwrap_or(false)
}

/// Waits until none of `pids` runs or `timeout` passes; returns those still running.
fn wait_gone(pids: &[i32], timeout: Duration) -> Vec<i32> {
    let deadline = Instant::now() + timeout;
    loop {
        let left: Vec<i32> = pids.iter().copied().filter(|p| alive(*p)).collect();
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn signal(pids: &[i32], sig: Signal, out: &mut Outcome) {
    for &pid in pids {
        match kill(Pid::from_raw(pid), sig) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
            Err(e) => out.fail(format!("sending {sig} to process {pid}: {e}")),
        }
    }
}

fn stop_processes(plan: &Plan, out: &mut Outcome) {
    let me = std::process::id() as i32;
    let (daemons, _) = targets(&read_procs(), me);
    if !daemons.is_empty() {
        signal(&daemons, Signal::SIGTERM, out);
        let left = wait_gone(&daemons, plan.grace);
        signal(&left, Signal::SIGKILL, out);
        let stuck = wait_gone(&left, Duration::from_secs(5));
        for pid in stuck {
            out.fail(format!("rk3s process {pid} did not stop"));
        }
        out.done
            .push(format!("stopped {} rk3s process(es)", daemons.len()));
    }
    // Read again: a daemon that was starting a container a moment ago may have left a new shim.
    let (_, tree) = targets(&read_procs(), me);
    if !tree.is_empty() {
        signal(&tree, Signal::SIGKILL, out);
        let stuck = wait_gone(&tree, Duration::from_secs(10));
        for pid in &stuck {
            out.fail(format!("container process {pid} did not stop"));
        }
        out.done.push(format!(
            "killed {} shim and container process(es)",
            tree.len() - stuck.len()
        ));
    }
}

fn detach_mounts(plan: &Plan, out: &mut Outcome) {
    let agent = plan.data_dir.agent();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mounts = mounts_to_detach(&mountinfo, &plan.run_dir, &agent);
    let mut n = 0;
    for m in &mounts {
        match nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH) {
            Ok(()) => n += 1,
            // Already gone with a parent detached before it.
            Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => {}
            Err(e) => out.fail(format!("unmounting {}: {e}", m.display())),
        }
    }
    if n > 0 {
        out.done.push(format!("unmounted {n} mount(s)"));
    }
    // The container state and namespace files describe processes that no longer exist; only
    // remove them when nothing is mounted below any more (a mount's content is not ours).
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let still = mounts_to_detach(&mountinfo, &plan.run_dir, &agent);
    if still.iter().any(|m| m.starts_with(&plan.run_dir)) {
        out.fail(format!(
            "{} still has mounts; not removed",
            plan.run_dir.display()
        ));
    } else if plan.run_dir.exists() {
        match std::fs::remove_dir_all(&plan.run_dir) {
            Ok(()) => out.done.push(format!("removed {}", plan.run_dir.display())),
            Err(e) => out.fail(format!("removing {}: {e}", plan.run_dir.display())),
        }
    }
}

/// Removes `dir` and every cgroup below it, deepest first; returns how many were removed.
fn remove_cgroup_tree(dir: &Path, out: &mut Outcome) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            n += remove_cgroup_tree(&entry.path(), out);
        }
    }
    match std::fs::remove_dir(dir) {
        Ok(()) => n + 1,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => n,
        Err(e) => {
            out.fail(format!("removing cgroup {}: {e}", dir.display()));
            n
        }
    }
}

fn remove_cgroups(out: &mut Outcome) {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut n = 0;
    for root in cgroup_mounts(&mountinfo) {
        let pods = root.join("kubepods");
        if pods.is_dir() {
            n += remove_cgroup_tree(&pods, out);
        }
    }
    if n > 0 {
        out.done.push(format!("removed {n} pod cgroup(s)"));
    }
}

async fn remove_network(plan: &Plan, out: &mut Outcome) {
    let nft = tokio::task::spawn_blocking(|| nat::apply("rk3s", NFT_SCRIPT)).await;
    match nft {
        Ok(Ok(())) => out
            .done
            .push("removed nftables tables inet rk3s, ip rk3s-hostports and ip rk3s-podnet".into()),
        Ok(Err(e)) => out.fail(format!("removing the nftables tables: {e}")),
        Err(e) => out.fail(format!("removing the nftables tables: {e}")),
    }
    let host = match netlink::Host::connect() {
        Ok(h) => h,
        Err(e) => return out.fail(format!("netlink: {e}")),
    };
    match host.ports_of(BRIDGE).await {
        Ok(ports) => {
            for port in ports {
                if let Err(e) = host.delete(&port).await {
                    out.fail(format!("deleting link {port}: {e}"));
                }
            }
        }
        Err(e) => out.fail(format!("listing the links of {BRIDGE}: {e}")),
    }
    for link in [BRIDGE, crate::dns::INTERFACE] {
        match host.delete(link).await {
            Ok(true) => out.done.push(format!("deleted link {link}")),
            Ok(false) => {}
            Err(e) => out.fail(format!("deleting link {link}: {e}")),
        }
    }
    match host.delete_address("lo", plan.cluster_dns, 32).await {
        Ok(true) => out
            .done
            .push(format!("removed {}/32 from lo", plan.cluster_dns)),
        Ok(false) => {}
        Err(e) => out.fail(format!("removing {}/32 from lo: {e}", plan.cluster_dns)),
    }
}

/// Runs every step. Needs root; blocks for up to the grace period plus a few seconds.
pub async fn run(plan: &Plan) -> Outcome {
    let p = plan.clone();
    let mut out = tokio::task::spawn_blocking(move || {
        let mut o = Outcome::default();
        stop_processes(&p, &mut o);
        detach_mounts(&p, &mut o);
        remove_cgroups(&mut o);
        o
    })
    .await
    .unwrap_or_else(|e| {
        let mut o = Outcome::default();
        o.fail(format!("stopping processes: {e}"));
        o
    });
    remove_network(plan, &mut out).await;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pid: i32, ppid: i32, rk3s: bool, shim: bool) -> Proc {
        Proc {
            pid,
            ppid,
            zombie: false,
            rk3s,
            shim,
        }
    }

    #[test]
    fn daemons_and_whole_shim_trees_are_targets_but_not_killall_itself() {
        let procs = vec![
            p(1, 0, false, false),
            p(10, 1, true, false),   // rk3s server
            p(11, 1, true, true),    // shim
            p(12, 11, false, false), // container init
            p(13, 12, false, false), // a process in the container
            p(14, 1, true, true),    // exec shim
            p(15, 14, false, false),
            p(20, 1, false, false), // unrelated
            p(21, 20, true, false), // killall itself
            Proc {
                zombie: true,
                ..p(30, 1, true, false)
            },
        ];
        let (daemons, tree) = targets(&procs, 21);
        assert_eq!(daemons, vec![10]);
        assert_eq!(tree, vec![11, 12, 13, 14, 15]);
    }

    const MOUNTINFO: &str = "\
22 1 0:21 / /run rw - tmpfs tmpfs rw
30 22 0:40 / /run/rk3s/netns rw shared:5 - tmpfs tmpfs rw
31 30 0:4 net:[4026532] /run/rk3s/netns/uid1 rw shared:5 - nsfs nsfs rw
40 1 8:1 / /var/lib/rk3s rw - ext4 /dev/sdb rw
41 40 0:50 / /var/lib/rk3s/agent/containers/c1/rootfs rw - overlay overlay rw,lowerdir=a
42 40 0:51 / /var/lib/rk3s/agent/pods/u1/volumes/my\\040vol rw - tmpfs tmpfs rw
43 1 0:52 / /var/lib/rk3s-other/agent/x rw - tmpfs tmpfs rw
50 1 0:26 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
51 1 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
";

    #[test]
    fn mounts_below_run_and_agent_dirs_deepest_first_not_the_data_dir() {
        let m = mounts_to_detach(
            MOUNTINFO,
            Path::new("/run/rk3s"),
            Path::new("/var/lib/rk3s/agent"),
        );
        assert_eq!(
            m[0],
            PathBuf::from("/var/lib/rk3s/agent/pods/u1/volumes/my vol")
        );
        assert_eq!(m.len(), 4, "{m:?}");
        assert!(m.contains(&PathBuf::from("/run/rk3s/netns/uid1")));
        assert_eq!(m.last(), Some(&PathBuf::from("/run/rk3s/netns")));
        assert!(!m.contains(&PathBuf::from("/var/lib/rk3s")));
        assert!(!m.iter().any(|x| x.starts_with("/var/lib/rk3s-other")));
    }

    #[test]
    fn cgroup_hierarchies_from_mountinfo() {
        assert_eq!(
            cgroup_mounts(MOUNTINFO),
            vec![
                PathBuf::from("/sys/fs/cgroup/memory"),
                PathBuf::from("/sys/fs/cgroup/unified")
            ]
        );
    }
}
