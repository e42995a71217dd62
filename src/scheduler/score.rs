//! Score plugins: how good is each feasible node? Each plugin scores every node and normalizes
//! to 0–100 the way its kube-scheduler namesake does; [`total`] weighs them with upstream's
//! default-profile weights.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, PodAffinityTerm, WeightedPodAffinityTerm};

use super::filter::{
    affinity_term_matches, count_matching, existing_pods, spread_constraints, spread_includes,
    spread_selector,
};
use super::{
    Cycle, MAX_NODE_SCORE, NodeInfo, Resources, pod_requests, pod_tolerations, term_matches,
    tolerates,
};

/// A score plugin: one normalized score (0..=100) per feasible node, in the same order.
pub type Score = fn(&Cycle, &[&NodeInfo]) -> Vec<i64>;

/// Upstream's default score plugins and weights.
pub const PLUGINS: &[(&str, i64, Score)] = &[
    ("TaintToleration", 3, taint_toleration),
    ("NodeAffinity", 2, node_affinity),
    ("NodeResourcesFit", 1, least_allocated),
    ("PodTopologySpread", 2, pod_topology_spread),
    ("InterPodAffinity", 2, inter_pod_affinity),
    ("NodeResourcesBalancedAllocation", 1, balanced_allocation),
    ("ImageLocality", 1, image_locality),
];

/// The weighted sum of every plugin's score, per feasible node.
pub fn total(cycle: &Cycle, feasible: &[&NodeInfo]) -> Vec<i64> {
    let mut sums = vec![0; feasible.len()];
    for (_, weight, score) in PLUGINS {
        for (sum, s) in sums.iter_mut().zip(score(cycle, feasible)) {
            *sum += weight * s;
        }
    }
    sums
}

/// Upstream's `helper.DefaultNormalizeScore`: scale so the best node gets 100 (or, reversed,
/// so the worst gets 0); all zeros stay zeros (or, reversed, become 100).
pub fn default_normalize(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0);
    for s in scores.iter_mut() {
        if max == 0 {
            if reverse {
                *s = MAX_NODE_SCORE;
            }
            continue;
        }
        let scaled = MAX_NODE_SCORE * *s / max;
        *s = if reverse {
            MAX_NODE_SCORE - scaled
        } else {
            scaled
        };
    }
}

/// TaintToleration: fewer untolerated PreferNoSchedule taints is better (counted, then
/// normalized in reverse). Only tolerations with no effect or PreferNoSchedule count.
pub fn taint_toleration(cycle: &Cycle, feasible: &[&NodeInfo]) -> Vec<i64> {
    let tolerations: Vec<_> = pod_tolerations(cycle.pod)
        .iter()
        .filter(|t| {
            matches!(
                t.effect.as_deref(),
                None | Some("") | Some("PreferNoSchedule")
            )
        })
        .collect();
    let mut scores: Vec<i64> = feasible
        .iter()
        .map(|n| {
            n.taints()
                .iter()
                .filter(|taint| taint.effect == "PreferNoSchedule")
                .filter(|taint| !tolerations.iter().any(|t| tolerates(t, taint)))
                .count() as i64
        })
        .collect();
    default_normalize(&mut scores, true);
    scores
}

/// NodeAffinity: the sum of the weights of the preferred terms the node matches, normalized.
pub fn node_affinity(cycle: &Cycle, feasible: &[&NodeInfo]) -> Vec<i64> {
    let preferred = cycle
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.preferred_during_scheduling_ignored_during_execution
                .as_deref()
        })
        .unwrap_or_default();
    let mut scores: Vec<i64> = feasible
        .iter()
        .map(|n| {
            preferred
                .iter()
                .filter(|p| p.weight != 0 && term_matches(&p.preference, n))
                .map(|p| i64::from(p.weight))
                .sum()
        })
        .collect();
    default_normalize(&mut scores, false);
    scores
}

/// cpu and memory, each weight 1 (upstream's default `NodeResourcesFitArgs.ScoringStrategy`
/// and `NodeResourcesBalancedAllocationArgs` resources).
fn cpu_memory(r: &Resources) -> [i64; 2] {
    [r.milli_cpu, r.memory]
}

/// NodeResourcesFit with the LeastAllocated strategy: per resource (alloc - requested) * 100 /
/// alloc with the pod added, 0 when over; averaged over the resources the node has. Requests
/// count upstream's non-zero defaults (100m cpu, 200Mi memory per container that sets none).
pub fn least_allocated(cycle: &Cycle, feasible: &[&NodeInfo]) -> Vec<i64> {
    let pod = cpu_memory(&pod_requests(cycle.pod, true));
    feasible
        .iter()
        .map(|n| {
            let alloc = cpu_memory(&n.allocatable);
            let used = cpu_memory(&n.non_zero_requested);
            let (mut sum, mut weights) = (0, 0);
            for i in 0..2 {
                if alloc[i] == 0 {
                    continue;
                }
                let req = used[i].saturating_add(pod[i]);
                sum += if req > alloc[i] {
                    0
                } else {
                    (alloc[i] - req) * MAX_NODE_SCORE / alloc[i]
                };
                weights += 1;
            }
            if weights == 0 { 0 } else { sum / weights }
        })
        .collect()
}

/// NodeResourcesBalancedAllocation: 100 * (1 - standard deviation of the requested fractions
/// (capped at 1) of cpu and memory), with the pod added. It uses the plain requests, without
/// the non-zero defaults, as upstream does, and skips (all 0) pods that request neither
/// (upstream's best-effort skip, kubernetes#129138).
pub fn balanced_allocation(cycle: &Cycle, feasible: &[&NodeInfo]) -> Vec<i64> {
    let pod = cpu_memory(&pod_requests(cycle.pod, false));
    if pod == [0, 0] {
        return vec![0; feasible.len()];
    }
    feasible
        .iter()
        .map(|n| {
            let alloc = cpu_memory(&n.allocatable);
            let used = cpu_memory(&n.requested);
            let fractions: Vec<f64> = (0..2)
                .filter(|i| alloc[*i] != 0)
                .map(|i| (used[i].saturating_add(pod[i]) as f64 / alloc[i] as f64).min(1.0))
                .collect();
            let std = match fractions.len() {
                2 => ((fractions[0] - fractions[1]) / 2.0).abs(),
                _ => 0.0,
            };
            ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
        })
        .collect()
}

/// ImageLocality: the sizes of the pod's images already on the node, each scaled by the share
/// of all nodes that have it (to avoid piling pods on one node), clamped between 23 MiB and
/// 1000 MiB per container, mapped onto 0–100. Image names without a tag get ":latest".
pub fn image_locality(cycle: &Cycle, feasible: &[&NodeInfo]) -> Vec<i64> {
    const MB: i64 = 1024 * 1024;
    const MIN_THRESHOLD: i64 = 23 * MB;
    const MAX_CONTAINER_THRESHOLD: i64 = 1000 * MB;
    let Some(spec) = &cycle.pod.spec else {
        return vec![0; feasible.len()];
    };
    let images: Vec<String> = spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .map(|c| normalized_image(c.image.as_deref().unwrap_or_default()))
        .collect();
    // image name -> (size on each node that has it, number of nodes that have it)
    let node_images = |n: &NodeInfo| -> BTreeMap<String, i64> {
        let mut m = BTreeMap::new();
        for img in n.node.status.iter().flat_map(|s| s.images.iter().flatten()) {
            for name in img.names.iter().flatten() {
                m.insert(name.clone(), img.size_bytes.unwrap_or(0));
            }
        }
        m
    };
    let all: Vec<BTreeMap<String, i64>> = cycle.nodes.iter().map(node_images).collect();
    let total_nodes = cycle.nodes.len().max(1) as f64;
    let spread =
        |image: &str| all.iter().filter(|m| m.contains_key(image)).count() as f64 / total_nodes;
    let max_threshold = MAX_CONTAINER_THRESHOLD * images.len() as i64;
    feasible
        .iter()
        .map(|n| {
            let here = node_images(n);
            let sum: i64 = images
                .iter()
                .filter_map(|i| here.get(i).map(|size| (*size as f64 * spread(i)) as i64))
                .sum();
            let clamped = sum.clamp(MIN_THRESHOLD, max_threshold.max(MIN_THRESHOLD));
            if max_threshold <= MIN_THRESHOLD {
                return 0;
            }
            MAX_NODE_SCORE * (clamped - MIN_THRESHOLD) / (max_threshold - MIN_THRESHOLD)
        })
        .collect()
}

/// Upstream's `normalizedImageName`: an image without a tag is `:latest`.
fn normalized_image(name: &str) -> String {
    let colon = name.rfind(':');
    let slash = name.rfind('/');
    if name.contains('@') || colon.is_some_and(|c| slash.is_none_or(|s| c > s)) {
        name.to_string()
    } else {
        format!("{name}:latest")
    }
}

fn weighted(
    terms: Option<&Vec<WeightedPodAffinityTerm>>,
) -> impl Iterator<Item = (&PodAffinityTerm, i64)> {
    terms
        .into_iter()
        .flatten()
        .map(|w| (&w.pod_affinity_term, i64::from(w.weight)))
}

/// InterPodAffinity (preferred): each topology domain collects weights from the pods in it —
/// plus the weight of each of the incoming pod's preferred affinity terms a pod matches, minus
/// for anti-affinity, and likewise for existing pods' preferred terms that match the incoming
/// pod, with their required affinity terms counting 1 (upstream's `hardPodAffinityWeight`). A
/// node scores the sum over the domains it is in; scores are scaled min–max onto 0–100.
pub fn inter_pod_affinity(cycle: &Cycle, feasible: &[&NodeInfo]) -> Vec<i64> {
    const HARD_POD_AFFINITY_WEIGHT: i64 = 1;
    let pod = cycle.pod;
    let affinity_of = |p: &Pod| p.spec.as_ref().and_then(|s| s.affinity.clone());
    let ours = affinity_of(pod).unwrap_or_default();
    let has_preferred =
        |a: &Option<Vec<WeightedPodAffinityTerm>>| a.as_ref().is_some_and(|t| !t.is_empty());
    let ours_prefers =
        ours.pod_affinity.as_ref().is_some_and(|a| {
            has_preferred(&a.preferred_during_scheduling_ignored_during_execution)
        }) || ours.pod_anti_affinity.as_ref().is_some_and(|a| {
            has_preferred(&a.preferred_during_scheduling_ignored_during_execution)
        });
    // Without preferred terms of its own, only existing pods with affinity can score (upstream
    // skips the same work in PreScore): the common case stays linear in the number of nodes.
    if !ours_prefers && cycle.nodes.iter().all(|n| n.pods_with_affinity == 0) {
        return vec![0; feasible.len()];
    }
    let our_terms: Vec<(&PodAffinityTerm, i64)> =
        weighted(ours.pod_affinity.as_ref().and_then(|a| {
            a.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        }))
        .chain(
            weighted(ours.pod_anti_affinity.as_ref().and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            }))
            .map(|(t, w)| (t, -w)),
        )
        .collect();
    let mut domains: BTreeMap<(String, String), i64> = BTreeMap::new();
    let mut add = |n: &NodeInfo, key: &str, w: i64| {
        if let Some(v) = n.labels().get(key) {
            *domains.entry((key.to_string(), v.clone())).or_default() += w;
        }
    };
    for (p, n) in existing_pods(cycle) {
        for (t, w) in &our_terms {
            if affinity_term_matches(t, pod, p) {
                add(n, &t.topology_key, *w);
            }
        }
        let Some(theirs) = affinity_of(p) else {
            continue;
        };
        let required = theirs
            .pod_affinity
            .iter()
            .flat_map(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .iter()
                    .flatten()
            })
            .map(|t| (t, HARD_POD_AFFINITY_WEIGHT));
        let preferred = weighted(theirs.pod_affinity.as_ref().and_then(|a| {
            a.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        }));
        let anti = weighted(theirs.pod_anti_affinity.as_ref().and_then(|a| {
            a.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        }))
        .map(|(t, w)| (t, -w));
        for (t, w) in required.chain(preferred).chain(anti) {
            if affinity_term_matches(t, p, pod) {
                add(n, &t.topology_key, w);
            }
        }
    }
    let scores: Vec<i64> = feasible
        .iter()
        .map(|n| {
            domains
                .iter()
                .filter(|((k, v), _)| n.labels().get(k) == Some(v))
                .map(|(_, w)| *w)
                .sum()
        })
        .collect();
    let min = scores.iter().copied().min().unwrap_or(0);
    let max = scores.iter().copied().max().unwrap_or(0);
    scores
        .iter()
        .map(|s| {
            if max > min {
                (MAX_NODE_SCORE as f64 * ((s - min) as f64 / (max - min) as f64)) as i64
            } else {
                0
            }
        })
        .collect()
}

/// PodTopologySpread (ScheduleAnyway constraints): fewer matching pods in the node's domain is
/// better. Per constraint a node scores count * log(domains + 2) + (maxSkew - 1), rounded;
/// nodes missing a topology key are ignored (0); the rest are normalized so that the lowest
/// raw score gets the most: 100 * (max + min - score) / max. The `kubernetes.io/hostname` key
/// counts the node's own pods, as upstream. Upstream's system default constraints (for pods
/// owned by Services/ReplicaSets) are not applied: only the pod's own constraints count.
pub fn pod_topology_spread(cycle: &Cycle, feasible: &[&NodeInfo]) -> Vec<i64> {
    const HOSTNAME: &str = "kubernetes.io/hostname";
    let pod = cycle.pod;
    let constraints = spread_constraints(pod, "ScheduleAnyway");
    if constraints.is_empty() {
        return vec![0; feasible.len()];
    }
    let has_keys = |n: &NodeInfo| {
        constraints
            .iter()
            .all(|c| n.labels().contains_key(&c.topology_key))
    };
    let ignored: Vec<bool> = feasible.iter().map(|n| !has_keys(n)).collect();
    let considered = ignored.iter().filter(|i| !**i).count();
    let selectors: Vec<_> = constraints
        .iter()
        .map(|c| spread_selector(pod, c))
        .collect();
    // Per constraint (not hostname): domain value -> matching pods, for the feasible nodes'
    // domains, counted over every eligible node in the snapshot.
    let mut counts: Vec<BTreeMap<String, i64>> = vec![BTreeMap::new(); constraints.len()];
    for (i, c) in constraints.iter().enumerate() {
        if c.topology_key == HOSTNAME {
            continue;
        }
        for (n, ign) in feasible.iter().zip(&ignored) {
            if !ign {
                counts[i].insert(n.labels()[&c.topology_key].clone(), 0);
            }
        }
        let Some(sel) = &selectors[i] else { continue };
        for n in cycle.nodes {
            if !has_keys(n) || !spread_includes(pod, c, n) {
                continue;
            }
            if let Some(cnt) = counts[i].get_mut(&n.labels()[&c.topology_key]) {
                *cnt += count_matching(pod, sel, n);
            }
        }
    }
    let raw: Vec<Option<i64>> = feasible
        .iter()
        .zip(&ignored)
        .map(|(n, ign)| {
            if *ign {
                return None;
            }
            let mut score = 0.0;
            for (i, c) in constraints.iter().enumerate() {
                let (cnt, domains) = if c.topology_key == HOSTNAME {
                    let cnt = selectors[i]
                        .as_ref()
                        .map_or(0, |s| count_matching(pod, s, n));
                    (cnt, considered)
                } else {
                    (counts[i][&n.labels()[&c.topology_key]], counts[i].len())
                };
                let weight = ((domains + 2) as f64).ln();
                score += cnt as f64 * weight + f64::from(c.max_skew - 1);
            }
            Some(score.round() as i64)
        })
        .collect();
    let min = raw.iter().flatten().copied().min().unwrap_or(0);
    let max = raw.iter().flatten().copied().max().unwrap_or(0).max(0);
    raw.iter()
        .map(|s| match s {
            None => 0,
            Some(_) if max == 0 => MAX_NODE_SCORE,
            Some(s) => MAX_NODE_SCORE * (max + min - s) / max,
        })
        .collect()
}
