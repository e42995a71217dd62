//! The cluster DNS: a DNS server in every node process, answering at the cluster DNS address
//! (`--cluster-dns`, held by the dummy interface `rk3s-dns`) over UDP and TCP. Names in the
//! cluster domain come from Services and EndpointSlices watched through the API
//! ([`records`], pure); everything else is forwarded to the host's resolvers with a small cache
//! ([`forward`]). This replaces the CoreDNS Deployment k3s ships, with the same answers.

pub mod forward;
pub mod records;
pub mod server;
pub mod wire;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::Notify;

use crate::network::netlink;

pub use server::Handler;

/// The dummy interface that holds the cluster DNS address.
pub const INTERFACE: &str = "rk3s-dns";

/// The cluster DNS settings, built by `cli`.
#[derive(Debug, Clone)]
pub struct Config {
    /// The address to serve on (`--cluster-dns`), also the kube-dns Service's ClusterIP.
    pub cluster_dns: Ipv4Addr,
    /// The cluster domain (`--cluster-domain`).
    pub cluster_domain: String,
    /// Where the upstream resolvers are listed (the host's /etc/resolv.conf).
    pub resolv_conf: PathBuf,
    /// The port to serve on (53; tests use others).
    pub port: u16,
    /// The dummy interface to put `cluster_dns/32` on (`lo` if the kernel has no dummy links);
    /// `None` when the address is already local (tests on loopback).
    pub interface: Option<String>,
    /// How often the zone is rebuilt from the caches even without watch events.
    pub resync: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("creating the interface {name} for the cluster dns address {ip}")]
    Interface {
        name: String,
        ip: Ipv4Addr,
        #[source]
        source: netlink::Error,
    },
    #[error("binding the cluster dns to {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("reading the upstream resolvers")]
    Upstreams(#[from] forward::Error),
}

/// The `kube-system/kube-dns` Service that clients and tools look for (its ClusterIP is the
/// cluster DNS address; no selector: this process answers on that address itself), with the
/// name, labels and ports of the one k3s's CoreDNS manifest creates.
pub fn kube_dns_service(cluster_dns: Ipv4Addr) -> Service {
    let port = |name: &str, protocol: &str| ServicePort {
        name: Some(name.into()),
        port: 53,
        protocol: Some(protocol.into()),
        target_port: Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(53)),
        ..Default::default()
    };
    Service {
        metadata: ObjectMeta {
            name: Some("kube-dns".into()),
            namespace: Some("kube-system".into()),
            labels: Some(BTreeMap::from([
                ("k8s-app".to_string(), "kube-dns".to_string()),
                (
                    "kubernetes.io/cluster-service".to_string(),
                    "true".to_string(),
                ),
                ("kubernetes.io/name".to_string(), "CoreDNS".to_string()),
            ])),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some(cluster_dns.to_string()),
            cluster_ips: Some(vec![cluster_dns.to_string()]),
            ports: Some(vec![port("dns", "UDP"), port("dns-tcp", "TCP")]),
            ..Default::default()
        }),
        status: None,
    }
}

/// Binds UDP and TCP on `addr` (port 0: a free port, the same for both) and serves `handler`
/// until the returned task is aborted. Returns the bound address.
pub async fn bind(
    addr: SocketAddr,
    handler: Arc<Handler>,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), Error> {
    let bind_err = |source| Error::Bind { addr, source };
    let udp = UdpSocket::bind(addr).await.map_err(bind_err)?;
    let bound = udp.local_addr().map_err(bind_err)?;
    let tcp = TcpListener::bind(bound).await.map_err(bind_err)?;
    let task = tokio::spawn(async move {
        let udp = tokio::spawn(server::serve_udp(Arc::new(udp), handler.clone()));
        let tcp = tokio::spawn(server::serve_tcp(tcp, handler));
        // Both loops only end when aborted; abort both together.
        struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);
        impl Drop for AbortOnDrop {
            fn drop(&mut self) {
                self.0.iter().for_each(|t| t.abort());
            }
        }
        let _guard = AbortOnDrop(vec![udp, tcp]);
        std::future::pending::<()>().await;
    });
    Ok((bound, task))
}

fn unix_now() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32)
}

/// Runs the cluster DNS: the dummy interface, the Service/EndpointSlice watches, the listeners.
/// Returns only on a setup error; runs until aborted otherwise.
pub async fn run(client: kube::Client, config: Config) -> Result<(), Error> {
    if let Some(name) = &config.interface {
        let host = netlink::Host::connect().map_err(|source| Error::Interface {
            name: name.clone(),
            ip: config.cluster_dns,
            source,
        })?;
        let held = match host.ensure_dummy(name, config.cluster_dns).await {
            // A kernel built without dummy links: loopback holds the address instead, which
            // makes it just as local (the host and, through the bridge, pods reach it).
            Err(e) if e.unsupported() => {
                tracing::info!(
                    ip = %config.cluster_dns,
                    "the kernel has no dummy interfaces; the cluster dns address goes on lo"
                );
                host.add_address("lo", config.cluster_dns, 32).await
            }
            other => other,
        };
        held.map_err(|source| Error::Interface {
            name: name.clone(),
            ip: config.cluster_dns,
            source,
        })?;
    }
    let upstreams = forward::upstreams(&config.resolv_conf, &[IpAddr::V4(config.cluster_dns)])?;
    if upstreams.is_empty() {
        tracing::warn!(
            resolv_conf = %config.resolv_conf.display(),
            "no upstream resolvers: names outside the cluster domain will fail"
        );
    }
    let zone = records::Zone {
        domain: config.cluster_domain.clone(),
        cluster_dns: Some(config.cluster_dns),
        serial: unix_now(),
    };
    let (services, svc_writer) = reflector::store::<Service>();
    let (slices, slice_writer) = reflector::store::<EndpointSlice>();
    let changed = Arc::new(Notify::new());
    let mut watches = tokio::task::JoinSet::new();
    watches.spawn(watch(
        Api::<Service>::all(client.clone()),
        svc_writer,
        changed.clone(),
    ));
    watches.spawn(watch(
        Api::<EndpointSlice>::all(client),
        slice_writer,
        changed.clone(),
    ));
    // Answer only once both caches hold a full list: an empty zone would tell early pods
    // that their services do not exist (NXDOMAIN, which resolvers cache).
    let _ = services.wait_until_ready().await;
    let _ = slices.wait_until_ready().await;
    let rebuild = |serial| {
        let (s, e) = (services.state(), slices.state());
        records::build(
            &records::Zone {
                serial,
                ..zone.clone()
            },
            s.iter().map(|x| x.as_ref()),
            e.iter().map(|x| x.as_ref()),
        )
    };
    let handler = Arc::new(Handler::new(
        rebuild(unix_now()),
        forward::Forwarder::new(upstreams),
    ));
    let addr = SocketAddr::new(IpAddr::V4(config.cluster_dns), config.port);
    let (bound, serving) = bind(addr, handler.clone()).await?;
    // Dropping the JoinHandle would detach the listeners; they must end with this task.
    let _serving = AbortOnDrop(serving);
    tracing::info!(addr = %bound, domain = %zone.domain, "cluster dns listening");
    loop {
        tokio::select! {
            _ = changed.notified() => {
                // Coalesce a burst of events (a Deployment scaling) into one rebuild.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            _ = tokio::time::sleep(config.resync) => {}
        }
        handler.set_records(rebuild(unix_now()));
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Keeps `writer`'s cache in step with the API (relisting after errors with back-off, which is
/// the resync of invariant 5) and signals every change.
async fn watch<K>(api: Api<K>, writer: reflector::store::Writer<K>, changed: Arc<Notify>)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let mut events =
        reflector::reflector(writer, watcher::watcher(api, watcher::Config::default()))
            .default_backoff()
            .boxed();
    while let Some(event) = events.next().await {
        match event {
            Ok(_) => changed.notify_one(),
            Err(e) => tracing::debug!(error = %e, "cluster dns watch"),
        }
    }
}
