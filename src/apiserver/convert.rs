//! Conversion between API versions that share one storage, as upstream's API server converts
//! between the versions of a resource: core/v1 and events.k8s.io/v1 Events both live under
//! `/registry/events/`, autoscaling/v1 and autoscaling/v2 HorizontalPodAutoscalers under
//! `/registry/horizontalpodautoscalers/` (upstream's etcd layout).
//!
//! A resource served in a version other than its storage version carries a [`Conversion`]. The
//! handlers convert every object read from the store into the request's version
//! (`handlers::present`: get, list, watch, delete answers) and every object written back into
//! the storage version ([`to_storage`]), so selectors, tables, patches, defaulting and
//! validation all see the version the client asked for, as upstream's do.
//!
//! The field mappings are upstream's (the conversion functions of k8s.io/kubernetes
//! `pkg/apis/events/v1` and `pkg/apis/autoscaling/v1`), written against JSON.

use serde_json::{Map, Value, json};

use super::resources::Resource;

type Object = Map<String, Value>;

/// How a served version maps to the storage version of its resource.
#[derive(Debug, Clone, Copy)]
pub struct Conversion {
    /// From the served version into the storage version.
    pub to_storage: fn(&Value) -> Value,
    /// From the storage version into the served version.
    pub from_storage: fn(&Value) -> Value,
}

/// events.k8s.io/v1, stored as core/v1. Upstream stores events in core/v1 (the `events`
/// resource is core's; events.k8s.io only serves it in another shape), and core/v1 can express
/// every events.k8s.io/v1 field, so objects written by either API read back unchanged.
pub const EVENTS_V1: Conversion = Conversion {
    to_storage: event_to_core,
    from_storage: event_to_events_v1,
};

/// autoscaling/v1, stored as autoscaling/v2: v2 is the richer version; what v1 cannot express
/// travels in upstream's round-trip annotations.
pub const AUTOSCALING_V1: Conversion = Conversion {
    to_storage: hpa_to_v2,
    from_storage: hpa_to_v1,
};

/// `obj` (in `resource`'s version) as it is stored.
pub fn to_storage(resource: &Resource, obj: &Value) -> Value {
    match &resource.conversion {
        Some(c) if obj.is_object() => (c.to_storage)(obj),
        _ => obj.clone(),
    }
}

/// A stored object in `resource`'s version.
pub fn from_storage(resource: &Resource, obj: &Value) -> Value {
    match &resource.conversion {
        Some(c) if obj.is_object() => (c.from_storage)(obj),
        _ => obj.clone(),
    }
}

// ---------------------------------------------------------------------------------------------
// Events.

/// core/v1 field ↔ events.k8s.io/v1 field (upstream's `Convert_v1_Event_To_core_Event` and
/// back). The fields in [`EVENT_SAME`] have one name in both.
const EVENT_RENAMED: &[(&str, &str)] = &[
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("source", "deprecatedSource"),
    ("reportingComponent", "reportingController"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
];
const EVENT_SAME: &[&str] = &[
    "metadata",
    "eventTime",
    "series",
    "action",
    "reason",
    "related",
    "reportingInstance",
    "type",
];

fn rename_event(obj: &Value, api_version: &str, to_core: bool) -> Value {
    let mut out = Object::new();
    out.insert("apiVersion".into(), json!(api_version));
    out.insert("kind".into(), json!("Event"));
    let present = |k: &str| obj.get(k).filter(|v| !v.is_null());
    for k in EVENT_SAME {
        if let Some(v) = present(k) {
            out.insert((*k).into(), v.clone());
        }
    }
    for (core, events) in EVENT_RENAMED {
        let (from, to) = if to_core {
            (events, core)
        } else {
            (core, events)
        };
        if let Some(v) = present(from) {
            out.insert((*to).into(), v.clone());
        }
    }
    Value::Object(out)
}

/// events.k8s.io/v1 → core/v1.
pub fn event_to_core(obj: &Value) -> Value {
    rename_event(obj, "v1", true)
}

/// core/v1 → events.k8s.io/v1.
pub fn event_to_events_v1(obj: &Value) -> Value {
    rename_event(obj, "events.k8s.io/v1", false)
}

// ---------------------------------------------------------------------------------------------
// HorizontalPodAutoscalers.

/// Upstream's round-trip annotations: v2 content autoscaling/v1 has no field for.
pub const METRICS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/metrics";
pub const CURRENT_METRICS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/current-metrics";
pub const BEHAVIOR_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/behavior";
pub const CONDITIONS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/conditions";
const ROUND_TRIP: [&str; 4] = [
    METRICS_ANNOTATION,
    CURRENT_METRICS_ANNOTATION,
    BEHAVIOR_ANNOTATION,
    CONDITIONS_ANNOTATION,
];
/// The CPU target autoscaling/v1 implies when none is set (upstream's `DefaultCPUUtilization`).
const DEFAULT_CPU_UTILIZATION: i64 = 80;

fn field<'a>(v: &'a Value, k: &str) -> Option<&'a Value> {
    v.get(k).filter(|x| !x.is_null())
}

/// Copies the present (non-null) `keys` of `from` into `to`, renamed `(from, to)`.
fn copy(from: &Value, to: &mut Object, keys: &[(&str, &str)]) {
    for (src, dst) in keys {
        if let Some(v) = field(from, src) {
            to.insert((*dst).into(), v.clone());
        }
    }
}

/// A Quantity that Go serializes even when zero.
fn quantity(v: Option<&Value>) -> Value {
    v.cloned().unwrap_or_else(|| json!("0"))
}

/// The metadata with upstream's round-trip annotations removed, and those annotations.
fn split_annotations(metadata: Option<&Value>) -> (Value, Object) {
    let mut metadata = metadata.cloned().unwrap_or_else(|| json!({}));
    let mut taken = Object::new();
    if let Some(annotations) = metadata
        .get_mut("annotations")
        .and_then(Value::as_object_mut)
    {
        for k in ROUND_TRIP {
            if let Some(v) = annotations.remove(k) {
                taken.insert(k.into(), v);
            }
        }
        if annotations.is_empty()
            && let Some(m) = metadata.as_object_mut()
        {
            m.remove("annotations");
        }
    }
    (metadata, taken)
}

fn is_cpu_resource(metric: &Value) -> bool {
    metric["type"] == "Resource" && metric.pointer("/resource/name") == Some(&json!("cpu"))
}

fn cpu_utilization_metric(n: Value) -> Value {
    json!({
        "type": "Resource",
        "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": n}},
    })
}

/// autoscaling/v2 → autoscaling/v1 (upstream's
/// `Convert_autoscaling_HorizontalPodAutoscaler_To_v1_HorizontalPodAutoscaler`).
pub fn hpa_to_v1(v2: &Value) -> Value {
    // Round-trip annotations already on the object are dropped: only the ones this conversion
    // produces are kept.
    let (mut metadata, _) = split_annotations(v2.get("metadata"));
    let mut annotations = Object::new();
    let null = Value::Null;
    let spec2 = field(v2, "spec").unwrap_or(&null);
    let mut spec = Object::new();
    copy(
        spec2,
        &mut spec,
        &[
            ("scaleTargetRef", "scaleTargetRef"),
            ("minReplicas", "minReplicas"),
            ("maxReplicas", "maxReplicas"),
        ],
    );
    let metrics = spec2
        .get("metrics")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    // The first CPU resource metric is v1's target, when it is a utilization.
    if let Some(u) = metrics
        .iter()
        .find(|m| is_cpu_resource(m))
        .and_then(|m| m.pointer("/resource/target/averageUtilization"))
        .filter(|u| !u.is_null())
    {
        spec.insert("targetCPUUtilizationPercentage".into(), u.clone());
    }
    let other: Vec<Value> = metrics
        .iter()
        .filter(|m| {
            !(is_cpu_resource(m)
                && m.pointer("/resource/target/averageUtilization")
                    .is_some_and(|u| !u.is_null()))
        })
        .map(metric_spec_to_v1)
        .collect();
    if !other.is_empty() {
        annotations.insert(METRICS_ANNOTATION.into(), json!(json!(other).to_string()));
    }
    if let Some(b) = field(spec2, "behavior") {
        annotations.insert(BEHAVIOR_ANNOTATION.into(), json!(behavior_to_go(b)));
    }
    let mut out = json!({
        "apiVersion": "autoscaling/v1",
        "kind": "HorizontalPodAutoscaler",
    });
    if let Some(status2) = field(v2, "status") {
        let mut status = Object::new();
        copy(
            status2,
            &mut status,
            &[
                ("observedGeneration", "observedGeneration"),
                ("lastScaleTime", "lastScaleTime"),
                ("currentReplicas", "currentReplicas"),
                ("desiredReplicas", "desiredReplicas"),
            ],
        );
        let current = status2
            .get("currentMetrics")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for m in &current {
            if is_cpu_resource(m)
                && let Some(u) = m
                    .pointer("/resource/current/averageUtilization")
                    .filter(|u| !u.is_null())
            {
                status.insert("currentCPUUtilizationPercentage".into(), u.clone());
            }
        }
        // All current metrics are kept, the CPU one too: it carries the raw value as well.
        if !current.is_empty() {
            let v1: Vec<Value> = current.iter().map(metric_status_to_v1).collect();
            annotations.insert(
                CURRENT_METRICS_ANNOTATION.into(),
                json!(json!(v1).to_string()),
            );
        }
        if let Some(conditions) = status2
            .get("conditions")
            .and_then(Value::as_array)
            .filter(|c| !c.is_empty())
        {
            // v1's condition has the same fields as v2's.
            annotations.insert(
                CONDITIONS_ANNOTATION.into(),
                json!(json!(conditions).to_string()),
            );
        }
        out["status"] = Value::Object(status);
    }
    if !annotations.is_empty() {
        let m = &mut metadata["annotations"];
        if !m.is_object() {
            *m = json!({});
        }
        if let Some(m) = m.as_object_mut() {
            m.extend(annotations);
        }
    }
    out["metadata"] = metadata;
    out["spec"] = Value::Object(spec);
    // Keep the key order readable: apiVersion, kind, metadata, spec, status.
    if let Some(status) = out.as_object_mut().and_then(|o| o.remove("status")) {
        out["status"] = status;
    }
    out
}

/// A JSON array held in an annotation; a bad annotation is ignored, as upstream ignores it.
fn annotation_list(annotations: &Object, key: &str) -> Option<Vec<Value>> {
    let text = annotations.get(key)?.as_str()?;
    match serde_json::from_str::<Value>(text).ok()? {
        Value::Array(a) => Some(a),
        Value::Null => Some(Vec::new()),
        _ => None,
    }
}

/// autoscaling/v1 → autoscaling/v2 (upstream's
/// `Convert_v1_HorizontalPodAutoscaler_To_autoscaling_HorizontalPodAutoscaler`).
pub fn hpa_to_v2(v1: &Value) -> Value {
    let (metadata, annotations) = split_annotations(v1.get("metadata"));
    let null = Value::Null;
    let spec1 = field(v1, "spec").unwrap_or(&null);
    let mut spec = Object::new();
    copy(
        spec1,
        &mut spec,
        &[
            ("scaleTargetRef", "scaleTargetRef"),
            ("minReplicas", "minReplicas"),
            ("maxReplicas", "maxReplicas"),
        ],
    );
    let mut metrics: Vec<Value> = field(spec1, "targetCPUUtilizationPercentage")
        .map(|n| vec![cpu_utilization_metric(n.clone())])
        .unwrap_or_default();
    if let Some(other) = annotation_list(&annotations, METRICS_ANNOTATION) {
        let mut all: Vec<Value> = other.iter().map(metric_spec_from_v1).collect();
        all.extend(metrics.drain(..).take(1));
        metrics = all;
    }
    if let Some(b) = annotations
        .get(BEHAVIOR_ANNOTATION)
        .and_then(Value::as_str)
        .and_then(|t| serde_json::from_str::<Value>(t).ok())
        .and_then(|b| behavior_from_go(&b))
    {
        spec.insert("behavior".into(), b);
    }
    // autoscaling/v1's implicit CPU target, made explicit as upstream's conversion does.
    if metrics.is_empty() {
        metrics.push(cpu_utilization_metric(json!(DEFAULT_CPU_UTILIZATION)));
    }
    // Upstream's order: scaleTargetRef, minReplicas, maxReplicas, metrics, behavior.
    let behavior = spec.remove("behavior");
    spec.insert("metrics".into(), json!(metrics));
    if let Some(b) = behavior {
        spec.insert("behavior".into(), b);
    }
    let mut out = json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata,
        "spec": spec,
    });
    let current = annotation_list(&annotations, CURRENT_METRICS_ANNOTATION);
    let conditions = annotation_list(&annotations, CONDITIONS_ANNOTATION);
    let status1 = field(v1, "status");
    if status1.is_some() || current.is_some() || conditions.is_some() {
        let status1 = status1.unwrap_or(&null);
        let mut status = Object::new();
        copy(
            status1,
            &mut status,
            &[
                ("observedGeneration", "observedGeneration"),
                ("lastScaleTime", "lastScaleTime"),
                ("currentReplicas", "currentReplicas"),
                ("desiredReplicas", "desiredReplicas"),
            ],
        );
        let mut current_metrics = field(status1, "currentCPUUtilizationPercentage")
            .map(|n| {
                vec![json!({
                    "type": "Resource",
                    "resource": {"name": "cpu", "current": {"averageUtilization": n}},
                })]
            })
            .unwrap_or_default();
        if let Some(current) = current {
            current_metrics = current.iter().map(metric_status_from_v1).collect();
        }
        if !current_metrics.is_empty() {
            status.insert("currentMetrics".into(), json!(current_metrics));
        }
        if let Some(c) = conditions.filter(|c| !c.is_empty()) {
            status.insert("conditions".into(), json!(c));
        }
        out["status"] = Value::Object(status);
    }
    out
}

/// v2's `metric: {name, selector}` as v1's name and selector fields.
fn metric_identifier_to_v1(v2: &Value, out: &mut Object, name: &str, selector: &str) {
    let null = Value::Null;
    let id = field(v2, "metric").unwrap_or(&null);
    out.insert(name.into(), id.get("name").cloned().unwrap_or(json!("")));
    if let Some(s) = field(id, "selector") {
        out.insert(selector.into(), s.clone());
    }
}

fn metric_identifier_from_v1(v1: &Value, name: &str, selector: &str) -> Value {
    let mut id = Object::new();
    id.insert("name".into(), v1.get(name).cloned().unwrap_or(json!("")));
    if let Some(s) = field(v1, selector) {
        id.insert("selector".into(), s.clone());
    }
    Value::Object(id)
}

/// A CrossVersionObjectReference (kind, name, apiVersion), in either direction.
fn object_reference(v: Option<&Value>) -> Value {
    let mut r = Object::new();
    if let Some(v) = v {
        copy(
            v,
            &mut r,
            &[
                ("kind", "kind"),
                ("name", "name"),
                ("apiVersion", "apiVersion"),
            ],
        );
    }
    Value::Object(r)
}

/// The source object of a metric (`resource`, `pods`, …) under its type's key.
fn source_key(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "Object" => "object",
        "Pods" => "pods",
        "Resource" => "resource",
        "ContainerResource" => "containerResource",
        "External" => "external",
        _ => return None,
    })
}

/// A v2 `MetricSpec` as v1's (the annotation's format).
fn metric_spec_to_v1(m: &Value) -> Value {
    let kind = m["type"].as_str().unwrap_or_default();
    let mut out = json!({"type": kind});
    let Some(key) = source_key(kind) else {
        return out;
    };
    let Some(src) = field(m, key) else {
        return out;
    };
    let null = Value::Null;
    let target = field(src, "target").unwrap_or(&null);
    let mut s = Object::new();
    match kind {
        "Object" => {
            s.insert(
                "target".into(),
                object_reference(field(src, "describedObject")),
            );
            metric_identifier_to_v1(src, &mut s, "metricName", "selector");
            s.insert("targetValue".into(), quantity(field(target, "value")));
            copy(target, &mut s, &[("averageValue", "averageValue")]);
        }
        "Pods" => {
            metric_identifier_to_v1(src, &mut s, "metricName", "selector");
            s.insert(
                "targetAverageValue".into(),
                quantity(field(target, "averageValue")),
            );
        }
        "Resource" | "ContainerResource" => {
            copy(src, &mut s, &[("name", "name")]);
            copy(
                target,
                &mut s,
                &[
                    ("averageUtilization", "targetAverageUtilization"),
                    ("averageValue", "targetAverageValue"),
                ],
            );
            copy(src, &mut s, &[("container", "container")]);
        }
        _ => {
            metric_identifier_to_v1(src, &mut s, "metricName", "metricSelector");
            copy(
                target,
                &mut s,
                &[
                    ("value", "targetValue"),
                    ("averageValue", "targetAverageValue"),
                ],
            );
        }
    }
    out[key] = Value::Object(s);
    out
}

/// A v1 `MetricSpec` (from the annotation) as v2's.
fn metric_spec_from_v1(m: &Value) -> Value {
    let kind = m["type"].as_str().unwrap_or_default();
    let mut out = json!({"type": kind});
    let Some(key) = source_key(kind) else {
        return out;
    };
    let Some(src) = field(m, key) else {
        return out;
    };
    let mut s = Object::new();
    let mut target = Object::new();
    match kind {
        "Object" => {
            let t = if field(src, "averageValue").is_none() {
                "Value"
            } else {
                "AverageValue"
            };
            s.insert(
                "describedObject".into(),
                object_reference(field(src, "target")),
            );
            target.insert("type".into(), json!(t));
            target.insert("value".into(), quantity(field(src, "targetValue")));
            copy(src, &mut target, &[("averageValue", "averageValue")]);
            s.insert("target".into(), Value::Object(target));
            s.insert(
                "metric".into(),
                metric_identifier_from_v1(src, "metricName", "selector"),
            );
        }
        "Pods" => {
            target.insert("type".into(), json!("AverageValue"));
            target.insert(
                "averageValue".into(),
                quantity(field(src, "targetAverageValue")),
            );
            s.insert(
                "metric".into(),
                metric_identifier_from_v1(src, "metricName", "selector"),
            );
            s.insert("target".into(), Value::Object(target));
        }
        "Resource" | "ContainerResource" => {
            let t = if field(src, "targetAverageUtilization").is_none() {
                "AverageValue"
            } else {
                "Utilization"
            };
            copy(src, &mut s, &[("name", "name")]);
            target.insert("type".into(), json!(t));
            copy(
                src,
                &mut target,
                &[
                    ("targetAverageUtilization", "averageUtilization"),
                    ("targetAverageValue", "averageValue"),
                ],
            );
            s.insert("target".into(), Value::Object(target));
            copy(src, &mut s, &[("container", "container")]);
        }
        _ => {
            let t = if field(src, "targetValue").is_none() {
                "AverageValue"
            } else {
                "Value"
            };
            s.insert(
                "metric".into(),
                metric_identifier_from_v1(src, "metricName", "metricSelector"),
            );
            target.insert("type".into(), json!(t));
            copy(
                src,
                &mut target,
                &[
                    ("targetValue", "value"),
                    ("targetAverageValue", "averageValue"),
                ],
            );
            s.insert("target".into(), Value::Object(target));
        }
    }
    out[key] = Value::Object(s);
    out
}

/// A v2 `MetricStatus` as v1's (the annotation's format).
fn metric_status_to_v1(m: &Value) -> Value {
    let kind = m["type"].as_str().unwrap_or_default();
    let mut out = json!({"type": kind});
    let Some(key) = source_key(kind) else {
        return out;
    };
    let Some(src) = field(m, key) else {
        return out;
    };
    let null = Value::Null;
    let current = field(src, "current").unwrap_or(&null);
    let mut s = Object::new();
    match kind {
        "Object" => {
            s.insert(
                "target".into(),
                object_reference(field(src, "describedObject")),
            );
            metric_identifier_to_v1(src, &mut s, "metricName", "selector");
            s.insert("currentValue".into(), quantity(field(current, "value")));
            copy(current, &mut s, &[("averageValue", "averageValue")]);
        }
        "Pods" => {
            metric_identifier_to_v1(src, &mut s, "metricName", "selector");
            s.insert(
                "currentAverageValue".into(),
                quantity(field(current, "averageValue")),
            );
        }
        "Resource" | "ContainerResource" => {
            copy(src, &mut s, &[("name", "name")]);
            copy(
                current,
                &mut s,
                &[("averageUtilization", "currentAverageUtilization")],
            );
            s.insert(
                "currentAverageValue".into(),
                quantity(field(current, "averageValue")),
            );
            copy(src, &mut s, &[("container", "container")]);
        }
        _ => {
            metric_identifier_to_v1(src, &mut s, "metricName", "metricSelector");
            s.insert("currentValue".into(), quantity(field(current, "value")));
            copy(current, &mut s, &[("averageValue", "currentAverageValue")]);
        }
    }
    out[key] = Value::Object(s);
    out
}

/// A v1 `MetricStatus` (from the annotation) as v2's.
fn metric_status_from_v1(m: &Value) -> Value {
    let kind = m["type"].as_str().unwrap_or_default();
    let mut out = json!({"type": kind});
    let Some(key) = source_key(kind) else {
        return out;
    };
    let Some(src) = field(m, key) else {
        return out;
    };
    let mut s = Object::new();
    let mut current = Object::new();
    match kind {
        "Object" => {
            s.insert(
                "describedObject".into(),
                object_reference(field(src, "target")),
            );
            current.insert("value".into(), quantity(field(src, "currentValue")));
            copy(src, &mut current, &[("averageValue", "averageValue")]);
            s.insert("current".into(), Value::Object(current));
            s.insert(
                "metric".into(),
                metric_identifier_from_v1(src, "metricName", "selector"),
            );
        }
        "Pods" => {
            s.insert(
                "metric".into(),
                metric_identifier_from_v1(src, "metricName", "selector"),
            );
            current.insert(
                "averageValue".into(),
                quantity(field(src, "currentAverageValue")),
            );
            s.insert("current".into(), Value::Object(current));
        }
        "Resource" | "ContainerResource" => {
            copy(src, &mut s, &[("name", "name")]);
            current.insert(
                "averageValue".into(),
                quantity(field(src, "currentAverageValue")),
            );
            copy(
                src,
                &mut current,
                &[("currentAverageUtilization", "averageUtilization")],
            );
            s.insert("current".into(), Value::Object(current));
            copy(src, &mut s, &[("container", "container")]);
        }
        _ => {
            s.insert(
                "metric".into(),
                metric_identifier_from_v1(src, "metricName", "metricSelector"),
            );
            current.insert("value".into(), quantity(field(src, "currentValue")));
            copy(
                src,
                &mut current,
                &[("currentAverageValue", "averageValue")],
            );
            s.insert("current".into(), Value::Object(current));
        }
    }
    out[key] = Value::Object(s);
    out
}

/// v2's `spec.behavior` as upstream writes it into the annotation: the JSON of the internal Go
/// type, which has no JSON tags, so its keys are the Go field names and unset pointers `null`.
fn behavior_to_go(b: &Value) -> String {
    let rules = |r: Option<&Value>| -> Value {
        let Some(r) = r.filter(|r| !r.is_null()) else {
            return Value::Null;
        };
        let policies = match r.get("policies").and_then(Value::as_array) {
            Some(ps) => Value::Array(
                ps.iter()
                    .map(|p| {
                        json!({
                            "Type": p.get("type").cloned().unwrap_or(json!("")),
                            "Value": p.get("value").cloned().unwrap_or(json!(0)),
                            "PeriodSeconds": p.get("periodSeconds").cloned().unwrap_or(json!(0)),
                        })
                    })
                    .collect(),
            ),
            None => Value::Null,
        };
        let mut out = json!({
            "StabilizationWindowSeconds": r.get("stabilizationWindowSeconds").cloned().unwrap_or(Value::Null),
            "SelectPolicy": r.get("selectPolicy").cloned().unwrap_or(Value::Null),
            "Policies": policies,
        });
        if let Some(t) = field(r, "tolerance") {
            out["Tolerance"] = t.clone();
        }
        out
    };
    json!({"ScaleUp": rules(b.get("scaleUp")), "ScaleDown": rules(b.get("scaleDown"))}).to_string()
}

/// The annotation's behavior back as v2's `spec.behavior`; `None` when it sets nothing. Go
/// decodes JSON keys case-insensitively, so any capitalisation is accepted.
fn behavior_from_go(b: &Value) -> Option<Value> {
    fn lower(v: &Value) -> Value {
        match v {
            Value::Object(o) => Value::Object(
                o.iter()
                    .filter(|(_, v)| !v.is_null())
                    .map(|(k, v)| (camel(k), lower(v)))
                    .collect(),
            ),
            Value::Array(a) => Value::Array(a.iter().map(lower).collect()),
            other => other.clone(),
        }
    }
    fn camel(k: &str) -> String {
        const NAMES: &[&str] = &[
            "scaleUp",
            "scaleDown",
            "stabilizationWindowSeconds",
            "selectPolicy",
            "policies",
            "type",
            "value",
            "periodSeconds",
            "tolerance",
        ];
        NAMES
            .iter()
            .find(|n| n.eq_ignore_ascii_case(k))
            .map_or_else(|| k.to_string(), |n| (*n).to_string())
    }
    let out = lower(b);
    out.as_object().filter(|o| !o.is_empty())?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events_v1() -> Value {
        json!({
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"name": "web.1", "namespace": "default"},
            "eventTime": "2024-01-02T03:04:05.000006Z",
            "reportingController": "example.com/controller",
            "reportingInstance": "controller-1",
            "action": "Scaling",
            "reason": "Scaled",
            "type": "Normal",
            "note": "scaled up",
            "regarding": {"kind": "Deployment", "name": "web", "namespace": "default", "uid": "u1", "apiVersion": "apps/v1"},
            "related": {"kind": "ReplicaSet", "name": "web-1", "namespace": "default"},
            "series": {"count": 3, "lastObservedTime": "2024-01-02T03:05:00.000000Z"},
            "deprecatedSource": {"component": "ctl", "host": "n1"},
            "deprecatedFirstTimestamp": "2024-01-02T03:04:05Z",
            "deprecatedLastTimestamp": "2024-01-02T03:05:00Z",
            "deprecatedCount": 3,
        })
    }

    #[test]
    fn events_v1_fields_map_onto_core_fields() {
        let core = event_to_core(&events_v1());
        assert_eq!(core["apiVersion"], "v1");
        assert_eq!(core["kind"], "Event");
        assert_eq!(core["involvedObject"]["name"], "web");
        assert_eq!(core["involvedObject"]["uid"], "u1");
        assert_eq!(core["message"], "scaled up");
        assert_eq!(core["source"]["component"], "ctl");
        assert_eq!(core["reportingComponent"], "example.com/controller");
        assert_eq!(core["reportingInstance"], "controller-1");
        assert_eq!(core["firstTimestamp"], "2024-01-02T03:04:05Z");
        assert_eq!(core["lastTimestamp"], "2024-01-02T03:05:00Z");
        assert_eq!(core["count"], 3);
        assert_eq!(core["series"]["count"], 3);
        assert_eq!(core["eventTime"], "2024-01-02T03:04:05.000006Z");
        assert_eq!(core["related"]["name"], "web-1");
        for gone in [
            "regarding",
            "note",
            "deprecatedSource",
            "reportingController",
        ] {
            assert!(core.get(gone).is_none(), "{gone} left in {core}");
        }
    }

    #[test]
    fn events_round_trip_both_ways() {
        let v1 = events_v1();
        assert_eq!(event_to_events_v1(&event_to_core(&v1)), v1);
        // An old-style core event (what `kubectl describe` has always read).
        let core = json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": "pod.1", "namespace": "default", "resourceVersion": "7"},
            "involvedObject": {"kind": "Pod", "name": "pod", "namespace": "default"},
            "reason": "Pulled",
            "message": "pulled",
            "source": {"component": "kubelet", "host": "n1"},
            "firstTimestamp": "2024-01-02T03:04:05Z",
            "lastTimestamp": "2024-01-02T03:04:05Z",
            "count": 1,
            "type": "Normal",
            "reportingComponent": "",
            "reportingInstance": "",
        });
        let v1 = event_to_events_v1(&core);
        assert_eq!(v1["regarding"]["kind"], "Pod");
        assert_eq!(v1["deprecatedCount"], 1);
        assert_eq!(v1["metadata"]["resourceVersion"], "7");
        assert_eq!(event_to_core(&v1), core);
    }

    #[test]
    fn null_event_fields_are_left_out() {
        let core = event_to_core(&json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "e"}, "eventTime": null, "deprecatedFirstTimestamp": null,
        }));
        assert_eq!(
            core,
            json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e"}})
        );
    }

    fn fields(causes: &[super::super::status::Cause]) -> Vec<String> {
        causes.iter().map(|c| c.field.clone()).collect()
    }

    #[test]
    fn events_validate_by_request_version_on_the_core_form() {
        use super::super::validation::event;
        let good = event_to_core(&events_v1());
        // The example sets deprecated fields, which the new API refuses on create.
        assert_eq!(
            fields(&event(&good, None, true)),
            ["firstTimestamp", "lastTimestamp", "count", "source"]
        );
        let mut fresh = events_v1();
        for k in [
            "deprecatedSource",
            "deprecatedFirstTimestamp",
            "deprecatedLastTimestamp",
            "deprecatedCount",
        ] {
            fresh.as_object_mut().unwrap().remove(k);
        }
        let fresh = event_to_core(&fresh);
        assert!(event(&fresh, None, true).is_empty());
        let bare = json!({"apiVersion": "v1", "kind": "Event",
            "metadata": {"name": "e", "namespace": "default"}, "type": "Odd"});
        // Core is lax about old-style events …
        assert!(event(&bare, None, false).is_empty());
        // … events.k8s.io/v1 is not.
        let strict = event(&bare, None, true);
        assert_eq!(fields(&strict), ["eventTime", "type"]);
        assert_eq!(
            strict[1].message,
            "Invalid value: \"\": has invalid value: Odd"
        );
        // With an eventTime the reporting fields are required in both, named per version.
        let mut timed = bare.clone();
        timed["eventTime"] = json!("2024-01-02T03:04:05.000000Z");
        timed["type"] = json!("Normal");
        assert_eq!(
            fields(&event(&timed, None, false)),
            [
                "reportingComponent",
                "reportingInstance",
                "action",
                "reason"
            ]
        );
        assert_eq!(fields(&event(&timed, None, true))[0], "reportingController");
        // Updates through events.k8s.io/v1 may change the series only.
        let mut changed = fresh.clone();
        changed["message"] = json!("other");
        changed["series"] = json!({"count": 1});
        assert_eq!(
            fields(&event(&changed, Some(&fresh), true)),
            ["series.count", "series.lastObservedTime", "message"]
        );
        assert!(event(&changed, Some(&fresh), false).is_empty());
    }

    #[test]
    fn v1_cpu_target_becomes_a_v2_resource_metric_and_back() {
        let v1 = json!({
            "apiVersion": "autoscaling/v1",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 1,
                "maxReplicas": 5,
                "targetCPUUtilizationPercentage": 60,
            },
            "status": {"currentReplicas": 2, "desiredReplicas": 3, "currentCPUUtilizationPercentage": 70},
        });
        let v2 = hpa_to_v2(&v1);
        assert_eq!(v2["apiVersion"], "autoscaling/v2");
        assert_eq!(
            v2["spec"]["metrics"],
            json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}}])
        );
        assert_eq!(
            v2["status"]["currentMetrics"],
            json!([{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 70}}}])
        );
        assert_eq!(v2["status"]["desiredReplicas"], 3);
        assert!(v2["spec"].get("targetCPUUtilizationPercentage").is_none());
        let back = hpa_to_v1(&v2);
        assert_eq!(back["spec"], v1["spec"]);
        assert_eq!(back["status"]["currentCPUUtilizationPercentage"], 70);
        // The raw current metric rides along in the annotation, as upstream keeps it.
        let current: Value = serde_json::from_str(
            back["metadata"]["annotations"][CURRENT_METRICS_ANNOTATION]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            current,
            json!([{"type": "Resource", "resource": {"name": "cpu", "currentAverageUtilization": 70, "currentAverageValue": "0"}}])
        );
        // And v1 → v2 → v1 → v2 is stable.
        assert_eq!(hpa_to_v2(&back)["spec"], v2["spec"]);
    }

    #[test]
    fn v1_without_a_target_gets_upstreams_default_cpu_metric() {
        let v2 = hpa_to_v2(&json!({
            "apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "a"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "a"}, "maxReplicas": 3},
        }));
        assert_eq!(
            v2["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
            80
        );
        assert!(v2.get("status").is_none());
        assert!(v2["metadata"].get("annotations").is_none());
    }

    #[test]
    fn v2_metrics_v1_cannot_express_round_trip_through_annotations() {
        let v2 = json!({
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "namespace": "default", "annotations": {"team": "a"}},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 2,
                "maxReplicas": 10,
                "metrics": [
                    {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}},
                    {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "500Mi"}}},
                    {"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "1k"}}},
                    {"type": "Object", "object": {
                        "describedObject": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "main"},
                        "metric": {"name": "requests", "selector": {"matchLabels": {"a": "b"}}},
                        "target": {"type": "Value", "value": "10k"}}},
                    {"type": "External", "external": {"metric": {"name": "queue"}, "target": {"type": "AverageValue", "averageValue": "30"}}},
                    {"type": "ContainerResource", "containerResource": {"name": "cpu", "container": "app", "target": {"type": "Utilization", "averageUtilization": 60}}},
                ],
                "behavior": {
                    "scaleDown": {"stabilizationWindowSeconds": 300, "selectPolicy": "Max", "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]},
                },
            },
            "status": {
                "desiredReplicas": 2,
                "currentReplicas": 2,
                "currentMetrics": [
                    {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 40, "averageValue": "100m"}}},
                    {"type": "External", "external": {"metric": {"name": "queue"}, "current": {"value": "12", "averageValue": "6"}}},
                ],
                "conditions": [
                    {"type": "AbleToScale", "status": "True", "lastTransitionTime": "2024-01-02T03:04:05Z", "reason": "ReadyForNewScale", "message": "ok"},
                ],
            },
        });
        let v1 = hpa_to_v1(&v2);
        assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 50);
        assert_eq!(v1["status"]["currentCPUUtilizationPercentage"], 40);
        let a = &v1["metadata"]["annotations"];
        assert_eq!(a["team"], "a");
        let metrics: Value = serde_json::from_str(a[METRICS_ANNOTATION].as_str().unwrap()).unwrap();
        assert_eq!(metrics.as_array().unwrap().len(), 5);
        assert_eq!(
            metrics[0],
            json!({"type": "Resource", "resource": {"name": "memory", "targetAverageValue": "500Mi"}})
        );
        assert_eq!(
            metrics[1],
            json!({"type": "Pods", "pods": {"metricName": "qps", "targetAverageValue": "1k"}})
        );
        assert_eq!(metrics[2]["object"]["targetValue"], "10k");
        assert_eq!(metrics[2]["object"]["target"]["kind"], "Ingress");
        assert_eq!(
            metrics[3],
            json!({"type": "External", "external": {"metricName": "queue", "targetAverageValue": "30"}})
        );
        let behavior: Value =
            serde_json::from_str(a[BEHAVIOR_ANNOTATION].as_str().unwrap()).unwrap();
        assert_eq!(behavior["ScaleUp"], Value::Null);
        assert_eq!(behavior["ScaleDown"]["StabilizationWindowSeconds"], 300);
        assert_eq!(behavior["ScaleDown"]["Policies"][0]["PeriodSeconds"], 15);
        assert!(a.get(CONDITIONS_ANNOTATION).is_some());

        // Back to v2: everything returns; the CPU target comes last, as upstream orders it.
        let again = hpa_to_v2(&v1);
        let mut want = v2["spec"]["metrics"].as_array().unwrap().clone();
        let cpu = want.remove(0);
        want.push(cpu);
        assert_eq!(again["spec"]["metrics"], json!(want));
        assert_eq!(again["spec"]["behavior"], v2["spec"]["behavior"]);
        assert_eq!(again["status"]["conditions"], v2["status"]["conditions"]);
        assert_eq!(
            again["status"]["currentMetrics"][0]["resource"]["current"],
            json!({"averageUtilization": 40, "averageValue": "100m"})
        );
        assert_eq!(
            again["status"]["currentMetrics"][1]["external"]["current"],
            json!({"value": "12", "averageValue": "6"})
        );
        assert_eq!(again["metadata"]["annotations"], json!({"team": "a"}));
    }

    #[test]
    fn stale_round_trip_annotations_are_replaced() {
        let v2 = json!({
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "a", "annotations": {METRICS_ANNOTATION: "[{\"type\":\"Pods\"}]"}},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "a"}, "maxReplicas": 3,
                     "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]},
        });
        let v1 = hpa_to_v1(&v2);
        assert!(v1["metadata"].get("annotations").is_none(), "{v1}");
        // A bad annotation is ignored, not an error.
        let mut bad = v1.clone();
        bad["metadata"]["annotations"] = json!({METRICS_ANNOTATION: "{not json"});
        assert_eq!(hpa_to_v2(&bad)["spec"]["metrics"], v2["spec"]["metrics"]);
    }

    #[test]
    fn behavior_annotation_uses_go_field_names() {
        let b = json!({"scaleUp": {"stabilizationWindowSeconds": 0, "selectPolicy": "Max",
            "policies": [{"type": "Pods", "value": 4, "periodSeconds": 15}]}});
        let text = behavior_to_go(&b);
        let go: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            go,
            json!({"ScaleUp": {"StabilizationWindowSeconds": 0, "SelectPolicy": "Max",
                "Policies": [{"Type": "Pods", "Value": 4, "PeriodSeconds": 15}]}, "ScaleDown": null})
        );
        assert_eq!(behavior_from_go(&go), Some(b));
        assert_eq!(
            behavior_from_go(&json!({"ScaleUp": null, "ScaleDown": null})),
            None
        );
    }
}
