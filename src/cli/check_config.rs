//! `rk3s check-config`: does this kernel have what rk3s needs?
//!
//! [`Machine::read`] is the only part that looks at /proc, /sys and PATH; [`report`] turns what
//! it found into one `OK`/`MISSING` line per feature, each missing one with its fix.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// What the machine shows, as raw as possible so the report can be tested with fakes.
#[derive(Debug, Default, Clone)]
pub struct Machine {
    /// Namespace kinds under /proc/self/ns.
    pub namespaces: BTreeSet<String>,
    /// /proc/cgroups (v1 controllers with their `enabled` column).
    pub proc_cgroups: String,
    /// /sys/fs/cgroup/cgroup.controllers when the unified (v2) hierarchy is mounted there.
    pub v2_controllers: Option<String>,
    /// Whether a v2 hierarchy is mounted anywhere (hybrid hosts mount it at /sys/fs/cgroup/unified).
    pub v2_mounted: bool,
    /// /proc/filesystems.
    pub filesystems: String,
    /// Loaded modules (/proc/modules) and modules under /sys/module.
    pub loaded_modules: BTreeSet<String>,
    /// modules.dep and modules.builtin of the running kernel: what `modprobe` could load.
    pub module_index: String,
    pub nft_binary: Option<PathBuf>,
    /// `nft list tables` succeeded: nf_tables works even when built in without a module entry.
    pub nft_works: bool,
    /// /proc/sys/net/ipv4/ip_forward.
    pub ip_forward: Option<String>,
    /// /proc/sys/net/bridge exists (br_netfilter loaded).
    pub bridge_sysctls: bool,
}

fn read(path: impl AsRef<Path>) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

impl Machine {
    pub fn read() -> Machine {
        let namespaces = std::fs::read_dir("/proc/self/ns")
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        let mut loaded_modules: BTreeSet<String> = read("/proc/modules")
            .lines()
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .collect();
        if let Ok(d) = std::fs::read_dir("/sys/module") {
            loaded_modules.extend(
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned()),
            );
        }
        let release = read("/proc/sys/kernel/osrelease").trim().to_string();
        let modules = Path::new("/lib/modules").join(&release);
        let module_index =
            read(modules.join("modules.dep")) + &read(modules.join("modules.builtin"));
        let mounts = read("/proc/self/mounts");
        let v2_mounted = mounts
            .lines()
            .any(|l| l.split_whitespace().nth(2) == Some("cgroup2"));
        let nft_binary = std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
                .map(|p| p.join("nft"))
                .find(|p| p.is_file())
        });
        let nft_works = nft_binary.as_ref().is_some_and(|nft| {
            std::process::Command::new(nft)
                .args(["list", "tables"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
        Machine {
            namespaces,
            proc_cgroups: read("/proc/cgroups"),
            v2_controllers: std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers").ok(),
            v2_mounted,
            filesystems: read("/proc/filesystems"),
            loaded_modules,
            module_index,
            nft_binary,
            nft_works,
            ip_forward: std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").ok(),
            bridge_sysctls: Path::new("/proc/sys/net/bridge").is_dir(),
        }
    }

    /// Loaded, or loadable with modprobe (built in or a module file of this kernel).
    fn has_module(&self, name: &str) -> bool {
        if self.loaded_modules.contains(name) {
            return true;
        }
        let alt = name.replace('_', "-");
        self.module_index.lines().any(|l| {
            let path = l.split(':').next().unwrap_or_default();
            let file = path.rsplit('/').next().unwrap_or_default();
            let stem = file.split(".ko").next().unwrap_or_default();
            stem == name || stem == alt
        })
    }

    fn v1_controller_enabled(&self, name: &str) -> bool {
        self.proc_cgroups.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() >= 4 && f[0] == name && f[3] == "1"
        })
    }
}

struct Check {
    name: String,
    ok: bool,
    required: bool,
    fix: String,
}

/// The report lines and whether every required feature is there.
pub fn report(m: &Machine) -> (Vec<String>, bool) {
    let mut checks = Vec::new();
    let mut add = |name: &str, ok: bool, required: bool, fix: &str| {
        checks.push(Check {
            name: name.to_string(),
            ok,
            required,
            fix: fix.to_string(),
        })
    };
    for (ns, required, config) in [
        ("net", true, "CONFIG_NET_NS"),
        ("pid", true, "CONFIG_PID_NS"),
        ("ipc", true, "CONFIG_IPC_NS"),
        ("uts", true, "CONFIG_UTS_NS"),
        ("mnt", true, "CONFIG_NAMESPACES"),
        ("user", false, "CONFIG_USER_NS"),
        ("cgroup", false, "CONFIG_CGROUPS"),
    ] {
        add(
            &format!("namespace {ns}"),
            m.namespaces.contains(ns),
            required,
            &format!("enable {config} in the kernel"),
        );
    }
    let unified = m.v2_controllers.is_some();
    let v1 = !m
        .proc_cgroups
        .lines()
        .filter(|l| !l.starts_with('#'))
        .all(|l| l.split_whitespace().nth(1) == Some("0"));
    let mode = match (unified, v1 || !m.proc_cgroups.is_empty(), m.v2_mounted) {
        (true, _, _) => "v2",
        (false, true, true) => "hybrid",
        (false, true, false) => "v1",
        (false, false, _) => "none",
    };
    add(
        &format!("cgroups (mode {mode})"),
        mode != "none",
        true,
        "mount cgroup2 on /sys/fs/cgroup (or the v1 hierarchies)",
    );
    for (ctrl, required) in [
        ("cpu", true),
        ("cpuset", false),
        ("memory", true),
        ("pids", true),
        ("devices", false),
        ("freezer", false),
    ] {
        let ok = match &m.v2_controllers {
            // cgroup v2 has no devices or freezer controller: eBPF and cgroup.freeze replace them.
            Some(c) => {
                matches!(ctrl, "devices" | "freezer") || c.split_whitespace().any(|x| x == ctrl)
            }
            None => m.v1_controller_enabled(ctrl),
        };
        let fix = if ctrl == "memory" {
            "enable the memory controller (on a Raspberry Pi add cgroup_enable=memory cgroup_memory=1 to cmdline.txt)"
        } else {
            "enable the controller in the kernel (CONFIG_CGROUP_*) and on the kernel command line"
        };
        add(&format!("cgroup controller {ctrl}"), ok, required, fix);
    }
    let overlay = m
        .filesystems
        .lines()
        .any(|l| l.split_whitespace().last() == Some("overlay"))
        || m.has_module("overlay");
    add(
        "overlayfs",
        overlay,
        true,
        "modprobe overlay (CONFIG_OVERLAY_FS)",
    );
    add(
        "nft binary",
        m.nft_binary.is_some(),
        true,
        "install nftables (apt-get install nftables)",
    );
    add(
        "nf_tables kernel support",
        m.nft_works || m.has_module("nf_tables"),
        true,
        "modprobe nf_tables (CONFIG_NF_TABLES)",
    );
    add(
        "br_netfilter",
        m.bridge_sysctls || m.has_module("br_netfilter"),
        true,
        "modprobe br_netfilter (CONFIG_BRIDGE_NETFILTER)",
    );
    add(
        "vxlan",
        m.has_module("vxlan"),
        false,
        "modprobe vxlan (CONFIG_VXLAN), needed for more than one node",
    );
    add(
        "ip_forward",
        m.ip_forward.as_deref().map(str::trim) == Some("1"),
        true,
        "sysctl -w net.ipv4.ip_forward=1 (and persist it in /etc/sysctl.d)",
    );
    let mut ok = true;
    let lines = checks
        .into_iter()
        .map(|c| {
            if c.ok {
                format!("{}: OK", c.name)
            } else {
                ok &= !c.required;
                let optional = if c.required { "" } else { " (optional)" };
                format!("{}: MISSING{optional}: {}", c.name, c.fix)
            }
        })
        .collect();
    (lines, ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> Machine {
        Machine {
            namespaces: ["net", "pid", "ipc", "uts", "mnt", "user", "cgroup"]
                .map(String::from)
                .into(),
            proc_cgroups: String::new(),
            v2_controllers: Some("cpuset cpu io memory hugetlb pids rdma misc".into()),
            v2_mounted: true,
            filesystems: "nodev\toverlay\n".into(),
            loaded_modules: ["nf_tables", "br_netfilter"].map(String::from).into(),
            module_index:
                "kernel/drivers/net/vxlan/vxlan.ko.xz: kernel/net/ipv6/ip6_udp_tunnel.ko.xz\n"
                    .into(),
            nft_binary: Some("/usr/sbin/nft".into()),
            nft_works: true,
            ip_forward: Some("1\n".into()),
            bridge_sysctls: true,
        }
    }

    #[test]
    fn a_complete_v2_machine_passes() {
        let (lines, ok) = report(&full());
        assert!(ok, "{lines:#?}");
        assert!(lines.iter().all(|l| l.ends_with(": OK")), "{lines:#?}");
        assert!(lines.contains(&"cgroups (mode v2): OK".to_string()));
    }

    #[test]
    fn missing_features_name_their_fix() {
        let mut m = full();
        m.filesystems.clear();
        m.ip_forward = Some("0".into());
        m.module_index.clear();
        let (lines, ok) = report(&m);
        assert!(!ok);
        assert!(
            lines.contains(&"overlayfs: MISSING: modprobe overlay (CONFIG_OVERLAY_FS)".to_string())
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("ip_forward: MISSING: sysctl -w"))
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("vxlan: MISSING (optional)"))
        );
    }

    #[test]
    fn hybrid_v1_controllers_are_read_from_proc_cgroups() {
        let mut m = full();
        m.v2_controllers = None;
        m.proc_cgroups = "#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpu\t3\t1\t1\nmemory\t4\t1\t0\npids\t5\t1\t1\n".into();
        let (lines, ok) = report(&m);
        assert!(!ok);
        assert!(lines.contains(&"cgroups (mode hybrid): OK".to_string()));
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("cgroup controller memory: MISSING"))
        );
        assert!(lines.contains(&"cgroup controller cpu: OK".to_string()));
    }
}
