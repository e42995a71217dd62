//! The disruption controller (upstream's `pkg/controller/disruption`): keeps every
//! PodDisruptionBudget's status — `expectedPods`, `currentHealthy`, `desiredHealthy`,
//! `disruptionsAllowed`, `observedGeneration`, the `disruptedPods` that evictions recorded, and
//! the `DisruptionAllowed` condition — which evictions and the scheduler's preemption read.
//!
//! `minAvailable`/`maxUnavailable` percentages are taken of the scale of the pods'
//! controllers (Deployment, ReplicaSet, ReplicationController, StatefulSet); a selected pod
//! whose controller cannot be found puts the budget in the fail-safe state
//! (`DisruptionAllowed=False`, reason `SyncFailed`, no disruptions allowed), as upstream does.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{ObjectReference, Pod, ReplicationController};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};

use super::events::Events;
use super::informer::{Change, Informer, Requeue, WorkQueue, controller_of, key_of, run_workers};
use super::replicaset::{is_ready, selects};

const WORKERS: usize = 2;
/// Upstream's `DeletionTimeout`: how long a pod recorded in `disruptedPods` by an eviction is
/// expected to take to get its deletionTimestamp.
pub const DELETION_TIMEOUT: SignedDuration = SignedDuration::from_secs(2 * 60);
pub const CONDITION: &str = "DisruptionAllowed";
pub const SUFFICIENT_PODS: &str = "SufficientPods";
pub const INSUFFICIENT_PODS: &str = "InsufficientPods";
pub const SYNC_FAILED: &str = "SyncFailed";

/// Upstream's `intstr.GetScaledValueFromIntOrPercent(v, total, roundUp=true)`; `None` for a
/// malformed percentage.
pub fn scaled_value(v: &IntOrString, total: i32) -> Option<i32> {
    match v {
        IntOrString::Int(n) => Some(*n),
        IntOrString::String(s) => {
            let p: i64 = s.strip_suffix('%')?.parse().ok()?;
            let scaled = (p * i64::from(total) + 99).div_euclid(100);
            i32::try_from(scaled).ok()
        }
    }
}

/// Upstream's `buildDisruptedPodMap`: entries for pods that are gone, already deleting, or
/// whose deletion is overdue are dropped; returns the kept map and when the earliest kept
/// entry expires (the time to look again).
pub fn prune_disrupted(
    disrupted: &BTreeMap<String, Time>,
    pods: &[Arc<Pod>],
    now: Timestamp,
) -> (BTreeMap<String, Time>, Option<Timestamp>) {
    let by_name: HashMap<String, &Arc<Pod>> = pods.iter().map(|p| (p.name_any(), p)).collect();
    let mut kept = BTreeMap::new();
    let mut recheck: Option<Timestamp> = None;
    for (name, at) in disrupted {
        let Some(pod) = by_name.get(name) else {
            continue;
        };
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let Ok(expected) = at.0.checked_add(DELETION_TIMEOUT) else {
            continue;
        };
        if expected < now {
            continue;
        }
        recheck = Some(recheck.map_or(expected, |r| r.min(expected)));
        kept.insert(name.clone(), at.clone());
    }
    (kept, recheck)
}

/// Upstream's `countHealthyPods`: ready pods that are neither deleting nor about to be.
pub fn count_healthy(pods: &[Arc<Pod>], disrupted: &BTreeMap<String, Time>, now: Timestamp) -> i32 {
    let n = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            disrupted
                .get(&p.name_any())
                .and_then(|t| t.0.checked_add(DELETION_TIMEOUT).ok())
                .is_none_or(|until| until <= now)
        })
        .filter(|p| is_ready(p))
        .count();
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// Upstream's `getExpectedPodCount`: (expectedPods, desiredHealthy). `scale` is the summed
/// scale of the pods' controllers, asked for only when a percentage or maxUnavailable needs
/// it; its error is the fail-safe message.
pub fn expected_and_desired(
    pdb: &PodDisruptionBudget,
    pods: usize,
    scale: impl FnOnce() -> Result<i32, String>,
) -> Result<(i32, i32), String> {
    let spec = pdb.spec.as_ref();
    let pods = i32::try_from(pods).unwrap_or(i32::MAX);
    if let Some(max_unavailable) = spec.and_then(|s| s.max_unavailable.as_ref()) {
        let expected = scale()?;
        let max = scaled_value(max_unavailable, expected)
            .ok_or_else(|| format!("invalid value for maxUnavailable: {max_unavailable:?}"))?;
        return Ok((expected, (expected - max).max(0)));
    }
    match spec.and_then(|s| s.min_available.as_ref()) {
        Some(IntOrString::Int(n)) => Ok((pods, *n)),
        Some(min @ IntOrString::String(_)) => {
            let expected = scale()?;
            let min = scaled_value(min, expected)
                .ok_or_else(|| format!("invalid value for minAvailable: {min:?}"))?;
            Ok((expected, min))
        }
        None => Ok((0, 0)),
    }
}

/// The condition upstream's `UpdateDisruptionAllowedCondition` (or, with a reason of
/// `SyncFailed`, `failSafe`) sets; the transition time moves only when the status does.
pub fn disruption_condition(
    previous: Option<&Condition>,
    allowed: bool,
    failure: Option<&str>,
    observed_generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    let status = if allowed { "True" } else { "False" };
    let reason = match (failure, allowed) {
        (Some(_), _) => SYNC_FAILED,
        (None, true) => SUFFICIENT_PODS,
        (None, false) => INSUFFICIENT_PODS,
    };
    let last_transition_time = previous
        .filter(|c| c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    Condition {
        type_: CONDITION.into(),
        status: status.into(),
        reason: reason.into(),
        message: failure.unwrap_or_default().to_string(),
        observed_generation,
        last_transition_time,
    }
}

/// The status a budget should have (upstream's `trySync` + `updatePdbStatus`, or `failSafe`
/// when `counts` is an error).
pub fn desired_status(
    pdb: &PodDisruptionBudget,
    counts: Result<(i32, i32), String>,
    current_healthy: i32,
    disrupted: BTreeMap<String, Time>,
    now: Timestamp,
) -> PodDisruptionBudgetStatus {
    let old = pdb.status.clone().unwrap_or_default();
    let previous = old
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == CONDITION);
    let mut others: Vec<Condition> = old
        .conditions
        .iter()
        .flatten()
        .filter(|c| c.type_ != CONDITION)
        .cloned()
        .collect();
    match counts {
        Ok((expected, desired)) => {
            // Upstream requires expectedPods > 0, so a budget that matches no pods yet is safe
            // when its first pods appear before the next sync.
            let allowed = if expected <= 0 {
                0
            } else {
                (current_healthy - desired).max(0)
            };
            let generation = pdb.metadata.generation;
            others.push(disruption_condition(
                previous,
                allowed > 0,
                None,
                generation,
                now,
            ));
            PodDisruptionBudgetStatus {
                current_healthy,
                desired_healthy: desired,
                expected_pods: expected,
                disruptions_allowed: allowed,
                disrupted_pods: (!disrupted.is_empty()).then_some(disrupted),
                observed_generation: generation,
                conditions: Some(others),
            }
        }
        Err(message) => {
            others.push(disruption_condition(
                previous,
                false,
                Some(&message),
                old.observed_generation,
                now,
            ));
            PodDisruptionBudgetStatus {
                disruptions_allowed: 0,
                conditions: Some(others),
                ..old
            }
        }
    }
}

pub struct Controller {
    client: Client,
    pdbs: Arc<Informer<PodDisruptionBudget>>,
    pods: Arc<Informer<Pod>>,
    deployments: Arc<Informer<Deployment>>,
    replica_sets: Arc<Informer<ReplicaSet>>,
    rcs: Arc<Informer<ReplicationController>>,
    stateful_sets: Arc<Informer<StatefulSet>>,
    queue: Arc<WorkQueue>,
    events: Events,
}

impl Controller {
    pub fn new(
        client: Client,
        pdbs: Arc<Informer<PodDisruptionBudget>>,
        pods: Arc<Informer<Pod>>,
        deployments: Arc<Informer<Deployment>>,
        replica_sets: Arc<Informer<ReplicaSet>>,
        rcs: Arc<Informer<ReplicationController>>,
        stateful_sets: Arc<Informer<StatefulSet>>,
    ) -> Arc<Self> {
        let events = Events::start(client.clone(), "controllermanager");
        let this = Arc::new(Controller {
            client,
            pdbs,
            pods,
            deployments,
            replica_sets,
            rcs,
            stateful_sets,
            queue: WorkQueue::new(),
            events,
        });
        let weak = Arc::downgrade(&this);
        this.pdbs.on_change(move |change| {
            if let (Some(c), Change::Applied { new, .. }) = (weak.upgrade(), change) {
                c.queue.add(key_of(new.as_ref()));
            }
        });
        // Upstream's addPod/updatePod/deletePod: the budgets selecting the pod.
        let weak = Arc::downgrade(&this);
        this.pods.on_change(move |change| {
            if let Some(c) = weak.upgrade() {
                let (old, new) = match change {
                    Change::Applied { old, new } => (old.as_deref(), new.as_ref()),
                    Change::Deleted(old) => (None, old.as_ref()),
                };
                let ns = new.namespace().unwrap_or_default();
                for pdb in c.pdbs.list_namespace(&ns) {
                    let sel = pdb.spec.as_ref().and_then(|s| s.selector.as_ref());
                    if sel.is_some_and(|s| {
                        selects(s, new.labels()) || old.is_some_and(|o| selects(s, o.labels()))
                    }) {
                        c.queue.add(key_of(pdb.as_ref()));
                    }
                }
            }
        });
        // A change of scale changes percentages: look at the namespace's budgets again.
        fn scale_changed<K>(weak: std::sync::Weak<Controller>, informer: &Informer<K>)
        where
            K: kube::Resource
                + Clone
                + serde::de::DeserializeOwned
                + std::fmt::Debug
                + Send
                + Sync
                + 'static,
            K::DynamicType: Default,
        {
            informer.on_change(move |change| {
                if let (Some(c), Change::Applied { new, .. }) = (weak.upgrade(), change) {
                    let ns = new.meta().namespace.clone().unwrap_or_default();
                    for pdb in c.pdbs.list_namespace(&ns) {
                        c.queue.add(key_of(pdb.as_ref()));
                    }
                }
            });
        }
        scale_changed(Arc::downgrade(&this), &this.deployments);
        scale_changed(Arc::downgrade(&this), &this.stateful_sets);
        this
    }

    pub async fn run(self: Arc<Self>, resync: Duration) {
        self.pdbs.wait_synced().await;
        self.pods.wait_synced().await;
        self.deployments.wait_synced().await;
        self.replica_sets.wait_synced().await;
        self.rcs.wait_synced().await;
        self.stateful_sets.wait_synced().await;
        let this = self.clone();
        let workers = run_workers("disruption-controller", self.queue.clone(), WORKERS, {
            move |key| {
                let this = this.clone();
                async move { this.sync(&key).await }
            }
        });
        let resync = super::informer::resync(self.pdbs.clone(), self.queue.clone(), resync);
        tokio::join!(workers, resync);
    }

    /// Upstream's `getExpectedScale`: the replicas of each distinct controller of the pods;
    /// pods without a controller are reported in an event and left out.
    fn expected_scale(&self, pdb: &PodDisruptionBudget, pods: &[Arc<Pod>]) -> Result<i32, String> {
        // Controller uid → replicas; a Deployment's ReplicaSets all map to the Deployment.
        let mut scales: HashMap<String, i32> = HashMap::new();
        let mut seen: std::collections::HashSet<String> = Default::default();
        let mut unmanaged = Vec::new();
        for pod in pods {
            let Some(owner) = controller_of(pod.as_ref()) else {
                unmanaged.push(pod.name_any());
                continue;
            };
            if !seen.insert(owner.uid.clone()) {
                continue;
            }
            let ns = pod.namespace().unwrap_or_default();
            let key = format!("{ns}/{}", owner.name);
            let found = match (owner.api_version.as_str(), owner.kind.as_str()) {
                ("apps/v1", "ReplicaSet") => self.replica_sets.get(&key).and_then(|rs| {
                    (rs.metadata.uid.as_deref() == Some(owner.uid.as_str())).then_some(())?;
                    // A ReplicaSet of a Deployment has the Deployment's scale.
                    match controller_of(rs.as_ref()).filter(|o| o.kind == "Deployment") {
                        Some(d) => self
                            .deployments
                            .get(&format!("{ns}/{}", d.name))
                            .filter(|dep| dep.metadata.uid.as_deref() == Some(d.uid.as_str()))
                            .map(|dep| {
                                (
                                    d.uid.clone(),
                                    dep.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                                )
                            }),
                        None => Some((
                            owner.uid.clone(),
                            rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                        )),
                    }
                }),
                ("v1", "ReplicationController") => self
                    .rcs
                    .get(&key)
                    .filter(|rc| rc.metadata.uid.as_deref() == Some(owner.uid.as_str()))
                    .map(|rc| {
                        (
                            owner.uid.clone(),
                            rc.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                        )
                    }),
                ("apps/v1", "StatefulSet") => self
                    .stateful_sets
                    .get(&key)
                    .filter(|s| s.metadata.uid.as_deref() == Some(owner.uid.as_str()))
                    .map(|s| {
                        (
                            owner.uid.clone(),
                            s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                        )
                    }),
                _ => None,
            };
            match found {
                Some((uid, replicas)) => {
                    scales.insert(uid, replicas);
                }
                None => return Err(format!("found no controllers for pod {:?}", pod.name_any())),
            }
        }
        if !unmanaged.is_empty() {
            let selector = pdb
                .spec
                .as_ref()
                .and_then(|s| s.selector.as_ref())
                .map(|s| format!("{s:?}"))
                .unwrap_or_default();
            self.events.warning(
                reference(pdb),
                "UnmanagedPods",
                format!("Pods selected by this PodDisruptionBudget (selector: {selector}) were found to be unmanaged. As a result, the status of the PDB cannot be calculated correctly, which may result in undefined behavior. To account for these pods please set \".spec.minAvailable\" field of the PDB to an integer value."),
            );
        }
        Ok(scales.values().sum())
    }

    async fn sync(&self, key: &str) -> Result<Requeue, kube::Error> {
        let Some(pdb) = self.pdbs.get(key) else {
            return Ok(None);
        };
        let ns = pdb.namespace().unwrap_or_default();
        // A nil selector selects nothing, an empty one every pod (policy/v1).
        let pods: Vec<Arc<Pod>> = match pdb.spec.as_ref().and_then(|s| s.selector.as_ref()) {
            None => Vec::new(),
            Some(sel) => self
                .pods
                .list_namespace(&ns)
                .into_iter()
                .filter(|p| selects(sel, p.labels()))
                .collect(),
        };
        let now = Timestamp::now();
        let old = pdb.status.clone().unwrap_or_default();
        let (disrupted, recheck) =
            prune_disrupted(&old.disrupted_pods.clone().unwrap_or_default(), &pods, now);
        let counts = expected_and_desired(&pdb, pods.len(), || self.expected_scale(&pdb, &pods));
        if let Err(message) = &counts {
            self.events.warning(
                reference(&pdb),
                "CalculateExpectedPodCountFailed",
                format!("Failed to calculate the number of expected pods: {message}"),
            );
        }
        let healthy = count_healthy(&pods, &disrupted, now);
        let status = desired_status(&pdb, counts, healthy, disrupted, now);
        if status != old {
            let mut next = (*pdb).clone();
            next.status = Some(status);
            let api: Api<PodDisruptionBudget> = Api::namespaced(self.client.clone(), &ns);
            api.replace_status(&pdb.name_any(), &PostParams::default(), &next)
                .await?;
        }
        Ok(recheck.map(|at| {
            let wait = at.duration_since(now).as_secs_f64().max(0.0);
            Duration::from_secs_f64(wait) + Duration::from_secs(1)
        }))
    }
}

fn reference(pdb: &PodDisruptionBudget) -> ObjectReference {
    kube::Resource::object_ref(pdb, &())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use k8s_openapi::api::policy::v1::PodDisruptionBudgetSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod(name: &str, ready: bool) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            spec: None,
            status: Some(PodStatus {
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..PodCondition::default()
                }]),
                ..PodStatus::default()
            }),
        })
    }

    fn pdb(min: Option<IntOrString>, max: Option<IntOrString>) -> PodDisruptionBudget {
        PodDisruptionBudget {
            metadata: ObjectMeta {
                generation: Some(2),
                ..ObjectMeta::default()
            },
            spec: Some(PodDisruptionBudgetSpec {
                min_available: min,
                max_unavailable: max,
                ..PodDisruptionBudgetSpec::default()
            }),
            status: None,
        }
    }

    #[test]
    fn percentages_round_up_as_upstream() {
        assert_eq!(scaled_value(&IntOrString::String("50%".into()), 3), Some(2));
        assert_eq!(scaled_value(&IntOrString::String("34%".into()), 3), Some(2));
        assert_eq!(scaled_value(&IntOrString::String("0%".into()), 3), Some(0));
        assert_eq!(scaled_value(&IntOrString::Int(4), 3), Some(4));
        assert_eq!(scaled_value(&IntOrString::String("x".into()), 3), None);
    }

    #[test]
    fn min_available_and_max_unavailable_give_desired_healthy() {
        let scale = || Ok(4);
        assert_eq!(
            expected_and_desired(&pdb(Some(IntOrString::Int(2)), None), 3, scale),
            Ok((3, 2))
        );
        assert_eq!(
            expected_and_desired(
                &pdb(Some(IntOrString::String("50%".into())), None),
                3,
                scale
            ),
            Ok((4, 2))
        );
        assert_eq!(
            expected_and_desired(&pdb(None, Some(IntOrString::Int(1))), 3, scale),
            Ok((4, 3))
        );
        assert_eq!(
            expected_and_desired(
                &pdb(None, Some(IntOrString::String("25%".into()))),
                3,
                scale
            ),
            Ok((4, 3))
        );
        assert!(
            expected_and_desired(&pdb(None, Some(IntOrString::Int(1))), 3, || Err(
                "found no controllers for pod \"a\"".into()
            ))
            .is_err()
        );
    }

    #[test]
    fn status_allows_disruptions_beyond_the_desired_healthy() {
        let now = Timestamp::from_second(1000).unwrap();
        let budget = pdb(Some(IntOrString::Int(2)), None);
        let pods = vec![pod("a", true), pod("b", true), pod("c", true)];
        let healthy = count_healthy(&pods, &BTreeMap::new(), now);
        let s = desired_status(&budget, Ok((3, 2)), healthy, BTreeMap::new(), now);
        assert_eq!(
            (
                s.current_healthy,
                s.desired_healthy,
                s.expected_pods,
                s.disruptions_allowed
            ),
            (3, 2, 3, 1)
        );
        assert_eq!(s.observed_generation, Some(2));
        let c = &s.conditions.as_ref().unwrap()[0];
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("True", SUFFICIENT_PODS)
        );
        // One pod is not ready: no disruption allowed.
        let pods = vec![pod("a", true), pod("b", true), pod("c", false)];
        let healthy = count_healthy(&pods, &BTreeMap::new(), now);
        let mut with_status = budget.clone();
        with_status.status = Some(s.clone());
        let s2 = desired_status(&with_status, Ok((3, 2)), healthy, BTreeMap::new(), now);
        assert_eq!(s2.disruptions_allowed, 0);
        let c = &s2.conditions.as_ref().unwrap()[0];
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", INSUFFICIENT_PODS)
        );
        // No pods expected: never any disruption.
        let s3 = desired_status(&budget, Ok((0, 0)), 0, BTreeMap::new(), now);
        assert_eq!(s3.disruptions_allowed, 0);
        // A failure keeps the counts and says why.
        let s4 = desired_status(&with_status, Err("boom".into()), 3, BTreeMap::new(), now);
        assert_eq!((s4.disruptions_allowed, s4.current_healthy), (0, 3));
        let c = &s4.conditions.as_ref().unwrap()[0];
        assert_eq!(
            (c.reason.as_str(), c.message.as_str()),
            (SYNC_FAILED, "boom")
        );
    }

    #[test]
    fn disrupted_pods_are_not_healthy_until_they_expire() {
        let now = Timestamp::from_second(1000).unwrap();
        let pods = vec![pod("a", true), pod("b", true)];
        let recent = Time(Timestamp::from_second(990).unwrap());
        let old = Time(Timestamp::from_second(700).unwrap());
        let map = BTreeMap::from([
            ("a".to_string(), recent.clone()),
            ("b".to_string(), old),
            ("gone".to_string(), recent),
        ]);
        let (kept, recheck) = prune_disrupted(&map, &pods, now);
        assert_eq!(kept.keys().collect::<Vec<_>>(), ["a"]);
        assert_eq!(recheck, Some(Timestamp::from_second(1110).unwrap()));
        assert_eq!(count_healthy(&pods, &kept, now), 1);
    }
}
