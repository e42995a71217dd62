//! The only file that speaks netlink (rtnetlink): the node bridge, the pods' veth pairs, and the
//! addresses and routes inside pod network namespaces.
//!
//! A netlink socket acts on the network namespace it was created in. Host-side work uses a
//! [`Host`] connection opened on the caller's tokio runtime (whose threads stay in the host
//! namespace). Pod-side work runs on a fresh thread that has joined the pod's namespace
//! ([`netns::run_in`]) and drives its own socket on a small current-thread runtime, so no tokio
//! worker ever changes namespace.

use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use futures_util::TryStreamExt;
use netlink_packet_route::address::AddressAttribute;
use netlink_packet_route::link::{InfoData, InfoVeth, LinkAttribute, State};
use nix::errno::Errno;
use rtnetlink::{
    Handle, LinkBridge, LinkBridgePort, LinkDummy, LinkMessageBuilder, LinkUnspec, LinkVeth,
    RouteMessageBuilder,
};

use super::netns;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("netlink {op} {name}")]
    Request {
        op: &'static str,
        name: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("netlink socket")]
    Socket(#[source] io::Error),
    #[error("netlink runtime for netns {0}")]
    Runtime(PathBuf, #[source] io::Error),
    #[error("link {0} not found")]
    NoLink(String),
    #[error(transparent)]
    Netns(#[from] netns::Error),
}

impl Error {
    /// Whether the kernel refused because it lacks the feature (e.g. no `dummy` link type in a
    /// kernel built without it).
    pub fn unsupported(&self) -> bool {
        matches!(self, Error::Request { source, .. } if errno(source) == Some(Errno::EOPNOTSUPP))
    }
}

fn request(op: &'static str, name: &str) -> impl FnOnce(rtnetlink::Error) -> Error {
    let name = name.to_string();
    move |source| Error::Request { op, name, source }
}

/// The errno of a kernel rejection, if that is what `e` is.
fn errno(e: &rtnetlink::Error) -> Option<Errno> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(Errno::from_raw(m.raw_code().abs())),
        _ => None,
    }
}

/// A netlink connection in the host network namespace, driven by the caller's tokio runtime.
pub struct Host {
    handle: Handle,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Host {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Host {
    /// Opens a socket in the calling thread's namespace: call it from a tokio task (never from a
    /// thread that switched namespace).
    pub fn connect() -> Result<Host, Error> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(Error::Socket)?;
        let task = tokio::spawn(conn);
        Ok(Host { handle, task })
    }

    pub async fn index(&self, name: &str) -> Result<Option<u32>, Error> {
        link_index(&self.handle, name).await
    }

    /// Creates the bridge (or adopts an existing one), sets its MTU, brings it up and makes
    /// `gateway/prefix` its only IPv4 address, so a changed pod CIDR replaces the old address.
    pub async fn ensure_bridge(
        &self,
        name: &str,
        mtu: u32,
        gateway: Ipv4Addr,
        prefix: u8,
    ) -> Result<(), Error> {
        let h = &self.handle;
        let created = h
            .link()
            .add(LinkBridge::new(name).mtu(mtu).up().build())
            .execute()
            .await;
        match created {
            Ok(()) => {}
            Err(e) if errno(&e) == Some(Errno::EEXIST) => {}
            Err(e) => return Err(request("create bridge", name)(e)),
        }
        let index = link_index(h, name)
            .await?
            .ok_or_else(|| Error::NoLink(name.to_string()))?;
        h.link()
            .set(LinkUnspec::new_with_index(index).mtu(mtu).up().build())
            .execute()
            .await
            .map_err(request("set up", name))?;
        set_only_address(h, index, name, gateway, prefix).await
    }

    /// Creates the dummy interface `name` (or adopts an existing one), brings it up and makes
    /// `ip/32` its only IPv4 address: an address that is local to the host without belonging
    /// to any real link, for a server that pods (through the bridge) and the host reach.
    pub async fn ensure_dummy(&self, name: &str, ip: Ipv4Addr) -> Result<(), Error> {
        let h = &self.handle;
        match h
            .link()
            .add(LinkDummy::new(name).up().build())
            .execute()
            .await
        {
            Ok(()) => {}
            Err(e) if errno(&e) == Some(Errno::EEXIST) => {}
            Err(e) => return Err(request("create dummy", name)(e)),
        }
        let index = link_index(h, name)
            .await?
            .ok_or_else(|| Error::NoLink(name.to_string()))?;
        h.link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(request("set up", name))?;
        set_only_address(h, index, name, ip, 32).await
    }

    /// Adds `ip/prefix` to the link `name` unless it has it, keeping its other addresses (for
    /// `lo`, whose 127.0.0.1 must stay).
    pub async fn add_address(&self, name: &str, ip: Ipv4Addr, prefix: u8) -> Result<(), Error> {
        let h = &self.handle;
        let index = link_index(h, name)
            .await?
            .ok_or_else(|| Error::NoLink(name.to_string()))?;
        h.address()
            .add(index, IpAddr::V4(ip), prefix)
            .replace()
            .execute()
            .await
            .map_err(request("add address to", name))
    }

    /// Creates a veth pair whose host end `host` stays here and whose other end is created
    /// directly inside the namespace `netns` under the name `peer` (like
    /// `ip link add <host> type veth peer name <peer> netns <ns>`), so the pod-side name never
    /// exists in the host namespace and concurrent pods cannot collide on it.
    pub async fn create_veth(
        &self,
        host: &str,
        peer: &str,
        mtu: u32,
        netns: &File,
    ) -> Result<(), Error> {
        let peer_msg = LinkMessageBuilder::<LinkUnspec>::new()
            .name(peer.to_string())
            .mtu(mtu)
            .setns_by_fd(netns.as_raw_fd())
            .build();
        let msg = LinkVeth::new(host, peer)
            .mtu(mtu)
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer_msg)))
            .build();
        self.handle
            .link()
            .add(msg)
            .execute()
            .await
            .map_err(request("create veth", host))
    }

    /// Puts `name` on `bridge`, sets its MTU and brings it up.
    pub async fn attach(&self, name: &str, bridge: &str, mtu: u32) -> Result<(), Error> {
        let h = &self.handle;
        let bridge_index = link_index(h, bridge)
            .await?
            .ok_or_else(|| Error::NoLink(bridge.to_string()))?;
        let index = link_index(h, name)
            .await?
            .ok_or_else(|| Error::NoLink(name.to_string()))?;
        h.link()
            .set(
                LinkUnspec::new_with_index(index)
                    .controller(bridge_index)
                    .mtu(mtu)
                    .up()
                    .build(),
            )
            .execute()
            .await
            .map_err(request("attach to bridge", name))?;
        // Hairpin mode lets a frame leave through the port it came in on: a pod that reaches a
        // Service whose chosen endpoint is the pod itself gets its own traffic back (same as the
        // CNI bridge plugin's `hairpinMode: true`, which k3s's flannel config enables).
        h.link()
            .set_port(LinkBridgePort::new(index).hairpin(true).build())
            .execute()
            .await
            .map_err(request("enable hairpin on", name))
    }

    /// Waits until the kernel reports `name` operationally up (see [`wait_oper_up`]).
    pub async fn wait_up(&self, name: &str) -> Result<bool, Error> {
        wait_oper_up(&self.handle, name).await
    }

    /// Deletes a link; returns false if it did not exist.
    pub async fn delete(&self, name: &str) -> Result<bool, Error> {
        delete_link(&self.handle, name).await
    }

    /// Names of the links enslaved to the bridge `bridge` (the pods' host-side veths); empty if
    /// the bridge does not exist.
    pub async fn ports_of(&self, bridge: &str) -> Result<Vec<String>, Error> {
        let h = &self.handle;
        let Some(index) = link_index(h, bridge).await? else {
            return Ok(Vec::new());
        };
        let links: Vec<_> = h
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(request("list links of", bridge))?;
        Ok(links
            .iter()
            .filter(|l| l.attributes.contains(&LinkAttribute::Controller(index)))
            .filter_map(|l| {
                l.attributes.iter().find_map(|a| match a {
                    LinkAttribute::IfName(n) => Some(n.clone()),
                    _ => None,
                })
            })
            .collect())
    }

    /// Removes `ip/prefix` from the link `name`; returns false if the link or the address was
    /// not there (e.g. the cluster DNS address on `lo` at uninstall).
    pub async fn delete_address(
        &self,
        name: &str,
        ip: Ipv4Addr,
        prefix: u8,
    ) -> Result<bool, Error> {
        let h = &self.handle;
        let Some(index) = link_index(h, name).await? else {
            return Ok(false);
        };
        let existing = addresses(h, index, name).await?;
        let mut deleted = false;
        for msg in existing {
            let matches = msg.header.prefix_len == prefix
                && msg
                    .attributes
                    .contains(&AddressAttribute::Local(IpAddr::V4(ip)));
            if matches {
                h.address()
                    .del(msg)
                    .execute()
                    .await
                    .map_err(request("delete address of", name))?;
                deleted = true;
            }
        }
        Ok(deleted)
    }
}

/// How the pod's interface is configured inside its namespace.
#[derive(Debug, Clone)]
pub struct PodInterface {
    pub name: String,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    pub mtu: u32,
}

/// Whether the namespace at `netns` has a link called `name`. Blocks.
pub fn pod_has_link(netns: &Path, name: &str) -> Result<bool, Error> {
    let name = name.to_string();
    in_netns(netns, move |h| async move {
        Ok(link_index(&h, &name).await?.is_some())
    })
}

/// Deletes the link `name` inside the namespace at `netns`, if it exists. Blocks.
pub fn delete_pod_link(netns: &Path, name: &str) -> Result<bool, Error> {
    let name = name.to_string();
    in_netns(netns, move |h| async move { delete_link(&h, &name).await })
}

/// Inside the pod namespace: loopback up, the pod interface up with its address as the only IPv4
/// address, and the default route via the gateway (the bridge). Idempotent. Blocks.
pub fn configure_pod(netns: &Path, pod: &PodInterface) -> Result<(), Error> {
    let pod = pod.clone();
    in_netns(netns, move |h| async move {
        let lo = link_index(&h, "lo")
            .await?
            .ok_or_else(|| Error::NoLink("lo".into()))?;
        h.link()
            .set(LinkUnspec::new_with_index(lo).up().build())
            .execute()
            .await
            .map_err(request("set up", "lo"))?;
        let index = link_index(&h, &pod.name)
            .await?
            .ok_or_else(|| Error::NoLink(pod.name.clone()))?;
        h.link()
            .set(LinkUnspec::new_with_index(index).mtu(pod.mtu).up().build())
            .execute()
            .await
            .map_err(request("set up", &pod.name))?;
        set_only_address(&h, index, &pod.name, pod.ip, pod.prefix).await?;
        let route = RouteMessageBuilder::<Ipv4Addr>::new()
            .gateway(pod.gateway)
            .output_interface(index)
            .build();
        h.route()
            .add(route)
            .replace()
            .execute()
            .await
            .map_err(request("add default route via", &pod.gateway.to_string()))?;
        wait_oper_up(&h, &pod.name).await?;
        Ok(())
    })
}

/// Runs `f` with a netlink handle whose socket lives in the namespace at `netns`, on a dedicated
/// thread (see the module comment). Blocks until `f` is done.
fn in_netns<T, F, Fut>(netns: &Path, f: F) -> Result<T, Error>
where
    F: FnOnce(Handle) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, Error>>,
    T: Send + 'static,
{
    let path = netns.to_path_buf();
    netns::run_in(netns, move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| Error::Runtime(path.clone(), e))?;
        rt.block_on(async move {
            // Created after the thread joined the namespace, so the socket belongs to it.
            let (conn, handle, _) = rtnetlink::new_connection().map_err(Error::Socket)?;
            let task = tokio::spawn(conn);
            let out = f(handle).await;
            task.abort();
            out
        })
    })?
}

async fn link_index(h: &Handle, name: &str) -> Result<Option<u32>, Error> {
    let found = h
        .link()
        .get()
        .match_name(name.to_string())
        .execute()
        .try_next()
        .await;
    match found {
        Ok(Some(link)) => Ok(Some(link.header.index)),
        Ok(None) => Ok(None),
        Err(e) if errno(&e) == Some(Errno::ENODEV) => Ok(None),
        Err(e) => Err(request("get link", name)(e)),
    }
}

/// How long [`wait_oper_up`] waits before giving up (with a warning, not an error).
const OPER_UP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// Polls until `name` has operstate UP; returns false on timeout. The kernel applies carrier
/// changes (operstate, and the switch from the no-op qdisc to the real one) in its deferred
/// "linkwatch" work, up to a second after `ip link set up`; until then packets are dropped. So a
/// pod whose setup returned would otherwise lose its first packets.
async fn wait_oper_up(h: &Handle, name: &str) -> Result<bool, Error> {
    let deadline = tokio::time::Instant::now() + OPER_UP_TIMEOUT;
    loop {
        let link = h
            .link()
            .get()
            .match_name(name.to_string())
            .execute()
            .try_next()
            .await
            .map_err(request("get link", name))?
            .ok_or_else(|| Error::NoLink(name.to_string()))?;
        let up = link
            .attributes
            .iter()
            .any(|a| matches!(a, LinkAttribute::OperState(State::Up)));
        if up {
            return Ok(true);
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(link = %name, "link is not operationally up yet; continuing");
            return Ok(false);
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

async fn delete_link(h: &Handle, name: &str) -> Result<bool, Error> {
    let Some(index) = link_index(h, name).await? else {
        return Ok(false);
    };
    match h.link().del(index).execute().await {
        Ok(()) => Ok(true),
        // Gone in the meantime (e.g. its veth peer was deleted): the outcome we wanted.
        Err(e) if errno(&e) == Some(Errno::ENODEV) => Ok(false),
        Err(e) => Err(request("delete link", name)(e)),
    }
}

/// The address messages of the link `index` (called `name`, for errors).
async fn addresses(
    h: &Handle,
    index: u32,
    name: &str,
) -> Result<Vec<netlink_packet_route::address::AddressMessage>, Error> {
    h.address()
        .get()
        .set_link_index_filter(index)
        .execute()
        .try_collect()
        .await
        .map_err(request("list addresses of", name))
}

/// Makes `ip/prefix` the only IPv4 address of the link `index`.
async fn set_only_address(
    h: &Handle,
    index: u32,
    name: &str,
    ip: Ipv4Addr,
    prefix: u8,
) -> Result<(), Error> {
    let existing = addresses(h, index, name).await?;
    let mut present = false;
    for msg in existing {
        let addr = msg.attributes.iter().find_map(|a| match a {
            AddressAttribute::Local(IpAddr::V4(v4)) => Some(*v4),
            _ => None,
        });
        let Some(addr) = addr else { continue };
        if addr == ip && msg.header.prefix_len == prefix {
            present = true;
            continue;
        }
        h.address()
            .del(msg)
            .execute()
            .await
            .map_err(request("delete old address of", name))?;
    }
    if !present {
        h.address()
            .add(index, IpAddr::V4(ip), prefix)
            .replace()
            .execute()
            .await
            .map_err(request("add address to", name))?;
    }
    Ok(())
}
