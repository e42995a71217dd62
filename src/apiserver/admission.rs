//! What happens to an object between decoding and storage, beyond metadata: defaulting,
//! validation, the built-in admission steps (namespace lifecycle, ResourceQuota in `quota`)
//! and the allocators of the Service registry (ClusterIPs from `--service-cidr`, NodePorts
//! from 30000–32767).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use serde_json::{Value, json};
use tokio::sync::Mutex;

use super::handlers::Call;
use super::status::{ApiError, Cause, Result};
use super::{Api, defaults, validation};

/// The service IP range: the first address goes to the `kubernetes` Service.
#[derive(Debug, Clone, Copy)]
pub struct ServiceCidr {
    pub base: Ipv4Addr,
    pub prefix: u8,
}

impl ServiceCidr {
    pub fn parse(s: &str) -> std::result::Result<ServiceCidr, String> {
        let (ip, prefix) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not a CIDR (e.g. 10.43.0.0/16)"))?;
        let ip: Ipv4Addr = ip
            .parse()
            .map_err(|_| format!("{s:?}: {ip:?} is not an IPv4 address"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| (8..=30).contains(p))
            .ok_or_else(|| format!("{s:?}: the prefix length must be between 8 and 30"))?;
        let mask = u32::MAX << (32 - prefix);
        Ok(ServiceCidr {
            base: Ipv4Addr::from(u32::from(ip) & mask),
            prefix,
        })
    }

    fn size(&self) -> u32 {
        1u32 << (32 - self.prefix)
    }

    /// The n-th address (1 = the first usable).
    pub fn nth(&self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.base) + n)
    }

    fn index(&self, ip: Ipv4Addr) -> Option<u32> {
        let off = u32::from(ip).wrapping_sub(u32::from(self.base));
        (off > 0 && off < self.size() - 1).then_some(off)
    }
}

pub const NODE_PORTS: std::ops::RangeInclusive<i64> = 30000..=32767;

/// What is allocated, loaded from the stored Services on first use.
#[derive(Debug, Default)]
struct Allocated {
    loaded: bool,
    ips: BTreeSet<u32>,
    ports: BTreeSet<i64>,
    next_ip: u32,
    next_port: i64,
}

pub struct Allocators {
    cidr: ServiceCidr,
    state: Mutex<Allocated>,
}

impl Allocators {
    pub fn new(cidr: ServiceCidr) -> Allocators {
        Allocators {
            cidr,
            state: Mutex::new(Allocated::default()),
        }
    }

    pub fn cidr(&self) -> ServiceCidr {
        self.cidr
    }
}

fn cluster_ips(svc: &Value) -> Vec<Ipv4Addr> {
    svc.pointer("/spec/clusterIP")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .into_iter()
        .collect()
}

fn node_ports(svc: &Value) -> Vec<i64> {
    svc.pointer("/spec/ports")
        .and_then(Value::as_array)
        .map(|ports| {
            ports
                .iter()
                .filter_map(|p| p.get("nodePort").and_then(Value::as_i64))
                .filter(|p| *p != 0)
                .collect()
        })
        .unwrap_or_default()
}

async fn load(api: &Api, a: &mut Allocated) -> Result<()> {
    if a.loaded {
        return Ok(());
    }
    let services = api
        .resource("", "v1", "services")
        .ok_or_else(|| ApiError::internal("services are not registered"))?;
    let page = api
        .storage
        .list(&services.key_prefix(None), 0, None, 0)
        .await?;
    for s in &page.items {
        for ip in cluster_ips(&s.object) {
            if let Some(i) = api.allocators.cidr.index(ip) {
                a.ips.insert(i);
            }
        }
        a.ports.extend(node_ports(&s.object));
    }
    // Like upstream, dynamic allocation starts above a small static band, so addresses users
    // (and rk3s, for cluster DNS) ask for explicitly are rarely taken already.
    let size = api.allocators.cidr.size();
    a.next_ip = (size / 16).clamp(16, 256).min(size - 2).max(2);
    a.next_port = *NODE_PORTS.start();
    a.loaded = true;
    Ok(())
}

/// Gives a new Service its ClusterIP and NodePorts, checking requested ones.
async fn allocate(call: &Call<'_>, svc: &mut Value) -> Result<()> {
    let api = call.api;
    let name = svc["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let invalid = |causes| ApiError::invalid("", "Service", &name, causes);
    let mut a = api.allocators.state.lock().await;
    load(api, &mut a).await?;
    let kind = svc
        .pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
        .to_string();
    let cidr = api.allocators.cidr;
    let mut taken_ip = None;
    if kind != "ExternalName" {
        match svc.pointer("/spec/clusterIP").and_then(Value::as_str) {
            Some("None") => {}
            Some(ip) if !ip.is_empty() => {
                let requested: Ipv4Addr = ip.parse().map_err(|_| {
                    invalid(vec![Cause::invalid(
                        "spec.clusterIPs",
                        &json!([ip]),
                        "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                    )])
                })?;
                let Some(i) = cidr.index(requested) else {
                    return Err(invalid(vec![Cause::invalid(
                        "spec.clusterIPs",
                        &json!([ip]),
                        &format!(
                            "failed to allocate IP {ip}: the provided IP ({ip}) is not in the valid range. The range of valid IPs is {}/{}",
                            cidr.base, cidr.prefix
                        ),
                    )]));
                };
                if !a.ips.insert(i) {
                    return Err(invalid(vec![Cause::invalid(
                        "spec.clusterIPs",
                        &json!([ip]),
                        &format!("failed to allocate IP {ip}: provided IP is already allocated"),
                    )]));
                }
                taken_ip = Some(i);
            }
            _ => {
                let size = cidr.size();
                let mut found = None;
                for step in 0..size {
                    let i = 2 + (a.next_ip - 2 + step) % (size - 3).max(1);
                    if !a.ips.contains(&i) {
                        found = Some(i);
                        break;
                    }
                }
                let Some(i) = found else {
                    return Err(ApiError::internal(format!(
                        "failed to allocate a serviceIP: range is full ({}/{})",
                        cidr.base, cidr.prefix
                    )));
                };
                a.ips.insert(i);
                a.next_ip = i + 1;
                taken_ip = Some(i);
                let ip = cidr.nth(i).to_string();
                svc["spec"]["clusterIP"] = json!(ip);
            }
        }
        if let Some(ip) = svc.pointer("/spec/clusterIP").cloned() {
            svc["spec"]["clusterIPs"] = json!([ip]);
            svc["spec"]["ipFamilies"] = json!(["IPv4"]);
        }
    }
    if matches!(kind.as_str(), "NodePort" | "LoadBalancer") {
        let mut taken = Vec::new();
        let count = svc["spec"]["ports"].as_array().map(Vec::len).unwrap_or(0);
        for i in 0..count {
            let requested = svc["spec"]["ports"][i]["nodePort"].as_i64().unwrap_or(0);
            if requested != 0 {
                if !NODE_PORTS.contains(&requested) {
                    release_taken(&mut a, taken_ip, &taken);
                    return Err(invalid(vec![Cause::invalid(
                        format!("spec.ports[{i}].nodePort"),
                        &json!(requested),
                        "provided port is not in the valid range. The range of valid ports is 30000-32767",
                    )]));
                }
                if !a.ports.insert(requested) {
                    release_taken(&mut a, taken_ip, &taken);
                    return Err(invalid(vec![Cause::invalid(
                        format!("spec.ports[{i}].nodePort"),
                        &json!(requested),
                        "provided port is already allocated",
                    )]));
                }
                taken.push(requested);
                continue;
            }
            let span = NODE_PORTS.end() - NODE_PORTS.start() + 1;
            let found = (0..span)
                .map(|s| NODE_PORTS.start() + (a.next_port - NODE_PORTS.start() + s) % span)
                .find(|p| !a.ports.contains(p));
            let Some(p) = found else {
                release_taken(&mut a, taken_ip, &taken);
                return Err(ApiError::internal(
                    "failed to allocate a nodePort: range is full",
                ));
            };
            a.ports.insert(p);
            a.next_port = p + 1;
            taken.push(p);
            svc["spec"]["ports"][i]["nodePort"] = json!(p);
        }
    }
    Ok(())
}

fn release_taken(a: &mut Allocated, ip: Option<u32>, ports: &[i64]) {
    if let Some(i) = ip {
        a.ips.remove(&i);
    }
    for p in ports {
        a.ports.remove(p);
    }
}

/// Frees what a Service held (after delete, or when its create failed).
async fn free(api: &Api, svc: &Value) {
    let mut a = api.allocators.state.lock().await;
    if !a.loaded {
        return;
    }
    for ip in cluster_ips(svc) {
        if let Some(i) = api.allocators.cidr.index(ip) {
            a.ips.remove(&i);
        }
    }
    for p in node_ports(svc) {
        a.ports.remove(&p);
    }
}

fn is(call: &Call<'_>, group: &str, plural: &str) -> bool {
    call.resource.group == group
        && call.resource.plural == plural
        && call.path.subresource.is_none()
}

/// Defaults and validates `obj` (`old` on updates), and runs the registry's own steps.
pub async fn admit(call: &Call<'_>, obj: &mut Value, old: Option<&Value>) -> Result<()> {
    // Namespace lifecycle comes first, as upstream's NamespaceLifecycle plugin runs before
    // defaulting and validation: content for a missing namespace is NotFound, for a
    // terminating one Forbidden, whatever else is wrong with it.
    if old.is_none()
        && call.resource.namespaced
        && let Some(ns) = call.path.namespace.as_deref()
    {
        namespace_accepts(call, ns, obj).await?;
    }
    let (group, plural) = (call.resource.group.as_str(), call.resource.plural.as_str());
    if old.is_none() && is(call, "", "pods") {
        priority(call, obj).await?;
    }
    if old.is_none() && is(call, "", "persistentvolumeclaims") {
        default_storage_class(call, obj).await?;
    }
    defaults::apply(group, plural, obj);
    if is(call, "", "services") {
        match old {
            None => allocate(call, obj).await?,
            Some(old) => {
                // The allocated addresses are kept when an update leaves them out.
                if obj
                    .pointer("/spec/clusterIP")
                    .is_none_or(|v| v.as_str() == Some(""))
                    && let Some(ip) = old.pointer("/spec/clusterIP")
                {
                    obj["spec"]["clusterIP"] = ip.clone();
                    if let Some(ips) = old.pointer("/spec/clusterIPs") {
                        obj["spec"]["clusterIPs"] = ips.clone();
                    }
                }
            }
        }
    }
    let mut causes = validation::validate(group, plural, obj, old);
    if call.path.subresource.as_deref() == Some("status")
        && let Some(old) = old
    {
        causes.extend(validation::status(group, plural, obj, old));
    }
    if plural == "events" && matches!(group, "" | "events.k8s.io") {
        // Both Event versions are checked on the stored (core/v1) form, as upstream checks
        // the internal one; the rules differ by the request's version.
        let core = super::convert::to_storage(&call.resource, obj);
        let old_core = old.map(|o| super::convert::to_storage(&call.resource, o));
        causes.extend(validation::event(
            &core,
            old_core.as_ref(),
            group == "events.k8s.io",
        ));
    }
    if is(call, "apiextensions.k8s.io", "customresourcedefinitions") {
        causes.extend(super::crd::validate(obj));
        if causes.is_empty() {
            obj["status"] = super::crd::status(obj, &super::meta::now_rfc3339());
        }
    }
    if !causes.is_empty() {
        if old.is_none() && is(call, "", "services") {
            free(call.api, obj).await;
        }
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        return Err(ApiError::invalid(group, &call.resource.kind, &name, causes));
    }
    // ResourceQuota runs last, as upstream orders its validating plugins.
    if let Err(e) = super::quota::admit(call, obj, old).await {
        if old.is_none() && is(call, "", "services") {
            free(call.api, obj).await;
        }
        return Err(e);
    }
    Ok(())
}

/// Priority admission (upstream's `Priority` plugin): a pod's `priorityClassName` resolves to
/// the class's value and preemption policy; without a name the global default class applies
/// (the lowest-valued one if several claim it), else priority 0. A named class that does not
/// exist, or a `priority`/`preemptionPolicy` in the pod that disagrees with the class, is
/// refused with upstream's message.
async fn priority(call: &Call<'_>, obj: &mut Value) -> Result<()> {
    let api: &Api = call.api;
    let Some(classes) = api.resource("scheduling.k8s.io", "v1", "priorityclasses") else {
        return Ok(());
    };
    let pod_name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let forbidden = |why: String| ApiError::forbidden_object("", "pods", "pods", &pod_name, &why);
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    let named = spec
        .get("priorityClassName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .map(str::to_string);
    let class = match &named {
        Some(name) => match api.storage.get(&classes.key(None, name)).await? {
            Some(c) => Some(c.object),
            None => {
                return Err(forbidden(format!(
                    "no PriorityClass with name {name} was found"
                )));
            }
        },
        None => {
            let page = api
                .storage
                .list(&classes.key_prefix(None), 0, None, 0)
                .await?;
            page.items
                .into_iter()
                .map(|s| s.object)
                .filter(|c| c.get("globalDefault").and_then(Value::as_bool) == Some(true))
                .min_by_key(|c| c.get("value").and_then(Value::as_i64).unwrap_or(0))
        }
    };
    let Some(class) = class else {
        return Ok(());
    };
    let value = class.get("value").and_then(Value::as_i64).unwrap_or(0);
    if let Some(given) = spec.get("priority").and_then(Value::as_i64)
        && given != value
    {
        return Err(forbidden(format!(
            "the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {value} from the given PriorityClass name"
        )));
    }
    let policy = class
        .get("preemptionPolicy")
        .and_then(Value::as_str)
        .unwrap_or("PreemptLowerPriority")
        .to_string();
    if let Some(given) = spec.get("preemptionPolicy").and_then(Value::as_str)
        && given != policy
    {
        return Err(forbidden(format!(
            "the string value of PreemptionPolicy ({given}) must not be provided in pod spec; priority admission controller computed {policy} from the given PriorityClass name"
        )));
    }
    if named.is_none() {
        spec.insert(
            "priorityClassName".into(),
            class["metadata"]["name"].clone(),
        );
    }
    spec.insert("priority".into(), Value::from(value));
    spec.insert("preemptionPolicy".into(), Value::from(policy));
    Ok(())
}

/// DefaultStorageClass admission (upstream's plugin): a claim created without a class (the
/// field absent or null, and no beta annotation; `""` means "no class" and stays) gets the
/// default StorageClass, the one annotated `storageclass.kubernetes.io/is-default-class:
/// "true"` (or the beta annotation), the newest if several are.
async fn default_storage_class(call: &Call<'_>, obj: &mut Value) -> Result<()> {
    if obj
        .pointer("/spec/storageClassName")
        .is_some_and(|v| !v.is_null())
        || obj
            .pointer("/metadata/annotations/volume.beta.kubernetes.io~1storage-class")
            .is_some()
    {
        return Ok(());
    }
    let api: &Api = call.api;
    let Some(classes) = api.resource("storage.k8s.io", "v1", "storageclasses") else {
        return Ok(());
    };
    let page = api
        .storage
        .list(&classes.key_prefix(None), 0, None, 0)
        .await?;
    let is_default = |c: &Value| {
        [
            "storageclass.kubernetes.io/is-default-class",
            "storageclass.beta.kubernetes.io/is-default-class",
        ]
        .iter()
        .any(|a| {
            c.pointer("/metadata/annotations")
                .and_then(|m| m.get(*a))
                .and_then(Value::as_str)
                == Some("true")
        })
    };
    let created = |c: &Value| {
        c.pointer("/metadata/creationTimestamp")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let name = |c: &Value| {
        c.pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    // Upstream picks the newest default, ties broken by name.
    let Some(class) = page
        .items
        .into_iter()
        .map(|s| s.object)
        .filter(is_default)
        .max_by(|a, b| {
            created(a)
                .cmp(&created(b))
                .then_with(|| name(b).cmp(&name(a)))
        })
    else {
        return Ok(());
    };
    if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert("storageClassName".into(), Value::from(name(&class)));
    }
    Ok(())
}

/// Namespace lifecycle admission: nothing is created in a missing or terminating namespace.
/// The refusal names the object as upstream's `admission.NewForbidden` does:
/// `configmaps "x" is forbidden: unable to create new content in namespace ns because it is
/// being terminated`, with the `NamespaceTerminating` cause clients look for.
async fn namespace_accepts(call: &Call<'_>, ns: &str, obj: &Value) -> Result<()> {
    let api: &Api = call.api;
    let namespaces = api
        .resource("", "v1", "namespaces")
        .ok_or_else(|| ApiError::internal("namespaces are not registered"))?;
    match api.storage.get(&namespaces.key(None, ns)).await? {
        None => Err(ApiError::not_found("", "namespaces", "namespaces", ns)),
        Some(s)
            if s.object.pointer("/metadata/deletionTimestamp").is_some()
                || s.object.pointer("/status/phase").and_then(Value::as_str)
                    == Some("Terminating") =>
        {
            let name = obj
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let mut e = ApiError::forbidden_object(
                &call.resource.group,
                &call.resource.plural,
                &call.resource.qualified(),
                name,
                &format!(
                    "unable to create new content in namespace {ns} because it is being terminated"
                ),
            );
            e.causes = vec![Cause {
                reason: "NamespaceTerminating",
                message: format!("namespace {ns} is being terminated"),
                field: "metadata.namespace".into(),
            }];
            Err(e)
        }
        Some(_) => Ok(()),
    }
}

fn is_crd(call: &Call<'_>) -> bool {
    call.resource.group == "apiextensions.k8s.io"
        && call.resource.plural == "customresourcedefinitions"
}

/// After a create or update was stored: a changed CRD changes what is served.
pub async fn after_write(call: &Call<'_>, _obj: &Value) {
    if is_crd(call)
        && let Err(e) = call.api.reload_crds().await
    {
        tracing::warn!(error = %e.message, "reloading custom resource definitions");
    }
}

/// A create that lost the race: give back what it took.
pub async fn release(call: &Call<'_>, obj: &Value) {
    if is(call, "", "services") {
        free(call.api, obj).await;
    }
}

/// After an object is gone from the store. A deleted CRD takes all its objects with it.
pub async fn after_delete(call: &Call<'_>, obj: &Value) {
    if is_crd(call) {
        let group = obj
            .pointer("/spec/group")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let plural = obj
            .pointer("/spec/names/plural")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !group.is_empty() && !plural.is_empty() {
            let prefix = format!("/registry/{group}/{plural}/");
            if let Err(e) = call.api.storage.delete_prefix(&prefix).await {
                tracing::warn!(error = %e.message, %prefix, "deleting the custom resources of a CRD");
            }
        }
        if let Err(e) = call.api.reload_crds().await {
            tracing::warn!(error = %e.message, "reloading custom resource definitions");
        }
    }
    if call.resource.group.is_empty() && call.resource.plural == "services" {
        free(call.api, obj).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_cidr_parses_and_indexes() {
        let c = ServiceCidr::parse("10.43.0.0/16").unwrap();
        assert_eq!(c.nth(1).to_string(), "10.43.0.1");
        assert_eq!(c.index("10.43.0.10".parse().unwrap()), Some(10));
        assert_eq!(c.index("10.43.0.0".parse().unwrap()), None);
        assert_eq!(c.index("10.43.255.255".parse().unwrap()), None);
        assert_eq!(c.index("10.44.0.1".parse().unwrap()), None);
        assert!(ServiceCidr::parse("10.43.0.0").is_err());
        assert!(ServiceCidr::parse("10.43.0.0/4").is_err());
        assert_eq!(
            ServiceCidr::parse("10.43.7.9/16").unwrap().base.to_string(),
            "10.43.0.0"
        );
    }
}
