//! The Service endpoint controllers: upstream's endpoints controller
//! (`pkg/controller/endpoint`), its endpointslice controller (`pkg/controller/endpointslice`
//! with the staging `endpointslice` reconciler) and its endpointslicemirroring controller, run
//! as one sync per Service key.
//!
//! - A Service with a selector gets an Endpoints object of the same name (ready `addresses`,
//!   `notReadyAddresses`, ports resolved per pod from named `targetPort`s) and EndpointSlices
//!   managed by `endpointslice-controller.k8s.io` (at most 100 endpoints each, one set per
//!   distinct port list, terminating pods kept with `terminating: true`).
//! - A Service without a selector leaves its Endpoints to the user; they are mirrored into
//!   slices managed by `endpointslicemirroring-controller.k8s.io` unless labelled
//!   `endpointslice.kubernetes.io/skip-mirror`.
//! - `default/kubernetes`, whose Endpoints the API server writes (with skip-mirror), gets the
//!   EndpointSlice `kubernetes` that upstream's API server writes next to them
//!   (`EndpointsAdapter`).
//!
//! Objects are written only when they differ from what the caches hold; slices this process
//! wrote are tracked until the slice cache has seen them (upstream's `EndpointSliceTracker`),
//! so a stale cache never makes a second slice.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Node, ObjectReference, Pod, Service,
    ServicePort,
};
use k8s_openapi::api::discovery::v1::{
    Endpoint, EndpointConditions, EndpointPort as SlicePort, EndpointSlice,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, PostParams};
use kube::{Client, ResourceExt};

use super::informer::{
    Change, Informer, Requeue, WorkQueue, ignore_gone, key_of, lock, run_workers, split_key,
};
use super::replicaset::{is_ready, owner_ref};

/// Concurrent syncs (upstream's `--concurrent-service-endpoint-syncs`).
const WORKERS: usize = 5;
/// Upstream's `maxEndpointsPerSlice` default (`--max-endpoints-per-slice`).
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;
/// Upstream's `maxCapacity`: an Endpoints object holds at most this many addresses.
pub const MAX_ENDPOINTS_ADDRESSES: usize = 1000;

pub const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";
pub const LABEL_MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
pub const LABEL_SKIP_MIRROR: &str = "endpointslice.kubernetes.io/skip-mirror";
pub const LABEL_HEADLESS: &str = "service.kubernetes.io/headless";
pub const LABEL_ZONE: &str = "topology.kubernetes.io/zone";
pub const TRIGGER_TIME: &str = "endpoints.kubernetes.io/last-change-trigger-time";
pub const OVER_CAPACITY: &str = "endpoints.kubernetes.io/over-capacity";
/// The `managed-by` value of slices made from pods.
pub const SLICE_CONTROLLER: &str = "endpointslice-controller.k8s.io";
/// The `managed-by` value of slices mirrored from user-managed Endpoints.
pub const MIRROR_CONTROLLER: &str = "endpointslicemirroring-controller.k8s.io";

// ---- pure decisions ----

/// Upstream's `podutil.FindPort`: a named target port is looked up among the pod's container
/// ports (name and protocol must match; restartable init containers count too), a number is
/// used as it is, and a missing one means the Service port itself.
pub fn find_port(pod: &Pod, port: &ServicePort) -> Option<i32> {
    match &port.target_port {
        Some(IntOrString::String(name)) => {
            let protocol = port.protocol.as_deref().unwrap_or("TCP");
            let spec = pod.spec.as_ref()?;
            let sidecars = spec
                .init_containers
                .iter()
                .flatten()
                .filter(|c| c.restart_policy.as_deref() == Some("Always"));
            spec.containers
                .iter()
                .chain(sidecars)
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| {
                    p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == protocol
                })
                .map(|p| p.container_port)
        }
        Some(IntOrString::Int(n)) if *n != 0 => Some(*n),
        _ => Some(port.port),
    }
}

/// Upstream's `endpointsliceutil.ShouldPodBeInEndpoints`: a pod with an IP that has not
/// finished (a Succeeded pod is finished under OnFailure too), and not being deleted unless
/// `include_terminating`.
pub fn should_be_in_endpoints(pod: &Pod, include_terminating: bool) -> bool {
    let ip = pod.status.as_ref().and_then(|s| s.pod_ip.as_deref());
    if ip.is_none_or(str::is_empty) {
        return false;
    }
    if !include_terminating && pod.metadata.deletion_timestamp.is_some() {
        return false;
    }
    !matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

fn is_headless(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

fn publish_not_ready(svc: &Service) -> bool {
    svc.spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false)
}

fn service_ports(svc: &Service) -> &[ServicePort] {
    svc.spec
        .as_ref()
        .and_then(|s| s.ports.as_deref())
        .unwrap_or_default()
}

/// The selector of a Service, `None` when it has none (user-managed endpoints).
pub fn service_selector(svc: &Service) -> Option<&BTreeMap<String, String>> {
    svc.spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .filter(|s| !s.is_empty())
}

/// Whether the Service selects the pod (same namespace, every selector label matches).
pub fn service_selects(svc: &Service, pod: &Pod) -> bool {
    svc.metadata.namespace == pod.metadata.namespace
        && service_selector(svc).is_some_and(|sel| {
            let labels = pod.labels();
            sel.iter().all(|(k, v)| labels.get(k) == Some(v))
        })
}

/// Upstream's `ShouldSetHostname`: the pod's hostname is published when its subdomain is the
/// Service's name (the headless-Service DNS records of StatefulSets).
fn hostname_for(pod: &Pod, svc: &Service) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let hostname = spec.hostname.as_deref().filter(|h| !h.is_empty())?;
    (spec.subdomain.as_deref() == svc.metadata.name.as_deref()
        && pod.metadata.namespace == svc.metadata.namespace)
        .then(|| hostname.to_string())
}

fn pod_ref(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        ..ObjectReference::default()
    }
}

fn pod_ip(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.pod_ip.as_deref())
        .unwrap_or_default()
}

/// The labels upstream puts on a Service's Endpoints: the Service's own, plus
/// `service.kubernetes.io/headless` for headless Services.
fn endpoints_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut labels = svc.labels().clone();
    if is_headless(svc) {
        labels.insert(LABEL_HEADLESS.into(), String::new());
    } else {
        labels.remove(LABEL_HEADLESS);
    }
    labels
}

/// The Endpoints a Service with a selector should have (upstream's `syncService` followed by
/// `RepackSubsets`): every pod with an IP, ready ones (or all with `publishNotReadyAddresses`)
/// under `addresses` and the others under `notReadyAddresses`, grouped into subsets by their
/// resolved ports. More than 1000 addresses are truncated (ready ones kept first) and marked
/// with the over-capacity annotation. Metadata other than name, namespace, labels and that
/// annotation is left to the caller.
pub fn desired_endpoints(svc: &Service, pods: &[Arc<Pod>]) -> Endpoints {
    let tolerate_unready = publish_not_ready(svc);
    let ports = service_ports(svc);
    // ports (sorted for grouping) → (ports, (ready, not ready) addresses).
    type Group = (Vec<EndpointAddress>, Vec<EndpointAddress>);
    type PortKey = Vec<(String, i32, String)>;
    let mut groups: BTreeMap<PortKey, (Vec<EndpointPort>, Group)> = BTreeMap::new();
    for pod in pods {
        if !should_be_in_endpoints(pod, tolerate_unready) {
            continue;
        }
        let address = EndpointAddress {
            ip: pod_ip(pod).to_string(),
            hostname: hostname_for(pod, svc),
            node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            target_ref: Some(pod_ref(pod)),
        };
        let resolved: Vec<EndpointPort> = ports
            .iter()
            .filter_map(|p| {
                find_port(pod, p).map(|n| EndpointPort {
                    name: p.name.clone().filter(|n| !n.is_empty()),
                    port: n,
                    protocol: Some(p.protocol.clone().unwrap_or_else(|| "TCP".into())),
                    app_protocol: p.app_protocol.clone(),
                })
            })
            .collect();
        // A Service with ports but none that resolves for this pod lists nothing for it; a
        // headless Service without ports lists the address alone.
        if resolved.is_empty() && !(ports.is_empty() && is_headless(svc)) {
            continue;
        }
        let mut key: Vec<(String, i32, String)> = resolved
            .iter()
            .map(|p| {
                (
                    p.name.clone().unwrap_or_default(),
                    p.port,
                    p.protocol.clone().unwrap_or_default(),
                )
            })
            .collect();
        key.sort();
        let entry = groups.entry(key).or_insert_with(|| {
            let mut sorted = resolved.clone();
            sorted.sort_by(|a, b| (&a.name, a.port).cmp(&(&b.name, b.port)));
            (sorted, Group::default())
        });
        if tolerate_unready || is_ready(pod) {
            entry.1.0.push(address);
        } else {
            entry.1.1.push(address);
        }
    }
    // Upstream's over-capacity truncation: ready addresses are kept before not-ready ones.
    let total: usize = groups.values().map(|(_, (r, n))| r.len() + n.len()).sum();
    let mut budget = MAX_ENDPOINTS_ADDRESSES;
    for (_, (ready, _)) in groups.values_mut() {
        ready.truncate(budget);
        budget -= ready.len();
    }
    for (_, (_, not_ready)) in groups.values_mut() {
        not_ready.truncate(budget);
        budget -= not_ready.len();
    }
    let by_address = |a: &EndpointAddress, b: &EndpointAddress| {
        let uid = |x: &EndpointAddress| x.target_ref.as_ref().and_then(|r| r.uid.clone());
        (&a.ip, uid(a)).cmp(&(&b.ip, uid(b)))
    };
    let subsets: Vec<EndpointSubset> = groups
        .into_values()
        .filter(|(_, (r, n))| !r.is_empty() || !n.is_empty())
        .map(|(ports, (mut ready, mut not_ready))| {
            ready.sort_by(by_address);
            not_ready.sort_by(by_address);
            EndpointSubset {
                addresses: (!ready.is_empty()).then_some(ready),
                not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
                ports: (!ports.is_empty()).then_some(ports),
            }
        })
        .collect();
    let annotations = (total > MAX_ENDPOINTS_ADDRESSES)
        .then(|| BTreeMap::from([(OVER_CAPACITY.to_string(), "truncated".to_string())]));
    Endpoints {
        metadata: ObjectMeta {
            name: svc.metadata.name.clone(),
            namespace: svc.metadata.namespace.clone(),
            labels: Some(endpoints_labels(svc)),
            annotations,
            ..ObjectMeta::default()
        },
        subsets: (!subsets.is_empty()).then_some(subsets),
    }
}

/// Whether `current` must be rewritten to become `desired` (upstream compares subsets, labels
/// and the over-capacity annotation, never the trigger time).
pub fn endpoints_differ(current: &Endpoints, desired: &Endpoints) -> bool {
    let empty = |s: &Option<Vec<EndpointSubset>>| s.as_ref().is_none_or(|s| s.is_empty());
    let subsets_differ = if empty(&current.subsets) && empty(&desired.subsets) {
        false
    } else {
        current.subsets != desired.subsets
    };
    let over = |e: &Endpoints| e.annotations().get(OVER_CAPACITY).cloned();
    subsets_differ || current.labels() != desired.labels() || over(current) != over(desired)
}

/// Upstream's trigger time for a sync: the last change of the Service or of a pod it selects
/// (the Ready condition's transition, else the pod's creation).
pub fn trigger_time(svc: &Service, pods: &[Arc<Pod>]) -> Option<Timestamp> {
    let pod_time = |p: &Arc<Pod>| {
        p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
            .and_then(|c| c.last_transition_time.as_ref())
            .or(p.metadata.creation_timestamp.as_ref())
            .map(|t| t.0)
    };
    pods.iter()
        .filter_map(pod_time)
        .chain(svc.metadata.creation_timestamp.as_ref().map(|t| t.0))
        .max()
}

/// One set of slices: endpoints that share an address type and a port list.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SliceGroup {
    pub address_type: String,
    pub ports: Vec<SlicePort>,
    /// By the endpoint's first address.
    pub endpoints: BTreeMap<String, Endpoint>,
}

fn group_key(address_type: &str, ports: &[SlicePort]) -> String {
    let mut parts: Vec<String> = ports
        .iter()
        .map(|p| {
            format!(
                "{}/{}/{}/{}",
                p.name.as_deref().unwrap_or_default(),
                p.protocol.as_deref().unwrap_or("TCP"),
                p.port.unwrap_or_default(),
                p.app_protocol.as_deref().unwrap_or_default()
            )
        })
        .collect();
    parts.sort();
    format!("{address_type}|{}", parts.join(","))
}

fn address_type(ip: &str) -> Option<&'static str> {
    match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => Some("IPv4"),
        Ok(std::net::IpAddr::V6(_)) => Some("IPv6"),
        Err(_) => None,
    }
}

/// Upstream's `podToEndpoint`: serving is readiness (or `publishNotReadyAddresses`), a pod
/// with a deletionTimestamp is terminating and then never ready, unless the Service
/// publishes not-ready addresses.
pub fn pod_endpoint(svc: &Service, pod: &Pod, zone: Option<String>) -> Endpoint {
    let serving = publish_not_ready(svc) || is_ready(pod);
    let terminating = pod.metadata.deletion_timestamp.is_some();
    let ready = publish_not_ready(svc) || (serving && !terminating);
    Endpoint {
        addresses: vec![pod_ip(pod).to_string()],
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        hostname: hostname_for(pod, svc),
        node_name: pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty()),
        target_ref: Some(pod_ref(pod)),
        zone,
        ..Endpoint::default()
    }
}

/// The slice groups of a Service with a selector (upstream's endpointslice `syncService`):
/// every pod with an IPv4 address, terminating ones included, grouped by its resolved ports,
/// which are named as the Service's ports. `zone_of` gives a node's zone label.
pub fn desired_slice_groups(
    svc: &Service,
    pods: &[Arc<Pod>],
    zone_of: impl Fn(&str) -> Option<String>,
) -> BTreeMap<String, SliceGroup> {
    let mut groups: BTreeMap<String, SliceGroup> = BTreeMap::new();
    for pod in pods {
        if !should_be_in_endpoints(pod, true) || address_type(pod_ip(pod)) != Some("IPv4") {
            continue;
        }
        let ports: Vec<SlicePort> = service_ports(svc)
            .iter()
            .filter_map(|p| {
                find_port(pod, p).map(|n| SlicePort {
                    name: Some(p.name.clone().unwrap_or_default()),
                    port: Some(n),
                    protocol: Some(p.protocol.clone().unwrap_or_else(|| "TCP".into())),
                    app_protocol: p.app_protocol.clone(),
                })
            })
            .collect();
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .unwrap_or_default();
        let zone = (!node.is_empty()).then(|| zone_of(node)).flatten();
        let endpoint = pod_endpoint(svc, pod, zone);
        let group = groups
            .entry(group_key("IPv4", &ports))
            .or_insert_with(|| SliceGroup {
                address_type: "IPv4".into(),
                ports,
                endpoints: BTreeMap::new(),
            });
        group.endpoints.insert(pod_ip(pod).to_string(), endpoint);
    }
    groups
}

/// The slice groups mirrored from user-managed Endpoints (upstream's endpointslicemirroring
/// controller): one group per subset's ports and address type; ready addresses are
/// `ready: true`, not-ready ones `ready: false`; at most 1000 addresses are mirrored.
pub fn mirrored_slice_groups(endpoints: &Endpoints) -> BTreeMap<String, SliceGroup> {
    let mut groups: BTreeMap<String, SliceGroup> = BTreeMap::new();
    let mut budget = MAX_ENDPOINTS_ADDRESSES;
    for subset in endpoints.subsets.iter().flatten() {
        let ports: Vec<SlicePort> = subset
            .ports
            .iter()
            .flatten()
            .map(|p| SlicePort {
                name: Some(p.name.clone().unwrap_or_default()),
                port: Some(p.port),
                protocol: Some(p.protocol.clone().unwrap_or_else(|| "TCP".into())),
                app_protocol: p.app_protocol.clone(),
            })
            .collect();
        let addresses = subset.addresses.iter().flatten().map(|a| (a, true)).chain(
            subset
                .not_ready_addresses
                .iter()
                .flatten()
                .map(|a| (a, false)),
        );
        for (a, ready) in addresses {
            let Some(kind) = address_type(&a.ip) else {
                continue;
            };
            if budget == 0 {
                break;
            }
            budget -= 1;
            let group = groups
                .entry(group_key(kind, &ports))
                .or_insert_with(|| SliceGroup {
                    address_type: kind.into(),
                    ports: ports.clone(),
                    endpoints: BTreeMap::new(),
                });
            group.endpoints.insert(
                a.ip.clone(),
                Endpoint {
                    addresses: vec![a.ip.clone()],
                    conditions: Some(EndpointConditions {
                        ready: Some(ready),
                        ..EndpointConditions::default()
                    }),
                    hostname: a.hostname.clone(),
                    node_name: a.node_name.clone(),
                    target_ref: a.target_ref.clone(),
                    ..Endpoint::default()
                },
            );
        }
    }
    groups
}

/// The EndpointSlice upstream's API server writes next to the `kubernetes` Endpoints
/// (`EndpointsAdapter.EnsureEndpointSliceFromEndpoints`): same name, the service-name label,
/// every address ready.
pub fn apiserver_slice(endpoints: &Endpoints) -> EndpointSlice {
    let groups = mirrored_slice_groups(endpoints);
    let (ports, endpoints_list) = groups
        .into_values()
        .next()
        .map(|g| (g.ports, g.endpoints.into_values().collect()))
        .unwrap_or_default();
    let name = endpoints.name_any();
    EndpointSlice {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: endpoints.metadata.namespace.clone(),
            labels: Some(BTreeMap::from([(LABEL_SERVICE_NAME.to_string(), name)])),
            ..ObjectMeta::default()
        },
        address_type: "IPv4".into(),
        endpoints: endpoints_list,
        ports: Some(ports),
    }
}

/// What a set of slices is made from: their labels, owner and name prefix.
#[derive(Clone, Debug)]
pub struct SliceTemplate {
    pub namespace: String,
    pub generate_name: String,
    pub labels: BTreeMap<String, String>,
    pub owner: OwnerReference,
}

/// The writes that turn the existing slices into the desired ones.
#[derive(Debug, Default)]
pub struct SlicePlan {
    pub create: Vec<EndpointSlice>,
    pub update: Vec<EndpointSlice>,
    pub delete: Vec<String>,
}

impl SlicePlan {
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.update.is_empty() && self.delete.is_empty()
    }
}

fn slice_key(slice: &EndpointSlice) -> String {
    group_key(
        &slice.address_type,
        slice.ports.as_deref().unwrap_or_default(),
    )
}

fn endpoint_id(e: &Endpoint) -> String {
    e.addresses.first().cloned().unwrap_or_default()
}

/// Upstream's endpointslice reconciler (`reconcileByAddressType`), simplified but with the
/// same aims: endpoints stay in the slice they are in (updated in place when they change),
/// gone ones are removed, empty slices deleted, new endpoints fill slices that are being
/// updated anyway, then new slices of `max` endpoints, and a last partial batch goes into an
/// unchanged slice with room before a new slice is made. With `placeholder`, a Service with
/// no endpoints at all keeps one empty slice (upstream's placeholder slice).
pub fn plan_slices(
    existing: &[Arc<EndpointSlice>],
    desired: BTreeMap<String, SliceGroup>,
    template: &SliceTemplate,
    placeholder: bool,
    max: usize,
) -> SlicePlan {
    let mut plan = SlicePlan::default();
    let mut desired = desired;
    let placeholder_key = group_key("IPv4", &[]);
    let want_placeholder = placeholder && desired.values().all(|g| g.endpoints.is_empty());
    if want_placeholder {
        desired.clear();
        desired.insert(
            placeholder_key.clone(),
            SliceGroup {
                address_type: "IPv4".into(),
                ..SliceGroup::default()
            },
        );
    }
    let mut have_placeholder = false;
    let mut existing: Vec<&Arc<EndpointSlice>> = existing.iter().collect();
    existing.sort_by_key(|s| s.name_any());
    // (slice, its new endpoints, changed?)
    let mut kept: Vec<(EndpointSlice, bool)> = Vec::new();
    for slice in existing {
        let key = slice_key(slice);
        let Some(group) = desired.get_mut(&key) else {
            plan.delete.push(slice.name_any());
            continue;
        };
        let endpoints: Vec<Endpoint> = slice
            .endpoints
            .iter()
            .filter_map(|e| group.endpoints.remove(&endpoint_id(e)))
            .collect();
        if endpoints.is_empty() {
            if want_placeholder && !have_placeholder {
                have_placeholder = true;
            } else {
                plan.delete.push(slice.name_any());
                continue;
            }
        }
        let changed = endpoints != slice.endpoints
            || slice.labels() != &template.labels
            || slice.ports.as_deref().unwrap_or_default() != group.ports.as_slice();
        let mut next = (**slice).clone();
        next.endpoints = endpoints;
        next.ports = Some(group.ports.clone());
        next.metadata.labels = Some(template.labels.clone());
        kept.push((next, changed));
    }
    let new_slice = |group: &SliceGroup, endpoints: Vec<Endpoint>| EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(template.generate_name.clone()),
            namespace: Some(template.namespace.clone()),
            labels: Some(template.labels.clone()),
            owner_references: Some(vec![template.owner.clone()]),
            ..ObjectMeta::default()
        },
        address_type: group.address_type.clone(),
        endpoints,
        ports: Some(group.ports.clone()),
    };
    for (key, group) in &desired {
        let mut left: Vec<Endpoint> = group.endpoints.values().cloned().collect();
        // 1. Slices that are written anyway take what fits.
        for (slice, changed) in kept.iter_mut() {
            if left.is_empty() {
                break;
            }
            if *changed && slice_key(slice) == *key && slice.endpoints.len() < max {
                let room = (max - slice.endpoints.len()).min(left.len());
                slice.endpoints.extend(left.drain(..room));
            }
        }
        // 2. Full new slices.
        while left.len() >= max {
            let chunk: Vec<Endpoint> = left.drain(..max).collect();
            plan.create.push(new_slice(group, chunk));
        }
        // 3. The rest into an unchanged slice with room, else a new slice.
        if !left.is_empty() {
            let fits = kept.iter_mut().find(|(s, changed)| {
                !*changed && slice_key(s) == *key && s.endpoints.len() + left.len() <= max
            });
            match fits {
                Some((slice, changed)) => {
                    slice.endpoints.append(&mut left);
                    *changed = true;
                }
                None => plan.create.push(new_slice(group, left)),
            }
        }
        if want_placeholder && !have_placeholder && *key == placeholder_key {
            plan.create.push(new_slice(group, Vec::new()));
        }
    }
    plan.update = kept
        .into_iter()
        .filter(|(_, changed)| *changed)
        .map(|(s, _)| s)
        .collect();
    plan
}

// ---- the controller ----

/// Slices written by this process that the slice cache has not shown yet: name → the
/// resourceVersion written (`None`: deleted).
#[derive(Default)]
struct Written {
    names: HashMap<String, Option<u64>>,
    at: Option<Instant>,
}

/// How long a write may stay unseen before the cache is trusted again anyway.
const WRITTEN_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Controller {
    client: Client,
    services: Arc<Informer<Service>>,
    pods: Arc<Informer<Pod>>,
    nodes: Arc<Informer<Node>>,
    endpoints: Arc<Informer<Endpoints>>,
    slices: Arc<Informer<EndpointSlice>>,
    queue: Arc<WorkQueue>,
    written: Mutex<HashMap<String, Written>>,
    /// Services seen deleted whose Endpoints are still to be removed.
    deleted: Mutex<HashSet<String>>,
}

fn rv(meta: &ObjectMeta) -> Option<u64> {
    meta.resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
}

impl Controller {
    pub fn new(
        client: Client,
        services: Arc<Informer<Service>>,
        pods: Arc<Informer<Pod>>,
        nodes: Arc<Informer<Node>>,
        endpoints: Arc<Informer<Endpoints>>,
        slices: Arc<Informer<EndpointSlice>>,
    ) -> Arc<Self> {
        let this = Arc::new(Controller {
            client,
            services,
            pods,
            nodes,
            endpoints,
            slices,
            queue: WorkQueue::new(),
            written: Mutex::default(),
            deleted: Mutex::default(),
        });
        let weak = Arc::downgrade(&this);
        this.services.on_change(move |change| {
            if let Some(c) = weak.upgrade() {
                match change {
                    Change::Applied { new, .. } => c.queue.add(key_of(new.as_ref())),
                    Change::Deleted(old) => {
                        let key = key_of(old.as_ref());
                        lock(&c.deleted).insert(key.clone());
                        c.queue.add(key);
                    }
                }
            }
        });
        let weak = Arc::downgrade(&this);
        this.pods.on_change(move |change| {
            if let Some(c) = weak.upgrade() {
                let (old, new) = match change {
                    Change::Applied { old, new } => (old.as_deref(), new.as_ref()),
                    Change::Deleted(old) => (None, old.as_ref()),
                };
                // Upstream's `podEndpointsChanged`: only what endpoints show matters.
                if let Some(o) = old
                    && !pod_endpoints_changed(o, new)
                {
                    return;
                }
                let ns = new.namespace().unwrap_or_default();
                for svc in c.services.list_namespace(&ns) {
                    if service_selects(&svc, new) || old.is_some_and(|o| service_selects(&svc, o)) {
                        c.queue.add(key_of(svc.as_ref()));
                    }
                }
            }
        });
        // Endpoints (mirroring, the API server's slice, a deleted Endpoints to restore) and
        // slices (deleted or edited by someone else) lead back to their Service.
        this.endpoints.enqueue_changes(&this.queue);
        let weak = Arc::downgrade(&this);
        this.slices.on_change(move |change| {
            if let Some(c) = weak.upgrade() {
                let s = match change {
                    Change::Applied { new, .. } => new,
                    Change::Deleted(old) => old,
                };
                if let Some(svc) = s.labels().get(LABEL_SERVICE_NAME) {
                    let ns = s.namespace().unwrap_or_default();
                    c.queue.add(format!("{ns}/{svc}"));
                }
            }
        });
        this
    }

    pub async fn run(self: Arc<Self>, resync: Duration) {
        self.services.wait_synced().await;
        self.pods.wait_synced().await;
        self.nodes.wait_synced().await;
        self.endpoints.wait_synced().await;
        self.slices.wait_synced().await;
        let this = self.clone();
        let workers = run_workers("endpoint-controller", self.queue.clone(), WORKERS, {
            move |key| {
                let this = this.clone();
                async move { this.sync(&key).await }
            }
        });
        let resync = super::informer::resync(self.services.clone(), self.queue.clone(), resync);
        tokio::join!(workers, resync);
    }

    /// Whether the slice cache has caught up with this process's writes for `key`.
    fn slices_fresh(&self, key: &str) -> bool {
        let (ns, _) = split_key(key);
        let mut written = lock(&self.written);
        let Some(w) = written.get(key) else {
            return true;
        };
        let seen = w.names.iter().all(|(name, want)| {
            let cached = self.slices.get(&format!("{ns}/{name}"));
            match want {
                None => cached.is_none(),
                Some(v) => cached.is_some_and(|s| rv(&s.metadata).is_none_or(|have| have >= *v)),
            }
        });
        if seen || w.at.is_some_and(|t| t.elapsed() > WRITTEN_TIMEOUT) {
            written.remove(key);
            return true;
        }
        false
    }

    fn record_written(&self, key: &str, name: String, version: Option<u64>) {
        let mut written = lock(&self.written);
        let w = written.entry(key.to_string()).or_default();
        w.names.insert(name, version);
        w.at = Some(Instant::now());
    }

    async fn sync(&self, key: &str) -> Result<Requeue, kube::Error> {
        if !self.slices_fresh(key) {
            return Ok(Some(Duration::from_millis(100)));
        }
        let (ns, name) = split_key(key);
        let Some(svc) = self.services.get(key) else {
            if lock(&self.deleted).remove(key) && self.endpoints.get(key).is_some() {
                let api: Api<Endpoints> = Api::namespaced(self.client.clone(), ns);
                ignore_gone(api.delete(name, &DeleteParams::default()).await)?;
            }
            // Owner references let the garbage collector take the slices too; deleting them
            // here is what upstream does as well and is quicker.
            for manager in [SLICE_CONTROLLER, MIRROR_CONTROLLER] {
                let plan = SlicePlan {
                    delete: self
                        .slices_of(ns, name, manager)
                        .iter()
                        .map(|s| s.name_any())
                        .collect(),
                    ..SlicePlan::default()
                };
                self.apply(key, ns, plan).await?;
            }
            return Ok(None);
        };
        lock(&self.deleted).remove(key);
        let owner = owner_ref("v1", "Service", &svc.metadata);
        let mut slice_labels = endpoints_labels(&svc);
        slice_labels.insert(LABEL_SERVICE_NAME.into(), name.to_string());
        if service_selector(&svc).is_some() {
            let pods: Vec<Arc<Pod>> = self
                .pods
                .list_namespace(ns)
                .into_iter()
                .filter(|p| service_selects(&svc, p))
                .collect();
            self.sync_endpoints(key, &svc, &pods).await?;
            slice_labels.insert(LABEL_MANAGED_BY.into(), SLICE_CONTROLLER.into());
            let template = SliceTemplate {
                namespace: ns.into(),
                generate_name: format!("{name}-"),
                labels: slice_labels,
                owner,
            };
            let groups = desired_slice_groups(&svc, &pods, |node| {
                self.nodes
                    .get(node)
                    .and_then(|n| n.labels().get(LABEL_ZONE).cloned())
            });
            let existing = self.slices_of(ns, name, SLICE_CONTROLLER);
            let plan = plan_slices(&existing, groups, &template, true, MAX_ENDPOINTS_PER_SLICE);
            self.apply_with_trigger(key, ns, plan, trigger_time(&svc, &pods))
                .await?;
            self.remove_all(key, ns, name, MIRROR_CONTROLLER).await?;
            return Ok(None);
        }
        // No selector: the Endpoints belong to the user (or to the API server).
        self.remove_all(key, ns, name, SLICE_CONTROLLER).await?;
        let endpoints = self.endpoints.get(key);
        let skip_mirror = endpoints
            .as_ref()
            .is_some_and(|e| e.labels().get(LABEL_SKIP_MIRROR).map(String::as_str) == Some("true"));
        if key == "default/kubernetes"
            && skip_mirror
            && let Some(e) = &endpoints
        {
            self.sync_apiserver_slice(e).await?;
        }
        match endpoints.filter(|_| !skip_mirror) {
            Some(e) => {
                let mut labels = e.labels().clone();
                labels.remove(LABEL_SKIP_MIRROR);
                labels.insert(LABEL_SERVICE_NAME.into(), name.to_string());
                labels.insert(LABEL_MANAGED_BY.into(), MIRROR_CONTROLLER.into());
                let mut owner = owner_ref("v1", "Endpoints", &e.metadata);
                owner.block_owner_deletion = None;
                let template = SliceTemplate {
                    namespace: ns.into(),
                    generate_name: format!("{name}-"),
                    labels,
                    owner,
                };
                let existing = self.slices_of(ns, name, MIRROR_CONTROLLER);
                let plan = plan_slices(
                    &existing,
                    mirrored_slice_groups(&e),
                    &template,
                    false,
                    MAX_ENDPOINTS_PER_SLICE,
                );
                self.apply(key, ns, plan).await?;
            }
            None => self.remove_all(key, ns, name, MIRROR_CONTROLLER).await?,
        }
        Ok(None)
    }

    fn slices_of(&self, ns: &str, service: &str, manager: &str) -> Vec<Arc<EndpointSlice>> {
        self.slices
            .list_namespace(ns)
            .into_iter()
            .filter(|s| {
                let labels = s.labels();
                labels.get(LABEL_SERVICE_NAME).map(String::as_str) == Some(service)
                    && labels.get(LABEL_MANAGED_BY).map(String::as_str) == Some(manager)
            })
            .collect()
    }

    async fn remove_all(
        &self,
        key: &str,
        ns: &str,
        service: &str,
        manager: &str,
    ) -> Result<(), kube::Error> {
        let delete: Vec<String> = self
            .slices_of(ns, service, manager)
            .iter()
            .map(|s| s.name_any())
            .collect();
        if delete.is_empty() {
            return Ok(());
        }
        let plan = SlicePlan {
            delete,
            ..SlicePlan::default()
        };
        self.apply(key, ns, plan).await
    }

    /// Writes the Endpoints of a Service with a selector when they differ.
    async fn sync_endpoints(
        &self,
        key: &str,
        svc: &Service,
        pods: &[Arc<Pod>],
    ) -> Result<(), kube::Error> {
        let (ns, name) = split_key(key);
        let mut desired = desired_endpoints(svc, pods);
        let current = self.endpoints.get(key);
        if current
            .as_ref()
            .is_some_and(|c| !endpoints_differ(c, &desired))
        {
            return Ok(());
        }
        let api: Api<Endpoints> = Api::namespaced(self.client.clone(), ns);
        let mut annotations = desired.metadata.annotations.take().unwrap_or_default();
        if let Some(t) = trigger_time(svc, pods) {
            annotations.insert(TRIGGER_TIME.into(), t.to_string());
        }
        match current {
            Some(c) => {
                let mut next = (*c).clone();
                // Keep annotations of others; ours are set or cleared.
                let mut merged = c.annotations().clone();
                merged.remove(OVER_CAPACITY);
                merged.extend(annotations);
                next.metadata.annotations = Some(merged);
                next.metadata.labels = desired.metadata.labels;
                next.subsets = desired.subsets;
                api.replace(name, &PostParams::default(), &next).await?;
            }
            None => {
                desired.metadata.annotations = Some(annotations);
                match api.create(&PostParams::default(), &desired).await {
                    Ok(_) => {}
                    // The cache is behind; the watch brings the object and another sync.
                    Err(kube::Error::Api(s)) if s.code == 409 => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    async fn sync_apiserver_slice(&self, endpoints: &Endpoints) -> Result<(), kube::Error> {
        let desired = apiserver_slice(endpoints);
        let api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), "default");
        match self.slices.get("default/kubernetes") {
            Some(c)
                if c.endpoints == desired.endpoints
                    && c.ports == desired.ports
                    && c.address_type == desired.address_type
                    && c.labels().get(LABEL_SERVICE_NAME)
                        == desired.labels().get(LABEL_SERVICE_NAME) => {}
            Some(c) => {
                let mut next = (*c).clone();
                next.endpoints = desired.endpoints;
                next.ports = desired.ports;
                next.address_type = desired.address_type;
                next.labels_mut()
                    .insert(LABEL_SERVICE_NAME.into(), "kubernetes".into());
                api.replace("kubernetes", &PostParams::default(), &next)
                    .await?;
            }
            None => match api.create(&PostParams::default(), &desired).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => return Err(e),
            },
        }
        Ok(())
    }

    async fn apply(&self, key: &str, ns: &str, plan: SlicePlan) -> Result<(), kube::Error> {
        self.apply_with_trigger(key, ns, plan, None).await
    }

    async fn apply_with_trigger(
        &self,
        key: &str,
        ns: &str,
        plan: SlicePlan,
        trigger: Option<Timestamp>,
    ) -> Result<(), kube::Error> {
        if plan.is_empty() {
            return Ok(());
        }
        let api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), ns);
        let stamp = |s: &mut EndpointSlice| {
            if let Some(t) = trigger {
                s.annotations_mut()
                    .insert(TRIGGER_TIME.into(), t.to_string());
            }
        };
        for mut slice in plan.update {
            stamp(&mut slice);
            let name = slice.name_any();
            match api.replace(&name, &PostParams::default(), &slice).await {
                Ok(s) => self.record_written(key, name, rv(&s.metadata)),
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        for mut slice in plan.create {
            stamp(&mut slice);
            let s = api.create(&PostParams::default(), &slice).await?;
            self.record_written(key, s.name_any(), rv(&s.metadata));
        }
        for name in plan.delete {
            ignore_gone(api.delete(&name, &DeleteParams::default()).await)?;
            self.record_written(key, name, None);
        }
        Ok(())
    }
}

/// Upstream's `podEndpointsChanged` (plus labels, which decide the selecting Services).
fn pod_endpoints_changed(old: &Pod, new: &Pod) -> bool {
    let spec = |p: &Pod| {
        p.spec.as_ref().map(|s| {
            (
                s.node_name.clone(),
                s.hostname.clone(),
                s.subdomain.clone(),
                s.containers
                    .iter()
                    .map(|c| c.ports.clone())
                    .collect::<Vec<_>>(),
            )
        })
    };
    old.metadata.labels != new.metadata.labels
        || old.metadata.deletion_timestamp != new.metadata.deletion_timestamp
        || pod_ip(old) != pod_ip(new)
        || is_ready(old) != is_ready(new)
        || old.status.as_ref().and_then(|s| s.phase.clone())
            != new.status.as_ref().and_then(|s| s.phase.clone())
        || spec(old) != spec(new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Container, ContainerPort, PodCondition, PodSpec, PodStatus, ServiceSpec,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn svc(ports: Vec<ServicePort>) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                uid: Some("svc-uid".into()),
                labels: Some([("app".to_string(), "web".to_string())].into()),
                ..ObjectMeta::default()
            },
            spec: Some(ServiceSpec {
                selector: Some([("app".to_string(), "web".to_string())].into()),
                ports: Some(ports),
                ..ServiceSpec::default()
            }),
            status: None,
        }
    }

    fn port(name: &str, port: i32, target: IntOrString) -> ServicePort {
        ServicePort {
            name: Some(name.into()),
            port,
            protocol: Some("TCP".into()),
            target_port: Some(target),
            ..ServicePort::default()
        }
    }

    fn pod(name: &str, ip: &str, ready: bool, container_port: Option<(&str, i32)>) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(format!("uid-{name}")),
                labels: Some([("app".to_string(), "web".to_string())].into()),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                node_name: Some("n1".into()),
                containers: vec![Container {
                    name: "c".into(),
                    ports: container_port.map(|(n, p)| {
                        vec![ContainerPort {
                            name: Some(n.into()),
                            container_port: p,
                            ..ContainerPort::default()
                        }]
                    }),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
            status: Some(PodStatus {
                phase: Some("Running".into()),
                pod_ip: (!ip.is_empty()).then(|| ip.to_string()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..PodCondition::default()
                }]),
                ..PodStatus::default()
            }),
        })
    }

    #[test]
    fn endpoints_split_ready_and_not_ready_pods_and_skip_pods_without_ip() {
        let s = svc(vec![port("http", 80, IntOrString::Int(8080))]);
        let pods = vec![
            pod("b", "10.0.0.2", true, None),
            pod("a", "10.0.0.1", true, None),
            pod("c", "10.0.0.3", false, None),
            pod("d", "", true, None),
        ];
        let e = desired_endpoints(&s, &pods);
        let subsets = e.subsets.unwrap();
        assert_eq!(subsets.len(), 1);
        let ips = |a: &Option<Vec<EndpointAddress>>| -> Vec<String> {
            a.iter().flatten().map(|a| a.ip.clone()).collect()
        };
        assert_eq!(ips(&subsets[0].addresses), ["10.0.0.1", "10.0.0.2"]);
        assert_eq!(ips(&subsets[0].not_ready_addresses), ["10.0.0.3"]);
        let p = &subsets[0].ports.as_ref().unwrap()[0];
        assert_eq!((p.name.as_deref(), p.port), (Some("http"), 8080));
        let a = &subsets[0].addresses.as_ref().unwrap()[0];
        assert_eq!(a.node_name.as_deref(), Some("n1"));
        assert_eq!(
            a.target_ref.as_ref().unwrap().name.as_deref(),
            Some("a"),
            "{a:?}"
        );
        // publishNotReadyAddresses lists every pod as ready.
        let mut s2 = s.clone();
        s2.spec.as_mut().unwrap().publish_not_ready_addresses = Some(true);
        let subsets = desired_endpoints(&s2, &pods).subsets.unwrap();
        assert_eq!(ips(&subsets[0].addresses).len(), 3);
        assert!(subsets[0].not_ready_addresses.is_none());
    }

    #[test]
    fn named_target_ports_resolve_per_pod_into_separate_subsets() {
        let s = svc(vec![port("http", 80, IntOrString::String("web".into()))]);
        let pods = vec![
            pod("a", "10.0.0.1", true, Some(("web", 8080))),
            pod("b", "10.0.0.2", true, Some(("web", 9090))),
            pod("c", "10.0.0.3", true, Some(("other", 7070))),
        ];
        let subsets = desired_endpoints(&s, &pods).subsets.unwrap();
        let mut seen: Vec<(i32, String)> = subsets
            .iter()
            .map(|ss| {
                (
                    ss.ports.as_ref().unwrap()[0].port,
                    ss.addresses.as_ref().unwrap()[0].ip.clone(),
                )
            })
            .collect();
        seen.sort();
        // Pod c has no port named "web": it is left out.
        assert_eq!(
            seen,
            [
                (8080, "10.0.0.1".to_string()),
                (9090, "10.0.0.2".to_string())
            ]
        );
        let groups = desired_slice_groups(&s, &pods, |_| None);
        assert_eq!(groups.len(), 3, "{groups:?}");
    }

    #[test]
    fn terminating_pods_are_serving_but_not_ready_in_slices() {
        let s = svc(vec![port("http", 80, IntOrString::Int(8080))]);
        let mut p = (*pod("a", "10.0.0.1", true, None)).clone();
        p.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
        let e = pod_endpoint(&s, &p, Some("z1".into()));
        let c = e.conditions.unwrap();
        assert_eq!(
            (c.ready, c.serving, c.terminating),
            (Some(false), Some(true), Some(true))
        );
        assert_eq!(e.zone.as_deref(), Some("z1"));
        // The Endpoints object leaves terminating pods out.
        assert!(desired_endpoints(&s, &[Arc::new(p)]).subsets.is_none());
    }

    #[test]
    fn hostname_is_set_only_for_the_matching_subdomain() {
        let s = svc(vec![]);
        let mut p = (*pod("a", "10.0.0.1", true, None)).clone();
        let spec = p.spec.as_mut().unwrap();
        spec.hostname = Some("web-0".into());
        spec.subdomain = Some("web".into());
        assert_eq!(
            pod_endpoint(&s, &p, None).hostname.as_deref(),
            Some("web-0")
        );
        p.spec.as_mut().unwrap().subdomain = Some("other".into());
        assert_eq!(pod_endpoint(&s, &p, None).hostname, None);
    }

    fn template() -> SliceTemplate {
        SliceTemplate {
            namespace: "default".into(),
            generate_name: "web-".into(),
            labels: [(LABEL_SERVICE_NAME.to_string(), "web".to_string())].into(),
            owner: OwnerReference::default(),
        }
    }

    fn named(mut s: EndpointSlice, name: &str) -> Arc<EndpointSlice> {
        s.metadata.name = Some(name.into());
        s.metadata.generate_name = None;
        Arc::new(s)
    }

    #[test]
    fn slices_hold_at_most_max_endpoints_and_keep_endpoints_in_place() {
        let s = svc(vec![port("http", 80, IntOrString::Int(8080))]);
        let pods: Vec<Arc<Pod>> = (1..=5)
            .map(|i| pod(&format!("p{i}"), &format!("10.0.0.{i}"), true, None))
            .collect();
        let plan = plan_slices(
            &[],
            desired_slice_groups(&s, &pods, |_| None),
            &template(),
            true,
            2,
        );
        assert_eq!(plan.create.len(), 3);
        assert_eq!(
            plan.create.iter().map(|s| s.endpoints.len()).sum::<usize>(),
            5
        );
        let existing: Vec<Arc<EndpointSlice>> = plan
            .create
            .into_iter()
            .enumerate()
            .map(|(i, s)| named(s, &format!("web-{i}")))
            .collect();
        // Nothing changed: nothing to write.
        let again = plan_slices(
            &existing,
            desired_slice_groups(&s, &pods, |_| None),
            &template(),
            true,
            2,
        );
        assert!(again.is_empty(), "{again:?}");
        // One pod gone: its slice is updated, the others untouched.
        let fewer = plan_slices(
            &existing,
            desired_slice_groups(&s, &pods[1..], |_| None),
            &template(),
            true,
            2,
        );
        assert_eq!(
            (fewer.create.len(), fewer.update.len(), fewer.delete.len()),
            (0, 1, 0)
        );
        // All pods gone: as upstream, the slices go and an empty placeholder (no ports) is
        // made, which later syncs keep.
        let none = plan_slices(&existing, BTreeMap::new(), &template(), true, 2);
        assert_eq!(
            (none.create.len(), none.update.len(), none.delete.len()),
            (1, 0, 3),
            "{none:?}"
        );
        assert!(none.create[0].endpoints.is_empty());
        assert_eq!(none.create[0].ports, Some(vec![]));
        let placeholder = [named(none.create[0].clone(), "web-p")];
        assert!(plan_slices(&placeholder, BTreeMap::new(), &template(), true, 2).is_empty());
        // A new placeholder when there was no slice.
        let fresh = plan_slices(&[], BTreeMap::new(), &template(), true, 2);
        assert_eq!(fresh.create.len(), 1);
        // Mirroring keeps no placeholder.
        assert!(plan_slices(&[], BTreeMap::new(), &template(), false, 2).is_empty());
    }

    #[test]
    fn mirrored_endpoints_keep_readiness_and_ports() {
        let e = Endpoints {
            metadata: ObjectMeta {
                name: Some("kubernetes".into()),
                namespace: Some("default".into()),
                ..ObjectMeta::default()
            },
            subsets: Some(vec![EndpointSubset {
                addresses: Some(vec![EndpointAddress {
                    ip: "192.168.1.5".into(),
                    ..EndpointAddress::default()
                }]),
                not_ready_addresses: Some(vec![EndpointAddress {
                    ip: "192.168.1.6".into(),
                    ..EndpointAddress::default()
                }]),
                ports: Some(vec![EndpointPort {
                    name: Some("https".into()),
                    port: 6443,
                    protocol: Some("TCP".into()),
                    app_protocol: None,
                }]),
            }]),
        };
        let groups = mirrored_slice_groups(&e);
        let g = groups.values().next().unwrap();
        assert_eq!(g.ports[0].port, Some(6443));
        let ready: Vec<Option<bool>> = g
            .endpoints
            .values()
            .map(|e| e.conditions.as_ref().unwrap().ready)
            .collect();
        assert_eq!(ready, [Some(true), Some(false)]);
        let slice = apiserver_slice(&e);
        assert_eq!(slice.metadata.name.as_deref(), Some("kubernetes"));
        assert_eq!(slice.labels()[LABEL_SERVICE_NAME], "kubernetes");
        assert_eq!(slice.endpoints.len(), 2);
    }

    #[test]
    fn endpoints_over_capacity_are_truncated_and_annotated() {
        let s = svc(vec![port("http", 80, IntOrString::Int(8080))]);
        let pods: Vec<Arc<Pod>> = (0..1005)
            .map(|i| {
                pod(
                    &format!("p{i}"),
                    &format!("10.1.{}.{}", i / 250, i % 250),
                    i % 2 == 0,
                    None,
                )
            })
            .collect();
        let e = desired_endpoints(&s, &pods);
        let subsets = e.subsets.as_ref().unwrap();
        let ready = subsets[0].addresses.as_ref().unwrap().len();
        let not_ready = subsets[0].not_ready_addresses.as_ref().unwrap().len();
        assert_eq!((ready, ready + not_ready), (503, 1000));
        assert_eq!(e.annotations()[OVER_CAPACITY], "truncated");
        let current = Endpoints {
            metadata: ObjectMeta {
                labels: e.metadata.labels.clone(),
                ..ObjectMeta::default()
            },
            subsets: e.subsets.clone(),
        };
        assert!(endpoints_differ(&current, &e));
        assert!(!endpoints_differ(&e, &e));
    }
}
