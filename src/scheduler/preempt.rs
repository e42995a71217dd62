//! Preemption, kube-scheduler's DefaultPreemption PostFilter: when a pod fits nowhere, find a
//! node where evicting lower-priority pods would let it fit, evicting as few and as unimportant
//! pods as possible and respecting PodDisruptionBudgets where it can.
//!
//! Pure: the loop in `run` deletes the victims and nominates the node. Simplification: the
//! other nodes' pods are not re-evaluated without the victims, so a preemption that only
//! inter-pod (anti-)affinity with the victims would unlock is not found.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::jiff::Timestamp;

use super::{Code, Cycle, FitError, NodeInfo, filter, pod_labels, pod_namespace, selector_matches};

/// The chosen node and the pods to evict from it.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    pub node: String,
    pub victims: Vec<Pod>,
    /// How many victims a PodDisruptionBudget did not allow to evict.
    pub pdb_violations: usize,
}

pub fn priority(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

fn start_time(pod: &Pod) -> Option<Timestamp> {
    pod.status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .map(|t| t.0)
        .or_else(|| pod.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// Upstream's `PodEligibleToPreemptOthers`, minus the nominated-node check the loop does.
pub fn eligible(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.preemption_policy.as_deref())
        != Some("Never")
}

/// Upstream's `filterPodsWithPDBViolation`: splits `pods` into those whose eviction a PDB
/// forbids and the others, spending each PDB's `disruptionsAllowed` in order.
fn split_by_pdb(pods: Vec<Pod>, pdbs: &[PodDisruptionBudget]) -> (Vec<Pod>, Vec<Pod>) {
    let mut allowed: Vec<i32> = pdbs
        .iter()
        .map(|p| {
            p.status
                .as_ref()
                .map(|s| s.disruptions_allowed)
                .unwrap_or(0)
        })
        .collect();
    let (mut violating, mut fine) = (Vec::new(), Vec::new());
    for pod in pods {
        let mut violates = false;
        let name = pod.metadata.name.clone().unwrap_or_default();
        for (i, pdb) in pdbs.iter().enumerate() {
            if pdb.metadata.namespace.as_deref() != Some(pod_namespace(&pod)) {
                continue;
            }
            // policy/v1: a missing selector selects nothing, an empty one everything.
            let Some(sel) = pdb.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
                continue;
            };
            if !selector_matches(sel, pod_labels(&pod)) {
                continue;
            }
            // Already counted as disrupted by the disruption controller.
            let disrupted = pdb
                .status
                .as_ref()
                .and_then(|s| s.disrupted_pods.as_ref())
                .is_some_and(|d| d.contains_key(&name));
            if disrupted {
                continue;
            }
            allowed[i] -= 1;
            if allowed[i] < 0 {
                violates = true;
            }
        }
        if violates {
            violating.push(pod);
        } else {
            fine.push(pod);
        }
    }
    (violating, fine)
}

/// Upstream's `SelectVictimsOnNode`: evicts every lower-priority pod, checks the pod fits,
/// then gives back as many victims as still leave room, most important first and PDB-protected
/// ones before the others.
fn victims_on(cycle: &Cycle, node: &NodeInfo, pdbs: &[PodDisruptionBudget]) -> Option<Candidate> {
    let p = priority(cycle.pod);
    let lower: Vec<Pod> = node
        .pods
        .iter()
        .filter(|v| priority(v) < p)
        .cloned()
        .collect();
    if lower.is_empty() {
        return None;
    }
    let mut trial = node.clone();
    for v in &lower {
        trial.remove_pod(v.metadata.uid.as_deref().unwrap_or_default());
    }
    if filter::run(cycle, &trial).is_err() {
        return None;
    }
    // Most important first: higher priority, then started earlier.
    let mut sorted = lower;
    sorted.sort_by(|a, b| {
        priority(b)
            .cmp(&priority(a))
            .then_with(|| start_time(a).cmp(&start_time(b)))
    });
    let (violating, fine) = split_by_pdb(sorted, pdbs);
    let mut victims = Vec::new();
    let mut pdb_violations = 0;
    for (protected, pod) in violating
        .into_iter()
        .map(|p| (true, p))
        .chain(fine.into_iter().map(|p| (false, p)))
    {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        trial.add_pod(pod.clone());
        if filter::run(cycle, &trial).is_err() {
            trial.remove_pod(&uid);
            pdb_violations += usize::from(protected);
            victims.push(pod);
        }
    }
    Some(Candidate {
        node: node.name().to_string(),
        victims,
        pdb_violations,
    })
}

/// Upstream's `pickOneNodeForPreemption` ordering key: fewer PDB violations, then a lower
/// highest victim priority, a lower priority sum, fewer victims, and a later start of the
/// most important victims.
fn rank(c: &Candidate) -> (usize, i32, i64, usize, std::cmp::Reverse<Option<Timestamp>>) {
    let highest = c.victims.iter().map(priority).max().unwrap_or(i32::MIN);
    // Upstream offsets each priority by MaxInt32+1 so negative priorities sum sensibly.
    let sum: i64 = c
        .victims
        .iter()
        .map(|v| i64::from(priority(v)) + i64::from(i32::MAX) + 1)
        .sum();
    let earliest_top = c
        .victims
        .iter()
        .filter(|v| priority(v) == highest)
        .filter_map(start_time)
        .min();
    (
        c.pdb_violations,
        highest,
        sum,
        c.victims.len(),
        std::cmp::Reverse(earliest_top),
    )
}

/// Finds where `pod` could run by preempting, or `None`. Only nodes the filters rejected as
/// resolvable (`Unschedulable`) are tried; ties go to the node listed first.
pub fn preempt(
    pod: &Pod,
    nodes: &[NodeInfo],
    fit: &FitError,
    pdbs: &[PodDisruptionBudget],
) -> Option<Candidate> {
    if !eligible(pod) {
        return None;
    }
    let by_name: BTreeMap<&str, &NodeInfo> = nodes.iter().map(|n| (n.name(), n)).collect();
    let cycle = Cycle::new(pod, nodes);
    let mut best: Option<Candidate> = None;
    for (name, rejection) in &fit.rejections {
        if rejection.code != Code::Unschedulable {
            continue;
        }
        let Some(node) = by_name.get(name.as_str()) else {
            continue;
        };
        let Some(c) = victims_on(&cycle, node, pdbs) else {
            continue;
        };
        if c.victims.is_empty() {
            continue;
        }
        if best.as_ref().is_none_or(|b| rank(&c) < rank(b)) {
            best = Some(c);
        }
    }
    best
}
