//! The node lifecycle controller (upstream's `nodelifecycle` with TaintBasedEvictions and
//! TaintNodesByCondition), the taint eviction controller (upstream's `tainteviction`, formerly
//! the NoExecute taint manager) and node IPAM (upstream's `nodeipam` range allocator), which
//! all work on the same Node cache:
//!
//! - a node whose kubelet stopped renewing its Lease (and posting status) for the grace period
//!   (40 s) gets its conditions set to Unknown, its pods marked not ready, and the
//!   `node.kubernetes.io/unreachable` taints; a node whose Ready condition is False gets the
//!   `not-ready` ones; pressure conditions and `spec.unschedulable` get their NoSchedule taints;
//! - pods on a node with NoExecute taints they do not tolerate are deleted, at once or when
//!   their `tolerationSeconds` (300 s by default, set by the API server's defaulting) run out;
//! - every node gets a `spec.podCIDR` from the cluster CIDR, released when the node goes.
//!
//! Not done: upstream's zone-aware eviction rate limiting (one zone here).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, ObjectReference, Pod, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use tokio::sync::Notify;

use super::events::Events;
use super::informer::{Change, Informer, lock};
use super::ipam::{Allocator, Cidr};

pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
/// The taints this controller owns: they are added and removed only here.
const MANAGED: &[&str] = &[
    NOT_READY,
    UNREACHABLE,
    "node.kubernetes.io/memory-pressure",
    "node.kubernetes.io/disk-pressure",
    "node.kubernetes.io/pid-pressure",
    "node.kubernetes.io/network-unavailable",
    "node.kubernetes.io/unschedulable",
];
const COMPONENT: &str = "node-controller";

/// What the controller needs.
#[derive(Clone, Debug)]
pub struct Config {
    /// Upstream's `--node-monitor-grace-period`.
    pub grace: Duration,
    /// Upstream's `--node-monitor-period`.
    pub period: Duration,
    /// The cluster CIDR pods' addresses come from (`--cluster-cidr`); `None` turns IPAM off.
    pub cluster_cidr: Option<Cidr>,
    /// The size of each node's block (`--node-cidr-mask-size`, 24).
    pub node_cidr_len: u8,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            grace: Duration::from_secs(40),
            period: Duration::from_secs(5),
            cluster_cidr: None,
            node_cidr_len: 24,
        }
    }
}

// ---- pure decisions ----

fn condition<'a>(node: &'a Node, type_: &str) -> Option<&'a NodeCondition> {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == type_))
}

/// The conditions of a node whose kubelet went silent (upstream's `tryUpdateNodeHealth`):
/// Ready and the pressure conditions become Unknown (added when the kubelet never posted
/// them); `None` when they already are.
pub fn stale_conditions(node: &Node, now: Timestamp) -> Option<Vec<NodeCondition>> {
    let mut conditions = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let mut changed = false;
    for type_ in ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"] {
        match conditions.iter_mut().find(|c| c.type_ == type_) {
            Some(c) if c.status == "Unknown" => {}
            Some(c) => {
                c.status = "Unknown".into();
                c.reason = Some("NodeStatusUnknown".into());
                c.message = Some("Kubelet stopped posting node status.".into());
                c.last_transition_time = Some(Time(now));
                changed = true;
            }
            None => {
                conditions.push(NodeCondition {
                    type_: type_.into(),
                    status: "Unknown".into(),
                    reason: Some("NodeStatusNeverUpdated".into()),
                    message: Some("Kubelet never posted node status.".into()),
                    last_heartbeat_time: node.metadata.creation_timestamp.clone(),
                    last_transition_time: Some(Time(now)),
                });
                changed = true;
            }
        }
    }
    changed.then_some(conditions)
}

/// The node's taints with the managed ones made to match its conditions (upstream's
/// `doNoScheduleTaintingPass` and `doNoExecuteTaintingPass`); `None` when nothing changes.
/// Taints that stay keep their `timeAdded`.
pub fn desired_taints(node: &Node, now: Timestamp) -> Option<Vec<Taint>> {
    let current: Vec<Taint> = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let status = |t: &str| condition(node, t).map(|c| c.status.as_str());
    let mut want: Vec<(&str, &str)> = Vec::new();
    match status("Ready") {
        Some("False") => want.extend([(NOT_READY, "NoSchedule"), (NOT_READY, "NoExecute")]),
        Some("Unknown") => want.extend([(UNREACHABLE, "NoSchedule"), (UNREACHABLE, "NoExecute")]),
        _ => {}
    }
    for (cond, key) in [
        ("MemoryPressure", "node.kubernetes.io/memory-pressure"),
        ("DiskPressure", "node.kubernetes.io/disk-pressure"),
        ("PIDPressure", "node.kubernetes.io/pid-pressure"),
        (
            "NetworkUnavailable",
            "node.kubernetes.io/network-unavailable",
        ),
    ] {
        if status(cond) == Some("True") {
            want.push((key, "NoSchedule"));
        }
    }
    if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        want.push(("node.kubernetes.io/unschedulable", "NoSchedule"));
    }
    let mut next: Vec<Taint> = current
        .iter()
        .filter(|t| {
            !MANAGED.contains(&t.key.as_str())
                || want.iter().any(|(k, e)| *k == t.key && *e == t.effect)
        })
        .cloned()
        .collect();
    for (key, effect) in &want {
        if !next.iter().any(|t| t.key == *key && t.effect == *effect) {
            next.push(Taint {
                key: (*key).into(),
                effect: (*effect).into(),
                value: None,
                time_added: Some(Time(now)),
            });
        }
    }
    (next != current).then_some(next)
}

/// Upstream's `Toleration.ToleratesTaint` (shared by the controllers that place or evict
/// pods; the scheduler, a separate component, has its own).
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    let effect = t.effect.as_deref().unwrap_or_default();
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = t.key.as_deref().unwrap_or_default();
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match t.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "" | "Equal" => {
            t.value.as_deref().unwrap_or_default() == taint.value.as_deref().unwrap_or_default()
        }
        _ => false,
    }
}

/// When the taint eviction controller deletes a pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Eviction {
    Never,
    Now,
    At(Timestamp),
}

/// Upstream's `processPodOnNode`: a NoExecute taint the pod does not tolerate evicts it now;
/// otherwise the shortest `tolerationSeconds` of the tolerations in use, counted from when the
/// taint was added, is how long it may stay (forever when none sets it).
pub fn eviction(pod: &Pod, taints: &[Taint], now: Timestamp) -> Eviction {
    let tolerations: &[Toleration] = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or_default();
    let mut deadline: Option<Timestamp> = None;
    for taint in taints.iter().filter(|t| t.effect == "NoExecute") {
        let used: Vec<&Toleration> = tolerations.iter().filter(|t| tolerates(t, taint)).collect();
        if used.is_empty() {
            return Eviction::Now;
        }
        let Some(seconds) = used.iter().filter_map(|t| t.toleration_seconds).min() else {
            continue;
        };
        let since = taint.time_added.as_ref().map(|t| t.0).unwrap_or(now);
        let at = since
            .checked_add(SignedDuration::from_secs(seconds.max(0)))
            .unwrap_or(since);
        deadline = Some(deadline.map_or(at, |d| d.min(at)));
    }
    match deadline {
        None => Eviction::Never,
        Some(at) if at <= now => Eviction::Now,
        Some(at) => Eviction::At(at),
    }
}

// ---- the controller ----

struct State {
    /// Per node: the last (lease renewTime, Ready heartbeat) seen and when it changed, on this
    /// process's clock (upstream's `probeTimestamp`).
    observed: HashMap<String, (String, Instant)>,
    ipam: Option<Allocator>,
}

pub struct Controller {
    client: Client,
    config: Config,
    nodes: Arc<Informer<Node>>,
    pods: Arc<Informer<Pod>>,
    leases: Arc<Informer<Lease>>,
    events: Events,
    state: Mutex<State>,
    wake: Notify,
}

impl Controller {
    pub fn new(
        client: Client,
        config: Config,
        nodes: Arc<Informer<Node>>,
        pods: Arc<Informer<Pod>>,
        leases: Arc<Informer<Lease>>,
    ) -> Arc<Self> {
        let ipam = config
            .cluster_cidr
            .and_then(|c| Allocator::new(c, config.node_cidr_len));
        let this = Arc::new(Controller {
            events: Events::start(client.clone(), COMPONENT),
            client,
            config,
            nodes,
            pods,
            leases,
            state: Mutex::new(State {
                observed: HashMap::new(),
                ipam,
            }),
            wake: Notify::new(),
        });
        let weak = Arc::downgrade(&this);
        this.nodes.on_change(move |change| {
            let Some(c) = weak.upgrade() else { return };
            if let Change::Deleted(node) = change {
                let mut state = lock(&c.state);
                state.observed.remove(&node.name_any());
                if let Some(ipam) = state.ipam.as_mut() {
                    for cidr in pod_cidrs(node) {
                        ipam.release(&cidr);
                    }
                }
            }
            c.wake.notify_one();
        });
        this
    }

    pub async fn run(self: Arc<Self>) {
        self.nodes.wait_synced().await;
        self.pods.wait_synced().await;
        self.leases.wait_synced().await;
        {
            let mut state = lock(&self.state);
            if let Some(ipam) = state.ipam.as_mut() {
                for node in self.nodes.list() {
                    for cidr in pod_cidrs(&node) {
                        ipam.occupy(&cidr);
                    }
                }
            }
        }
        // Evictions are due at arbitrary seconds: the pass runs every second, the health
        // checks of the pass only every `period`.
        let mut last_health = Instant::now() - self.config.period;
        loop {
            self.allocate_cidrs().await;
            if last_health.elapsed() >= self.config.period {
                last_health = Instant::now();
                self.monitor_health().await;
            }
            self.evict().await;
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    fn node_api(&self) -> Api<Node> {
        Api::all(self.client.clone())
    }

    fn node_ref(node: &Node) -> ObjectReference {
        ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: node.metadata.name.clone(),
            uid: node.metadata.name.clone(),
            ..ObjectReference::default()
        }
    }

    /// Node IPAM: a block for every node without one.
    async fn allocate_cidrs(&self) {
        for node in self.nodes.list() {
            if node
                .spec
                .as_ref()
                .and_then(|s| s.pod_cidr.as_ref())
                .is_some()
            {
                continue;
            }
            let block = {
                let mut state = lock(&self.state);
                let Some(ipam) = state.ipam.as_mut() else {
                    return;
                };
                ipam.allocate()
            };
            let Some(block) = block else {
                self.events.normal(
                    Self::node_ref(&node),
                    "CIDRNotAvailable",
                    format!("Node {} status is now: CIDRNotAvailable", node.name_any()),
                );
                continue;
            };
            let patch = serde_json::json!({"spec": {
                "podCIDR": block.to_string(),
                "podCIDRs": [block.to_string()],
            }});
            match self
                .node_api()
                .patch(
                    &node.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
            {
                Ok(_) => {
                    tracing::info!(node = %node.name_any(), cidr = %block, "allocated the node's pod CIDR")
                }
                Err(e) => {
                    tracing::warn!(node = %node.name_any(), error = %e, "setting the pod CIDR");
                    if let Some(ipam) = lock(&self.state).ipam.as_mut() {
                        ipam.release(&block);
                    }
                }
            }
        }
    }

    /// Upstream's `monitorNodeHealth`.
    async fn monitor_health(&self) {
        let now = Timestamp::now();
        for node in self.nodes.list() {
            let name = node.name_any();
            let renew = self
                .leases
                .get(&format!("kube-node-lease/{name}"))
                .and_then(|l| l.spec.as_ref().and_then(|s| s.renew_time.clone()))
                .map(|t| t.0.to_string())
                .unwrap_or_default();
            let heartbeat = condition(&node, "Ready")
                .and_then(|c| c.last_heartbeat_time.as_ref())
                .map(|t| t.0.to_string())
                .unwrap_or_default();
            let seen = format!("{renew}|{heartbeat}");
            let stale = {
                let mut state = lock(&self.state);
                let entry = state
                    .observed
                    .entry(name.clone())
                    .or_insert_with(|| (seen.clone(), Instant::now()));
                if entry.0 != seen {
                    *entry = (seen, Instant::now());
                }
                entry.1.elapsed() > self.config.grace
            };
            let mut node = (*node).clone();
            if stale && let Some(conditions) = stale_conditions(&node, now) {
                let was_ready = condition(&node, "Ready").is_some_and(|c| c.status == "True");
                let patch = serde_json::json!({"status": {"conditions": conditions}});
                match self
                    .node_api()
                    .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(updated) => {
                        node = updated;
                        self.events.normal(
                            Self::node_ref(&node),
                            "NodeNotReady",
                            format!("Node {name} status is now: NodeNotReady"),
                        );
                        if was_ready {
                            self.mark_pods_not_ready(&name).await;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(node = %name, error = %e, "marking the node unknown");
                        continue;
                    }
                }
            }
            if let Some(taints) = desired_taints(&node, now) {
                let patch = serde_json::json!({
                    "metadata": {"resourceVersion": node.metadata.resource_version},
                    "spec": {"taints": taints},
                });
                if let Err(e) = self
                    .node_api()
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    tracing::debug!(node = %name, error = %e, "updating taints; retrying");
                }
            }
        }
    }

    fn pods_on(&self, node: &str) -> Vec<Arc<Pod>> {
        self.pods
            .list()
            .into_iter()
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node))
            .collect()
    }

    /// Upstream's `MarkPodsNotReady`.
    async fn mark_pods_not_ready(&self, node: &str) {
        let now = Time(Timestamp::now());
        for pod in self.pods_on(node) {
            let ready = pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            if !ready {
                continue;
            }
            let api: Api<Pod> =
                Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default());
            let patch = serde_json::json!({"status": {"conditions": [
                {"type": "Ready", "status": "False", "lastTransitionTime": now}
            ]}});
            if let Err(e) = api
                .patch_status(
                    &pod.name_any(),
                    &PatchParams::default(),
                    &Patch::Strategic(patch),
                )
                .await
            {
                tracing::debug!(pod = %pod.name_any(), error = %e, "marking a pod not ready");
            }
        }
    }

    /// The taint eviction controller's pass over pods on nodes with NoExecute taints.
    async fn evict(&self) {
        let now = Timestamp::now();
        let tainted: BTreeMap<String, Vec<Taint>> = self
            .nodes
            .list()
            .iter()
            .filter_map(|n| {
                let taints: Vec<Taint> = n
                    .spec
                    .as_ref()
                    .and_then(|s| s.taints.as_ref())
                    .map(|ts| {
                        ts.iter()
                            .filter(|t| t.effect == "NoExecute")
                            .cloned()
                            .collect()
                    })
                    .unwrap_or_default();
                (!taints.is_empty()).then(|| (n.name_any(), taints))
            })
            .collect();
        if tainted.is_empty() {
            return;
        }
        for pod in self.pods.list() {
            let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) else {
                continue;
            };
            let Some(taints) = tainted.get(node) else {
                continue;
            };
            if pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            if eviction(&pod, taints, now) != Eviction::Now {
                continue;
            }
            let (ns, name) = (pod.namespace().unwrap_or_default(), pod.name_any());
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
            let condition = serde_json::json!({"status": {"conditions": [{
                "type": "DisruptionTarget",
                "status": "True",
                "reason": "DeletionByTaintManager",
                "message": "Taint manager: deleting due to NoExecute taint",
                "lastTransitionTime": Time(now),
            }]}});
            let _ = api
                .patch_status(&name, &PatchParams::default(), &Patch::Strategic(condition))
                .await;
            self.events.normal(
                ObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: Some(name.clone()),
                    namespace: Some(ns.clone()),
                    uid: pod.metadata.uid.clone(),
                    ..ObjectReference::default()
                },
                "TaintManagerEviction",
                format!("Marking for deletion Pod {ns}/{name}"),
            );
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {
                    tracing::info!(pod = %format!("{ns}/{name}"), %node, "evicted for a NoExecute taint")
                }
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => tracing::warn!(pod = %format!("{ns}/{name}"), error = %e, "evicting"),
            }
        }
    }
}

fn pod_cidrs(node: &Node) -> Vec<Cidr> {
    let spec = node.spec.as_ref();
    spec.and_then(|s| s.pod_cidrs.clone())
        .or_else(|| spec.and_then(|s| s.pod_cidr.clone()).map(|c| vec![c]))
        .unwrap_or_default()
        .iter()
        .filter_map(|c| c.parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(v: serde_json::Value) -> Node {
        serde_json::from_value(v).unwrap()
    }

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    #[test]
    fn a_silent_node_turns_unknown_once() {
        let n = node(json!({
            "metadata": {"name": "n1"},
            "status": {"conditions": [
                {"type": "Ready", "status": "True", "reason": "KubeletReady"},
                {"type": "MemoryPressure", "status": "False"},
            ]},
        }));
        let cs = stale_conditions(&n, ts(100)).unwrap();
        let ready = cs.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(ready.status, "Unknown");
        assert_eq!(ready.reason.as_deref(), Some("NodeStatusUnknown"));
        assert_eq!(
            ready.message.as_deref(),
            Some("Kubelet stopped posting node status.")
        );
        let never = cs.iter().find(|c| c.type_ == "DiskPressure").unwrap();
        assert_eq!(never.reason.as_deref(), Some("NodeStatusNeverUpdated"));
        let mut n = n;
        n.status.as_mut().unwrap().conditions = Some(cs);
        assert_eq!(stale_conditions(&n, ts(200)), None);
    }

    #[test]
    fn taints_follow_conditions_and_keep_their_time() {
        let unknown = node(json!({
            "metadata": {"name": "n1"},
            "spec": {"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]},
            "status": {"conditions": [{"type": "Ready", "status": "Unknown"},
                                      {"type": "DiskPressure", "status": "True"}]},
        }));
        let taints = desired_taints(&unknown, ts(100)).unwrap();
        let keys: Vec<(&str, &str)> = taints
            .iter()
            .map(|t| (t.key.as_str(), t.effect.as_str()))
            .collect();
        assert_eq!(
            keys,
            [
                ("dedicated", "NoSchedule"),
                (UNREACHABLE, "NoSchedule"),
                (UNREACHABLE, "NoExecute"),
                ("node.kubernetes.io/disk-pressure", "NoSchedule"),
            ]
        );
        let mut tainted = unknown.clone();
        tainted.spec.as_mut().unwrap().taints = Some(taints);
        assert_eq!(desired_taints(&tainted, ts(200)), None);
        // Ready again: the managed taints go, the user's stays.
        tainted.status.as_mut().unwrap().conditions = Some(vec![NodeCondition {
            type_: "Ready".into(),
            status: "True".into(),
            ..NodeCondition::default()
        }]);
        let back = desired_taints(&tainted, ts(300)).unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].key, "dedicated");
    }

    #[test]
    fn pods_are_evicted_now_or_after_their_toleration() {
        let taint = Taint {
            key: UNREACHABLE.into(),
            effect: "NoExecute".into(),
            value: None,
            time_added: Some(Time(ts(1000))),
        };
        let pod = |tolerations: serde_json::Value| -> Pod {
            serde_json::from_value(json!({"spec": {"containers": [], "tolerations": tolerations}}))
                .unwrap()
        };
        let intolerant = pod(json!([]));
        assert_eq!(
            eviction(&intolerant, std::slice::from_ref(&taint), ts(1000)),
            Eviction::Now
        );
        let default = pod(
            json!([{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]),
        );
        assert_eq!(
            eviction(&default, std::slice::from_ref(&taint), ts(1010)),
            Eviction::At(ts(1300))
        );
        assert_eq!(
            eviction(&default, std::slice::from_ref(&taint), ts(1300)),
            Eviction::Now
        );
        let forever = pod(json!([{"operator": "Exists"}]));
        assert_eq!(eviction(&forever, &[taint], ts(99_999)), Eviction::Never);
    }
}
