//! The kubelet: registers this machine as a Node and runs the pods bound to it.
//!
//! Pods come from one watch on `spec.nodeName=<node>` (plus a resync), each handled by its
//! own worker task ([`worker`]) that prepares the sandbox ([`crate::network`]), pulls images
//! ([`images`]), mounts volumes ([`volumes`]) and drives containers through the runtime seam
//! ([`runtime::Runtime`]: re-exec shims around libcontainer), then writes `pods/status`.
//! Containers belong to their shims, not to this process: after a restart the workers re-adopt
//! what the runtime lists instead of starting anything twice.

pub mod env;
pub mod eviction;
pub mod images;
pub mod logs;
pub mod node;
pub mod pod;
pub mod probe;
pub mod runtime;
pub mod static_pods;
pub mod stats;
pub mod streaming;
pub mod volumes;
pub mod worker;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod, Taint};
use kube::api::Api;
use kube::runtime::watcher::{self, Event};
use tokio::sync::watch;

use crate::data_dir::DataDir;
use crate::network::{HostNetwork, hostport};

/// Everything the kubelet needs, built by `cli`.
#[derive(Clone, Debug)]
pub struct Config {
    pub node_name: String,
    pub node_ip: IpAddr,
    /// `--node-label`s.
    pub labels: BTreeMap<String, String>,
    /// `--node-taint`s.
    pub taints: Vec<Taint>,
    /// Servers label their node as control plane.
    pub control_plane: bool,
    pub data_dir: DataDir,
    /// Where container logs go (`/var/log/pods`).
    pub log_dir: PathBuf,
    /// Where shims keep libcontainer state and pods their network namespaces (`/run/rk3s`).
    pub run_dir: PathBuf,
    pub cluster_dns: Ipv4Addr,
    pub cluster_domain: String,
    /// `--private-registry` (k3s registries.yaml).
    pub private_registry: PathBuf,
    /// The Kubernetes version reported as kubeletVersion.
    pub version: String,
    /// `--kubelet-arg`: eviction thresholds, reservations, max pods.
    pub eviction: eviction::Config,
}

/// The running kubelet: shared by the pod workers and the log server.
pub struct Kubelet {
    pub client: kube::Client,
    pub config: Config,
    pub images: Arc<images::ImageService>,
    pub runtime: Arc<dyn runtime::Runtime>,
    pub network: Arc<dyn HostNetwork>,
    /// Pod UID → the latest object, for its worker.
    workers: Mutex<HashMap<String, watch::Sender<Option<Pod>>>>,
    /// `namespace/name` → what the log server needs to find a container's log files.
    pub views: Mutex<HashMap<String, worker::View>>,
    /// The last samples of the node's and containers' resource usage (`/stats/summary`).
    pub stats: stats::Collector,
    /// Every pod's published hostPorts, written to the node's rules as one set.
    host_ports: tokio::sync::Mutex<HostPorts>,
    /// The node conditions the eviction manager found.
    pressure: Mutex<node::Pressure>,
    /// Wakes the node loop to report changed conditions at once.
    node_changed: tokio::sync::Notify,
    /// Pod UID → the kill its worker has yet to carry out (evictions).
    kills: Mutex<HashMap<String, eviction::Kill>>,
}

#[derive(Debug, Default)]
struct HostPorts {
    by_pod: BTreeMap<String, Vec<hostport::Mapping>>,
    /// Whether the rules on the node are `by_pod` (false until the first write and after a
    /// failed one).
    written: bool,
}

impl Kubelet {
    pub fn new(
        client: kube::Client,
        config: Config,
        images: Arc<images::ImageService>,
        runtime: Arc<dyn runtime::Runtime>,
        network: Arc<dyn HostNetwork>,
    ) -> Arc<Kubelet> {
        Arc::new(Kubelet {
            client,
            config,
            images,
            runtime,
            network,
            workers: Mutex::new(HashMap::new()),
            views: Mutex::new(HashMap::new()),
            stats: stats::Collector::default(),
            host_ports: tokio::sync::Mutex::default(),
            pressure: Mutex::default(),
            node_changed: tokio::sync::Notify::new(),
            kills: Mutex::default(),
        })
    }

    /// The node conditions the eviction manager last found.
    pub fn pressure(&self) -> node::Pressure {
        self.pressure.lock().map(|p| *p).unwrap_or_default()
    }

    fn set_pressure(&self, pressure: node::Pressure) {
        let changed = self
            .pressure
            .lock()
            .map(|mut p| std::mem::replace(&mut *p, pressure) != pressure)
            .unwrap_or(false);
        if changed {
            tracing::info!(?pressure, "node conditions changed");
            self.node_changed.notify_one();
        }
    }

    /// The pods this kubelet runs that are neither finished nor being deleted or killed.
    fn active_pods(&self) -> Vec<Pod> {
        let kills: std::collections::HashSet<String> = self
            .kills
            .lock()
            .map(|k| k.keys().cloned().collect())
            .unwrap_or_default();
        let Ok(workers) = self.workers.lock() else {
            return Vec::new();
        };
        workers
            .iter()
            .filter(|(uid, _)| !kills.contains(*uid))
            .filter_map(|(_, tx)| tx.borrow().clone())
            .filter(|p| p.metadata.deletion_timestamp.is_none() && !worker::is_terminal_in_api(p))
            .collect()
    }

    /// Hands a kill to the pod's worker and wakes it.
    fn evict(&self, uid: &str, kill: eviction::Kill) {
        if let Ok(mut kills) = self.kills.lock() {
            kills.insert(uid.to_string(), kill);
        }
        if let Ok(workers) = self.workers.lock()
            && let Some(tx) = workers.get(uid)
        {
            tx.send_modify(|_| {});
        }
    }

    /// The kill waiting for pod `uid`, if any (taken: it is carried out once).
    pub fn take_kill(&self, uid: &str) -> Option<eviction::Kill> {
        self.kills.lock().ok()?.remove(uid)
    }

    /// Directory of one pod's kubelet files (volumes, rootfs mounts, etc-hosts, …).
    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        self.config.data_dir.agent().join("pods").join(uid)
    }

    /// Runs until the task is aborted: the node loop and the pod watch.
    pub async fn run(self: Arc<Self>) {
        // Airgap tarballs first, as k3s preloads them before the kubelet runs pods: a pod with
        // `imagePullPolicy: Never` must find its image.
        let images = self.images.clone();
        let dir = self.config.data_dir.agent_images();
        if let Err(e) = tokio::task::spawn_blocking(move || images.import_dir(&dir)).await {
            tracing::error!(error = %e, "importing airgap images");
        }
        tokio::spawn(self.clone().image_gc_loop());
        tokio::spawn(stats::run(self.clone()));
        tokio::spawn(eviction::run(self.clone()));
        let machine = node::Machine::read(self.config.data_dir.root());
        let node = loop {
            match node::register(&self.client, &self.config, &machine).await {
                Ok(n) => break n,
                Err(e) => {
                    tracing::warn!(error = %e, "registering the node; retrying");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        };
        tracing::info!(node = %self.config.node_name, "node registered");
        let node_uid = node.metadata.uid.clone().unwrap_or_default();
        tokio::spawn(self.clone().static_pods_loop(node_uid));
        tokio::spawn(self.clone().node_loop(node, machine));
        self.watch_pods().await;
    }

    /// Static pods from `<data-dir>/agent/pod-manifests/`, re-read every 20 s.
    async fn static_pods_loop(self: Arc<Self>, node_uid: String) {
        let dir = self.config.data_dir.agent().join("pod-manifests");
        let mut reported = Default::default();
        loop {
            static_pods::sync(
                &self.client,
                &dir,
                &self.config.node_name,
                &node_uid,
                &mut reported,
            )
            .await;
            tokio::time::sleep(static_pods::CHECK).await;
        }
    }

    /// Lease renewals, the pod network once the node has its podCIDR, and status reports.
    async fn node_loop(self: Arc<Self>, node: Node, machine: node::Machine) {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let mut status = node::StatusWriter::new();
        let mut network_ready: Option<String> = None;
        let mut last_lease = None::<std::time::Instant>;
        let reserved = self.config.eviction.reserved_for(&machine);
        loop {
            if last_lease.is_none_or(|t| t.elapsed() >= node::LEASE_RENEW) {
                match node::renew_lease(&self.client, &node).await {
                    Ok(()) => last_lease = Some(std::time::Instant::now()),
                    Err(e) => tracing::warn!(error = %e, "renewing the node lease"),
                }
            }
            // The pod network needs the node's podCIDR, assigned by the node IPAM controller.
            let cidr = nodes
                .get(&self.config.node_name)
                .await
                .ok()
                .and_then(|n| n.spec.and_then(|s| s.pod_cidr));
            if let Some(cidr) = cidr
                && network_ready.as_deref() != Some(cidr.as_str())
            {
                match cidr.parse::<ipnet::Ipv4Net>() {
                    Ok(net) => match self.network.configure_node(net).await {
                        Ok(()) => {
                            tracing::info!(%cidr, "pod network configured");
                            network_ready = Some(cidr);
                            status.invalidate();
                        }
                        Err(e) => tracing::warn!(error = %e, "configuring the pod network"),
                    },
                    Err(e) => tracing::warn!(%cidr, error = %e, "the node's podCIDR is not IPv4"),
                }
            }
            let ready = if network_ready.is_some() {
                Ok(())
            } else {
                Err("container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:the node has no podCIDR yet".to_string())
            };
            let images = self
                .images
                .list()
                .into_iter()
                .map(|i| {
                    // An imported image has no repo digest (its `repo_digest` is its id), and
                    // the node lists only repo digests and tags, as containerd reports them.
                    let mut names = vec![i.reference.clone()];
                    if i.repo_digest.contains('@') {
                        names.insert(0, i.repo_digest.clone());
                    }
                    (names, i.size)
                })
                .collect();
            let input = node::StatusInput {
                config: &self.config,
                machine: &machine,
                reserved: &reserved,
                pressure: self.pressure(),
                ready,
                images,
            };
            if let Err(e) = status
                .sync(&self.client, &self.config.node_name, &input)
                .await
            {
                tracing::warn!(error = %e, "writing the node status");
                status.invalidate();
            }
            let wait = if network_ready.is_some() {
                node::STATUS_CHECK
            } else {
                Duration::from_millis(250)
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.node_changed.notified() => {}
            }
        }
    }

    /// Image garbage collection every `images::gc::PERIOD` with upstream's default thresholds;
    /// images in use are those a container's root filesystem was made from.
    async fn image_gc_loop(self: Arc<Self>) {
        let policy = images::GcPolicy::default();
        loop {
            tokio::time::sleep(images::gc::PERIOD).await;
            let service = self.images.clone();
            let policy = policy.clone();
            match tokio::task::spawn_blocking(move || service.collect_garbage(&policy)).await {
                Ok(Ok(Some(o))) if o.freed < o.amount_to_free => {
                    let note = format!(
                        "Failed to garbage collect required amount of images. Attempted to free {} bytes, but only found {} bytes eligible to free.",
                        o.amount_to_free, o.freed
                    );
                    tracing::warn!(reason = "FreeDiskSpaceFailed", "{note}");
                    self.node_event("FreeDiskSpaceFailed", "GarbageCollect", note)
                        .await;
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "image garbage collection"),
                Err(e) => tracing::warn!(error = %e, "image garbage collection task"),
            }
        }
    }

    /// A Warning event about this Node, referenced as upstream's kubelet does (uid = name).
    async fn node_event(&self, reason: &str, action: &str, note: String) {
        use kube::runtime::events::{Event as KEvent, EventType, Recorder, Reporter};
        let recorder = Recorder::new(
            self.client.clone(),
            Reporter {
                controller: "kubelet".into(),
                instance: Some(self.config.node_name.clone()),
            },
        );
        let reference = k8s_openapi::api::core::v1::ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(self.config.node_name.clone()),
            uid: Some(self.config.node_name.clone()),
            ..Default::default()
        };
        let event = KEvent {
            type_: EventType::Warning,
            reason: reason.into(),
            note: Some(note),
            action: action.into(),
            secondary: None,
        };
        if let Err(e) = recorder.publish(&event, &reference).await {
            tracing::debug!(error = %e, "writing a node event");
        }
    }

    /// The pods bound to this node: each change goes to the pod's worker.
    async fn watch_pods(self: Arc<Self>) {
        let pods: Api<Pod> = Api::all(self.client.clone());
        let cfg =
            watcher::Config::default().fields(&format!("spec.nodeName={}", self.config.node_name));
        let mut stream = watcher::watcher(pods, cfg).boxed();
        let mut seen_in_list: Option<std::collections::HashSet<String>> = None;
        let mut first_list = true;
        while let Some(event) = stream.next().await {
            match event {
                Ok(Event::Init) => seen_in_list = Some(Default::default()),
                Ok(Event::InitApply(pod)) => {
                    if let (Some(seen), Some(uid)) =
                        (seen_in_list.as_mut(), pod.metadata.uid.clone())
                    {
                        seen.insert(uid);
                    }
                    self.dispatch(pod);
                }
                Ok(Event::InitDone) => {
                    let seen = seen_in_list.take().unwrap_or_default();
                    // Pods deleted while the watch was down.
                    let gone: Vec<String> = self
                        .workers
                        .lock()
                        .map(|w| w.keys().filter(|u| !seen.contains(*u)).cloned().collect())
                        .unwrap_or_default();
                    for uid in gone {
                        self.forget(&uid);
                    }
                    if first_list {
                        first_list = false;
                        let me = self.clone();
                        tokio::spawn(async move { me.clean_orphans(seen).await });
                    }
                }
                Ok(Event::Apply(pod)) => self.dispatch(pod),
                Ok(Event::Delete(pod)) => {
                    if let Some(uid) = pod.metadata.uid {
                        self.forget(&uid);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "watching this node's pods");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    fn dispatch(self: &Arc<Self>, pod: Pod) {
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        let Ok(mut workers) = self.workers.lock() else {
            return;
        };
        if let Some(tx) = workers.get(&uid) {
            let _ = tx.send(Some(pod));
            return;
        }
        let (tx, rx) = watch::channel(Some(pod));
        workers.insert(uid.clone(), tx);
        let me = self.clone();
        tokio::spawn(async move {
            worker::Worker::run(me.clone(), uid.clone(), rx).await;
            if let Ok(mut w) = me.workers.lock() {
                w.remove(&uid);
            }
            if let Ok(mut k) = me.kills.lock() {
                k.remove(&uid);
            }
        });
    }

    /// The pod is gone from the API: its worker stops everything and ends.
    fn forget(&self, uid: &str) {
        if let Ok(workers) = self.workers.lock()
            && let Some(tx) = workers.get(uid)
        {
            let _ = tx.send(None);
        }
    }

    /// Records the hostPorts pod `uid` publishes (empty: none, or the pod is gone) and rewrites
    /// the node's hostPort rules when the set changed or is not on the node yet.
    pub async fn publish_host_ports(&self, uid: &str, mappings: Vec<hostport::Mapping>) {
        let mut hp = self.host_ports.lock().await;
        let before = hp.by_pod.get(uid).cloned().unwrap_or_default();
        if mappings.is_empty() {
            hp.by_pod.remove(uid);
        } else {
            hp.by_pod.insert(uid.to_string(), mappings.clone());
        }
        // A pod without hostPorts does not write anything by itself; the first write of this
        // process happens for the first pod with some, or when the orphans are cleaned.
        if before == mappings && (hp.written || mappings.is_empty()) {
            return;
        }
        Self::write_host_ports(&self.network, &mut hp).await;
    }

    async fn write_host_ports(network: &Arc<dyn HostNetwork>, hp: &mut HostPorts) {
        let all = hp.by_pod.values().flatten().cloned().collect();
        match network.set_host_ports(all).await {
            Ok(()) => hp.written = true,
            Err(e) => {
                hp.written = false;
                tracing::warn!(error = %e, "writing the hostPort rules");
            }
        }
    }

    /// Containers, sandboxes and pod directories of pods that no longer exist (deleted while
    /// this process was down).
    async fn clean_orphans(&self, live: std::collections::HashSet<String>) {
        if let Ok(list) = self.runtime.list() {
            for (config, _) in list {
                let uid = config
                    .labels
                    .get(worker::LABEL_POD_UID)
                    .cloned()
                    .unwrap_or_default();
                if live.contains(&uid) {
                    continue;
                }
                tracing::info!(id = %config.id, pod = %uid, "removing the container of a deleted pod");
                let _ = self.runtime.stop(&config.id, Duration::from_secs(2)).await;
                let _ = self.runtime.remove(&config.id).await;
            }
        }
        if let Ok(uids) = self.network.pods() {
            for uid in uids.into_iter().filter(|u| !live.contains(u)) {
                let _ = self.network.teardown_pod(&uid).await;
            }
        }
        // hostPort rules of an earlier run for pods that are gone.
        {
            let mut hp = self.host_ports.lock().await;
            hp.by_pod.retain(|uid, _| live.contains(uid));
            Self::write_host_ports(&self.network, &mut hp).await;
        }
        let pods = self.config.data_dir.agent().join("pods");
        if let Ok(dir) = std::fs::read_dir(&pods) {
            for e in dir.flatten() {
                let uid = e.file_name().to_string_lossy().into_owned();
                if !live.contains(&uid) {
                    worker::remove_pod_dir(&e.path());
                }
            }
        }
    }
}
