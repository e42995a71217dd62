//! The StatefulSet controller (upstream's `pkg/controller/statefulset`): pods with stable names
//! `<set>-<ordinal>`, hostname and subdomain (`spec.serviceName`), the labels
//! `statefulset.kubernetes.io/pod-name` and `apps.kubernetes.io/pod-index`, and one
//! PersistentVolumeClaim `<template>-<set>-<ordinal>` per `volumeClaimTemplates` entry, which
//! `persistentVolumeClaimRetentionPolicy` ties to the set or to the pod by ownerReferences.
//!
//! `podManagementPolicy: OrderedReady` creates ordinals in order, each only once every lower
//! one is Running and Ready, and removes them highest first, one at a time; `Parallel` does
//! all at once. RollingUpdate replaces pods at or above `partition`, highest first, one at a
//! time; OnDelete waits for the user to delete them. Each template is a ControllerRevision
//! (`<set>-<hash>`, upstream's strategic-merge patch as `data`), and pods carry the name of
//! their revision in `controller-revision-hash`, which `status.currentRevision` and
//! `status.updateRevision` name too.
//!
//! Upstream's `updateStatefulSet` is the pure [`plan`]: the steps of one sync in the order
//! upstream takes them, stopping where upstream blocks. The sync executes the steps.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodSpec, PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use super::daemonset::{claim_pods, object_reference, revision_patch, revision_template};
use super::events::Events;
use super::informer::{
    Change, Informer, Requeue, WorkQueue, controller_of, key_of, run_workers, split_key,
};
use super::replicaset::{
    is_available, is_empty_selector, is_ready, owner_ref, pod_from_template, selects_some,
};

pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
/// Upstream's `StatefulSetRevisionLabel` (`ControllerRevisionHashLabelKey`).
pub const REVISION_LABEL: &str = "controller-revision-hash";
/// Upstream's `--concurrent-statefulset-syncs`.
const WORKERS: usize = 5;
const COMPONENT: &str = "statefulset-controller";

// ---- identity ----

fn replicas(set: &StatefulSet) -> i32 {
    set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// `spec.ordinals.start` (upstream's `getStartOrdinal`).
fn start_ordinal(set: &StatefulSet) -> i32 {
    set.spec
        .as_ref()
        .and_then(|s| s.ordinals.as_ref())
        .and_then(|o| o.start)
        .unwrap_or(0)
}

/// Upstream's `getParentNameAndOrdinal` for pods of `set`: the ordinal of `<set>-<n>`.
pub fn ordinal_of(set_name: &str, pod_name: &str) -> Option<i32> {
    let (parent, n) = pod_name.rsplit_once('-')?;
    if parent != set_name || n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

fn in_range(set: &StatefulSet, ordinal: i32) -> bool {
    ordinal >= start_ordinal(set) && ordinal < start_ordinal(set) + replicas(set)
}

fn pod_name(set: &StatefulSet, ordinal: i32) -> String {
    format!("{}-{ordinal}", set.name_any())
}

/// The claims a pod of `ordinal` uses (upstream's `getPersistentVolumeClaims`): each template
/// named `<template>-<set>-<ordinal>`, labelled with the set's matchLabels.
pub fn claims_for(set: &StatefulSet, ordinal: i32) -> Vec<PersistentVolumeClaim> {
    let spec = set.spec.clone().unwrap_or_default();
    let match_labels = spec.selector.match_labels.clone().unwrap_or_default();
    spec.volume_claim_templates
        .unwrap_or_default()
        .into_iter()
        .map(|mut claim| {
            let template = claim.name_any();
            claim.metadata.name = Some(format!("{template}-{}-{ordinal}", set.name_any()));
            claim.metadata.namespace = set.metadata.namespace.clone();
            claim
                .metadata
                .labels
                .get_or_insert_with(BTreeMap::new)
                .extend(match_labels.clone());
            claim.status = None;
            claim
        })
        .collect()
}

/// Upstream's `newStatefulSetPod` (with `initIdentity` and `updateStorage`) at `revision`.
pub fn new_pod(set: &StatefulSet, template: &PodTemplateSpec, ordinal: i32, revision: &str) -> Pod {
    let ns = set.namespace().unwrap_or_default();
    let owner = owner_ref("apps/v1", "StatefulSet", &set.metadata);
    let mut pod = pod_from_template(template, &ns, String::new(), owner);
    let name = pod_name(set, ordinal);
    pod.metadata.generate_name = None;
    pod.metadata.name = Some(name.clone());
    let labels = pod.metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(POD_NAME_LABEL.into(), name.clone());
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
    labels.insert(REVISION_LABEL.into(), revision.into());
    let spec = pod.spec.get_or_insert_with(PodSpec::default);
    spec.hostname = Some(name);
    spec.subdomain = set
        .spec
        .as_ref()
        .and_then(|s| s.service_name.clone())
        .filter(|s| !s.is_empty());
    // Claim volumes replace template volumes of the same name; the others stay.
    let claims: Vec<(String, String)> = set
        .spec
        .as_ref()
        .and_then(|s| s.volume_claim_templates.as_ref())
        .into_iter()
        .flatten()
        .zip(claims_for(set, ordinal))
        .map(|(t, c)| (t.name_any(), c.name_any()))
        .collect();
    let mut volumes: Vec<Volume> = claims
        .iter()
        .map(|(volume, claim)| Volume {
            name: volume.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.clone(),
                read_only: Some(false),
            }),
            ..Volume::default()
        })
        .collect();
    volumes.extend(
        spec.volumes
            .take()
            .unwrap_or_default()
            .into_iter()
            .filter(|v| !claims.iter().any(|(name, _)| *name == v.name)),
    );
    spec.volumes = (!volumes.is_empty()).then_some(volumes);
    pod
}

/// Upstream's `identityMatches`.
pub fn identity_matches(set: &StatefulSet, pod: &Pod) -> bool {
    let Some(ordinal) = ordinal_of(&set.name_any(), &pod.name_any()) else {
        return false;
    };
    let labels = pod.labels();
    pod.namespace() == set.namespace()
        && labels.get(POD_NAME_LABEL) == Some(&pod.name_any())
        && labels.get(POD_INDEX_LABEL) == Some(&ordinal.to_string())
}

/// Upstream's `storageMatches`: every claim template is mounted from this ordinal's claim.
pub fn storage_matches(set: &StatefulSet, pod: &Pod) -> bool {
    let Some(ordinal) = ordinal_of(&set.name_any(), &pod.name_any()) else {
        return false;
    };
    let volumes = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_deref())
        .unwrap_or_default();
    let templates = set
        .spec
        .as_ref()
        .and_then(|s| s.volume_claim_templates.as_deref())
        .unwrap_or_default();
    templates
        .iter()
        .zip(claims_for(set, ordinal))
        .all(|(t, claim)| {
            volumes.iter().any(|v| {
                v.name == t.name_any()
                    && v.persistent_volume_claim
                        .as_ref()
                        .is_some_and(|c| c.claim_name == claim.name_any())
            })
        })
}

// ---- PVC retention ----

/// (whenDeleted, whenScaled), `Retain` unless set to `Delete`.
fn retention(set: &StatefulSet) -> (bool, bool) {
    let policy = set
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_claim_retention_policy.as_ref());
    let delete = |v: Option<&String>| v.is_some_and(|v| v == "Delete");
    (
        delete(policy.and_then(|p| p.when_deleted.as_ref())),
        delete(policy.and_then(|p| p.when_scaled.as_ref())),
    )
}

fn plain_ref(api_version: &str, kind: &str, meta: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: api_version.into(),
        kind: kind.into(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        controller: None,
        block_owner_deletion: None,
    }
}

/// Upstream's `updateClaimOwnerRefForSetAndPod`: whenDeleted=Delete makes the set an owner of
/// the claim (the garbage collector deletes it with the set); whenScaled=Delete makes a
/// scaled-down pod its owner (deleted with the pod). Other owners are kept.
pub fn desired_claim_refs(
    claim: &PersistentVolumeClaim,
    set: &StatefulSet,
    pod: &Pod,
) -> Vec<OwnerReference> {
    let (when_deleted, when_scaled) = retention(set);
    let scaled_down =
        ordinal_of(&set.name_any(), &pod.name_any()).is_none_or(|o| !in_range(set, o));
    let set_uid = set.metadata.uid.clone().unwrap_or_default();
    let pod_uid = pod.metadata.uid.clone().unwrap_or_default();
    let want_set = when_deleted && !(when_scaled && scaled_down);
    let want_pod = when_scaled && scaled_down;
    let mut refs: Vec<OwnerReference> = claim
        .owner_references()
        .iter()
        .filter(|r| (r.uid != set_uid || want_set) && (r.uid != pod_uid || want_pod))
        .cloned()
        .collect();
    if want_set && !refs.iter().any(|r| r.uid == set_uid) {
        refs.push(plain_ref("apps/v1", "StatefulSet", &set.metadata));
    }
    if want_pod && !pod_uid.is_empty() && !refs.iter().any(|r| r.uid == pod_uid) {
        refs.push(plain_ref("v1", "Pod", &pod.metadata));
    }
    refs
}

/// Upstream's `ClaimsMatchRetentionPolicy`: missing claims count as matching.
fn claims_match(
    set: &StatefulSet,
    pod: &Pod,
    claims: &HashMap<String, Arc<PersistentVolumeClaim>>,
) -> bool {
    let Some(ordinal) = ordinal_of(&set.name_any(), &pod.name_any()) else {
        return true;
    };
    claims_for(set, ordinal).iter().all(|c| {
        claims
            .get(&c.name_any())
            .is_none_or(|claim| desired_claim_refs(claim, set, pod) == claim.owner_references())
    })
}

/// Upstream's `PodClaimIsStale`: with whenScaled=Delete, a claim still owned by an earlier pod
/// of that name is about to be garbage collected, so the pod waits.
fn claim_is_stale(
    set: &StatefulSet,
    ordinal: i32,
    claims: &HashMap<String, Arc<PersistentVolumeClaim>>,
) -> bool {
    if !retention(set).1 {
        return false;
    }
    let name = pod_name(set, ordinal);
    claims_for(set, ordinal).iter().any(|c| {
        claims.get(&c.name_any()).is_some_and(|claim| {
            claim
                .owner_references()
                .iter()
                .any(|r| r.kind == "Pod" && r.name == name)
        })
    })
}

// ---- pod state ----

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

fn terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// Upstream's `isRunningAndReady`.
fn running_and_ready(pod: &Pod) -> bool {
    phase(pod) == "Running" && is_ready(pod)
}

/// Upstream's `isRunningAndAvailable`.
fn running_and_available(pod: &Pod, min_ready: i32, now: Timestamp) -> bool {
    phase(pod) == "Running" && is_available(pod, min_ready, now)
}

/// Upstream's `isHealthy`.
fn healthy(pod: &Pod) -> bool {
    running_and_ready(pod) && !terminating(pod)
}

fn revision_of(pod: &Pod) -> Option<&str> {
    pod.labels().get(REVISION_LABEL).map(String::as_str)
}

// ---- the plan ----

/// One write of a sync, in upstream's order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Create the claims and then the pod of this ordinal at the current (`false`) or update
    /// (`true`) revision.
    Create { ordinal: i32, update: bool },
    /// Create the missing claims of a pending pod.
    CreateClaims(String),
    /// Restore the identity labels of a pod.
    Relabel(String),
    /// Bring a pod's claims' ownerReferences in line with the retention policy.
    FixClaims(String),
    /// Delete a pod: finished (`Restart`), beyond the replicas (`ScaleDown`) or out of date.
    Delete(String, Why),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    Restart,
    ScaleDown,
    Update,
}

/// Upstream's `updateStatefulSet` as a plan: process the replicas in ordinal order (create the
/// missing, restart the finished, fix identity and claims), then the condemned pods beyond the
/// replicas highest first, then the rolling update from the highest ordinal down to the
/// partition. With OrderedReady (`monotonic`) the plan stops at the first pod that is not
/// Running and Ready (or not yet available), after the first creation, and after the first
/// deletion; Parallel goes on.
pub fn plan(
    set: &StatefulSet,
    pods: &[Arc<Pod>],
    update_revision: &str,
    claims: &HashMap<String, Arc<PersistentVolumeClaim>>,
    now: Timestamp,
) -> Vec<Step> {
    let spec = set.spec.clone().unwrap_or_default();
    let monotonic = spec.pod_management_policy.as_deref() != Some("Parallel");
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let name = set.name_any();
    let start = start_ordinal(set);
    let count = replicas(set).max(0) as usize;
    let mut replicas: Vec<Option<Arc<Pod>>> = vec![None; count];
    let mut condemned: Vec<(i32, Arc<Pod>)> = Vec::new();
    for pod in pods {
        match ordinal_of(&name, &pod.name_any()) {
            Some(o) if in_range(set, o) => replicas[(o - start) as usize] = Some(pod.clone()),
            Some(o) => condemned.push((o, pod.clone())),
            None => {}
        }
    }
    condemned.sort_by_key(|(o, _)| std::cmp::Reverse(*o));
    let first_unhealthy = replicas
        .iter()
        .flatten()
        .find(|p| !healthy(p))
        .or_else(|| condemned.iter().rev().map(|(_, p)| p).find(|p| !healthy(p)))
        .map(|p| p.name_any());
    let partition = spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.rolling_update.as_ref())
        .map(|r| r.partition.unwrap_or(0));
    let rolling = spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.type_.as_deref())
        .is_none_or(|t| t == "RollingUpdate");
    let current_replicas = set
        .status
        .as_ref()
        .and_then(|s| s.current_replicas)
        .unwrap_or(0);
    let mut steps = Vec::new();
    // processReplica
    for (i, slot) in replicas.iter().enumerate() {
        let ordinal = start + i as i32;
        let Some(pod) = slot else {
            if claim_is_stale(set, ordinal, claims) {
                if monotonic {
                    return steps;
                }
                continue;
            }
            // Upstream's `newVersionedStatefulSetPod`: below the partition, the current revision.
            let current = match partition {
                Some(p) => ordinal < start + p,
                None => rolling && ordinal < start + current_replicas,
            };
            steps.push(Step::Create {
                ordinal,
                update: !current,
            });
            if monotonic {
                return steps;
            }
            continue;
        };
        if matches!(phase(pod), "Failed" | "Succeeded") {
            if !terminating(pod) {
                steps.push(Step::Delete(pod.name_any(), Why::Restart));
            }
            if monotonic {
                return steps;
            }
            continue;
        }
        if phase(pod) == "Pending" {
            steps.push(Step::CreateClaims(pod.name_any()));
        }
        if monotonic
            && (terminating(pod)
                || !running_and_ready(pod)
                || !running_and_available(pod, min_ready, now))
        {
            return steps;
        }
        if !identity_matches(set, pod) {
            steps.push(Step::Relabel(pod.name_any()));
        }
        if !storage_matches(set, pod) {
            steps.push(Step::CreateClaims(pod.name_any()));
        }
        if !claims_match(set, pod, claims) {
            steps.push(Step::FixClaims(pod.name_any()));
        }
    }
    // Claims of condemned pods first, so whenScaled=Delete hands them to the pod before it goes.
    for (_, pod) in &condemned {
        if !claims_match(set, pod, claims) {
            steps.push(Step::FixClaims(pod.name_any()));
        }
    }
    // processCondemned
    for (_, pod) in &condemned {
        if terminating(pod) {
            if monotonic {
                return steps;
            }
            continue;
        }
        let first = first_unhealthy.as_deref() == Some(pod.name_any().as_str());
        if monotonic
            && !first
            && (!running_and_ready(pod) || !running_and_available(pod, min_ready, now))
        {
            return steps;
        }
        steps.push(Step::Delete(pod.name_any(), Why::ScaleDown));
        if monotonic {
            return steps;
        }
    }
    if !rolling {
        return steps;
    }
    // The rolling update: the highest out-of-date pod at or above the partition goes first,
    // and nothing else happens until the pods above it are healthy again.
    let min = partition.unwrap_or(0).max(0) as usize;
    for target in (min..count).rev() {
        let Some(pod) = &replicas[target] else {
            // Created in this sync (Parallel): not healthy yet.
            return steps;
        };
        if revision_of(pod) != Some(update_revision) && !terminating(pod) {
            steps.push(Step::Delete(pod.name_any(), Why::Update));
            return steps;
        }
        if !healthy(pod) {
            return steps;
        }
    }
    steps
}

/// Upstream's `computeReplicaStatus` and `completeRollingUpdate`.
pub fn desired_status(
    set: &StatefulSet,
    pods: &[Arc<Pod>],
    current_revision: &str,
    update_revision: &str,
    collision_count: i32,
    now: Timestamp,
) -> StatefulSetStatus {
    let min_ready = set
        .spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0);
    let (mut ready, mut available, mut current, mut updated) = (0, 0, 0, 0);
    for pod in pods {
        if running_and_ready(pod) {
            ready += 1;
            if running_and_available(pod, min_ready, now) {
                available += 1;
            }
        }
        if !terminating(pod) {
            if revision_of(pod) == Some(current_revision) {
                current += 1;
            }
            if revision_of(pod) == Some(update_revision) {
                updated += 1;
            }
        }
    }
    let total = pods.len() as i32;
    let old = set.status.clone().unwrap_or_default();
    let mut status = StatefulSetStatus {
        observed_generation: set.metadata.generation,
        replicas: total,
        ready_replicas: Some(ready),
        available_replicas: Some(available),
        current_replicas: Some(current),
        updated_replicas: Some(updated),
        current_revision: Some(current_revision.into()),
        update_revision: Some(update_revision.into()),
        collision_count: Some(collision_count),
        conditions: old.conditions,
    };
    let rolling = set
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        .is_none_or(|t| t == "RollingUpdate");
    if rolling && updated == total && ready == total {
        status.current_replicas = Some(updated);
        status.current_revision = Some(update_revision.into());
    }
    status
}

// ---- history ----

/// Upstream's `HashControllerRevision`: FNV-1 (32 bit) of the revision's data and the
/// collision count, written with the `SafeEncodeString` alphabet.
pub fn hash_revision(data: &serde_json::Value, collision_count: Option<i32>) -> String {
    let mut h: u32 = 0x811c_9dc5;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            h = h.wrapping_mul(0x0100_0193);
            h ^= u32::from(*b);
        }
    };
    feed(&serde_json::to_vec(data).unwrap_or_default());
    if let Some(c) = collision_count {
        feed(c.to_string().as_bytes());
    }
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    h.to_string()
        .bytes()
        .map(|b| ALPHANUMS[usize::from(b) % ALPHANUMS.len()] as char)
        .collect()
}

/// Upstream's `truncateHistory`: the oldest revisions beyond `revisionHistoryLimit` that
/// neither the current nor the update revision nor any pod uses.
pub fn revisions_to_truncate(
    limit: i32,
    revisions: &[Arc<ControllerRevision>],
    live: &[&str],
) -> Vec<String> {
    let history: Vec<String> = revisions
        .iter()
        .map(|r| r.name_any())
        .filter(|n| !live.contains(&n.as_str()))
        .collect();
    let extra = history.len().saturating_sub(limit.max(0) as usize);
    history.into_iter().take(extra).collect()
}

fn sort_revisions(revisions: &mut [Arc<ControllerRevision>]) {
    revisions.sort_by(|a, b| {
        a.revision
            .cmp(&b.revision)
            .then_with(|| {
                let t =
                    |r: &ControllerRevision| r.metadata.creation_timestamp.as_ref().map(|t| t.0);
                t(a).cmp(&t(b))
            })
            .then_with(|| a.name_any().cmp(&b.name_any()))
    });
}

// ---- the controller ----

pub struct Controller {
    client: Client,
    sets: Arc<Informer<StatefulSet>>,
    pods: Arc<Informer<Pod>>,
    claims: Arc<Informer<PersistentVolumeClaim>>,
    revisions: Arc<Informer<ControllerRevision>>,
    queue: Arc<WorkQueue>,
    events: Events,
}

impl Controller {
    pub fn new(
        client: Client,
        sets: Arc<Informer<StatefulSet>>,
        pods: Arc<Informer<Pod>>,
        claims: Arc<Informer<PersistentVolumeClaim>>,
        revisions: Arc<Informer<ControllerRevision>>,
    ) -> Arc<Self> {
        let this = Arc::new(Controller {
            events: Events::start(client.clone(), COMPONENT),
            client,
            sets,
            pods,
            claims,
            revisions,
            queue: WorkQueue::new(),
        });
        this.sets.enqueue_changes(&this.queue);
        let weak = Arc::downgrade(&this);
        this.pods.on_change(move |change| {
            let Some(c) = weak.upgrade() else { return };
            let pod = match change {
                Change::Applied { new, .. } => new,
                Change::Deleted(old) => old,
            };
            let ns = pod.namespace().unwrap_or_default();
            match controller_of(pod.as_ref()) {
                Some(o) if o.kind == "StatefulSet" => c.queue.add(format!("{ns}/{}", o.name)),
                Some(_) => {}
                None => {
                    for set in c.sets.list_namespace(&ns) {
                        if set
                            .spec
                            .as_ref()
                            .is_some_and(|s| selects_some(&s.selector, pod.labels()))
                        {
                            c.queue.add(key_of(set.as_ref()));
                        }
                    }
                }
            }
        });
        this.revisions.enqueue_owners(&this.queue, "StatefulSet");
        this
    }

    pub async fn run(self: Arc<Self>, resync: Duration) {
        self.sets.wait_synced().await;
        self.pods.wait_synced().await;
        self.claims.wait_synced().await;
        self.revisions.wait_synced().await;
        let this = self.clone();
        let workers = run_workers(COMPONENT, self.queue.clone(), WORKERS, move |key| {
            let this = this.clone();
            async move { this.sync(&key).await }
        });
        let resync = super::informer::resync(self.sets.clone(), self.queue.clone(), resync);
        tokio::join!(workers, resync);
    }

    /// Upstream's `sync` and `UpdateStatefulSet`.
    async fn sync(&self, key: &str) -> Result<Requeue, kube::Error> {
        let Some(set) = self.sets.get(key) else {
            return Ok(None);
        };
        let (ns, _) = split_key(key);
        let spec = set.spec.clone().unwrap_or_default();
        let reference = object_reference("apps/v1", "StatefulSet", &set.metadata);
        if is_empty_selector(&spec.selector) {
            self.events.warning(
                reference,
                "SelectingAll",
                "This statefulset is selecting all pods. A non-empty selector is required.".into(),
            );
            return Ok(None);
        }
        let name = set.name_any();
        let member = |p: &Pod| ordinal_of(&name, &p.name_any()).is_some();
        let pods = claim_pods(
            &self.client,
            &self.pods,
            ("apps/v1", "StatefulSet", &set.metadata),
            &spec.selector,
            &member,
        )
        .await?;
        let pods: Vec<Arc<Pod>> = pods.into_iter().filter(|p| member(p)).collect();
        let uid = set.metadata.uid.clone().unwrap_or_default();
        let mut revisions = self.revisions.controlled_by(&uid);
        sort_revisions(&mut revisions);
        let (current, update, collision) = self.revisions(&set, ns, &revisions).await?;
        let claims: HashMap<String, Arc<PersistentVolumeClaim>> = self
            .claims
            .list_namespace(ns)
            .into_iter()
            .map(|c| (c.name_any(), c))
            .collect();
        let now = Timestamp::now();
        let mut status = desired_status(
            &set,
            &pods,
            &current.name_any(),
            &update.name_any(),
            collision,
            now,
        );
        let result = if set.metadata.deletion_timestamp.is_none() {
            let steps = plan(&set, &pods, &update.name_any(), &claims, now);
            self.execute(&set, &steps, &pods, &current, &update)
                .await
                .map(|deleted_for_update| {
                    if deleted_for_update {
                        status.current_replicas = status.current_replicas.map(|c| c - 1);
                    }
                })
        } else {
            Ok(())
        };
        if set.status.as_ref() != Some(&status) {
            let api: Api<StatefulSet> = Api::namespaced(self.client.clone(), ns);
            let patch = json!({"status": status});
            match api
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => return Ok(None),
                Err(e) => return Err(e),
            }
        }
        result?;
        // truncateHistory
        let mut live: Vec<String> = vec![current.name_any(), update.name_any()];
        live.extend(
            pods.iter()
                .filter_map(|p| revision_of(p).map(str::to_string)),
        );
        let live: Vec<&str> = live.iter().map(String::as_str).collect();
        let limit = spec.revision_history_limit.unwrap_or(10);
        let api: Api<ControllerRevision> = Api::namespaced(self.client.clone(), ns);
        for old in revisions_to_truncate(limit, &revisions, &live) {
            match api.delete(&old, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        let min_ready = spec.min_ready_seconds.unwrap_or(0);
        Ok(
            (min_ready > 0 && status.ready_replicas != status.available_replicas)
                .then(|| Duration::from_secs(min_ready as u64)),
        )
    }

    /// Upstream's `getStatefulSetRevisions`: the update revision is the set's template (an
    /// equal older revision is brought back by raising its `revision`, as a rollback does), the
    /// current one is `status.currentRevision` or, the first time, the update revision.
    async fn revisions(
        &self,
        set: &StatefulSet,
        ns: &str,
        revisions: &[Arc<ControllerRevision>],
    ) -> Result<(Arc<ControllerRevision>, Arc<ControllerRevision>, i32), kube::Error> {
        let api: Api<ControllerRevision> = Api::namespaced(self.client.clone(), ns);
        let template = set
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default();
        let data = revision_patch(&template);
        let mut collision = set
            .status
            .as_ref()
            .and_then(|s| s.collision_count)
            .unwrap_or(0);
        let next = revisions.last().map(|r| r.revision).unwrap_or(0) + 1;
        let equal: Vec<&Arc<ControllerRevision>> = revisions
            .iter()
            .filter(|r| r.data.as_ref().map(|d| &d.0) == Some(&data))
            .collect();
        let update = match (equal.last(), revisions.last()) {
            (Some(e), Some(last)) if e.metadata.uid == last.metadata.uid => (*e).clone(),
            (Some(e), _) => {
                let patch = json!({"revision": next});
                Arc::new(
                    api.patch(
                        &e.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await?,
                )
            }
            (None, _) => {
                let mut labels = template
                    .metadata
                    .as_ref()
                    .and_then(|m| m.labels.clone())
                    .unwrap_or_default();
                loop {
                    // Upstream's `CreateControllerRevision`: a name taken by other data is a
                    // collision; count it and try the next hash.
                    let hash = hash_revision(&data, Some(collision));
                    let name = format!("{}-{hash}", set.name_any());
                    labels.insert(REVISION_LABEL.into(), hash);
                    let rev = ControllerRevision {
                        metadata: ObjectMeta {
                            name: Some(name.clone()),
                            namespace: Some(ns.into()),
                            labels: Some(labels.clone()),
                            owner_references: Some(vec![owner_ref(
                                "apps/v1",
                                "StatefulSet",
                                &set.metadata,
                            )]),
                            ..ObjectMeta::default()
                        },
                        data: Some(RawExtension(data.clone())),
                        revision: next,
                    };
                    match api.create(&PostParams::default(), &rev).await {
                        Ok(created) => break Arc::new(created),
                        Err(kube::Error::Api(s)) if s.code == 409 => {
                            let existing = api.get(&name).await?;
                            if existing.data.as_ref().map(|d| &d.0) == Some(&data) {
                                break Arc::new(existing);
                            }
                            collision += 1;
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
        };
        let current_name = set.status.as_ref().and_then(|s| s.current_revision.clone());
        let current = revisions
            .iter()
            .find(|r| Some(r.name_any()) == current_name)
            .cloned()
            .unwrap_or_else(|| update.clone());
        Ok((current, update, collision))
    }

    /// Carries out the plan, stopping at the first error; says whether a pod was deleted for
    /// the update (upstream then lowers `currentReplicas` in the status it writes).
    async fn execute(
        &self,
        set: &StatefulSet,
        steps: &[Step],
        pods: &[Arc<Pod>],
        current: &ControllerRevision,
        update: &ControllerRevision,
    ) -> Result<bool, kube::Error> {
        let ns = set.namespace().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let reference = object_reference("apps/v1", "StatefulSet", &set.metadata);
        let set_name = set.name_any();
        let pod_by_name = |name: &str| pods.iter().find(|p| p.name_any() == name).cloned();
        let mut deleted_for_update = false;
        for step in steps {
            match step {
                Step::Create {
                    ordinal,
                    update: to_update,
                } => {
                    let (rev, template) = if *to_update {
                        (
                            update,
                            set.spec
                                .as_ref()
                                .map(|s| s.template.clone())
                                .unwrap_or_default(),
                        )
                    } else {
                        let t = revision_template(current).unwrap_or_else(|| {
                            set.spec
                                .as_ref()
                                .map(|s| s.template.clone())
                                .unwrap_or_default()
                        });
                        (current, t)
                    };
                    let pod = new_pod(set, &template, *ordinal, &rev.name_any());
                    let name = pod.name_any();
                    // Upstream's `CreateStatefulPod`: the claims first, then the pod, then the
                    // claims' owners now that the pod has a uid.
                    if let Err(e) = self.create_claims(set, &pod).await {
                        self.events.warning(
                            reference.clone(),
                            "FailedCreate",
                            format!(
                                "create Pod {name} in StatefulSet {set_name} failed error: {e}"
                            ),
                        );
                        return Err(e);
                    }
                    match api.create(&PostParams::default(), &pod).await {
                        Ok(created) => {
                            self.fix_claims(set, &created).await?;
                            self.events.normal(
                                reference.clone(),
                                "SuccessfulCreate",
                                format!("create Pod {name} in StatefulSet {set_name} successful"),
                            );
                        }
                        // Our cache is behind: the pod is there.
                        Err(kube::Error::Api(s)) if s.code == 409 => {
                            return Err(kube::Error::Api(s));
                        }
                        Err(e) => {
                            self.events.warning(
                                reference.clone(),
                                "FailedCreate",
                                format!(
                                    "create Pod {name} in StatefulSet {set_name} failed error: {e}"
                                ),
                            );
                            return Err(e);
                        }
                    }
                }
                Step::CreateClaims(name) => {
                    if let Some(pod) = pod_by_name(name) {
                        self.create_claims(set, &pod).await?;
                    }
                }
                Step::Relabel(name) => {
                    let Some(ordinal) = ordinal_of(&set_name, name) else {
                        continue;
                    };
                    let patch = json!({"metadata": {"labels": {
                        POD_NAME_LABEL: name, POD_INDEX_LABEL: ordinal.to_string(),
                    }}});
                    match api
                        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                    {
                        Ok(_) => self.events.normal(
                            reference.clone(),
                            "SuccessfulUpdate",
                            format!("update Pod {name} in StatefulSet {set_name} successful"),
                        ),
                        Err(kube::Error::Api(s)) if s.code == 404 => {}
                        Err(e) => return Err(e),
                    }
                }
                Step::FixClaims(name) => {
                    if let Some(pod) = pod_by_name(name) {
                        self.fix_claims(set, &pod).await?;
                    }
                }
                Step::Delete(name, why) => {
                    match api.delete(name, &DeleteParams::default()).await {
                        Ok(_) => self.events.normal(
                            reference.clone(),
                            "SuccessfulDelete",
                            format!("delete Pod {name} in StatefulSet {set_name} successful"),
                        ),
                        Err(kube::Error::Api(s)) if s.code == 404 => {}
                        Err(e) => {
                            self.events.warning(
                                reference.clone(),
                                "FailedDelete",
                                format!(
                                    "delete Pod {name} in StatefulSet {set_name} failed error: {e}"
                                ),
                            );
                            return Err(e);
                        }
                    }
                    deleted_for_update |= *why == Why::Update;
                }
            }
        }
        Ok(deleted_for_update)
    }

    /// Upstream's `createPersistentVolumeClaims`: creates the pod's missing claims; a claim
    /// being deleted is an error (the pod must wait for a fresh one).
    async fn create_claims(&self, set: &StatefulSet, pod: &Pod) -> Result<(), kube::Error> {
        let Some(ordinal) = ordinal_of(&set.name_any(), &pod.name_any()) else {
            return Ok(());
        };
        let ns = set.namespace().unwrap_or_default();
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), &ns);
        let reference = object_reference("apps/v1", "StatefulSet", &set.metadata);
        for claim in claims_for(set, ordinal) {
            let name = claim.name_any();
            let existing = match self.claims.get(&format!("{ns}/{name}")) {
                Some(c) => Some(c),
                None => api.get_opt(&name).await?.map(Arc::new),
            };
            if let Some(c) = existing {
                if c.metadata.deletion_timestamp.is_some() {
                    return Err(kube::Error::Service(
                        format!("pvc {name} is being deleted").into(),
                    ));
                }
                continue;
            }
            let message = |outcome: &str| {
                format!(
                    "create Claim {name} Pod {} in StatefulSet {} {outcome}",
                    pod.name_any(),
                    set.name_any()
                )
            };
            match api.create(&PostParams::default(), &claim).await {
                Ok(_) => {
                    self.events
                        .normal(reference.clone(), "SuccessfulCreate", message("success"))
                }
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => {
                    self.events.warning(
                        reference.clone(),
                        "FailedCreate",
                        message(&format!("failed error: {e}")),
                    );
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Upstream's `UpdatePodClaimForRetentionPolicy`.
    async fn fix_claims(&self, set: &StatefulSet, pod: &Pod) -> Result<(), kube::Error> {
        let Some(ordinal) = ordinal_of(&set.name_any(), &pod.name_any()) else {
            return Ok(());
        };
        let ns = set.namespace().unwrap_or_default();
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), &ns);
        for want in claims_for(set, ordinal) {
            let Some(claim) = api.get_opt(&want.name_any()).await? else {
                continue;
            };
            let refs = desired_claim_refs(&claim, set, pod);
            if refs.as_slice() == claim.owner_references() {
                continue;
            }
            let patch = json!({"metadata": {"ownerReferences": refs, "resourceVersion": claim.metadata.resource_version}});
            match api
                .patch(
                    &claim.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{
        RollingUpdateStatefulSetStrategy, StatefulSetPersistentVolumeClaimRetentionPolicy,
        StatefulSetSpec, StatefulSetUpdateStrategy,
    };
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};

    fn set(replicas: i32, policy: &str, partition: Option<i32>) -> StatefulSet {
        StatefulSet {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                uid: Some("set-uid".into()),
                generation: Some(1),
                ..ObjectMeta::default()
            },
            spec: Some(StatefulSetSpec {
                replicas: Some(replicas),
                service_name: Some("nginx".into()),
                pod_management_policy: Some(policy.into()),
                selector: LabelSelector {
                    match_labels: Some([("app".to_string(), "web".to_string())].into()),
                    match_expressions: None,
                },
                update_strategy: Some(StatefulSetUpdateStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: partition.map(|p| RollingUpdateStatefulSetStrategy {
                        partition: Some(p),
                        max_unavailable: None,
                    }),
                }),
                volume_claim_templates: Some(vec![PersistentVolumeClaim {
                    metadata: ObjectMeta {
                        name: Some("data".into()),
                        ..ObjectMeta::default()
                    },
                    ..PersistentVolumeClaim::default()
                }]),
                ..StatefulSetSpec::default()
            }),
            status: None,
        }
    }

    fn pod(s: &StatefulSet, ordinal: i32, revision: &str, phase: &str, ready: bool) -> Arc<Pod> {
        let mut p = new_pod(s, &PodTemplateSpec::default(), ordinal, revision);
        p.metadata.uid = Some(format!("pod-uid-{ordinal}"));
        p.status = Some(PodStatus {
            phase: Some(phase.into()),
            conditions: ready.then(|| {
                vec![PodCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    last_transition_time: Some(Time(Timestamp::from_second(1).unwrap())),
                    ..PodCondition::default()
                }]
            }),
            ..PodStatus::default()
        });
        Arc::new(p)
    }

    fn now() -> Timestamp {
        Timestamp::from_second(1000).unwrap()
    }

    fn no_claims() -> HashMap<String, Arc<PersistentVolumeClaim>> {
        HashMap::new()
    }

    #[test]
    fn pods_get_stable_identity_and_claim_volumes() {
        let s = set(3, "OrderedReady", Some(0));
        let p = new_pod(&s, &PodTemplateSpec::default(), 2, "web-abc");
        assert_eq!(p.name_any(), "web-2");
        let spec = p.spec.as_ref().unwrap();
        assert_eq!(
            (spec.hostname.as_deref(), spec.subdomain.as_deref()),
            (Some("web-2"), Some("nginx"))
        );
        assert_eq!(p.labels()[POD_NAME_LABEL], "web-2");
        assert_eq!(p.labels()[POD_INDEX_LABEL], "2");
        assert_eq!(p.labels()[REVISION_LABEL], "web-abc");
        let volume = &spec.volumes.as_ref().unwrap()[0];
        assert_eq!(
            volume.persistent_volume_claim.as_ref().unwrap().claim_name,
            "data-web-2"
        );
        let claim = &claims_for(&s, 2)[0];
        assert_eq!(claim.name_any(), "data-web-2");
        assert_eq!(claim.labels()["app"], "web");
        assert!(identity_matches(&s, &p) && storage_matches(&s, &p));
        assert_eq!(ordinal_of("web", "web-10"), Some(10));
        assert_eq!(ordinal_of("web", "web-x"), None);
        assert_eq!(ordinal_of("web", "webby-1"), None);
    }

    #[test]
    fn ordered_ready_creates_one_at_a_time_after_ready_predecessors() {
        let s = set(3, "OrderedReady", Some(0));
        assert_eq!(
            plan(&s, &[], "r1", &no_claims(), now()),
            [Step::Create {
                ordinal: 0,
                update: true
            }]
        );
        // web-0 exists but is not ready yet: nothing happens.
        let pods = vec![pod(&s, 0, "r1", "Pending", false)];
        assert_eq!(
            plan(&s, &pods, "r1", &no_claims(), now()),
            [Step::CreateClaims("web-0".into())]
        );
        let pods = vec![pod(&s, 0, "r1", "Running", true)];
        assert_eq!(
            plan(&s, &pods, "r1", &no_claims(), now()),
            [Step::Create {
                ordinal: 1,
                update: true
            }]
        );
        // Parallel creates every missing ordinal at once.
        let p = set(3, "Parallel", Some(0));
        assert_eq!(
            plan(&p, &[], "r1", &no_claims(), now()),
            [
                Step::Create {
                    ordinal: 0,
                    update: true
                },
                Step::Create {
                    ordinal: 1,
                    update: true
                },
                Step::Create {
                    ordinal: 2,
                    update: true
                }
            ]
        );
    }

    #[test]
    fn scale_down_removes_the_highest_ordinal_first_one_at_a_time() {
        let s = set(1, "OrderedReady", Some(0));
        let pods: Vec<Arc<Pod>> = (0..3).map(|o| pod(&s, o, "r1", "Running", true)).collect();
        assert_eq!(
            plan(&s, &pods, "r1", &no_claims(), now()),
            [Step::Delete("web-2".into(), Why::ScaleDown)]
        );
        // While web-2 terminates, web-1 waits.
        let mut terminating = (*pods[2]).clone();
        terminating.metadata.deletion_timestamp = Some(Time(now()));
        let pods = vec![pods[0].clone(), pods[1].clone(), Arc::new(terminating)];
        assert!(plan(&s, &pods, "r1", &no_claims(), now()).is_empty());
    }

    #[test]
    fn rolling_update_replaces_from_the_top_down_to_the_partition() {
        let s = set(3, "OrderedReady", Some(1));
        let pods: Vec<Arc<Pod>> = (0..3).map(|o| pod(&s, o, "r1", "Running", true)).collect();
        assert_eq!(
            plan(&s, &pods, "r2", &no_claims(), now()),
            [Step::Delete("web-2".into(), Why::Update)]
        );
        let pods = vec![
            pods[0].clone(),
            pods[1].clone(),
            pod(&s, 2, "r2", "Running", true),
        ];
        assert_eq!(
            plan(&s, &pods, "r2", &no_claims(), now()),
            [Step::Delete("web-1".into(), Why::Update)]
        );
        // web-0 is below the partition: done; a recreated web-0 keeps the current revision.
        let pods = vec![
            pods[0].clone(),
            pod(&s, 1, "r2", "Running", true),
            pods[2].clone(),
        ];
        assert!(plan(&s, &pods, "r2", &no_claims(), now()).is_empty());
        assert_eq!(
            plan(&s, &pods[1..], "r2", &no_claims(), now()),
            [Step::Create {
                ordinal: 0,
                update: false
            }]
        );
        // A new pod that is not ready yet holds the update.
        let pods = vec![
            pods[0].clone(),
            pods[1].clone(),
            pod(&s, 2, "r2", "Running", false),
        ];
        let s0 = set(3, "Parallel", Some(0));
        assert!(plan(&s0, &pods, "r2", &no_claims(), now()).is_empty());
    }

    #[test]
    fn claim_owners_follow_the_retention_policy() {
        let mut s = set(2, "OrderedReady", Some(0));
        let claim = claims_for(&s, 1).remove(0);
        let p = pod(&s, 1, "r1", "Running", true);
        let policy =
            |deleted: &str, scaled: &str| StatefulSetPersistentVolumeClaimRetentionPolicy {
                when_deleted: Some(deleted.into()),
                when_scaled: Some(scaled.into()),
            };
        let owners = |s: &StatefulSet, claim: &PersistentVolumeClaim, p: &Pod| -> Vec<String> {
            desired_claim_refs(claim, s, p)
                .iter()
                .map(|r| r.kind.clone())
                .collect()
        };
        assert!(owners(&s, &claim, &p).is_empty());
        s.spec
            .as_mut()
            .unwrap()
            .persistent_volume_claim_retention_policy = Some(policy("Delete", "Retain"));
        assert_eq!(owners(&s, &claim, &p), ["StatefulSet"]);
        s.spec
            .as_mut()
            .unwrap()
            .persistent_volume_claim_retention_policy = Some(policy("Delete", "Delete"));
        assert_eq!(owners(&s, &claim, &p), ["StatefulSet"]);
        // Scaled below ordinal 1: the pod owns the claim instead of the set.
        s.spec.as_mut().unwrap().replicas = Some(1);
        assert_eq!(owners(&s, &claim, &p), ["Pod"]);
        let mut owned = claim.clone();
        owned.metadata.owner_references = Some(desired_claim_refs(&claim, &s, &p));
        let claims = HashMap::from([(owned.name_any(), Arc::new(owned))]);
        assert!(claim_is_stale(&s, 1, &claims));
    }

    #[test]
    fn status_counts_revisions_and_completes_the_rollout() {
        let s = set(2, "OrderedReady", Some(0));
        let pods = vec![
            pod(&s, 0, "r2", "Running", true),
            pod(&s, 1, "r1", "Running", true),
        ];
        let st = desired_status(&s, &pods, "r1", "r2", 0, now());
        assert_eq!(
            (
                st.replicas,
                st.ready_replicas,
                st.current_replicas,
                st.updated_replicas
            ),
            (2, Some(2), Some(1), Some(1))
        );
        assert_eq!(st.current_revision.as_deref(), Some("r1"));
        let pods = vec![
            pod(&s, 0, "r2", "Running", true),
            pod(&s, 1, "r2", "Running", true),
        ];
        let st = desired_status(&s, &pods, "r1", "r2", 0, now());
        assert_eq!(
            (st.current_replicas, st.current_revision.as_deref()),
            (Some(2), Some("r2"))
        );
        assert_eq!(st.observed_generation, Some(1));
    }

    #[test]
    fn revision_hashes_change_with_data_and_collisions() {
        let a = json!({"spec": {"template": {"$patch": "replace"}}});
        let b = json!({"spec": {"template": {"metadata": {}, "$patch": "replace"}}});
        assert_eq!(hash_revision(&a, Some(0)), hash_revision(&a, Some(0)));
        assert_ne!(hash_revision(&a, Some(0)), hash_revision(&b, Some(0)));
        assert_ne!(hash_revision(&a, Some(0)), hash_revision(&a, Some(1)));
        let rev = |name: &str, revision: i64| {
            Arc::new(ControllerRevision {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    ..ObjectMeta::default()
                },
                data: None,
                revision,
            })
        };
        let revs = vec![rev("r1", 1), rev("r2", 2), rev("r3", 3), rev("r4", 4)];
        assert_eq!(revisions_to_truncate(1, &revs, &["r4", "r3"]), ["r1"]);
    }
}
