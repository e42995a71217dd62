//! The Node object of this machine: registration, the heartbeat Lease and the status.
//!
//! Same protocol as the upstream kubelet: the Node is created (or, if it exists, its labels
//! and taints reconciled), the Lease `kube-node-lease/<node>` is renewed every 10 s with a
//! 40 s duration, and the status (capacity, allocatable, conditions, addresses, nodeInfo,
//! images) is patched when it changes and at least every minute, so `lastHeartbeatTime` stays
//! fresh for tools that read it.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use super::Config;

/// The namespace of node Leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
/// Upstream's `nodeLeaseDurationSeconds`.
const LEASE_DURATION_SECONDS: i32 = 40;
/// Upstream's lease renew interval (a quarter of the duration).
pub const LEASE_RENEW: Duration = Duration::from_secs(10);
/// How often the status is compared with the last one written.
pub const STATUS_CHECK: Duration = Duration::from_secs(10);
/// The status is written at least this often even when nothing changed.
pub const STATUS_REPORT: Duration = Duration::from_secs(60);
/// Upstream's default `maxPods`.
pub const MAX_PODS: u32 = 110;
/// The field manager of the kubelet's writes.
pub const MANAGER: &str = "rk3s-kubelet";

/// What this machine has, read from the kernel: the inputs of capacity and allocatable.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Machine {
    pub cpus: u32,
    pub memory_bytes: u64,
    pub storage_bytes: u64,
    pub kernel: String,
    pub os_image: String,
    pub machine_id: String,
    pub system_uuid: String,
    pub boot_id: String,
    /// `kubernetes.io/arch`: amd64, arm64, arm.
    pub arch: &'static str,
}

impl Machine {
    /// Reads the machine; `storage` is where container data lives (the data dir).
    pub fn read(storage: &Path) -> Machine {
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .map(|s| s.trim().to_string())
                .unwrap_or_default()
        };
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1);
        let memory_bytes = meminfo_total(&read("/proc/meminfo")).unwrap_or(0);
        let storage_bytes = nix::sys::statvfs::statvfs(storage)
            .map(|s| s.blocks() * s.fragment_size())
            .unwrap_or(0);
        let os_image = os_release_name(&read("/etc/os-release"));
        Machine {
            cpus,
            memory_bytes,
            storage_bytes,
            kernel: nix::sys::utsname::uname()
                .map(|u| u.release().to_string_lossy().into_owned())
                .unwrap_or_default(),
            os_image,
            machine_id: read("/etc/machine-id"),
            system_uuid: read("/sys/class/dmi/id/product_uuid"),
            boot_id: read("/proc/sys/kernel/random/boot_id"),
            arch: go_arch(std::env::consts::ARCH),
        }
    }
}

/// Rust's architecture names in Go's (the vocabulary of `kubernetes.io/arch` and image indexes).
pub fn go_arch(rust: &str) -> &'static str {
    match rust {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "x86" => "386",
        "riscv64" => "riscv64",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        _ => "unknown",
    }
}

/// Allocatable memory: what `resourceFieldRef: limits.memory` resolves to for a container
/// without a memory limit (upstream uses the node's allocatable).
pub fn allocatable_memory(eviction: &super::eviction::Config) -> u64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let total = meminfo_total(&meminfo).unwrap_or(0);
    let reserved = eviction.reserved_for(&Machine {
        memory_bytes: total,
        storage_bytes: 0,
        ..Machine::default()
    });
    total.saturating_sub(reserved.memory_bytes)
}

/// `MemTotal` of /proc/meminfo in bytes.
fn meminfo_total(meminfo: &str) -> Option<u64> {
    meminfo_field(meminfo, "MemTotal")
}

/// A `kB` field of /proc/meminfo in bytes.
pub fn meminfo_field(meminfo: &str, field: &str) -> Option<u64> {
    meminfo.lines().find_map(|l| {
        let rest = l.strip_prefix(field)?.strip_prefix(':')?;
        let kb: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kb * 1024)
    })
}

/// `PRETTY_NAME` of /etc/os-release, as the upstream kubelet reports `osImage`.
fn os_release_name(os_release: &str) -> String {
    os_release
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "Linux".into())
}

pub use super::eviction::Reserved;

/// The pressure conditions the eviction manager found (all false on a healthy node).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Pressure {
    pub memory: bool,
    pub disk: bool,
    pub pid: bool,
}

/// The Node object this kubelet registers: metadata and spec (status is written separately).
pub fn desired_node(config: &Config, machine: &Machine) -> Node {
    let mut labels: BTreeMap<String, String> = BTreeMap::new();
    labels.insert("kubernetes.io/hostname".into(), config.node_name.clone());
    labels.insert("kubernetes.io/os".into(), "linux".into());
    labels.insert("kubernetes.io/arch".into(), machine.arch.into());
    labels.insert("beta.kubernetes.io/os".into(), "linux".into());
    labels.insert("beta.kubernetes.io/arch".into(), machine.arch.into());
    // k3s labels its nodes with the distribution as the instance type.
    labels.insert("node.kubernetes.io/instance-type".into(), "rk3s".into());
    if config.control_plane {
        labels.insert(
            "node-role.kubernetes.io/control-plane".into(),
            "true".into(),
        );
    }
    labels.extend(config.labels.clone());
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": config.node_name,
            "labels": labels,
            "annotations": {
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
            },
        },
        "spec": {
            "taints": if config.taints.is_empty() { Value::Null } else { serde_json::to_value(&config.taints).unwrap_or(Value::Null) },
        },
    }))
    .unwrap_or_default()
}

/// Capacity and allocatable as upstream reports them: allocatable is capacity less the
/// reservations and the hard eviction thresholds.
pub fn resources(machine: &Machine, reserved: &Reserved, max_pods: u32) -> (Value, Value) {
    let capacity = json!({
        "cpu": machine.cpus.to_string(),
        "memory": format!("{}Ki", machine.memory_bytes / 1024),
        "pods": max_pods.to_string(),
        "ephemeral-storage": format!("{}Ki", machine.storage_bytes / 1024),
        "hugepages-2Mi": "0",
    });
    let memory = machine.memory_bytes.saturating_sub(reserved.memory_bytes);
    let storage = machine.storage_bytes.saturating_sub(reserved.storage_bytes);
    let cpu_milli = (u64::from(machine.cpus) * 1000).saturating_sub(reserved.cpu_milli);
    let cpu = if cpu_milli % 1000 == 0 {
        (cpu_milli / 1000).to_string()
    } else {
        format!("{cpu_milli}m")
    };
    let allocatable = json!({
        "cpu": cpu,
        // Reservations beyond capacity clamp to zero, which upstream prints as "0".
        "memory": if memory < 1024 { "0".to_string() } else { format!("{}Ki", memory / 1024) },
        "pods": max_pods.to_string(),
        // Upstream reports allocatable ephemeral storage in bytes.
        "ephemeral-storage": storage.to_string(),
        "hugepages-2Mi": "0",
    });
    (capacity, allocatable)
}

/// The four node conditions with upstream's reasons and messages. `since` keeps
/// `lastTransitionTime` of conditions whose status did not change.
pub fn conditions(
    pressure: Pressure,
    ready: Result<(), String>,
    previous: &[NodeCondition],
    now: Timestamp,
) -> Vec<NodeCondition> {
    let make = |kind: &str, status: bool, reason: &str, message: &str| {
        let status = if status { "True" } else { "False" };
        let transition = previous
            .iter()
            .find(|c| c.type_ == kind && c.status == status)
            .and_then(|c| c.last_transition_time.clone())
            .unwrap_or(Time(now));
        NodeCondition {
            type_: kind.into(),
            status: status.into(),
            reason: Some(reason.into()),
            message: Some(message.into()),
            last_heartbeat_time: Some(Time(now)),
            last_transition_time: Some(transition),
        }
    };
    let (reason, message) = match &ready {
        Ok(()) => (
            "KubeletReady",
            "kubelet is posting ready status".to_string(),
        ),
        Err(why) => ("KubeletNotReady", why.clone()),
    };
    vec![
        if pressure.memory {
            make(
                "MemoryPressure",
                true,
                "KubeletHasInsufficientMemory",
                "kubelet has insufficient memory available",
            )
        } else {
            make(
                "MemoryPressure",
                false,
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            )
        },
        if pressure.disk {
            make(
                "DiskPressure",
                true,
                "KubeletHasDiskPressure",
                "kubelet has disk pressure",
            )
        } else {
            make(
                "DiskPressure",
                false,
                "KubeletHasNoDiskPressure",
                "kubelet has no disk pressure",
            )
        },
        if pressure.pid {
            make(
                "PIDPressure",
                true,
                "KubeletHasInsufficientPID",
                "kubelet has insufficient PID available",
            )
        } else {
            make(
                "PIDPressure",
                false,
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
            )
        },
        make("Ready", ready.is_ok(), reason, &message),
    ]
}

/// The whole `status` this kubelet writes, without heartbeat times (those are stamped by
/// [`conditions`]), so two reports can be compared to decide whether anything changed.
pub struct StatusInput<'a> {
    pub config: &'a Config,
    pub machine: &'a Machine,
    pub reserved: &'a Reserved,
    pub pressure: Pressure,
    pub ready: Result<(), String>,
    /// `(names, size bytes)` of the images present.
    pub images: Vec<(Vec<String>, u64)>,
}

/// The status object (capacity, allocatable, addresses, nodeInfo, images, conditions).
pub fn desired_status(input: &StatusInput, previous: &[NodeCondition], now: Timestamp) -> Value {
    let (capacity, allocatable) = resources(
        input.machine,
        input.reserved,
        input.config.eviction.max_pods,
    );
    let m = input.machine;
    let images: Vec<Value> = input
        .images
        .iter()
        .map(|(names, size)| json!({"names": names, "sizeBytes": size}))
        .collect();
    json!({
        "capacity": capacity,
        "allocatable": allocatable,
        "addresses": [
            {"type": "InternalIP", "address": input.config.node_ip.to_string()},
            {"type": "Hostname", "address": input.config.node_name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {
            "machineID": m.machine_id,
            "systemUUID": m.system_uuid,
            "bootID": m.boot_id,
            "kernelVersion": m.kernel,
            "osImage": m.os_image,
            "containerRuntimeVersion": format!("rk3s://{}", env!("CARGO_PKG_VERSION")),
            "kubeletVersion": input.config.version,
            "kubeProxyVersion": input.config.version,
            "operatingSystem": "linux",
            "architecture": m.arch,
        },
        "images": images,
        "conditions": conditions(input.pressure, input.ready.clone(), previous, now),
    })
}

/// Status with the heartbeat and transition times removed: what "changed" means.
fn comparable(mut status: Value) -> Value {
    if let Some(cs) = status["conditions"].as_array_mut() {
        for c in cs {
            if let Some(o) = c.as_object_mut() {
                o.remove("lastHeartbeatTime");
                o.remove("lastTransitionTime");
            }
        }
    }
    status
}

/// Creates the Node, or reconciles the labels and taints this kubelet owns on an existing one
/// (upstream re-registration: a Node that survived a restart is adopted, not recreated).
pub async fn register(
    client: &kube::Client,
    config: &Config,
    machine: &Machine,
) -> kube::Result<Node> {
    let nodes: Api<Node> = Api::all(client.clone());
    let desired = desired_node(config, machine);
    match nodes.create(&PostParams::default(), &desired).await {
        Ok(n) => Ok(n),
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let patch = json!({
                "metadata": {"labels": desired.metadata.labels, "annotations": desired.metadata.annotations},
            });
            let mut node = nodes
                .patch(
                    &config.node_name,
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await?;
            // Taints given on the command line are added when missing; others stay (kubectl taint).
            let mut taints: Vec<Taint> = node
                .spec
                .as_ref()
                .and_then(|s| s.taints.clone())
                .unwrap_or_default();
            let before = taints.len();
            for t in &config.taints {
                if !taints
                    .iter()
                    .any(|x| x.key == t.key && x.effect == t.effect)
                {
                    taints.push(t.clone());
                }
            }
            if taints.len() != before {
                node = nodes
                    .patch(
                        &config.node_name,
                        &PatchParams::default(),
                        &Patch::Merge(&json!({"spec": {"taints": taints}})),
                    )
                    .await?;
            }
            Ok(node)
        }
        Err(e) => Err(e),
    }
}

/// Renews (or creates) this node's Lease.
pub async fn renew_lease(client: &kube::Client, node: &Node) -> kube::Result<()> {
    let name = node.metadata.name.clone().unwrap_or_default();
    let leases: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let now = MicroTime(Timestamp::now());
    let spec = json!({
        "holderIdentity": name,
        "leaseDurationSeconds": LEASE_DURATION_SECONDS,
        "renewTime": now,
    });
    match leases
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": spec})),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => {
            let lease: Lease = serde_json::from_value(json!({
                "metadata": {
                    "name": name,
                    "namespace": LEASE_NAMESPACE,
                    "ownerReferences": [{
                        "apiVersion": "v1", "kind": "Node", "name": name,
                        "uid": node.metadata.uid,
                    }],
                },
                "spec": spec,
            }))
            .unwrap_or_default();
            leases
                .create(&PostParams::default(), &lease)
                .await
                .map(|_| ())
        }
        Err(e) => Err(e),
    }
}

/// Keeps the node's status current: writes it when it changed (checked every
/// [`STATUS_CHECK`]) and at least every [`STATUS_REPORT`].
pub struct StatusWriter {
    last: Option<(Value, Instant)>,
}

impl Default for StatusWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl StatusWriter {
    pub fn new() -> StatusWriter {
        StatusWriter { last: None }
    }

    /// Forces the next [`StatusWriter::sync`] to write.
    pub fn invalidate(&mut self) {
        self.last = None;
    }

    /// Writes the status if it changed or is due; returns whether it wrote.
    pub async fn sync(
        &mut self,
        client: &kube::Client,
        name: &str,
        input: &StatusInput<'_>,
    ) -> kube::Result<bool> {
        let nodes: Api<Node> = Api::all(client.clone());
        let now = Timestamp::now();
        let previous: Vec<NodeCondition> = match &self.last {
            Some((v, _)) => serde_json::from_value(v["conditions"].clone()).unwrap_or_default(),
            None => nodes
                .get_status(name)
                .await?
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default(),
        };
        let status = desired_status(input, &previous, now);
        let due = match &self.last {
            None => true,
            Some((last, at)) => {
                at.elapsed() >= STATUS_REPORT
                    || comparable(last.clone()) != comparable(status.clone())
            }
        };
        if !due {
            return Ok(false);
        }
        nodes
            .patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(&json!({"status": status})),
            )
            .await?;
        self.last = Some((status, Instant::now()));
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine() -> Machine {
        Machine {
            cpus: 2,
            memory_bytes: 4 << 30,
            storage_bytes: 100 << 30,
            kernel: "6.1.0".into(),
            os_image: "Debian GNU/Linux 12 (bookworm)".into(),
            machine_id: "m".into(),
            system_uuid: "u".into(),
            boot_id: "b".into(),
            arch: "amd64",
        }
    }

    #[test]
    fn meminfo_and_os_release_are_parsed() {
        let mi = "MemTotal:        8041128 kB\nMemFree:  100 kB\nMemAvailable:    5000 kB\n";
        assert_eq!(meminfo_total(mi), Some(8041128 * 1024));
        assert_eq!(meminfo_field(mi, "MemAvailable"), Some(5000 * 1024));
        assert_eq!(meminfo_field(mi, "Mem"), None);
        assert_eq!(
            os_release_name("NAME=\"Debian\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n"),
            "Debian GNU/Linux 12 (bookworm)"
        );
        assert_eq!(go_arch("aarch64"), "arm64");
        assert_eq!(go_arch("x86_64"), "amd64");
    }

    #[test]
    fn allocatable_subtracts_the_eviction_thresholds() {
        let eviction = crate::kubelet::eviction::Config::default();
        let (cap, alloc) = resources(&machine(), &eviction.reserved_for(&machine()), 110);
        // k3s's defaults: no memory threshold, nodefs.available<5%.
        assert_eq!(cap["memory"], "4194304Ki");
        assert_eq!(alloc["memory"], "4194304Ki");
        assert_eq!(cap["pods"], "110");
        assert_eq!(
            alloc["ephemeral-storage"],
            ((100u64 << 30) - (100u64 << 30) / 20).to_string()
        );
        assert_eq!(cap["cpu"], "2");
        let reserved = Reserved {
            cpu_milli: 250,
            ..Reserved::default()
        };
        let (_, alloc) = resources(&machine(), &reserved, 250);
        assert_eq!(
            (alloc["cpu"].as_str(), alloc["pods"].as_str()),
            (Some("1750m"), Some("250"))
        );
    }

    #[test]
    fn conditions_keep_transition_times_until_the_status_flips() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let t1: Timestamp = "2026-01-01T00:01:00Z".parse().unwrap();
        let first = conditions(Pressure::default(), Ok(()), &[], t0);
        assert_eq!(first.len(), 4);
        let ready = first.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(ready.status, "True");
        assert_eq!(ready.reason.as_deref(), Some("KubeletReady"));
        let again = conditions(Pressure::default(), Ok(()), &first, t1);
        let ready = again.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(ready.last_transition_time, Some(Time(t0)));
        assert_eq!(ready.last_heartbeat_time, Some(Time(t1)));
        let pressured = Pressure {
            memory: true,
            ..Pressure::default()
        };
        let flipped = conditions(pressured, Err("runtime down".into()), &again, t1);
        let mem = flipped
            .iter()
            .find(|c| c.type_ == "MemoryPressure")
            .unwrap();
        assert_eq!(mem.status, "True");
        assert_eq!(mem.last_transition_time, Some(Time(t1)));
        let ready = flipped.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.message.as_deref()),
            ("False", Some("runtime down"))
        );
    }
}
