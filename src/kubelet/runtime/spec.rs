//! Pure translation of a `ContainerConfig` into an OCI runtime spec (`config.json`), the way
//! containerd's CRI plugin builds one for a Linux container.
//!
//! The spec is written as OCI JSON and parsed into `oci_spec::runtime::Spec`, so what is tested is
//! exactly what libcontainer reads from the bundle.

use oci_spec::runtime::{Capability, Spec};
use serde_json::{Value, json};

use super::{ContainerConfig, Error, MountKind};

/// containerd's default PATH, used when neither image nor pod sets one (libcontainer refuses to
/// start a process without PATH).
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The capability set containerd gives a non-privileged container (`oci.defaultUnixCaps`).
const DEFAULT_CAPS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Paths containerd masks and makes read-only in non-privileged containers.
const MASKED_PATHS: [&str; 10] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
];
const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Builds the OCI spec for `config`.
pub fn build(config: &ContainerConfig) -> Result<Spec, Error> {
    let invalid = |reason: String| Error::InvalidConfig {
        id: config.id.clone(),
        reason,
    };
    if config.args.is_empty() {
        return Err(invalid("no command given".into()));
    }
    if !config.cgroup_path.starts_with('/') {
        return Err(invalid(format!(
            "cgroup path {:?} is not absolute",
            config.cgroup_path
        )));
    }

    let mut env = config.env.clone();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, DEFAULT_PATH.to_string());
    }
    let cwd = if config.cwd.is_empty() {
        "/".to_string()
    } else {
        config.cwd.clone()
    };
    let caps = capabilities(config).map_err(invalid)?;

    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
    ];
    if let Some(netns) = &config.netns {
        namespaces.push(json!({"type": "network", "path": netns}));
    }

    let sys_options = if config.privileged {
        json!(["nosuid", "noexec", "nodev"])
    } else {
        json!(["nosuid", "noexec", "nodev", "ro"])
    };
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
               "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": sys_options}),
    ];
    for m in &config.mounts {
        let ro = if m.readonly { "ro" } else { "rw" };
        mounts.push(match &m.kind {
            MountKind::Bind => json!({
                "destination": m.destination, "type": "bind", "source": m.source,
                "options": ["rbind", "rprivate", ro],
            }),
            MountKind::Tmpfs { size_bytes } => {
                let mut options = vec![
                    "nosuid".to_string(),
                    "nodev".to_string(),
                    "mode=1777".to_string(),
                    ro.to_string(),
                ];
                if let Some(size) = size_bytes {
                    options.push(format!("size={size}"));
                }
                json!({"destination": m.destination, "type": "tmpfs", "source": "tmpfs",
                       "options": options})
            }
        });
    }

    let mut cpu = serde_json::Map::new();
    if let Some(shares) = config.resources.cpu_shares {
        cpu.insert("shares".into(), json!(shares));
    }
    if let Some(quota) = config.resources.cpu_quota {
        cpu.insert("quota".into(), json!(quota));
    }
    if let Some(period) = config.resources.cpu_period {
        cpu.insert("period".into(), json!(period));
    }
    let mut resources = json!({
        // Deny everything; libcgroups appends the default allow list (null, zero, tty, pts, …).
        "devices": [{"allow": config.privileged, "access": "rwm"}],
    });
    if !cpu.is_empty() {
        resources["cpu"] = Value::Object(cpu);
    }
    if let Some(limit) = config.resources.memory_limit {
        // Swap equal to the limit means no swap, as the kubelet asks for on cgroup v1.
        resources["memory"] = json!({"limit": limit, "swap": limit});
    }
    if let Some(limit) = config.resources.pids_limit {
        resources["pids"] = json!({"limit": limit});
    }

    let mut linux = json!({
        "namespaces": namespaces,
        "cgroupsPath": config.cgroup_path,
        "resources": resources,
    });
    if !config.privileged {
        linux["maskedPaths"] = json!(MASKED_PATHS);
        linux["readonlyPaths"] = json!(READONLY_PATHS);
    }

    let spec = json!({
        "ociVersion": "1.0.2",
        "process": {
            // With a tty libcontainer creates the terminal inside the container (on its own
            // /dev/pts, so `tty` names it) and hands the master to the shim over a console
            // socket, as `runc create --console-socket` does.
            "terminal": config.tty,
            "user": {
                "uid": config.uid,
                "gid": config.gid,
                "additionalGids": config.additional_gids,
            },
            "args": config.args,
            "env": env,
            "cwd": cwd,
            "capabilities": {
                "bounding": caps, "effective": caps, "permitted": caps,
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1_048_576, "soft": 1_048_576}],
            "noNewPrivileges": config.no_new_privileges,
        },
        "root": {"path": config.rootfs, "readonly": config.readonly_rootfs},
        "hostname": config.hostname,
        "mounts": mounts,
        "linux": linux,
    });
    serde_json::from_value(spec).map_err(|e| invalid(format!("spec does not parse: {e}")))
}

/// containerd's default set ± add/drop with `ALL` handled on both sides, in the `CAP_` form
/// (same rules as containerd's `oci.WithCapabilities` via CRI `AddCapabilities`/`DropCapabilities`:
/// drop `ALL` first clears the set, then adds apply; add `ALL` gives every capability).
fn capabilities(config: &ContainerConfig) -> Result<Vec<String>, String> {
    let all = all_capabilities();
    if config.privileged {
        return Ok(all);
    }
    let normalize = |name: &str| -> Result<String, String> {
        let upper = name.trim().to_ascii_uppercase();
        if upper == "ALL" {
            return Ok(upper);
        }
        let full = if upper.starts_with("CAP_") {
            upper
        } else {
            format!("CAP_{upper}")
        };
        if all.contains(&full) {
            Ok(full)
        } else {
            Err(format!("unknown capability {name:?}"))
        }
    };
    let mut caps: Vec<String> = DEFAULT_CAPS.iter().map(|c| c.to_string()).collect();
    for name in &config.capabilities_drop {
        match normalize(name)?.as_str() {
            "ALL" => caps.clear(),
            c => caps.retain(|have| have != c),
        }
    }
    for name in &config.capabilities_add {
        match normalize(name)?.as_str() {
            "ALL" => caps = all.clone(),
            c if !caps.iter().any(|have| have == c) => caps.push(c.to_string()),
            _ => {}
        }
    }
    Ok(caps)
}

/// Every capability oci-spec knows, in the `CAP_` form, sorted.
fn all_capabilities() -> Vec<String> {
    // oci-spec's `Capability` parses the names without prefix (strum SCREAMING_SNAKE_CASE); the
    // list below is the kernel's, and a name oci-spec does not know is skipped.
    const NAMES: [&str; 41] = [
        "AUDIT_CONTROL",
        "AUDIT_READ",
        "AUDIT_WRITE",
        "BLOCK_SUSPEND",
        "BPF",
        "CHECKPOINT_RESTORE",
        "CHOWN",
        "DAC_OVERRIDE",
        "DAC_READ_SEARCH",
        "FOWNER",
        "FSETID",
        "IPC_LOCK",
        "IPC_OWNER",
        "KILL",
        "LEASE",
        "LINUX_IMMUTABLE",
        "MAC_ADMIN",
        "MAC_OVERRIDE",
        "MKNOD",
        "NET_ADMIN",
        "NET_BIND_SERVICE",
        "NET_BROADCAST",
        "NET_RAW",
        "PERFMON",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_ADMIN",
        "SYS_BOOT",
        "SYS_CHROOT",
        "SYS_MODULE",
        "SYS_NICE",
        "SYS_PACCT",
        "SYS_PTRACE",
        "SYS_RAWIO",
        "SYS_RESOURCE",
        "SYS_TIME",
        "SYS_TTY_CONFIG",
        "SYSLOG",
        "WAKE_ALARM",
    ];
    let mut all: Vec<String> = NAMES
        .iter()
        .filter(|n| n.parse::<Capability>().is_ok())
        .map(|n| format!("CAP_{n}"))
        .collect();
    all.sort();
    all
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use oci_spec::runtime::{LinuxNamespaceType, Spec};

    use super::super::{Mount, Resources};
    use super::*;

    fn config() -> ContainerConfig {
        ContainerConfig {
            id: "c1".into(),
            labels: BTreeMap::new(),
            rootfs: PathBuf::from("/var/lib/rk3s/rootfs/c1"),
            readonly_rootfs: false,
            args: vec!["/bin/sh".into(), "-c".into(), "echo hi".into()],
            env: vec!["A=1".into()],
            cwd: String::new(),
            uid: 1000,
            gid: 1000,
            additional_gids: vec![10],
            hostname: "pod-a".into(),
            netns: Some(PathBuf::from("/run/rk3s/netns/uid1")),
            mounts: vec![
                Mount {
                    destination: "/etc/hosts".into(),
                    source: "/var/lib/rk3s/pods/uid1/etc-hosts".into(),
                    kind: MountKind::Bind,
                    readonly: true,
                },
                Mount {
                    destination: "/cache".into(),
                    source: PathBuf::new(),
                    kind: MountKind::Tmpfs {
                        size_bytes: Some(1 << 20),
                    },
                    readonly: false,
                },
            ],
            cgroup_path: "/kubepods/burstable/poduid1/c1".into(),
            resources: Resources {
                cpu_shares: Some(512),
                cpu_quota: Some(50_000),
                cpu_period: Some(100_000),
                memory_limit: Some(64 << 20),
                pids_limit: Some(100),
            },
            privileged: false,
            capabilities_add: vec!["NET_ADMIN".into()],
            capabilities_drop: vec!["CAP_MKNOD".into()],
            no_new_privileges: true,
            log_path: "/var/log/pods/x/c/0.log".into(),
            tty: false,
            stdin: false,
            stdin_once: false,
        }
    }

    fn caps(spec: &Spec) -> Vec<String> {
        let mut caps: Vec<String> = spec
            .process()
            .as_ref()
            .and_then(|p| p.capabilities().as_ref())
            .and_then(|c| c.bounding().as_ref())
            .map(|set| set.iter().map(|c| format!("CAP_{c}")).collect())
            .unwrap_or_default();
        caps.sort();
        caps
    }

    #[test]
    fn process_fields_follow_config() {
        let spec = build(&config()).unwrap();
        let process = spec.process().as_ref().unwrap();
        assert_eq!(process.args().as_ref().unwrap()[2], "echo hi");
        assert_eq!(process.cwd(), &PathBuf::from("/"));
        assert_eq!(process.user().uid(), 1000);
        assert_eq!(process.user().additional_gids().as_ref().unwrap(), &[10]);
        let env = process.env().as_ref().unwrap();
        assert_eq!(env[0], DEFAULT_PATH, "default PATH is prepended");
        assert_eq!(env[1], "A=1");
        assert_eq!(process.no_new_privileges(), Some(true));
        assert_eq!(spec.hostname().as_deref(), Some("pod-a"));
    }

    #[test]
    fn capabilities_are_containerd_defaults_plus_add_minus_drop() {
        let spec = build(&config()).unwrap();
        let got = caps(&spec);
        assert!(got.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(!got.contains(&"CAP_MKNOD".to_string()));
        assert!(got.contains(&"CAP_CHOWN".to_string()));
        assert_eq!(got.len(), 14);

        let mut c = config();
        c.capabilities_drop = vec!["ALL".into()];
        c.capabilities_add = vec!["kill".into()];
        assert_eq!(caps(&build(&c).unwrap()), vec!["CAP_KILL".to_string()]);

        c.capabilities_add = vec!["NOT_A_CAP".into()];
        assert!(matches!(build(&c), Err(Error::InvalidConfig { .. })));
    }

    #[test]
    fn privileged_gets_all_caps_rw_sys_and_no_masks() {
        let mut c = config();
        c.privileged = true;
        let spec = build(&c).unwrap();
        assert!(caps(&spec).len() >= 38);
        let linux = spec.linux().as_ref().unwrap();
        assert!(linux.masked_paths().is_none());
        let sys = spec
            .mounts()
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.destination() == &PathBuf::from("/sys"))
            .unwrap();
        assert!(!sys.options().as_ref().unwrap().contains(&"ro".to_string()));
    }

    #[test]
    fn namespaces_join_pod_netns_by_path_or_use_host_network() {
        let spec = build(&config()).unwrap();
        let ns = spec
            .linux()
            .as_ref()
            .unwrap()
            .namespaces()
            .as_ref()
            .unwrap();
        let net = ns
            .iter()
            .find(|n| n.typ() == LinuxNamespaceType::Network)
            .unwrap();
        assert_eq!(
            net.path().as_deref(),
            Some(std::path::Path::new("/run/rk3s/netns/uid1"))
        );
        assert_eq!(ns.len(), 5);

        let mut c = config();
        c.netns = None;
        let spec = build(&c).unwrap();
        let ns = spec
            .linux()
            .as_ref()
            .unwrap()
            .namespaces()
            .as_ref()
            .unwrap();
        assert!(ns.iter().all(|n| n.typ() != LinuxNamespaceType::Network));
    }

    #[test]
    fn resources_and_mounts_are_translated() {
        let spec = build(&config()).unwrap();
        let value = serde_json::to_value(&spec).unwrap();
        let res = &value["linux"]["resources"];
        assert_eq!(res["memory"]["limit"], 64 << 20);
        assert_eq!(res["cpu"]["shares"], 512);
        assert_eq!(res["cpu"]["quota"], 50_000);
        assert_eq!(res["pids"]["limit"], 100);
        assert_eq!(
            value["linux"]["cgroupsPath"],
            "/kubepods/burstable/poduid1/c1"
        );
        let mounts = value["mounts"].as_array().unwrap();
        let hosts = mounts
            .iter()
            .find(|m| m["destination"] == "/etc/hosts")
            .unwrap();
        assert_eq!(hosts["options"], json!(["rbind", "rprivate", "ro"]));
        let cache = mounts
            .iter()
            .find(|m| m["destination"] == "/cache")
            .unwrap();
        assert_eq!(cache["type"], "tmpfs");
        assert!(
            cache["options"]
                .as_array()
                .unwrap()
                .contains(&json!("size=1048576"))
        );
    }

    #[test]
    fn relative_cgroup_path_is_rejected() {
        let mut c = config();
        c.cgroup_path = "kubepods/c1".into();
        assert!(matches!(build(&c), Err(Error::InvalidConfig { .. })));
    }
}
