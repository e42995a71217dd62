//! Quota usage evaluation (upstream's `pkg/quota/v1` with the evaluators of
//! `pkg/quota/v1/evaluator/core` and the generic object-count evaluator), shared by the
//! ResourceQuota admission step of the API server, which checks and charges a new object's
//! usage, and the resource quota controller, which recomputes each quota's `status.used`. Pure
//! functions on k8s-openapi types, like the `leader` library.
//!
//! Quantities are added exactly (in billionths) and printed the way `resource.Quantity`
//! prints its canonical form (`500m`, `1Gi`, `100M`), with the format of the first non-zero
//! amount, as `Quantity.Add` keeps it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, PersistentVolumeClaim, Pod, ResourceQuota, ScopedResourceSelectorRequirement,
    Service,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

// ---- quantities ----

/// How a quantity prints (`resource.Format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    DecimalSI,
    BinarySI,
    DecimalExponent,
}

/// A quantity as an exact number of billionths plus its print format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Amount {
    pub nanos: i128,
    pub format: Format,
}

const NANO: i128 = 1_000_000_000;

impl Amount {
    pub const ZERO: Amount = Amount {
        nanos: 0,
        format: Format::DecimalSI,
    };

    pub fn count(n: usize) -> Amount {
        Amount {
            nanos: n as i128 * NANO,
            format: Format::DecimalSI,
        }
    }

    /// Parses a quantity (`100m`, `1.5Gi`, `2e3`); a finer fraction than a billionth rounds
    /// up, as upstream's `Quantity` does when it has to scale.
    pub fn parse(s: &str) -> Option<Amount> {
        let s = s.trim();
        let (negative, rest) = match s.as_bytes().first()? {
            b'-' => (true, &s[1..]),
            b'+' => (false, &s[1..]),
            _ => (false, s),
        };
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, suffix) = rest.split_at(end);
        let (int, frac) = number.split_once('.').unwrap_or((number, ""));
        if (int.is_empty() && frac.is_empty()) || frac.contains('.') {
            return None;
        }
        let (format, exp10, exp2): (Format, i32, u32) = match suffix {
            "" => (Format::DecimalSI, 0, 0),
            "n" => (Format::DecimalSI, -9, 0),
            "u" => (Format::DecimalSI, -6, 0),
            "m" => (Format::DecimalSI, -3, 0),
            "k" => (Format::DecimalSI, 3, 0),
            "M" => (Format::DecimalSI, 6, 0),
            "G" => (Format::DecimalSI, 9, 0),
            "T" => (Format::DecimalSI, 12, 0),
            "P" => (Format::DecimalSI, 15, 0),
            "E" => (Format::DecimalSI, 18, 0),
            "Ki" => (Format::BinarySI, 0, 10),
            "Mi" => (Format::BinarySI, 0, 20),
            "Gi" => (Format::BinarySI, 0, 30),
            "Ti" => (Format::BinarySI, 0, 40),
            "Pi" => (Format::BinarySI, 0, 50),
            "Ei" => (Format::BinarySI, 0, 60),
            e => {
                let e = e.strip_prefix(['e', 'E'])?;
                (Format::DecimalExponent, e.parse().ok()?, 0)
            }
        };
        let digits = format!("{int}{frac}");
        let digits = digits.trim_start_matches('0');
        if digits.len() > 30 {
            return None;
        }
        let mut value: i128 = if digits.is_empty() {
            0
        } else {
            digits.parse().ok()?
        };
        value = value.checked_mul(1i128.checked_shl(exp2)?)?;
        // value × 10^(exp10 − len(frac) + 9) billionths.
        let shift = exp10 - frac.len() as i32 + 9;
        if shift >= 0 {
            value = value.checked_mul(10i128.checked_pow(shift as u32)?)?;
        } else {
            let div = 10i128.checked_pow((-shift) as u32)?;
            value = value / div + i128::from(value % div != 0);
        }
        Some(Amount {
            nanos: if negative { -value } else { value },
            format,
        })
    }

    /// `Quantity.Add`: a zero amount takes the other's format.
    pub fn add(&mut self, other: Amount) {
        if self.nanos == 0 {
            self.format = other.format;
        }
        self.nanos += other.nanos;
    }

    /// The canonical text (upstream's `CanonicalizeBytes`).
    pub fn canonical(&self) -> String {
        if self.nanos == 0 {
            return "0".into();
        }
        let mut format = self.format;
        if format == Format::BinarySI && (self.nanos.abs() < 1024 * NANO || self.nanos % NANO != 0)
        {
            // Small or fractional binary amounts print as decimal, not rounded.
            format = Format::DecimalSI;
        }
        if format == Format::BinarySI {
            let mut amount = self.nanos / NANO;
            let mut exp = 0;
            while amount % 1024 == 0 && exp < 6 {
                amount /= 1024;
                exp += 1;
            }
            let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][exp];
            return format!("{amount}{suffix}");
        }
        let mut amount = self.nanos;
        let mut exp: i32 = -9;
        while amount % 10 == 0 {
            amount /= 10;
            exp += 1;
        }
        match exp.rem_euclid(3) {
            1 => {
                amount *= 10;
                exp -= 1;
            }
            2 => {
                amount *= 100;
                exp -= 2;
            }
            _ => {}
        }
        let si = match exp {
            -9 => Some("n"),
            -6 => Some("u"),
            -3 => Some("m"),
            0 => Some(""),
            3 => Some("k"),
            6 => Some("M"),
            9 => Some("G"),
            12 => Some("T"),
            15 => Some("P"),
            18 => Some("E"),
            _ => None,
        };
        match (format, si) {
            (Format::DecimalSI, Some(s)) => format!("{amount}{s}"),
            (_, _) if exp == 0 => amount.to_string(),
            _ => format!("{amount}e{exp}"),
        }
    }
}

/// Resource name → amount.
pub type Usage = BTreeMap<String, Amount>;

pub fn add_to(usage: &mut Usage, name: &str, amount: Amount) {
    usage
        .entry(name.to_string())
        .or_insert(Amount::ZERO)
        .add(amount);
}

pub fn merge(into: &mut Usage, from: Usage) {
    for (k, v) in from {
        add_to(into, &k, v);
    }
}

// ---- pods ----

fn container_resources(c: &Container, limits: bool) -> Usage {
    let r = c.resources.as_ref();
    let list = if limits {
        r.and_then(|r| r.limits.as_ref())
    } else {
        r.and_then(|r| r.requests.as_ref())
    };
    list.into_iter()
        .flatten()
        .filter_map(|(k, q)| Amount::parse(&q.0).map(|a| (k.clone(), a)))
        .collect()
}

fn max_into(into: &mut Usage, other: &Usage) {
    for (k, v) in other {
        let e = into.entry(k.clone()).or_insert(Amount::ZERO);
        if v.nanos > e.nanos {
            *e = *v;
        }
    }
}

/// Upstream's `resourcehelper.PodRequests`/`PodLimits`: the sum over app containers and
/// restartable (sidecar) init containers, at least each regular init container plus the
/// sidecars started before it, plus the pod overhead.
pub fn pod_resources(pod: &Pod, limits: bool) -> Usage {
    let Some(spec) = pod.spec.as_ref() else {
        return Usage::new();
    };
    let mut sum = Usage::new();
    for c in &spec.containers {
        merge(&mut sum, container_resources(c, limits));
    }
    let mut sidecars = Usage::new();
    let mut init_max = Usage::new();
    for c in spec.init_containers.iter().flatten() {
        let r = container_resources(c, limits);
        if c.restart_policy.as_deref() == Some("Always") {
            merge(&mut sidecars, r.clone());
            merge(&mut sum, r);
        } else {
            let mut with_sidecars = sidecars.clone();
            merge(&mut with_sidecars, r);
            max_into(&mut init_max, &with_sidecars);
        }
    }
    max_into(&mut sum, &init_max);
    for (k, q) in spec.overhead.iter().flatten() {
        if let Some(a) = Amount::parse(&q.0) {
            add_to(&mut sum, k, a);
        }
    }
    sum
}

/// Upstream's `QuotaV1Pod`: finished pods, and pods past their deletion grace period (for
/// example on a lost node), are not charged.
pub fn charged(pod: &Pod, now: Timestamp) -> bool {
    if matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    ) {
        return false;
    }
    if let (Some(at), Some(grace)) = (
        &pod.metadata.deletion_timestamp,
        pod.metadata.deletion_grace_period_seconds,
    ) && at
        .0
        .checked_add(SignedDuration::from_secs(grace))
        .is_ok_and(|end| now > end)
    {
        return false;
    }
    true
}

/// Upstream's `PodUsageFunc` with `podComputeUsageHelper`: `count/pods` for every pod, the
/// compute resources and `pods` only for charged ones.
pub fn pod_usage(pod: &Pod, now: Timestamp) -> Usage {
    let mut usage = Usage::from([("count/pods".to_string(), Amount::count(1))]);
    if !charged(pod, now) {
        return usage;
    }
    usage.insert("pods".into(), Amount::count(1));
    let requests = pod_resources(pod, false);
    let limits = pod_resources(pod, true);
    for (name, both) in [("cpu", true), ("memory", true), ("ephemeral-storage", true)] {
        if let Some(r) = requests.get(name) {
            if both {
                usage.insert(name.into(), *r);
            }
            usage.insert(format!("requests.{name}"), *r);
        }
        if let Some(l) = limits.get(name) {
            usage.insert(format!("limits.{name}"), *l);
        }
    }
    for (name, r) in &requests {
        if name.starts_with("hugepages-") {
            usage.insert(name.clone(), *r);
            usage.insert(format!("requests.{name}"), *r);
        } else if name.contains('/') && !name.starts_with("kubernetes.io/") {
            // Extended resources are quota'd as `requests.<name>` only.
            usage.insert(format!("requests.{name}"), *r);
        }
    }
    usage
}

fn is_best_effort(pod: &Pod) -> bool {
    let spec = pod.spec.as_ref();
    spec.into_iter()
        .flat_map(|s| {
            s.containers
                .iter()
                .chain(s.init_containers.iter().flatten())
        })
        .all(|c| {
            let r = c.resources.as_ref();
            let none = |l: Option<&BTreeMap<String, Quantity>>| {
                l.is_none_or(|l| !l.contains_key("cpu") && !l.contains_key("memory"))
            };
            none(r.and_then(|r| r.requests.as_ref())) && none(r.and_then(|r| r.limits.as_ref()))
        })
}

fn uses_cross_namespace_affinity(pod: &Pod) -> bool {
    let Some(affinity) = pod.spec.as_ref().and_then(|s| s.affinity.as_ref()) else {
        return false;
    };
    let required = |t: &k8s_openapi::api::core::v1::PodAffinityTerm| {
        t.namespace_selector.is_some() || t.namespaces.as_ref().is_some_and(|n| !n.is_empty())
    };
    let a = affinity.pod_affinity.as_ref().is_some_and(|a| {
        a.required_during_scheduling_ignored_during_execution
            .iter()
            .flatten()
            .any(required)
            || a.preferred_during_scheduling_ignored_during_execution
                .iter()
                .flatten()
                .any(|w| required(&w.pod_affinity_term))
    });
    let anti = affinity.pod_anti_affinity.as_ref().is_some_and(|a| {
        a.required_during_scheduling_ignored_during_execution
            .iter()
            .flatten()
            .any(required)
            || a.preferred_during_scheduling_ignored_during_execution
                .iter()
                .flatten()
                .any(|w| required(&w.pod_affinity_term))
    });
    a || anti
}

/// The quota's scopes as selector requirements (`scopes` are `Exists` requirements, as
/// upstream's `getScopeSelectorsFromQuota` makes them).
pub fn scope_requirements(quota: &ResourceQuota) -> Vec<ScopedResourceSelectorRequirement> {
    let spec = quota.spec.as_ref();
    let mut reqs: Vec<ScopedResourceSelectorRequirement> = spec
        .and_then(|s| s.scopes.as_ref())
        .into_iter()
        .flatten()
        .map(|s| ScopedResourceSelectorRequirement {
            scope_name: s.clone(),
            operator: "Exists".into(),
            values: None,
        })
        .collect();
    reqs.extend(
        spec.and_then(|s| s.scope_selector.as_ref())
            .and_then(|s| s.match_expressions.clone())
            .into_iter()
            .flatten(),
    );
    reqs
}

/// Upstream's `podMatchesScopeFunc` for one requirement.
pub fn pod_matches_scope(pod: &Pod, req: &ScopedResourceSelectorRequirement) -> bool {
    let spec = pod.spec.as_ref();
    let matched = match req.scope_name.as_str() {
        "Terminating" => spec
            .and_then(|s| s.active_deadline_seconds)
            .is_some_and(|d| d >= 0),
        "NotTerminating" => spec
            .and_then(|s| s.active_deadline_seconds)
            .is_none_or(|d| d < 0),
        "BestEffort" => is_best_effort(pod),
        "NotBestEffort" => !is_best_effort(pod),
        "CrossNamespacePodAffinity" => uses_cross_namespace_affinity(pod),
        "PriorityClass" => {
            let class = spec
                .and_then(|s| s.priority_class_name.as_deref())
                .unwrap_or_default();
            let values = req.values.as_deref().unwrap_or_default();
            return match req.operator.as_str() {
                "Exists" => !class.is_empty(),
                "DoesNotExist" => class.is_empty(),
                "In" => !class.is_empty() && values.iter().any(|v| v == class),
                "NotIn" => class.is_empty() || !values.iter().any(|v| v == class),
                _ => false,
            };
        }
        // Upstream's pod evaluator never matches the claims-only scope, whatever the operator.
        "VolumeAttributesClass" => return false,
        _ => false,
    };
    // The boolean scopes only take Exists (validation); DoesNotExist negates for safety.
    if req.operator == "DoesNotExist" {
        !matched
    } else {
        matched
    }
}

/// The VolumeAttributesClass names a claim refers to, as upstream's
/// `getReferencedVolumeAttributesClassNames`: the one it asks for, the one it has, and the one
/// a modification in progress moves it to.
fn claim_attributes_classes(pvc: &PersistentVolumeClaim) -> Vec<&str> {
    let status = pvc.status.as_ref();
    let mut names: Vec<&str> = [
        pvc.spec
            .as_ref()
            .and_then(|s| s.volume_attributes_class_name.as_deref()),
        status.and_then(|s| s.current_volume_attributes_class_name.as_deref()),
        status
            .and_then(|s| s.modify_volume_status.as_ref())
            .and_then(|m| m.target_volume_attributes_class_name.as_deref()),
    ]
    .into_iter()
    .flatten()
    .filter(|n| !n.is_empty())
    .collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// Upstream's `pvcMatchesScopeFunc` (Kubernetes 1.31+, the VolumeAttributesClass feature):
/// only the `VolumeAttributesClass` scope selects claims, by the classes the claim refers to
/// (`claim_attributes_classes`) read as the values of one label: Exists needs a class, In
/// one of them listed, NotIn one of them unlisted (or none at all), DoesNotExist no class.
pub fn claim_matches_scope(
    pvc: &PersistentVolumeClaim,
    req: &ScopedResourceSelectorRequirement,
) -> bool {
    if req.scope_name != "VolumeAttributesClass" {
        return false;
    }
    let classes = claim_attributes_classes(pvc);
    let values = req.values.as_deref().unwrap_or_default();
    let listed = |c: &&str| values.iter().any(|v| v == c);
    match req.operator.as_str() {
        "Exists" => !classes.is_empty(),
        "DoesNotExist" => classes.is_empty(),
        "In" => classes.iter().any(listed),
        "NotIn" => classes.is_empty() || classes.iter().any(|c| !listed(c)),
        _ => false,
    }
}

// ---- other objects ----

/// Upstream's services evaluator: `services`, `services.nodeports` (every port of a NodePort
/// or LoadBalancer Service; for a LoadBalancer without node port allocation only the
/// explicit ones) and `services.loadbalancers`.
pub fn service_usage(svc: &Service) -> Usage {
    let spec = svc.spec.as_ref();
    let ports = spec.and_then(|s| s.ports.as_deref()).unwrap_or_default();
    let (node_ports, lbs) = match spec.and_then(|s| s.type_.as_deref()) {
        Some("NodePort") => (ports.len(), 0),
        Some("LoadBalancer") => {
            let allocate = spec
                .and_then(|s| s.allocate_load_balancer_node_ports)
                .unwrap_or(true);
            let n = if allocate {
                ports.len()
            } else {
                ports.iter().filter(|p| p.node_port.is_some()).count()
            };
            (n, 1)
        }
        _ => (0, 0),
    };
    Usage::from([
        ("services".to_string(), Amount::count(1)),
        ("count/services".to_string(), Amount::count(1)),
        ("services.nodeports".to_string(), Amount::count(node_ports)),
        ("services.loadbalancers".to_string(), Amount::count(lbs)),
    ])
}

/// Upstream's persistentvolumeclaims evaluator: counts and `requests.storage` (the larger of
/// the request and the allocated size), also per storage class.
pub fn claim_usage(pvc: &PersistentVolumeClaim) -> Usage {
    let spec = pvc.spec.as_ref();
    let request = spec
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .and_then(|q| Amount::parse(&q.0));
    let allocated = pvc
        .status
        .as_ref()
        .and_then(|s| s.allocated_resources.as_ref())
        .and_then(|r| r.get("storage"))
        .and_then(|q| Amount::parse(&q.0));
    let storage = match (request, allocated) {
        (Some(r), Some(a)) if a.nanos > r.nanos => Some(a),
        (Some(r), _) => Some(r),
        (None, a) => a,
    };
    let mut usage = Usage::from([
        ("persistentvolumeclaims".to_string(), Amount::count(1)),
        ("count/persistentvolumeclaims".to_string(), Amount::count(1)),
    ]);
    let class = spec.and_then(|s| s.storage_class_name.as_deref());
    if let Some(class) = class {
        usage.insert(
            format!("{class}.storageclass.storage.k8s.io/persistentvolumeclaims"),
            Amount::count(1),
        );
    }
    if let Some(s) = storage {
        usage.insert("requests.storage".into(), s);
        if let Some(class) = class {
            usage.insert(
                format!("{class}.storageclass.storage.k8s.io/requests.storage"),
                s,
            );
        }
    }
    usage
}

pub fn is_pod_resource(name: &str) -> bool {
    matches!(
        name,
        "pods" | "count/pods" | "cpu" | "memory" | "ephemeral-storage"
    ) || name.starts_with("requests.") && name != "requests.storage"
        || name.starts_with("limits.")
        || name.starts_with("hugepages-")
}

pub fn is_service_resource(name: &str) -> bool {
    name == "services" || name == "count/services" || name.starts_with("services.")
}

pub fn is_claim_resource(name: &str) -> bool {
    matches!(
        name,
        "persistentvolumeclaims" | "count/persistentvolumeclaims" | "requests.storage"
    ) || name.contains(".storageclass.storage.k8s.io/")
}

/// The (group, plural) a plain object count names: the legacy names and `count/<resource>
/// [.<group>]` (upstream's generic object-count evaluator), for what the typed evaluators do
/// not cover.
pub fn object_count_resource(name: &str) -> Option<(String, String)> {
    let legacy = match name {
        "configmaps" | "secrets" | "replicationcontrollers" | "resourcequotas" => {
            Some(name.to_string())
        }
        _ => None,
    };
    let counted = legacy.or_else(|| {
        name.strip_prefix("count/")
            .filter(|r| !matches!(*r, "pods" | "services" | "persistentvolumeclaims"))
            .map(String::from)
    })?;
    Some(match counted.split_once('.') {
        Some((plural, group)) => (group.to_string(), plural.to_string()),
        None => (String::new(), counted),
    })
}

// ---- admission ----

/// Upstream's evaluator registry: which evaluator measures objects of a resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Evaluator {
    Pods,
    Services,
    Claims,
    /// The generic object-count evaluator (`count/<plural>[.<group>]`, plus the legacy
    /// names of configmaps, secrets, replicationcontrollers and resourcequotas).
    Count {
        group: String,
        plural: String,
    },
}

/// Resources upstream's quota admission never looks at (`DefaultIgnoredResources`; the
/// review kinds are never stored, so they do not reach admission here).
fn ignored(group: &str, plural: &str) -> bool {
    plural == "events" && matches!(group, "" | "events.k8s.io")
}

impl Evaluator {
    /// The evaluator of `group`/`plural`; `None` for ignored resources.
    pub fn for_resource(group: &str, plural: &str) -> Option<Evaluator> {
        if ignored(group, plural) {
            return None;
        }
        Some(match (group, plural) {
            ("", "pods") => Evaluator::Pods,
            ("", "services") => Evaluator::Services,
            ("", "persistentvolumeclaims") => Evaluator::Claims,
            _ => Evaluator::Count {
                group: group.to_string(),
                plural: plural.to_string(),
            },
        })
    }

    /// Upstream's `Handles`: every evaluator charges creates; services (whose type may
    /// change) and claims (whose size may grow) also charge updates by their growth.
    pub fn handles_update(&self) -> bool {
        matches!(self, Evaluator::Services | Evaluator::Claims)
    }

    /// Upstream's `MatchingResources` for one quota resource name.
    pub fn tracks(&self, name: &str) -> bool {
        match self {
            Evaluator::Pods => is_pod_resource(name),
            Evaluator::Services => is_service_resource(name),
            Evaluator::Claims => is_claim_resource(name),
            Evaluator::Count { group, plural } => {
                object_count_resource(name).is_some_and(|(g, p)| g == *group && p == *plural)
            }
        }
    }

    /// The usage of one object (`now` decides whether a deleting pod is still charged).
    pub fn usage(&self, obj: &serde_json::Value, now: Timestamp) -> Result<Usage, String> {
        fn typed<T: serde::de::DeserializeOwned>(obj: &serde_json::Value) -> Result<T, String> {
            serde_json::from_value(obj.clone()).map_err(|e| e.to_string())
        }
        Ok(match self {
            Evaluator::Pods => pod_usage(&typed(obj)?, now),
            Evaluator::Services => service_usage(&typed(obj)?),
            Evaluator::Claims => claim_usage(&typed(obj)?),
            Evaluator::Count { group, plural } => {
                let mut usage = Usage::new();
                let name = if group.is_empty() {
                    format!("count/{plural}")
                } else {
                    format!("count/{plural}.{group}")
                };
                usage.insert(name, Amount::count(1));
                if group.is_empty()
                    && matches!(
                        plural.as_str(),
                        "configmaps" | "secrets" | "replicationcontrollers" | "resourcequotas"
                    )
                {
                    usage.insert(plural.clone(), Amount::count(1));
                }
                usage
            }
        })
    }

    /// Upstream's `Matches`: the quota tracks one of this evaluator's resources and every
    /// scope selects the object. Only pods and claims have scopes: a scoped quota matches
    /// nothing else (`MatchesNoScopeFunc`).
    fn matches(&self, quota: &ResourceQuota, tracked: &[String], obj: &Scoped) -> bool {
        !tracked.is_empty() && scopes_select(&scope_requirements(quota), obj)
    }
}

/// An object as the scope functions see it.
enum Scoped {
    Pod(Box<Pod>),
    Claim(Box<PersistentVolumeClaim>),
    Other,
}

impl Scoped {
    /// `obj` typed for `evaluator`'s scope function.
    fn of(evaluator: &Evaluator, obj: &serde_json::Value) -> Result<Scoped, String> {
        let typed = |e: serde_json::Error| e.to_string();
        Ok(match evaluator {
            Evaluator::Pods => Scoped::Pod(serde_json::from_value(obj.clone()).map_err(typed)?),
            Evaluator::Claims => Scoped::Claim(serde_json::from_value(obj.clone()).map_err(typed)?),
            _ => Scoped::Other,
        })
    }
}

/// Whether every requirement of a quota's scopes selects `obj` (no scopes select all).
fn scopes_select(scopes: &[ScopedResourceSelectorRequirement], obj: &Scoped) -> bool {
    match obj {
        Scoped::Pod(pod) => scopes.iter().all(|r| pod_matches_scope(pod, r)),
        Scoped::Claim(pvc) => scopes.iter().all(|r| claim_matches_scope(pvc, r)),
        Scoped::Other => scopes.is_empty(),
    }
}

/// The compute resources whose presence upstream requires of every container when a quota
/// tracks them (the pod evaluator's `validationSet`).
const REQUIRED_IF_TRACKED: [&str; 6] = [
    "cpu",
    "limits.cpu",
    "limits.memory",
    "memory",
    "requests.cpu",
    "requests.memory",
];

/// The quota resource names one container sets (upstream's `podComputeUsageHelper` keys).
fn container_names(c: &Container) -> Vec<String> {
    let requests = container_resources(c, false);
    let limits = container_resources(c, true);
    let mut names = Vec::new();
    for r in ["cpu", "memory", "ephemeral-storage"] {
        if requests.contains_key(r) {
            names.push(r.to_string());
            names.push(format!("requests.{r}"));
        }
        if limits.contains_key(r) {
            names.push(format!("limits.{r}"));
        }
    }
    names
}

/// Upstream's pod evaluator `Constraints`: with `tracked` quota resources among cpu/memory
/// requests and limits, every container and init container must set them. The message lists
/// each missing resource with its containers: `must specify limits.cpu for: a,b; memory for: a`.
pub fn pod_constraints(pod: &Pod, tracked: &[String]) -> Option<String> {
    let required: Vec<&str> = REQUIRED_IF_TRACKED
        .into_iter()
        .filter(|r| tracked.iter().any(|t| t == r))
        .collect();
    if required.is_empty() {
        return None;
    }
    let mut missing: BTreeMap<&str, std::collections::BTreeSet<String>> = BTreeMap::new();
    let spec = pod.spec.as_ref();
    let containers = spec.into_iter().flat_map(|s| {
        s.containers
            .iter()
            .chain(s.init_containers.iter().flatten())
    });
    for c in containers {
        let names = container_names(c);
        for r in &required {
            if !names.iter().any(|n| n == r) {
                missing.entry(r).or_default().insert(c.name.clone());
            }
        }
    }
    if missing.is_empty() {
        return None;
    }
    let parts: Vec<String> = missing
        .iter()
        .map(|(r, names)| {
            format!(
                "{r} for: {}",
                names.iter().cloned().collect::<Vec<_>>().join(",")
            )
        })
        .collect();
    Some(format!("must specify {}", parts.join("; ")))
}

fn amount_of(q: &Quantity) -> Amount {
    Amount::parse(&q.0).unwrap_or(Amount::ZERO)
}

/// Upstream's `prettyPrint`: `name=value` sorted by name, comma-separated.
fn pretty(list: &BTreeMap<String, Amount>) -> String {
    list.iter()
        .map(|(k, v)| format!("{k}={}", v.canonical()))
        .collect::<Vec<_>>()
        .join(",")
}

/// What admitting an object does to one quota: its new `status.used`.
#[derive(Debug, Clone, PartialEq)]
pub struct Charge {
    /// Index into the quotas given to [`check`].
    pub quota: usize,
    pub used: BTreeMap<String, Quantity>,
}

/// Upstream's quota admission (`checkRequest`): checks `obj` (and, on an update, its growth
/// over `old`) against every quota of its namespace and returns the new `status.used` of the
/// quotas it is charged to, or why it is refused, worded as upstream (`exceeded quota: q,
/// requested: pods=1, used: pods=2, limited: pods=2`, `failed quota: q: must specify …`,
/// `status unknown for quota: q, resources: pods`). Like upstream it reads `status.hard`,
/// so a quota the controller has not processed yet refuses what it would track.
pub fn check(
    quotas: &[ResourceQuota],
    evaluator: &Evaluator,
    obj: &serde_json::Value,
    old: Option<&serde_json::Value>,
    now: Timestamp,
) -> Result<Vec<Charge>, String> {
    let scoped = Scoped::of(evaluator, obj)?;
    let pod = match &scoped {
        Scoped::Pod(p) => Some(p.as_ref()),
        _ => None,
    };
    let old_scoped = old.map(|o| Scoped::of(evaluator, o)).transpose()?;
    let mut interesting = Vec::new();
    for (i, quota) in quotas.iter().enumerate() {
        let status = quota.status.as_ref();
        let hard = status.and_then(|s| s.hard.as_ref());
        let tracked: Vec<String> = hard
            .into_iter()
            .flatten()
            .map(|(k, _)| k.clone())
            .filter(|k| evaluator.tracks(k))
            .collect();
        if !evaluator.matches(quota, &tracked, &scoped) {
            continue;
        }
        let name = quota.metadata.name.as_deref().unwrap_or_default();
        if let Some(why) = pod.and_then(|p| pod_constraints(p, &tracked)) {
            return Err(format!("failed quota: {name}: {why}"));
        }
        let used = status.and_then(|s| s.used.as_ref());
        if tracked
            .iter()
            .any(|r| used.is_none_or(|u| !u.contains_key(r)))
        {
            let mut names = tracked.clone();
            names.sort();
            return Err(format!(
                "status unknown for quota: {name}, resources: {}",
                names.join(",")
            ));
        }
        interesting.push(i);
    }
    if interesting.is_empty() {
        return Ok(Vec::new());
    }
    let mut full = evaluator.usage(obj, now)?;
    let mut delta = full.clone();
    if let Some(old) = old {
        let before = evaluator.usage(old, now)?;
        for (k, v) in delta.iter_mut() {
            if let Some(b) = before.get(k) {
                v.nanos = (v.nanos - b.nanos).max(0);
            }
        }
    }
    full.retain(|_, v| v.nanos != 0);
    delta.retain(|_, v| v.nanos != 0);
    let mut charges = Vec::new();
    for i in interesting {
        let quota = &quotas[i];
        // A claim whose update moves it into a VolumeAttributesClass-scoped quota is charged
        // its whole usage there, as upstream's quota admission does for claims the quota did
        // not select before; elsewhere only the growth counts.
        let entering = matches!(evaluator, Evaluator::Claims)
            && old_scoped
                .as_ref()
                .is_some_and(|o| !scopes_select(&scope_requirements(quota), o));
        let delta = if entering { &full } else { &delta };
        if delta.is_empty() {
            continue;
        }
        let status = quota.status.clone().unwrap_or_default();
        let hard = status.hard.unwrap_or_default();
        let used = status.used.unwrap_or_default();
        let requested: BTreeMap<String, Amount> = delta
            .iter()
            .filter(|(k, _)| hard.contains_key(*k))
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        let mut new_used: BTreeMap<String, Amount> = used
            .iter()
            .map(|(k, q)| (k.clone(), amount_of(q)))
            .collect();
        for (k, v) in &requested {
            new_used.entry(k.clone()).or_insert(Amount::ZERO).add(*v);
        }
        let exceeded: Vec<&String> = requested
            .keys()
            .filter(|k| {
                hard.get(*k)
                    .is_some_and(|h| new_used[*k].nanos > amount_of(h).nanos)
            })
            .collect();
        if !exceeded.is_empty() {
            let mask = |list: &BTreeMap<String, Amount>| -> BTreeMap<String, Amount> {
                list.iter()
                    .filter(|(k, _)| exceeded.contains(k))
                    .map(|(k, v)| (k.clone(), *v))
                    .collect()
            };
            let used: BTreeMap<String, Amount> = used
                .iter()
                .map(|(k, q)| (k.clone(), amount_of(q)))
                .collect();
            let hard: BTreeMap<String, Amount> = hard
                .iter()
                .map(|(k, q)| (k.clone(), amount_of(q)))
                .collect();
            return Err(format!(
                "exceeded quota: {}, requested: {}, used: {}, limited: {}",
                quota.metadata.name.as_deref().unwrap_or_default(),
                pretty(&mask(&requested)),
                pretty(&mask(&used)),
                pretty(&mask(&hard)),
            ));
        }
        charges.push(Charge {
            quota: i,
            used: new_used
                .into_iter()
                .map(|(k, v)| (k, Quantity(v.canonical())))
                .collect(),
        });
    }
    Ok(charges)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSpec, PodStatus, ResourceRequirements, ScopeSelector};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn canon(s: &str) -> String {
        Amount::parse(s).unwrap().canonical()
    }

    fn sum(items: &[&str]) -> String {
        let mut a = Amount::ZERO;
        for i in items {
            a.add(Amount::parse(i).unwrap());
        }
        a.canonical()
    }

    #[test]
    fn quantities_print_in_canonical_form() {
        assert_eq!(canon("500m"), "500m");
        assert_eq!(canon("1000m"), "1");
        assert_eq!(canon("1500m"), "1500m");
        assert_eq!(canon("0.5"), "500m");
        assert_eq!(canon("100M"), "100M");
        assert_eq!(canon("1000000"), "1M");
        assert_eq!(canon("1024Mi"), "1Gi");
        assert_eq!(canon("1.5Gi"), "1536Mi");
        assert_eq!(canon("512"), "512");
        assert_eq!(canon("0.5Ki"), "512");
        assert_eq!(canon("2e3"), "2e3");
        assert_eq!(canon("0"), "0");
        assert_eq!(canon("1n"), "1n");
        assert_eq!(canon("0.1m"), "100u");
        assert!(Amount::parse("1.2.3").is_none());
        assert!(Amount::parse("abc").is_none());
    }

    #[test]
    fn sums_keep_the_format_of_the_first_non_zero_amount() {
        assert_eq!(sum(&["250m", "250m"]), "500m");
        assert_eq!(sum(&["500m", "500m", "1"]), "2");
        assert_eq!(sum(&["64Mi", "64Mi"]), "128Mi");
        assert_eq!(sum(&["1Gi", "512Mi"]), "1536Mi");
        assert_eq!(sum(&["100M", "1Gi"]), "1173741824");
        assert_eq!(sum(&["0", "128Mi"]), "128Mi");
    }

    fn pod(cpu: Option<&str>, mem_limit: Option<&str>, phase: &str) -> Pod {
        let q = |v: &str| Quantity(v.into());
        Pod {
            metadata: ObjectMeta::default(),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    resources: Some(ResourceRequirements {
                        requests: cpu.map(|c| [("cpu".to_string(), q(c))].into()),
                        limits: mem_limit.map(|m| [("memory".to_string(), q(m))].into()),
                        ..ResourceRequirements::default()
                    }),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                ..PodStatus::default()
            }),
        }
    }

    #[test]
    fn pod_usage_counts_compute_resources_of_unfinished_pods_only() {
        let now = Timestamp::from_second(1000).unwrap();
        let u = pod_usage(&pod(Some("250m"), Some("64Mi"), "Running"), now);
        assert_eq!(u["pods"].canonical(), "1");
        assert_eq!(u["requests.cpu"].canonical(), "250m");
        assert_eq!(u["cpu"].canonical(), "250m");
        assert_eq!(u["limits.memory"].canonical(), "64Mi");
        assert!(!u.contains_key("requests.memory"));
        let done = pod_usage(&pod(Some("250m"), None, "Succeeded"), now);
        assert_eq!(done.keys().collect::<Vec<_>>(), ["count/pods"]);
        // Past its grace period a deleting pod is no longer charged.
        let mut stuck = pod(Some("1"), None, "Running");
        stuck.metadata.deletion_timestamp = Some(Time(Timestamp::from_second(900).unwrap()));
        stuck.metadata.deletion_grace_period_seconds = Some(30);
        assert!(!charged(&stuck, now));
    }

    #[test]
    fn init_containers_count_as_their_maximum() {
        let mut p = pod(Some("100m"), None, "Running");
        let mut init = p.spec.as_ref().unwrap().containers[0].clone();
        init.resources.as_mut().unwrap().requests =
            Some([("cpu".to_string(), Quantity("500m".into()))].into());
        p.spec.as_mut().unwrap().init_containers = Some(vec![init.clone()]);
        assert_eq!(pod_resources(&p, false)["cpu"].canonical(), "500m");
        // A sidecar adds to the app containers.
        init.restart_policy = Some("Always".into());
        p.spec.as_mut().unwrap().init_containers = Some(vec![init]);
        assert_eq!(pod_resources(&p, false)["cpu"].canonical(), "600m");
    }

    #[test]
    fn scopes_select_pods() {
        let best_effort = pod(None, None, "Running");
        let burstable = pod(Some("1"), None, "Running");
        let req = |name: &str| ScopedResourceSelectorRequirement {
            scope_name: name.into(),
            operator: "Exists".into(),
            values: None,
        };
        assert!(pod_matches_scope(&best_effort, &req("BestEffort")));
        assert!(!pod_matches_scope(&burstable, &req("BestEffort")));
        assert!(pod_matches_scope(&burstable, &req("NotBestEffort")));
        assert!(pod_matches_scope(&burstable, &req("NotTerminating")));
        let mut deadline = burstable.clone();
        deadline.spec.as_mut().unwrap().active_deadline_seconds = Some(60);
        assert!(pod_matches_scope(&deadline, &req("Terminating")));
        let mut high = burstable.clone();
        high.spec.as_mut().unwrap().priority_class_name = Some("high".into());
        let class = |op: &str, v: &[&str]| ScopedResourceSelectorRequirement {
            scope_name: "PriorityClass".into(),
            operator: op.into(),
            values: Some(v.iter().map(|s| s.to_string()).collect()),
        };
        assert!(pod_matches_scope(&high, &class("In", &["high"])));
        assert!(!pod_matches_scope(&burstable, &class("In", &["high"])));
        assert!(pod_matches_scope(&burstable, &class("NotIn", &["high"])));
        assert!(pod_matches_scope(&high, &req("PriorityClass")));
        assert!(!pod_matches_scope(&burstable, &req("PriorityClass")));
    }

    #[test]
    fn object_count_names_map_to_resources() {
        assert_eq!(
            object_count_resource("count/deployments.apps"),
            Some(("apps".into(), "deployments".into()))
        );
        assert_eq!(
            object_count_resource("configmaps"),
            Some((String::new(), "configmaps".into()))
        );
        assert_eq!(object_count_resource("count/pods"), None);
        assert_eq!(object_count_resource("requests.cpu"), None);
    }

    #[test]
    fn services_count_node_ports_and_load_balancers() {
        let svc: Service = serde_json::from_value(serde_json::json!({
            "spec": {"type": "LoadBalancer", "ports": [{"port": 80}, {"port": 443}]}
        }))
        .unwrap();
        let u = service_usage(&svc);
        assert_eq!(u["services.nodeports"].canonical(), "2");
        assert_eq!(u["services.loadbalancers"].canonical(), "1");
    }

    fn quota(name: &str, hard: &[(&str, &str)], used: Option<&[(&str, &str)]>) -> ResourceQuota {
        let list = |l: &[(&str, &str)]| -> serde_json::Value {
            l.iter()
                .map(|(k, v)| (k.to_string(), serde_json::json!(v)))
                .collect::<serde_json::Map<_, _>>()
                .into()
        };
        let mut status = serde_json::json!({"hard": list(hard)});
        if let Some(u) = used {
            status["used"] = list(u);
        }
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {"hard": list(hard)},
            "status": status,
        }))
        .unwrap()
    }

    fn pod_json(cpu: Option<&str>) -> serde_json::Value {
        let mut c = serde_json::json!({"name": "c", "image": "busybox"});
        if let Some(cpu) = cpu {
            c["resources"] = serde_json::json!({"requests": {"cpu": cpu}});
        }
        serde_json::json!({"metadata": {"name": "p"}, "spec": {"containers": [c]}})
    }

    #[test]
    fn the_last_slot_is_refused_with_upstreams_message() {
        let q = [quota("q", &[("pods", "2")], Some(&[("pods", "2")]))];
        let err = check(
            &q,
            &Evaluator::Pods,
            &pod_json(None),
            None,
            Timestamp::UNIX_EPOCH,
        )
        .unwrap_err();
        assert_eq!(
            err,
            "exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2"
        );
        let q = [quota("q", &[("pods", "2")], Some(&[("pods", "1")]))];
        let charges = check(
            &q,
            &Evaluator::Pods,
            &pod_json(None),
            None,
            Timestamp::UNIX_EPOCH,
        )
        .unwrap();
        assert_eq!(charges.len(), 1);
        assert_eq!(charges[0].used["pods"].0, "2");
    }

    #[test]
    fn compute_quotas_require_containers_to_set_them() {
        let q = [quota(
            "q",
            &[("requests.cpu", "1"), ("limits.memory", "1Gi")],
            Some(&[("requests.cpu", "0"), ("limits.memory", "0")]),
        )];
        let err = check(
            &q,
            &Evaluator::Pods,
            &pod_json(None),
            None,
            Timestamp::UNIX_EPOCH,
        )
        .unwrap_err();
        assert_eq!(
            err,
            "failed quota: q: must specify limits.memory for: c; requests.cpu for: c"
        );
        let q = [quota(
            "q",
            &[("requests.cpu", "1")],
            Some(&[("requests.cpu", "700m")]),
        )];
        let err = check(
            &q,
            &Evaluator::Pods,
            &pod_json(Some("500m")),
            None,
            Timestamp::UNIX_EPOCH,
        )
        .unwrap_err();
        assert_eq!(
            err,
            "exceeded quota: q, requested: requests.cpu=500m, used: requests.cpu=700m, limited: requests.cpu=1"
        );
        let charges = check(
            &q,
            &Evaluator::Pods,
            &pod_json(Some("300m")),
            None,
            Timestamp::UNIX_EPOCH,
        )
        .unwrap();
        assert_eq!(charges[0].used["requests.cpu"].0, "1");
    }

    #[test]
    fn a_quota_without_status_refuses_what_it_tracks() {
        let q = [quota("q", &[("pods", "5")], None)];
        let err = check(
            &q,
            &Evaluator::Pods,
            &pod_json(None),
            None,
            Timestamp::UNIX_EPOCH,
        )
        .unwrap_err();
        assert_eq!(err, "status unknown for quota: q, resources: pods");
        // A quota tracking nothing of the object's kind is not consulted.
        let cm = serde_json::json!({"metadata": {"name": "x"}});
        let ev = Evaluator::for_resource("", "configmaps").unwrap();
        assert_eq!(check(&q, &ev, &cm, None, Timestamp::UNIX_EPOCH), Ok(vec![]));
    }

    fn claim_json(
        class: Option<&str>,
        current: Option<&str>,
        target: Option<&str>,
    ) -> serde_json::Value {
        let mut pvc = serde_json::json!({
            "metadata": {"name": "c", "namespace": "ns", "resourceVersion": "1"},
            "spec": {"resources": {"requests": {"storage": "1Gi"}}},
            "status": {},
        });
        if let Some(c) = class {
            pvc["spec"]["volumeAttributesClassName"] = c.into();
        }
        if let Some(c) = current {
            pvc["status"]["currentVolumeAttributesClassName"] = c.into();
        }
        if let Some(t) = target {
            pvc["status"]["modifyVolumeStatus"] =
                serde_json::json!({"status": "InProgress", "targetVolumeAttributesClassName": t});
        }
        pvc
    }

    #[test]
    fn the_volume_attributes_class_scope_selects_claims_by_every_class_they_name() {
        let req = |op: &str, values: &[&str]| ScopedResourceSelectorRequirement {
            scope_name: "VolumeAttributesClass".into(),
            operator: op.into(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
        };
        let claim = |class, current, target| -> PersistentVolumeClaim {
            serde_json::from_value(claim_json(class, current, target)).unwrap()
        };
        let plain = claim(None, None, None);
        let gold = claim(Some("gold"), None, None);
        // Moving from silver to gold: both classes count.
        let moving = claim(Some("gold"), Some("silver"), Some("gold"));
        assert_eq!(claim_attributes_classes(&moving), ["gold", "silver"]);
        assert!(!claim_matches_scope(&plain, &req("Exists", &[])));
        assert!(claim_matches_scope(&gold, &req("Exists", &[])));
        assert!(claim_matches_scope(&plain, &req("DoesNotExist", &[])));
        assert!(!claim_matches_scope(&gold, &req("DoesNotExist", &[])));
        assert!(claim_matches_scope(&gold, &req("In", &["gold"])));
        assert!(!claim_matches_scope(&plain, &req("In", &["gold"])));
        assert!(claim_matches_scope(&moving, &req("In", &["silver"])));
        assert!(claim_matches_scope(&plain, &req("NotIn", &["gold"])));
        assert!(!claim_matches_scope(&gold, &req("NotIn", &["gold"])));
        assert!(claim_matches_scope(&moving, &req("NotIn", &["gold"])));
        // Other scopes select no claim, and this one selects no pod.
        let best_effort = ScopedResourceSelectorRequirement {
            scope_name: "BestEffort".into(),
            operator: "Exists".into(),
            values: None,
        };
        assert!(!claim_matches_scope(&plain, &best_effort));
        let pod: Pod = serde_json::from_value(pod_json(None)).unwrap();
        assert!(!pod_matches_scope(&pod, &req("DoesNotExist", &[])));
    }

    #[test]
    fn claims_entering_a_class_scoped_quota_are_charged_in_full() {
        let mut q = quota(
            "gold",
            &[("persistentvolumeclaims", "1"), ("requests.storage", "5Gi")],
            Some(&[("persistentvolumeclaims", "1"), ("requests.storage", "1Gi")]),
        );
        q.spec.as_mut().unwrap().scope_selector = Some(ScopeSelector {
            match_expressions: Some(vec![ScopedResourceSelectorRequirement {
                scope_name: "VolumeAttributesClass".into(),
                operator: "In".into(),
                values: Some(vec!["gold".into()]),
            }]),
        });
        let q = [q];
        let now = Timestamp::UNIX_EPOCH;
        // A claim without the class is not this quota's business.
        assert_eq!(
            check(
                &q,
                &Evaluator::Claims,
                &claim_json(None, None, None),
                None,
                now
            ),
            Ok(vec![])
        );
        let exceeded = "exceeded quota: gold, requested: persistentvolumeclaims=1, used: \
                        persistentvolumeclaims=1, limited: persistentvolumeclaims=1";
        assert_eq!(
            check(
                &q,
                &Evaluator::Claims,
                &claim_json(Some("gold"), None, None),
                None,
                now
            ),
            Err(exceeded.to_string())
        );
        // Switching an existing claim to gold charges all of it there, not the (zero) growth.
        assert_eq!(
            check(
                &q,
                &Evaluator::Claims,
                &claim_json(Some("gold"), None, None),
                Some(&claim_json(Some("silver"), None, None)),
                now
            ),
            Err(exceeded.to_string())
        );
        // A claim already in gold that does not grow is charged nothing.
        assert_eq!(
            check(
                &q,
                &Evaluator::Claims,
                &claim_json(Some("gold"), None, None),
                Some(&claim_json(Some("gold"), None, None)),
                now
            ),
            Ok(vec![])
        );
    }

    #[test]
    fn scopes_pick_the_pods_a_quota_charges() {
        let mut q = quota("be", &[("pods", "1")], Some(&[("pods", "1")]));
        q.spec.as_mut().unwrap().scopes = Some(vec!["BestEffort".into()]);
        let q = [q];
        // Full for best-effort pods, but a pod with requests is not best-effort.
        assert!(
            check(
                &q,
                &Evaluator::Pods,
                &pod_json(None),
                None,
                Timestamp::UNIX_EPOCH
            )
            .is_err()
        );
        assert_eq!(
            check(
                &q,
                &Evaluator::Pods,
                &pod_json(Some("1")),
                None,
                Timestamp::UNIX_EPOCH
            ),
            Ok(vec![])
        );
    }

    #[test]
    fn object_counts_use_the_legacy_and_count_names() {
        let ev = Evaluator::for_resource("", "configmaps").unwrap();
        let cm = serde_json::json!({"metadata": {"name": "x"}});
        let q = [quota(
            "q",
            &[("configmaps", "1"), ("count/configmaps", "5")],
            Some(&[("configmaps", "1"), ("count/configmaps", "1")]),
        )];
        assert_eq!(
            check(&q, &ev, &cm, None, Timestamp::UNIX_EPOCH).unwrap_err(),
            "exceeded quota: q, requested: configmaps=1, used: configmaps=1, limited: configmaps=1"
        );
        let deployments = Evaluator::for_resource("apps", "deployments").unwrap();
        assert!(deployments.tracks("count/deployments.apps"));
        assert!(!deployments.tracks("count/deployments"));
        assert_eq!(Evaluator::for_resource("", "events"), None);
        assert!(!ev.handles_update());
    }

    #[test]
    fn a_service_update_is_charged_its_growth() {
        let q = [quota(
            "q",
            &[("services", "1"), ("services.nodeports", "1")],
            Some(&[("services", "1"), ("services.nodeports", "1")]),
        )];
        let old = serde_json::json!({"spec": {"type": "ClusterIP", "ports": [{"port": 80}]}});
        let same = old.clone();
        assert_eq!(
            check(
                &q,
                &Evaluator::Services,
                &same,
                Some(&old),
                Timestamp::UNIX_EPOCH
            ),
            Ok(vec![])
        );
        let node_port = serde_json::json!({"spec": {"type": "NodePort", "ports": [{"port": 80}]}});
        assert_eq!(
            check(
                &q,
                &Evaluator::Services,
                &node_port,
                Some(&old),
                Timestamp::UNIX_EPOCH
            )
            .unwrap_err(),
            "exceeded quota: q, requested: services.nodeports=1, used: services.nodeports=1, limited: services.nodeports=1"
        );
    }
}
