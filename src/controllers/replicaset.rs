//! The ReplicaSet and ReplicationController controllers (upstream's `pkg/controller/replicaset`,
//! which also runs ReplicationControllers by converting them): keep `spec.replicas` active pods
//! matching the selector, adopting orphans that match and releasing pods that no longer do;
//! create in slow-start batches, delete the least valuable pods first, and report replica
//! counts in the status.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec, ReplicationController};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, ObjectMeta, OwnerReference, Time,
};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::events::Events;
use super::informer::{
    Change, Expectations, Informer, Requeue, WorkQueue, controller_of, key_of, run_workers,
    split_key,
};
use super::podcontrol::{adopt, api_message, create_pod, delete_pod, release};

/// Upstream's `BurstReplicas`: at most this many creations or deletions per sync.
const BURST_REPLICAS: usize = 500;
/// Upstream's `SlowStartInitialBatchSize`.
const SLOW_START_INITIAL_BATCH: usize = 1;
/// Concurrent syncs (upstream's `--concurrent-replicaset-syncs`).
const WORKERS: usize = 5;
/// The annotation that ranks pods for scale-down (lower cost goes first).
pub const POD_DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

/// A ReplicaSet or ReplicationController in the shape the sync works on.
#[derive(Clone, Debug)]
pub struct Set {
    pub meta: ObjectMeta,
    pub replicas: i32,
    pub min_ready_seconds: i32,
    pub selector: LabelSelector,
    pub template: PodTemplateSpec,
    pub status: ReplicaSetStatus,
}

/// What differs between the two kinds.
pub struct Kind<K> {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub component: &'static str,
    pub to_set: fn(&K) -> Set,
}

pub fn replica_set_kind() -> Kind<ReplicaSet> {
    Kind {
        api_version: "apps/v1",
        kind: "ReplicaSet",
        component: "replicaset-controller",
        to_set: |rs| {
            let spec = rs.spec.clone().unwrap_or_default();
            Set {
                meta: rs.metadata.clone(),
                replicas: spec.replicas.unwrap_or(1),
                min_ready_seconds: spec.min_ready_seconds.unwrap_or(0),
                selector: spec.selector,
                template: spec.template.unwrap_or_default(),
                status: rs.status.clone().unwrap_or_default(),
            }
        },
    }
}

pub fn replication_controller_kind() -> Kind<ReplicationController> {
    Kind {
        api_version: "v1",
        kind: "ReplicationController",
        component: "replication-controller",
        to_set: |rc| {
            let spec = rc.spec.clone().unwrap_or_default();
            let template = spec.template.unwrap_or_default();
            // An RC without a selector selects its template's labels (upstream's defaulting).
            let labels = spec
                .selector
                .filter(|s| !s.is_empty())
                .or_else(|| template.metadata.as_ref().and_then(|m| m.labels.clone()));
            let status = rc.status.clone().unwrap_or_default();
            Set {
                meta: rc.metadata.clone(),
                replicas: spec.replicas.unwrap_or(1),
                min_ready_seconds: spec.min_ready_seconds.unwrap_or(0),
                selector: LabelSelector {
                    match_labels: labels,
                    match_expressions: None,
                },
                template,
                status: ReplicaSetStatus {
                    replicas: status.replicas,
                    fully_labeled_replicas: status.fully_labeled_replicas,
                    ready_replicas: status.ready_replicas,
                    available_replicas: status.available_replicas,
                    observed_generation: status.observed_generation,
                    conditions: status.conditions.map(|cs| {
                        cs.into_iter()
                            .map(|c| ReplicaSetCondition {
                                last_transition_time: c.last_transition_time,
                                message: c.message,
                                reason: c.reason,
                                status: c.status,
                                type_: c.type_,
                            })
                            .collect()
                    }),
                    terminating_replicas: None,
                },
            }
        },
    }
}

// ---- pod vocabulary shared by the workload controllers ----

/// Upstream's `IsPodActive`: not finished and not being deleted.
pub fn is_active(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && !matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        )
}

/// When the pod's Ready condition became True, if it is.
pub fn ready_since(pod: &Pod) -> Option<Timestamp> {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .filter(|c| c.status == "True")
        .map(|c| {
            c.last_transition_time
                .as_ref()
                .map(|t| t.0)
                .unwrap_or(Timestamp::UNIX_EPOCH)
        })
}

pub fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// Upstream's `IsPodAvailable`: ready for at least `min_ready_seconds`.
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    ready_since(pod).is_some_and(|since| {
        min_ready_seconds <= 0
            || since
                .checked_add(k8s_openapi::jiff::SignedDuration::from_secs(i64::from(
                    min_ready_seconds,
                )))
                .is_ok_and(|t| t <= now)
    })
}

/// Whether the label selector selects these labels; an empty selector selects everything,
/// as `metav1.LabelSelectorAsSelector`.
pub fn selects(sel: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    sel.match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v))
        && sel.match_expressions.iter().flatten().all(|e| {
            let values = e.values.as_deref().unwrap_or_default();
            let got = labels.get(&e.key);
            match e.operator.as_str() {
                "In" => got.is_some_and(|g| values.contains(g)),
                "NotIn" => !got.is_some_and(|g| values.contains(g)),
                "Exists" => got.is_some(),
                "DoesNotExist" => got.is_none(),
                _ => false,
            }
        })
}

/// Whether a selector has neither labels nor expressions (upstream's workload controllers
/// refuse one with a SelectingAll warning rather than take every pod in the namespace).
pub fn is_empty_selector(sel: &LabelSelector) -> bool {
    sel.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && sel.match_expressions.as_ref().is_none_or(|e| e.is_empty())
}

/// A selector that selects nothing when it is empty (see [`is_empty_selector`]).
pub fn selects_some(sel: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    !is_empty_selector(sel) && selects(sel, labels)
}

/// The controller reference an owner puts on what it creates.
pub fn owner_ref(api_version: &str, kind: &str, meta: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: api_version.into(),
        kind: kind.into(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// A pod from a template (upstream's `GetPodFromTemplate`).
pub fn pod_from_template(
    template: &PodTemplateSpec,
    namespace: &str,
    generate_name: String,
    owner: OwnerReference,
) -> Pod {
    let tm = template.metadata.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(generate_name),
            namespace: Some(namespace.into()),
            labels: tm.labels,
            annotations: tm.annotations,
            finalizers: tm.finalizers,
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// Upstream's `slowStartBatch`: runs `count` calls in batches of 1, 2, 4, …, each batch
/// concurrently, and stops at the first batch with a failure. Returns how many succeeded and
/// the first error.
pub async fn slow_start<F, Fut>(count: usize, call: F) -> (usize, Option<kube::Error>)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), kube::Error>>,
{
    let mut done = 0;
    let mut batch = SLOW_START_INITIAL_BATCH.min(count);
    while batch > 0 {
        let results = join_all((0..batch).map(|_| call())).await;
        let ok = results.iter().filter(|r| r.is_ok()).count();
        done += ok;
        if let Some(Err(e)) = results.into_iter().find(|r| r.is_err()) {
            return (done, Some(e));
        }
        batch = (2 * batch).min(count - done);
    }
    (done, None)
}

/// The scale-down order (upstream's `ActivePodsWithRanks` as used by `getPodsToDelete`): pods
/// earlier in the returned order are deleted first. `related` counts, per node, the active
/// pods of this set and its siblings (pods doubled up on a node go first).
pub fn deletion_order(mut pods: Vec<Arc<Pod>>, related: &HashMap<String, usize>) -> Vec<Arc<Pod>> {
    fn node(p: &Pod) -> &str {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .unwrap_or_default()
    }
    fn phase_rank(p: &Pod) -> u8 {
        match p.status.as_ref().and_then(|s| s.phase.as_deref()) {
            Some("Pending") => 0,
            Some("Unknown") => 1,
            Some("Running") => 2,
            _ => 0,
        }
    }
    fn cost(p: &Pod) -> i32 {
        p.annotations()
            .get(POD_DELETION_COST)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0)
    }
    fn restarts(p: &Pod) -> i32 {
        p.status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .map(|cs| cs.iter().map(|c| c.restart_count).max().unwrap_or(0))
            .unwrap_or(0)
    }
    let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    pods.sort_by(|a, b| {
        let (a, b) = (a.as_ref(), b.as_ref());
        // 1. Unassigned before assigned.
        (!node(a).is_empty())
            .cmp(&!node(b).is_empty())
            // 2. Pending < Unknown < Running.
            .then(phase_rank(a).cmp(&phase_rank(b)))
            // 3. Not ready before ready.
            .then(is_ready(a).cmp(&is_ready(b)))
            // 4. Lower deletion cost first.
            .then(cost(a).cmp(&cost(b)))
            // 5. More related pods on the same node first.
            .then_with(|| {
                let rank = |p: &Pod| related.get(node(p)).copied().unwrap_or(0);
                rank(b).cmp(&rank(a))
            })
            // 6. Ready for less time first.
            .then_with(|| match (ready_since(a), ready_since(b)) {
                (Some(x), Some(y)) => y.cmp(&x),
                _ => std::cmp::Ordering::Equal,
            })
            // 7. More restarts first.
            .then(restarts(b).cmp(&restarts(a)))
            // 8. Newer first.
            .then_with(|| created(b).cmp(&created(a)))
    });
    pods
}

/// The status a set should report for its active, claimed pods (upstream's
/// `calculateStatus`); `failure` is the ReplicaFailure condition's message when the last
/// creation or deletion failed.
pub fn desired_status(
    set: &Set,
    pods: &[Arc<Pod>],
    failure: Option<String>,
    now: Timestamp,
) -> ReplicaSetStatus {
    let template_labels = set
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let labelled = pods
        .iter()
        .filter(|p| {
            let labels = p.labels();
            template_labels
                .iter()
                .all(|(k, v)| labels.get(k) == Some(v))
        })
        .count();
    let ready = pods.iter().filter(|p| is_ready(p)).count();
    let available = pods
        .iter()
        .filter(|p| is_available(p, set.min_ready_seconds, now))
        .count();
    let mut conditions: Vec<ReplicaSetCondition> = set
        .status
        .conditions
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.type_ != "ReplicaFailure")
        .collect();
    if let Some(message) = failure {
        let previous = set
            .status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "ReplicaFailure");
        let reason = if pods.len() < set.replicas as usize {
            "FailedCreate"
        } else {
            "FailedDelete"
        };
        // Upstream's `SetCondition` leaves a condition with the same status and reason as it
        // is (first message included): a failure that repeats, each time naming another
        // generated pod, must not rewrite the status and so retrigger a sync at once.
        match previous.filter(|c| c.status == "True" && c.reason.as_deref() == Some(reason)) {
            Some(same) => conditions.push(same.clone()),
            None => conditions.push(ReplicaSetCondition {
                type_: "ReplicaFailure".into(),
                status: "True".into(),
                reason: Some(reason.into()),
                message: Some(message),
                last_transition_time: previous
                    .and_then(|c| c.last_transition_time.clone())
                    .or(Some(Time(now))),
            }),
        }
    }
    let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    ReplicaSetStatus {
        replicas: count(pods.len()),
        fully_labeled_replicas: Some(count(labelled)),
        ready_replicas: Some(count(ready)),
        available_replicas: Some(count(available)),
        observed_generation: set.meta.generation,
        conditions: (!conditions.is_empty()).then_some(conditions),
        terminating_replicas: set.status.terminating_replicas,
    }
}

/// One running controller: its kind, caches, queue and expectations.
pub struct Controller<K> {
    kind: Kind<K>,
    client: Client,
    sets: Arc<Informer<K>>,
    pods: Arc<Informer<Pod>>,
    queue: Arc<WorkQueue>,
    expectations: Expectations,
    events: Events,
}

impl<K> Controller<K>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + serde::Serialize
        + Debug
        + Send
        + Sync
        + 'static,
{
    /// Wires the handlers; run the informers and then [`Controller::run`].
    pub fn new(
        client: Client,
        kind: Kind<K>,
        sets: Arc<Informer<K>>,
        pods: Arc<Informer<Pod>>,
    ) -> Arc<Self> {
        let events = Events::start(client.clone(), kind.component);
        let this = Arc::new(Controller {
            kind,
            client,
            sets,
            pods,
            queue: WorkQueue::new(),
            expectations: Expectations::default(),
            events,
        });
        let weak = Arc::downgrade(&this);
        this.sets.on_change(move |change| {
            if let Some(c) = weak.upgrade() {
                match change {
                    Change::Applied { new, .. } => c.queue.add(key_of(new.as_ref())),
                    Change::Deleted(old) => {
                        let key = key_of(old.as_ref());
                        c.expectations.forget(&key);
                        c.queue.add(key);
                    }
                }
            }
        });
        let weak = Arc::downgrade(&this);
        this.pods.on_change(move |change| {
            if let Some(c) = weak.upgrade() {
                c.pod_changed(change);
            }
        });
        this
    }

    /// The key of the set of ours that controls `pod`, if any.
    fn owner_key(&self, pod: &Pod) -> Option<String> {
        let owner = controller_of(pod)?;
        if owner.kind != self.kind.kind || owner.api_version != self.kind.api_version {
            return None;
        }
        let key = format!("{}/{}", pod.namespace().unwrap_or_default(), owner.name);
        let set = self.sets.get(&key)?;
        (set.meta().uid.as_deref() == Some(owner.uid.as_str())).then_some(key)
    }

    /// Upstream's addPod/updatePod/deletePod handlers.
    fn pod_changed(&self, change: &Change<Pod>) {
        match change {
            Change::Applied { old, new } => {
                let uid = new.metadata.uid.clone().unwrap_or_default();
                let key = self.owner_key(new);
                if let Some(k) = &key {
                    match old {
                        None if new.metadata.deletion_timestamp.is_none() => {
                            self.expectations.observe_add(k)
                        }
                        _ if new.metadata.deletion_timestamp.is_some() => {
                            self.expectations.observe_delete(k, &uid)
                        }
                        _ => {}
                    }
                    self.queue.add(k.clone());
                }
                let old_key = old.as_ref().and_then(|o| self.owner_key(o));
                if old_key.is_some() && old_key != key {
                    self.queue.add(old_key.unwrap_or_default());
                }
                // An orphan whose labels (or owners) changed may be adopted.
                let relabelled = old.as_ref().is_none_or(|o| {
                    o.metadata.labels != new.metadata.labels
                        || o.metadata.owner_references != new.metadata.owner_references
                });
                if controller_of(new.as_ref()).is_none() && relabelled {
                    self.enqueue_selecting(new);
                }
                // A pod that just became ready is available `minReadySeconds` later.
                if let (Some(k), Some(o)) = (&key, old)
                    && !is_ready(o)
                    && is_ready(new)
                    && let Some(set) = self.sets.get(k)
                {
                    let min_ready = (self.kind.to_set)(set.as_ref()).min_ready_seconds;
                    if min_ready > 0 {
                        self.queue
                            .add_after(k.clone(), Duration::from_secs(min_ready as u64 + 1));
                    }
                }
            }
            Change::Deleted(pod) => {
                if let Some(k) = self.owner_key(pod) {
                    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
                    self.expectations.observe_delete(&k, uid);
                    self.queue.add(k);
                }
            }
        }
    }

    fn enqueue_selecting(&self, pod: &Pod) {
        let ns = pod.namespace().unwrap_or_default();
        for set in self.sets.list_namespace(&ns) {
            let s = (self.kind.to_set)(set.as_ref());
            if selects_some(&s.selector, pod.labels()) {
                self.queue.add(key_of(set.as_ref()));
            }
        }
    }

    pub async fn run(self: Arc<Self>, resync: Duration) {
        self.sets.wait_synced().await;
        self.pods.wait_synced().await;
        let this = self.clone();
        let workers = run_workers(
            self.kind.component,
            self.queue.clone(),
            WORKERS,
            move |key| {
                let this = this.clone();
                async move { this.sync(&key).await }
            },
        );
        let resync = super::informer::resync(self.sets.clone(), self.queue.clone(), resync);
        tokio::join!(workers, resync);
    }

    /// Upstream's `syncReplicaSet`.
    async fn sync(&self, key: &str) -> Result<Requeue, kube::Error> {
        let Some(obj) = self.sets.get(key) else {
            self.expectations.forget(key);
            return Ok(None);
        };
        let set = (self.kind.to_set)(obj.as_ref());
        let (ns, _) = split_key(key);
        let pods = self.claim(&set, ns).await?;
        let needs_sync = self.expectations.satisfied(key);
        let mut failure = None;
        if needs_sync
            && set.meta.deletion_timestamp.is_none()
            && let Err(e) = self.manage(key, &set, &pods).await
        {
            failure = Some(api_message(&e));
        }
        let now = Timestamp::now();
        let status = desired_status(&set, &pods, failure.clone(), now);
        if status != set.status {
            let api: Api<K> = Api::namespaced(self.client.clone(), ns);
            let patch = serde_json::json!({"status": status});
            api.patch_status(
                set.meta.name.as_deref().unwrap_or_default(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
        }
        if let Some(message) = failure {
            return Err(kube::Error::Service(message.into()));
        }
        // Pods ready but not yet available become available after minReadySeconds.
        let ready = status.ready_replicas.unwrap_or(0);
        let available = status.available_replicas.unwrap_or(0);
        if set.min_ready_seconds > 0 && ready > available {
            return Ok(Some(Duration::from_secs(set.min_ready_seconds as u64)));
        }
        Ok(None)
    }

    /// The active pods this set controls after adoption and release (upstream's
    /// `claimPods` with `PodControllerRefManager`).
    async fn claim(&self, set: &Set, ns: &str) -> Result<Vec<Arc<Pod>>, kube::Error> {
        let uid = set.meta.uid.clone().unwrap_or_default();
        let mut claimed: Vec<Arc<Pod>> = Vec::new();
        let pods_api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        for pod in self.pods.controlled_by(&uid) {
            if selects_some(&set.selector, pod.labels()) {
                if is_active(&pod) {
                    claimed.push(pod);
                }
            } else if set.meta.deletion_timestamp.is_none() {
                release(&pods_api, pod.as_ref(), &uid).await?;
            }
        }
        if set.meta.deletion_timestamp.is_some() {
            return Ok(claimed);
        }
        // Adopt orphans that match.
        for pod in self.pods.list_namespace(ns) {
            if controller_of(pod.as_ref()).is_some()
                || !is_active(&pod)
                || !selects_some(&set.selector, pod.labels())
            {
                continue;
            }
            let owner = owner_ref(self.kind.api_version, self.kind.kind, &set.meta);
            if let Some(p) = adopt(&pods_api, pod.as_ref(), owner).await? {
                claimed.push(Arc::new(p));
            }
        }
        Ok(claimed)
    }

    /// Upstream's `manageReplicas`.
    async fn manage(&self, key: &str, set: &Set, pods: &[Arc<Pod>]) -> Result<(), kube::Error> {
        let (ns, name) = split_key(key);
        let diff = pods.len() as i64 - i64::from(set.replicas);
        let reference = self.reference(set);
        if diff < 0 {
            let count = ((-diff) as usize).min(BURST_REPLICAS);
            self.expectations.expect(key, count as i64, []);
            let pods_api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
            let owner = owner_ref(self.kind.api_version, self.kind.kind, &set.meta);
            let pod = pod_from_template(&set.template, ns, format!("{name}-"), owner);
            let (created, error) = slow_start(count, || {
                let (pods_api, pod, events, reference) =
                    (&pods_api, &pod, &self.events, reference.clone());
                async move {
                    create_pod(pods_api, pod, events, reference)
                        .await
                        .map(|_| ())
                }
            })
            .await;
            // Creations that were skipped or failed will never be observed.
            self.expectations.lower_adds(key, (count - created) as i64);
            if let Some(e) = error {
                return Err(e);
            }
        } else if diff > 0 {
            let count = (diff as usize).min(BURST_REPLICAS);
            let mut related: HashMap<String, usize> = HashMap::new();
            for p in pods {
                let node = p
                    .spec
                    .as_ref()
                    .and_then(|s| s.node_name.clone())
                    .unwrap_or_default();
                *related.entry(node).or_default() += 1;
            }
            let victims: Vec<Arc<Pod>> = deletion_order(pods.to_vec(), &related)
                .into_iter()
                .take(count)
                .collect();
            self.expectations.expect(
                key,
                0,
                victims.iter().filter_map(|p| p.metadata.uid.clone()),
            );
            let pods_api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
            let results = join_all(victims.iter().map(|p| {
                let (pods_api, reference) = (&pods_api, reference.clone());
                async move {
                    let deleted =
                        delete_pod(pods_api, &p.name_any(), &self.events, reference).await;
                    if !matches!(deleted, Ok(true)) {
                        let uid = p.metadata.uid.as_deref().unwrap_or_default();
                        self.expectations.observe_delete(key, uid);
                    }
                    deleted.map(|_| ())
                }
            }))
            .await;
            if let Some(Err(e)) = results.into_iter().find(|r| r.is_err()) {
                return Err(e);
            }
        }
        Ok(())
    }

    fn reference(&self, set: &Set) -> k8s_openapi::api::core::v1::ObjectReference {
        k8s_openapi::api::core::v1::ObjectReference {
            api_version: Some(self.kind.api_version.into()),
            kind: Some(self.kind.kind.into()),
            name: set.meta.name.clone(),
            namespace: set.meta.namespace.clone(),
            uid: set.meta.uid.clone(),
            resource_version: set.meta.resource_version.clone(),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodSpec, PodStatus};

    fn pod(name: &str, node: &str, phase: &str, ready: bool, created: i64) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                creation_timestamp: Some(Time(Timestamp::from_second(created).unwrap())),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                node_name: (!node.is_empty()).then(|| node.to_string()),
                ..PodSpec::default()
            }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                conditions: ready.then(|| {
                    vec![PodCondition {
                        type_: "Ready".into(),
                        status: "True".into(),
                        last_transition_time: Some(Time(
                            Timestamp::from_second(created + 5).unwrap(),
                        )),
                        ..PodCondition::default()
                    }]
                }),
                ..PodStatus::default()
            }),
        })
    }

    fn names(pods: &[Arc<Pod>]) -> Vec<String> {
        pods.iter().map(|p| p.name_any()).collect()
    }

    #[test]
    fn scale_down_takes_unassigned_then_pending_then_unready_pods_first() {
        let pods = vec![
            pod("running-ready", "n1", "Running", true, 10),
            pod("unassigned", "", "Pending", false, 10),
            pod("pending", "n1", "Pending", false, 10),
            pod("running-unready", "n1", "Running", false, 10),
        ];
        let order = deletion_order(pods, &HashMap::new());
        assert_eq!(
            names(&order),
            ["unassigned", "pending", "running-unready", "running-ready"]
        );
    }

    #[test]
    fn scale_down_prefers_doubled_up_nodes_and_newer_pods() {
        let pods = vec![
            pod("alone-old", "n1", "Running", true, 10),
            pod("shared-a", "n2", "Running", true, 10),
            pod("shared-b", "n2", "Running", true, 20),
        ];
        let related = HashMap::from([("n1".to_string(), 1), ("n2".to_string(), 2)]);
        let order = deletion_order(pods, &related);
        // Both n2 pods go before the lone one; of those, the one ready for less time first.
        assert_eq!(names(&order), ["shared-b", "shared-a", "alone-old"]);
    }

    #[test]
    fn deletion_cost_ranks_before_age() {
        let mut cheap = (*pod("cheap", "n1", "Running", true, 10)).clone();
        cheap.metadata.annotations =
            Some([(POD_DELETION_COST.to_string(), "-5".to_string())].into());
        let pods = vec![pod("newer", "n1", "Running", true, 20), Arc::new(cheap)];
        let order = deletion_order(pods, &HashMap::new());
        assert_eq!(names(&order), ["cheap", "newer"]);
    }

    #[test]
    fn status_counts_ready_and_available_pods() {
        let set = Set {
            meta: ObjectMeta {
                generation: Some(3),
                ..ObjectMeta::default()
            },
            replicas: 3,
            min_ready_seconds: 10,
            selector: LabelSelector::default(),
            template: PodTemplateSpec::default(),
            status: ReplicaSetStatus::default(),
        };
        let pods = vec![
            pod("a", "n1", "Running", true, 0),
            pod("b", "n1", "Running", true, 100),
            pod("c", "n1", "Pending", false, 100),
        ];
        // At t=110 pod a has been ready 105 s, pod b only 5 s.
        let status = desired_status(&set, &pods, None, Timestamp::from_second(110).unwrap());
        assert_eq!(status.replicas, 3);
        assert_eq!(status.ready_replicas, Some(2));
        assert_eq!(status.available_replicas, Some(1));
        assert_eq!(status.observed_generation, Some(3));
        let failed = desired_status(
            &set,
            &pods[..1],
            Some("quota".into()),
            Timestamp::from_second(110).unwrap(),
        );
        let c = failed.conditions.clone().unwrap()[0].clone();
        assert_eq!(
            (c.type_.as_str(), c.reason.as_deref()),
            ("ReplicaFailure", Some("FailedCreate"))
        );
        // The same failure again (another pod name) leaves the condition, and so the status,
        // as it was.
        let mut again = set.clone();
        again.status = failed.clone();
        let repeated = desired_status(
            &again,
            &pods[..1],
            Some("quota, another pod".into()),
            Timestamp::from_second(120).unwrap(),
        );
        assert_eq!(repeated.conditions.unwrap()[0], c);
    }

    #[tokio::test]
    async fn slow_start_doubles_batches_and_stops_at_a_failure() {
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let (done, err) = slow_start(10, || async {
            calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        })
        .await;
        assert_eq!((done, err.is_none()), (10, true));
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let (done, err) = slow_start(10, || async {
            // The 4th call fails: batches 1 and 2 succeed, the batch of 4 has one failure.
            let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if n == 3 {
                Err(kube::Error::Service("boom".into()))
            } else {
                Ok(())
            }
        })
        .await;
        assert_eq!(done, 6);
        assert!(err.is_some());
    }
}
