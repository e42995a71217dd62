//! Pod networking on one node: a Linux bridge holding the first address of the node's pod CIDR,
//! one network namespace per pod joined to the bridge by a veth pair, host-local IPAM, and
//! masquerade for traffic leaving the cluster CIDR. This is the single-node part of what k3s gets
//! from flannel + the CNI `bridge` and `host-local` plugins.
//!
//! The kubelet codes against [`HostNetwork`]; [`Bridge`] is the real implementation and [`Fake`]
//! a recording stand-in for tests. Only `netlink.rs` speaks netlink, only `nat.rs` runs `nft`,
//! and every namespace switch happens on a throwaway thread (`netns.rs`), never on a tokio worker.

pub mod hostport;
pub mod ipam;
pub mod nat;
pub mod netlink;
pub mod netns;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use ipnet::Ipv4Net;

/// Name of the pod-side interface, as with every CNI plugin.
pub const POD_INTERFACE: &str = "eth0";

#[derive(Debug, Clone)]
pub struct Config {
    /// Bridge name, "rk3s0".
    pub bridge: String,
    /// Where pod namespaces are bind-mounted, /run/rk3s/netns.
    pub netns_dir: PathBuf,
    /// `<data-dir>/agent/ipam`: allocations by pod UID, kept across restarts.
    pub ipam_dir: PathBuf,
    /// The nftables table (family ip) we own, "rk3s-podnet".
    pub nat_table: String,
    /// 10.42.0.0/16: pod traffic to destinations outside it is masqueraded.
    pub cluster_cidr: Ipv4Net,
    /// Interface MTU for the bridge and veths; 1500 by default.
    pub mtu: u32,
}

/// Where a pod's network lives and what it looks like from inside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodAddress {
    pub netns: PathBuf,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    pub interface: String,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("pod network is not configured yet: the node has no pod CIDR")]
    NotConfigured,
    #[error(
        "pod uid {0:?} cannot name a network namespace (allowed: letters, digits, '-', '_', '.')"
    )]
    InvalidUid(String),
    #[error("setting sysctl {path}")]
    Sysctl {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("network background task failed: {0}")]
    Task(String),
    #[error(transparent)]
    Ipam(#[from] ipam::Error),
    #[error(transparent)]
    Netns(#[from] netns::Error),
    #[error(transparent)]
    Netlink(#[from] netlink::Error),
    #[error(transparent)]
    Nat(#[from] nat::Error),
}

pub trait HostNetwork: Send + Sync {
    /// Creates the bridge with the first address of `pod_cidr` (e.g. 10.42.0.1/24), enables
    /// ip_forward, installs the masquerade rules; idempotent (called at every start, also when
    /// the node's podCIDR is learned).
    fn configure_node(&self, pod_cidr: Ipv4Net) -> BoxFuture<'_, Result<(), Error>>;
    /// The pod sandbox: netns at netns_dir/<uid>, veth pair (host side `veth<8 hex>` on the
    /// bridge, pod side `eth0`), an IP from the pod CIDR (same UID → same IP, also after a daemon
    /// restart), lo up, default route via the bridge address.
    fn setup_pod(&self, uid: &str) -> BoxFuture<'_, Result<PodAddress, Error>>;
    /// Removes the veth, releases the IP, unmounts and removes the netns file. Idempotent
    /// (unknown uid = Ok).
    fn teardown_pod(&self, uid: &str) -> BoxFuture<'_, Result<(), Error>>;
    /// UIDs with a netns or an IP allocation on this node (cleanup of pods deleted while the
    /// daemon was down).
    fn pods(&self) -> Result<Vec<String>, Error>;
    /// Makes the node's hostPort rules exactly `mappings` (all pods' together), in one
    /// transaction.
    fn set_host_ports(&self, mappings: Vec<hostport::Mapping>) -> BoxFuture<'_, Result<(), Error>>;
    // Host network pods need nothing here: the kubelet simply does not call setup_pod for them.
}

/// Host-side veth name for a pod: `veth` + 8 hex digits of a hash of the UID (12 bytes, within
/// the kernel's 15-byte limit). FNV-1a is used because it is stable across builds and releases,
/// unlike `std`'s `DefaultHasher`; the name must not change across daemon upgrades or teardown
/// would miss veths created by the previous version.
pub fn veth_name(uid: &str) -> String {
    let mut hash: u32 = 0x811c_9dc5;
    for b in uid.bytes() {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    format!("veth{hash:08x}")
}

/// Pod UIDs become file names; refuse anything that could escape netns_dir.
fn check_uid(uid: &str) -> Result<(), Error> {
    let ok = !uid.is_empty()
        && uid.len() <= 253
        && uid != "."
        && uid != ".."
        && uid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidUid(uid.to_string()))
    }
}

/// Runs blocking work (files, mounts, namespace threads, `nft`) on tokio's blocking pool.
async fn blocking<T, F>(f: F) -> Result<T, Error>
where
    F: FnOnce() -> Result<T, Error> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Task(e.to_string()))?
}

fn write_sysctl(path: &str, value: &str) -> Result<(), Error> {
    std::fs::write(path, value).map_err(|source| Error::Sysctl {
        path: path.to_string(),
        source,
    })
}

/// The real implementation: Linux bridge + veth + netns + host-local IPAM + nftables masquerade.
pub struct Bridge {
    config: Config,
    ipam: Arc<ipam::Store>,
    pod_cidr: Mutex<Option<Ipv4Net>>,
}

impl Bridge {
    pub fn new(config: Config) -> Bridge {
        let ipam = Arc::new(ipam::Store::new(config.ipam_dir.clone()));
        Bridge {
            config,
            ipam,
            pod_cidr: Mutex::new(None),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    fn pod_cidr(&self) -> Option<Ipv4Net> {
        *self.pod_cidr.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn netns_path(&self, uid: &str) -> PathBuf {
        self.config.netns_dir.join(uid)
    }

    async fn configure(&self, pod_cidr: Ipv4Net) -> Result<(), Error> {
        let pod_cidr = pod_cidr.trunc();
        let range = ipam::Range::new(pod_cidr)?;
        let gateway = range.gateway();

        let ipam = self.ipam.clone();
        let netns_dir = self.config.netns_dir.clone();
        let rules = nat::Rules {
            table: self.config.nat_table.clone(),
            bridge: self.config.bridge.clone(),
            pod_cidr,
            cluster_cidr: self.config.cluster_cidr,
        };
        blocking(move || {
            let dropped = ipam.retain_in(pod_cidr)?;
            for (ip, uid) in dropped {
                tracing::warn!(%ip, %uid, %pod_cidr, "pod CIDR changed: dropped address allocation outside it");
            }
            netns::prepare_dir(&netns_dir)?;
            write_sysctl("/proc/sys/net/ipv4/ip_forward", "1")?;
            // Service traffic between two pods on the bridge is DNATed on the way in; its
            // replies are bridged straight back unless bridged frames pass the IP hooks, where
            // conntrack un-DNATs them (what kube-proxy requires of every node). The sysctl
            // exists only with br_netfilter loaded; check-config reports when it is not.
            let bridge_nf = "/proc/sys/net/bridge/bridge-nf-call-iptables";
            if Path::new(bridge_nf).exists() {
                write_sysctl(bridge_nf, "1")?;
            } else {
                tracing::warn!("br_netfilter is not loaded: same-node Service traffic between pods will fail (modprobe br_netfilter)");
            }
            nat::apply(&rules.table, &nat::render(&rules))?;
            Ok(())
        })
        .await?;

        let host = netlink::Host::connect()?;
        host.ensure_bridge(
            &self.config.bridge,
            self.config.mtu,
            gateway,
            pod_cidr.prefix_len(),
        )
        .await?;
        *self.pod_cidr.lock().unwrap_or_else(|p| p.into_inner()) = Some(pod_cidr);
        tracing::info!(bridge = %self.config.bridge, %gateway, %pod_cidr, "node pod network configured");
        Ok(())
    }

    async fn setup(&self, uid: &str) -> Result<PodAddress, Error> {
        check_uid(uid)?;
        let pod_cidr = self.pod_cidr().ok_or(Error::NotConfigured)?;
        let range = ipam::Range::new(pod_cidr)?;
        let path = self.netns_path(uid);
        let veth = veth_name(uid);
        let mtu = self.config.mtu;

        let (ip, netns_file, has_eth0) = {
            let ipam = self.ipam.clone();
            let uid = uid.to_string();
            let path = path.clone();
            let netns_dir = self.config.netns_dir.clone();
            blocking(move || {
                let ip = ipam.allocate(pod_cidr, &uid)?;
                std::fs::create_dir_all(&netns_dir).map_err(|source| netns::Error::Io {
                    op: "create",
                    path: netns_dir.clone(),
                    source,
                })?;
                netns::create(&path)?;
                let file = std::fs::File::open(&path).map_err(|source| netns::Error::Io {
                    op: "open",
                    path: path.clone(),
                    source,
                })?;
                let has_eth0 = netlink::pod_has_link(&path, POD_INTERFACE)?;
                Ok((ip, file, has_eth0))
            })
            .await?
        };

        let host = netlink::Host::connect()?;
        let has_veth = host.index(&veth).await?.is_some();
        if !(has_veth && has_eth0) {
            // A half-made pair from an interrupted setup: start the pair over. Deleting either
            // end of a veth pair deletes both.
            if has_veth {
                host.delete(&veth).await?;
            }
            if has_eth0 {
                let path = path.clone();
                blocking(move || Ok(netlink::delete_pod_link(&path, POD_INTERFACE)?)).await?;
            }
            host.create_veth(&veth, POD_INTERFACE, mtu, &netns_file)
                .await?;
        }
        drop(netns_file);
        host.attach(&veth, &self.config.bridge, mtu).await?;

        let pod = netlink::PodInterface {
            name: POD_INTERFACE.to_string(),
            ip,
            prefix: pod_cidr.prefix_len(),
            gateway: range.gateway(),
            mtu,
        };
        {
            let path = path.clone();
            let pod = pod.clone();
            blocking(move || Ok(netlink::configure_pod(&path, &pod)?)).await?;
        }
        // Pod side is up; make sure the host side and the bridge are forwarding too before the
        // kubelet starts containers that may send right away.
        host.wait_up(&veth).await?;
        host.wait_up(&self.config.bridge).await?;
        tracing::debug!(%uid, %ip, %veth, "pod network set up");
        Ok(PodAddress {
            netns: path,
            ip,
            prefix: pod.prefix,
            gateway: pod.gateway,
            interface: pod.name,
        })
    }

    async fn teardown(&self, uid: &str) -> Result<(), Error> {
        check_uid(uid)?;
        let host = netlink::Host::connect()?;
        host.delete(&veth_name(uid)).await?;
        let ipam = self.ipam.clone();
        let uid = uid.to_string();
        let path = self.netns_path(&uid);
        blocking(move || {
            netns::remove(&path)?;
            for ip in ipam.release(&uid)? {
                tracing::debug!(%uid, %ip, "pod address released");
            }
            Ok(())
        })
        .await
    }
}

impl HostNetwork for Bridge {
    fn configure_node(&self, pod_cidr: Ipv4Net) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(self.configure(pod_cidr))
    }

    fn setup_pod(&self, uid: &str) -> BoxFuture<'_, Result<PodAddress, Error>> {
        let uid = uid.to_string();
        Box::pin(async move { self.setup(&uid).await })
    }

    fn teardown_pod(&self, uid: &str) -> BoxFuture<'_, Result<(), Error>> {
        let uid = uid.to_string();
        Box::pin(async move { self.teardown(&uid).await })
    }

    fn pods(&self) -> Result<Vec<String>, Error> {
        let mut uids: BTreeSet<String> = netns::list(&self.config.netns_dir)?.into_iter().collect();
        uids.extend(self.ipam.allocations()?.into_values());
        Ok(uids.into_iter().collect())
    }
    fn set_host_ports(&self, mappings: Vec<hostport::Mapping>) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(blocking(move || {
            Ok(nat::apply(hostport::TABLE, &hostport::render(&mappings))?)
        }))
    }
}

/// One call made to a [`Fake`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    ConfigureNode(Ipv4Net),
    SetupPod(String),
    TeardownPod(String),
    SetHostPorts(Vec<hostport::Mapping>),
}

#[derive(Debug, Default)]
struct FakeState {
    calls: Vec<Call>,
    pod_cidr: Option<Ipv4Net>,
    /// Address → pod UID, the same pure allocator as the real IPAM but in memory.
    allocations: std::collections::BTreeMap<Ipv4Addr, String>,
    last: Option<Ipv4Addr>,
}

/// Records calls and hands out addresses like [`Bridge`] would, without touching the host.
#[derive(Debug)]
pub struct Fake {
    netns_dir: PathBuf,
    state: Mutex<FakeState>,
}

impl Default for Fake {
    fn default() -> Self {
        Fake::new()
    }
}

impl Fake {
    /// A fake that, like the real one, refuses `setup_pod` until `configure_node` was called.
    pub fn new() -> Fake {
        Fake {
            netns_dir: PathBuf::from("/run/rk3s/netns"),
            state: Mutex::new(FakeState::default()),
        }
    }

    /// A fake that is already configured with `pod_cidr` (no call recorded).
    pub fn with_pod_cidr(pod_cidr: Ipv4Net) -> Fake {
        let fake = Fake::new();
        fake.lock().pod_cidr = Some(pod_cidr.trunc());
        fake
    }

    /// All calls so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn netns_path(&self, uid: &str) -> PathBuf {
        Path::new(&self.netns_dir).join(uid)
    }
}

impl HostNetwork for Fake {
    fn configure_node(&self, pod_cidr: Ipv4Net) -> BoxFuture<'_, Result<(), Error>> {
        let result = (|| {
            let mut s = self.lock();
            s.calls.push(Call::ConfigureNode(pod_cidr));
            let range = ipam::Range::new(pod_cidr)?;
            s.allocations.retain(|ip, _| range.contains(*ip));
            s.pod_cidr = Some(range.cidr);
            Ok(())
        })();
        Box::pin(async move { result })
    }

    fn setup_pod(&self, uid: &str) -> BoxFuture<'_, Result<PodAddress, Error>> {
        let result = (|| {
            let mut s = self.lock();
            s.calls.push(Call::SetupPod(uid.to_string()));
            check_uid(uid)?;
            let cidr = s.pod_cidr.ok_or(Error::NotConfigured)?;
            let range = ipam::Range::new(cidr)?;
            let existing = s
                .allocations
                .iter()
                .find(|(_, owner)| owner.as_str() == uid)
                .map(|(ip, _)| *ip);
            let ip = match existing {
                Some(ip) => ip,
                None => {
                    let taken = s.allocations.keys().copied().collect();
                    let ip = ipam::pick(&range, &taken, s.last).ok_or_else(|| {
                        ipam::Error::Exhausted {
                            cidr,
                            uid: uid.to_string(),
                            used: taken.len(),
                            size: range.size(),
                        }
                    })?;
                    s.allocations.insert(ip, uid.to_string());
                    s.last = Some(ip);
                    ip
                }
            };
            Ok(PodAddress {
                netns: self.netns_path(uid),
                ip,
                prefix: cidr.prefix_len(),
                gateway: range.gateway(),
                interface: POD_INTERFACE.to_string(),
            })
        })();
        Box::pin(async move { result })
    }

    fn teardown_pod(&self, uid: &str) -> BoxFuture<'_, Result<(), Error>> {
        let mut s = self.lock();
        s.calls.push(Call::TeardownPod(uid.to_string()));
        s.allocations.retain(|_, owner| owner != uid);
        Box::pin(async move { Ok(()) })
    }

    fn pods(&self) -> Result<Vec<String>, Error> {
        let s = self.lock();
        let uids: BTreeSet<String> = s.allocations.values().cloned().collect();
        Ok(uids.into_iter().collect())
    }
    fn set_host_ports(&self, mappings: Vec<hostport::Mapping>) -> BoxFuture<'_, Result<(), Error>> {
        self.lock().calls.push(Call::SetHostPorts(mappings));
        Box::pin(async move { Ok(()) })
    }
}

#[cfg(test)]
mod tests;
