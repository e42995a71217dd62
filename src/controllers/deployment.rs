//! The Deployment controller (upstream's `pkg/controller/deployment`): one ReplicaSet per pod
//! template, named `<deployment>-<template hash>`, with the `deployment.kubernetes.io/revision`
//! annotations that `kubectl rollout history|undo` read; RollingUpdate within maxSurge and
//! maxUnavailable, Recreate, proportional scaling during a rollout, pause/resume, the
//! Progressing and Available conditions with `progressDeadlineSeconds`, and cleanup of old
//! ReplicaSets beyond `revisionHistoryLimit`.
//!
//! The arithmetic (how many replicas each ReplicaSet gets next) is in pure functions next to
//! upstream's names; the sync reads the caches and writes through the API.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetSpec,
};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};

use super::events::Events;
use super::informer::{
    Change, Informer, Requeue, WorkQueue, controller_of, key_of, run_workers, split_key,
};
use super::podcontrol::{adopt, release};
use super::replicaset::{is_active, is_empty_selector, owner_ref, selects_some};

pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";
/// Annotations of the Deployment that are not copied to its ReplicaSets (upstream's
/// `skipCopyAnnotation`).
const SKIP_COPY: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];
/// Upstream's `--concurrent-deployment-syncs`.
const WORKERS: usize = 5;
const COMPONENT: &str = "deployment-controller";
/// Upstream caps the revision-history annotation at this many characters.
const MAX_REVISION_HISTORY_CHARS: usize = 2000;

// ---- pure arithmetic ----

fn replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

fn rs_status_replicas(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().map(|s| s.replicas).unwrap_or(0)
}

fn rs_available(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
}

fn rs_ready(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0)
}

fn is_rolling(d: &Deployment) -> bool {
    d.spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        .is_none_or(|t| t == "RollingUpdate")
}

/// An int-or-percent against `total`, rounded up or down (upstream's
/// `GetScaledValueFromIntOrPercent`); an unparsable percentage counts 0.
pub fn scaled_value(v: &IntOrString, total: i32, round_up: bool) -> i32 {
    match v {
        IntOrString::Int(i) => *i,
        IntOrString::String(s) => {
            let Some(p) = s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) else {
                return s.parse().unwrap_or(0);
            };
            let x = p * i64::from(total);
            let v = if round_up {
                (x + 99).div_euclid(100)
            } else {
                x.div_euclid(100)
            };
            i32::try_from(v).unwrap_or(0)
        }
    }
}

/// Upstream's `ResolveFenceposts`: (maxSurge, maxUnavailable) as counts; both 0 would stall
/// the rollout, so maxUnavailable becomes 1.
pub fn fenceposts(d: &Deployment) -> (i32, i32) {
    let ru = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    let quarter = IntOrString::String("25%".into());
    let surge = ru.and_then(|r| r.max_surge.as_ref()).unwrap_or(&quarter);
    let unavailable = ru
        .and_then(|r| r.max_unavailable.as_ref())
        .unwrap_or(&quarter);
    let desired = replicas(d);
    let surge = scaled_value(surge, desired, true);
    let unavailable = scaled_value(unavailable, desired, false);
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

/// Upstream's `MaxSurge`.
pub fn max_surge(d: &Deployment) -> i32 {
    if is_rolling(d) { fenceposts(d).0 } else { 0 }
}

/// Upstream's `MaxUnavailable`: never more than the desired replicas.
pub fn max_unavailable(d: &Deployment) -> i32 {
    if !is_rolling(d) || replicas(d) == 0 {
        return 0;
    }
    fenceposts(d).1.min(replicas(d))
}

/// Upstream's `NewRSNewReplicas`: how big the new ReplicaSet may be now.
pub fn new_rs_new_replicas(d: &Deployment, all: &[ReplicaSet], new_rs: &ReplicaSet) -> i32 {
    if !is_rolling(d) {
        return replicas(d);
    }
    let current: i32 = all.iter().map(rs_replicas).sum();
    let max_total = replicas(d) + max_surge(d);
    if current >= max_total {
        return rs_replicas(new_rs);
    }
    let up = (max_total - current).min(replicas(d) - rs_replicas(new_rs));
    rs_replicas(new_rs) + up
}

/// A template with the `pod-template-hash` label removed, for comparisons.
fn without_hash(t: &PodTemplateSpec) -> PodTemplateSpec {
    let mut t = t.clone();
    if let Some(labels) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(POD_TEMPLATE_HASH);
        if labels.is_empty()
            && let Some(m) = t.metadata.as_mut()
        {
            m.labels = None;
        }
    }
    t
}

/// Upstream's `EqualIgnoreHash`.
pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    without_hash(a) == without_hash(b)
}

/// The `pod-template-hash` of a template: FNV-1a (32 bit) of its serialized form plus the
/// collision count, written with upstream's `SafeEncodeString` alphabet (no vowels, so no
/// words). Upstream hashes a Go dump of the struct; the value differs, the shape is the same.
pub fn template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut h: u32 = 0x811c_9dc5;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            h ^= u32::from(*b);
            h = h.wrapping_mul(0x0100_0193);
        }
    };
    feed(&serde_json::to_vec(template).unwrap_or_default());
    if let Some(c) = collision_count {
        feed(&c.to_le_bytes());
    }
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    h.to_string()
        .bytes()
        .map(|b| ALPHANUMS[usize::from(b) % ALPHANUMS.len()] as char)
        .collect()
}

fn revision_of(rs: &ReplicaSet) -> i64 {
    rs.annotations()
        .get(REVISION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn created(rs: &ReplicaSet) -> (Option<Timestamp>, String) {
    (
        rs.metadata.creation_timestamp.as_ref().map(|t| t.0),
        rs.name_any(),
    )
}

/// Upstream's `SetNewReplicaSetAnnotations`: copies the Deployment's annotations, sets the
/// revision (keeping the previous ones in revision-history when an old ReplicaSet comes back)
/// and, for a new ReplicaSet, the replicas annotations. Returns whether anything changed.
pub fn set_new_rs_annotations(
    d: &Deployment,
    rs: &mut ReplicaSet,
    revision: i64,
    exists: bool,
) -> bool {
    let mut changed = false;
    let ann = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    for (k, v) in d.annotations() {
        if SKIP_COPY.contains(&k.as_str()) || ann.get(k) == Some(v) {
            continue;
        }
        ann.insert(k.clone(), v.clone());
        changed = true;
    }
    let old: Option<i64> = ann.get(REVISION).and_then(|r| r.parse().ok());
    if old.is_none_or(|o| o < revision) {
        ann.insert(REVISION.into(), revision.to_string());
        changed = true;
        if let Some(o) = old.filter(|_| exists) {
            let history = match ann.get(REVISION_HISTORY) {
                Some(h) if !h.is_empty() => format!("{h},{o}"),
                _ => o.to_string(),
            };
            if history.len() <= MAX_REVISION_HISTORY_CHARS {
                ann.insert(REVISION_HISTORY.into(), history);
            }
        }
    }
    if !exists {
        changed |= set_replicas_annotations(rs, replicas(d), replicas(d) + max_surge(d));
    }
    changed
}

/// Upstream's `SetReplicasAnnotations`.
fn set_replicas_annotations(rs: &mut ReplicaSet, desired: i32, max: i32) -> bool {
    let ann = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let (d, m) = (desired.to_string(), max.to_string());
    let changed = ann.get(DESIRED_REPLICAS) != Some(&d) || ann.get(MAX_REPLICAS) != Some(&m);
    ann.insert(DESIRED_REPLICAS.into(), d);
    ann.insert(MAX_REPLICAS.into(), m);
    changed
}

/// Upstream's `getReplicaSetFraction`: this ReplicaSet's share of a scaling of the Deployment,
/// relative to the size recorded in its max-replicas annotation.
fn rs_fraction(rs: &ReplicaSet, d: &Deployment) -> i32 {
    if replicas(d) == 0 {
        return -rs_replicas(rs);
    }
    let deployment_replicas = replicas(d) + max_surge(d);
    let annotated = rs
        .annotations()
        .get(MAX_REPLICAS)
        .and_then(|v| v.parse::<i32>().ok())
        .unwrap_or_else(|| d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0));
    if annotated == 0 {
        return 0;
    }
    let size = f64::from(rs_replicas(rs)) * f64::from(deployment_replicas) / f64::from(annotated);
    size.round() as i32 - rs_replicas(rs)
}

/// Upstream's proportional scaling in `scale`: the new size of each active ReplicaSet when the
/// Deployment is resized during a rollout. `active` must be sorted as upstream sorts it (by
/// size, larger first; newer first when adding, older first when removing).
pub fn proportional_sizes(d: &Deployment, active: &[ReplicaSet]) -> Vec<i32> {
    let total: i32 = active.iter().map(rs_replicas).sum();
    let allowed = if replicas(d) > 0 {
        replicas(d) + max_surge(d)
    } else {
        0
    };
    let to_add = allowed - total;
    let mut added = 0;
    let mut sizes: Vec<i32> = Vec::with_capacity(active.len());
    for rs in active {
        let proportion = if to_add == 0 || rs_replicas(rs) == 0 || to_add == added {
            0
        } else {
            let fraction = rs_fraction(rs, d);
            let left = to_add - added;
            if to_add > 0 {
                fraction.min(left)
            } else {
                fraction.max(left)
            }
        };
        sizes.push(rs_replicas(rs) + proportion);
        added += proportion;
    }
    // The leftover goes to the largest ReplicaSet.
    if to_add != 0
        && added != to_add
        && let Some(first) = sizes.first_mut()
    {
        *first = (*first + to_add - added).max(0);
    }
    sizes
}

/// Upstream's `calculateStatus`.
pub fn calculate_status(
    d: &Deployment,
    all: &[ReplicaSet],
    new_rs: Option<&ReplicaSet>,
    now: Timestamp,
) -> DeploymentStatus {
    let available: i32 = all.iter().map(rs_available).sum();
    let total: i32 = all.iter().map(rs_replicas).sum();
    let old = d.status.clone().unwrap_or_default();
    let mut status = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: Some(all.iter().map(rs_status_replicas).sum()),
        updated_replicas: Some(new_rs.map(rs_status_replicas).unwrap_or(0)),
        ready_replicas: Some(all.iter().map(rs_ready).sum()),
        available_replicas: Some(available),
        unavailable_replicas: Some((total - available).max(0)),
        collision_count: old.collision_count,
        conditions: old.conditions.clone(),
        terminating_replicas: old.terminating_replicas,
    };
    let condition = if available >= replicas(d) - max_unavailable(d) {
        condition(
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
            now,
        )
    } else {
        condition(
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
            now,
        )
    };
    set_condition(&mut status, condition);
    status
}

fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

fn get_condition<'a>(status: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_)
}

/// Upstream's `SetDeploymentCondition`: unchanged status and reason keep the old condition;
/// unchanged status keeps the transition time.
fn set_condition(status: &mut DeploymentStatus, mut c: DeploymentCondition) {
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    if let Some(current) = conditions.iter().find(|x| x.type_ == c.type_) {
        if current.status == c.status && current.reason == c.reason {
            return;
        }
        if current.status == c.status {
            c.last_transition_time = current.last_transition_time.clone();
        }
    }
    conditions.retain(|x| x.type_ != c.type_);
    conditions.push(c);
}

fn remove_condition(status: &mut DeploymentStatus, type_: &str) {
    if let Some(cs) = status.conditions.as_mut() {
        cs.retain(|c| c.type_ != type_);
    }
}

fn progress_deadline(d: &Deployment) -> Option<i32> {
    // Upstream's `HasProgressDeadline`: MaxInt32 means "no deadline".
    d.spec
        .as_ref()
        .and_then(|s| s.progress_deadline_seconds)
        .or(Some(600))
        .filter(|s| *s != i32::MAX)
}

/// Upstream's `DeploymentComplete`.
fn complete(d: &Deployment, s: &DeploymentStatus) -> bool {
    let r = replicas(d);
    s.updated_replicas == Some(r)
        && s.replicas == Some(r)
        && s.available_replicas == Some(r)
        && s.observed_generation >= d.metadata.generation
}

/// Upstream's `DeploymentProgressing`: more updated, ready or available replicas, or fewer
/// old ones, than the last status said.
fn progressing(d: &Deployment, new: &DeploymentStatus) -> bool {
    let old = d.status.clone().unwrap_or_default();
    let v = |x: Option<i32>| x.unwrap_or(0);
    let old_old = v(old.replicas) - v(old.updated_replicas);
    let new_old = v(new.replicas) - v(new.updated_replicas);
    v(new.updated_replicas) > v(old.updated_replicas)
        || v(new.ready_replicas) > v(old.ready_replicas)
        || v(new.available_replicas) > v(old.available_replicas)
        || new_old < old_old
}

/// Upstream's `DeploymentTimedOut`.
fn timed_out(d: &Deployment, s: &DeploymentStatus, now: Timestamp) -> bool {
    let Some(deadline) = progress_deadline(d) else {
        return false;
    };
    let Some(c) = get_condition(s, "Progressing") else {
        return false;
    };
    if c.reason.as_deref() == Some("NewReplicaSetAvailable") {
        return false;
    }
    if c.reason.as_deref() == Some("ProgressDeadlineExceeded") {
        return true;
    }
    let from = c.last_update_time.as_ref().map(|t| t.0).unwrap_or(now);
    from.checked_add(SignedDuration::from_secs(i64::from(deadline)))
        .is_ok_and(|t| t < now)
}

/// Upstream's `syncRolloutStatus` condition logic: the status to write and, when a rollout is
/// under way, how long until its deadline (to look again then).
pub fn rollout_status(
    d: &Deployment,
    all: &[ReplicaSet],
    new_rs: Option<&ReplicaSet>,
    now: Timestamp,
) -> (DeploymentStatus, Option<Duration>) {
    let mut status = calculate_status(d, all, new_rs, now);
    let deadline = progress_deadline(d);
    if deadline.is_none() {
        remove_condition(&mut status, "Progressing");
    }
    let current = get_condition(&status, "Progressing").cloned();
    let is_complete = status.replicas == status.updated_replicas
        && current.as_ref().and_then(|c| c.reason.as_deref()) == Some("NewReplicaSetAvailable");
    let what = match new_rs {
        Some(rs) => format!("ReplicaSet \"{}\"", rs.name_any()),
        None => format!("Deployment \"{}\"", d.name_any()),
    };
    let mut requeue = None;
    if let Some(deadline) = deadline
        && !is_complete
    {
        if complete(d, &status) {
            let c = condition(
                "Progressing",
                "True",
                "NewReplicaSetAvailable",
                &format!("{what} has successfully progressed."),
                now,
            );
            set_condition(&mut status, c);
        } else if progressing(d, &status) {
            let mut c = condition(
                "Progressing",
                "True",
                "ReplicaSetUpdated",
                &format!("{what} is progressing."),
                now,
            );
            if let Some(cur) = &current
                && cur.status == "True"
            {
                c.last_transition_time = cur.last_transition_time.clone();
            }
            remove_condition(&mut status, "Progressing");
            set_condition(&mut status, c);
            requeue = Some(Duration::from_secs(deadline as u64));
        } else if timed_out(d, &status, now) {
            let c = condition(
                "Progressing",
                "False",
                "ProgressDeadlineExceeded",
                &format!("{what} has timed out progressing."),
                now,
            );
            set_condition(&mut status, c);
        } else if let Some(c) = get_condition(&status, "Progressing") {
            // Upstream's `requeueStuckDeployment`: look again when the deadline passes.
            let from = c.last_update_time.as_ref().map(|t| t.0).unwrap_or(now);
            let left = from.duration_until(now);
            let left = SignedDuration::from_secs(i64::from(deadline)) - left;
            requeue = Some(Duration::from_secs(left.as_secs().max(1) as u64));
        }
    }
    // The new ReplicaSet's ReplicaFailure condition is mirrored.
    let failure = new_rs
        .and_then(|rs| rs.status.as_ref())
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| {
            cs.iter()
                .find(|c| c.type_ == "ReplicaFailure" && c.status == "True")
        });
    match failure {
        Some(f) => set_condition(
            &mut status,
            DeploymentCondition {
                type_: "ReplicaFailure".into(),
                status: "True".into(),
                reason: f.reason.clone(),
                message: f.message.clone(),
                last_update_time: f.last_transition_time.clone(),
                last_transition_time: f.last_transition_time.clone(),
            },
        ),
        None => remove_condition(&mut status, "ReplicaFailure"),
    }
    (status, requeue)
}

/// Upstream's `FindNewReplicaSet`: the oldest ReplicaSet whose template is the Deployment's.
fn find_new<'a>(d: &Deployment, sets: &'a [ReplicaSet]) -> Option<&'a ReplicaSet> {
    let template = d
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let mut matching: Vec<&ReplicaSet> = sets
        .iter()
        .filter(|rs| {
            rs.spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .is_some_and(|t| equal_ignore_hash(t, &template))
        })
        .collect();
    matching.sort_by_key(|rs| created(rs));
    matching.first().copied()
}

// ---- the controller ----

pub struct Controller {
    client: Client,
    deployments: Arc<Informer<Deployment>>,
    replica_sets: Arc<Informer<ReplicaSet>>,
    pods: Arc<Informer<Pod>>,
    queue: Arc<WorkQueue>,
    events: Events,
}

/// The ReplicaSets of one Deployment as the sync sees and changes them.
struct Sets {
    new: Option<ReplicaSet>,
    old: Vec<ReplicaSet>,
}

impl Sets {
    fn all(&self) -> Vec<ReplicaSet> {
        self.old.iter().chain(self.new.as_ref()).cloned().collect()
    }
}

impl Controller {
    pub fn new(
        client: Client,
        deployments: Arc<Informer<Deployment>>,
        replica_sets: Arc<Informer<ReplicaSet>>,
        pods: Arc<Informer<Pod>>,
    ) -> Arc<Self> {
        let this = Arc::new(Controller {
            events: Events::start(client.clone(), COMPONENT),
            client,
            deployments,
            replica_sets,
            pods,
            queue: WorkQueue::new(),
        });
        this.deployments.enqueue_changes(&this.queue);
        let weak = Arc::downgrade(&this);
        this.replica_sets.on_change(move |change| {
            if let Some(c) = weak.upgrade() {
                let (rs, old) = match change {
                    Change::Applied { new, old } => (new, old.as_ref()),
                    Change::Deleted(old) => (old, None),
                };
                c.enqueue_owner(rs.as_ref());
                if let Some(o) = old {
                    c.enqueue_owner(o.as_ref());
                }
            }
        });
        // Recreate waits for the old pods to be gone.
        let weak = Arc::downgrade(&this);
        this.pods.on_change(move |change| {
            if let (Some(c), Change::Deleted(pod)) = (weak.upgrade(), change)
                && let Some(owner) = controller_of(pod.as_ref())
                && owner.kind == "ReplicaSet"
            {
                let key = format!("{}/{}", pod.namespace().unwrap_or_default(), owner.name);
                if let Some(rs) = c.replica_sets.get(&key) {
                    c.enqueue_owner(rs.as_ref());
                }
            }
        });
        this
    }

    fn enqueue_owner(&self, rs: &ReplicaSet) {
        let ns = rs.namespace().unwrap_or_default();
        match controller_of(rs) {
            Some(o) if o.kind == "Deployment" => self.queue.add(format!("{ns}/{}", o.name)),
            Some(_) => {}
            None => {
                // An orphan may be adopted by a Deployment that selects it.
                for d in self.deployments.list_namespace(&ns) {
                    if let Some(spec) = &d.spec
                        && selects_some(&spec.selector, rs.labels())
                    {
                        self.queue.add(key_of(d.as_ref()));
                    }
                }
            }
        }
    }

    pub async fn run(self: Arc<Self>, resync: Duration) {
        self.deployments.wait_synced().await;
        self.replica_sets.wait_synced().await;
        self.pods.wait_synced().await;
        let this = self.clone();
        let workers = run_workers(COMPONENT, self.queue.clone(), WORKERS, move |key| {
            let this = this.clone();
            async move { this.sync(&key).await }
        });
        let resync = super::informer::resync(self.deployments.clone(), self.queue.clone(), resync);
        tokio::join!(workers, resync);
    }

    fn rs_api(&self, ns: &str) -> Api<ReplicaSet> {
        Api::namespaced(self.client.clone(), ns)
    }

    fn reference(d: &Deployment) -> k8s_openapi::api::core::v1::ObjectReference {
        kube::Resource::object_ref(d, &())
    }

    /// Upstream's `syncDeployment`.
    async fn sync(&self, key: &str) -> Result<Requeue, kube::Error> {
        let Some(d) = self.deployments.get(key) else {
            return Ok(None);
        };
        let mut d = (*d).clone();
        let (ns, _) = split_key(key);
        let now = Timestamp::now();
        let selector = d
            .spec
            .as_ref()
            .map(|s| s.selector.clone())
            .unwrap_or_default();
        if is_empty_selector(&selector) {
            self.events.warning(
                Self::reference(&d),
                "SelectingAll",
                "This deployment is selecting all pods. A non-empty selector is required.".into(),
            );
            return Ok(None);
        }
        let rs_list = self.claim(&d, ns, &selector).await?;
        if d.metadata.deletion_timestamp.is_some() {
            let sets = self.sets(&mut d, ns, &rs_list, false).await?;
            return self.sync_status(&d, &sets, now).await;
        }
        self.check_paused(&mut d, now).await?;
        let paused = d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
        if paused || self.is_scaling_event(&d, &rs_list) {
            let mut sets = self.sets(&mut d, ns, &rs_list, false).await?;
            self.scale(&d, &mut sets).await?;
            if paused {
                self.cleanup(&d, &sets).await?;
            }
            return self.sync_status(&d, &sets, now).await;
        }
        if is_rolling(&d) {
            self.rollout_rolling(&mut d, ns, &rs_list, now).await
        } else {
            self.rollout_recreate(&mut d, ns, &rs_list, now).await
        }
    }

    /// The ReplicaSets this Deployment controls after adoption and release (upstream's
    /// `getReplicaSetsForDeployment` with `ReplicaSetControllerRefManager`).
    async fn claim(
        &self,
        d: &Deployment,
        ns: &str,
        selector: &LabelSelector,
    ) -> Result<Vec<ReplicaSet>, kube::Error> {
        let uid = d.metadata.uid.clone().unwrap_or_default();
        let api = self.rs_api(ns);
        let mut out = Vec::new();
        for rs in self.replica_sets.controlled_by(&uid) {
            if selects_some(selector, rs.labels()) || d.metadata.deletion_timestamp.is_some() {
                out.push((*rs).clone());
            } else {
                release(&api, rs.as_ref(), &uid).await?;
            }
        }
        if d.metadata.deletion_timestamp.is_some() {
            return Ok(out);
        }
        for rs in self.replica_sets.list_namespace(ns) {
            if controller_of(rs.as_ref()).is_some()
                || rs.metadata.deletion_timestamp.is_some()
                || !selects_some(selector, rs.labels())
            {
                continue;
            }
            let owner = owner_ref("apps/v1", "Deployment", &d.metadata);
            if let Some(adopted) = adopt(&api, rs.as_ref(), owner).await? {
                out.push(adopted);
            }
        }
        Ok(out)
    }

    /// Upstream's `checkPausedConditions`.
    async fn check_paused(&self, d: &mut Deployment, now: Timestamp) -> Result<(), kube::Error> {
        if progress_deadline(d).is_none() {
            return Ok(());
        }
        let paused = d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
        let mut status = d.status.clone().unwrap_or_default();
        let reason = get_condition(&status, "Progressing").and_then(|c| c.reason.clone());
        let c = if paused && reason.as_deref() != Some("DeploymentPaused") {
            condition(
                "Progressing",
                "Unknown",
                "DeploymentPaused",
                "Deployment is paused",
                now,
            )
        } else if !paused && reason.as_deref() == Some("DeploymentPaused") {
            condition(
                "Progressing",
                "Unknown",
                "DeploymentResumed",
                "Deployment is resumed",
                now,
            )
        } else {
            return Ok(());
        };
        set_condition(&mut status, c);
        self.write_status(d, status).await
    }

    async fn write_status(
        &self,
        d: &mut Deployment,
        status: DeploymentStatus,
    ) -> Result<(), kube::Error> {
        let api: Api<Deployment> =
            Api::namespaced(self.client.clone(), &d.namespace().unwrap_or_default());
        let patch = serde_json::json!({"status": status});
        let updated = api
            .patch_status(
                &d.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
        d.status = updated.status;
        d.metadata.resource_version = updated.metadata.resource_version;
        Ok(())
    }

    /// Upstream's `isScalingEvent`: an active ReplicaSet was sized for another replica count.
    fn is_scaling_event(&self, d: &Deployment, rs_list: &[ReplicaSet]) -> bool {
        let want = replicas(d).to_string();
        rs_list.iter().filter(|rs| rs_replicas(rs) > 0).any(|rs| {
            rs.annotations()
                .get(DESIRED_REPLICAS)
                .is_some_and(|v| *v != want)
        })
    }

    /// Upstream's `getAllReplicaSetsAndSyncRevision`: the new ReplicaSet (created when asked
    /// and missing) with its revision brought up to date, and the old ones.
    async fn sets(
        &self,
        d: &mut Deployment,
        ns: &str,
        rs_list: &[ReplicaSet],
        create: bool,
    ) -> Result<Sets, kube::Error> {
        let existing = find_new(d, rs_list).cloned();
        let old: Vec<ReplicaSet> = rs_list
            .iter()
            .filter(|rs| {
                existing
                    .as_ref()
                    .is_none_or(|n| n.metadata.uid != rs.metadata.uid)
            })
            .cloned()
            .collect();
        let max_old = old.iter().map(revision_of).max().unwrap_or(0);
        let revision = max_old + 1;
        let api = self.rs_api(ns);
        let now = Timestamp::now();
        if let Some(mut rs) = existing {
            let changed = set_new_rs_annotations(d, &mut rs, revision, true);
            let min_ready = d.spec.as_ref().and_then(|s| s.min_ready_seconds);
            let spec = rs.spec.get_or_insert_with(ReplicaSetSpec::default);
            let min_ready_changed = spec.min_ready_seconds != min_ready;
            spec.min_ready_seconds = min_ready;
            if changed || min_ready_changed {
                rs = api
                    .replace(&rs.name_any(), &PostParams::default(), &rs)
                    .await?;
            }
            let rs_revision = rs.annotations().get(REVISION).cloned().unwrap_or_default();
            self.set_revision(d, &rs_revision).await?;
            let mut status = d.status.clone().unwrap_or_default();
            if progress_deadline(d).is_some() && get_condition(&status, "Progressing").is_none() {
                let msg = format!("Found new replica set \"{}\"", rs.name_any());
                set_condition(
                    &mut status,
                    condition("Progressing", "True", "FoundNewReplicaSet", &msg, now),
                );
                self.write_status(d, status).await?;
            }
            return Ok(Sets { new: Some(rs), old });
        }
        if !create {
            return Ok(Sets { new: None, old });
        }
        let spec = d.spec.clone().unwrap_or_default();
        let collision = d.status.as_ref().and_then(|s| s.collision_count);
        let hash = template_hash(&spec.template, collision);
        let mut template = spec.template.clone();
        template
            .metadata
            .get_or_insert_with(ObjectMeta::default)
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let mut selector = spec.selector.clone();
        selector
            .match_labels
            .get_or_insert_with(BTreeMap::new)
            .insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let name = format!("{}-{hash}", d.name_any());
        let mut rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.into()),
                labels: template.metadata.as_ref().and_then(|m| m.labels.clone()),
                owner_references: Some(vec![owner_ref("apps/v1", "Deployment", &d.metadata)]),
                ..ObjectMeta::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds: spec.min_ready_seconds,
                selector,
                template: Some(template),
            }),
            status: None,
        };
        let mut all = old.clone();
        all.push(rs.clone());
        let count = new_rs_new_replicas(d, &all, &rs);
        if let Some(s) = rs.spec.as_mut() {
            s.replicas = Some(count);
        }
        set_new_rs_annotations(d, &mut rs, revision, false);
        let created = match api.create(&PostParams::default(), &rs).await {
            Ok(created) => created,
            Err(kube::Error::Api(s)) if s.code == 409 => {
                // Our cache may be behind: the same ReplicaSet of ours is fine; another one
                // with this name is a hash collision, resolved with a new hash next time.
                let current = api.get(&name).await?;
                let ours = controller_of(&current)
                    .is_some_and(|o| Some(&o.uid) == d.metadata.uid.as_ref());
                let same = current
                    .spec
                    .as_ref()
                    .and_then(|s| s.template.as_ref())
                    .is_some_and(|t| equal_ignore_hash(t, &spec.template));
                if ours && same {
                    return Ok(Sets {
                        new: Some(current),
                        old,
                    });
                }
                let mut status = d.status.clone().unwrap_or_default();
                status.collision_count = Some(collision.unwrap_or(0) + 1);
                self.write_status(d, status).await?;
                return Err(kube::Error::Service(
                    format!("hash collision for replica set {name}").into(),
                ));
            }
            Err(e) => {
                let mut status = d.status.clone().unwrap_or_default();
                let msg = format!("Failed to create new replica set \"{name}\": {e}");
                set_condition(
                    &mut status,
                    condition("Progressing", "False", "ReplicaSetCreateError", &msg, now),
                );
                self.events.warning(Self::reference(d), "FailedCreate", msg);
                self.write_status(d, status).await?;
                return Err(e);
            }
        };
        if count > 0 {
            self.events.normal(
                Self::reference(d),
                "ScalingReplicaSet",
                format!("Scaled up replica set {name} from 0 to {count}"),
            );
        }
        self.set_revision(d, &revision.to_string()).await?;
        if progress_deadline(d).is_some() {
            let mut status = d.status.clone().unwrap_or_default();
            let msg = format!("Created new replica set \"{name}\"");
            set_condition(
                &mut status,
                condition("Progressing", "True", "NewReplicaSetCreated", &msg, now),
            );
            self.write_status(d, status).await?;
        }
        Ok(Sets {
            new: Some(created),
            old,
        })
    }

    /// Upstream's `SetDeploymentRevision`, written as a metadata patch.
    async fn set_revision(&self, d: &mut Deployment, revision: &str) -> Result<(), kube::Error> {
        if revision.is_empty()
            || d.annotations().get(REVISION).map(String::as_str) == Some(revision)
        {
            return Ok(());
        }
        let api: Api<Deployment> =
            Api::namespaced(self.client.clone(), &d.namespace().unwrap_or_default());
        let patch = serde_json::json!({"metadata": {"annotations": {REVISION: revision}}});
        let updated = api
            .patch(
                &d.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
        d.metadata = updated.metadata;
        Ok(())
    }

    /// Upstream's `scaleReplicaSetAndRecordEvent`: resizes one ReplicaSet (and its replicas
    /// annotations); returns whether it changed.
    async fn scale_rs(
        &self,
        d: &Deployment,
        rs: &mut ReplicaSet,
        size: i32,
    ) -> Result<bool, kube::Error> {
        let from = rs_replicas(rs);
        let mut updated = rs.clone();
        let annotations_changed =
            set_replicas_annotations(&mut updated, replicas(d), replicas(d) + max_surge(d));
        if from == size && !annotations_changed {
            return Ok(false);
        }
        updated
            .spec
            .get_or_insert_with(ReplicaSetSpec::default)
            .replicas = Some(size);
        let ns = rs.namespace().unwrap_or_default();
        *rs = self
            .rs_api(&ns)
            .replace(&rs.name_any(), &PostParams::default(), &updated)
            .await?;
        if from != size {
            let direction = if size > from { "up" } else { "down" };
            self.events.normal(
                Self::reference(d),
                "ScalingReplicaSet",
                format!(
                    "Scaled {direction} replica set {} from {from} to {size}",
                    rs.name_any()
                ),
            );
        }
        Ok(from != size)
    }

    /// Upstream's `scale`: resizes the ReplicaSets when the Deployment's replica count changed
    /// (or it is paused), proportionally during a rollout.
    async fn scale(&self, d: &Deployment, sets: &mut Sets) -> Result<(), kube::Error> {
        let desired = replicas(d);
        // Upstream's `FindActiveOrLatest`: with at most one active ReplicaSet, that one (or,
        // with none active, the new one or else the newest old one) takes the whole count.
        let active: Vec<usize> = (0..sets.old.len())
            .filter(|&i| rs_replicas(&sets.old[i]) > 0)
            .collect();
        let new_active = sets.new.as_ref().is_some_and(|n| rs_replicas(n) > 0);
        let active_count = active.len() + usize::from(new_active);
        if active_count <= 1 {
            let target = if new_active || (active_count == 0 && sets.new.is_some()) {
                sets.new.as_mut()
            } else if let Some(&i) = active.first() {
                Some(&mut sets.old[i])
            } else {
                sets.old.iter_mut().max_by_key(|rs| created(rs))
            };
            if let Some(rs) = target {
                self.scale_rs(d, rs, desired).await?;
            }
            return Ok(());
        }
        // Saturated new ReplicaSet: the old ones go to zero.
        if let Some(n) = &sets.new
            && rs_replicas(n) == desired
            && n.annotations().get(DESIRED_REPLICAS) == Some(&desired.to_string())
            && rs_available(n) == desired
        {
            for &i in &active {
                self.scale_rs(d, &mut sets.old[i], 0).await?;
            }
            return Ok(());
        }
        if !is_rolling(d) {
            return Ok(());
        }
        // Proportional scaling over the active ReplicaSets.
        let mut all: Vec<ReplicaSet> = sets
            .all()
            .into_iter()
            .filter(|rs| rs_replicas(rs) > 0)
            .collect();
        let total: i32 = all.iter().map(rs_replicas).sum();
        let adding = (desired + max_surge(d)) - total > 0;
        all.sort_by(|a, b| {
            rs_replicas(b).cmp(&rs_replicas(a)).then_with(|| {
                if adding {
                    created(b).cmp(&created(a))
                } else {
                    created(a).cmp(&created(b))
                }
            })
        });
        let sizes = proportional_sizes(d, &all);
        for (rs, size) in all.iter().zip(sizes) {
            let uid = rs.metadata.uid.clone();
            let target = sets
                .old
                .iter_mut()
                .chain(sets.new.as_mut())
                .find(|x| x.metadata.uid == uid);
            if let Some(t) = target {
                self.scale_rs(d, t, size).await?;
            }
        }
        Ok(())
    }

    /// Upstream's `rolloutRolling`.
    async fn rollout_rolling(
        &self,
        d: &mut Deployment,
        ns: &str,
        rs_list: &[ReplicaSet],
        now: Timestamp,
    ) -> Result<Requeue, kube::Error> {
        let mut sets = self.sets(d, ns, rs_list, true).await?;
        // reconcileNewReplicaSet
        let all = sets.all();
        if let Some(new_rs) = sets.new.as_mut() {
            let desired = replicas(d);
            let target = if rs_replicas(new_rs) > desired {
                Some(desired)
            } else if rs_replicas(new_rs) < desired {
                Some(new_rs_new_replicas(d, &all, new_rs))
            } else {
                None
            };
            if let Some(size) = target
                && self.scale_rs(d, new_rs, size).await?
            {
                return self.sync_rollout_status(d, &sets, now).await;
            }
        }
        if self.reconcile_old(d, &mut sets).await? {
            return self.sync_rollout_status(d, &sets, now).await;
        }
        let (status, _) = rollout_status(d, &sets.all(), sets.new.as_ref(), now);
        if complete(d, &status) {
            self.cleanup(d, &sets).await?;
        }
        self.sync_rollout_status(d, &sets, now).await
    }

    /// Upstream's `reconcileOldReplicaSets` with `cleanupUnhealthyReplicas` and
    /// `scaleDownOldReplicaSetsForRollingUpdate`.
    async fn reconcile_old(&self, d: &Deployment, sets: &mut Sets) -> Result<bool, kube::Error> {
        let old_pods: i32 = sets.old.iter().map(rs_replicas).sum();
        if old_pods == 0 {
            return Ok(false);
        }
        let all_pods: i32 = sets.all().iter().map(rs_replicas).sum();
        let min_available = replicas(d) - max_unavailable(d);
        let new_unavailable = sets
            .new
            .as_ref()
            .map(|n| rs_replicas(n) - rs_available(n))
            .unwrap_or(0);
        let max_scaled_down = all_pods - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return Ok(false);
        }
        sets.old.sort_by_key(created);
        // First the old ReplicaSets' unhealthy replicas.
        let mut cleaned = 0;
        for rs in sets.old.iter_mut() {
            if cleaned >= max_scaled_down {
                break;
            }
            let (r, a) = (rs_replicas(rs), rs_available(rs));
            if r == 0 || r == a {
                continue;
            }
            let down = (max_scaled_down - cleaned).min(r - a);
            self.scale_rs(d, rs, r - down).await?;
            cleaned += down;
        }
        // Then healthy ones, as far as availability allows.
        let available: i32 = sets.all().iter().map(rs_available).sum();
        let mut scaled = 0;
        if available > min_available {
            let total = available - min_available;
            for rs in sets.old.iter_mut() {
                if scaled >= total {
                    break;
                }
                let r = rs_replicas(rs);
                if r == 0 {
                    continue;
                }
                let down = r.min(total - scaled);
                self.scale_rs(d, rs, r - down).await?;
                scaled += down;
            }
        }
        Ok(cleaned + scaled > 0)
    }

    /// Upstream's `rolloutRecreate`: old ReplicaSets to zero, wait for their pods to stop,
    /// then the new one at full size.
    async fn rollout_recreate(
        &self,
        d: &mut Deployment,
        ns: &str,
        rs_list: &[ReplicaSet],
        now: Timestamp,
    ) -> Result<Requeue, kube::Error> {
        let mut sets = self.sets(d, ns, rs_list, false).await?;
        let mut scaled_down = false;
        for rs in sets.old.iter_mut().filter(|rs| rs_replicas(rs) > 0) {
            scaled_down |= self.scale_rs(d, rs, 0).await?;
        }
        if scaled_down {
            return self.sync_rollout_status(d, &sets, now).await;
        }
        if self.old_pods_running(&sets) {
            return self.sync_rollout_status(d, &sets, now).await;
        }
        if sets.new.is_none() {
            sets = self.sets(d, ns, rs_list, true).await?;
        }
        if let Some(new_rs) = sets.new.as_mut() {
            self.scale_rs(d, new_rs, replicas(d)).await?;
        }
        let (status, _) = rollout_status(d, &sets.all(), sets.new.as_ref(), now);
        if complete(d, &status) {
            self.cleanup(d, &sets).await?;
        }
        self.sync_rollout_status(d, &sets, now).await
    }

    /// Upstream's `oldPodsRunning`.
    fn old_pods_running(&self, sets: &Sets) -> bool {
        if sets.old.iter().map(rs_status_replicas).sum::<i32>() > 0 {
            return true;
        }
        sets.old.iter().any(|rs| {
            let uid = rs.metadata.uid.clone().unwrap_or_default();
            self.pods.controlled_by(&uid).iter().any(|p| {
                !matches!(
                    p.status.as_ref().and_then(|s| s.phase.as_deref()),
                    Some("Succeeded" | "Failed")
                ) || is_active(p)
            })
        })
    }

    /// Upstream's `cleanupDeployment`: deletes the oldest scaled-down ReplicaSets beyond
    /// `revisionHistoryLimit`.
    async fn cleanup(&self, d: &Deployment, sets: &Sets) -> Result<(), kube::Error> {
        let limit = d
            .spec
            .as_ref()
            .and_then(|s| s.revision_history_limit)
            .unwrap_or(10);
        let mut cleanable: Vec<&ReplicaSet> = sets
            .old
            .iter()
            .filter(|rs| rs.metadata.deletion_timestamp.is_none())
            .collect();
        let diff = cleanable.len() as i64 - i64::from(limit);
        if diff <= 0 {
            return Ok(());
        }
        cleanable.sort_by_key(|rs| (revision_of(rs), created(rs)));
        for rs in cleanable.into_iter().take(diff as usize) {
            let observed = rs
                .status
                .as_ref()
                .and_then(|s| s.observed_generation)
                .unwrap_or(0);
            if rs_status_replicas(rs) != 0
                || rs_replicas(rs) != 0
                || rs.metadata.generation.unwrap_or(0) > observed
            {
                continue;
            }
            let api = self.rs_api(&rs.namespace().unwrap_or_default());
            match api.delete(&rs.name_any(), &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Upstream's `syncRolloutStatus`.
    async fn sync_rollout_status(
        &self,
        d: &mut Deployment,
        sets: &Sets,
        now: Timestamp,
    ) -> Result<Requeue, kube::Error> {
        let (status, requeue) = rollout_status(d, &sets.all(), sets.new.as_ref(), now);
        if d.status.as_ref() != Some(&status) {
            self.write_status(d, status).await?;
        }
        Ok(requeue)
    }

    /// Upstream's `syncDeploymentStatus` (scaling and paused paths: no Progressing changes).
    async fn sync_status(
        &self,
        d: &Deployment,
        sets: &Sets,
        now: Timestamp,
    ) -> Result<Requeue, kube::Error> {
        let status = calculate_status(d, &sets.all(), sets.new.as_ref(), now);
        if d.status.as_ref() != Some(&status) {
            let mut d = d.clone();
            self.write_status(&mut d, status).await?;
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{
        DeploymentSpec, DeploymentStrategy, ReplicaSetStatus, RollingUpdateDeployment,
    };

    fn deployment(replicas: i32, surge: &str, unavailable: &str) -> Deployment {
        let parse = |s: &str| match s.parse::<i32>() {
            Ok(i) => IntOrString::Int(i),
            Err(_) => IntOrString::String(s.into()),
        };
        Deployment {
            metadata: ObjectMeta {
                name: Some("web".into()),
                generation: Some(1),
                ..ObjectMeta::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                strategy: Some(DeploymentStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: Some(RollingUpdateDeployment {
                        max_surge: Some(parse(surge)),
                        max_unavailable: Some(parse(unavailable)),
                    }),
                }),
                ..DeploymentSpec::default()
            }),
            status: None,
        }
    }

    fn rs(name: &str, replicas: i32, available: i32, max_replicas: Option<i32>) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.into()),
                annotations: max_replicas
                    .map(|m| [(MAX_REPLICAS.to_string(), m.to_string())].into()),
                ..ObjectMeta::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                ..ReplicaSetSpec::default()
            }),
            status: Some(ReplicaSetStatus {
                replicas,
                available_replicas: Some(available),
                ready_replicas: Some(available),
                ..ReplicaSetStatus::default()
            }),
        }
    }

    #[test]
    fn fenceposts_round_surge_up_and_unavailable_down() {
        assert_eq!(fenceposts(&deployment(10, "25%", "25%")), (3, 2));
        assert_eq!(fenceposts(&deployment(3, "1", "0")), (1, 0));
        // Both zero would never progress: upstream makes maxUnavailable 1.
        assert_eq!(fenceposts(&deployment(3, "0", "0")), (0, 1));
        assert_eq!(fenceposts(&deployment(1, "25%", "25%")), (1, 0));
    }

    #[test]
    fn a_new_replica_set_grows_within_max_surge() {
        let d = deployment(10, "3", "2");
        let old = rs("old", 10, 10, Some(13));
        let new = rs("new", 0, 0, None);
        assert_eq!(
            new_rs_new_replicas(&d, &[old.clone(), new.clone()], &new),
            3
        );
        // Already at the surge limit: no growth.
        let new = rs("new", 3, 0, None);
        assert_eq!(new_rs_new_replicas(&d, &[old, new.clone()], &new), 3);
    }

    #[test]
    fn proportional_scaling_splits_by_size_and_gives_leftovers_to_the_largest() {
        // A 10-replica rollout (surge 3) in progress: old 8, new 5. Scaled to 20: allowed
        // 20+5=25 (surge 25% of 20 = 5); to add 12, shared 8:5 by max-replicas 13.
        let d = deployment(20, "25%", "25%");
        let sets = [rs("old", 8, 8, Some(13)), rs("new", 5, 0, Some(13))];
        let sizes = proportional_sizes(&d, &sets);
        assert_eq!(sizes.iter().sum::<i32>(), 25);
        // old: round(8*25/13)=15 (+7), new: round(5*25/13)=10 (+5): exactly 12.
        assert_eq!(sizes, vec![15, 10]);
    }

    #[test]
    fn template_hash_is_stable_and_uses_the_safe_alphabet() {
        let t = PodTemplateSpec::default();
        let a = template_hash(&t, None);
        assert_eq!(a, template_hash(&t, None));
        assert_ne!(a, template_hash(&t, Some(1)));
        assert!(a.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
    }

    #[test]
    fn templates_compare_without_the_hash_label() {
        let a = PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some([("app".to_string(), "web".to_string())].into()),
                ..ObjectMeta::default()
            }),
            spec: None,
        };
        let mut b = a.clone();
        b.metadata
            .as_mut()
            .unwrap()
            .labels
            .as_mut()
            .unwrap()
            .insert(POD_TEMPLATE_HASH.into(), "abc".into());
        assert!(equal_ignore_hash(&a, &b));
    }

    #[test]
    fn revisions_move_to_history_when_an_old_replica_set_returns() {
        let d = deployment(1, "1", "0");
        let mut old = rs("old", 0, 0, None);
        old.metadata.annotations = Some([(REVISION.to_string(), "1".to_string())].into());
        assert!(set_new_rs_annotations(&d, &mut old, 3, true));
        let ann = old.metadata.annotations.unwrap();
        assert_eq!(ann[REVISION], "3");
        assert_eq!(ann[REVISION_HISTORY], "1");
    }

    #[test]
    fn conditions_follow_the_rollout() {
        let now = Timestamp::from_second(1_000).unwrap();
        let d = deployment(3, "1", "0");
        let new = rs("web-abc", 3, 3, None);
        let (status, _) = rollout_status(&d, std::slice::from_ref(&new), Some(&new), now);
        let p = get_condition(&status, "Progressing").unwrap();
        assert_eq!(p.reason.as_deref(), Some("NewReplicaSetAvailable"));
        assert_eq!(
            p.message.as_deref(),
            Some("ReplicaSet \"web-abc\" has successfully progressed.")
        );
        let a = get_condition(&status, "Available").unwrap();
        assert_eq!(
            (a.status.as_str(), a.reason.as_deref()),
            ("True", Some("MinimumReplicasAvailable"))
        );
        let half = rs("web-abc", 3, 1, None);
        let (status, requeue) = rollout_status(&d, std::slice::from_ref(&half), Some(&half), now);
        assert_eq!(
            get_condition(&status, "Progressing")
                .unwrap()
                .reason
                .as_deref(),
            Some("ReplicaSetUpdated")
        );
        assert_eq!(get_condition(&status, "Available").unwrap().status, "False");
        assert!(requeue.is_some());
    }

    #[test]
    fn a_rollout_without_progress_times_out() {
        let start = Timestamp::from_second(1_000).unwrap();
        let mut d = deployment(3, "1", "0");
        d.spec.as_mut().unwrap().progress_deadline_seconds = Some(60);
        let half = rs("web-abc", 3, 1, None);
        let (status, _) = rollout_status(&d, std::slice::from_ref(&half), Some(&half), start);
        d.status = Some(status);
        let later = Timestamp::from_second(1_100).unwrap();
        let (status, _) = rollout_status(&d, std::slice::from_ref(&half), Some(&half), later);
        let p = get_condition(&status, "Progressing").unwrap();
        assert_eq!(
            (p.status.as_str(), p.reason.as_deref()),
            ("False", Some("ProgressDeadlineExceeded"))
        );
    }
}
