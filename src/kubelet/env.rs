//! A container's environment, as the upstream kubelet builds it: the image's variables, the
//! service-link variables of the namespace's Services, `envFrom`, then `env` in order with
//! `$(VAR)` expansion and `valueFrom` (fieldRef, resourceFieldRef, configMapKeyRef,
//! secretKeyRef).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret, Service};
use kube::api::Api;

use super::pod;

/// Why an environment could not be built: shown as the container's waiting reason
/// `CreateContainerConfigError` with this message, as upstream does.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Error(pub String);

/// Service-link variables (`FOO_SERVICE_HOST`, `FOO_PORT_80_TCP`, …) for the given Services,
/// upstream's `getServiceEnvVarMap` format.
pub fn service_links(services: &[Service]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for s in services {
        let Some(spec) = &s.spec else { continue };
        let ip = spec.cluster_ip.clone().unwrap_or_default();
        if ip.is_empty() || ip == "None" {
            continue;
        }
        let name = s
            .metadata
            .name
            .clone()
            .unwrap_or_default()
            .to_uppercase()
            .replace('-', "_");
        let ports = spec.ports.clone().unwrap_or_default();
        let Some(first) = ports.first() else { continue };
        out.push((format!("{name}_SERVICE_HOST"), ip.clone()));
        out.push((format!("{name}_SERVICE_PORT"), first.port.to_string()));
        for p in &ports {
            if let Some(n) = &p.name {
                out.push((
                    format!("{name}_SERVICE_PORT_{}", n.to_uppercase().replace('-', "_")),
                    p.port.to_string(),
                ));
            }
        }
        let proto = |p: &k8s_openapi::api::core::v1::ServicePort| {
            p.protocol.clone().unwrap_or_else(|| "TCP".into())
        };
        out.push((
            format!("{name}_PORT"),
            format!("{}://{ip}:{}", proto(first).to_lowercase(), first.port),
        ));
        for p in &ports {
            let pr = proto(p);
            let prefix = format!("{name}_PORT_{}_{}", p.port, pr.to_uppercase());
            out.push((
                prefix.clone(),
                format!("{}://{ip}:{}", pr.to_lowercase(), p.port),
            ));
            out.push((format!("{prefix}_PROTO"), pr.to_lowercase()));
            out.push((format!("{prefix}_PORT"), p.port.to_string()));
            out.push((format!("{prefix}_ADDR"), ip.clone()));
        }
    }
    out
}

/// The value of a `fieldRef` path of the pod.
pub fn field_ref(pod: &Pod, path: &str, host_ip: &str, pod_ip: &str) -> Result<String, Error> {
    let meta = &pod.metadata;
    let spec = pod.spec.clone().unwrap_or_default();
    let bracket = |prefix: &str| -> Option<String> {
        path.strip_prefix(prefix)?
            .strip_suffix("']")
            .map(str::to_string)
    };
    let v = match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec.node_name.unwrap_or_default(),
        "spec.serviceAccountName" => spec.service_account_name.unwrap_or_default(),
        "status.hostIP" | "status.hostIPs" => host_ip.to_string(),
        "status.podIP" | "status.podIPs" => pod_ip.to_string(),
        "metadata.labels" | "metadata.annotations" => {
            let map = if path == "metadata.labels" {
                meta.labels.clone()
            } else {
                meta.annotations.clone()
            };
            map.unwrap_or_default()
                .iter()
                .map(|(k, v)| format!("{k}=\"{v}\""))
                .collect::<Vec<_>>()
                .join("\n")
        }
        _ => {
            if let Some(k) = bracket("metadata.labels['") {
                meta.labels
                    .clone()
                    .unwrap_or_default()
                    .get(&k)
                    .cloned()
                    .unwrap_or_default()
            } else if let Some(k) = bracket("metadata.annotations['") {
                meta.annotations
                    .clone()
                    .unwrap_or_default()
                    .get(&k)
                    .cloned()
                    .unwrap_or_default()
            } else {
                return Err(Error(format!("unsupported fieldRef path {path:?}")));
            }
        }
    };
    Ok(v)
}

/// `resourceFieldRef`: the container's limit or request in the divisor's unit; a missing
/// limit is the node's allocatable, as upstream.
pub fn resource_field_ref(
    container: &Container,
    resource: &str,
    divisor: Option<&str>,
    node_cpus: u32,
    node_memory: u64,
) -> Result<String, Error> {
    let r = container.resources.clone().unwrap_or_default();
    let (kind, which) = resource
        .split_once('.')
        .ok_or_else(|| Error(format!("unsupported resourceFieldRef {resource:?}")))?;
    let map = if kind == "limits" {
        r.limits
    } else {
        r.requests
    }
    .unwrap_or_default();
    let q = map.get(which).map(|q| q.0.clone());
    match which {
        "cpu" => {
            let m = q
                .as_deref()
                .and_then(pod::millicores)
                .unwrap_or(if kind == "limits" {
                    node_cpus as i64 * 1000
                } else {
                    0
                });
            let div = divisor.and_then(pod::millicores).unwrap_or(1000).max(1);
            // Upstream rounds up to the divisor.
            Ok(((m + div - 1) / div).to_string())
        }
        "memory" | "ephemeral-storage" => {
            let b = q
                .as_deref()
                .and_then(pod::bytes)
                .unwrap_or(if kind == "limits" {
                    node_memory as i64
                } else {
                    0
                });
            let div = divisor.and_then(pod::bytes).unwrap_or(1).max(1);
            Ok(((b + div - 1) / div).to_string())
        }
        _ => Err(Error(format!("unsupported resourceFieldRef {resource:?}"))),
    }
}

/// Everything `build` needs from outside the pod.
pub struct Inputs<'a> {
    pub client: &'a kube::Client,
    pub pod: &'a Pod,
    pub container: &'a Container,
    pub image_env: &'a [String],
    pub host_ip: &'a str,
    pub pod_ip: &'a str,
    pub node_cpus: u32,
    pub node_memory: u64,
}

fn cm_data(cm: ConfigMap) -> BTreeMap<String, String> {
    cm.data.unwrap_or_default()
}

fn secret_data(s: Secret) -> BTreeMap<String, String> {
    s.data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
        .collect()
}

/// The `data` of the ConfigMap or Secret `name`; `None` when it is absent and `optional`.
async fn string_data<K>(
    api: &Api<K>,
    name: &str,
    optional: Option<bool>,
    data: fn(K) -> BTreeMap<String, String>,
) -> Result<Option<BTreeMap<String, String>>, Error>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    // Upstream's messages name the kind in lower case.
    let word = K::kind(&()).to_lowercase();
    match api.get_opt(name).await {
        Ok(Some(obj)) => Ok(Some(data(obj))),
        Ok(None) if optional == Some(true) => Ok(None),
        Ok(None) => Err(Error(format!("{word} \"{name}\" not found"))),
        Err(e) => Err(Error(format!("reading {word} \"{name}\": {e}"))),
    }
}

/// One key of a `configMapKeyRef`/`secretKeyRef`; `None`: optional and absent, no variable.
fn key_of(
    data: Option<BTreeMap<String, String>>,
    key: &str,
    optional: Option<bool>,
    kind: &str,
    ns: &str,
    name: &str,
) -> Result<Option<String>, Error> {
    let Some(data) = data else { return Ok(None) };
    match data.get(key) {
        Some(v) => Ok(Some(v.clone())),
        None if optional == Some(true) => Ok(None),
        None => Err(Error(format!(
            "couldn't find key {key} in {kind} {ns}/{name}"
        ))),
    }
}

/// Builds the environment (`KEY=VALUE` strings, later ones win, order of first appearance
/// kept).
pub async fn build(i: &Inputs<'_>) -> Result<Vec<String>, Error> {
    let ns = i.pod.metadata.namespace.clone().unwrap_or_default();
    let spec = i.pod.spec.clone().unwrap_or_default();
    let mut vars: Vec<(String, String)> = i
        .image_env
        .iter()
        .filter_map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    // Service links: the `kubernetes` Service always (upstream adds the master service's
    // variables to every pod), the namespace's own when enableServiceLinks (default true).
    let services: Api<Service> = Api::namespaced(i.client.clone(), &ns);
    let mut links = Vec::new();
    if spec.enable_service_links.unwrap_or(true)
        && let Ok(list) = services.list(&Default::default()).await
    {
        links.extend(list.items);
    }
    if ns != "default"
        && let Ok(k) = Api::<Service>::namespaced(i.client.clone(), "default")
            .get("kubernetes")
            .await
    {
        links.push(k);
    }
    vars.extend(service_links(&links));
    let configmaps: Api<ConfigMap> = Api::namespaced(i.client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(i.client.clone(), &ns);
    for from in i.container.env_from.clone().unwrap_or_default() {
        let prefix = from.prefix.clone().unwrap_or_default();
        // Validation admits exactly one source per entry.
        let data = match (&from.config_map_ref, &from.secret_ref) {
            (Some(r), _) => string_data(&configmaps, &r.name, r.optional, cm_data).await?,
            (None, Some(r)) => string_data(&secrets, &r.name, r.optional, secret_data).await?,
            (None, None) => None,
        };
        for (k, v) in data.unwrap_or_default() {
            vars.push((format!("{prefix}{k}"), v));
        }
    }
    for e in i.container.env.clone().unwrap_or_default() {
        let known: BTreeMap<String, String> = vars.iter().cloned().collect();
        let value = if let Some(v) = &e.value {
            pod::expand(v, &known)
        } else if let Some(from) = &e.value_from {
            if let Some(f) = &from.field_ref {
                field_ref(i.pod, &f.field_path, i.host_ip, i.pod_ip)?
            } else if let Some(r) = &from.resource_field_ref {
                resource_field_ref(
                    i.container,
                    &r.resource,
                    r.divisor.as_ref().map(|d| d.0.as_str()),
                    i.node_cpus,
                    i.node_memory,
                )?
            } else if let Some(r) = &from.config_map_key_ref {
                let data = string_data(&configmaps, &r.name, r.optional, cm_data).await?;
                match key_of(data, &r.key, r.optional, "ConfigMap", &ns, &r.name)? {
                    Some(v) => v,
                    None => continue,
                }
            } else if let Some(r) = &from.secret_key_ref {
                let data = string_data(&secrets, &r.name, r.optional, secret_data).await?;
                match key_of(data, &r.key, r.optional, "Secret", &ns, &r.name)? {
                    Some(v) => v,
                    None => continue,
                }
            } else {
                String::new()
            }
        } else {
            String::new()
        };
        vars.push((e.name.clone(), value));
    }
    // Later definitions win, in the position of the first.
    let mut order: Vec<String> = Vec::new();
    let mut last: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in vars {
        if !last.contains_key(&k) {
            order.push(k.clone());
        }
        last.insert(k, v);
    }
    Ok(order
        .into_iter()
        .map(|k| {
            let v = &last[&k];
            format!("{k}={v}")
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn service_links_use_upstream_names() {
        let s: Service = serde_json::from_value(json!({
            "metadata": {"name": "web-app"},
            "spec": {"clusterIP": "10.43.0.7", "ports": [{"name": "http", "port": 80}, {"port": 53, "protocol": "UDP"}]}
        }))
        .unwrap();
        let env: BTreeMap<String, String> = service_links(&[s]).into_iter().collect();
        assert_eq!(env["WEB_APP_SERVICE_HOST"], "10.43.0.7");
        assert_eq!(env["WEB_APP_SERVICE_PORT"], "80");
        assert_eq!(env["WEB_APP_SERVICE_PORT_HTTP"], "80");
        assert_eq!(env["WEB_APP_PORT"], "tcp://10.43.0.7:80");
        assert_eq!(env["WEB_APP_PORT_53_UDP"], "udp://10.43.0.7:53");
        assert_eq!(env["WEB_APP_PORT_53_UDP_PROTO"], "udp");
        assert_eq!(env["WEB_APP_PORT_80_TCP_ADDR"], "10.43.0.7");
        let headless: Service = serde_json::from_value(json!({
            "metadata": {"name": "h"}, "spec": {"clusterIP": "None", "ports": [{"port": 1}]}
        }))
        .unwrap();
        assert!(service_links(&[headless]).is_empty());
    }

    #[test]
    fn field_and_resource_refs_resolve() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "n", "uid": "u", "labels": {"app": "x"}},
            "spec": {"nodeName": "node1", "containers": [{"name": "c",
                "resources": {"limits": {"memory": "64Mi"}, "requests": {"cpu": "250m"}}}]}
        }))
        .unwrap();
        assert_eq!(field_ref(&pod, "metadata.name", "h", "p").unwrap(), "p");
        assert_eq!(
            field_ref(&pod, "metadata.labels['app']", "h", "p").unwrap(),
            "x"
        );
        assert_eq!(
            field_ref(&pod, "status.podIP", "h", "10.42.0.2").unwrap(),
            "10.42.0.2"
        );
        assert!(field_ref(&pod, "spec.bogus", "h", "p").is_err());
        let c = &pod.spec.as_ref().unwrap().containers[0];
        assert_eq!(
            resource_field_ref(c, "limits.memory", Some("1Mi"), 2, 1 << 30).unwrap(),
            "64"
        );
        assert_eq!(
            resource_field_ref(c, "requests.cpu", Some("1m"), 2, 0).unwrap(),
            "250"
        );
        assert_eq!(
            resource_field_ref(c, "limits.cpu", None, 2, 0).unwrap(),
            "2"
        );
        assert_eq!(
            resource_field_ref(c, "requests.cpu", None, 2, 0).unwrap(),
            "1"
        );
    }
}
