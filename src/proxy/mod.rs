//! The Service proxy (kube-proxy's nftables mode) that runs in every node process: it watches
//! Services, EndpointSlices and Nodes through the API and keeps `table inet rk3s` in step.
//!
//! [`render`] is pure: API state → [`render::Rendered`] (each Service's objects, cached) → nft
//! text. This file only watches, and hands the text to `network::nat`, the one adapter that
//! runs `nft`, on a blocking thread. A full sync (at start, after an error, and every
//! [`Config::resync`]) is one transaction that rewrites every object the proxy owns and
//! deletes its stale ones (also those left by an earlier run); in between, each change
//! re-renders only the Services it touches and sends only the difference to what was applied
//! last.

pub mod render;
pub mod table;

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio::sync::Notify;

use crate::network::nat;

/// What the proxy needs, built by `cli`.
#[derive(Debug, Clone)]
pub struct Config {
    /// This node's name: its endpoints are local, its Node's addresses serve NodePorts.
    pub node_name: String,
    /// Addresses NodePorts are served on besides the Node's InternalIP/ExternalIP.
    pub node_ips: Vec<Ipv4Addr>,
    /// Pod addresses; traffic to ClusterIPs from elsewhere is masqueraded.
    pub cluster_cidr: Ipv4Net,
    /// The cluster DNS address when the built-in DNS server answers there itself.
    pub skip_cluster_ip: Option<Ipv4Addr>,
    /// How often a full sync runs even without changes.
    pub resync: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Nft(#[from] nat::Error),
    #[error("nft task failed: {0}")]
    Task(String),
}

/// The watched API state.
#[derive(Clone)]
struct Caches {
    services: Store<Service>,
    slices: Store<EndpointSlice>,
    nodes: Store<Node>,
}

/// Builds the table the rules are rendered from.
fn service_table(config: &Config, caches: &Caches) -> render::ServiceTable {
    let slices = caches.slices.state();
    let by_service = table::slices_by_service(&slices);
    let mut services: Vec<render::Service> = caches
        .services
        .state()
        .iter()
        .filter_map(|svc| {
            let key = (
                svc.metadata.namespace.clone().unwrap_or_default(),
                svc.metadata.name.clone().unwrap_or_default(),
            );
            let slices = by_service.get(&key).map(Vec::as_slice).unwrap_or_default();
            table::service(svc, slices)
        })
        .collect();
    services.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    let mut node_ips = config.node_ips.clone();
    for node in caches.nodes.state() {
        if node.metadata.name.as_deref() == Some(config.node_name.as_str()) {
            node_ips.extend(table::node_addresses(&node));
        }
    }
    node_ips.sort();
    node_ips.dedup();
    render::ServiceTable {
        node_name: config.node_name.clone(),
        node_ips,
        cluster_cidr: config.cluster_cidr,
        skip_cluster_ip: config.skip_cluster_ip,
        services,
    }
}

/// Runs a full sync: rewrites everything the proxy owns in one transaction and deletes its
/// stale objects: those the kernel lists when the applied state is unknown (at start, after an
/// error, which also finds the leftovers of an earlier run), else those of the last sync, so
/// that a periodic resync does not list a 10,000-Service table (about 1 s of `nft` time).
/// Blocks.
pub fn full_sync(rendered: &mut render::Rendered) -> Result<(), Error> {
    let listed;
    let existing = match rendered.applied_objects() {
        Some(known) => known,
        None => {
            listed = render::parse_listing(&nat::list_table(render::FAMILY, render::TABLE)?);
            &listed
        }
    };
    let script = rendered.full_script(existing);
    match nat::apply(render::TABLE, &script) {
        Ok(()) => {
            rendered.mark_applied();
            Ok(())
        }
        Err(e) => {
            rendered.forget_applied();
            Err(e.into())
        }
    }
}

/// Applies what changed since the last sync; `Ok(false)` when nothing did. Runs a full sync
/// when the kernel's state is unknown. Blocks.
pub fn incremental_sync(rendered: &mut render::Rendered) -> Result<bool, Error> {
    let Some(script) = rendered.diff_script() else {
        return full_sync(rendered).map(|()| true);
    };
    if script.is_empty() {
        rendered.mark_applied();
        return Ok(false);
    }
    match nat::apply(render::TABLE, &script) {
        Ok(()) => {
            rendered.mark_applied();
            Ok(true)
        }
        Err(e) => {
            rendered.forget_applied();
            Err(e.into())
        }
    }
}

fn watch<K>(api: Api<K>, notify: Arc<Notify>) -> (Store<K>, tokio::task::JoinHandle<()>)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .reflect(writer);
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(_) => notify.notify_one(),
                Err(e) => tracing::warn!(error = %e, "service proxy watch failed; retrying"),
            }
        }
    });
    (reader, task)
}

/// Watches the API and keeps the node's Service rules in step until the task is dropped.
pub async fn run(client: Client, config: Config) {
    let notify = Arc::new(Notify::new());
    let (services, t1) = watch(Api::<Service>::all(client.clone()), notify.clone());
    let (slices, t2) = watch(Api::<EndpointSlice>::all(client.clone()), notify.clone());
    let (nodes, t3) = watch(Api::<Node>::all(client), notify.clone());
    // Aborts the watch tasks when this future is dropped.
    struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            self.0.iter().for_each(|t| t.abort());
        }
    }
    let _tasks = AbortOnDrop(vec![t1, t2, t3]);
    let caches = Caches {
        services,
        slices,
        nodes,
    };
    // An incomplete first sync would delete rules of services not listed yet.
    for ready in [
        caches.services.wait_until_ready().await,
        caches.slices.wait_until_ready().await,
        caches.nodes.wait_until_ready().await,
    ] {
        if ready.is_err() {
            tracing::warn!("service proxy watch ended before its first list");
            return;
        }
    }
    let mut rendered = render::Rendered::new();
    let mut last_full = Instant::now();
    let mut failures: u32 = 0;
    loop {
        let table = service_table(&config, &caches);
        let resync = last_full.elapsed() >= config.resync;
        let (back, result, full) = tokio::task::spawn_blocking(move || {
            // Rendering 10,000 Services is CPU work: off the async runtime, like the apply.
            rendered.update(&table);
            let full = resync || rendered.applied_objects().is_none();
            let result = if full {
                full_sync(&mut rendered)
            } else {
                incremental_sync(&mut rendered).map(|_| ())
            };
            (rendered, result, full)
        })
        .await
        // A panicked sync loses the rendering; a new one starts over with a full sync.
        .unwrap_or_else(|e| {
            (
                render::Rendered::new(),
                Err(Error::Task(e.to_string())),
                true,
            )
        });
        rendered = back;
        match result {
            Ok(()) => {
                if full {
                    last_full = Instant::now();
                    tracing::debug!("service proxy full sync done");
                }
                failures = 0;
            }
            Err(e) => {
                // 1 s, doubling up to 30 s: a host without nft must not flood the log.
                let wait = Duration::from_secs(1 << failures.min(5)).min(Duration::from_secs(30));
                failures = failures.saturating_add(1);
                tracing::warn!(error = %e, retry_in = ?wait, "service proxy sync failed; retrying with a full sync");
                tokio::time::sleep(wait).await;
                continue;
            }
        }
        let until_resync = config.resync.saturating_sub(last_full.elapsed());
        tokio::select! {
            _ = notify.notified() => {}
            _ = tokio::time::sleep(until_resync) => {}
        }
    }
}
