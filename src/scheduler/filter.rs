//! Filter plugins: can this pod run on this node at all? Each is a plain function with the
//! semantics and the exact reason strings of the kube-scheduler plugin it is named after.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Pod, PodAffinityTerm, TopologySpreadConstraint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

use super::{
    Code, Cycle, NodeInfo, Rejection, node_matches_pod, pod_labels, pod_namespace,
    selector_matches, untolerated_taint,
};

/// A filter plugin: `Ok` when the node passes.
pub type Filter = fn(&Cycle, &NodeInfo) -> Result<(), Rejection>;

/// The filters of upstream's default profile that rk3s has, in upstream's order (of the volume
/// plugins, VolumeBinding). A node's first rejection is the one reported.
pub const PLUGINS: &[(&str, Filter)] = &[
    ("NodeUnschedulable", node_unschedulable),
    ("NodeName", node_name),
    ("TaintToleration", taint_toleration),
    ("NodeAffinity", node_affinity),
    ("NodePorts", node_ports),
    ("NodeResourcesFit", node_resources_fit),
    ("VolumeBinding", volume_binding),
    ("PodTopologySpread", pod_topology_spread),
    ("InterPodAffinity", inter_pod_affinity),
];

/// Runs the filters in order and stops at the first rejection, as upstream's
/// `RunFilterPlugins` does.
pub fn run(cycle: &Cycle, node: &NodeInfo) -> Result<(), Rejection> {
    PLUGINS.iter().try_for_each(|(_, f)| f(cycle, node))
}

/// NodeUnschedulable: `spec.unschedulable` nodes only take pods that tolerate the
/// `node.kubernetes.io/unschedulable:NoSchedule` taint (which the node controller may not have
/// added yet, so the field itself is checked).
pub fn node_unschedulable(cycle: &Cycle, node: &NodeInfo) -> Result<(), Rejection> {
    let unschedulable = node
        .node
        .spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false);
    let taint = k8s_openapi::api::core::v1::Taint {
        key: "node.kubernetes.io/unschedulable".into(),
        effect: "NoSchedule".into(),
        ..Default::default()
    };
    if unschedulable
        && untolerated_taint(cycle.pod, std::slice::from_ref(&taint), &["NoSchedule"]).is_some()
    {
        return Err(Rejection::new(
            "NodeUnschedulable",
            Code::UnschedulableAndUnresolvable,
            "node(s) were unschedulable",
        ));
    }
    Ok(())
}

/// NodeName: a pod that names a node fits only that node.
pub fn node_name(cycle: &Cycle, node: &NodeInfo) -> Result<(), Rejection> {
    match cycle.pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
        Some(n) if !n.is_empty() && n != node.name() => Err(Rejection::new(
            "NodeName",
            Code::UnschedulableAndUnresolvable,
            "node(s) didn't match the requested node name",
        )),
        _ => Ok(()),
    }
}

/// TaintToleration: the node's first NoSchedule or NoExecute taint the pod does not tolerate.
pub fn taint_toleration(cycle: &Cycle, node: &NodeInfo) -> Result<(), Rejection> {
    match untolerated_taint(cycle.pod, node.taints(), &["NoSchedule", "NoExecute"]) {
        Some(t) => Err(Rejection::new(
            "TaintToleration",
            Code::UnschedulableAndUnresolvable,
            format!(
                "node(s) had untolerated taint {{{}: {}}}",
                t.key,
                t.value.as_deref().unwrap_or_default()
            ),
        )),
        None => Ok(()),
    }
}

/// NodeAffinity: `spec.nodeSelector` and the required node affinity terms.
pub fn node_affinity(cycle: &Cycle, node: &NodeInfo) -> Result<(), Rejection> {
    if node_matches_pod(cycle.pod, node) {
        Ok(())
    } else {
        Err(Rejection::new(
            "NodeAffinity",
            Code::UnschedulableAndUnresolvable,
            "node(s) didn't match Pod's node affinity/selector",
        ))
    }
}

/// VolumeBinding's Filter: the volumes of the pod's bound claims must allow the node (their
/// `nodeAffinity.required`, terms ORed, as upstream's `CheckNodeAffinity`).
pub fn volume_binding(cycle: &Cycle, node: &NodeInfo) -> Result<(), Rejection> {
    let claims = &cycle.claims;
    if claims.missing_volume {
        return Err(Rejection::new(
            "VolumeBinding",
            Code::UnschedulableAndUnresolvable,
            super::volumes::REASON_PV_NOT_EXIST,
        ));
    }
    let fits = claims.affinities.iter().all(|a| {
        a.node_selector_terms
            .iter()
            .any(|t| super::term_matches(t, node))
    });
    if fits {
        Ok(())
    } else {
        Err(Rejection::new(
            "VolumeBinding",
            Code::UnschedulableAndUnresolvable,
            super::volumes::REASON_NODE_CONFLICT,
        ))
    }
}

/// `(hostIP, protocol, hostPort)` of a pod's containers that ask for a host port, with
/// upstream's defaults (0.0.0.0, TCP).
fn host_ports(pod: &Pod) -> Vec<(String, String, i32)> {
    let containers = pod
        .spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or_default();
    containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let port = p.host_port.filter(|p| *p > 0)?;
            let ip = p
                .host_ip
                .as_deref()
                .filter(|s| !s.is_empty())
                .unwrap_or("0.0.0.0");
            let proto = p
                .protocol
                .as_deref()
                .filter(|s| !s.is_empty())
                .unwrap_or("TCP");
            Some((ip.to_string(), proto.to_string(), port))
        })
        .collect()
}

/// NodePorts: a wanted host port conflicts with a used one of the same protocol when the IPs
/// are equal or either is 0.0.0.0 (upstream's `HostPortInfo.CheckConflict`).
pub fn node_ports(cycle: &Cycle, node: &NodeInfo) -> Result<(), Rejection> {
    let wanted = host_ports(cycle.pod);
    if wanted.is_empty() {
        return Ok(());
    }
    let used: Vec<_> = node.pods.iter().flat_map(host_ports).collect();
    let conflict = wanted.iter().any(|(ip, proto, port)| {
        used.iter().any(|(uip, uproto, uport)| {
            uproto == proto && uport == port && (ip == "0.0.0.0" || uip == "0.0.0.0" || ip == uip)
        })
    });
    if conflict {
        return Err(Rejection::new(
            "NodePorts",
            Code::Unschedulable,
            "node(s) didn't have free ports for the requested pod ports",
        ));
    }
    Ok(())
}

/// NodeResourcesFit: the pod count and every requested resource must fit in what the node's
/// pods leave of its allocatable. All shortfalls are reported, in upstream's order (pods, cpu,
/// memory, ephemeral-storage, then the others by name). As upstream, a request larger than the
/// whole node makes the rejection unresolvable (preemption cannot help).
pub fn node_resources_fit(cycle: &Cycle, node: &NodeInfo) -> Result<(), Rejection> {
    let mut reasons = Vec::new();
    let mut code = Code::Unschedulable;
    if node.pods.len() as i64 + 1 > node.allowed_pods {
        reasons.push("Too many pods".to_string());
    }
    let req = &cycle.requests;
    let (alloc, used) = (&node.allocatable, &node.requested);
    let mut check = |name: &str, want: i64, alloc: i64, used: i64| {
        if want > 0 && want > alloc - used {
            reasons.push(format!("Insufficient {name}"));
            if want > alloc {
                code = Code::UnschedulableAndUnresolvable;
            }
        }
    };
    if !req.is_zero() {
        check("cpu", req.milli_cpu, alloc.milli_cpu, used.milli_cpu);
        check("memory", req.memory, alloc.memory, used.memory);
        check(
            "ephemeral-storage",
            req.ephemeral_storage,
            alloc.ephemeral_storage,
            used.ephemeral_storage,
        );
        for (name, want) in &req.scalar {
            let a = alloc.scalar.get(name).copied().unwrap_or(0);
            let u = used.scalar.get(name).copied().unwrap_or(0);
            check(name, *want, a, u);
        }
    }
    if reasons.is_empty() {
        return Ok(());
    }
    Err(Rejection {
        plugin: "NodeResourcesFit",
        code,
        reasons,
    })
}

// ---- pod topology spread ----

/// A constraint's selector with `matchLabelKeys` merged in (key In [the pod's value]), as
/// upstream's PodTopologySpread does for keys the pod has.
pub(super) fn spread_selector(pod: &Pod, c: &TopologySpreadConstraint) -> Option<LabelSelector> {
    let mut sel = c.label_selector.clone()?;
    let labels = pod_labels(pod);
    for key in c.match_label_keys.iter().flatten() {
        if let Some(v) = labels.get(key) {
            sel.match_expressions
                .get_or_insert_with(Vec::new)
                .push(LabelSelectorRequirement {
                    key: key.clone(),
                    operator: "In".into(),
                    values: Some(vec![v.clone()]),
                });
        }
    }
    Some(sel)
}

pub(super) fn spread_constraints<'a>(
    pod: &'a Pod,
    when: &str,
) -> Vec<&'a TopologySpreadConstraint> {
    pod.spec
        .as_ref()
        .and_then(|s| s.topology_spread_constraints.as_deref())
        .unwrap_or_default()
        .iter()
        .filter(|c| c.when_unsatisfiable == when)
        .collect()
}

/// Whether a node counts toward the spread, by `nodeAffinityPolicy` (default Honor: the node
/// must match the pod's node selector and required affinity) and `nodeTaintsPolicy` (default
/// Ignore; Honor: the pod must tolerate the node's NoSchedule/NoExecute taints).
pub(super) fn spread_includes(pod: &Pod, c: &TopologySpreadConstraint, node: &NodeInfo) -> bool {
    let affinity_ok =
        c.node_affinity_policy.as_deref() == Some("Ignore") || node_matches_pod(pod, node);
    let taints_ok = c.node_taints_policy.as_deref() != Some("Honor")
        || untolerated_taint(pod, node.taints(), &["NoSchedule", "NoExecute"]).is_none();
    affinity_ok && taints_ok
}

/// Pods on the node in the incoming pod's namespace, not terminating, matching the selector.
pub(super) fn count_matching(pod: &Pod, sel: &LabelSelector, node: &NodeInfo) -> i64 {
    node.pods
        .iter()
        .filter(|p| {
            p.metadata.deletion_timestamp.is_none()
                && pod_namespace(p) == pod_namespace(pod)
                && selector_matches(sel, pod_labels(p))
        })
        .count() as i64
}

/// PodTopologySpread (DoNotSchedule constraints): placing the pod on this node must not make
/// the skew (its domain's matching pods, counting itself, minus the emptiest domain's) exceed
/// `maxSkew`. Domains come from eligible nodes that carry every constraint's topology key;
/// with fewer than `minDomains` domains the minimum is taken as 0.
pub fn pod_topology_spread(cycle: &Cycle, node: &NodeInfo) -> Result<(), Rejection> {
    const REASON: &str = "node(s) didn't match pod topology spread constraints";
    let pod = cycle.pod;
    let constraints = spread_constraints(pod, "DoNotSchedule");
    if constraints.is_empty() {
        return Ok(());
    }
    let has_keys = |n: &NodeInfo| {
        constraints
            .iter()
            .all(|c| n.labels().contains_key(&c.topology_key))
    };
    if !has_keys(node) {
        return Err(Rejection::new(
            "PodTopologySpread",
            Code::UnschedulableAndUnresolvable,
            format!("{REASON} (missing required label)"),
        ));
    }
    for c in &constraints {
        let Some(sel) = spread_selector(pod, c) else {
            // A constraint without a selector matches no pods: every domain counts 0.
            continue;
        };
        let mut domains: BTreeMap<&str, i64> = BTreeMap::new();
        for n in cycle.nodes {
            if !has_keys(n) || !spread_includes(pod, c, n) {
                continue;
            }
            let value = n.labels()[&c.topology_key].as_str();
            *domains.entry(value).or_default() += count_matching(pod, &sel, n);
        }
        let min_domains = c.min_domains.unwrap_or(1) as usize;
        let min = if domains.len() < min_domains {
            0
        } else {
            domains.values().copied().min().unwrap_or(0)
        };
        let here = domains
            .get(node.labels()[&c.topology_key].as_str())
            .copied()
            .unwrap_or(0);
        let self_match = i64::from(selector_matches(&sel, pod_labels(pod)));
        if here + self_match - min > i64::from(c.max_skew) {
            return Err(Rejection::new(
                "PodTopologySpread",
                Code::Unschedulable,
                REASON,
            ));
        }
    }
    Ok(())
}

// ---- inter-pod affinity ----

/// Whether `term`, written in `owner`'s spec, selects `pod`: upstream's `AffinityTerm.Matches`.
/// Namespaces: the listed ones, all of them for an empty `namespaceSelector`, the owner's own
/// when neither is given. (A non-empty namespaceSelector would need namespace labels; it adds
/// nothing here.) A missing labelSelector selects no pods.
pub(super) fn affinity_term_matches(term: &PodAffinityTerm, owner: &Pod, pod: &Pod) -> bool {
    let ns = pod_namespace(pod);
    let listed = term.namespaces.as_deref().unwrap_or_default();
    let ns_ok = match &term.namespace_selector {
        None if listed.is_empty() => ns == pod_namespace(owner),
        Some(sel)
            if sel.match_labels.as_ref().is_none_or(|m| m.is_empty())
                && sel.match_expressions.as_ref().is_none_or(|m| m.is_empty()) =>
        {
            true
        }
        _ => listed.iter().any(|n| n == ns),
    };
    ns_ok
        && term
            .label_selector
            .as_ref()
            .is_some_and(|s| selector_matches(s, pod_labels(pod)))
}

fn required_terms(pod: &Pod, anti: bool) -> &[PodAffinityTerm] {
    let affinity = pod.spec.as_ref().and_then(|s| s.affinity.as_ref());
    let terms = if anti {
        affinity
            .and_then(|a| a.pod_anti_affinity.as_ref())
            .and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_deref()
            })
    } else {
        affinity
            .and_then(|a| a.pod_affinity.as_ref())
            .and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_deref()
            })
    };
    terms.unwrap_or_default()
}

pub(super) fn same_pod(a: &Pod, b: &Pod) -> bool {
    match (&a.metadata.uid, &b.metadata.uid) {
        (Some(x), Some(y)) => x == y,
        _ => a.metadata.name == b.metadata.name && pod_namespace(a) == pod_namespace(b),
    }
}

/// Every other pod in the snapshot with the node it is on.
pub(super) fn existing_pods<'a>(cycle: &'a Cycle) -> impl Iterator<Item = (&'a Pod, &'a NodeInfo)> {
    cycle.nodes.iter().flat_map(move |n| {
        n.pods
            .iter()
            .filter(move |p| !same_pod(p, cycle.pod))
            .map(move |p| (p, n))
    })
}

/// InterPodAffinity, required terms, checked in upstream's order:
/// 1. pod affinity: in this node's topology domain of every term, some pod matches all terms
///    (or, for the first pod of a group, no pod anywhere matches and the pod matches its own
///    terms); the node must carry every term's topology key;
/// 2. pod anti-affinity: no pod matching a term in this node's domain;
/// 3. existing pods' anti-affinity: no pod whose required anti-affinity term selects the
///    incoming pod shares a domain with this node.
pub fn inter_pod_affinity(cycle: &Cycle, node: &NodeInfo) -> Result<(), Rejection> {
    let pod = cycle.pod;
    let affinity = required_terms(pod, false);
    if !affinity.is_empty() {
        // Topology pairs (key, value) of the pods that match all affinity terms.
        let mut pairs: BTreeSet<(&str, &str)> = BTreeSet::new();
        for (p, n) in existing_pods(cycle) {
            if affinity.iter().all(|t| affinity_term_matches(t, pod, p)) {
                for t in affinity {
                    if let Some(v) = n.labels().get(&t.topology_key) {
                        pairs.insert((t.topology_key.as_str(), v.as_str()));
                    }
                }
            }
        }
        let mut exist = true;
        for t in affinity {
            match node.labels().get(&t.topology_key) {
                Some(v) => exist &= pairs.contains(&(t.topology_key.as_str(), v.as_str())),
                None => return Err(affinity_rejection()),
            }
        }
        let first_of_group =
            pairs.is_empty() && affinity.iter().all(|t| affinity_term_matches(t, pod, pod));
        if !exist && !first_of_group {
            return Err(affinity_rejection());
        }
    }
    let anti = required_terms(pod, true);
    for t in anti {
        let Some(v) = node.labels().get(&t.topology_key) else {
            continue;
        };
        let clash = existing_pods(cycle).any(|(p, n)| {
            n.labels().get(&t.topology_key) == Some(v) && affinity_term_matches(t, pod, p)
        });
        if clash {
            return Err(Rejection::new(
                "InterPodAffinity",
                Code::Unschedulable,
                "node(s) didn't match pod anti-affinity rules",
            ));
        }
    }
    // Only nodes holding a pod with required anti-affinity can clash (upstream's
    // `PodsWithRequiredAntiAffinity` list); usually there are none at all.
    if !cycle.anti_affinity {
        return Ok(());
    }
    let mut with_anti = cycle
        .nodes
        .iter()
        .filter(|n| n.pods_with_required_anti_affinity > 0)
        .flat_map(|n| {
            n.pods
                .iter()
                .filter(|p| !same_pod(p, cycle.pod))
                .map(move |p| (p, n))
        });
    let existing_clash = with_anti.any(|(p, n)| {
        required_terms(p, true).iter().any(|t| {
            let (Some(theirs), Some(ours)) = (
                n.labels().get(&t.topology_key),
                node.labels().get(&t.topology_key),
            ) else {
                return false;
            };
            theirs == ours && affinity_term_matches(t, p, pod)
        })
    });
    if existing_clash {
        return Err(Rejection::new(
            "InterPodAffinity",
            Code::Unschedulable,
            "node(s) didn't satisfy existing pods anti-affinity rules",
        ));
    }
    Ok(())
}

fn affinity_rejection() -> Rejection {
    Rejection::new(
        "InterPodAffinity",
        Code::UnschedulableAndUnresolvable,
        "node(s) didn't match pod affinity rules",
    )
}
