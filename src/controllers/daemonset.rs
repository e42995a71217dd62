//! The DaemonSet controller (upstream's `pkg/controller/daemon`): one pod per eligible node.
//! A node is eligible when the pod template's `nodeSelector` and required node affinity match
//! it and every NoSchedule/NoExecute taint is tolerated, counting the tolerations the
//! controller adds to every daemon pod. As upstream does since 1.12, the pods are placed by the
//! default scheduler: each gets a required node affinity `matchFields metadata.name In [node]`.
//!
//! Updates follow `spec.updateStrategy`: RollingUpdate within maxUnavailable (delete old pods,
//! the core loop recreates them) or maxSurge (start the new pod first, delete the old one once
//! the new one is available), or OnDelete. Every template is recorded in a ControllerRevision
//! `<ds>-<hash>` whose `data` is upstream's strategic-merge patch, so `kubectl rollout
//! history|undo daemonset` work, and pods carry the hash in `controller-revision-hash`.
//!
//! Decisions are pure functions (`should_run`, `node_plan`, `rolling_update_plan`,
//! `desired_status`, `revisions_to_clean`); the sync reads the caches and writes through the API.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::join_all;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodSpec, PodTemplateSpec, Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use super::deployment::{scaled_value, template_hash};
use super::events::Events;
use super::informer::{
    Change, Expectations, Informer, Requeue, WorkQueue, controller_of, ignore_gone, key_of, lock,
    run_workers, split_key,
};
use super::podcontrol::{adopt, create_pod, delete_pod, release};
use super::replicaset::{
    is_available, is_empty_selector, is_ready, owner_ref, pod_from_template, selects_some,
    slow_start,
};

/// The pod and ControllerRevision label with the template hash (upstream's
/// `DefaultDaemonSetUniqueLabelKey`, the same key as `ControllerRevisionHashLabelKey`).
pub const REVISION_HASH: &str = "controller-revision-hash";
/// Upstream's `BurstReplicas` for the daemon controller.
const BURST_REPLICAS: usize = 250;
/// Upstream's `--concurrent-daemonset-syncs`.
const WORKERS: usize = 2;
const COMPONENT: &str = "daemonset-controller";

// ---- scheduling predicates (the controller may not import the scheduler) ----

use super::nodelifecycle::tolerates;

/// Whether some taint with one of `effects` is tolerated by none of `tolerations` (upstream's
/// `FindMatchingUntoleratedTaint`).
fn has_untolerated(taints: &[Taint], tolerations: &[Toleration], effects: &[&str]) -> bool {
    taints.iter().any(|taint| {
        effects.contains(&taint.effect.as_str()) && !tolerations.iter().any(|t| tolerates(t, taint))
    })
}

/// One node selector requirement against a label or field value (upstream's `nodeaffinity`).
fn requirement_matches(r: &NodeSelectorRequirement, got: Option<&String>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    match r.operator.as_str() {
        "In" => got.is_some_and(|g| values.contains(g)),
        "NotIn" => !got.is_some_and(|g| values.contains(g)),
        "Exists" => got.is_some(),
        "DoesNotExist" => got.is_none(),
        "Gt" | "Lt" => match (got.map(|g| g.parse::<i64>()), values) {
            (Some(Ok(g)), [v]) => match v.parse::<i64>() {
                Ok(v) if r.operator == "Gt" => g > v,
                Ok(v) => g < v,
                Err(_) => false,
            },
            _ => false,
        },
        _ => false,
    }
}

/// A node selector term; expressions and fields are ANDed, an empty term matches nothing.
fn term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let labels = node.labels();
    let name = node.name_any();
    exprs
        .iter()
        .all(|r| requirement_matches(r, labels.get(&r.key)))
        && fields
            .iter()
            .all(|r| r.key == "metadata.name" && requirement_matches(r, Some(&name)))
}

/// `spec.nodeSelector` and the required node affinity (upstream's `GetRequiredNodeAffinity(pod).Match`).
fn node_matches(spec: &PodSpec, node: &Node) -> bool {
    let labels = node.labels();
    let selector_ok = spec
        .node_selector
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    selector_ok
        && required.is_none_or(|r| r.node_selector_terms.iter().any(|t| term_matches(t, node)))
}

// ---- daemon pods ----

fn exists_toleration(key: &str, effect: &str) -> Toleration {
    Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        ..Toleration::default()
    }
}

/// Upstream's `AddOrUpdateDaemonPodTolerations`: daemon pods tolerate the node conditions
/// (not-ready and unreachable NoExecute, so they are never evicted for them; the pressure
/// conditions and unschedulable NoSchedule, so they are placed anyway) and, with host
/// networking, an unavailable pod network.
pub fn add_daemon_tolerations(spec: &mut PodSpec) {
    let mut wanted = vec![
        exists_toleration("node.kubernetes.io/not-ready", "NoExecute"),
        exists_toleration("node.kubernetes.io/unreachable", "NoExecute"),
        exists_toleration("node.kubernetes.io/disk-pressure", "NoSchedule"),
        exists_toleration("node.kubernetes.io/memory-pressure", "NoSchedule"),
        exists_toleration("node.kubernetes.io/pid-pressure", "NoSchedule"),
        exists_toleration("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if spec.host_network == Some(true) {
        wanted.push(exists_toleration(
            "node.kubernetes.io/network-unavailable",
            "NoSchedule",
        ));
    }
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    for t in wanted {
        // Upstream's `AddOrUpdateTolerationInPodSpec`: a toleration with the same key,
        // operator, value and effect is replaced, otherwise the new one is appended.
        let same = |x: &Toleration| {
            x.key == t.key
                && x.operator.as_deref().unwrap_or("Equal")
                    == t.operator.as_deref().unwrap_or("Equal")
                && x.value.as_deref().unwrap_or_default() == t.value.as_deref().unwrap_or_default()
                && x.effect == t.effect
        };
        match tolerations.iter_mut().find(|x| same(x)) {
            Some(x) => *x = t,
            None => tolerations.push(t),
        }
    }
}

/// Upstream's `ReplaceDaemonSetPodNodeNameNodeAffinity`: the pod's required node affinity
/// becomes the single term `matchFields metadata.name In [node]` (the controller has already
/// checked the template's own terms), preferred terms are kept.
pub fn pin_to_node(affinity: Option<Affinity>, node: &str) -> Affinity {
    let selector = NodeSelector {
        node_selector_terms: vec![NodeSelectorTerm {
            match_expressions: None,
            match_fields: Some(vec![NodeSelectorRequirement {
                key: "metadata.name".into(),
                operator: "In".into(),
                values: Some(vec![node.into()]),
            }]),
        }],
    };
    let mut affinity = affinity.unwrap_or_default();
    let node_affinity = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    node_affinity.required_during_scheduling_ignored_during_execution = Some(selector);
    affinity
}

/// The node a daemon pod is for: its `nodeName`, or before binding the single
/// `metadata.name In [node]` field of its required affinity (upstream's `GetTargetNodeName`).
pub fn target_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(n) = spec.node_name.as_ref().filter(|n| !n.is_empty()) {
        return Some(n.clone());
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms.iter().find_map(|t| {
        t.match_fields.iter().flatten().find_map(|r| {
            let values = r.values.as_deref().unwrap_or_default();
            (r.key == "metadata.name" && r.operator == "In" && values.len() == 1)
                .then(|| values[0].clone())
        })
    })
}

/// The template the controller creates pods from (upstream's `CreatePodTemplate`): the
/// DaemonSet's template with the daemon tolerations and the revision hash label.
pub fn pod_template(ds: &DaemonSet, hash: &str) -> PodTemplateSpec {
    let mut template = ds
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    add_daemon_tolerations(template.spec.get_or_insert_with(PodSpec::default));
    template
        .metadata
        .get_or_insert_with(ObjectMeta::default)
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(REVISION_HASH.into(), hash.into());
    template
}

/// Upstream's `NodeShouldRunDaemonPod`: (should run, should continue running). A node whose
/// untolerated taints are NoSchedule only keeps the pod it already has.
pub fn should_run(node: &Node, ds: &DaemonSet) -> (bool, bool) {
    let mut spec = ds
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.clone())
        .unwrap_or_default();
    if spec
        .node_name
        .as_ref()
        .is_some_and(|n| !n.is_empty() && *n != node.name_any())
    {
        return (false, false);
    }
    add_daemon_tolerations(&mut spec);
    if !node_matches(&spec, node) {
        return (false, false);
    }
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default();
    let tolerations = spec.tolerations.as_deref().unwrap_or_default();
    if has_untolerated(taints, tolerations, &["NoSchedule", "NoExecute"]) {
        return (false, !has_untolerated(taints, tolerations, &["NoExecute"]));
    }
    (true, true)
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

/// Upstream's `podByCreationTimestampAndPhase`: running before pending, then oldest first.
fn sort_oldest_first(pods: &mut [Arc<Pod>]) {
    pods.sort_by(|a, b| {
        let running = |p: &Pod| phase(p) == "Running";
        running(b)
            .cmp(&running(a))
            .then_with(|| {
                let t = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
                t(a).cmp(&t(b))
            })
            .then_with(|| a.name_any().cmp(&b.name_any()))
    });
}

fn hash_of(pod: &Pod) -> Option<&str> {
    pod.labels().get(REVISION_HASH).map(String::as_str)
}

/// What the core loop does on one node.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct NodePlan {
    pub create: bool,
    pub delete: Vec<String>,
    /// Failed pods among `delete`, for the FailedDaemonPod event.
    pub failed: Vec<String>,
}

/// Upstream's `podsShouldBeOnNode`: create the missing pod, delete finished pods, extra pods
/// (all but the oldest; with surge, one old and one new may coexist while the new one is not
/// yet available) and pods on nodes that should no longer run them.
pub fn node_plan(
    (run, keep): (bool, bool),
    pods: &[Arc<Pod>],
    surge: bool,
    hash: &str,
    min_ready_seconds: i32,
    now: Timestamp,
) -> NodePlan {
    let mut plan = NodePlan::default();
    if run && pods.is_empty() {
        plan.create = true;
        return plan;
    }
    if !keep {
        plan.delete = pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .map(|p| p.name_any())
            .collect();
        return plan;
    }
    let mut running: Vec<Arc<Pod>> = Vec::new();
    for p in pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
    {
        match phase(p) {
            "Failed" => {
                plan.delete.push(p.name_any());
                plan.failed.push(p.name_any());
            }
            "Succeeded" => plan.delete.push(p.name_any()),
            _ => running.push(p.clone()),
        }
    }
    sort_oldest_first(&mut running);
    if !surge {
        plan.delete
            .extend(running.iter().skip(1).map(|p| p.name_any()));
        return plan;
    }
    if running.len() <= 1 {
        // Surging keeps at least one live pod on the node.
        plan.create = running.is_empty() && run;
        return plan;
    }
    // With surge: the oldest new and the oldest old pod may stay; the old one goes when it is
    // not ready or the new one is available.
    let (mut oldest_new, mut oldest_old) = (None, None);
    for p in &running {
        let slot = if hash_of(p) == Some(hash) {
            &mut oldest_new
        } else {
            &mut oldest_old
        };
        if slot.is_none() {
            *slot = Some(p.clone());
        } else {
            plan.delete.push(p.name_any());
        }
    }
    if let (Some(new), Some(old)) = (oldest_new, oldest_old)
        && (!is_ready(&old) || is_available(&new, min_ready_seconds, now))
    {
        plan.delete.push(old.name_any());
    }
    plan
}

/// The back-off between deletions of failed daemon pods on one node (upstream's
/// `failedPodsBackoff`, a `flowcontrol.Backoff` of 1 s doubling to 15 min): a pod the kubelet
/// keeps rejecting is not deleted and recreated in a hot loop. Entries are keyed by
/// [`failed_pods_backoff_key`]; an entry untouched for twice the maximum starts over, as
/// upstream's `hasExpired`, and is dropped by [`FailedPodsBackoff::gc`].
#[derive(Debug)]
pub struct FailedPodsBackoff {
    initial: Duration,
    max: Duration,
    /// Per key: the current back-off and when it was last raised.
    entries: HashMap<String, (Duration, Timestamp)>,
}

impl Default for FailedPodsBackoff {
    fn default() -> Self {
        FailedPodsBackoff::new(Duration::from_secs(1), Duration::from_secs(15 * 60))
    }
}

/// `now - then`, zero when `then` is in the future.
fn since(then: Timestamp, now: Timestamp) -> Duration {
    Duration::try_from(now.duration_since(then)).unwrap_or(Duration::ZERO)
}

impl FailedPodsBackoff {
    pub fn new(initial: Duration, max: Duration) -> FailedPodsBackoff {
        FailedPodsBackoff {
            initial,
            max,
            entries: HashMap::new(),
        }
    }

    /// Upstream's `IsInBackOffSinceUpdate`: the time left before the key's next deletion, if
    /// it must wait.
    pub fn remaining(&self, key: &str, now: Timestamp) -> Option<Duration> {
        let (backoff, updated) = self.entries.get(key)?;
        let elapsed = since(*updated, now);
        (elapsed < *backoff).then(|| *backoff - elapsed)
    }

    /// Upstream's `Next`: the first deletion (or one after a long quiet spell) waits the
    /// initial back-off before the next one; each further one doubles it up to the maximum.
    pub fn next(&mut self, key: &str, now: Timestamp) {
        let expiry = self.max.saturating_mul(2);
        let backoff = match self.entries.get(key) {
            Some((b, updated)) if since(*updated, now) <= expiry => {
                b.saturating_mul(2).min(self.max)
            }
            _ => self.initial,
        };
        self.entries.insert(key.to_string(), (backoff, now));
    }

    /// Upstream's `GC`: forgets keys untouched for twice the maximum back-off.
    pub fn gc(&mut self, now: Timestamp) {
        let expiry = self.max.saturating_mul(2);
        self.entries
            .retain(|_, (_, updated)| since(*updated, now) <= expiry);
    }
}

/// Upstream's `failedPodsBackoffKey`: the DaemonSet (uid and observed generation) and the
/// node.
pub fn failed_pods_backoff_key(ds: &DaemonSet, node: &str) -> String {
    let uid = ds.metadata.uid.as_deref().unwrap_or_default();
    let generation = ds
        .status
        .as_ref()
        .and_then(|s| s.observed_generation)
        .unwrap_or(0);
    format!("{uid}/{generation}/{node}")
}

/// The unscheduled pods aimed at nodes that no longer exist (upstream's
/// `getUnscheduledPodsWithoutNode`); bound pods of deleted nodes are the pod GC's.
pub fn unscheduled_without_node(
    nodes: &HashSet<String>,
    by_node: &BTreeMap<String, Vec<Arc<Pod>>>,
) -> Vec<String> {
    by_node
        .iter()
        .filter(|(node, _)| !nodes.contains(*node))
        .flat_map(|(_, pods)| pods)
        .filter(|p| {
            p.spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .is_none_or(str::is_empty)
                && p.metadata.deletion_timestamp.is_none()
        })
        .map(|p| p.name_any())
        .collect()
}

/// Upstream's `findUpdatedPodsOnNode`: the node's new and old live pod; `None` when there are
/// more than one of either (the core loop cleans those up first).
/// A node's (new, old) live pod.
type NewAndOld = (Option<Arc<Pod>>, Option<Arc<Pod>>);

fn updated_on_node(pods: &[Arc<Pod>], hash: &str) -> Option<NewAndOld> {
    let (mut new, mut old) = (None, None);
    for p in pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
    {
        let slot = if hash_of(p) == Some(hash) {
            &mut new
        } else {
            &mut old
        };
        if slot.is_some() {
            return None;
        }
        *slot = Some(p.clone());
    }
    Some((new, old))
}

/// Upstream's `SurgeCount` and `UnavailableCount` against the desired number of nodes, both
/// rounded up; 0 and 0 would never progress, so maxUnavailable becomes 1.
pub fn fenceposts(ds: &DaemonSet, desired: i32) -> (i32, i32) {
    let ru = ds
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .filter(|s| s.type_.as_deref().is_none_or(|t| t == "RollingUpdate"))
        .and_then(|s| s.rolling_update.as_ref());
    let Some(ru) = ru else {
        return (0, 0);
    };
    let surge = ru
        .max_surge
        .as_ref()
        .map(|v| scaled_value(v, desired, true))
        .unwrap_or(0);
    let unavailable = ru
        .max_unavailable
        .as_ref()
        .map(|v| scaled_value(v, desired, true))
        .unwrap_or(0);
    if desired > 0 && surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

/// Upstream's `AllowsSurge`.
fn allows_surge(ds: &DaemonSet) -> bool {
    fenceposts(ds, 1).0 != 0
}

/// Upstream's `rollingUpdate`: which old pods to delete and on which nodes to start a new pod
/// now. `by_node` holds every node that should run the pod (possibly with no pods) and every
/// node that has some; `eligible` tells whether a node should run it.
pub fn rolling_update_plan(
    ds: &DaemonSet,
    by_node: &BTreeMap<String, Vec<Arc<Pod>>>,
    eligible: &dyn Fn(&str) -> bool,
    hash: &str,
    now: Timestamp,
) -> (Vec<String>, Vec<String>) {
    let min_ready = ds
        .spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0);
    let available = |p: &Pod| is_available(p, min_ready, now);
    let desired = by_node.keys().filter(|n| eligible(n)).count() as i32;
    let (max_surge, max_unavailable) = fenceposts(ds, desired);
    if max_surge == 0 {
        // Delete just enough old pods to stay within maxUnavailable; the core loop recreates
        // them. Old pods that are unavailable anyway are always replaced.
        let mut unavailable = 0;
        let (mut replace, mut candidates) = (Vec::new(), Vec::new());
        for pods in by_node.values() {
            let Some((new, old)) = updated_on_node(pods, hash) else {
                unavailable += 1;
                continue;
            };
            match (new, old) {
                (None, None) | (Some(_), Some(_)) => unavailable += 1,
                (Some(new), None) => {
                    if !available(&new) {
                        unavailable += 1;
                    }
                }
                (None, Some(old)) => {
                    if !available(&old) {
                        replace.push(old.name_any());
                        unavailable += 1;
                    } else if unavailable < max_unavailable {
                        candidates.push(old.name_any());
                    }
                }
            }
        }
        let room = (max_unavailable - unavailable).max(0) as usize;
        replace.extend(candidates.into_iter().take(room));
        return (replace, Vec::new());
    }
    // Surge: start a new pod next to an old one (always where the old one is unavailable, on
    // at most maxSurge other nodes) and delete the old pod once the new one is available.
    let (mut delete, mut not_eligible) = (Vec::new(), Vec::new());
    let (mut allowed, mut candidates) = (Vec::new(), Vec::new());
    let (mut surging, mut available_count) = (0, 0);
    for (node, pods) in by_node {
        let Some((new, old)) = updated_on_node(pods, hash) else {
            surging += 1;
            continue;
        };
        if let Some(p) = old.as_ref().or(new.as_ref())
            && available(p)
        {
            available_count += 1;
        }
        match (new, old) {
            (_, None) => {}
            (None, Some(old)) => {
                if !available(&old) {
                    if eligible(node) {
                        allowed.push(node.clone());
                    } else {
                        delete.push(old.name_any());
                    }
                } else if !eligible(node) {
                    not_eligible.push(old.name_any());
                } else if surging < max_surge {
                    candidates.push(node.clone());
                }
            }
            (Some(new), Some(old)) => {
                if available(&new) {
                    delete.push(old.name_any());
                } else {
                    surging += 1;
                }
            }
        }
    }
    // Pods on nodes that no longer qualify go only while enough others are available.
    let deletable = (available_count - desired).max(0) as usize;
    delete.extend(not_eligible.into_iter().take(deletable));
    let room = (max_surge - surging).max(0) as usize;
    allowed.extend(candidates.into_iter().take(room));
    (delete, allowed)
}

/// Upstream's `updateDaemonSetStatus` counts; `observed` says whether this sync acted on the
/// current generation.
pub fn desired_status(
    ds: &DaemonSet,
    nodes: &[Arc<Node>],
    by_node: &BTreeMap<String, Vec<Arc<Pod>>>,
    hash: &str,
    observed: bool,
    now: Timestamp,
) -> DaemonSetStatus {
    let min_ready = ds
        .spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0);
    let (mut desired, mut current, mut misscheduled) = (0, 0, 0);
    let (mut ready, mut available, mut updated) = (0, 0, 0);
    for node in nodes {
        let (run, _) = should_run(node, ds);
        let mut pods = by_node.get(&node.name_any()).cloned().unwrap_or_default();
        if !run {
            if !pods.is_empty() {
                misscheduled += 1;
            }
            continue;
        }
        desired += 1;
        if pods.is_empty() {
            continue;
        }
        current += 1;
        sort_oldest_first(&mut pods);
        let pod = &pods[0];
        if is_ready(pod) {
            ready += 1;
            if is_available(pod, min_ready, now) {
                available += 1;
            }
        }
        if hash_of(pod) == Some(hash) {
            updated += 1;
        }
    }
    let old = ds.status.clone().unwrap_or_default();
    DaemonSetStatus {
        desired_number_scheduled: desired,
        current_number_scheduled: current,
        number_misscheduled: misscheduled,
        number_ready: ready,
        number_available: Some(available),
        updated_number_scheduled: Some(updated),
        number_unavailable: Some(desired - available),
        observed_generation: if observed {
            ds.metadata.generation
        } else {
            old.observed_generation
        },
        collision_count: old.collision_count,
        conditions: old.conditions,
    }
}

// ---- history ----

/// Upstream's `getPatch` (daemon and statefulset controllers alike): the strategic-merge
/// patch that replaces `spec.template`, stored as a ControllerRevision's `data` and applied
/// by `kubectl rollout undo`.
pub fn revision_patch(template: &PodTemplateSpec) -> Value {
    let mut t = serde_json::to_value(template).unwrap_or_else(|_| json!({}));
    if let Some(m) = t.as_object_mut() {
        m.insert("$patch".into(), json!("replace"));
    }
    json!({"spec": {"template": t}})
}

/// The template a revision records (upstream applies the patch to the owner; the patch
/// replaces the whole template, so that is the template itself).
pub fn revision_template(rev: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut t = rev.data.as_ref()?.0.get("spec")?.get("template")?.clone();
    t.as_object_mut()?.remove("$patch");
    serde_json::from_value(t).ok()
}

/// Upstream's `Match`: whether a revision records the DaemonSet's current template.
fn revision_matches(ds: &DaemonSet, rev: &ControllerRevision) -> bool {
    let template = ds
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    rev.data.as_ref().map(|d| &d.0) == Some(&revision_patch(&template))
}

/// Upstream's `cleanupHistory`: the oldest revisions beyond `revisionHistoryLimit` that no
/// live pod still uses.
pub fn revisions_to_clean(
    limit: i32,
    old: &[Arc<ControllerRevision>],
    live_hashes: &HashSet<String>,
) -> Vec<String> {
    let mut kill = old.len() as i64 - i64::from(limit);
    let mut sorted = old.to_vec();
    sorted.sort_by_key(|r| (r.revision, r.name_any()));
    let mut out = Vec::new();
    for rev in sorted {
        if kill <= 0 {
            break;
        }
        if rev
            .labels()
            .get(REVISION_HASH)
            .is_some_and(|h| live_hashes.contains(h))
        {
            continue;
        }
        out.push(rev.name_any());
        kill -= 1;
    }
    out
}

// ---- pod claiming, shared with the StatefulSet controller ----

/// The active and terminating pods `owner` controls after adoption of matching orphans and
/// release of controlled pods that no longer match (upstream's `PodControllerRefManager`).
/// `member` further restricts which pods may be adopted.
pub async fn claim_pods(
    client: &Client,
    pods: &Informer<Pod>,
    owner: (&str, &str, &ObjectMeta),
    selector: &LabelSelector,
    member: &(dyn Fn(&Pod) -> bool + Sync),
) -> Result<Vec<Arc<Pod>>, kube::Error> {
    let (api_version, kind, meta) = owner;
    let uid = meta.uid.clone().unwrap_or_default();
    let ns = meta.namespace.clone().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let deleting = meta.deletion_timestamp.is_some();
    let mut claimed = Vec::new();
    for pod in pods.controlled_by(&uid) {
        if selects_some(selector, pod.labels()) || deleting {
            claimed.push(pod);
            continue;
        }
        release(&api, pod.as_ref(), &uid).await?;
    }
    if deleting {
        return Ok(claimed);
    }
    for pod in pods.list_namespace(&ns) {
        if controller_of(pod.as_ref()).is_some()
            || pod.metadata.deletion_timestamp.is_some()
            || !selects_some(selector, pod.labels())
            || !member(&pod)
        {
            continue;
        }
        if let Some(p) = adopt(&api, pod.as_ref(), owner_ref(api_version, kind, meta)).await? {
            claimed.push(Arc::new(p));
        }
    }
    Ok(claimed)
}

pub fn object_reference(
    api_version: &str,
    kind: &str,
    meta: &ObjectMeta,
) -> k8s_openapi::api::core::v1::ObjectReference {
    k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some(api_version.into()),
        kind: Some(kind.into()),
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        ..Default::default()
    }
}

// ---- the controller ----

pub struct Controller {
    client: Client,
    daemon_sets: Arc<Informer<DaemonSet>>,
    pods: Arc<Informer<Pod>>,
    nodes: Arc<Informer<Node>>,
    revisions: Arc<Informer<ControllerRevision>>,
    queue: Arc<WorkQueue>,
    expectations: Expectations,
    events: Events,
    failed_backoff: Mutex<FailedPodsBackoff>,
}

/// Whether a node change can change where daemon pods run (upstream's
/// `shouldIgnoreNodeUpdate` ignores heartbeats: same condition types and statuses, nothing
/// else changed).
fn node_changed(old: &Node, new: &Node) -> bool {
    let conditions = |n: &Node| -> Vec<(String, String)> {
        n.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .map(|cs| {
                cs.iter()
                    .map(|c| (c.type_.clone(), c.status.clone()))
                    .collect()
            })
            .unwrap_or_default()
    };
    old.labels() != new.labels() || old.spec != new.spec || conditions(old) != conditions(new)
}

impl Controller {
    pub fn new(
        client: Client,
        daemon_sets: Arc<Informer<DaemonSet>>,
        pods: Arc<Informer<Pod>>,
        nodes: Arc<Informer<Node>>,
        revisions: Arc<Informer<ControllerRevision>>,
    ) -> Arc<Self> {
        let this = Arc::new(Controller {
            events: Events::start(client.clone(), COMPONENT),
            client,
            daemon_sets,
            pods,
            nodes,
            revisions,
            queue: WorkQueue::new(),
            expectations: Expectations::default(),
            failed_backoff: Mutex::new(FailedPodsBackoff::default()),
        });
        let weak = Arc::downgrade(&this);
        this.daemon_sets.on_change(move |change| {
            if let Some(c) = weak.upgrade() {
                match change {
                    Change::Applied { new, .. } => c.queue.add(key_of(new.as_ref())),
                    Change::Deleted(old) => {
                        c.expectations.forget(&key_of(old.as_ref()));
                        c.queue.add(key_of(old.as_ref()));
                    }
                }
            }
        });
        let weak = Arc::downgrade(&this);
        this.pods.on_change(move |change| {
            let Some(c) = weak.upgrade() else { return };
            match change {
                Change::Applied { old, new } => {
                    let Some(key) = c.owner_key(new) else {
                        c.enqueue_selecting(new);
                        return;
                    };
                    if old.is_none() {
                        c.expectations.observe_add(&key);
                    }
                    if new.metadata.deletion_timestamp.is_some() {
                        c.expectations
                            .observe_delete(&key, new.metadata.uid.as_deref().unwrap_or_default());
                    }
                    c.queue.add(key);
                }
                Change::Deleted(pod) => {
                    if let Some(key) = c.owner_key(pod) {
                        c.expectations
                            .observe_delete(&key, pod.metadata.uid.as_deref().unwrap_or_default());
                        c.queue.add(key);
                    }
                }
            }
        });
        let weak = Arc::downgrade(&this);
        this.nodes.on_change(move |change| {
            let Some(c) = weak.upgrade() else { return };
            let relevant = match change {
                Change::Applied {
                    old: Some(old),
                    new,
                } => node_changed(old, new),
                _ => true,
            };
            if relevant {
                for ds in c.daemon_sets.list() {
                    c.queue.add(key_of(ds.as_ref()));
                }
            }
        });
        this.revisions.enqueue_owners(&this.queue, "DaemonSet");
        this
    }

    fn owner_key(&self, pod: &Pod) -> Option<String> {
        let o = controller_of(pod).filter(|o| o.kind == "DaemonSet")?;
        Some(format!(
            "{}/{}",
            pod.namespace().unwrap_or_default(),
            o.name
        ))
    }

    fn enqueue_selecting(&self, pod: &Pod) {
        if controller_of(pod).is_some() {
            return;
        }
        for ds in self
            .daemon_sets
            .list_namespace(&pod.namespace().unwrap_or_default())
        {
            if ds
                .spec
                .as_ref()
                .is_some_and(|s| selects_some(&s.selector, pod.labels()))
            {
                self.queue.add(key_of(ds.as_ref()));
            }
        }
    }

    pub async fn run(self: Arc<Self>, resync: Duration) {
        self.daemon_sets.wait_synced().await;
        self.pods.wait_synced().await;
        self.nodes.wait_synced().await;
        self.revisions.wait_synced().await;
        let this = self.clone();
        let workers = run_workers(COMPONENT, self.queue.clone(), WORKERS, move |key| {
            let this = this.clone();
            async move { this.sync(&key).await }
        });
        let resync = super::informer::resync(self.daemon_sets.clone(), self.queue.clone(), resync);
        tokio::join!(workers, resync);
    }

    /// Upstream's `syncDaemonSet`.
    async fn sync(&self, key: &str) -> Result<Requeue, kube::Error> {
        let Some(ds) = self.daemon_sets.get(key) else {
            self.expectations.forget(key);
            return Ok(None);
        };
        let spec = ds.spec.clone().unwrap_or_default();
        let reference = object_reference("apps/v1", "DaemonSet", &ds.metadata);
        if is_empty_selector(&spec.selector) {
            self.events.warning(
                reference,
                "SelectingAll",
                "This daemon set is selecting all pods. A non-empty selector is required.".into(),
            );
            return Ok(None);
        }
        // A DaemonSet being deleted: its history may already be gone, so upstream leaves it
        // (and its status) alone.
        if ds.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let (ns, _) = split_key(key);
        let (cur, old) = self.construct_history(&ds, ns).await?;
        let hash = cur.labels().get(REVISION_HASH).cloned().unwrap_or_default();
        let nodes = self.nodes.list();
        let now = Timestamp::now();
        if !self.expectations.satisfied(key) {
            let by_node = self.pods_by_node(&ds).await?;
            self.write_status(
                &ds,
                desired_status(&ds, &nodes, &by_node, &hash, false, now),
            )
            .await?;
            return Ok(None);
        }
        let result = self.update(&ds, key, &nodes, &hash, &old, now).await;
        let by_node = self.pods_by_node(&ds).await?;
        let status = desired_status(&ds, &nodes, &by_node, &hash, true, now);
        let min_ready = spec.min_ready_seconds.unwrap_or(0);
        let requeue = (min_ready > 0 && Some(status.number_ready) != status.number_available)
            .then(|| Duration::from_secs(min_ready as u64));
        self.write_status(&ds, status).await?;
        result.map(|r| r.or(requeue))
    }

    /// The claimed pods grouped by target node, without terminal pods already being deleted
    /// (upstream's `getNodesToDaemonPods`).
    async fn pods_by_node(
        &self,
        ds: &DaemonSet,
    ) -> Result<BTreeMap<String, Vec<Arc<Pod>>>, kube::Error> {
        let selector = ds
            .spec
            .as_ref()
            .map(|s| s.selector.clone())
            .unwrap_or_default();
        let claimed = claim_pods(
            &self.client,
            &self.pods,
            ("apps/v1", "DaemonSet", &ds.metadata),
            &selector,
            &|_| true,
        )
        .await?;
        let mut by_node: BTreeMap<String, Vec<Arc<Pod>>> = BTreeMap::new();
        for pod in claimed {
            if matches!(phase(&pod), "Succeeded" | "Failed")
                && pod.metadata.deletion_timestamp.is_some()
            {
                continue;
            }
            if let Some(node) = target_node(&pod) {
                by_node.entry(node).or_default().push(pod);
            }
        }
        Ok(by_node)
    }

    /// Upstream's `updateDaemonSet`: the core loop, then the update strategy, then history
    /// cleanup.
    async fn update(
        &self,
        ds: &DaemonSet,
        key: &str,
        nodes: &[Arc<Node>],
        hash: &str,
        old: &[Arc<ControllerRevision>],
        now: Timestamp,
    ) -> Result<Requeue, kube::Error> {
        let spec = ds.spec.clone().unwrap_or_default();
        let min_ready = spec.min_ready_seconds.unwrap_or(0);
        let surge = allows_surge(ds);
        let by_node = self.pods_by_node(ds).await?;
        let reference = object_reference("apps/v1", "DaemonSet", &ds.metadata);
        // manage
        let (mut create, mut delete) = (Vec::new(), Vec::new());
        let mut requeue: Requeue = None;
        let names: HashSet<String> = nodes.iter().map(|n| n.name_any()).collect();
        lock(&self.failed_backoff).gc(now);
        for node in nodes {
            let name = node.name_any();
            let pods = by_node.get(&name).cloned().unwrap_or_default();
            let mut plan = node_plan(should_run(node, ds), &pods, surge, hash, min_ready, now);
            let backoff_key = failed_pods_backoff_key(ds, &name);
            for failed in &plan.failed {
                // Upstream's `podsShouldBeOnNode`: a failed pod on a node in back-off stays
                // (and so is not replaced yet) until the back-off is over.
                let mut backoff = lock(&self.failed_backoff);
                if let Some(wait) = backoff.remaining(&backoff_key, now) {
                    plan.delete.retain(|d| d != failed);
                    requeue = Some(requeue.map_or(wait, |r| r.min(wait)));
                    continue;
                }
                backoff.next(&backoff_key, now);
                self.events.warning(
                    reference.clone(),
                    "FailedDaemonPod",
                    format!(
                        "Found failed daemon pod {}/{failed} on node {name}, will try to kill it",
                        ds.namespace().unwrap_or_default()
                    ),
                );
            }
            if plan.create {
                create.push(name.clone());
            }
            delete.extend(plan.delete);
        }
        delete.extend(unscheduled_without_node(&names, &by_node));
        self.report_unplaced(&reference, &by_node);
        self.sync_nodes(ds, key, delete, create, hash).await?;
        if !self.expectations.satisfied(key) {
            return Ok(requeue);
        }
        let rolling = spec
            .update_strategy
            .as_ref()
            .and_then(|s| s.type_.as_deref())
            .is_none_or(|t| t == "RollingUpdate");
        if rolling {
            let mut by_node = self.pods_by_node(ds).await?;
            let eligible: HashSet<String> = nodes
                .iter()
                .filter(|n| should_run(n, ds).0)
                .map(|n| n.name_any())
                .collect();
            for n in &eligible {
                by_node.entry(n.clone()).or_default();
            }
            let (delete, create) =
                rolling_update_plan(ds, &by_node, &|n| eligible.contains(n), hash, now);
            self.sync_nodes(ds, key, delete, create, hash).await?;
        }
        // cleanupHistory
        let live: HashSet<String> = self
            .pods_by_node(ds)
            .await?
            .values()
            .flatten()
            .filter_map(|p| hash_of(p).map(str::to_string))
            .collect();
        let limit = spec.revision_history_limit.unwrap_or(10);
        let api: Api<ControllerRevision> =
            Api::namespaced(self.client.clone(), &ds.namespace().unwrap_or_default());
        for name in revisions_to_clean(limit, old, &live) {
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) | Err(kube::Error::Api(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(requeue)
    }

    /// FailedPlacement: a daemon pod the scheduler could not place on its node. Upstream
    /// emitted it from its own placement check before 1.12; with the default scheduler placing
    /// the pods, the scheduler's Unschedulable verdict is what is reported.
    fn report_unplaced(
        &self,
        reference: &k8s_openapi::api::core::v1::ObjectReference,
        by_node: &BTreeMap<String, Vec<Arc<Pod>>>,
    ) {
        for (node, pods) in by_node {
            for pod in pods {
                let bound = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.node_name.as_deref())
                    .is_some_and(|n| !n.is_empty());
                let unschedulable = pod
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"))
                    .filter(|c| {
                        c.status == "False" && c.reason.as_deref() == Some("Unschedulable")
                    });
                if let (false, Some(c)) = (bound, unschedulable) {
                    self.events.warning(
                        reference.clone(),
                        "FailedPlacement",
                        format!(
                            "failed to place pod on {node:?}: {}",
                            c.message.as_deref().unwrap_or_default()
                        ),
                    );
                }
            }
        }
    }

    /// Upstream's `syncNodes`: deletes the pods and creates one pod per node, in slow-start
    /// batches, under expectations.
    async fn sync_nodes(
        &self,
        ds: &DaemonSet,
        key: &str,
        delete: Vec<String>,
        create: Vec<String>,
        hash: &str,
    ) -> Result<(), kube::Error> {
        if delete.is_empty() && create.is_empty() {
            return Ok(());
        }
        let ns = ds.namespace().unwrap_or_default();
        let create: Vec<String> = create.into_iter().take(BURST_REPLICAS).collect();
        let delete: Vec<String> = delete.into_iter().take(BURST_REPLICAS).collect();
        let uid_of = |name: &str| {
            self.pods
                .get(&format!("{ns}/{name}"))
                .and_then(|p| p.metadata.uid.clone())
                .unwrap_or_default()
        };
        let delete_uids: Vec<String> = delete.iter().map(|n| uid_of(n)).collect();
        self.expectations
            .expect(key, create.len() as i64, delete_uids.clone());
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let reference = object_reference("apps/v1", "DaemonSet", &ds.metadata);
        let template = pod_template(ds, hash);
        let owner = owner_ref("apps/v1", "DaemonSet", &ds.metadata);
        let next = std::sync::atomic::AtomicUsize::new(0);
        let (created, error) = slow_start(create.len(), || {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let node = create[i].clone();
            let mut pod =
                pod_from_template(&template, &ns, format!("{}-", ds.name_any()), owner.clone());
            if let Some(spec) = pod.spec.as_mut() {
                spec.affinity = Some(pin_to_node(spec.affinity.take(), &node));
            }
            let (api, reference, events) = (&api, reference.clone(), &self.events);
            async move { create_pod(api, &pod, events, reference).await.map(|_| ()) }
        })
        .await;
        self.expectations
            .lower_adds(key, (create.len() - created) as i64);
        let results = join_all(delete.iter().zip(&delete_uids).map(|(name, uid)| {
            let (api, reference) = (&api, reference.clone());
            async move {
                let deleted = delete_pod(api, name, &self.events, reference).await;
                if !matches!(deleted, Ok(true)) {
                    self.expectations.observe_delete(key, uid);
                }
                deleted.map(|_| ())
            }
        }))
        .await;
        if let Some(e) = error {
            return Err(e);
        }
        results.into_iter().find(|r| r.is_err()).unwrap_or(Ok(()))
    }

    /// Upstream's `constructHistory`: the revision of the current template (created when
    /// missing, its `revision` raised above the others when an old template came back) and the
    /// old ones.
    async fn construct_history(
        &self,
        ds: &DaemonSet,
        ns: &str,
    ) -> Result<(Arc<ControllerRevision>, Vec<Arc<ControllerRevision>>), kube::Error> {
        let uid = ds.metadata.uid.clone().unwrap_or_default();
        let api: Api<ControllerRevision> = Api::namespaced(self.client.clone(), ns);
        let (mut current, mut old): (Vec<Arc<ControllerRevision>>, Vec<Arc<ControllerRevision>>) =
            self.revisions
                .controlled_by(&uid)
                .into_iter()
                .partition(|r| revision_matches(ds, r));
        let next = old.iter().map(|r| r.revision).max().unwrap_or(0) + 1;
        current.sort_by_key(|r| (r.revision, r.name_any()));
        // Upstream's `dedupCurHistories`: keep the newest, delete duplicates (after moving
        // pods to its hash, which our pods never need: a duplicate has its own hash label).
        let cur = match current.pop() {
            Some(cur) => {
                for dup in &current {
                    let _ = api.delete(&dup.name_any(), &DeleteParams::default()).await;
                }
                old.retain(|r| !current.iter().any(|d| d.metadata.uid == r.metadata.uid));
                if cur.revision < next {
                    let patch = json!({"revision": next});
                    Arc::new(
                        api.patch(
                            &cur.name_any(),
                            &PatchParams::default(),
                            &Patch::Merge(&patch),
                        )
                        .await?,
                    )
                } else {
                    cur
                }
            }
            None => Arc::new(self.snapshot(ds, ns, next).await?),
        };
        Ok((cur, old))
    }

    /// Upstream's `snapshot`: a new ControllerRevision `<ds>-<hash>`; a name taken by another
    /// template is a hash collision, resolved by bumping `status.collisionCount`.
    async fn snapshot(
        &self,
        ds: &DaemonSet,
        ns: &str,
        revision: i64,
    ) -> Result<ControllerRevision, kube::Error> {
        let template = ds
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default();
        let collision = ds.status.as_ref().and_then(|s| s.collision_count);
        let hash = template_hash(&template, collision);
        let name = format!("{}-{hash}", ds.name_any());
        let mut labels = template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        labels.insert(REVISION_HASH.into(), hash.clone());
        let rev = ControllerRevision {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.into()),
                labels: Some(labels),
                annotations: ds.metadata.annotations.clone(),
                owner_references: Some(vec![owner_ref("apps/v1", "DaemonSet", &ds.metadata)]),
                ..ObjectMeta::default()
            },
            data: Some(RawExtension(revision_patch(&template))),
            revision,
        };
        let api: Api<ControllerRevision> = Api::namespaced(self.client.clone(), ns);
        match api.create(&PostParams::default(), &rev).await {
            Err(kube::Error::Api(s)) if s.code == 409 => {
                let existing = api.get(&name).await?;
                if revision_matches(ds, &existing) {
                    return Ok(existing);
                }
                let ds_api: Api<DaemonSet> = Api::namespaced(self.client.clone(), ns);
                let patch = json!({"status": {"collisionCount": collision.unwrap_or(0) + 1}});
                ds_api
                    .patch_status(
                        &ds.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await?;
                Err(kube::Error::Api(s))
            }
            other => other,
        }
    }

    async fn write_status(
        &self,
        ds: &DaemonSet,
        status: DaemonSetStatus,
    ) -> Result<(), kube::Error> {
        if ds.status.as_ref() == Some(&status) {
            return Ok(());
        }
        let api: Api<DaemonSet> =
            Api::namespaced(self.client.clone(), &ds.namespace().unwrap_or_default());
        let patch = json!({"status": status});
        ignore_gone(
            api.patch_status(
                &ds.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{
        DaemonSetSpec, DaemonSetUpdateStrategy, RollingUpdateDaemonSet,
    };
    use k8s_openapi::api::core::v1::{NodeSpec, PodCondition, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    fn node(name: &str, labels: &[(&str, &str)], taints: Vec<Taint>) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..ObjectMeta::default()
            },
            spec: Some(NodeSpec {
                taints: (!taints.is_empty()).then_some(taints),
                ..NodeSpec::default()
            }),
            status: None,
        }
    }

    fn taint(key: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            effect: effect.into(),
            ..Taint::default()
        }
    }

    fn ds(spec: PodSpec, surge: &str, unavailable: &str) -> DaemonSet {
        let parse = |s: &str| match s.parse::<i32>() {
            Ok(i) => IntOrString::Int(i),
            Err(_) => IntOrString::String(s.into()),
        };
        DaemonSet {
            metadata: ObjectMeta {
                name: Some("agent".into()),
                generation: Some(2),
                ..ObjectMeta::default()
            },
            spec: Some(DaemonSetSpec {
                template: PodTemplateSpec {
                    metadata: None,
                    spec: Some(spec),
                },
                update_strategy: Some(DaemonSetUpdateStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: Some(RollingUpdateDaemonSet {
                        max_surge: Some(parse(surge)),
                        max_unavailable: Some(parse(unavailable)),
                    }),
                }),
                ..DaemonSetSpec::default()
            }),
            status: None,
        }
    }

    fn pod(name: &str, hash: &str, phase: &str, ready: bool, created: i64) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some([(REVISION_HASH.to_string(), hash.to_string())].into()),
                creation_timestamp: Some(Time(Timestamp::from_second(created).unwrap())),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec::default()),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                conditions: ready.then(|| {
                    vec![PodCondition {
                        type_: "Ready".into(),
                        status: "True".into(),
                        last_transition_time: Some(Time(Timestamp::from_second(created).unwrap())),
                        ..PodCondition::default()
                    }]
                }),
                ..PodStatus::default()
            }),
        })
    }

    fn now() -> Timestamp {
        Timestamp::from_second(1000).unwrap()
    }

    #[test]
    fn daemon_pods_get_the_standard_tolerations_once() {
        let mut spec = PodSpec {
            host_network: Some(true),
            tolerations: Some(vec![exists_toleration(
                "node.kubernetes.io/not-ready",
                "NoExecute",
            )]),
            ..PodSpec::default()
        };
        add_daemon_tolerations(&mut spec);
        add_daemon_tolerations(&mut spec);
        let keys: Vec<String> = spec
            .tolerations
            .unwrap()
            .iter()
            .map(|t| {
                format!(
                    "{}:{}",
                    t.key.as_deref().unwrap(),
                    t.effect.as_deref().unwrap()
                )
            })
            .collect();
        assert_eq!(
            keys,
            [
                "node.kubernetes.io/not-ready:NoExecute",
                "node.kubernetes.io/unreachable:NoExecute",
                "node.kubernetes.io/disk-pressure:NoSchedule",
                "node.kubernetes.io/memory-pressure:NoSchedule",
                "node.kubernetes.io/pid-pressure:NoSchedule",
                "node.kubernetes.io/unschedulable:NoSchedule",
                "node.kubernetes.io/network-unavailable:NoSchedule",
            ]
        );
    }

    #[test]
    fn eligibility_follows_selector_affinity_and_taints() {
        let d = ds(
            PodSpec {
                node_selector: Some([("pool".to_string(), "edge".to_string())].into()),
                ..PodSpec::default()
            },
            "0",
            "1",
        );
        assert_eq!(
            should_run(&node("a", &[("pool", "edge")], vec![]), &d),
            (true, true)
        );
        assert_eq!(
            should_run(&node("b", &[("pool", "core")], vec![]), &d),
            (false, false)
        );
        // An untolerated NoSchedule taint keeps an existing pod; NoExecute evicts it.
        let no_schedule = node(
            "c",
            &[("pool", "edge")],
            vec![taint("dedicated", "NoSchedule")],
        );
        assert_eq!(should_run(&no_schedule, &d), (false, true));
        let no_execute = node(
            "d",
            &[("pool", "edge")],
            vec![taint("dedicated", "NoExecute")],
        );
        assert_eq!(should_run(&no_execute, &d), (false, false));
        // The daemon tolerations cover cordoned and not-ready nodes.
        let cordoned = node(
            "e",
            &[("pool", "edge")],
            vec![
                taint("node.kubernetes.io/unschedulable", "NoSchedule"),
                taint("node.kubernetes.io/not-ready", "NoExecute"),
            ],
        );
        assert_eq!(should_run(&cordoned, &d), (true, true));
    }

    #[test]
    fn pods_are_pinned_with_match_fields_and_found_by_target_node() {
        let affinity = pin_to_node(None, "sim-0003");
        let pod = Pod {
            spec: Some(PodSpec {
                affinity: Some(affinity),
                ..PodSpec::default()
            }),
            ..Pod::default()
        };
        assert_eq!(target_node(&pod).as_deref(), Some("sim-0003"));
        assert!(node_matches(
            pod.spec.as_ref().unwrap(),
            &node("sim-0003", &[], vec![])
        ));
        assert!(!node_matches(
            pod.spec.as_ref().unwrap(),
            &node("sim-0004", &[], vec![])
        ));
    }

    #[test]
    fn a_node_keeps_its_oldest_pod_and_loses_finished_ones() {
        let pods = vec![
            pod("new", "h1", "Running", true, 20),
            pod("old", "h1", "Running", true, 10),
            pod("done", "h1", "Succeeded", false, 5),
        ];
        let plan = node_plan((true, true), &pods, false, "h1", 0, now());
        assert_eq!(plan.delete, ["done", "new"]);
        assert!(!plan.create);
        assert!(node_plan((true, true), &[], false, "h1", 0, now()).create);
        let gone = node_plan((false, false), &pods, false, "h1", 0, now());
        assert_eq!(gone.delete.len(), 3);
    }

    #[test]
    fn failed_pod_deletions_back_off_per_node_from_one_second_to_fifteen_minutes() {
        let mut b = FailedPodsBackoff::default();
        let t = |s: i64| Timestamp::from_second(1_700_000_000 + s).unwrap();
        assert_eq!(b.remaining("ds/1/n1", t(0)), None);
        b.next("ds/1/n1", t(0));
        assert_eq!(b.remaining("ds/1/n1", t(0)), Some(Duration::from_secs(1)));
        assert_eq!(b.remaining("ds/1/n2", t(0)), None);
        assert_eq!(b.remaining("ds/1/n1", t(1)), None);
        b.next("ds/1/n1", t(1));
        assert_eq!(b.remaining("ds/1/n1", t(2)), Some(Duration::from_secs(1)));
        for i in 0..20 {
            b.next("ds/1/n1", t(3 + i));
        }
        assert_eq!(
            b.remaining("ds/1/n1", t(22)),
            Some(Duration::from_secs(15 * 60))
        );
        // Quiet for more than twice the maximum: it starts over, and GC forgets it.
        b.next("ds/1/n1", t(22 + 1801));
        assert_eq!(
            b.remaining("ds/1/n1", t(22 + 1801)),
            Some(Duration::from_secs(1))
        );
        b.gc(t(22 + 1801 + 1801));
        assert!(b.entries.is_empty());
    }

    #[test]
    fn rolling_update_deletes_within_max_unavailable() {
        let d = ds(PodSpec::default(), "0", "1");
        let by_node: BTreeMap<String, Vec<Arc<Pod>>> = [
            (
                "a".to_string(),
                vec![pod("a-old", "h1", "Running", true, 1)],
            ),
            (
                "b".to_string(),
                vec![pod("b-old", "h1", "Running", true, 1)],
            ),
            (
                "c".to_string(),
                vec![pod("c-new", "h2", "Running", true, 1)],
            ),
        ]
        .into();
        let (delete, create) = rolling_update_plan(&d, &by_node, &|_| true, "h2", now());
        assert_eq!((delete, create), (vec!["a-old".to_string()], vec![]));
        // A new pod not yet ready uses up the budget.
        let mut waiting = by_node.clone();
        waiting.insert("c".into(), vec![pod("c-new", "h2", "Running", false, 1)]);
        let (delete, _) = rolling_update_plan(&d, &waiting, &|_| true, "h2", now());
        assert!(delete.is_empty());
        // 50% of 3 nodes rounds up to 2.
        let d = ds(PodSpec::default(), "0", "50%");
        let (delete, _) = rolling_update_plan(&d, &by_node, &|_| true, "h2", now());
        assert_eq!(delete, ["a-old", "b-old"]);
    }

    #[test]
    fn rolling_update_with_surge_starts_new_pods_first() {
        let d = ds(PodSpec::default(), "1", "0");
        let by_node: BTreeMap<String, Vec<Arc<Pod>>> = [
            (
                "a".to_string(),
                vec![pod("a-old", "h1", "Running", true, 1)],
            ),
            (
                "b".to_string(),
                vec![pod("b-old", "h1", "Running", true, 1)],
            ),
        ]
        .into();
        let (delete, create) = rolling_update_plan(&d, &by_node, &|_| true, "h2", now());
        assert_eq!((delete.len(), create), (0, vec!["a".to_string()]));
        // Once the new pod on a is available the old one goes, and b is next.
        let mut surged = by_node.clone();
        surged.insert(
            "a".into(),
            vec![
                pod("a-old", "h1", "Running", true, 1),
                pod("a-new", "h2", "Running", true, 2),
            ],
        );
        let (delete, create) = rolling_update_plan(&d, &surged, &|_| true, "h2", now());
        assert_eq!(
            (delete, create),
            (vec!["a-old".to_string()], vec!["b".to_string()])
        );
    }

    #[test]
    fn status_counts_desired_current_ready_updated_and_misscheduled() {
        let d = ds(
            PodSpec {
                node_selector: Some([("pool".to_string(), "edge".to_string())].into()),
                ..PodSpec::default()
            },
            "0",
            "1",
        );
        let nodes = vec![
            Arc::new(node("a", &[("pool", "edge")], vec![])),
            Arc::new(node("b", &[("pool", "edge")], vec![])),
            Arc::new(node("c", &[("pool", "edge")], vec![])),
            Arc::new(node("x", &[("pool", "core")], vec![])),
        ];
        let by_node: BTreeMap<String, Vec<Arc<Pod>>> = [
            ("a".to_string(), vec![pod("a1", "h2", "Running", true, 1)]),
            ("b".to_string(), vec![pod("b1", "h1", "Pending", false, 1)]),
            ("x".to_string(), vec![pod("x1", "h2", "Running", true, 1)]),
        ]
        .into();
        let s = desired_status(&d, &nodes, &by_node, "h2", true, now());
        assert_eq!(
            (
                s.desired_number_scheduled,
                s.current_number_scheduled,
                s.number_misscheduled,
                s.number_ready
            ),
            (3, 2, 1, 1)
        );
        assert_eq!(
            (
                s.number_available,
                s.updated_number_scheduled,
                s.number_unavailable
            ),
            (Some(1), Some(1), Some(2))
        );
        assert_eq!(s.observed_generation, Some(2));
        assert_eq!(
            desired_status(&d, &nodes, &by_node, "h2", false, now()).observed_generation,
            None
        );
    }

    #[test]
    fn revisions_record_the_template_as_a_replace_patch() {
        let template = PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some([("app".to_string(), "agent".to_string())].into()),
                ..ObjectMeta::default()
            }),
            spec: Some(PodSpec::default()),
        };
        let patch = revision_patch(&template);
        assert_eq!(patch["spec"]["template"]["$patch"], "replace");
        let rev = ControllerRevision {
            data: Some(RawExtension(patch)),
            ..ControllerRevision::default()
        };
        assert_eq!(revision_template(&rev), Some(template));
    }

    #[test]
    fn history_cleanup_keeps_the_limit_and_revisions_in_use() {
        let rev = |name: &str, revision: i64| {
            Arc::new(ControllerRevision {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    labels: Some([(REVISION_HASH.to_string(), name.to_string())].into()),
                    ..ObjectMeta::default()
                },
                data: None,
                revision,
            })
        };
        let old = vec![rev("r3", 3), rev("r1", 1), rev("r2", 2)];
        let live = HashSet::from(["r1".to_string()]);
        assert_eq!(revisions_to_clean(1, &old, &live), ["r2", "r3"]);
        assert!(revisions_to_clean(3, &old, &live).is_empty());
    }
}
