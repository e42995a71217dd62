//! The scheduler's pure core: given a pod and a snapshot of the nodes (with the pods already on
//! them), decide which node the pod goes to, or explain why none fits.
//!
//! It follows kube-scheduler's framework: every node runs through the filter plugins
//! ([`filter::PLUGINS`], upstream's default-profile order, stopping at the first rejection), the
//! nodes left are scored by the score plugins ([`score::PLUGINS`], upstream's default weights,
//! each normalized to 0–100), and the highest weighted sum wins. When no node passes,
//! [`FitError`] prints upstream's FailedScheduling message. Nothing here does I/O: [`queue`]
//! orders the pending pods and [`run`] is the loop that watches, decides and binds.
//!
//! Simplifications, on purpose: pre-filter state is recomputed per node (cheap for pods without
//! inter-pod affinity or spread constraints, which skip the cross-node work), `namespaceSelector` in pod affinity terms only knows "empty selects all
//! namespaces".

pub mod filter;
pub mod preempt;
pub mod queue;
pub mod run;
pub mod score;
#[cfg(test)]
mod tests;
pub mod volumes;

pub use run::start;

/// What the scheduler needs, built by the composition root.
#[derive(Debug, Clone)]
pub struct Config {
    /// This process's `holderIdentity` in the scheduler's leader-election Lease.
    pub identity: String,
}

/// The Lease the scheduler's leader holds (separate from the controller-manager's, as
/// upstream, so the two can lead on different servers).
pub const LEASE: &str = "kube-scheduler";

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::{
    Container, Node, NodeSelectorRequirement, NodeSelectorTerm, Pod, Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Upstream's `framework.MaxNodeScore`.
pub const MAX_NODE_SCORE: i64 = 100;

/// Requests or allocatable amounts in upstream's `framework.Resource` units: millicores for
/// cpu, bytes for memory and ephemeral storage, plain values for every other ("scalar")
/// resource such as extended resources and hugepages.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    pub scalar: BTreeMap<String, i64>,
}

impl Resources {
    /// Reads a `ResourceList`; `pods` is left out (it is a count, not a request).
    pub fn from_list(list: &BTreeMap<String, Quantity>) -> Self {
        let mut r = Resources::default();
        for (name, q) in list {
            r.set(name, q);
        }
        r
    }

    fn set(&mut self, name: &str, q: &Quantity) {
        match name {
            "cpu" => self.milli_cpu = milli_value(&q.0),
            "memory" => self.memory = value(&q.0),
            "ephemeral-storage" => self.ephemeral_storage = value(&q.0),
            "pods" => {}
            _ => {
                self.scalar.insert(name.to_string(), value(&q.0));
            }
        }
    }

    fn add(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.saturating_add(other.milli_cpu);
        self.memory = self.memory.saturating_add(other.memory);
        self.ephemeral_storage = self
            .ephemeral_storage
            .saturating_add(other.ephemeral_storage);
        for (k, v) in &other.scalar {
            let e = self.scalar.entry(k.clone()).or_default();
            *e = e.saturating_add(*v);
        }
    }

    fn max(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
        for (k, v) in &other.scalar {
            let e = self.scalar.entry(k.clone()).or_default();
            *e = (*e).max(*v);
        }
    }

    pub fn is_zero(&self) -> bool {
        self.milli_cpu == 0
            && self.memory == 0
            && self.ephemeral_storage == 0
            && self.scalar.values().all(|v| *v == 0)
    }
}

/// Upstream's defaults for containers that request no cpu or memory, used when scoring so that
/// "best effort" pods still count (`schedutil.DefaultMilliCPURequest`, `DefaultMemoryRequest`).
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// A pod's effective requests, as upstream's `resourcehelper.PodRequests`: the sum of the
/// regular containers and of the sidecars (init containers with `restartPolicy: Always`), or
/// the largest init container plus the sidecars started before it if that is more, plus
/// `spec.overhead`. With `non_zero`, a container that omits cpu or memory counts upstream's
/// defaults instead (the `NonMissingContainerRequests` option used for scoring).
pub fn pod_requests(pod: &Pod, non_zero: bool) -> Resources {
    let Some(spec) = &pod.spec else {
        return Resources::default();
    };
    let container = |c: &Container| {
        let list = c.resources.as_ref().and_then(|r| r.requests.as_ref());
        let mut r = list.map(Resources::from_list).unwrap_or_default();
        if non_zero {
            if !list.is_some_and(|l| l.contains_key("cpu")) {
                r.milli_cpu = DEFAULT_MILLI_CPU_REQUEST;
            }
            if !list.is_some_and(|l| l.contains_key("memory")) {
                r.memory = DEFAULT_MEMORY_REQUEST;
            }
        }
        r
    };
    let mut total = Resources::default();
    for c in &spec.containers {
        total.add(&container(c));
    }
    let mut sidecars = Resources::default();
    let mut init = Resources::default();
    for c in spec.init_containers.iter().flatten() {
        let r = container(c);
        if c.restart_policy.as_deref() == Some("Always") {
            total.add(&r);
            sidecars.add(&r);
            init.max(&sidecars);
        } else {
            let mut with_sidecars = r;
            with_sidecars.add(&sidecars);
            init.max(&with_sidecars);
        }
    }
    total.max(&init);
    if let Some(overhead) = &spec.overhead {
        total.add(&Resources::from_list(overhead));
    }
    total
}

/// What the scheduler knows about one node: upstream's `framework.NodeInfo`, reduced to the
/// node, the pods bound to it and the sums derived from them.
#[derive(Clone, Debug)]
pub struct NodeInfo {
    pub node: Node,
    pub pods: Vec<Pod>,
    /// Sum of the pods' requests.
    pub requested: Resources,
    /// Sum of the pods' requests with the non-zero defaults (scoring only).
    pub non_zero_requested: Resources,
    pub allocatable: Resources,
    /// `status.allocatable.pods`.
    pub allowed_pods: i64,
    /// How many of `pods` have any pod affinity or anti-affinity (upstream's
    /// `PodsWithAffinity`), and how many a required anti-affinity term
    /// (`PodsWithRequiredAntiAffinity`): the inter-pod plugins skip nodes where these are 0,
    /// which keeps a cycle linear in the number of nodes for pods without such terms.
    pub pods_with_affinity: usize,
    pub pods_with_required_anti_affinity: usize,
}

impl NodeInfo {
    pub fn new(node: Node, pods: Vec<Pod>) -> Self {
        let mut info = NodeInfo {
            node: Node::default(),
            pods: Vec::with_capacity(pods.len()),
            requested: Resources::default(),
            non_zero_requested: Resources::default(),
            allocatable: Resources::default(),
            allowed_pods: 0,
            pods_with_affinity: 0,
            pods_with_required_anti_affinity: 0,
        };
        info.set_node(node);
        for p in pods {
            info.add_pod(p);
        }
        info
    }

    /// Replaces the Node object (an update from the API), keeping the pods.
    pub fn set_node(&mut self, node: Node) {
        let alloc = node.status.as_ref().and_then(|s| s.allocatable.as_ref());
        self.allocatable = alloc.map(Resources::from_list).unwrap_or_default();
        self.allowed_pods = alloc
            .and_then(|a| a.get("pods"))
            .map(|q| value(&q.0))
            .unwrap_or(0);
        self.node = node;
    }

    /// Accounts a pod bound (or assumed) to this node.
    pub fn add_pod(&mut self, pod: Pod) {
        self.requested.add(&pod_requests(&pod, false));
        self.non_zero_requested.add(&pod_requests(&pod, true));
        let (affinity, anti) = affinity_kinds(&pod);
        self.pods_with_affinity += usize::from(affinity);
        self.pods_with_required_anti_affinity += usize::from(anti);
        self.pods.push(pod);
    }

    /// Removes the pod with this uid, returning it; the sums are recomputed from what is left
    /// rather than subtracted, so rounding can never drift.
    pub fn remove_pod(&mut self, uid: &str) -> Option<Pod> {
        let i = self
            .pods
            .iter()
            .position(|p| p.metadata.uid.as_deref() == Some(uid))?;
        let pod = self.pods.swap_remove(i);
        self.requested = Resources::default();
        self.non_zero_requested = Resources::default();
        self.pods_with_affinity = 0;
        self.pods_with_required_anti_affinity = 0;
        for p in &self.pods {
            self.requested.add(&pod_requests(p, false));
            self.non_zero_requested.add(&pod_requests(p, true));
            let (affinity, anti) = affinity_kinds(p);
            self.pods_with_affinity += usize::from(affinity);
            self.pods_with_required_anti_affinity += usize::from(anti);
        }
        Some(pod)
    }

    pub fn name(&self) -> &str {
        self.node.metadata.name.as_deref().unwrap_or_default()
    }

    pub fn labels(&self) -> &BTreeMap<String, String> {
        static EMPTY: BTreeMap<String, String> = BTreeMap::new();
        self.node.metadata.labels.as_ref().unwrap_or(&EMPTY)
    }

    pub fn taints(&self) -> &[Taint] {
        self.node
            .spec
            .as_ref()
            .and_then(|s| s.taints.as_deref())
            .unwrap_or_default()
    }
}

/// One scheduling attempt: the pod and the whole snapshot. Filters and scores that look across
/// nodes (inter-pod affinity, topology spread, image locality) read `nodes`. What every node's
/// check needs is computed once per cycle, as upstream's PreFilter state.
#[derive(Clone, Debug)]
pub struct Cycle<'a> {
    pub pod: &'a Pod,
    pub nodes: &'a [NodeInfo],
    /// The pod's requests.
    pub requests: Resources,
    /// Whether any node holds a pod with a required anti-affinity term.
    pub anti_affinity: bool,
    /// What the pod's PersistentVolumeClaims require (VolumeBinding's PreFilter state).
    pub claims: volumes::Claims,
}

impl<'a> Cycle<'a> {
    pub fn new(pod: &'a Pod, nodes: &'a [NodeInfo]) -> Cycle<'a> {
        Cycle {
            pod,
            nodes,
            requests: pod_requests(pod, false),
            anti_affinity: nodes.iter().any(|n| n.pods_with_required_anti_affinity > 0),
            claims: volumes::Claims::default(),
        }
    }
}

/// Upstream's status codes for a filter rejection. The difference matters for preemption:
/// evicting pods cannot fix an `UnschedulableAndUnresolvable` node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    Unschedulable,
    UnschedulableAndUnresolvable,
}

/// Why a filter plugin rejected a node; `reasons` are upstream's exact strings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub plugin: &'static str,
    pub code: Code,
    pub reasons: Vec<String>,
}

impl Rejection {
    pub fn new(plugin: &'static str, code: Code, reason: impl Into<String>) -> Self {
        Rejection {
            plugin,
            code,
            reasons: vec![reason.into()],
        }
    }
}

/// No node passed the filters: upstream's `framework.FitError`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FitError {
    pub total_nodes: usize,
    /// Each rejected node's name and the first plugin's rejection.
    pub rejections: Vec<(String, Rejection)>,
}

impl fmt::Display for FitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reasons: Vec<&Rejection> = self.rejections.iter().map(|(_, r)| r).collect();
        f.write_str(&failure_message(self.total_nodes, &reasons))
    }
}

/// Upstream's `FitError.Error()`: "0/N nodes are available: " then each distinct reason
/// prefixed by the number of nodes that gave it, as strings sorted bytewise (so "10 x" sorts
/// before "2 y", as Go's `sort.Strings` does), joined by ", " and closed by ".". With no nodes
/// at all upstream reports `ErrNoNodesAvailable` instead.
pub fn failure_message(total_nodes: usize, rejections: &[&Rejection]) -> String {
    if total_nodes == 0 {
        return "no nodes available to schedule pods".to_string();
    }
    let reasons = rejections
        .iter()
        .flat_map(|r| r.reasons.iter().map(String::as_str));
    format!("0/{total_nodes} nodes are available:{}", histogram(reasons))
}

/// `failure_message` followed by the PostFilter (DefaultPreemption) message upstream appends
/// when preemption finds no candidate (see [`preempt`]): nodes rejected as unresolvable are
/// "Preemption is not helpful for scheduling", the others "No preemption victims found for
/// incoming pod". The doubled final "." is upstream's (its separator format wraps a message
/// that already ends in one).
pub fn failure_message_with_preemption(total_nodes: usize, rejections: &[&Rejection]) -> String {
    let first = failure_message(total_nodes, rejections);
    if total_nodes == 0 {
        return first;
    }
    let reasons = rejections.iter().map(|r| match r.code {
        Code::UnschedulableAndUnresolvable => "Preemption is not helpful for scheduling",
        Code::Unschedulable => "No preemption victims found for incoming pod",
    });
    format!(
        "{first} preemption: 0/{total_nodes} nodes are available:{}.",
        histogram(reasons)
    )
}

/// The message for a pod a PreFilter plugin refused (upstream's `FitError` with a
/// `PreFilterMsg`: the plugin's message instead of the per-node reasons), followed by the
/// preemption report, where every node is unresolvable.
pub fn prefilter_failure_message(total_nodes: usize, message: &str) -> String {
    if total_nodes == 0 {
        return "no nodes available to schedule pods".to_string();
    }
    let reasons = std::iter::repeat_n("Preemption is not helpful for scheduling", total_nodes);
    format!(
        "0/{total_nodes} nodes are available: {message}. preemption: 0/{total_nodes} nodes are available:{}.",
        histogram(reasons)
    )
}

/// " 1 a, 2 b." — counts per reason, sorted as strings; empty when there are no reasons.
fn histogram<'a>(reasons: impl Iterator<Item = &'a str>) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for r in reasons {
        *counts.entry(r).or_default() += 1;
    }
    let mut parts: Vec<String> = counts.iter().map(|(r, n)| format!("{n} {r}")).collect();
    parts.sort();
    if parts.is_empty() {
        String::new()
    } else {
        format!(" {}.", parts.join(", "))
    }
}

/// Runs the filters on every node, then scores the feasible ones and picks the best.
pub fn schedule(pod: &Pod, nodes: &[NodeInfo]) -> Result<String, FitError> {
    schedule_from(pod, nodes, 0, nodes.len()).0
}

/// Upstream's `numFeasibleNodesToFind` with the default `percentageOfNodesToScore` (adaptive:
/// 50% minus 1% per 125 nodes, at least 5%), never fewer than 100 nodes: once that many
/// feasible nodes are found the rest are not filtered, which bounds a cycle's cost in big
/// clusters at a small cost in placement quality.
pub fn nodes_to_find(all: usize) -> usize {
    const MIN_FEASIBLE: usize = 100;
    if all < MIN_FEASIBLE {
        return all;
    }
    let percentage = 50usize.saturating_sub(all / 125).max(5);
    (all * percentage / 100).max(MIN_FEASIBLE)
}

/// Filters nodes starting at `start` (wrapping around, as upstream's `nextStartNodeIndex` does
/// so that every node gets its turn) until `to_find` feasible nodes are found, scores those and
/// picks the best. Returns the decision and where the next cycle starts.
pub fn schedule_from(
    pod: &Pod,
    nodes: &[NodeInfo],
    start: usize,
    to_find: usize,
) -> (Result<String, FitError>, usize) {
    schedule_with_claims(pod, nodes, start, to_find, volumes::Claims::default())
}

/// [`schedule_from`] for a pod whose claims passed VolumeBinding's PreFilter with `claims`.
pub fn schedule_with_claims(
    pod: &Pod,
    nodes: &[NodeInfo],
    start: usize,
    to_find: usize,
    claims: volumes::Claims,
) -> (Result<String, FitError>, usize) {
    let mut cycle = Cycle::new(pod, nodes);
    cycle.claims = claims;
    let mut feasible = Vec::new();
    let mut rejections = Vec::new();
    let n = nodes.len();
    let mut visited = 0;
    while visited < n && feasible.len() < to_find.max(1) {
        let node = &nodes[(start + visited) % n];
        visited += 1;
        match filter::run(&cycle, node) {
            Ok(()) => feasible.push(node),
            Err(r) => rejections.push((node.name().to_string(), r)),
        }
    }
    let next = if n == 0 { 0 } else { (start + visited) % n };
    let decision = match select_node(&cycle, &feasible) {
        Some(name) => Ok(name),
        None => Err(FitError {
            total_nodes: n,
            rejections,
        }),
    };
    (decision, next)
}

/// Sums every score plugin's normalized score times its weight and returns the node with the
/// highest total. Ties go to the node whose name sorts first: upstream breaks ties by
/// reservoir sampling at random, which we trade for reproducible decisions.
pub fn select_node(cycle: &Cycle, feasible: &[&NodeInfo]) -> Option<String> {
    let totals = score::total(cycle, feasible);
    feasible
        .iter()
        .zip(totals)
        .max_by(|(a, sa), (b, sb)| sa.cmp(sb).then_with(|| b.name().cmp(a.name())))
        .map(|(n, _)| n.name().to_string())
}

// ---- shared matching vocabulary ----

/// Whether the pod has any pod (anti-)affinity, and whether it has a required anti-affinity
/// term.
fn affinity_kinds(pod: &Pod) -> (bool, bool) {
    let a = pod.spec.as_ref().and_then(|s| s.affinity.as_ref());
    let any = a.is_some_and(|a| a.pod_affinity.is_some() || a.pod_anti_affinity.is_some());
    let anti = a
        .and_then(|a| a.pod_anti_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .is_some_and(|t| !t.is_empty());
    (any, anti)
}

fn pod_labels(pod: &Pod) -> &BTreeMap<String, String> {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    pod.metadata.labels.as_ref().unwrap_or(&EMPTY)
}

fn pod_namespace(pod: &Pod) -> &str {
    pod.metadata.namespace.as_deref().unwrap_or("default")
}

/// `metav1.LabelSelectorAsSelector`: all `matchLabels` and `matchExpressions` must hold; an
/// empty selector matches everything. (A missing selector matches nothing; callers decide.)
pub fn selector_matches(sel: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_ok = sel
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    labels_ok
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

/// One node selector requirement against a value (a label or a field), as upstream's
/// `nodeaffinity` package: `Gt`/`Lt` compare integers and fail when either side is not one.
fn requirement_matches(r: &NodeSelectorRequirement, got: Option<&String>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    match r.operator.as_str() {
        "In" => got.is_some_and(|g| values.contains(g)),
        "NotIn" => !got.is_some_and(|g| values.contains(g)),
        "Exists" => got.is_some(),
        "DoesNotExist" => got.is_none(),
        "Gt" | "Lt" => {
            let (Some(g), [v]) = (got, values) else {
                return false;
            };
            match (g.parse::<i64>(), v.parse::<i64>()) {
                (Ok(g), Ok(v)) if r.operator == "Gt" => g > v,
                (Ok(g), Ok(v)) => g < v,
                _ => false,
            }
        }
        _ => false,
    }
}

/// A node selector term: its expressions and fields are ANDed; a term with neither matches
/// nothing. The only field upstream supports is `metadata.name`.
pub fn term_matches(term: &NodeSelectorTerm, node: &NodeInfo) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let name = node.name().to_string();
    exprs
        .iter()
        .all(|r| requirement_matches(r, node.labels().get(&r.key)))
        && fields.iter().all(|r| {
            r.key == "metadata.name"
                && matches!(r.operator.as_str(), "In" | "NotIn")
                && requirement_matches(r, Some(&name))
        })
}

/// `spec.nodeSelector` and required node affinity (terms ORed), as upstream's
/// `RequiredNodeAffinity.Match`.
pub fn node_matches_pod(pod: &Pod, node: &NodeInfo) -> bool {
    let Some(spec) = &pod.spec else {
        return true;
    };
    let selector_ok = spec
        .node_selector
        .iter()
        .flatten()
        .all(|(k, v)| node.labels().get(k) == Some(v));
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

/// Upstream's `Toleration.ToleratesTaint`.
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

pub(crate) fn pod_tolerations(pod: &Pod) -> &[Toleration] {
    pod.spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or_default()
}

/// The first taint with one of `effects` that none of the pod's tolerations tolerates
/// (upstream's `FindMatchingUntoleratedTaint`).
pub fn untolerated_taint<'a>(
    pod: &Pod,
    taints: &'a [Taint],
    effects: &[&str],
) -> Option<&'a Taint> {
    taints.iter().find(|taint| {
        effects.contains(&taint.effect.as_str())
            && !pod_tolerations(pod).iter().any(|t| tolerates(t, taint))
    })
}

// ---- quantities ----

/// A quantity's value rounded up to an integer (`resource.Quantity.Value`); unparsable or
/// negative input counts as 0 (the API server rejects it before it gets here).
pub fn value(s: &str) -> i64 {
    scaled(s, 1)
}

/// A quantity in thousandths, rounded up (`resource.Quantity.MilliValue`).
pub fn milli_value(s: &str) -> i64 {
    scaled(s, 1000)
}

fn scaled(s: &str, scale: i128) -> i64 {
    parse_scaled(s.trim(), scale)
        .map(|v| v.clamp(0, i64::MAX as i128) as i64)
        .unwrap_or(0)
}

/// Parses `<sign><digits>[.<digits>]<suffix>` where the suffix is a binary SI (Ki..Ei), a
/// decimal SI (n, u, m, "", k, M, G, T, P, E) or a decimal exponent (e3, E-2), and returns
/// ceil(value * scale), saturating.
fn parse_scaled(s: &str, scale: i128) -> Option<i128> {
    let (negative, s) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let num_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(num_end);
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let digits = format!("{int}{frac}");
    let digits = digits.trim_start_matches('0');
    // More than 30 significant digits would overflow; such quantities are far beyond any node.
    let mantissa: i128 = if digits.is_empty() {
        0
    } else if digits.len() > 30 {
        return Some(i128::MAX);
    } else {
        digits.parse().ok()?
    };
    let (mut exp10, exp2): (i32, u32) = match suffix {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        e if e.starts_with(['e', 'E']) => (e[1..].parse().ok()?, 0),
        _ => return None,
    };
    exp10 -= frac.len() as i32;
    if negative {
        return Some(-1);
    }
    let mut v = mantissa.saturating_mul(scale).saturating_mul(1i128 << exp2);
    if exp10 >= 0 {
        for _ in 0..exp10 {
            v = v.saturating_mul(10);
        }
        Some(v)
    } else {
        let div = 10i128.checked_pow(exp10.unsigned_abs())?;
        Some((v + div - 1) / div)
    }
}
