//! The scheduler's loop around the pure core: watches nodes and pods into a cache, takes pending
//! pods from the [`Queue`] one at a time, decides with [`schedule_with_claims`], assumes the decision in
//! the cache at once (so the next pod sees it) and binds through `pods/binding` concurrently, as
//! kube-scheduler's scheduling cycle and binding cycle do.
//!
//! Threads: the decisions run on one dedicated thread that owns the cache and the queue (no
//! locks, and CPU-bound filtering never stalls the async runtime that serves the API); the
//! watches and the API writes are async tasks that talk to it over channels. Dropping the
//! tasks (leadership lost, shutdown) disconnects the channels and the thread ends.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{
    Node, ObjectReference, PersistentVolume, PersistentVolumeClaim, Pod,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tokio::sync::{Semaphore, mpsc as tmpsc};
use tokio::task::JoinSet;

use super::preempt::{self, Candidate};
use super::queue::Queue;
use super::volumes::{self, Storage};
use super::{
    NodeInfo, failure_message, failure_message_with_preemption, nodes_to_find,
    prefilter_failure_message, schedule_with_claims,
};

/// The scheduler name this scheduler serves (pods with an empty `schedulerName` get it by
/// defaulting).
pub const NAME: &str = "default-scheduler";

/// How many bindings may be in flight at once. Upstream binds every pod in its own goroutine;
/// a bound keeps a burst of thousands of pods from queueing thousands of requests at once.
const BIND_CONCURRENCY: usize = 64;

/// Events waiting to be written; beyond this they are dropped, as upstream's event broadcaster
/// drops events when its queue is full, so that events never slow scheduling down.
const EVENT_QUEUE: usize = 4096;
const EVENT_WORKERS: usize = 4;

/// What the decision thread learns.
enum Input {
    Pod(Box<watcher::Event<Pod>>),
    Node(Box<watcher::Event<Node>>),
    Pdb(Box<watcher::Event<PodDisruptionBudget>>),
    Claim(Box<watcher::Event<PersistentVolumeClaim>>),
    Volume(Box<watcher::Event<PersistentVolume>>),
    Class(Box<watcher::Event<StorageClass>>),
    /// The binding of this pod was written.
    Bound(String),
    /// The binding failed; `gone` when the pod no longer exists or is bound already (the watch
    /// will say where), otherwise it is retried after its back-off.
    BindFailed {
        pod: Box<Pod>,
        gone: bool,
    },
}

/// What the decision thread asks the API writers to do.
enum Output {
    Bind {
        pod: Box<Pod>,
        node: String,
        /// Unbound WaitForFirstConsumer claims to provision on `node` before the binding.
        claims: Vec<String>,
    },
    Unschedulable {
        pod: Box<Pod>,
        message: String,
    },
    /// Evict `victims` so that `pod` fits on `node` later (which is nominated meanwhile).
    Preempt {
        pod: Box<Pod>,
        message: String,
        candidate: Candidate,
    },
}

/// Starts the scheduler's tasks; dropping the set stops them (and then the decision thread).
pub fn start(client: &Client, identity: &str) -> JoinSet<()> {
    let (input_tx, input_rx) = mpsc::channel::<Input>();
    let (output_tx, output_rx) = tmpsc::unbounded_channel::<Output>();
    let mut set = JoinSet::new();
    set.spawn(watch_nodes(client.clone(), input_tx.clone()));
    set.spawn(watch_pods(client.clone(), input_tx.clone()));
    set.spawn(watch_pdbs(client.clone(), input_tx.clone()));
    set.spawn(watch(
        Api::<PersistentVolumeClaim>::all(client.clone()),
        input_tx.clone(),
        |e| Input::Claim(Box::new(e)),
    ));
    set.spawn(watch(
        Api::<PersistentVolume>::all(client.clone()),
        input_tx.clone(),
        |e| Input::Volume(Box::new(e)),
    ));
    set.spawn(watch(
        Api::<StorageClass>::all(client.clone()),
        input_tx.clone(),
        |e| Input::Class(Box::new(e)),
    ));
    set.spawn(write(
        client.clone(),
        identity.to_string(),
        output_rx,
        input_tx,
    ));
    set.spawn_blocking(move || decide(input_rx, output_tx));
    set
}

async fn watch_nodes(client: Client, tx: mpsc::Sender<Input>) {
    let mut events = watcher(Api::<Node>::all(client), watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(event) = events.next().await {
        match event {
            Ok(e) => {
                if tx.send(Input::Node(Box::new(e))).is_err() {
                    return;
                }
            }
            Err(e) => tracing::debug!(error = %e, "scheduler: watching nodes"),
        }
    }
}

async fn watch_pdbs(client: Client, tx: mpsc::Sender<Input>) {
    let mut events = watcher(
        Api::<PodDisruptionBudget>::all(client),
        watcher::Config::default(),
    )
    .default_backoff()
    .boxed();
    while let Some(event) = events.next().await {
        match event {
            Ok(e) => {
                if tx.send(Input::Pdb(Box::new(e))).is_err() {
                    return;
                }
            }
            Err(e) => tracing::debug!(error = %e, "scheduler: watching disruption budgets"),
        }
    }
}

/// Forwards a resource's watch events to the decision thread.
async fn watch<K>(api: Api<K>, tx: mpsc::Sender<Input>, wrap: fn(watcher::Event<K>) -> Input)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
    K::DynamicType: Default,
{
    let mut events = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(event) = events.next().await {
        match event {
            Ok(e) => {
                if tx.send(wrap(e)).is_err() {
                    return;
                }
            }
            Err(e) => tracing::debug!(error = %e, "scheduler: watching storage"),
        }
    }
}

async fn watch_pods(client: Client, tx: mpsc::Sender<Input>) {
    // Upstream's scheduler informer skips finished pods: they hold no resources. A pod that
    // finishes leaves the selection and arrives as deleted.
    let config = watcher::Config::default().fields("status.phase!=Succeeded,status.phase!=Failed");
    let mut events = watcher(Api::<Pod>::all(client), config)
        .default_backoff()
        .boxed();
    while let Some(event) = events.next().await {
        match event {
            Ok(e) => {
                if tx.send(Input::Pod(Box::new(e))).is_err() {
                    return;
                }
            }
            Err(e) => tracing::debug!(error = %e, "scheduler: watching pods"),
        }
    }
}

// ---- the decision thread ----

/// Where a pod is accounted in the cache.
struct Placed {
    node: String,
    /// Decided here, binding not yet seen in the watch.
    assumed: bool,
}

#[derive(Default)]
struct State {
    queue: Queue,
    nodes: Vec<NodeInfo>,
    index: HashMap<String, usize>,
    placed: HashMap<String, Placed>,
    /// Bound pods whose node is not (yet) in the cache, by node name.
    waiting: HashMap<String, Vec<Pod>>,
    next_start: usize,
    nodes_synced: bool,
    pods_synced: bool,
    /// During a re-list, the names (nodes) or uids (pods) it reported so far: what it does not
    /// report is gone (a watch gap hides deletions).
    node_relist: Option<HashSet<String>>,
    pod_relist: Option<HashSet<String>>,
    pdbs: HashMap<String, PodDisruptionBudget>,
    /// Pods that preempted others, by uid: the node nominated for each, where it counts as
    /// placed for pods of lower or equal priority (upstream's nominator), until it is bound.
    nominated: HashMap<String, (String, Pod)>,
    /// Claims, volumes and classes, for VolumeBinding, and their re-lists in progress.
    storage: Storage,
    storage_relist: StorageRelist,
}

#[derive(Default)]
struct StorageRelist {
    claims: Option<HashMap<String, PersistentVolumeClaim>>,
    volumes: Option<HashMap<String, PersistentVolume>>,
    classes: Option<HashMap<String, StorageClass>>,
}

fn decide(rx: mpsc::Receiver<Input>, tx: tmpsc::UnboundedSender<Output>) {
    let mut s = State::default();
    loop {
        // Everything already reported goes into the cache before the next decision.
        loop {
            match rx.try_recv() {
                Ok(input) => s.handle(input, Instant::now()),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return,
            }
        }
        let now = Instant::now();
        // Upstream waits for its informers to sync before the first cycle.
        if s.nodes_synced
            && s.pods_synced
            && let Some(pod) = s.queue.pop(now)
        {
            if let Some(out) = s.schedule(pod, now)
                && tx.send(out).is_err()
            {
                return;
            }
            continue;
        }
        let wait = s
            .queue
            .next_due()
            .map(|due| due.saturating_duration_since(now))
            .unwrap_or(Duration::from_secs(60));
        match rx.recv_timeout(wait) {
            Ok(input) => s.handle(input, Instant::now()),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// The annotation VolumeBinding's PreBind sets on a WaitForFirstConsumer claim.
const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";

/// Applies a watch event to a cache keyed by `key`; a re-list is collected in `relist` and
/// replaces the cache when complete (so deletions missed in a watch gap disappear). `true` when
/// something may have changed.
fn apply<K: Clone + PartialEq>(
    map: &mut HashMap<String, K>,
    relist: &mut Option<HashMap<String, K>>,
    event: watcher::Event<K>,
    key: impl Fn(&K) -> String,
) -> bool {
    match event {
        watcher::Event::Init => {
            *relist = Some(HashMap::new());
            false
        }
        watcher::Event::InitApply(o) => {
            relist.get_or_insert_default().insert(key(&o), o);
            false
        }
        watcher::Event::InitDone => {
            *map = relist.take().unwrap_or_default();
            true
        }
        watcher::Event::Apply(o) => {
            let k = key(&o);
            if map.get(&k) == Some(&o) {
                return false;
            }
            map.insert(k, o);
            true
        }
        watcher::Event::Delete(o) => map.remove(&key(&o)).is_some(),
    }
}

fn uid(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

fn finished(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

fn node_name(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

/// Upstream's `responsibleForPod` plus the SchedulingGates PreEnqueue plugin: pods for this
/// scheduler that are not being deleted and carry no scheduling gates.
fn ours(pod: &Pod) -> bool {
    let spec = pod.spec.as_ref();
    let name = spec.and_then(|s| s.scheduler_name.as_deref()).unwrap_or("");
    (name.is_empty() || name == NAME)
        && pod.metadata.deletion_timestamp.is_none()
        && spec
            .and_then(|s| s.scheduling_gates.as_ref())
            .is_none_or(|g| g.is_empty())
}

impl State {
    fn handle(&mut self, input: Input, now: Instant) {
        match input {
            Input::Pod(e) => self.pod_event(*e, now),
            Input::Node(e) => self.node_event(*e, now),
            Input::Pdb(e) => self.pdb_event(*e),
            Input::Claim(e) => {
                let relist = &mut self.storage_relist.claims;
                if apply(&mut self.storage.claims, relist, *e, |c| {
                    format!("{}/{}", c.namespace().unwrap_or_default(), c.name_any())
                }) {
                    // Upstream requeues on PVC adds and updates.
                    self.queue.move_all_unschedulable(now);
                }
            }
            Input::Volume(e) => {
                let relist = &mut self.storage_relist.volumes;
                if apply(&mut self.storage.volumes, relist, *e, |v| v.name_any()) {
                    self.queue.move_all_unschedulable(now);
                }
            }
            Input::Class(e) => {
                let relist = &mut self.storage_relist.classes;
                if apply(&mut self.storage.classes, relist, *e, |c| c.name_any()) {
                    self.queue.move_all_unschedulable(now);
                }
            }
            Input::Bound(u) => self.queue.done(&u),
            Input::BindFailed { pod, gone } => {
                let u = uid(&pod);
                if self.placed.get(&u).is_some_and(|p| p.assumed) {
                    self.unplace(&u);
                }
                if gone {
                    self.queue.remove(&u);
                } else {
                    self.queue.retry(*pod, now);
                }
            }
        }
    }

    fn pod_event(&mut self, event: watcher::Event<Pod>, now: Instant) {
        match event {
            watcher::Event::Init => self.pod_relist = Some(HashSet::new()),
            watcher::Event::InitApply(pod) => {
                if let Some(seen) = self.pod_relist.as_mut() {
                    seen.insert(uid(&pod));
                }
                self.pod_changed(pod, now);
            }
            watcher::Event::InitDone => {
                let seen = self.pod_relist.take().unwrap_or_default();
                let gone: Vec<String> = self
                    .placed
                    .iter()
                    .filter(|(u, p)| !p.assumed && !seen.contains(*u))
                    .map(|(u, _)| u.clone())
                    .collect();
                for u in gone {
                    self.pod_gone(&u, now);
                }
                self.pods_synced = true;
            }
            watcher::Event::Apply(pod) => self.pod_changed(pod, now),
            watcher::Event::Delete(pod) => self.pod_gone(&uid(&pod), now),
        }
    }

    fn node_event(&mut self, event: watcher::Event<Node>, now: Instant) {
        match event {
            watcher::Event::Init => self.node_relist = Some(HashSet::new()),
            watcher::Event::InitApply(node) => {
                if let Some(seen) = self.node_relist.as_mut() {
                    seen.insert(node.name_any());
                }
                self.node_changed(node, now);
            }
            watcher::Event::InitDone => {
                let seen = self.node_relist.take().unwrap_or_default();
                let gone: Vec<String> = self
                    .index
                    .keys()
                    .filter(|n| !seen.contains(*n))
                    .cloned()
                    .collect();
                for n in gone {
                    self.node_gone(&n);
                }
                self.nodes_synced = true;
            }
            watcher::Event::Apply(node) => self.node_changed(node, now),
            watcher::Event::Delete(node) => self.node_gone(&node.name_any()),
        }
    }

    fn pdb_event(&mut self, event: watcher::Event<PodDisruptionBudget>) {
        match event {
            watcher::Event::Apply(p) | watcher::Event::InitApply(p) => {
                let key = format!("{}/{}", p.namespace().unwrap_or_default(), p.name_any());
                self.pdbs.insert(key, p);
            }
            watcher::Event::Delete(p) => {
                let key = format!("{}/{}", p.namespace().unwrap_or_default(), p.name_any());
                self.pdbs.remove(&key);
            }
            _ => {}
        }
    }

    fn pod_changed(&mut self, pod: Pod, now: Instant) {
        let u = uid(&pod);
        if finished(&pod) {
            self.pod_gone(&u, now);
            return;
        }
        if let Some(node) = node_name(&pod).map(str::to_string) {
            self.queue.remove(&u);
            self.nominated.remove(&u);
            self.place(pod, node, false);
            return;
        }
        if self.placed.get(&u).is_some_and(|p| p.assumed) {
            // Our binding is in flight; this is an older view of the pod.
            return;
        }
        if ours(&pod) {
            self.queue.add(pod, now);
        } else {
            self.queue.remove(&u);
        }
    }

    fn pod_gone(&mut self, u: &str, now: Instant) {
        self.queue.remove(u);
        self.nominated.remove(u);
        if self.unplace(u) {
            // Freed resources may let a parked pod fit (upstream's AssignedPodDelete event).
            self.queue.move_all_unschedulable(now);
        }
    }

    /// Accounts `pod` on `node`, replacing an earlier version wherever it was.
    fn place(&mut self, pod: Pod, node: String, assumed: bool) {
        let u = uid(&pod);
        self.unplace(&u);
        match self.index.get(&node) {
            Some(&i) => self.nodes[i].add_pod(pod),
            None => self.waiting.entry(node.clone()).or_default().push(pod),
        }
        self.placed.insert(u, Placed { node, assumed });
    }

    /// Removes a pod from the cache; `true` if it was there.
    fn unplace(&mut self, u: &str) -> bool {
        let Some(placed) = self.placed.remove(u) else {
            return false;
        };
        match self.index.get(&placed.node) {
            Some(&i) => {
                self.nodes[i].remove_pod(u);
            }
            None => {
                if let Some(list) = self.waiting.get_mut(&placed.node) {
                    list.retain(|p| p.metadata.uid.as_deref() != Some(u));
                }
            }
        }
        true
    }

    fn node_changed(&mut self, node: Node, now: Instant) {
        let name = node.name_any();
        let relevant = match self.index.get(&name) {
            Some(&i) => {
                let old = &self.nodes[i].node;
                // Upstream requeues on changes to allocatable, labels, taints, unschedulable
                // and conditions; heartbeats alone change nothing here.
                let changed = old.metadata.labels != node.metadata.labels
                    || old.spec != node.spec
                    || old.status.as_ref().map(|s| &s.allocatable)
                        != node.status.as_ref().map(|s| &s.allocatable);
                self.nodes[i].set_node(node);
                changed
            }
            None => {
                let pods = self.waiting.remove(&name).unwrap_or_default();
                self.index.insert(name, self.nodes.len());
                self.nodes.push(NodeInfo::new(node, pods));
                true
            }
        };
        if relevant {
            self.queue.move_all_unschedulable(now);
        }
    }

    fn node_gone(&mut self, name: &str) {
        let Some(i) = self.index.remove(name) else {
            return;
        };
        let info = self.nodes.swap_remove(i);
        if let Some(moved) = self.nodes.get(i) {
            self.index.insert(moved.name().to_string(), i);
        }
        // Its pods stay accounted to the name until they are deleted (pod GC does that).
        if !info.pods.is_empty() {
            self.waiting.insert(name.to_string(), info.pods);
        }
    }

    /// One scheduling cycle.
    fn schedule(&mut self, pod: Pod, now: Instant) -> Option<Output> {
        let to_find = nodes_to_find(self.nodes.len());
        // Nominated pods of at least this priority hold their place (upstream's
        // `addNominatedPods`): they are added for this cycle only.
        let u = uid(&pod);
        let held: Vec<(usize, String)> = self
            .nominated
            .iter()
            .filter(|(other, (_, p))| {
                **other != u && preempt::priority(p) >= preempt::priority(&pod)
            })
            .filter_map(|(other, (node, p))| {
                let i = *self.index.get(node)?;
                self.nodes[i].add_pod(p.clone());
                Some((i, other.clone()))
            })
            .collect();
        let claims = match volumes::prefilter(&pod, &self.storage) {
            Ok(c) => c,
            Err(message) => {
                for (i, other) in held {
                    self.nodes[i].remove_pod(&other);
                }
                self.queue.unschedulable(pod.clone(), now);
                return Some(Output::Unschedulable {
                    message: prefilter_failure_message(self.nodes.len(), &message),
                    pod: Box::new(pod),
                });
            }
        };
        let provision = claims.to_provision.clone();
        let (decision, next) =
            schedule_with_claims(&pod, &self.nodes, self.next_start, to_find, claims);
        for (i, other) in held {
            self.nodes[i].remove_pod(&other);
        }
        self.next_start = next;
        match decision {
            Ok(node) => {
                let mut assumed = pod.clone();
                if let Some(spec) = assumed.spec.as_mut() {
                    spec.node_name = Some(node.clone());
                }
                self.place(assumed, node.clone(), true);
                Some(Output::Bind {
                    pod: Box::new(pod),
                    node,
                    claims: provision,
                })
            }
            Err(fit) => {
                let reasons: Vec<_> = fit.rejections.iter().map(|(_, r)| r).collect();
                self.queue.unschedulable(pod.clone(), now);
                let pdbs: Vec<PodDisruptionBudget> = self.pdbs.values().cloned().collect();
                // A pod that already nominated a node waits for its victims to go.
                let candidate = if self.nominated.contains_key(&u) {
                    None
                } else {
                    preempt::preempt(&pod, &self.nodes, &fit, &pdbs)
                };
                match candidate {
                    Some(candidate) => {
                        self.nominated
                            .insert(u, (candidate.node.clone(), pod.clone()));
                        Some(Output::Preempt {
                            message: failure_message(fit.total_nodes, &reasons),
                            pod: Box::new(pod),
                            candidate,
                        })
                    }
                    None => Some(Output::Unschedulable {
                        message: if self.nominated.contains_key(&u) {
                            failure_message(fit.total_nodes, &reasons)
                        } else {
                            failure_message_with_preemption(fit.total_nodes, &reasons)
                        },
                        pod: Box::new(pod),
                    }),
                }
            }
        }
    }
}

// ---- API writes ----

async fn write(
    client: Client,
    identity: String,
    mut rx: tmpsc::UnboundedReceiver<Output>,
    input: mpsc::Sender<Input>,
) {
    let events = EventSink::start(client.clone(), &identity);
    let slots = Arc::new(Semaphore::new(BIND_CONCURRENCY));
    while let Some(out) = rx.recv().await {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (client, input, events) = (client.clone(), input.clone(), events.clone());
        tokio::spawn(async move {
            match out {
                Output::Bind { pod, node, claims } => {
                    bind(client, *pod, node, claims, input, events).await
                }
                Output::Unschedulable { pod, message } => {
                    unschedulable(client, *pod, message, events).await
                }
                Output::Preempt {
                    pod,
                    message,
                    candidate,
                } => preempt_victims(client, *pod, message, candidate, events).await,
            }
            drop(permit);
        });
    }
}

fn reference(pod: &Pod) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: pod.metadata.name.clone(),
        namespace: pod.metadata.namespace.clone(),
        uid: pod.metadata.uid.clone(),
        resource_version: pod.metadata.resource_version.clone(),
        ..ObjectReference::default()
    }
}

/// Writes the binding; reports the outcome to the decision thread and records `Scheduled`.
async fn bind(
    client: Client,
    pod: Pod,
    node: String,
    claims: Vec<String>,
    input: mpsc::Sender<Input>,
    events: EventSink,
) {
    let (ns, name) = (pod.namespace().unwrap_or_default(), pod.name_any());
    if !claims.is_empty()
        && let Err(e) = bind_volumes(&client, &ns, &claims, &node).await
    {
        tracing::info!(pod = %format!("{ns}/{name}"), %node, error = %e, "binding volumes failed");
        events.record(
            &pod,
            EventType::Warning,
            "FailedScheduling",
            "Scheduling",
            format!("running PreBind plugin \"VolumeBinding\": {e}"),
        );
        let _ = input.send(Input::BindFailed {
            pod: Box::new(pod),
            gone: false,
        });
        return;
    }
    let binding = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": name, "namespace": ns, "uid": pod.metadata.uid},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    });
    let pods: Api<Pod> = Api::namespaced(client, &ns);
    let result = pods
        .create_subresource::<_, serde_json::Value>(
            "binding",
            &name,
            &PostParams::default(),
            &binding,
        )
        .await;
    match result {
        Ok(_) => {
            let _ = input.send(Input::Bound(uid(&pod)));
            events.record(
                &pod,
                EventType::Normal,
                "Scheduled",
                "Binding",
                format!("Successfully assigned {ns}/{name} to {node}"),
            );
        }
        Err(e) => {
            let gone = matches!(&e, kube::Error::Api(s) if s.code == 404 || s.code == 409);
            if !gone {
                tracing::warn!(pod = %format!("{ns}/{name}"), %node, error = %e, "binding failed");
                events.record(
                    &pod,
                    EventType::Warning,
                    "FailedScheduling",
                    "Scheduling",
                    format!("Binding rejected: {e}"),
                );
            }
            let _ = input.send(Input::BindFailed {
                pod: Box::new(pod),
                gone,
            });
        }
    }
}

/// How long VolumeBinding's PreBind waits for the claims to be bound (upstream's
/// `--bind-timeout-seconds` default).
const VOLUME_BIND_TIMEOUT: Duration = Duration::from_secs(600);

/// VolumeBinding's PreBind: marks each unbound WaitForFirstConsumer claim with the chosen node
/// (`volume.kubernetes.io/selected-node`), which starts its provisioning, and waits until the
/// PV controller has bound them all, so that the kubelet finds bound claims.
async fn bind_volumes(
    client: &Client,
    ns: &str,
    claims: &[String],
    node: &str,
) -> Result<(), String> {
    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    for claim in claims {
        let patch = serde_json::json!({"metadata": {"annotations": {SELECTED_NODE: node}}});
        api.patch(claim, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map_err(|e| format!("binding volumes: {e}"))?;
    }
    let deadline = Instant::now() + VOLUME_BIND_TIMEOUT;
    for claim in claims {
        loop {
            let pvc = api
                .get(claim)
                .await
                .map_err(|e| format!("binding volumes: {e}"))?;
            let bound = pvc
                .spec
                .as_ref()
                .and_then(|s| s.volume_name.as_deref())
                .is_some_and(|v| !v.is_empty())
                && pvc
                    .annotations()
                    .contains_key("pv.kubernetes.io/bind-completed");
            if bound {
                break;
            }
            if Instant::now() >= deadline {
                return Err("binding volumes: context deadline exceeded".into());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    Ok(())
}

/// Upstream's failure handling: the `PodScheduled=False` condition (reason Unschedulable, only
/// written when it changes) and a FailedScheduling event.
async fn unschedulable(client: Client, pod: Pod, message: String, events: EventSink) {
    let (ns, name) = (pod.namespace().unwrap_or_default(), pod.name_any());
    let current = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"));
    let same = current.is_some_and(|c| {
        c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
            && c.message.as_deref() == Some(message.as_str())
    });
    if !same {
        let patch = serde_json::json!({"status": {"conditions": [{
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": message,
            "lastProbeTime": null,
            "lastTransitionTime": Timestamp::now().to_string(),
        }]}});
        let pods: Api<Pod> = Api::namespaced(client, &ns);
        if let Err(e) = pods
            .patch_status(&name, &PatchParams::default(), &Patch::Strategic(patch))
            .await
        {
            tracing::debug!(pod = %format!("{ns}/{name}"), error = %e, "setting PodScheduled");
        }
    }
    events.record(
        &pod,
        EventType::Warning,
        "FailedScheduling",
        "Scheduling",
        message,
    );
}

/// Upstream's `PrepareCandidate`: each victim gets the `DisruptionTarget` condition, a
/// Preempted event and a graceful delete; the preemptor's `status.nominatedNodeName` names the
/// node; then the usual FailedScheduling report.
async fn preempt_victims(
    client: Client,
    pod: Pod,
    message: String,
    candidate: Candidate,
    events: EventSink,
) {
    let node = &candidate.node;
    for victim in &candidate.victims {
        let (ns, name) = (victim.namespace().unwrap_or_default(), victim.name_any());
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let condition = serde_json::json!({"status": {"conditions": [{
            "type": "DisruptionTarget",
            "status": "True",
            "reason": "PreemptionByScheduler",
            "message": format!("{NAME}: preempting to accommodate a higher priority pod"),
            "lastTransitionTime": Timestamp::now().to_string(),
        }]}});
        if let Err(e) = pods
            .patch_status(&name, &PatchParams::default(), &Patch::Strategic(condition))
            .await
        {
            tracing::debug!(pod = %format!("{ns}/{name}"), error = %e, "marking a preemption victim");
        }
        events.record(
            victim,
            EventType::Normal,
            "Preempted",
            "Preempting",
            format!(
                "Preempted by pod {} on node {node}",
                pod.metadata.uid.as_deref().unwrap_or_default()
            ),
        );
        match pods.delete(&name, &Default::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => {
                tracing::warn!(pod = %format!("{ns}/{name}"), error = %e, "evicting a preemption victim")
            }
        }
    }
    let (ns, name) = (pod.namespace().unwrap_or_default(), pod.name_any());
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let nominate = serde_json::json!({"status": {"nominatedNodeName": node}});
    if let Err(e) = pods
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(nominate))
        .await
    {
        tracing::debug!(pod = %format!("{ns}/{name}"), error = %e, "nominating a node");
    }
    unschedulable(client, pod, message, events).await
}

/// Events written off the scheduling path by a few workers through kube's [`Recorder`]
/// (events.k8s.io/v1, repeated events become a series with a count).
#[derive(Clone)]
struct EventSink {
    tx: tmpsc::Sender<(Event, ObjectReference)>,
}

impl EventSink {
    fn start(client: Client, identity: &str) -> EventSink {
        let reporter = Reporter {
            controller: NAME.into(),
            instance: Some(format!("{NAME}-{identity}")),
        };
        let recorder = Recorder::new(client, reporter);
        let (tx, rx) = tmpsc::channel::<(Event, ObjectReference)>(EVENT_QUEUE);
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        for _ in 0..EVENT_WORKERS {
            let (recorder, rx) = (recorder.clone(), rx.clone());
            tokio::spawn(async move {
                loop {
                    let Some((event, reference)) = rx.lock().await.recv().await else {
                        return;
                    };
                    if let Err(e) = recorder.publish(&event, &reference).await {
                        tracing::debug!(error = %e, "writing an event");
                    }
                }
            });
        }
        EventSink { tx }
    }

    fn record(&self, pod: &Pod, type_: EventType, reason: &str, action: &str, note: String) {
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: action.into(),
            secondary: None,
        };
        if self.tx.try_send((event, reference(pod))).is_err() {
            tracing::debug!(reason, "event queue full; dropping the event");
        }
    }
}
