//! `metrics.k8s.io/v1beta1`, served natively in place of k3s's metrics-server: `NodeMetrics`
//! and `PodMetrics` built from the `/stats/summary` of every kubelet this server reaches, for
//! `kubectl top`. Read-only (get, list), never stored; objects carry the labels of their Node or
//! Pod so that label selectors work as with metrics-server.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use http::{Method, Request};
use serde_json::{Value, json};

use super::meta;
use super::request;
use super::resources::Resource;
use super::selector::{FieldSelector, LabelSelector};
use super::status::{ApiError, Result};

// The kubelet's `GET /stats/summary` as the API server reads it. Components only meet on
// the wire (ARCHITECTURE.md invariant 2), so these mirror the JSON rather than import the
// kubelet's types.

/// Usage over a window, in the units metrics.k8s.io reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rate {
    /// The end of the window.
    pub timestamp: std::time::SystemTime,
    pub window: std::time::Duration,
    pub cpu_nano_cores: u64,
    pub memory_working_set_bytes: u64,
}

/// One running container of a pod.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct ContainerStats {
    pub name: String,
    pub usage: Rate,
}

/// One pod whose running containers all have a rate.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct PodStats {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub containers: Vec<ContainerStats>,
}

/// A kubelet's summary: the node's usage and its pods'.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, Default)]
pub struct Summary {
    pub node: Option<Rate>,
    pub pods: Vec<PodStats>,
}

pub const GROUP: &str = "metrics.k8s.io";
pub const VERSION: &str = "v1beta1";

/// The two resources, for discovery only (routing is `Api::metrics`).
pub fn resources() -> Vec<Resource> {
    let make = |kind: &str, plural: &str, namespaced: bool| Resource {
        group: GROUP.into(),
        version: VERSION.into(),
        kind: kind.into(),
        plural: plural.into(),
        // metrics-server registers its storage without a singular name.
        singular: String::new(),
        namespaced,
        short_names: Vec::new(),
        categories: Vec::new(),
        verbs: vec!["get", "list"],
        subresources: Vec::new(),
        schema_name: format!("io.k8s.metrics.pkg.apis.metrics.v1beta1.{kind}"),
        check: None,
        storage: String::new(),
        has_status: false,
        virtual_only: true,
        crd: None,
        conversion: None,
    };
    vec![
        make("NodeMetrics", "nodes", false),
        make("PodMetrics", "pods", true),
    ]
}

/// A CPU rate as metrics-server writes it: nanocores in canonical decimal form (`12345n`,
/// `250m`, `2`).
pub fn cpu_quantity(nano_cores: u64) -> String {
    if nano_cores == 0 {
        return "0".into();
    }
    let mut v = nano_cores;
    for suffix in ["n", "u", "m", ""] {
        if !v.is_multiple_of(1000) || suffix.is_empty() {
            return format!("{v}{suffix}");
        }
        v /= 1000;
    }
    format!("{v}")
}

/// Bytes in canonical binary form, as a BinarySI Quantity serializes (`2760Ki`, `1Mi`; plain
/// bytes when not a multiple of 1024).
pub fn memory_quantity(bytes: u64) -> String {
    if bytes == 0 {
        return "0".into();
    }
    let mut v = bytes;
    let mut suffix = "";
    for s in ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"] {
        if !v.is_multiple_of(1024) {
            break;
        }
        v /= 1024;
        suffix = s;
    }
    format!("{v}{suffix}")
}

/// A Go `time.Duration` string (`10s`, `10.005s`, `1m0.5s`), as metav1.Duration marshals.
pub fn go_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".into();
    }
    let total = d.as_secs();
    let (h, m, s) = (total / 3600, (total / 60) % 60, total % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    let nanos = d.subsec_nanos();
    if nanos == 0 {
        out.push_str(&format!("{s}s"));
    } else {
        let frac = format!("{nanos:09}");
        out.push_str(&format!("{s}.{}s", frac.trim_end_matches('0')));
    }
    out
}

fn timestamp(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    meta::rfc3339(secs)
}

fn usage(r: &Rate) -> Value {
    json!({
        "cpu": cpu_quantity(r.cpu_nano_cores),
        "memory": memory_quantity(r.memory_working_set_bytes),
    })
}

fn metadata(obj: &Value, now: &str) -> Value {
    let mut m = json!({"name": obj["metadata"]["name"], "creationTimestamp": now});
    if let Some(ns) = obj["metadata"]["namespace"].as_str() {
        m["namespace"] = json!(ns);
    }
    if let Some(labels) = obj["metadata"]["labels"].as_object() {
        m["labels"] = Value::Object(labels.clone());
    }
    m
}

/// The NodeMetrics of `node` (the Node object) from its kubelet's node rate.
pub fn node_metrics(node: &Value, rate: &Rate, now: &str) -> Value {
    json!({
        "kind": "NodeMetrics",
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "metadata": metadata(node, now),
        "timestamp": timestamp(rate.timestamp),
        "window": go_duration(rate.window),
        "usage": usage(rate),
    })
}

/// The PodMetrics of `pod` (the Pod object) from its kubelet's stats; `None` without
/// containers (no sample yet).
pub fn pod_metrics(pod: &Value, stats: &PodStats, now: &str) -> Option<Value> {
    let first = stats.containers.iter().min_by_key(|c| c.usage.timestamp)?;
    let containers: Vec<Value> = stats
        .containers
        .iter()
        .map(|c| json!({"name": c.name, "usage": usage(&c.usage)}))
        .collect();
    Some(json!({
        "kind": "PodMetrics",
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "metadata": metadata(pod, now),
        "timestamp": timestamp(first.usage.timestamp),
        "window": go_duration(first.usage.window),
        "containers": containers,
    }))
}

fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({
        "kind": format!("{kind}List"),
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "metadata": {},
        "items": items,
    })
}

fn selector_error(e: super::selector::Error) -> ApiError {
    ApiError::bad_request(e.to_string())
}

impl super::Api {
    /// Every registered kubelet's summary, by node name; a kubelet that does not answer is
    /// left out (its node and pods have no metrics, as with an unreachable metrics-server
    /// scrape).
    async fn summaries(&self) -> HashMap<String, Summary> {
        let routers: Vec<(String, axum::Router)> = self
            .kubelets
            .read()
            .map(|k| k.iter().map(|(n, r)| (n.clone(), r.clone())).collect())
            .unwrap_or_default();
        let mut out = HashMap::new();
        for (node, router) in routers {
            let Ok(req) = Request::builder()
                .method(Method::GET)
                .uri("/stats/summary")
                .body(Body::empty())
            else {
                continue;
            };
            let Ok(resp) = tower::ServiceExt::oneshot(router, req).await;
            if !resp.status().is_success() {
                tracing::debug!(%node, status = %resp.status(), "kubelet stats");
                continue;
            }
            let Ok(bytes) = axum::body::to_bytes(resp.into_body(), 64 << 20).await else {
                continue;
            };
            match serde_json::from_slice::<Summary>(&bytes) {
                Ok(s) => {
                    out.insert(node, s);
                }
                Err(e) => tracing::debug!(%node, error = %e, "decoding kubelet stats"),
            }
        }
        out
    }

    /// GET of `/apis/metrics.k8s.io/v1beta1/…`: one object or a list, with labelSelector and
    /// fieldSelector (metadata.name, metadata.namespace).
    pub(super) async fn metrics(
        &self,
        method: &Method,
        p: &request::Path,
        query: &request::Query,
        user: &super::User,
    ) -> Result<Value> {
        let namespaced = match (p.version.as_str(), p.resource.as_str()) {
            (VERSION, "nodes") => false,
            (VERSION, "pods") => true,
            _ => return Err(ApiError::no_route()),
        };
        let qualified = format!("{}.{GROUP}", p.resource);
        if p.subresource.is_some() || (!namespaced && p.namespace.is_some()) {
            return Err(ApiError::no_route());
        }
        if namespaced && p.name.is_some() && p.namespace.is_none() {
            return Err(ApiError::no_route());
        }
        let verb = match (method, &p.name) {
            (&Method::GET, Some(_)) => "get",
            (&Method::GET, None) if query.bool("watch")? => {
                return Err(ApiError::method_not_allowed("watch", &qualified));
            }
            (&Method::GET, None) => "list",
            _ => {
                let verb = match *method {
                    Method::POST => "create",
                    Method::PUT => "update",
                    Method::PATCH => "patch",
                    Method::DELETE => "delete",
                    _ => "unknown",
                };
                return Err(ApiError::method_not_allowed(verb, &qualified));
            }
        };
        super::authorize(
            user,
            &json!({"verb": verb, "group": GROUP, "resource": p.resource,
                "namespace": p.namespace, "name": p.name, "subresource": null}),
        )?;
        let labels = LabelSelector::parse(query.get("labelSelector").unwrap_or(""))
            .map_err(selector_error)?;
        let fields = FieldSelector::parse_custom(query.get("fieldSelector").unwrap_or(""), &[])
            .map_err(selector_error)?;
        let source = self
            .resource("", "v1", &p.resource)
            .ok_or_else(|| ApiError::internal(format!("{} are not registered", p.resource)))?;
        let objects: Vec<Value> = match &p.name {
            Some(name) => self
                .storage
                .get(&source.key(p.namespace.as_deref(), name))
                .await?
                .map(|s| s.object)
                .into_iter()
                .collect(),
            None => self
                .storage
                .list(&source.key_prefix(p.namespace.as_deref()), 0, None, 0)
                .await?
                .items
                .into_iter()
                .map(|s| s.object)
                .filter(|o| labels.matches(&o["metadata"]["labels"]) && fields.matches(o))
                .collect(),
        };
        let summaries = self.summaries().await;
        let now = meta::now_rfc3339();
        let items: Vec<Value> = if namespaced {
            let by_uid: HashMap<&str, &PodStats> = summaries
                .values()
                .flat_map(|s| &s.pods)
                .map(|p| (p.uid.as_str(), p))
                .collect();
            objects
                .iter()
                .filter_map(|pod| {
                    let uid = pod["metadata"]["uid"].as_str()?;
                    pod_metrics(pod, by_uid.get(uid)?, &now)
                })
                .collect()
        } else {
            objects
                .iter()
                .filter_map(|node| {
                    let name = node["metadata"]["name"].as_str()?;
                    let rate = summaries.get(name)?.node.as_ref()?;
                    Some(node_metrics(node, rate, &now))
                })
                .collect()
        };
        let kind = if namespaced {
            "PodMetrics"
        } else {
            "NodeMetrics"
        };
        match &p.name {
            Some(name) => items.into_iter().next().ok_or_else(|| {
                ApiError::not_found(
                    GROUP,
                    &p.resource,
                    &format!("{}.{GROUP}", kind.to_lowercase()),
                    name,
                )
            }),
            None => Ok(list(kind, items)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_are_canonical_as_metrics_server_serializes_them() {
        assert_eq!(cpu_quantity(0), "0");
        assert_eq!(cpu_quantity(12_345), "12345n");
        assert_eq!(cpu_quantity(2_517_229), "2517229n");
        assert_eq!(cpu_quantity(250_000_000), "250m");
        assert_eq!(cpu_quantity(1_500_000), "1500u");
        assert_eq!(cpu_quantity(2_000_000_000), "2");
        assert_eq!(memory_quantity(0), "0");
        assert_eq!(memory_quantity(2760 * 1024), "2760Ki");
        assert_eq!(memory_quantity(1024 * 1024), "1Mi");
        assert_eq!(memory_quantity(1000), "1000");
        assert_eq!(go_duration(Duration::from_secs(10)), "10s");
        assert_eq!(go_duration(Duration::from_millis(20_037)), "20.037s");
        assert_eq!(go_duration(Duration::from_millis(60_500)), "1m0.5s");
        assert_eq!(go_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn pod_metrics_carry_the_pod_labels_and_container_usage() {
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let rate = |cpu| Rate {
            timestamp: t,
            window: Duration::from_secs(10),
            cpu_nano_cores: cpu,
            memory_working_set_bytes: 4096 * 3,
        };
        let pod = json!({"metadata": {"name": "web", "namespace": "default", "uid": "u1",
            "labels": {"app": "web"}}});
        let stats = PodStats {
            namespace: "default".into(),
            name: "web".into(),
            uid: "u1".into(),
            containers: vec![ContainerStats {
                name: "main".into(),
                usage: rate(123_456),
            }],
        };
        let m = pod_metrics(&pod, &stats, "2026-01-01T00:00:00Z").unwrap();
        assert_eq!(m["kind"], "PodMetrics");
        assert_eq!(m["apiVersion"], "metrics.k8s.io/v1beta1");
        assert_eq!(m["metadata"]["labels"]["app"], "web");
        assert_eq!(m["metadata"]["namespace"], "default");
        assert_eq!(m["timestamp"], "2023-11-14T22:13:20Z");
        assert_eq!(m["window"], "10s");
        assert_eq!(
            m["containers"],
            json!([{"name": "main", "usage": {"cpu": "123456n", "memory": "12Ki"}}])
        );
        let empty = PodStats {
            containers: vec![],
            ..stats
        };
        assert_eq!(pod_metrics(&pod, &empty, "x"), None);
        let node = json!({"metadata": {"name": "n1", "labels": {"kubernetes.io/os": "linux"}}});
        let m = node_metrics(&node, &rate(1_000_000_000), "x");
        assert_eq!(m["usage"], json!({"cpu": "1", "memory": "12Ki"}));
        assert!(m["metadata"].get("namespace").is_none());
    }
}
