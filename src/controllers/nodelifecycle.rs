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
//! The NoExecute taints are added zone by zone (zones keyed by region and zone labels as
//! upstream's `GetZoneKey`, see `zone_of`) at a limited rate, as upstream's zone-aware
//! eviction: each zone is Normal, PartialDisruption (more than 2 and at least 55 % of its
//! nodes not ready) or FullDisruption (none ready); a zone taints 0.1 node/s, in partial
//! disruption 0.01 node/s when it has more than 50 nodes and none otherwise. When every zone
//! is fully disrupted (the control plane is more likely cut off than every node down), nothing
//! is tainted and the NoExecute unreachable/not-ready taints are taken off, until some node is
//! ready again.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
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
/// The labels a node's zone key is made of, as upstream's `GetZoneKey`
/// (k8s.io/component-helpers/node/topology) reads them: the deprecated beta labels first.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
pub const REGION_LABEL: &str = "topology.kubernetes.io/region";
pub const BETA_ZONE_LABEL: &str = "failure-domain.beta.kubernetes.io/zone";
pub const BETA_REGION_LABEL: &str = "failure-domain.beta.kubernetes.io/region";
/// Upstream's `--unhealthy-zone-threshold`.
pub const UNHEALTHY_ZONE_THRESHOLD: f64 = 0.55;
/// Upstream's `--large-cluster-size-threshold`.
pub const LARGE_CLUSTER_SIZE_THRESHOLD: usize = 50;
/// Upstream's `--node-eviction-rate`: NoExecute taints per second in a healthy zone.
pub const EVICTION_QPS: f64 = 0.1;
/// Upstream's `--secondary-node-eviction-rate`: in a partially disrupted large zone.
pub const SECONDARY_EVICTION_QPS: f64 = 0.01;

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

/// The NoExecute taint a node's Ready condition calls for (upstream's
/// `processTaintBaseEviction`): not-ready when False, unreachable when Unknown.
pub fn no_execute_key(node: &Node) -> Option<&'static str> {
    match condition(node, "Ready").map(|c| c.status.as_str()) {
        Some("False") => Some(NOT_READY),
        Some("Unknown") => Some(UNREACHABLE),
        _ => None,
    }
}

fn has_taint(node: &Node, key: &str, effect: &str) -> bool {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|ts| ts.iter().any(|t| t.key == key && t.effect == effect))
}

/// Whether the node waits for the NoExecute taint its condition calls for: it has neither
/// that one nor the opposite one (which is swapped at once, as upstream).
pub fn needs_no_execute(node: &Node) -> bool {
    no_execute_key(node).is_some()
        && [NOT_READY, UNREACHABLE]
            .iter()
            .all(|k| !has_taint(node, k, "NoExecute"))
}

/// The node's taints with the managed ones made to match its conditions (upstream's
/// `doNoScheduleTaintingPass` and `doNoExecuteTaintingPass`); `None` when nothing changes.
/// Taints that stay keep their `timeAdded`. A missing NoExecute not-ready/unreachable taint is
/// only added when `add_no_execute` (the zone's rate let the node through); one that is there
/// is kept, swapped for the opposite one when the condition changed, or removed once the node
/// is ready.
pub fn desired_taints(node: &Node, now: Timestamp, add_no_execute: bool) -> Option<Vec<Taint>> {
    let current: Vec<Taint> = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let status = |t: &str| condition(node, t).map(|c| c.status.as_str());
    let mut want: Vec<(&str, &str)> = Vec::new();
    match status("Ready") {
        Some("False") => want.push((NOT_READY, "NoSchedule")),
        Some("Unknown") => want.push((UNREACHABLE, "NoSchedule")),
        _ => {}
    }
    if let Some(key) = no_execute_key(node)
        && (add_no_execute || !needs_no_execute(node))
    {
        want.push((key, "NoExecute"));
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

/// The zone key of a node, upstream's `GetZoneKey`: the zone from the
/// `failure-domain.beta.kubernetes.io/zone` label when the node has it (even empty), else
/// from `topology.kubernetes.io/zone`; the region likewise from the beta then the GA region
/// label; "" when both are empty, else `region + ":\0:" + zone` (the NUL keeps a colon in a
/// region or zone name from making two keys equal).
pub fn zone_of(node: &Node) -> String {
    let labels = node.labels();
    let read = |beta: &str, ga: &str| {
        labels
            .get(beta)
            .or_else(|| labels.get(ga))
            .map_or("", String::as_str)
    };
    let zone = read(BETA_ZONE_LABEL, ZONE_LABEL);
    let region = read(BETA_REGION_LABEL, REGION_LABEL);
    if zone.is_empty() && region.is_empty() {
        return String::new();
    }
    format!("{region}:\0:{zone}")
}

/// Upstream's zone states; `Initial` is a zone seen for the first time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZoneState {
    Initial,
    Normal,
    PartialDisruption,
    FullDisruption,
}

/// Upstream's `ComputeZoneState` from the number of ready and not ready nodes of a zone.
pub fn zone_state(ready: usize, not_ready: usize) -> ZoneState {
    if ready == 0 && not_ready > 0 {
        ZoneState::FullDisruption
    } else if not_ready > 2
        && not_ready as f64 / (not_ready + ready) as f64 >= UNHEALTHY_ZONE_THRESHOLD
    {
        ZoneState::PartialDisruption
    } else {
        ZoneState::Normal
    }
}

/// Upstream's `setLimiterInZone`: the tainting rate of a zone of `size` nodes in `state`
/// (`ReducedQPSFunc` in partial disruption, `HealthyQPSFunc` otherwise).
pub fn zone_qps(state: ZoneState, size: usize) -> f64 {
    match state {
        ZoneState::PartialDisruption if size > LARGE_CLUSTER_SIZE_THRESHOLD => {
            SECONDARY_EVICTION_QPS
        }
        ZoneState::PartialDisruption => 0.0,
        _ => EVICTION_QPS,
    }
}

/// What upstream's `handleDisruption` decides from the zones' health.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Disruption {
    /// The zone states to keep.
    pub states: BTreeMap<String, ZoneState>,
    /// Zones whose tainting rate changes, with the new rate.
    pub qps: BTreeMap<String, f64>,
    /// Every zone just became fully disrupted: take the NoExecute taints off every node.
    pub mark_all_reachable: bool,
    /// Some zone just came back from all being fully disrupted: the nodes' health probes
    /// start over, so none is judged on the silence of the disruption.
    pub reset_probes: bool,
}

/// Upstream's `handleDisruption`: `prev` are the zone states so far, `health` the ready and
/// not ready node counts of every zone that has nodes now.
pub fn handle_disruption(
    prev: &BTreeMap<String, ZoneState>,
    health: &BTreeMap<String, (usize, usize)>,
) -> Disruption {
    let new: BTreeMap<String, ZoneState> = health
        .iter()
        .map(|(z, (ready, not_ready))| (z.clone(), zone_state(*ready, *not_ready)))
        .collect();
    let all_are_full = new.values().all(|s| *s == ZoneState::FullDisruption);
    // Zones without nodes are forgotten; new ones start Initial.
    let mut states: BTreeMap<String, ZoneState> = prev
        .iter()
        .filter(|(z, _)| health.contains_key(*z))
        .map(|(z, s)| (z.clone(), *s))
        .collect();
    for z in health.keys() {
        states.entry(z.clone()).or_insert(ZoneState::Initial);
    }
    let all_were_full = states.values().all(|s| *s == ZoneState::FullDisruption);
    let size = |z: &str| health.get(z).map_or(0, |(r, n)| r + n);
    let mut out = Disruption::default();
    if all_are_full && all_were_full {
        out.states = states;
        return out;
    }
    if all_are_full {
        // Entering the disruption mode: no zone taints any more.
        out.mark_all_reachable = true;
        for z in states.keys() {
            out.qps.insert(z.clone(), 0.0);
        }
        out.states = states
            .into_keys()
            .map(|z| (z, ZoneState::FullDisruption))
            .collect();
        return out;
    }
    out.reset_probes = all_were_full;
    for (z, state) in states.iter_mut() {
        let next = new[z];
        if all_were_full || *state != next {
            out.qps.insert(z.clone(), zone_qps(next, size(z)));
            *state = next;
        }
    }
    out.states = states;
    out
}

/// Upstream's `flowcontrol` token bucket with a burst of 1 (`EvictionRateLimiterBurst`), or
/// one that never lets anything through when its rate is 0 (`NewFakeNeverRateLimiter`).
#[derive(Clone, Debug)]
pub struct TokenBucket {
    qps: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(qps: f64, now: Instant) -> TokenBucket {
        TokenBucket {
            qps,
            tokens: if qps > 0.0 { 1.0 } else { 0.0 },
            last: now,
        }
    }

    pub fn qps(&self) -> f64 {
        self.qps
    }

    pub fn try_accept(&mut self, now: Instant) -> bool {
        if self.qps <= 0.0 {
            return false;
        }
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.qps).min(1.0);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Upstream's `SwapLimiter`: a new bucket at the new rate, drained when the old one was
    /// empty (a zone waiting for a token keeps waiting).
    pub fn swap(&mut self, qps: f64, now: Instant) {
        if self.qps == qps {
            return;
        }
        let empty = !self.try_accept(now);
        *self = TokenBucket::new(qps, now);
        if empty && qps > 0.0 {
            self.try_accept(now);
        }
    }
}

/// Upstream's `RateLimitedTimedQueue` of one zone: the nodes waiting for their NoExecute
/// taint, first come first served at the zone's rate. A node stays known (and is not queued
/// again) once tainted, until it is ready again.
#[derive(Clone, Debug)]
pub struct ZoneTainter {
    pub limiter: TokenBucket,
    queue: VecDeque<String>,
    known: HashSet<String>,
}

impl ZoneTainter {
    pub fn new(now: Instant) -> ZoneTainter {
        ZoneTainter {
            limiter: TokenBucket::new(EVICTION_QPS, now),
            queue: VecDeque::new(),
            known: HashSet::new(),
        }
    }

    /// Queues `node` unless it is known already.
    pub fn add(&mut self, node: &str) {
        if self.known.insert(node.to_string()) {
            self.queue.push_back(node.to_string());
        }
    }

    /// Forgets `node` (ready again, gone, or untainted on entering the disruption mode).
    pub fn remove(&mut self, node: &str) {
        self.known.remove(node);
        self.queue.retain(|n| n != node);
    }

    /// Queues a known node again after its taint could not be written.
    pub fn retry(&mut self, node: &str) {
        if self.known.contains(node) && !self.queue.iter().any(|n| n == node) {
            self.queue.push_back(node.to_string());
        }
    }

    /// The next node to taint, if the zone's rate allows one now.
    pub fn next(&mut self, now: Instant) -> Option<String> {
        if self.queue.is_empty() || !self.limiter.try_accept(now) {
            return None;
        }
        self.queue.pop_front()
    }
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
    /// Upstream's `zoneStates` and `zoneNoExecuteTainter`.
    zones: BTreeMap<String, ZoneState>,
    tainters: HashMap<String, ZoneTainter>,
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
                zones: BTreeMap::new(),
                tainters: HashMap::new(),
            }),
            wake: Notify::new(),
        });
        let weak = Arc::downgrade(&this);
        this.nodes.on_change(move |change| {
            let Some(c) = weak.upgrade() else { return };
            if let Change::Deleted(node) = change {
                let mut state = lock(&c.state);
                state.observed.remove(&node.name_any());
                for tainter in state.tainters.values_mut() {
                    tainter.remove(&node.name_any());
                }
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
            self.taint_pass().await;
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
        // Per zone: ready and not ready nodes, for `handle_disruption`.
        let mut health: BTreeMap<String, (usize, usize)> = BTreeMap::new();
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
                        count_ready(&mut health, &node);
                        continue;
                    }
                }
            }
            if let Some(taints) = desired_taints(&node, now, false) {
                self.write_taints(&node, taints).await;
            }
            // Upstream's `processTaintBaseEviction`: a node that needs its NoExecute taint
            // waits in its zone's queue; a ready one leaves it.
            let zone = zone_of(&node);
            let ready = no_execute_key(&node).is_none();
            {
                let mut state = lock(&self.state);
                let tainter = state
                    .tainters
                    .entry(zone.clone())
                    .or_insert_with(|| ZoneTainter::new(Instant::now()));
                if ready {
                    tainter.remove(&name);
                } else if needs_no_execute(&node) {
                    tainter.add(&name);
                }
            }
            count_ready(&mut health, &node);
        }
        self.handle_disruption(&health).await;
    }

    /// Writes a node's taints, refused (409) when the node changed since it was read; the
    /// next pass tries again.
    async fn write_taints(&self, node: &Node, taints: Vec<Taint>) -> bool {
        let patch = serde_json::json!({
            "metadata": {"resourceVersion": node.metadata.resource_version},
            "spec": {"taints": taints},
        });
        let name = node.name_any();
        match self
            .node_api()
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => true,
            Err(e) => {
                tracing::debug!(node = %name, error = %e, "updating taints; retrying");
                false
            }
        }
    }

    /// Upstream's `handleDisruption`: new zone states and tainting rates, and the disruption
    /// mode's untainting.
    async fn handle_disruption(&self, health: &BTreeMap<String, (usize, usize)>) {
        let (decision, disrupted) = {
            let mut state = lock(&self.state);
            let decision = handle_disruption(&state.zones, health);
            let now = Instant::now();
            for (zone, qps) in &decision.qps {
                state
                    .tainters
                    .entry(zone.clone())
                    .or_insert_with(|| ZoneTainter::new(now))
                    .limiter
                    .swap(*qps, now);
            }
            for (zone, next) in &decision.states {
                if state.zones.get(zone) != Some(next) {
                    tracing::info!(zone = %zone, state = ?next, "zone state changed");
                }
            }
            state.zones = decision.states.clone();
            let zones = state.zones.clone();
            state.tainters.retain(|z, _| zones.contains_key(z));
            if decision.reset_probes {
                tracing::info!("some nodes are ready: leaving the disruption mode");
                for entry in state.observed.values_mut() {
                    entry.1 = now;
                }
            }
            let disrupted = !state.zones.is_empty()
                && state
                    .zones
                    .values()
                    .all(|s| *s == ZoneState::FullDisruption);
            (decision, disrupted)
        };
        if decision.mark_all_reachable {
            tracing::info!("every node is not ready: entering the disruption mode, no evictions");
        }
        if !disrupted {
            return;
        }
        // Upstream untaints every node once, on entering the mode, re-reading a node whose
        // write conflicts; here every pass of the mode does it, so a conflicting write is
        // simply done again on the next pass.
        for node in self.nodes.list() {
            {
                let mut state = lock(&self.state);
                for tainter in state.tainters.values_mut() {
                    tainter.remove(&node.name_any());
                }
            }
            if let Some(taints) = without_no_execute(&node) {
                self.write_taints(&node, taints).await;
            }
        }
    }

    /// Upstream's `doNoExecuteTaintingPass`: the nodes each zone's rate lets through get their
    /// NoExecute taint.
    async fn taint_pass(&self) {
        let now = Instant::now();
        let due: Vec<String> = {
            let mut state = lock(&self.state);
            state
                .tainters
                .values_mut()
                .flat_map(|t| std::iter::from_fn(move || t.next(now)).collect::<Vec<_>>())
                .collect()
        };
        let stamp = Timestamp::now();
        for name in due {
            let Some(node) = self.nodes.get(&name) else {
                continue;
            };
            // Ready again meanwhile: nothing to do, as upstream.
            let Some(taints) = desired_taints(&node, stamp, true) else {
                continue;
            };
            if !self.write_taints(&node, taints).await {
                let mut state = lock(&self.state);
                if let Some(t) = state.tainters.get_mut(&zone_of(&node)) {
                    t.retry(&name);
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

/// The node's taints without the NoExecute not-ready/unreachable ones (upstream's
/// `markNodeAsReachable`); `None` when it has neither.
pub fn without_no_execute(node: &Node) -> Option<Vec<Taint>> {
    let current = node.spec.as_ref().and_then(|s| s.taints.clone())?;
    let next: Vec<Taint> = current
        .iter()
        .filter(|t| !(t.effect == "NoExecute" && (t.key == NOT_READY || t.key == UNREACHABLE)))
        .cloned()
        .collect();
    (next.len() != current.len()).then_some(next)
}

/// Counts the node as ready or not in its zone, for `handle_disruption`.
fn count_ready(health: &mut BTreeMap<String, (usize, usize)>, node: &Node) {
    let counts = health.entry(zone_of(node)).or_insert((0, 0));
    if condition(node, "Ready").is_some_and(|c| c.status == "True") {
        counts.0 += 1;
    } else {
        counts.1 += 1;
    }
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
        // Without the zone's go-ahead only the NoSchedule taints are added.
        let early = desired_taints(&unknown, ts(100), false).unwrap();
        assert!(early.iter().all(|t| t.effect == "NoSchedule"), "{early:?}");
        assert!(needs_no_execute(&unknown));
        let taints = desired_taints(&unknown, ts(100), true).unwrap();
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
        assert_eq!(desired_taints(&tainted, ts(200), false), None);
        assert!(!needs_no_execute(&tainted));
        // Unknown turning False swaps the NoExecute taint at once.
        let mut not_ready = tainted.clone();
        not_ready
            .status
            .as_mut()
            .unwrap()
            .conditions
            .as_mut()
            .unwrap()[0]
            .status = "False".into();
        let swapped = desired_taints(&not_ready, ts(250), false).unwrap();
        assert!(
            swapped
                .iter()
                .any(|t| t.key == NOT_READY && t.effect == "NoExecute")
        );
        assert!(!swapped.iter().any(|t| t.key == UNREACHABLE));
        let cleared = without_no_execute(&tainted).unwrap();
        assert!(cleared.iter().all(|t| t.effect != "NoExecute"));
        // Ready again: the managed taints go, the user's stays.
        tainted.status.as_mut().unwrap().conditions = Some(vec![NodeCondition {
            type_: "Ready".into(),
            status: "True".into(),
            ..NodeCondition::default()
        }]);
        let back = desired_taints(&tainted, ts(300), false).unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].key, "dedicated");
    }

    #[test]
    fn zone_states_follow_upstream_thresholds() {
        assert_eq!(zone_state(0, 1), ZoneState::FullDisruption);
        assert_eq!(zone_state(0, 0), ZoneState::Normal);
        // At most two not ready nodes never make a partial disruption.
        assert_eq!(zone_state(1, 2), ZoneState::Normal);
        assert_eq!(zone_state(2, 3), ZoneState::PartialDisruption);
        assert_eq!(zone_state(3, 3), ZoneState::Normal);
        assert_eq!(zone_qps(ZoneState::Normal, 3), EVICTION_QPS);
        assert_eq!(
            zone_qps(ZoneState::PartialDisruption, 51),
            SECONDARY_EVICTION_QPS
        );
        assert_eq!(zone_qps(ZoneState::PartialDisruption, 50), 0.0);
        assert_eq!(zone_qps(ZoneState::FullDisruption, 10), EVICTION_QPS);
    }

    #[test]
    fn zone_keys_follow_upstream_get_zone_key() {
        let key = |labels: serde_json::Value| {
            zone_of(&node(json!({"metadata": {"name": "n1", "labels": labels}})))
        };
        assert_eq!(key(json!({})), "");
        assert_eq!(key(json!({ZONE_LABEL: "", REGION_LABEL: ""})), "");
        assert_eq!(key(json!({ZONE_LABEL: "eu-1a"})), ":\0:eu-1a");
        assert_eq!(
            key(json!({ZONE_LABEL: "eu-1a", REGION_LABEL: "eu-1"})),
            "eu-1:\0:eu-1a"
        );
        assert_eq!(key(json!({REGION_LABEL: "eu-1"})), "eu-1:\0:");
        // The beta labels win when present, even when empty.
        assert_eq!(
            key(json!({BETA_ZONE_LABEL: "old-a", ZONE_LABEL: "eu-1a",
                BETA_REGION_LABEL: "old", REGION_LABEL: "eu-1"})),
            "old:\0:old-a"
        );
        assert_eq!(key(json!({BETA_ZONE_LABEL: "", ZONE_LABEL: "eu-1a"})), "");
        assert_eq!(
            key(json!({BETA_REGION_LABEL: "old", ZONE_LABEL: "eu-1a"})),
            "old:\0:eu-1a"
        );
        // A colon in a name does not make two zones one.
        assert_ne!(
            key(json!({REGION_LABEL: "a:", ZONE_LABEL: "b"})),
            key(json!({REGION_LABEL: "a", ZONE_LABEL: ":b"}))
        );
    }

    #[test]
    fn every_zone_fully_disrupted_stops_tainting_until_a_node_is_ready() {
        let health = |v: &[(&str, usize, usize)]| -> BTreeMap<String, (usize, usize)> {
            v.iter()
                .map(|(z, r, n)| (z.to_string(), (*r, *n)))
                .collect()
        };
        let d = handle_disruption(&BTreeMap::new(), &health(&[("a", 3, 0), ("b", 60, 0)]));
        assert_eq!(d.states["a"], ZoneState::Normal);
        assert_eq!(d.qps["a"], EVICTION_QPS);
        assert!(!d.mark_all_reachable);
        // Zone b partially disrupted (large: slow); a fully (tainted at the normal rate).
        let d = handle_disruption(&d.states, &health(&[("a", 0, 3), ("b", 20, 40)]));
        assert_eq!(d.states["a"], ZoneState::FullDisruption);
        assert_eq!(d.qps["a"], EVICTION_QPS);
        assert_eq!(d.qps["b"], SECONDARY_EVICTION_QPS);
        // Both fully disrupted: no tainting, and the NoExecute taints come off.
        let d = handle_disruption(&d.states, &health(&[("a", 0, 3), ("b", 0, 60)]));
        assert!(d.mark_all_reachable);
        assert_eq!(d.qps.values().copied().collect::<Vec<_>>(), [0.0, 0.0]);
        let again = handle_disruption(&d.states, &health(&[("a", 0, 3), ("b", 0, 60)]));
        assert!(!again.mark_all_reachable && again.qps.is_empty());
        // One node back: every zone gets the rate of its state, the probes start over.
        let d = handle_disruption(&again.states, &health(&[("a", 1, 2), ("b", 0, 60)]));
        assert!(d.reset_probes);
        assert_eq!(d.states["a"], ZoneState::Normal);
        assert_eq!(d.qps["a"], EVICTION_QPS);
        assert_eq!(d.qps["b"], EVICTION_QPS);
        // A zone without nodes is forgotten.
        let d = handle_disruption(&d.states, &health(&[("a", 3, 0)]));
        assert_eq!(d.states.keys().collect::<Vec<_>>(), ["a"]);
    }

    #[test]
    fn zone_tainters_let_one_node_through_per_token() {
        let t0 = Instant::now();
        let mut z = ZoneTainter::new(t0);
        for n in ["n1", "n2", "n1"] {
            z.add(n);
        }
        assert_eq!(z.next(t0).as_deref(), Some("n1"));
        assert_eq!(z.next(t0 + Duration::from_secs(5)), None);
        assert_eq!(z.next(t0 + Duration::from_secs(11)).as_deref(), Some("n2"));
        assert_eq!(z.next(t0 + Duration::from_secs(30)), None);
        // A tainted node is not queued again until it is removed (ready).
        z.add("n1");
        assert_eq!(z.next(t0 + Duration::from_secs(40)), None);
        z.remove("n1");
        z.add("n1");
        assert_eq!(z.next(t0 + Duration::from_secs(40)).as_deref(), Some("n1"));
        // Rate 0 never lets anything through; an empty bucket stays empty across a swap.
        z.add("n3");
        z.limiter.swap(0.0, t0 + Duration::from_secs(41));
        assert_eq!(z.next(t0 + Duration::from_secs(1000)), None);
        let mut b = TokenBucket::new(EVICTION_QPS, t0);
        assert!(b.try_accept(t0));
        b.swap(SECONDARY_EVICTION_QPS, t0);
        assert!(!b.try_accept(t0 + Duration::from_secs(10)));
        assert!(b.try_accept(t0 + Duration::from_secs(200)));
        assert_eq!(b.qps(), SECONDARY_EVICTION_QPS);
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
