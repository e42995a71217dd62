//! Upstream validation of the built-in kinds (k8s.io/kubernetes/pkg/apis/*/validation), run
//! after defaulting on create (`old` is `None`) and update. Field paths, reasons and messages
//! follow upstream's so clients print what they would print against a real cluster.
//!
//! Metadata (names, labels, annotations) is validated by `meta`; this module looks at the rest.
//! Objects are JSON in their v1 form; a field of the wrong JSON type is reported as an invalid
//! value (upstream rejects it while decoding) and never panics.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use serde_json::{Map, Value, json};

use super::defaults::quantity_value;
use super::meta::{dns1123_label, dns1123_subdomain};
use super::selector::LabelSelector;
use super::status::Cause;

type Object = Map<String, Value>;

/// The validation causes of `obj` (`old` on updates).
pub fn validate(group: &str, resource: &str, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut c = Vec::new();
    let Some(o) = obj.as_object() else {
        c.push(Cause::invalid("", obj, "must be an object"));
        return c;
    };
    let old = old.and_then(Value::as_object);
    match (group, resource) {
        ("", "pods") => pod(o, old, &mut c),
        ("", "podtemplates") => pod_template(o.get("template"), "template", &mut c),
        ("", "replicationcontrollers") => replication_controller(o, old, &mut c),
        ("", "services") => service(o, old, &mut c),
        ("", "configmaps") => config_map(o, old, &mut c),
        ("", "secrets") => secret(o, old, &mut c),
        ("", "persistentvolumeclaims") => persistent_volume_claim(o, old, &mut c),
        ("", "resourcequotas") => resource_quota(o, &mut c),
        ("", "nodes") => node(o, old, &mut c),
        ("apps", "deployments") => deployment(o, old, &mut c),
        ("apps", "replicasets") => replica_set(o, old, &mut c),
        ("apps", "statefulsets") => stateful_set(o, old, &mut c),
        ("apps", "daemonsets") => daemon_set(o, old, &mut c),
        ("batch", "jobs") => job(o, old, &mut c),
        ("batch", "cronjobs") => cron_job(o, old, &mut c),
        ("rbac.authorization.k8s.io", "roles") => role(o, true, &mut c),
        ("rbac.authorization.k8s.io", "clusterroles") => role(o, false, &mut c),
        ("rbac.authorization.k8s.io", "rolebindings") => role_binding(o, old, true, &mut c),
        ("rbac.authorization.k8s.io", "clusterrolebindings") => role_binding(o, old, false, &mut c),
        ("policy", "poddisruptionbudgets") => pod_disruption_budget(o, &mut c),
        ("autoscaling", "horizontalpodautoscalers") => horizontal_pod_autoscaler(o, &mut c),
        ("networking.k8s.io", "ingresses") => ingress(o, &mut c),
        ("networking.k8s.io", "networkpolicies") => network_policy(o, &mut c),
        ("scheduling.k8s.io", "priorityclasses") => priority_class(o, old, &mut c),
        ("storage.k8s.io", "storageclasses") => storage_class(o, old, &mut c),
        _ => {}
    }
    c
}

/// The validation causes of a write to the status subresource of `obj` (upstream's
/// `ValidateUpdateStatus` of the registry strategies, on top of what `validate` checks).
pub fn status(group: &str, resource: &str, obj: &Value, old: &Value) -> Vec<Cause> {
    let mut c = Vec::new();
    if let (Some(o), Some(old)) = (obj.as_object(), old.as_object())
        && (group, resource) == ("batch", "jobs")
    {
        job_status(o, old, &mut c);
    }
    c
}

// ---------------------------------------------------------------------------------------------
// Paths, causes and typed reads.

fn at(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn idx(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

fn keyed(path: &str, key: &str) -> String {
    format!("{path}[{key}]")
}

/// `Required value: detail`.
fn required(field: impl Into<String>, detail: &str) -> Cause {
    let mut cause = Cause::required(field);
    if !detail.is_empty() {
        cause.message = format!("Required value: {detail}");
    }
    cause
}

/// `Not found: "value"`.
fn not_found(field: impl Into<String>, value: &str) -> Cause {
    Cause {
        reason: "FieldValueNotFound",
        message: format!("Not found: {}", go_quote(value)),
        field: field.into(),
    }
}

/// An invalid value whose rendering is already done (Go's `%#v` of maps and structs).
fn invalid_rendered(field: impl Into<String>, rendered: &str, detail: &str) -> Cause {
    Cause {
        reason: "FieldValueInvalid",
        message: format!("Invalid value: {rendered}: {detail}"),
        field: field.into(),
    }
}

fn go_quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

/// Go's `%#v` of a `map[string]string`: sorted keys, `nil` when unset.
fn go_string_map(v: Option<&Value>) -> String {
    match v.and_then(Value::as_object) {
        None => "map[string]string(nil)".to_string(),
        Some(m) => {
            let sorted: BTreeMap<&String, &Value> = m.iter().collect();
            let parts: Vec<String> = sorted
                .into_iter()
                .map(|(k, v)| {
                    let v = v.as_str().map(go_quote).unwrap_or_else(|| v.to_string());
                    format!("{}:{v}", go_quote(k))
                })
                .collect();
            format!("map[string]string{{{}}}", parts.join(", "))
        }
    }
}

/// Go's `%#v` of a `metav1.LabelSelector`.
fn go_label_selector(v: Option<&Value>) -> String {
    let labels = go_string_map(v.and_then(|s| s.get("matchLabels")));
    let exprs = match v
        .and_then(|s| s.get("matchExpressions"))
        .and_then(Value::as_array)
    {
        None => "[]v1.LabelSelectorRequirement(nil)".to_string(),
        Some(list) => {
            let parts: Vec<String> = list
                .iter()
                .map(|e| {
                    let s = |k: &str| go_quote(e.get(k).and_then(Value::as_str).unwrap_or(""));
                    let values = match e.get("values").and_then(Value::as_array) {
                        None => "[]string(nil)".to_string(),
                        Some(vs) => {
                            let vs: Vec<String> = vs
                                .iter()
                                .map(|v| go_quote(v.as_str().unwrap_or("")))
                                .collect();
                            format!("[]string{{{}}}", vs.join(", "))
                        }
                    };
                    format!(
                        "v1.LabelSelectorRequirement{{Key:{}, Operator:{}, Values:{values}}}",
                        s("key"),
                        s("operator")
                    )
                })
                .collect();
            format!("[]v1.LabelSelectorRequirement{{{}}}", parts.join(", "))
        }
    };
    format!("v1.LabelSelector{{MatchLabels:{labels}, MatchExpressions:{exprs}}}")
}

/// An object-valued field; absent and `null` are `None`, other types are reported.
fn obj<'a>(v: Option<&'a Value>, path: &str, c: &mut Vec<Cause>) -> Option<&'a Object> {
    match v {
        None | Some(Value::Null) => None,
        Some(Value::Object(o)) => Some(o),
        Some(other) => {
            c.push(Cause::invalid(path, other, "must be an object"));
            None
        }
    }
}

/// A list-valued field; absent, `null` and wrong types give an empty list.
fn list<'a>(v: Option<&'a Value>, path: &str, c: &mut Vec<Cause>) -> &'a [Value] {
    match v {
        None | Some(Value::Null) => &[],
        Some(Value::Array(a)) => a,
        Some(other) => {
            c.push(Cause::invalid(path, other, "must be a list"));
            &[]
        }
    }
}

/// A string field; absent and `null` read as `""` (Go's zero value).
fn string<'a>(v: Option<&'a Value>, path: &str, c: &mut Vec<Cause>) -> &'a str {
    match v {
        None | Some(Value::Null) => "",
        Some(Value::String(s)) => s,
        Some(other) => {
            c.push(Cause::invalid(path, other, "must be a string"));
            ""
        }
    }
}

/// An integer field; `None` when absent, `null`, or of the wrong type (reported).
fn int(v: Option<&Value>, path: &str, c: &mut Vec<Cause>) -> Option<i64> {
    match v {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) if n.as_i64().is_some() => n.as_i64(),
        Some(other) => {
            c.push(Cause::invalid(path, other, "must be an integer"));
            None
        }
    }
}

fn boolean(v: Option<&Value>, path: &str, c: &mut Vec<Cause>) -> Option<bool> {
    match v {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(other) => {
            c.push(Cause::invalid(path, other, "must be a boolean"));
            None
        }
    }
}

/// A `map[string]string` field: its entries, reporting non-string values.
fn string_map<'a>(v: Option<&'a Value>, path: &str, c: &mut Vec<Cause>) -> Vec<(&'a str, &'a str)> {
    let Some(m) = obj(v, path, c) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (k, v) in m {
        match v.as_str() {
            Some(s) => out.push((k.as_str(), s)),
            None => c.push(Cause::invalid(keyed(path, k), v, "must be a string")),
        }
    }
    out
}

const NONNEGATIVE: &str = "must be greater than or equal to 0";
const IMMUTABLE: &str = "field is immutable";
const PORT_RANGE: &str = "must be between 1 and 65535, inclusive";
const PROTOCOLS: [&str; 3] = ["SCTP", "TCP", "UDP"];

fn nonnegative(v: Option<&Value>, path: &str, c: &mut Vec<Cause>) {
    if let Some(n) = int(v, path, c)
        && n < 0
    {
        c.push(Cause::invalid(path, &json!(n), NONNEGATIVE));
    }
}

/// A string enum: `Required` when empty (if `required`), `Unsupported` when not allowed.
fn one_of(v: Option<&Value>, path: &str, allowed: &[&str], required_: bool, c: &mut Vec<Cause>) {
    let s = string(v, path, c);
    if s.is_empty() {
        if required_ && v.is_none_or(|v| v.is_null() || v.is_string()) {
            c.push(Cause::required(path));
        }
    } else if !allowed.contains(&s) {
        c.push(Cause::unsupported(path, &json!(s), allowed));
    }
}

/// Upstream's IANA_SVC_NAME rules for named ports.
fn port_name_errors(name: &str) -> Vec<&'static str> {
    let mut errs = Vec::new();
    if name.len() > 15 {
        errs.push("must be no more than 15 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        errs.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)");
    }
    if name.contains("--") {
        errs.push("must not contain consecutive hyphens");
    }
    if !name.bytes().any(|b| b.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)");
    }
    if name.starts_with('-') || name.ends_with('-') {
        errs.push("must not begin or end with a hyphen");
    }
    errs
}

fn port_number(v: Option<&Value>, path: &str, c: &mut Vec<Cause>) {
    if let Some(p) = int(v, path, c)
        && !(1..=65535).contains(&p)
    {
        c.push(Cause::invalid(path, &json!(p), PORT_RANGE));
    }
}

/// An IntOrString port: a number in range or an IANA service name.
fn port_number_or_name(v: Option<&Value>, path: &str, c: &mut Vec<Cause>) {
    match v {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => {
            for e in port_name_errors(s) {
                c.push(Cause::invalid(path, &json!(s), e));
            }
        }
        Some(other) => port_number(Some(other), path, c),
    }
}

/// `intstr` "positive int or percent" (ValidatePositiveIntOrPercent and
/// IsNotMoreThan100Percent); returns the value as an integer or percentage for the zero checks.
fn int_or_percent(v: Option<&Value>, path: &str, max_100: bool, c: &mut Vec<Cause>) -> Option<i64> {
    match v {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => {
            let digits = s.strip_suffix('%').unwrap_or("");
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                c.push(Cause::invalid(
                    path,
                    &json!(s),
                    "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
                ));
                return None;
            }
            let n = digits.parse::<i64>().unwrap_or(i64::MAX);
            if max_100 && n > 100 {
                c.push(Cause::invalid(
                    path,
                    &json!(s),
                    "must not be greater than 100%",
                ));
            }
            Some(n)
        }
        Some(other) => {
            let n = int(Some(other), path, c)?;
            if n < 0 {
                c.push(Cause::invalid(path, &json!(n), NONNEGATIVE));
            }
            Some(n)
        }
    }
}

/// Labels selector syntax (ValidateLabelSelector): operators and their values.
fn label_selector(v: Option<&Value>, path: &str, c: &mut Vec<Cause>) {
    let Some(sel) = obj(v, path, c) else {
        return;
    };
    string_map(sel.get("matchLabels"), &at(path, "matchLabels"), c);
    let exprs_path = at(path, "matchExpressions");
    for (i, e) in list(sel.get("matchExpressions"), &exprs_path, c)
        .iter()
        .enumerate()
    {
        let p = idx(&exprs_path, i);
        let Some(e) = obj(Some(e), &p, c) else {
            continue;
        };
        let op = string(e.get("operator"), &at(&p, "operator"), c);
        let values = list(e.get("values"), &at(&p, "values"), c);
        match op {
            "In" | "NotIn" => {
                if values.is_empty() {
                    c.push(required(
                        at(&p, "values"),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    ));
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    c.push(Cause::forbidden(
                        at(&p, "values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    ));
                }
            }
            other => c.push(Cause::invalid(
                at(&p, "operator"),
                &json!(other),
                "not a valid selector operator",
            )),
        }
        if string(e.get("key"), &at(&p, "key"), c).is_empty() {
            c.push(Cause::invalid(
                at(&p, "key"),
                &json!(""),
                "name part must be non-empty",
            ));
        }
    }
}

fn selector_is_empty(sel: &Value) -> bool {
    let none = |k: &str| match sel.get(k) {
        None | Some(Value::Null) => true,
        Some(Value::Object(m)) => m.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        Some(_) => false,
    };
    none("matchLabels") && none("matchExpressions")
}

/// Go's `reflect.DeepEqual` on decoded values, loosely: `null` and absent are the same.
fn same(a: Option<&Value>, b: Option<&Value>) -> bool {
    let norm = |v: Option<&Value>| v.filter(|v| !v.is_null()).cloned();
    norm(a) == norm(b)
}

/// A compact description of what differs between two objects, standing in for the `cmp.Diff`
/// upstream appends to some Forbidden messages.
fn diff(kind: &str, old: &Object, new: &Object) -> String {
    let keys: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    let mut out = format!("  {kind}{{\n");
    for k in keys {
        let (o, n) = (old.get(k), new.get(k));
        if same(o, n) {
            continue;
        }
        if let Some(o) = o.filter(|v| !v.is_null()) {
            out.push_str(&format!("- \t{k}: {o},\n"));
        }
        if let Some(n) = n.filter(|v| !v.is_null()) {
            out.push_str(&format!("+ \t{k}: {n},\n"));
        }
    }
    out.push_str("  }\n");
    out
}

// ---------------------------------------------------------------------------------------------
// Pods and pod templates.

fn pod(o: &Object, old: Option<&Object>, c: &mut Vec<Cause>) {
    let empty = Object::new();
    let spec = obj(o.get("spec"), "spec", c).unwrap_or(&empty);
    pod_spec(spec, "spec", true, c);
    if let Some(old) = old {
        let old_spec = old.get("spec").and_then(Value::as_object).unwrap_or(&empty);
        pod_update(spec, old_spec, c);
    }
}

/// A pod template (`metadata` + `spec`) at `path`.
fn pod_template(t: Option<&Value>, path: &str, c: &mut Vec<Cause>) {
    let empty = Object::new();
    let t = obj(t, path, c).unwrap_or(&empty);
    if let Some(meta) = obj(t.get("metadata"), &at(path, "metadata"), c) {
        string_map(meta.get("labels"), &at(path, "metadata.labels"), c);
    }
    let spec = obj(t.get("spec"), &at(path, "spec"), c).unwrap_or(&empty);
    pod_spec(spec, &at(path, "spec"), false, c);
}

/// The pod template's spec and labels, for the per-kind checks.
fn template_parts(spec: &Object) -> (Option<&Value>, Option<&Object>) {
    let t = spec.get("template");
    let labels = t
        .and_then(|t| t.get("metadata"))
        .and_then(|m| m.get("labels"));
    let pod_spec = t.and_then(|t| t.get("spec")).and_then(Value::as_object);
    (labels, pod_spec)
}

fn pod_spec(spec: &Object, path: &str, is_pod: bool, c: &mut Vec<Cause>) {
    let volumes = volumes(spec, path, c);
    containers(spec, path, &volumes, is_pod, c);
    let restart = at(path, "restartPolicy");
    one_of(
        spec.get("restartPolicy"),
        &restart,
        &["Always", "OnFailure", "Never"],
        true,
        c,
    );
    let dns = at(path, "dnsPolicy");
    one_of(
        spec.get("dnsPolicy"),
        &dns,
        &["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"],
        true,
        c,
    );
    if spec.get("dnsPolicy").and_then(Value::as_str) == Some("None")
        && spec.get("dnsConfig").is_none_or(Value::is_null)
    {
        c.push(required(
            at(path, "dnsConfig"),
            "must provide `dnsConfig` when `dnsPolicy` is None",
        ));
    }
    let ads = at(path, "activeDeadlineSeconds");
    if let Some(n) = int(spec.get("activeDeadlineSeconds"), &ads, c)
        && !(1..=i64::from(i32::MAX)).contains(&n)
    {
        c.push(Cause::invalid(
            ads,
            &json!(n),
            "must be between 1 and 2147483647, inclusive",
        ));
    }
    int(
        spec.get("terminationGracePeriodSeconds"),
        &at(path, "terminationGracePeriodSeconds"),
        c,
    );
    for key in ["serviceAccountName", "nodeName"] {
        let p = at(path, key);
        let s = string(spec.get(key), &p, c);
        if !s.is_empty()
            && let Some(e) = dns1123_subdomain(s)
        {
            c.push(Cause::invalid(p, &json!(s), &e));
        }
    }
    for key in ["hostname", "subdomain"] {
        let p = at(path, key);
        let s = string(spec.get(key), &p, c);
        if !s.is_empty()
            && let Some(e) = dns1123_label(s)
        {
            c.push(Cause::invalid(p, &json!(s), &e));
        }
    }
    for key in ["hostNetwork", "hostPID", "hostIPC", "enableServiceLinks"] {
        boolean(spec.get(key), &at(path, key), c);
    }
    string_map(spec.get("nodeSelector"), &at(path, "nodeSelector"), c);
    tolerations(spec.get("tolerations"), &at(path, "tolerations"), c);
    if spec.get("hostNetwork").and_then(Value::as_bool) == Some(true) {
        host_network_ports(spec, path, c);
    }
}

/// Every volume source of `core/v1.Volume`: a volume names exactly one.
pub const VOLUME_SOURCES: [&str; 30] = [
    "hostPath",
    "emptyDir",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "gitRepo",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "persistentVolumeClaim",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "downwardAPI",
    "fc",
    "azureFile",
    "configMap",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "projected",
    "portworxVolume",
    "scaleIO",
    "storageos",
    "csi",
    "ephemeral",
    "image",
];

/// Volumes: unique DNS-label names and exactly one source each. Returns the names.
fn volumes(spec: &Object, path: &str, c: &mut Vec<Cause>) -> BTreeSet<String> {
    const FILE_MODE: &str = "must be a number between 0 and 0777 (octal), both inclusive";
    let mut names = BTreeSet::new();
    let vpath = at(path, "volumes");
    for (i, v) in list(spec.get("volumes"), &vpath, c).iter().enumerate() {
        let p = idx(&vpath, i);
        let Some(v) = obj(Some(v), &p, c) else {
            continue;
        };
        let name = string(v.get("name"), &at(&p, "name"), c);
        if name.is_empty() {
            c.push(Cause::required(at(&p, "name")));
        } else if let Some(e) = dns1123_label(name) {
            c.push(Cause::invalid(at(&p, "name"), &json!(name), &e));
        } else if !names.insert(name.to_string()) {
            c.push(Cause::duplicate(at(&p, "name"), &json!(name)));
        }
        let given: Vec<&str> = VOLUME_SOURCES
            .iter()
            .copied()
            .filter(|k| v.get(*k).is_some_and(|s| !s.is_null()))
            .collect();
        match given.as_slice() {
            [] => c.push(required(p.clone(), "must specify a volume type")),
            [_] => {}
            [_, rest @ ..] => {
                for k in rest {
                    c.push(Cause::forbidden(
                        at(&p, k),
                        "may not specify more than 1 volume type",
                    ));
                }
            }
        }
        let must_name = [
            ("configMap", "name"),
            ("secret", "secretName"),
            ("persistentVolumeClaim", "claimName"),
            ("hostPath", "path"),
        ];
        for (source, field) in must_name {
            let sp = at(&p, source);
            if let Some(src) = obj(v.get(source), &sp, c)
                && string(src.get(field), &at(&sp, field), c).is_empty()
            {
                c.push(Cause::required(at(&sp, field)));
            }
        }
        for source in ["configMap", "secret", "downwardAPI", "projected"] {
            if let Some(src) = v.get(source).and_then(Value::as_object) {
                let mp = at(&at(&p, source), "defaultMode");
                if let Some(m) = int(src.get("defaultMode"), &mp, c)
                    && !(0..=0o777).contains(&m)
                {
                    c.push(Cause::invalid(mp, &json!(m), FILE_MODE));
                }
            }
        }
        if let Some(h) = v.get("hostPath").and_then(Value::as_object) {
            one_of(
                h.get("type"),
                &at(&p, "hostPath.type"),
                &[
                    "",
                    "DirectoryOrCreate",
                    "Directory",
                    "FileOrCreate",
                    "File",
                    "Socket",
                    "CharDevice",
                    "BlockDevice",
                ],
                false,
                c,
            );
        }
    }
    names
}

/// Containers and init containers: names unique across both, and each container's fields.
fn containers(
    spec: &Object,
    path: &str,
    volumes: &BTreeSet<String>,
    is_pod: bool,
    c: &mut Vec<Cause>,
) {
    let mut names = BTreeSet::new();
    let init_path = at(path, "initContainers");
    for (i, ctr) in list(spec.get("initContainers"), &init_path, c)
        .iter()
        .enumerate()
    {
        container(
            ctr,
            &idx(&init_path, i),
            true,
            &mut names,
            volumes,
            is_pod,
            c,
        );
    }
    let ctr_path = at(path, "containers");
    let list_ = list(spec.get("containers"), &ctr_path, c);
    if list_.is_empty() {
        c.push(Cause::required(&ctr_path));
    }
    for (i, ctr) in list_.iter().enumerate() {
        container(
            ctr,
            &idx(&ctr_path, i),
            false,
            &mut names,
            volumes,
            is_pod,
            c,
        );
    }
}

fn container(
    ctr: &Value,
    p: &str,
    init: bool,
    names: &mut BTreeSet<String>,
    volumes: &BTreeSet<String>,
    is_pod: bool,
    c: &mut Vec<Cause>,
) {
    let Some(ctr) = obj(Some(ctr), p, c) else {
        return;
    };
    let name = string(ctr.get("name"), &at(p, "name"), c);
    if name.is_empty() {
        c.push(Cause::required(at(p, "name")));
    } else if let Some(e) = dns1123_label(name) {
        c.push(Cause::invalid(at(p, "name"), &json!(name), &e));
    } else if !names.insert(name.to_string()) {
        c.push(Cause::duplicate(at(p, "name"), &json!(name)));
    }
    let image = string(ctr.get("image"), &at(p, "image"), c);
    if image.is_empty() {
        c.push(Cause::required(at(p, "image")));
    } else if is_pod && image.trim() != image {
        c.push(Cause::invalid(
            at(p, "image"),
            &json!(image),
            "must not have leading or trailing whitespace",
        ));
    }
    one_of(
        ctr.get("imagePullPolicy"),
        &at(p, "imagePullPolicy"),
        &["Always", "IfNotPresent", "Never"],
        true,
        c,
    );
    one_of(
        ctr.get("terminationMessagePolicy"),
        &at(p, "terminationMessagePolicy"),
        &["File", "FallbackToLogsOnError"],
        true,
        c,
    );
    let restart_path = at(p, "restartPolicy");
    let restart = string(ctr.get("restartPolicy"), &restart_path, c);
    let sidecar = init && restart == "Always";
    if !restart.is_empty() {
        if !init {
            c.push(Cause::forbidden(
                restart_path,
                "may not be set for non-init containers",
            ));
        } else if restart != "Always" {
            c.push(Cause::unsupported(
                restart_path,
                &json!(restart),
                &["Always"],
            ));
        }
    }
    container_ports(ctr, p, c);
    env(ctr, p, c);
    volume_mounts(ctr, p, volumes, c);
    resources(ctr.get("resources"), &at(p, "resources"), c);
    for (key, must_be_one) in [
        ("livenessProbe", true),
        ("readinessProbe", false),
        ("startupProbe", true),
    ] {
        let pp = at(p, key);
        let Some(probe) = obj(ctr.get(key), &pp, c) else {
            continue;
        };
        if init && !sidecar {
            c.push(Cause::forbidden(
                pp,
                "may not be set for init containers without restartPolicy=Always",
            ));
            continue;
        }
        if key == "readinessProbe" && init {
            c.push(Cause::forbidden(pp, "may not be set for init containers"));
            continue;
        }
        probe_(probe, &pp, must_be_one, c);
    }
}

fn container_ports(ctr: &Object, p: &str, c: &mut Vec<Cause>) {
    let ports_path = at(p, "ports");
    let mut port_names = BTreeSet::new();
    for (j, port) in list(ctr.get("ports"), &ports_path, c).iter().enumerate() {
        let pp = idx(&ports_path, j);
        let Some(port) = obj(Some(port), &pp, c) else {
            continue;
        };
        let name = string(port.get("name"), &at(&pp, "name"), c);
        if !name.is_empty() {
            for e in port_name_errors(name) {
                c.push(Cause::invalid(at(&pp, "name"), &json!(name), e));
            }
            if !port_names.insert(name.to_string()) {
                c.push(Cause::duplicate(at(&pp, "name"), &json!(name)));
            }
        }
        let cp = at(&pp, "containerPort");
        match int(port.get("containerPort"), &cp, c) {
            None | Some(0) if port.get("containerPort").is_none_or(|v| !v.is_string()) => {
                c.push(Cause::required(cp));
            }
            Some(n) if !(1..=65535).contains(&n) => {
                c.push(Cause::invalid(cp, &json!(n), PORT_RANGE));
            }
            _ => {}
        }
        let hp = at(&pp, "hostPort");
        if let Some(n) = int(port.get("hostPort"), &hp, c)
            && n != 0
            && !(1..=65535).contains(&n)
        {
            c.push(Cause::invalid(hp, &json!(n), PORT_RANGE));
        }
        one_of(
            port.get("protocol"),
            &at(&pp, "protocol"),
            &PROTOCOLS,
            true,
            c,
        );
    }
}

/// With the host's network, every host port must equal its container port.
fn host_network_ports(spec: &Object, path: &str, c: &mut Vec<Cause>) {
    for key in ["initContainers", "containers"] {
        let Some(list_) = spec.get(key).and_then(Value::as_array) else {
            continue;
        };
        for (i, ctr) in list_.iter().enumerate() {
            let Some(ports) = ctr.get("ports").and_then(Value::as_array) else {
                continue;
            };
            for (j, port) in ports.iter().enumerate() {
                let cp = port.get("containerPort").and_then(Value::as_i64);
                let hp = port.get("hostPort").and_then(Value::as_i64).unwrap_or(0);
                if let Some(cp) = cp
                    && hp != 0
                    && hp != cp
                {
                    c.push(Cause::invalid(
                        format!("{path}.{key}[{i}].ports[{j}].containerPort"),
                        &json!(cp),
                        "must match `hostPort` when `hostNetwork` is true",
                    ));
                }
            }
        }
    }
}

fn env(ctr: &Object, p: &str, c: &mut Vec<Cause>) {
    let env_path = at(p, "env");
    for (j, e) in list(ctr.get("env"), &env_path, c).iter().enumerate() {
        let ep = idx(&env_path, j);
        let Some(e) = obj(Some(e), &ep, c) else {
            continue;
        };
        let name = string(e.get("name"), &at(&ep, "name"), c);
        if name.is_empty() {
            c.push(Cause::required(at(&ep, "name")));
        } else if !name.bytes().all(|b| (32..=126).contains(&b) && b != b'=') {
            c.push(Cause::invalid(
                at(&ep, "name"),
                &json!(name),
                "a valid environment variable name must consist only of printable ASCII characters other than '='",
            ));
        }
        let value = string(e.get("value"), &at(&ep, "value"), c);
        let fp = at(&ep, "valueFrom");
        let Some(from) = obj(e.get("valueFrom"), &fp, c) else {
            continue;
        };
        let sources: Vec<&str> = [
            "fieldRef",
            "resourceFieldRef",
            "configMapKeyRef",
            "secretKeyRef",
        ]
        .into_iter()
        .filter(|k| from.get(*k).is_some_and(|v| !v.is_null()))
        .collect();
        match sources.len() {
            0 => c.push(Cause::invalid(
                &fp,
                &json!(""),
                "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
            )),
            1 => {}
            _ => c.push(Cause::invalid(
                &fp,
                &json!(""),
                "may not have more than one field specified at a time",
            )),
        }
        if !value.is_empty() {
            c.push(Cause::invalid(
                &fp,
                &json!(""),
                "may not be specified when `value` is not empty",
            ));
        }
        for key in ["configMapKeyRef", "secretKeyRef"] {
            let kp = at(&fp, key);
            if let Some(r) = obj(from.get(key), &kp, c)
                && string(r.get("key"), &at(&kp, "key"), c).is_empty()
            {
                c.push(Cause::required(at(&kp, "key")));
            }
        }
        let rp = at(&fp, "fieldRef");
        if let Some(r) = obj(from.get("fieldRef"), &rp, c)
            && string(r.get("fieldPath"), &at(&rp, "fieldPath"), c).is_empty()
        {
            c.push(Cause::required(at(&rp, "fieldPath")));
        }
    }
}

fn volume_mounts(ctr: &Object, p: &str, volumes: &BTreeSet<String>, c: &mut Vec<Cause>) {
    let mounts_path = at(p, "volumeMounts");
    let mut paths = BTreeSet::new();
    for (j, m) in list(ctr.get("volumeMounts"), &mounts_path, c)
        .iter()
        .enumerate()
    {
        let mp = idx(&mounts_path, j);
        let Some(m) = obj(Some(m), &mp, c) else {
            continue;
        };
        let name = string(m.get("name"), &at(&mp, "name"), c);
        if name.is_empty() {
            c.push(Cause::required(at(&mp, "name")));
        } else if !volumes.contains(name) {
            c.push(not_found(at(&mp, "name"), name));
        }
        let mount_path = string(m.get("mountPath"), &at(&mp, "mountPath"), c);
        if mount_path.is_empty() {
            c.push(Cause::required(at(&mp, "mountPath")));
        } else if !paths.insert(mount_path.to_string()) {
            c.push(Cause::invalid(
                at(&mp, "mountPath"),
                &json!(mount_path),
                "must be unique",
            ));
        }
        let sub = string(m.get("subPath"), &at(&mp, "subPath"), c);
        if sub.starts_with('/') {
            c.push(Cause::invalid(
                at(&mp, "subPath"),
                &json!(sub),
                "must be a relative path",
            ));
        } else if sub.split('/').any(|s| s == "..") {
            c.push(Cause::invalid(
                at(&mp, "subPath"),
                &json!(sub),
                "must not contain '..'",
            ));
        }
    }
}

/// Resource requirements: quantities parse, are not negative, name standard resources, and
/// requests do not exceed limits.
fn resources(v: Option<&Value>, path: &str, c: &mut Vec<Cause>) {
    const QUANTITY: &str = "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";
    let Some(r) = obj(v, path, c) else {
        return;
    };
    let mut parsed: BTreeMap<(&str, &str), (i128, &Value)> = BTreeMap::new();
    for which in ["limits", "requests"] {
        let wp = at(path, which);
        let Some(m) = obj(r.get(which), &wp, c) else {
            continue;
        };
        for (name, q) in m {
            let kp = keyed(&wp, name);
            if !name.contains('/')
                && !matches!(name.as_str(), "cpu" | "memory" | "ephemeral-storage")
                && !name.starts_with("hugepages-")
            {
                c.push(Cause::invalid(
                    &kp,
                    &json!(name),
                    "must be a standard resource for containers",
                ));
                continue;
            }
            match quantity_value(q) {
                None => c.push(Cause::invalid(&kp, q, QUANTITY)),
                Some(n) if n < 0 => c.push(Cause::invalid(&kp, q, NONNEGATIVE)),
                Some(n) => {
                    parsed.insert((which, name.as_str()), (n, q));
                }
            }
        }
    }
    for ((which, name), (request, q)) in &parsed {
        if *which != "requests" {
            continue;
        }
        if let Some((limit, lq)) = parsed.get(&("limits", *name))
            && request > limit
        {
            let limit_text = lq.as_str().map(str::to_string).unwrap_or(lq.to_string());
            c.push(Cause::invalid(
                keyed(&at(path, "requests"), name),
                &match q {
                    Value::Number(n) => json!(n.to_string()),
                    other => (*other).clone(),
                },
                &format!("must be less than or equal to {name} limit of {limit_text}"),
            ));
        }
    }
}

fn probe_(probe: &Object, pp: &str, must_be_one: bool, c: &mut Vec<Cause>) {
    let handlers: Vec<&str> = ["exec", "httpGet", "tcpSocket", "grpc"]
        .into_iter()
        .filter(|k| probe.get(*k).is_some_and(|v| !v.is_null()))
        .collect();
    match handlers.as_slice() {
        [] => c.push(required(pp, "must specify a handler type")),
        [_] => {}
        [_, rest @ ..] => {
            for k in rest {
                c.push(Cause::forbidden(
                    at(pp, k),
                    "may not specify more than 1 handler type",
                ));
            }
        }
    }
    for key in [
        "initialDelaySeconds",
        "timeoutSeconds",
        "periodSeconds",
        "successThreshold",
        "failureThreshold",
    ] {
        nonnegative(probe.get(key), &at(pp, key), c);
    }
    let sp = at(pp, "successThreshold");
    if must_be_one
        && let Some(n) = probe.get("successThreshold").and_then(Value::as_i64)
        && n != 1
    {
        c.push(Cause::invalid(sp, &json!(n), "must be 1"));
    }
    let gp = at(pp, "httpGet");
    if let Some(get) = obj(probe.get("httpGet"), &gp, c) {
        port_number_or_name(get.get("port"), &at(&gp, "port"), c);
        one_of(
            get.get("scheme"),
            &at(&gp, "scheme"),
            &["HTTP", "HTTPS"],
            false,
            c,
        );
    }
    let tp = at(pp, "tcpSocket");
    if let Some(tcp) = obj(probe.get("tcpSocket"), &tp, c) {
        port_number_or_name(tcp.get("port"), &at(&tp, "port"), c);
    }
}

fn tolerations(v: Option<&Value>, path: &str, c: &mut Vec<Cause>) {
    for (i, t) in list(v, path, c).iter().enumerate() {
        let p = idx(path, i);
        let Some(t) = obj(Some(t), &p, c) else {
            continue;
        };
        let key = string(t.get("key"), &at(&p, "key"), c);
        let op = string(t.get("operator"), &at(&p, "operator"), c);
        let value = string(t.get("value"), &at(&p, "value"), c);
        let effect = string(t.get("effect"), &at(&p, "effect"), c);
        let seconds = int(t.get("tolerationSeconds"), &at(&p, "tolerationSeconds"), c);
        if key.is_empty() && op != "Exists" {
            c.push(Cause::invalid(
                at(&p, "operator"),
                &json!(op),
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            ));
        }
        if seconds.is_some() && effect != "NoExecute" {
            c.push(Cause::invalid(
                at(&p, "effect"),
                &json!(effect),
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
        match op {
            "Equal" | "" => {}
            "Exists" => {
                if !value.is_empty() {
                    c.push(Cause::invalid(
                        at(&p, "operator"),
                        &Value::Object(t.clone()),
                        "value must be empty when `operator` is 'Exists'",
                    ));
                }
            }
            other => c.push(Cause::unsupported(
                at(&p, "operator"),
                &json!(other),
                &["Equal", "Exists"],
            )),
        }
        if !effect.is_empty() && !["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&effect)
        {
            c.push(Cause::unsupported(
                at(&p, "effect"),
                &json!(effect),
                &["NoSchedule", "PreferNoSchedule", "NoExecute"],
            ));
        }
    }
}

/// ValidatePodUpdate: only images, activeDeadlineSeconds, added tolerations, removed
/// scheduling gates and a negative grace period going to 1 may change.
fn pod_update(new: &Object, old: &Object, c: &mut Vec<Cause>) {
    const ONLY: &str = "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";
    let mut munged = new.clone();
    for key in ["containers", "initContainers"] {
        let new_list = new.get(key).and_then(Value::as_array);
        let old_list = old.get(key).and_then(Value::as_array);
        let (n, o) = (new_list.map_or(0, Vec::len), old_list.map_or(0, Vec::len));
        if n != o {
            c.push(Cause::forbidden(
                at("spec", key),
                "pod updates may not add or remove containers",
            ));
            return;
        }
        if let (Some(Value::Array(m)), Some(old_list)) = (munged.get_mut(key), old_list) {
            for (ctr, old_ctr) in m.iter_mut().zip(old_list) {
                if let (Some(ctr), Some(image)) = (ctr.as_object_mut(), old_ctr.get("image")) {
                    ctr.insert("image".into(), image.clone());
                }
            }
        }
    }
    // activeDeadlineSeconds may be set, or lowered, never raised or removed.
    let ads = "spec.activeDeadlineSeconds";
    let new_ads = new.get("activeDeadlineSeconds").and_then(Value::as_i64);
    let old_ads = old.get("activeDeadlineSeconds").and_then(Value::as_i64);
    match (new_ads, old_ads) {
        (Some(n), Some(o)) if n > o => c.push(Cause::invalid(
            ads,
            &json!(n),
            "must be less than or equal to previous value",
        )),
        (None, Some(_)) => c.push(Cause::invalid(
            ads,
            &Value::Null,
            "must not update from a positive integer to nil value",
        )),
        _ => {}
    }
    set_or_remove(
        &mut munged,
        "activeDeadlineSeconds",
        old.get("activeDeadlineSeconds"),
    );
    // Tolerations: every old one must still be there (its tolerationSeconds may change).
    let new_tol = new
        .get("tolerations")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let old_tol = old
        .get("tolerations")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let without_seconds = |t: &Value| {
        let mut t = t.clone();
        if let Some(o) = t.as_object_mut() {
            o.remove("tolerationSeconds");
        }
        t
    };
    let kept = old_tol.iter().all(|o| {
        let o = without_seconds(o);
        new_tol.iter().any(|n| without_seconds(n) == o)
    });
    if !kept {
        c.push(Cause::forbidden(
            "spec.tolerations",
            "existing toleration can not be modified except its tolerationSeconds",
        ));
    }
    set_or_remove(&mut munged, "tolerations", old.get("tolerations"));
    // Scheduling gates may only be removed.
    let gate_names = |spec: &Object| -> BTreeSet<String> {
        spec.get("schedulingGates")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|g| g.get("name").and_then(Value::as_str).map(str::to_string))
            .collect()
    };
    let old_gates = gate_names(old);
    for gate in gate_names(new) {
        if !old_gates.contains(&gate) {
            c.push(Cause::forbidden(
                "spec.schedulingGates",
                &format!("only deletion is allowed, but found new scheduling gate '{gate}'"),
            ));
        }
    }
    set_or_remove(&mut munged, "schedulingGates", old.get("schedulingGates"));
    let old_grace = old
        .get("terminationGracePeriodSeconds")
        .and_then(Value::as_i64);
    let new_grace = new
        .get("terminationGracePeriodSeconds")
        .and_then(Value::as_i64);
    if old_grace.is_some_and(|g| g < 0) && new_grace == Some(1) {
        set_or_remove(
            &mut munged,
            "terminationGracePeriodSeconds",
            old.get("terminationGracePeriodSeconds"),
        );
    }
    if !same_object(&munged, old) {
        let detail = format!("{ONLY}\n{}", diff("core.PodSpec", old, &munged));
        c.push(Cause::forbidden("spec", &detail));
    }
}

fn set_or_remove(o: &mut Object, key: &str, v: Option<&Value>) {
    match v {
        Some(v) => {
            o.insert(key.to_string(), v.clone());
        }
        None => {
            o.remove(key);
        }
    }
}

/// Object equality where `null` and absent fields are the same.
fn same_object(a: &Object, b: &Object) -> bool {
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter().all(|k| same(a.get(k), b.get(k)))
}

// ---------------------------------------------------------------------------------------------
// Workloads.

/// The shared checks of a controller's `selector` (metav1.LabelSelector) and template:
/// required, non-empty, matching the template labels.
fn selector_and_template(spec: &Object, kind: &str, c: &mut Vec<Cause>) {
    let sel = spec.get("selector");
    match sel {
        None | Some(Value::Null) => c.push(Cause::required("spec.selector")),
        Some(s) => {
            label_selector(Some(s), "spec.selector", c);
            if s.is_object() && selector_is_empty(s) {
                c.push(invalid_rendered(
                    "spec.selector",
                    &go_label_selector(Some(s)),
                    &format!("empty selector is invalid for {kind}"),
                ));
            } else if let Ok(parsed) = LabelSelector::from_label_selector_json(s) {
                let (labels, _) = template_parts(spec);
                let null = Value::Null;
                if !parsed.matches(labels.unwrap_or(&null)) {
                    c.push(invalid_rendered(
                        "spec.template.metadata.labels",
                        &go_string_map(labels),
                        "`selector` does not match template `labels`",
                    ));
                }
            }
        }
    }
}

/// Templates of always-running controllers: restartPolicy Always, no activeDeadlineSeconds.
fn always_restart(spec: &Object, kind: &str, c: &mut Vec<Cause>) {
    pod_template(spec.get("template"), "spec.template", c);
    let (_, pod_spec) = template_parts(spec);
    let Some(pod_spec) = pod_spec else {
        return;
    };
    if let Some(r) = pod_spec.get("restartPolicy").and_then(Value::as_str)
        && r != "Always"
        && ["OnFailure", "Never"].contains(&r)
    {
        c.push(Cause::unsupported(
            "spec.template.spec.restartPolicy",
            &json!(r),
            &["Always"],
        ));
    }
    if pod_spec
        .get("activeDeadlineSeconds")
        .is_some_and(|v| !v.is_null())
    {
        c.push(Cause::forbidden(
            "spec.template.spec.activeDeadlineSeconds",
            &format!("activeDeadlineSeconds in {kind} is not Supported"),
        ));
    }
}

fn selector_immutable(spec: &Object, old: Option<&Object>, c: &mut Vec<Cause>) {
    let Some(old_spec) = old.and_then(|o| o.get("spec")).and_then(Value::as_object) else {
        return;
    };
    if !same(spec.get("selector"), old_spec.get("selector")) {
        c.push(invalid_rendered(
            "spec.selector",
            &go_label_selector(spec.get("selector")),
            IMMUTABLE,
        ));
    }
}

fn spec_of<'a>(o: &'a Object, c: &mut Vec<Cause>) -> &'a Object {
    static EMPTY: std::sync::OnceLock<Object> = std::sync::OnceLock::new();
    obj(o.get("spec"), "spec", c).unwrap_or_else(|| EMPTY.get_or_init(Object::new))
}

fn deployment(o: &Object, old: Option<&Object>, c: &mut Vec<Cause>) {
    let spec = spec_of(o, c);
    nonnegative(spec.get("replicas"), "spec.replicas", c);
    selector_and_template(spec, "deployment", c);
    always_restart(spec, "Deployment", c);
    for key in ["minReadySeconds", "revisionHistoryLimit"] {
        nonnegative(spec.get(key), &at("spec", key), c);
    }
    boolean(spec.get("paused"), "spec.paused", c);
    if let Some(strategy) = obj(spec.get("strategy"), "spec.strategy", c) {
        let ty = string(strategy.get("type"), "spec.strategy.type", c);
        let ru = strategy.get("rollingUpdate").filter(|v| !v.is_null());
        match ty {
            "Recreate" => {
                if ru.is_some() {
                    c.push(Cause::forbidden(
                        "spec.strategy.rollingUpdate",
                        "may not be specified when strategy `type` is 'Recreate'",
                    ));
                }
            }
            "RollingUpdate" => match obj(ru, "spec.strategy.rollingUpdate", c) {
                None => c.push(required(
                    "spec.strategy.rollingUpdate",
                    "this should be defaulted and never be nil",
                )),
                Some(ru) => rolling_update(ru, "spec.strategy.rollingUpdate", c),
            },
            other => c.push(Cause::unsupported(
                "spec.strategy.type",
                &json!(other),
                &["Recreate", "RollingUpdate"],
            )),
        }
    }
    let pds = int(
        spec.get("progressDeadlineSeconds"),
        "spec.progressDeadlineSeconds",
        c,
    );
    let mrs = spec
        .get("minReadySeconds")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if let Some(p) = pds {
        if p < 0 {
            c.push(Cause::invalid(
                "spec.progressDeadlineSeconds",
                &json!(p),
                NONNEGATIVE,
            ));
        } else if p <= mrs {
            c.push(Cause::invalid(
                "spec.progressDeadlineSeconds",
                &json!(p),
                "must be greater than minReadySeconds",
            ));
        }
    }
    selector_immutable(spec, old, c);
}

/// maxUnavailable/maxSurge of deployments and daemon sets.
fn rolling_update(ru: &Object, path: &str, c: &mut Vec<Cause>) {
    let mu_path = at(path, "maxUnavailable");
    let mu = int_or_percent(ru.get("maxUnavailable"), &mu_path, true, c);
    let ms = int_or_percent(ru.get("maxSurge"), &at(path, "maxSurge"), false, c);
    if mu.unwrap_or(0) == 0 && ms.unwrap_or(0) == 0 {
        c.push(Cause::invalid(
            mu_path,
            ru.get("maxUnavailable").unwrap_or(&json!(0)),
            "may not be 0 when `maxSurge` is 0",
        ));
    }
}

fn replica_set(o: &Object, old: Option<&Object>, c: &mut Vec<Cause>) {
    let spec = spec_of(o, c);
    nonnegative(spec.get("replicas"), "spec.replicas", c);
    nonnegative(spec.get("minReadySeconds"), "spec.minReadySeconds", c);
    selector_and_template(spec, "deployment", c);
    always_restart(spec, "ReplicaSet", c);
    selector_immutable(spec, old, c);
}

fn replication_controller(o: &Object, _old: Option<&Object>, c: &mut Vec<Cause>) {
    let spec = spec_of(o, c);
    nonnegative(spec.get("replicas"), "spec.replicas", c);
    nonnegative(spec.get("minReadySeconds"), "spec.minReadySeconds", c);
    let selector = string_map(spec.get("selector"), "spec.selector", c);
    if selector.is_empty() {
        c.push(Cause::required("spec.selector"));
    } else {
        let (labels, _) = template_parts(spec);
        let matches = selector
            .iter()
            .all(|(k, v)| labels.and_then(|l| l.get(*k)).and_then(Value::as_str) == Some(*v));
        if !matches && spec.get("template").is_some_and(|t| !t.is_null()) {
            c.push(invalid_rendered(
                "spec.template.metadata.labels",
                &go_string_map(labels),
                "`selector` does not match template `labels`",
            ));
        }
    }
    always_restart(spec, "ReplicationController", c);
}

fn stateful_set(o: &Object, old: Option<&Object>, c: &mut Vec<Cause>) {
    let spec = spec_of(o, c);
    one_of(
        spec.get("podManagementPolicy"),
        "spec.podManagementPolicy",
        &["OrderedReady", "Parallel"],
        true,
        c,
    );
    if let Some(strategy) = obj(spec.get("updateStrategy"), "spec.updateStrategy", c) {
        let ty = string(strategy.get("type"), "spec.updateStrategy.type", c);
        let ru_path = "spec.updateStrategy.rollingUpdate";
        let ru = obj(strategy.get("rollingUpdate"), ru_path, c);
        match ty {
            "OnDelete" => {
                if let Some(ru) = ru {
                    c.push(Cause::invalid(
                        ru_path,
                        &Value::Object(ru.clone()),
                        "only allowed for updateStrategy 'RollingUpdate'",
                    ));
                }
            }
            "RollingUpdate" => {
                if let Some(ru) = ru {
                    nonnegative(ru.get("partition"), &at(ru_path, "partition"), c);
                    if ru.get("maxUnavailable").is_some_and(|v| !v.is_null()) {
                        let p = at(ru_path, "maxUnavailable");
                        if int_or_percent(ru.get("maxUnavailable"), &p, true, c) == Some(0) {
                            c.push(Cause::invalid(
                                p,
                                ru.get("maxUnavailable").unwrap_or(&Value::Null),
                                "must be greater than 0",
                            ));
                        }
                    }
                }
            }
            "" => c.push(required("spec.updateStrategy", "must specify a type")),
            other => c.push(Cause::unsupported(
                "spec.updateStrategy.type",
                &json!(other),
                &["OnDelete", "RollingUpdate"],
            )),
        }
    }
    let rp = "spec.persistentVolumeClaimRetentionPolicy";
    if let Some(policy) = obj(spec.get("persistentVolumeClaimRetentionPolicy"), rp, c) {
        for key in ["whenDeleted", "whenScaled"] {
            one_of(
                policy.get(key),
                &at(rp, key),
                &["Retain", "Delete"],
                true,
                c,
            );
        }
    }
    for key in ["replicas", "minReadySeconds", "revisionHistoryLimit"] {
        nonnegative(spec.get(key), &at("spec", key), c);
    }
    if let Some(ord) = obj(spec.get("ordinals"), "spec.ordinals", c) {
        nonnegative(ord.get("start"), "spec.ordinals.start", c);
    }
    selector_and_template(spec, "statefulset", c);
    // The controller adds a volume per claim template to each pod, so mounts may name them
    // (upstream skips the template's volume checks for this reason).
    let mut with_claims = spec.clone();
    let claims: Vec<String> = spec
        .get("volumeClaimTemplates")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| t.pointer("/metadata/name").and_then(Value::as_str))
        .map(str::to_string)
        .collect();
    if let Some(pod_spec) = with_claims
        .get_mut("template")
        .and_then(|t| t.get_mut("spec"))
        .and_then(Value::as_object_mut)
    {
        let volumes = pod_spec.entry("volumes").or_insert_with(|| json!([]));
        if let Some(list) = volumes.as_array_mut() {
            for name in claims {
                if !list.iter().any(|v| v["name"] == name.as_str()) {
                    list.push(json!({"name": name, "persistentVolumeClaim": {"claimName": name}}));
                }
            }
        }
    }
    always_restart(&with_claims, "StatefulSet", c);
    // ValidateStatefulSetUpdate: only these spec fields may change.
    if let Some(old_spec) = old.and_then(|o| o.get("spec")).and_then(Value::as_object) {
        let mutable = [
            "replicas",
            "ordinals",
            "template",
            "updateStrategy",
            "revisionHistoryLimit",
            "persistentVolumeClaimRetentionPolicy",
            "minReadySeconds",
        ];
        let strip = |s: &Object| -> Object {
            s.iter()
                .filter(|(k, _)| !mutable.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        if !same_object(&strip(spec), &strip(old_spec)) {
            c.push(Cause::forbidden(
                "spec",
                "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
            ));
        }
    }
}

fn daemon_set(o: &Object, old: Option<&Object>, c: &mut Vec<Cause>) {
    let spec = spec_of(o, c);
    selector_and_template(spec, "daemonset", c);
    always_restart(spec, "DaemonSet", c);
    for key in [
        "minReadySeconds",
        "revisionHistoryLimit",
        "templateGeneration",
    ] {
        nonnegative(spec.get(key), &at("spec", key), c);
    }
    if let Some(strategy) = obj(spec.get("updateStrategy"), "spec.updateStrategy", c) {
        let ty = string(strategy.get("type"), "spec.updateStrategy.type", c);
        let ru_path = "spec.updateStrategy.rollingUpdate";
        match ty {
            "OnDelete" => {}
            "RollingUpdate" => match obj(strategy.get("rollingUpdate"), ru_path, c) {
                None => c.push(Cause::required(ru_path)),
                Some(ru) => rolling_update(ru, ru_path, c),
            },
            other => c.push(Cause::unsupported(
                "spec.updateStrategy.type",
                &json!(other),
                &["RollingUpdate", "OnDelete"],
            )),
        }
    }
    selector_immutable(spec, old, c);
}

// ---------------------------------------------------------------------------------------------
// Jobs and CronJobs.

/// validateJobSpec: the checks shared by Jobs and CronJob job templates, at `path`.
fn job_spec(spec: &Object, path: &str, c: &mut Vec<Cause>) {
    for key in [
        "parallelism",
        "completions",
        "activeDeadlineSeconds",
        "backoffLimit",
        "ttlSecondsAfterFinished",
    ] {
        nonnegative(spec.get(key), &at(path, key), c);
    }
    let mode = at(path, "completionMode");
    one_of(
        spec.get("completionMode"),
        &mode,
        &["NonIndexed", "Indexed"],
        false,
        c,
    );
    if spec.get("completionMode").and_then(Value::as_str) == Some("Indexed")
        && spec.get("completions").is_none_or(Value::is_null)
    {
        c.push(required(
            at(path, "completions"),
            "when completion mode is Indexed",
        ));
    }
    per_index_limits(spec, path, c);
    pod_failure_policy(spec, path, c);
    success_policy(spec, path, c);
    // Upstream's `validatePodReplacementPolicy`: with a podFailurePolicy only Failed.
    let has_pfp = spec.get("podFailurePolicy").is_some_and(|v| !v.is_null());
    let replacement: &[&str] = if has_pfp {
        &["Failed"]
    } else {
        &["Failed", "TerminatingOrFailed"]
    };
    one_of(
        spec.get("podReplacementPolicy"),
        &at(path, "podReplacementPolicy"),
        replacement,
        false,
        c,
    );
    for key in ["suspend", "manualSelector"] {
        boolean(spec.get(key), &at(path, key), c);
    }
    let tp = at(path, "template");
    pod_template(spec.get("template"), &tp, c);
    let restart = spec
        .get("template")
        .and_then(|t| t.get("spec"))
        .and_then(|s| s.get("restartPolicy"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let restart_path = at(&tp, "spec.restartPolicy");
    match restart {
        "Always" | "" => c.push(required(
            restart_path,
            "valid values: \"OnFailure\", \"Never\"",
        )),
        "OnFailure" if has_pfp => c.push(Cause::invalid(
            restart_path,
            &json!(restart),
            "only \"Never\" is supported when podFailurePolicy is specified",
        )),
        "OnFailure" | "Never" => {}
        other => c.push(Cause::unsupported(
            restart_path,
            &json!(other),
            &["OnFailure", "Never"],
        )),
    }
}

/// Upstream's limits for Indexed Jobs (`maxParallelismForIndexedJob`,
/// `maxFailedIndexesForIndexedJob`, `completionsSoftLimit`,
/// `parallelismLimitForHighCompletions`, `maxFailedIndexesLimitForHighCompletions`).
const INDEXED_LIMIT: i64 = 100_000;
const HIGH_COMPLETIONS_LIMIT: i64 = 10_000;
/// Upstream's `maxSuccessPolicyRule` and `maxJobSuccessPolicySucceededIndexesLimit`.
const SUCCESS_POLICY_RULES: usize = 20;
const SUCCEEDED_INDEXES_LENGTH: usize = 64 * 1024;

fn is_indexed(spec: &Object) -> bool {
    spec.get("completionMode").and_then(Value::as_str) == Some("Indexed")
}

/// Upstream's `validateJobSpec` for `backoffLimitPerIndex` and `maxFailedIndexes`: both need
/// the Indexed completion mode, and `maxFailedIndexes` needs `backoffLimitPerIndex` and at
/// most `completions`.
fn per_index_limits(spec: &Object, path: &str, c: &mut Vec<Cause>) {
    for key in ["backoffLimitPerIndex", "maxFailedIndexes"] {
        nonnegative(spec.get(key), &at(path, key), c);
    }
    let num = |key: &str| spec.get(key).and_then(Value::as_i64);
    let (per_index, max_failed) = (num("backoffLimitPerIndex"), num("maxFailedIndexes"));
    let max_path = at(path, "maxFailedIndexes");
    if max_failed.is_some() && per_index.is_none() {
        c.push(required(
            at(path, "backoffLimitPerIndex"),
            "when maxFailedIndexes is specified",
        ));
    }
    if !is_indexed(spec) {
        if let Some(v) = per_index {
            c.push(Cause::invalid(
                at(path, "backoffLimitPerIndex"),
                &json!(v),
                "requires indexed completion mode",
            ));
        }
        if let Some(v) = max_failed {
            c.push(Cause::invalid(
                &max_path,
                &json!(v),
                "requires indexed completion mode",
            ));
        }
        return;
    }
    let completions = num("completions");
    if let (Some(n), Some(m)) = (completions, max_failed)
        && m > n
    {
        c.push(Cause::invalid(
            &max_path,
            &json!(m),
            "must be less than or equal to completions",
        ));
    }
    if let Some(m) = max_failed.filter(|m| *m > INDEXED_LIMIT) {
        c.push(Cause::invalid(
            &max_path,
            &json!(m),
            &format!("must be less than or equal to {INDEXED_LIMIT}"),
        ));
    }
    if completions.is_some_and(|n| n > INDEXED_LIMIT) && per_index.is_some() {
        let high = format!(
            "must be less than or equal to {HIGH_COMPLETIONS_LIMIT} when completions are above \
             {INDEXED_LIMIT} and used with backoff limit per index"
        );
        if max_failed.is_none() {
            c.push(required(
                &max_path,
                &format!("must be specified when completions is above {INDEXED_LIMIT}"),
            ));
        }
        if let Some(p) = num("parallelism").filter(|p| *p > HIGH_COMPLETIONS_LIMIT) {
            c.push(Cause::invalid(at(path, "parallelism"), &json!(p), &high));
        }
        if let Some(m) = max_failed.filter(|m| *m > HIGH_COMPLETIONS_LIMIT) {
            c.push(Cause::invalid(&max_path, &json!(m), &high));
        }
    }
}

/// Upstream's `maxPodFailurePolicyRules`, `maxPodFailurePolicyOnExitCodesValues` and
/// `maxPodFailurePolicyOnPodConditionsPatterns`.
const POD_FAILURE_POLICY_RULES: usize = 20;
const ON_EXIT_CODES_VALUES: usize = 255;
const ON_POD_CONDITIONS_PATTERNS: usize = 20;

/// `Too many: n: must have at most max items` (upstream's `field.TooMany`).
fn too_many(field: impl Into<String>, actual: usize, max: usize) -> Cause {
    Cause {
        reason: "FieldValueTooMany",
        message: format!("Too many: {actual}: must have at most {max} items"),
        field: field.into(),
    }
}

/// An invalid value upstream reports without the value (`field.OmitValueType`).
fn invalid_omitted(field: impl Into<String>, detail: &str) -> Cause {
    Cause {
        reason: "FieldValueInvalid",
        message: format!("Invalid value: {detail}"),
        field: field.into(),
    }
}

/// Go's `%#v` of a `[]int32` decoded from `v` (`nil` when absent).
fn go_int32_slice(v: Option<&Value>) -> String {
    match v.and_then(Value::as_array) {
        None => "[]int32(nil)".to_string(),
        Some(a) => {
            let parts: Vec<String> = a.iter().map(Value::to_string).collect();
            format!("[]int32{{{}}}", parts.join(", "))
        }
    }
}

/// Upstream's `validatePodFailurePolicy` and `validatePodFailurePolicyRule` (Kubernetes
/// 1.33): at most 20 rules; each rule has an action (FailIndex only with
/// `backoffLimitPerIndex`) and exactly one of `onExitCodes` and `onPodConditions`.
fn pod_failure_policy(spec: &Object, path: &str, c: &mut Vec<Cause>) {
    let pfp_path = at(path, "podFailurePolicy");
    let Some(policy) = obj(spec.get("podFailurePolicy"), &pfp_path, c) else {
        return;
    };
    let rules_path = at(&pfp_path, "rules");
    let rules = list(policy.get("rules"), &rules_path, c);
    if rules.len() > POD_FAILURE_POLICY_RULES {
        c.push(too_many(&rules_path, rules.len(), POD_FAILURE_POLICY_RULES));
    }
    // The names an `onExitCodes.containerName` may refer to.
    let template_spec = spec
        .get("template")
        .and_then(|t| t.get("spec"))
        .and_then(Value::as_object);
    let container_names: BTreeSet<&str> = ["containers", "initContainers"]
        .iter()
        .filter_map(|k| {
            template_spec
                .and_then(|s| s.get(*k))
                .and_then(Value::as_array)
        })
        .flatten()
        .filter_map(|ctr| ctr.get("name").and_then(Value::as_str))
        .collect();
    let per_index = spec
        .get("backoffLimitPerIndex")
        .is_some_and(|v| !v.is_null());
    let actions = ["Count", "FailIndex", "FailJob", "Ignore"];
    for (i, rule) in rules.iter().enumerate() {
        let rule_path = idx(&rules_path, i);
        let action_path = at(&rule_path, "action");
        match rule.get("action").and_then(Value::as_str).unwrap_or("") {
            "" => c.push(required(
                action_path,
                "valid values: [\"Count\" \"FailIndex\" \"FailJob\" \"Ignore\"]",
            )),
            "FailIndex" if !per_index => c.push(Cause::invalid(
                action_path,
                &json!("FailIndex"),
                "requires the backoffLimitPerIndex to be set",
            )),
            a if !actions.contains(&a) => {
                c.push(Cause::unsupported(action_path, &json!(a), &actions));
            }
            _ => {}
        }
        let exit_path = at(&rule_path, "onExitCodes");
        let on_exit = obj(rule.get("onExitCodes"), &exit_path, c);
        if let Some(req) = on_exit {
            on_exit_codes(req, &exit_path, &container_names, c);
        }
        let cond_path = at(&rule_path, "onPodConditions");
        let patterns = list(rule.get("onPodConditions"), &cond_path, c);
        if !patterns.is_empty() {
            on_pod_conditions(patterns, &cond_path, c);
        }
        match (on_exit.is_some(), !patterns.is_empty()) {
            (true, true) => c.push(invalid_omitted(
                &rule_path,
                "specifying both OnExitCodes and OnPodConditions is not supported",
            )),
            (false, false) => c.push(invalid_omitted(
                &rule_path,
                "specifying one of OnExitCodes and OnPodConditions is required",
            )),
            _ => {}
        }
    }
}

/// Upstream's `validatePodFailurePolicyRuleOnExitCodes`: operator In or NotIn, a container
/// name from the template, and 1 to 255 values that are unique, ordered, and not 0 with In.
fn on_exit_codes(req: &Object, path: &str, names: &BTreeSet<&str>, c: &mut Vec<Cause>) {
    let op_path = at(path, "operator");
    let operator = string(req.get("operator"), &op_path, c);
    match operator {
        "" => c.push(required(&op_path, "valid values: [\"In\" \"NotIn\"]")),
        "In" | "NotIn" => {}
        other => c.push(Cause::unsupported(
            &op_path,
            &json!(other),
            &["In", "NotIn"],
        )),
    }
    let name_path = at(path, "containerName");
    if let Some(v) = req.get("containerName").filter(|v| !v.is_null()) {
        let name = string(Some(v), &name_path, c);
        if !names.contains(name) {
            c.push(Cause::invalid(
                name_path,
                &json!(name),
                "must be one of the container or initContainer names in the pod template",
            ));
        }
    }
    let values_path = at(path, "values");
    let values = list(req.get("values"), &values_path, c);
    if values.is_empty() {
        c.push(invalid_rendered(
            &values_path,
            &go_int32_slice(req.get("values")),
            "at least one value is required",
        ));
    } else if values.len() > ON_EXIT_CODES_VALUES {
        c.push(too_many(&values_path, values.len(), ON_EXIT_CODES_VALUES));
    }
    let mut seen = BTreeSet::new();
    let mut ordered = true;
    let mut previous: Option<i64> = None;
    for (j, v) in values.iter().enumerate() {
        let value_path = idx(&values_path, j);
        let Some(code) = int(Some(v), &value_path, c) else {
            continue;
        };
        if operator == "In" && code == 0 {
            c.push(Cause::invalid(
                &value_path,
                &json!(0),
                "must not be 0 for the In operator",
            ));
        }
        if !seen.insert(code) {
            c.push(Cause::duplicate(&value_path, &json!(code)));
        }
        // Upstream compares each value with the one before it: equal neighbours are
        // duplicates, not disorder.
        if previous.is_some_and(|p| p > code) {
            ordered = false;
        }
        previous = Some(code);
    }
    if !ordered {
        c.push(invalid_rendered(
            values_path,
            &go_int32_slice(req.get("values")),
            "must be ordered",
        ));
    }
}

/// Upstream's `validatePodFailurePolicyRuleOnPodConditions`: at most 20 patterns, each with
/// a qualified-name `type` and a `status` of True, False or Unknown (defaulted to True).
fn on_pod_conditions(patterns: &[Value], path: &str, c: &mut Vec<Cause>) {
    if patterns.len() > ON_POD_CONDITIONS_PATTERNS {
        c.push(too_many(path, patterns.len(), ON_POD_CONDITIONS_PATTERNS));
    }
    let statuses = ["False", "True", "Unknown"];
    for (j, pattern) in patterns.iter().enumerate() {
        let pattern_path = idx(path, j);
        let type_path = at(&pattern_path, "type");
        let ty = string(pattern.get("type"), &type_path, c);
        if let Some(e) = super::meta::qualified_name_error(ty) {
            c.push(Cause::invalid(type_path, &json!(ty), &e));
        }
        let status_path = at(&pattern_path, "status");
        match string(pattern.get("status"), &status_path, c) {
            "" => c.push(required(
                status_path,
                "valid values: [\"False\" \"True\" \"Unknown\"]",
            )),
            s if !statuses.contains(&s) => {
                c.push(Cause::unsupported(status_path, &json!(s), &statuses));
            }
            _ => {}
        }
    }
}

/// Upstream's `parseIndexInterval`: "x" or "x-y" with x < y, both below `completions`.
fn index_interval(interval: &str, completions: i64) -> Result<(i64, i64), String> {
    let parts: Vec<&str> = interval.split('-').collect();
    if parts.len() > 2 {
        return Err(format!(
            "the fragment {} violates the requirement that an index interval can have at most \
             two parts separated by '-'",
            go_quote(interval)
        ));
    }
    let number = |p: &str| {
        let n = p.parse::<i64>().map_err(|_| {
            format!(
                "cannot convert string to integer for index: {}",
                go_quote(p)
            )
        })?;
        if n >= completions {
            return Err(format!("too large index: {}", go_quote(p)));
        }
        Ok(n)
    };
    let x = number(parts[0])?;
    match parts.get(1) {
        Some(p) => {
            let y = number(p)?;
            if x >= y {
                return Err(format!("non-increasing order, previous: {x}, current: {y}"));
            }
            Ok((x, y))
        }
        None => Ok((x, x)),
    }
}

/// Upstream's `validateIndexesFormat`: "1,3-5" style intervals, increasing, below
/// `completions`; the number of indexes, or upstream's error text.
fn indexes_format(s: &str, completions: i64) -> Result<i64, String> {
    if s.is_empty() {
        return Ok(0);
    }
    let mut last: Option<i64> = None;
    let mut total = 0;
    for interval in s.split(',') {
        let (x, y) = index_interval(interval, completions)?;
        if let Some(l) = last
            && l >= x
        {
            return Err(format!("non-increasing order, previous: {l}, current: {x}"));
        }
        total += y - x + 1;
        last = Some(y);
    }
    Ok(total)
}

/// Upstream's `validateFailedIndexesNotOverlapCompleted`: the first index both lists hold.
/// Intervals that do not parse are skipped here (the format check reports them).
fn indexes_overlap(completed: &str, failed: &str, completions: i64) -> Option<i64> {
    if completed.is_empty() || failed.is_empty() {
        return None;
    }
    let parse = |s: &str| -> Vec<(i64, i64)> {
        s.split(',')
            .filter_map(|i| index_interval(i, completions).ok())
            .collect()
    };
    let (completed, failed) = (parse(completed), parse(failed));
    let (mut ci, mut fi) = (0, 0);
    while let (Some(&(cx, cy)), Some(&(fx, fy))) = (completed.get(ci), failed.get(fi)) {
        if cx <= fy && fx <= cy {
            return Some(cx.max(fx));
        }
        if cx <= fx {
            ci += 1;
        } else {
            fi += 1;
        }
    }
    None
}

/// Upstream's `validateSuccessPolicy` (Kubernetes 1.33): Indexed Jobs only, 1 to 20 rules,
/// each with `succeededIndexes` (in the interval format, below `completions`) and/or a
/// `succeededCount` no larger than `completions` nor the number of those indexes.
fn success_policy(spec: &Object, path: &str, c: &mut Vec<Cause>) {
    let Some(policy) = spec.get("successPolicy").filter(|v| !v.is_null()) else {
        return;
    };
    let sp_path = at(path, "successPolicy");
    let rules_path = at(&sp_path, "rules");
    let rules = policy
        .get("rules")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    if !is_indexed(spec) {
        // Go renders the struct with `%#v`, pointers as addresses: only the empty rule list
        // renders the same here.
        let rendered = if rules.is_empty() {
            "batch.SuccessPolicy{Rules:[]batch.SuccessPolicyRule{}}"
        } else {
            "batch.SuccessPolicy{Rules:[]batch.SuccessPolicyRule{...}}"
        };
        c.push(invalid_rendered(
            sp_path,
            rendered,
            "requires indexed completion mode",
        ));
        return;
    }
    if rules.is_empty() {
        c.push(required(
            &rules_path,
            "at least one rules must be specified when the successPolicy is specified",
        ));
    }
    if rules.len() > SUCCESS_POLICY_RULES {
        c.push(Cause {
            reason: "FieldValueTooMany",
            message: format!(
                "Too many: {}: must have at most {SUCCESS_POLICY_RULES} items",
                rules.len()
            ),
            field: rules_path.clone(),
        });
    }
    let completions = spec.get("completions").and_then(Value::as_i64);
    for (i, rule) in rules.iter().enumerate() {
        let rule_path = idx(&rules_path, i);
        let indexes = rule.get("succeededIndexes").and_then(Value::as_str);
        let count_path = at(&rule_path, "succeededCount");
        let count = int(rule.get("succeededCount"), &count_path, c);
        if indexes.is_none() && count.is_none() {
            c.push(required(
                &rule_path,
                "at least one of succeededCount or succeededIndexes must be specified",
            ));
        }
        let Some(completions) = completions else {
            // Indexed without completions is reported already.
            continue;
        };
        let mut total = 0;
        if let Some(s) = indexes {
            let ip = at(&rule_path, "succeededIndexes");
            if s.len() > SUCCEEDED_INDEXES_LENGTH {
                c.push(Cause::too_long(&ip, SUCCEEDED_INDEXES_LENGTH));
            }
            match indexes_format(s, completions) {
                Ok(n) => total = n,
                Err(e) => c.push(Cause::invalid(
                    ip,
                    &json!(s),
                    &format!("error parsing succeededIndexes: {e}"),
                )),
            }
        }
        if let Some(n) = count {
            if n < 0 {
                c.push(Cause::invalid(&count_path, &json!(n), NONNEGATIVE));
            }
            if n > completions {
                c.push(Cause::invalid(
                    &count_path,
                    &json!(n),
                    &format!(
                        "must be less than or equal to {completions} (the number of specified \
                         completions)"
                    ),
                ));
            }
            if indexes.is_some() && n > total {
                c.push(Cause::invalid(
                    &count_path,
                    &json!(n),
                    &format!(
                        "must be less than or equal to {total} (the number of indexes in the \
                         specified succeededIndexes field)"
                    ),
                ));
            }
        }
    }
}

fn job(o: &Object, old: Option<&Object>, c: &mut Vec<Cause>) {
    let spec = spec_of(o, c);
    job_spec(spec, "spec", c);
    match spec.get("selector") {
        None | Some(Value::Null) => c.push(Cause::required("spec.selector")),
        Some(s) => {
            label_selector(Some(s), "spec.selector", c);
            if let Ok(parsed) = LabelSelector::from_label_selector_json(s) {
                let (labels, _) = template_parts(spec);
                if !parsed.matches(labels.unwrap_or(&Value::Null)) {
                    c.push(invalid_rendered(
                        "spec.template.metadata.labels",
                        &go_string_map(labels),
                        "`selector` does not match template `labels`",
                    ));
                }
            }
        }
    }
    let Some(old_spec) = old.and_then(|o| o.get("spec")).and_then(Value::as_object) else {
        return;
    };
    selector_immutable(spec, old, c);
    for key in [
        "completionMode",
        "podFailurePolicy",
        "backoffLimitPerIndex",
        "successPolicy",
    ] {
        if !same(spec.get(key), old_spec.get(key)) {
            c.push(Cause::invalid(
                at("spec", key),
                spec.get(key).unwrap_or(&Value::Null),
                IMMUTABLE,
            ));
        }
    }
    // Elastic indexed jobs: completions may change together with parallelism.
    let elastic = spec.get("completionMode").and_then(Value::as_str) == Some("Indexed")
        && same(spec.get("completions"), spec.get("parallelism"));
    if !elastic && !same(spec.get("completions"), old_spec.get("completions")) {
        c.push(Cause::invalid(
            "spec.completions",
            spec.get("completions").unwrap_or(&Value::Null),
            IMMUTABLE,
        ));
    }
    if !same(spec.get("template"), old_spec.get("template")) {
        c.push(Cause::invalid(
            "spec.template",
            spec.get("template").unwrap_or(&Value::Null),
            IMMUTABLE,
        ));
    }
}

/// Upstream's `ValidateJobStatusUpdate` with the options the Job strategy sets (Kubernetes
/// 1.33), for the counters and the index lists: counts are non-negative; a changed
/// `completedIndexes` or `failedIndexes` must be in the interval format below `completions`,
/// `completedIndexes` only on Indexed Jobs, `failedIndexes` only with
/// `backoffLimitPerIndex`, and the two lists must not share an index. Like upstream, the
/// index checks apply only to lists the write changes, so an old bad value can be fixed.
fn job_status(o: &Object, old: &Object, c: &mut Vec<Cause>) {
    let empty = Object::new();
    let status_of = |o: &'_ Object| -> Object {
        o.get("status")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    };
    let (status, old_status) = (status_of(o), status_of(old));
    for key in ["active", "succeeded", "failed", "ready", "terminating"] {
        nonnegative(status.get(key), &at("status", key), c);
    }
    let spec = o.get("spec").and_then(Value::as_object).unwrap_or(&empty);
    let completions = spec.get("completions").and_then(Value::as_i64);
    let per_index = spec
        .get("backoffLimitPerIndex")
        .is_some_and(|v| !v.is_null());
    let completed_path = "status.completedIndexes";
    let failed_path = "status.failedIndexes";
    let completed = string(status.get("completedIndexes"), completed_path, c);
    let failed_v = status.get("failedIndexes").filter(|v| !v.is_null());
    let failed = failed_v.map(|v| string(Some(v), failed_path, c));
    let completed_changed = !same(
        status.get("completedIndexes"),
        old_status.get("completedIndexes"),
    );
    let failed_changed = !same(failed_v, old_status.get("failedIndexes"));
    if completed_changed
        && let Some(n) = completions
        && let Err(e) = indexes_format(completed, n)
    {
        c.push(Cause::invalid(
            completed_path,
            &json!(completed),
            &format!("error parsing completedIndexes: {e}"),
        ));
    }
    if failed_changed
        && per_index
        && let (Some(n), Some(f)) = (completions, failed)
        && let Err(e) = indexes_format(f, n)
    {
        c.push(Cause::invalid(
            failed_path,
            &json!(f),
            &format!("error parsing failedIndexes: {e}"),
        ));
    }
    if completed_changed && !completed.is_empty() && !is_indexed(spec) {
        c.push(Cause::invalid(
            completed_path,
            &json!(completed),
            "cannot set non-empty completedIndexes when non-indexed completion mode",
        ));
    }
    if failed_changed
        && !per_index
        && let Some(f) = failed
    {
        c.push(Cause::invalid(
            failed_path,
            &json!(f),
            "cannot set non-null failedIndexes when backoffLimitPerIndex is null",
        ));
    }
    if (failed_changed || completed_changed)
        && let (Some(n), Some(f)) = (completions, failed)
        && let Some(i) = indexes_overlap(completed, f, n)
    {
        c.push(Cause::invalid(
            failed_path,
            &json!(f),
            &format!("failedIndexes and completedIndexes overlap at index: {i}"),
        ));
    }
}

fn cron_job(o: &Object, old: Option<&Object>, c: &mut Vec<Cause>) {
    let spec = spec_of(o, c);
    let schedule = string(spec.get("schedule"), "spec.schedule", c);
    let tz_field = spec.get("timeZone").filter(|v| !v.is_null());
    if schedule.is_empty() {
        c.push(Cause::required("spec.schedule"));
    } else {
        if let Some(e) = cron_error(schedule) {
            c.push(Cause::invalid("spec.schedule", &json!(schedule), &e));
        }
        let old_had_tz = old
            .and_then(|o| o.get("spec"))
            .and_then(|s| s.get("schedule"))
            .and_then(Value::as_str)
            .is_some_and(|s| s.contains("TZ"));
        if tz_field.is_some() && schedule.contains("TZ") {
            c.push(Cause::invalid(
                "spec.schedule",
                &json!(schedule),
                "cannot use both timeZone field and TZ or CRON_TZ in schedule",
            ));
        } else if !old_had_tz && schedule.contains("TZ") {
            c.push(Cause::invalid(
                "spec.schedule",
                &json!(schedule),
                "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
            ));
        }
    }
    let tz = string(tz_field, "spec.timeZone", c);
    if tz_field.is_some()
        && let Some(e) = time_zone_error(tz)
    {
        c.push(Cause::invalid("spec.timeZone", &json!(tz), &e));
    }
    match string(spec.get("concurrencyPolicy"), "spec.concurrencyPolicy", c) {
        "Allow" | "Forbid" | "Replace" => {}
        "" => c.push(Cause::required("spec.concurrencyPolicy")),
        other => c.push(Cause::unsupported(
            "spec.concurrencyPolicy",
            &json!(other),
            &["Allow", "Forbid", "Replace"],
        )),
    }
    for key in [
        "startingDeadlineSeconds",
        "successfulJobsHistoryLimit",
        "failedJobsHistoryLimit",
    ] {
        nonnegative(spec.get(key), &at("spec", key), c);
    }
    boolean(spec.get("suspend"), "spec.suspend", c);
    let jt = obj(spec.get("jobTemplate"), "spec.jobTemplate", c);
    let job_spec_v = jt.and_then(|t| t.get("spec"));
    let empty = Object::new();
    let js = obj(job_spec_v, "spec.jobTemplate.spec", c).unwrap_or(&empty);
    job_spec(js, "spec.jobTemplate.spec", c);
    if js.get("manualSelector").and_then(Value::as_bool) == Some(true) {
        c.push(Cause::unsupported(
            "spec.jobTemplate.spec.manualSelector",
            &json!(true),
            &["nil", "false"],
        ));
    }
}

/// `time.LoadLocation` as far as we can tell without Go: `Local` is rejected, and names are
/// checked against the host's zoneinfo database when it has one.
fn time_zone_error(tz: &str) -> Option<String> {
    if tz.eq_ignore_ascii_case("local") {
        return Some(
            "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones"
                .to_string(),
        );
    }
    if tz.is_empty() || tz == "UTC" {
        return None;
    }
    let unknown = || Some(format!("unknown time zone {tz}"));
    let well_formed = !tz.starts_with('/')
        && !tz.split('/').any(|p| p.is_empty() || p == "." || p == "..")
        && tz
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-' | b'+'));
    if !well_formed {
        return unknown();
    }
    let db = std::path::Path::new("/usr/share/zoneinfo");
    if db.is_dir() && !db.join(tz).is_file() {
        return unknown();
    }
    None
}

/// Parses a cron schedule the way upstream's parser (robfig/cron's standard parser) does and
/// returns its error text.
fn cron_error(schedule: &str) -> Option<String> {
    let mut spec = schedule;
    if spec.is_empty() {
        return Some("empty spec string".to_string());
    }
    if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
        let eq = spec.find('=').unwrap_or(0);
        let Some(space) = spec.find(' ') else {
            return Some(format!("provided bad location {}", &spec[eq + 1..]));
        };
        let zone = &spec[eq + 1..space];
        if let Some(e) = time_zone_error(zone) {
            return Some(format!("provided bad location {zone}: {e}"));
        }
        spec = spec[space..].trim();
    }
    if let Some(d) = spec.strip_prefix('@') {
        return match d {
            "yearly" | "annually" | "monthly" | "weekly" | "daily" | "midnight" | "hourly" => None,
            _ => match d.strip_prefix("every ") {
                Some(dur) if go_duration_ok(dur) => None,
                Some(dur) => Some(format!(
                    "failed to parse duration {spec}: time: invalid duration {}",
                    go_quote(dur)
                )),
                None => Some(format!("unrecognized descriptor: {spec}")),
            },
        };
    }
    let fields: Vec<&str> = spec.split_whitespace().collect();
    if fields.len() != 5 {
        return Some(format!(
            "expected exactly 5 fields, found {}: [{}]",
            fields.len(),
            fields.join(" ")
        ));
    }
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
    let bounds: [(u64, u64, &[&str], u64); 5] = [
        (0, 59, &[], 0),
        (0, 23, &[], 0),
        (1, 31, &[], 0),
        (1, 12, &MONTHS, 1),
        (0, 6, &DAYS, 0),
    ];
    for (field, (min, max, names, first)) in fields.iter().zip(bounds) {
        for expr in field.split(',').filter(|e| !e.is_empty()) {
            if let Err(e) = cron_range(expr, min, max, names, first) {
                return Some(e);
            }
        }
    }
    None
}

fn cron_range(expr: &str, min: u64, max: u64, names: &[&str], first: u64) -> Result<(), String> {
    let range_and_step: Vec<&str> = expr.split('/').collect();
    let low_high: Vec<&str> = range_and_step[0].split('-').collect();
    let single = low_high.len() == 1;
    let (start, mut end) = if low_high[0] == "*" || low_high[0] == "?" {
        (min, max)
    } else {
        let start = cron_int_or_name(low_high[0], names, first)?;
        let end = match low_high.len() {
            1 => start,
            2 => cron_int_or_name(low_high[1], names, first)?,
            _ => return Err(format!("too many hyphens: {expr}")),
        };
        (start, end)
    };
    let step = match range_and_step.len() {
        1 => 1,
        2 => {
            let step = cron_int(range_and_step[1])?;
            if single {
                end = max;
            }
            step
        }
        _ => return Err(format!("too many slashes: {expr}")),
    };
    if start < min {
        return Err(format!(
            "beginning of range ({start}) below minimum ({min}): {expr}"
        ));
    }
    if end > max {
        return Err(format!(
            "end of range ({end}) above maximum ({max}): {expr}"
        ));
    }
    if start > end {
        return Err(format!(
            "beginning of range ({start}) beyond end of range ({end}): {expr}"
        ));
    }
    if step == 0 {
        return Err(format!("step of range should be a positive number: {expr}"));
    }
    Ok(())
}

fn cron_int_or_name(s: &str, names: &[&str], first: u64) -> Result<u64, String> {
    let lower = s.to_ascii_lowercase();
    if let Some(i) = names.iter().position(|n| *n == lower) {
        return Ok(first + i as u64);
    }
    cron_int(s)
}

/// Go's `strconv.Atoi` plus robfig's "negative number" rule, with their error texts.
fn cron_int(s: &str) -> Result<u64, String> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "failed to parse int from {s}: strconv.Atoi: parsing {}: invalid syntax",
            go_quote(s)
        ));
    }
    let Ok(n) = s.parse::<i64>() else {
        return Err(format!(
            "failed to parse int from {s}: strconv.Atoi: parsing {}: value out of range",
            go_quote(s)
        ));
    };
    u64::try_from(n).map_err(|_| format!("negative number ({n}) not allowed: {n}"))
}

/// Whether `s` is a Go duration (`1h30m`, `90s`, `1.5h`).
fn go_duration_ok(s: &str) -> bool {
    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
    if s == "0" {
        return true;
    }
    let mut rest = s;
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if n == 0 || rest[..n] == *"." {
            return false;
        }
        rest = &rest[n..];
        let unit = ["ns", "us", "µs", "μs", "ms", "s", "m", "h"]
            .into_iter()
            .find(|u| rest.starts_with(u));
        match unit {
            Some(u) => rest = &rest[u.len()..],
            None => return false,
        }
    }
    true
}

// ---------------------------------------------------------------------------------------------
// Services.

fn service(o: &Object, old: Option<&Object>, c: &mut Vec<Cause>) {
    let spec = spec_of(o, c);
    let ty = string(spec.get("type"), "spec.type", c);
    let cluster_ip = string(spec.get("clusterIP"), "spec.clusterIP", c);
    let headless = cluster_ip == "None";
    match ty {
        "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName" => {}
        "" => c.push(Cause::required("spec.type")),
        other => c.push(Cause::unsupported(
            "spec.type",
            &json!(other),
            &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
        )),
    }
    if ty == "ExternalName" {
        let name = string(spec.get("externalName"), "spec.externalName", c);
        if name.is_empty() {
            c.push(Cause::required("spec.externalName"));
        } else if let Some(e) = dns1123_subdomain(name.strip_suffix('.').unwrap_or(name)) {
            c.push(Cause::invalid("spec.externalName", &json!(name), &e));
        }
        if !cluster_ip.is_empty() && old.is_none() {
            c.push(Cause::forbidden(
                "spec.clusterIP",
                "may not be set for ExternalName services",
            ));
        }
    } else if !cluster_ip.is_empty() && !headless && cluster_ip.parse::<std::net::IpAddr>().is_err()
    {
        c.push(Cause::invalid(
            "spec.clusterIP",
            &json!(cluster_ip),
            "must be empty, 'None', or a valid IP address",
        ));
    }
    let ports = list(spec.get("ports"), "spec.ports", c);
    if ports.is_empty() && !headless && ty != "ExternalName" {
        c.push(Cause::required("spec.ports"));
    }
    let require_name = ports.len() > 1;
    let mut names = BTreeSet::new();
    let mut node_ports = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let p = idx("spec.ports", i);
        let Some(port) = obj(Some(port), &p, c) else {
            continue;
        };
        let name = string(port.get("name"), &at(&p, "name"), c);
        if name.is_empty() {
            if require_name {
                c.push(Cause::required(at(&p, "name")));
            }
        } else if let Some(e) = dns1123_label(name) {
            c.push(Cause::invalid(at(&p, "name"), &json!(name), &e));
        } else if !names.insert(name.to_string()) {
            c.push(Cause::duplicate(at(&p, "name"), &json!(name)));
        }
        let pp = at(&p, "port");
        match int(port.get("port"), &pp, c) {
            Some(n) if !(1..=65535).contains(&n) => {
                c.push(Cause::invalid(pp, &json!(n), PORT_RANGE));
            }
            None if port.get("port").is_none_or(Value::is_null) => {
                c.push(Cause::invalid(pp, &json!(0), PORT_RANGE));
            }
            _ => {}
        }
        let protocol = port.get("protocol").and_then(Value::as_str).unwrap_or("");
        one_of(
            port.get("protocol"),
            &at(&p, "protocol"),
            &PROTOCOLS,
            true,
            c,
        );
        port_number_or_name(port.get("targetPort"), &at(&p, "targetPort"), c);
        let np = at(&p, "nodePort");
        if let Some(n) = int(port.get("nodePort"), &np, c)
            && n != 0
        {
            if ty == "ClusterIP" {
                c.push(Cause::forbidden(
                    np,
                    "may not be used when `type` is 'ClusterIP'",
                ));
            } else if !(1..=65535).contains(&n) {
                c.push(Cause::invalid(np, &json!(n), PORT_RANGE));
            } else if !node_ports.insert((n, protocol.to_string())) {
                c.push(Cause::duplicate(np, &json!(n)));
            }
        }
    }
    match string(spec.get("sessionAffinity"), "spec.sessionAffinity", c) {
        "None" => {}
        "ClientIP" => {
            let tp = "spec.sessionAffinityConfig.clientIP.timeoutSeconds";
            let t = spec
                .get("sessionAffinityConfig")
                .and_then(|s| s.get("clientIP"))
                .and_then(|s| s.get("timeoutSeconds"));
            if let Some(n) = int(t, tp, c)
                && !(1..=86400).contains(&n)
            {
                c.push(Cause::invalid(
                    tp,
                    &json!(n),
                    "must be greater than 0 and less than 86400",
                ));
            }
        }
        "" => c.push(Cause::required("spec.sessionAffinity")),
        other => c.push(Cause::unsupported(
            "spec.sessionAffinity",
            &json!(other),
            &["ClientIP", "None"],
        )),
    }
    let etp = string(
        spec.get("externalTrafficPolicy"),
        "spec.externalTrafficPolicy",
        c,
    );
    if !etp.is_empty() {
        if ty != "NodePort" && ty != "LoadBalancer" {
            c.push(Cause::invalid(
                "spec.externalTrafficPolicy",
                &json!(etp),
                "may only be set for externally-accessible services",
            ));
        } else if etp != "Cluster" && etp != "Local" {
            c.push(Cause::unsupported(
                "spec.externalTrafficPolicy",
                &json!(etp),
                &["Cluster", "Local"],
            ));
        }
    }
    one_of(
        spec.get("internalTrafficPolicy"),
        "spec.internalTrafficPolicy",
        &["Cluster", "Local"],
        ty != "ExternalName",
        c,
    );
    one_of(
        spec.get("ipFamilyPolicy"),
        "spec.ipFamilyPolicy",
        &["SingleStack", "PreferDualStack", "RequireDualStack"],
        false,
        c,
    );
    string_map(spec.get("selector"), "spec.selector", c);
    source_ranges(o, spec, ty, old, c);
    // The cluster IP is immutable, except when the type goes to or from ExternalName.
    if let Some(old_spec) = old.and_then(|o| o.get("spec")).and_then(Value::as_object) {
        let old_ty = old_spec.get("type").and_then(Value::as_str).unwrap_or("");
        let old_ip = old_spec
            .get("clusterIP")
            .and_then(Value::as_str)
            .unwrap_or("");
        if ty != "ExternalName"
            && old_ty != "ExternalName"
            && !old_ip.is_empty()
            && cluster_ip != old_ip
        {
            c.push(Cause::invalid(
                "spec.clusterIP",
                &json!(cluster_ip),
                IMMUTABLE,
            ));
        }
    }
}

const LB_SOURCE_RANGES_ANNOTATION: &str = "service.beta.kubernetes.io/load-balancer-source-ranges";
const CIDR_DETAIL: &str = "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)";

/// `loadBalancerSourceRanges`, or the older annotation when the field is empty, as upstream's
/// ValidateService: LoadBalancer Services only, each entry (space-padding allowed, a historical
/// accident upstream keeps) a CIDR as `ParseCIDRSloppy` reads it. Upstream's field path keeps
/// the capital L of the Go field name: `spec.LoadBalancerSourceRanges[0]`. An entry that was
/// already stored is accepted again (IsValidCIDRForLegacyField).
fn source_ranges(o: &Object, spec: &Object, ty: &str, old: Option<&Object>, c: &mut Vec<Cause>) {
    const FORBIDDEN: &str = "may only be used when `type` is 'LoadBalancer'";
    let ranges = list(
        spec.get("loadBalancerSourceRanges"),
        "spec.loadBalancerSourceRanges",
        c,
    );
    if !ranges.is_empty() {
        let path = "spec.LoadBalancerSourceRanges";
        if ty != "LoadBalancer" {
            c.push(Cause::forbidden(path, FORBIDDEN));
        }
        let stored: Vec<&str> = old
            .and_then(|o| o.get("spec"))
            .and_then(|s| s.get("loadBalancerSourceRanges"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::trim)
            .collect();
        for (i, range) in ranges.iter().enumerate() {
            let p = idx(path, i);
            let Some(range) = range.as_str() else {
                c.push(Cause::invalid(p, range, "must be a string"));
                continue;
            };
            let range = range.trim();
            if !stored.contains(&range) && !cidr_sloppy(range) {
                c.push(Cause::invalid(p, &json!(range), CIDR_DETAIL));
            }
        }
        return;
    }
    let Some(annotation) = o
        .get("metadata")
        .and_then(|m| m.get("annotations"))
        .and_then(|a| a.get(LB_SOURCE_RANGES_ANNOTATION))
        .and_then(Value::as_str)
    else {
        return;
    };
    let path = keyed("metadata.annotations", LB_SOURCE_RANGES_ANNOTATION);
    if ty != "LoadBalancer" {
        c.push(Cause::forbidden(&path, FORBIDDEN));
    }
    let annotation = annotation.trim();
    if annotation.is_empty() {
        return;
    }
    for range in annotation.split(',').map(str::trim) {
        if !cidr_sloppy(range) {
            c.push(Cause::invalid(&path, &json!(range), CIDR_DETAIL));
        }
    }
}

/// Whether `s` is a CIDR as Go's `ParseCIDRSloppy` reads it: also IPv4 octets with leading
/// zeros (read as decimal), which Rust's parser refuses.
fn cidr_sloppy(s: &str) -> bool {
    if s.parse::<ipnet::IpNet>().is_ok() {
        return true;
    }
    let Some((addr, len)) = s.split_once('/') else {
        return false;
    };
    let digits = |t: &str| !t.is_empty() && t.len() <= 3 && t.bytes().all(|b| b.is_ascii_digit());
    let octets: Vec<&str> = addr.split('.').collect();
    octets.len() == 4
        && octets.iter().all(|o| digits(o) && o.parse::<u8>().is_ok())
        && digits(len)
        && len.parse::<u8>().is_ok_and(|l| l <= 32)
}

// ---------------------------------------------------------------------------------------------
// ConfigMaps and Secrets.

const MAX_DATA: usize = 1024 * 1024;

/// IsConfigMapKey.
fn config_key_errors(key: &str) -> Vec<&'static str> {
    let mut errs = Vec::new();
    if key.len() > 253 {
        errs.push("must be no more than 253 characters");
    }
    if key.is_empty()
        || !key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        errs.push("a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key_name', regex used for validation is '[-._a-zA-Z0-9]+')");
    }
    if key == "." {
        errs.push("must not be '.'");
    } else if key == ".." {
        errs.push("must not be '..'");
    } else if key.starts_with("..") {
        errs.push("must not start with '..'");
    }
    errs
}

/// Decodes a `[]byte` JSON value (standard base64; Go tolerates line breaks).
fn base64_bytes(s: &str) -> Option<Vec<u8>> {
    let cleaned: String = s.chars().filter(|c| *c != '\r' && *c != '\n').collect();
    base64::engine::general_purpose::STANDARD
        .decode(cleaned)
        .ok()
}

fn immutable_data(o: &Object, old: Option<&Object>, fields: &[&str], c: &mut Vec<Cause>) {
    const DETAIL: &str = "field is immutable when `immutable` is set";
    let Some(old) = old else {
        return;
    };
    if old.get("immutable").and_then(Value::as_bool) != Some(true) {
        return;
    }
    if o.get("immutable").and_then(Value::as_bool) != Some(true) {
        c.push(Cause::forbidden("immutable", DETAIL));
    }
    for f in fields {
        let empty = |v: Option<&Value>| {
            v.is_none_or(|v| v.is_null() || v.as_object().is_some_and(Map::is_empty))
        };
        let (n, p) = (o.get(*f), old.get(*f));
        if !(same(n, p) || empty(n) && empty(p)) {
            c.push(Cause::forbidden(*f, DETAIL));
        }
    }
}

fn config_map(o: &Object, old: Option<&Object>, c: &mut Vec<Cause>) {
    let data = obj(o.get("data"), "data", c);
    let binary = obj(o.get("binaryData"), "binaryData", c);
    let mut total = 0usize;
    for (k, v) in data.into_iter().flatten() {
        let p = keyed("data", k);
        for e in config_key_errors(k) {
            c.push(Cause::invalid(&p, &json!(k), e));
        }
        if binary.is_some_and(|b| b.contains_key(k)) {
            c.push(Cause::invalid(
                &p,
                &json!(k),
                "duplicate of key present in binaryData",
            ));
        }
        match v.as_str() {
            Some(s) => total += s.len(),
            None => c.push(Cause::invalid(&p, v, "must be a string")),
        }
    }
    for (k, v) in binary.into_iter().flatten() {
        let p = keyed("binaryData", k);
        for e in config_key_errors(k) {
            c.push(Cause::invalid(&p, &json!(k), e));
        }
        if data.is_some_and(|d| d.contains_key(k)) {
            c.push(Cause::invalid(
                &p,
                &json!(k),
                "duplicate of key present in data",
            ));
        }
        match v.as_str().and_then(base64_bytes) {
            Some(bytes) => total += bytes.len(),
            None => c.push(Cause::invalid(
                &p,
                &json!("<binary>"),
                "must be base64 encoded",
            )),
        }
    }
    if total > MAX_DATA {
        c.push(Cause::too_long("", MAX_DATA));
    }
    boolean(o.get("immutable"), "immutable", c);
    immutable_data(o, old, &["data", "binaryData"], c);
}

fn secret(o: &Object, old: Option<&Object>, c: &mut Vec<Cause>) {
    const REDACTED: &str = "<secret contents redacted>";
    let data = obj(o.get("data"), "data", c);
    let string_data = obj(o.get("stringData"), "stringData", c);
    let mut total = 0usize;
    let mut keys = BTreeSet::new();
    let mut docker_config: Option<Vec<u8>> = None;
    let ty = string(o.get("type"), "type", c);
    let docker_key = match ty {
        "kubernetes.io/dockercfg" => Some(".dockercfg"),
        "kubernetes.io/dockerconfigjson" => Some(".dockerconfigjson"),
        _ => None,
    };
    for (k, v) in data.into_iter().flatten() {
        let p = keyed("data", k);
        for e in config_key_errors(k) {
            c.push(Cause::invalid(&p, &json!(k), e));
        }
        match v.as_str().and_then(base64_bytes) {
            Some(bytes) => {
                total += bytes.len();
                if Some(k.as_str()) == docker_key {
                    docker_config = Some(bytes);
                }
            }
            None if v.is_null() => {}
            None => c.push(Cause::invalid(
                &p,
                &json!(REDACTED),
                "must be base64 encoded",
            )),
        }
        keys.insert(k.as_str());
    }
    // stringData is merged into data by the API server; validate it under the same rules.
    for (k, v) in string_data.into_iter().flatten() {
        let p = keyed("data", k);
        for e in config_key_errors(k) {
            c.push(Cause::invalid(&p, &json!(k), e));
        }
        match v.as_str() {
            Some(s) => {
                total += s.len();
                if Some(k.as_str()) == docker_key {
                    docker_config = Some(s.as_bytes().to_vec());
                }
            }
            None => c.push(Cause::invalid(
                keyed("stringData", k),
                v,
                "must be a string",
            )),
        }
        keys.insert(k.as_str());
    }
    if total > MAX_DATA {
        c.push(Cause::too_long("data", MAX_DATA));
    }
    match ty {
        "kubernetes.io/service-account-token" => {
            let name = o
                .get("metadata")
                .and_then(|m| m.get("annotations"))
                .and_then(|a| a.get("kubernetes.io/service-account.name"))
                .and_then(Value::as_str)
                .unwrap_or("");
            if name.is_empty() {
                c.push(Cause::required(
                    "metadata.annotations[kubernetes.io/service-account.name]",
                ));
            }
        }
        "kubernetes.io/dockercfg" | "kubernetes.io/dockerconfigjson" => {
            let key = docker_key.unwrap_or_default();
            let p = keyed("data", key);
            if !keys.contains(key) {
                c.push(Cause::required(p));
            } else if let Some(bytes) = docker_config
                && let Err(e) = serde_json::from_slice::<Map<String, Value>>(&bytes)
            {
                c.push(Cause::invalid(p, &json!(REDACTED), &e.to_string()));
            }
        }
        "kubernetes.io/basic-auth" if !keys.contains("username") && !keys.contains("password") => {
            c.push(Cause::required("data[username]"));
            c.push(Cause::required("data[password]"));
        }
        "kubernetes.io/ssh-auth" if !keys.contains("ssh-privatekey") => {
            c.push(Cause::required("data[ssh-privatekey]"));
        }
        "kubernetes.io/tls" => {
            for key in ["tls.crt", "tls.key"] {
                if !keys.contains(key) {
                    c.push(Cause::required(keyed("data", key)));
                }
            }
        }
        _ => {}
    }
    boolean(o.get("immutable"), "immutable", c);
    if let Some(old) = old {
        let old_ty = old.get("type").and_then(Value::as_str).unwrap_or("");
        if old_ty != ty {
            c.push(Cause::invalid("type", &json!(ty), IMMUTABLE));
        }
    }
    immutable_data(o, old, &["data"], c);
}

// ---------------------------------------------------------------------------------------------
// Storage, nodes.

fn persistent_volume_claim(o: &Object, old: Option<&Object>, c: &mut Vec<Cause>) {
    let spec = spec_of(o, c);
    let modes = list(spec.get("accessModes"), "spec.accessModes", c);
    if modes.is_empty() {
        c.push(required(
            "spec.accessModes",
            "at least 1 access mode is required",
        ));
    }
    const MODES: [&str; 4] = [
        "ReadOnlyMany",
        "ReadWriteMany",
        "ReadWriteOnce",
        "ReadWriteOncePod",
    ];
    for m in modes {
        match m.as_str() {
            Some(s) if MODES.contains(&s) => {}
            _ => c.push(Cause::unsupported("spec.accessModes", m, &MODES)),
        }
    }
    label_selector(spec.get("selector"), "spec.selector", c);
    let storage_path = "spec.resources[storage]";
    let storage = spec
        .get("resources")
        .and_then(|r| r.get("requests"))
        .and_then(|r| r.get("storage"))
        .filter(|v| !v.is_null());
    match storage {
        None => c.push(Cause::required(storage_path)),
        Some(q) => match quantity_value(q) {
            None => c.push(Cause::invalid(
                storage_path,
                q,
                "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
            )),
            Some(n) if n <= 0 => {
                c.push(Cause::invalid(storage_path, q, "must be greater than zero"));
            }
            Some(_) => {}
        },
    }
    one_of(
        spec.get("volumeMode"),
        "spec.volumeMode",
        &["Block", "Filesystem"],
        false,
        c,
    );
    let Some(old_spec) = old.and_then(|o| o.get("spec")).and_then(Value::as_object) else {
        return;
    };
    // Immutable but for a first volumeName, the requested size of bound claims and the
    // volume attributes class.
    let mut new_m = spec.clone();
    let mut old_m = old_spec.clone();
    for m in [&mut new_m, &mut old_m] {
        m.remove("volumeAttributesClassName");
    }
    if old_spec
        .get("volumeName")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        set_or_remove(&mut old_m, "volumeName", spec.get("volumeName"));
    }
    let bound = o
        .get("status")
        .and_then(|s| s.get("phase"))
        .and_then(Value::as_str)
        == Some("Bound");
    if bound {
        let old_storage = old_spec
            .get("resources")
            .and_then(|r| r.get("requests"))
            .and_then(|r| r.get("storage"))
            .cloned();
        if let Some(req) = new_m
            .get_mut("resources")
            .and_then(|r| r.get_mut("requests"))
            .and_then(Value::as_object_mut)
        {
            match old_storage {
                Some(s) => {
                    req.insert("storage".into(), s);
                }
                None => {
                    req.remove("storage");
                }
            }
        }
    }
    if !same_object(&new_m, &old_m) {
        let detail = format!(
            "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims\n{}",
            diff("core.PersistentVolumeClaimSpec", &old_m, &new_m)
        );
        c.push(Cause::forbidden("spec", &detail));
    }
    let size = |s: &Object| {
        s.get("resources")
            .and_then(|r| r.get("requests"))
            .and_then(|r| r.get("storage"))
            .and_then(quantity_value)
    };
    if let (Some(n), Some(o_)) = (size(spec), size(old_spec))
        && n < o_
    {
        c.push(Cause::forbidden(
            "spec.resources.requests.storage",
            "field can not be less than previous value",
        ));
    }
}

// ---------------------------------------------------------------------------------------------
// ResourceQuotas.

/// Upstream's `standardResourceQuotaScopes` plus the two scopes it accepts beside them.
const QUOTA_SCOPES: [&str; 7] = [
    "Terminating",
    "NotTerminating",
    "BestEffort",
    "NotBestEffort",
    "PriorityClass",
    "CrossNamespacePodAffinity",
    "VolumeAttributesClass",
];

/// Upstream's `IsStandardQuotaResourceName`: the resource names the scope checks look at
/// (others, like `count/pods` or extended resources, take any scope).
fn standard_quota_resource(name: &str) -> bool {
    matches!(
        name,
        "cpu"
            | "memory"
            | "ephemeral-storage"
            | "requests.cpu"
            | "requests.memory"
            | "requests.storage"
            | "requests.ephemeral-storage"
            | "limits.cpu"
            | "limits.memory"
            | "limits.ephemeral-storage"
            | "pods"
            | "resourcequotas"
            | "services"
            | "replicationcontrollers"
            | "secrets"
            | "persistentvolumeclaims"
            | "configmaps"
            | "services.nodeports"
            | "services.loadbalancers"
    ) || name.starts_with("hugepages-")
        || name.starts_with("requests.hugepages-")
}

/// Upstream's `IsResourceQuotaScopeValidForResource`: the pod scopes go with pod counts and
/// compute resources (BestEffort with the pod count only), VolumeAttributesClass with claim
/// counts and requested storage.
fn scope_valid_for_resource(scope: &str, resource: &str) -> bool {
    let pod_count = resource == "pods";
    let pod_compute = matches!(
        resource,
        "cpu" | "memory" | "limits.cpu" | "limits.memory" | "requests.cpu" | "requests.memory"
    );
    match scope {
        "Terminating"
        | "NotTerminating"
        | "NotBestEffort"
        | "PriorityClass"
        | "CrossNamespacePodAffinity" => pod_count || pod_compute,
        "BestEffort" => pod_count,
        "VolumeAttributesClass" => {
            matches!(resource, "persistentvolumeclaims" | "requests.storage")
        }
        _ => true,
    }
}

/// Go's `%#v` of a `[]string` (or of a named string slice type `ty`).
fn go_strings(ty: &str, v: Option<&Value>) -> String {
    match v.and_then(Value::as_array) {
        None => format!("{ty}(nil)"),
        Some(a) => {
            let parts: Vec<String> = a
                .iter()
                .map(|s| go_quote(s.as_str().unwrap_or_default()))
                .collect();
            format!("{ty}{{{}}}", parts.join(", "))
        }
    }
}

/// Go's `%#v` of a `core.ScopeSelector`.
fn go_scope_selector(v: &Value) -> String {
    let exprs = match v.get("matchExpressions").and_then(Value::as_array) {
        None => "[]core.ScopedResourceSelectorRequirement(nil)".to_string(),
        Some(list) => {
            let parts: Vec<String> = list
                .iter()
                .map(|e| {
                    let s = |k: &str| go_quote(e.get(k).and_then(Value::as_str).unwrap_or(""));
                    format!(
                        "core.ScopedResourceSelectorRequirement{{ScopeName:{}, Operator:{}, \
                         Values:{}}}",
                        s("scopeName"),
                        s("operator"),
                        go_strings("[]string", e.get("values"))
                    )
                })
                .collect();
            format!(
                "[]core.ScopedResourceSelectorRequirement{{{}}}",
                parts.join(", ")
            )
        }
    };
    format!("core.ScopeSelector{{MatchExpressions:{exprs}}}")
}

/// Upstream's `validateResourceQuotaScopes` and `validateScopeSelector` (Kubernetes 1.33
/// with the VolumeAttributesClass scope): known scopes, each valid for every standard
/// resource in `spec.hard`, no conflicting pair (BestEffort/NotBestEffort,
/// Terminating/NotTerminating), and selector operators that fit the scope.
fn resource_quota(o: &Object, c: &mut Vec<Cause>) {
    let spec = spec_of(o, c);
    let hard: BTreeSet<&str> = spec
        .get("hard")
        .and_then(Value::as_object)
        .map(|h| h.keys().map(String::as_str).collect())
        .unwrap_or_default();
    let standard: Vec<&str> = hard
        .iter()
        .copied()
        .filter(|k| standard_quota_resource(k))
        .collect();
    let conflicts = |names: &BTreeSet<&str>| {
        [
            ("BestEffort", "NotBestEffort"),
            ("Terminating", "NotTerminating"),
        ]
        .iter()
        .filter(|(a, b)| names.contains(a) && names.contains(b))
        .count()
    };
    let scopes = list(spec.get("scopes"), "spec.scopes", c);
    if !scopes.is_empty() {
        let rendered = go_strings("[]core.ResourceQuotaScope", spec.get("scopes"));
        let mut seen = BTreeSet::new();
        for scope in scopes {
            let scope = string(Some(scope), "spec.scopes", c);
            if !QUOTA_SCOPES.contains(&scope) {
                c.push(invalid_rendered(
                    "spec.scopes",
                    &rendered,
                    "unsupported scope",
                ));
            }
            for _ in standard
                .iter()
                .filter(|k| !scope_valid_for_resource(scope, k))
            {
                c.push(invalid_rendered(
                    "spec.scopes",
                    &rendered,
                    "unsupported scope applied to resource",
                ));
            }
            seen.insert(scope);
        }
        for _ in 0..conflicts(&seen) {
            c.push(invalid_rendered(
                "spec.scopes",
                &rendered,
                "conflicting scopes",
            ));
        }
    }
    let Some(selector) = spec.get("scopeSelector").filter(|v| !v.is_null()) else {
        return;
    };
    let path = "spec.scopeSelector.matchExpressions";
    let rendered = go_scope_selector(selector);
    let mut seen = BTreeSet::new();
    for req in list(selector.get("matchExpressions"), path, c) {
        let scope = string(req.get("scopeName"), &at(path, "scopeName"), c);
        let operator = string(req.get("operator"), &at(path, "operator"), c);
        let values = list(req.get("values"), &at(path, "values"), c);
        if !QUOTA_SCOPES.contains(&scope) {
            c.push(Cause::invalid(
                at(path, "scopeName"),
                &json!(scope),
                "unsupported scope",
            ));
        }
        for _ in standard
            .iter()
            .filter(|k| !scope_valid_for_resource(scope, k))
        {
            c.push(invalid_rendered(
                path,
                &rendered,
                "unsupported scope applied to resource",
            ));
        }
        if matches!(
            scope,
            "BestEffort"
                | "NotBestEffort"
                | "Terminating"
                | "NotTerminating"
                | "CrossNamespacePodAffinity"
        ) && operator != "Exists"
        {
            c.push(Cause::invalid(
                at(path, "operator"),
                &json!(operator),
                "must be 'Exist' when scope is any of ResourceQuotaScopeTerminating, \
                 ResourceQuotaScopeNotTerminating, ResourceQuotaScopeBestEffort, \
                 ResourceQuotaScopeNotBestEffort or ResourceQuotaScopeCrossNamespacePodAffinity",
            ));
        }
        match operator {
            "In" | "NotIn" if values.is_empty() => c.push(required(
                at(path, "values"),
                "must be at least one value when `operator` is 'In' or 'NotIn' for scope selector",
            )),
            "Exists" | "DoesNotExist" if !values.is_empty() => c.push(invalid_rendered(
                at(path, "values"),
                &go_strings("[]string", req.get("values")),
                "must be no value when `operator` is 'Exist' or 'DoesNotExist' for scope selector",
            )),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => c.push(Cause::invalid(
                at(path, "operator"),
                &json!(other),
                "not a valid selector operator",
            )),
        }
        seen.insert(scope);
    }
    for _ in 0..conflicts(&seen) {
        c.push(invalid_rendered(path, &rendered, "conflicting scopes"));
    }
}

// ---------------------------------------------------------------------------------------------
// Nodes.

/// A node's pod CIDRs: `podCIDRs`, or the single `podCIDR`.
fn pod_cidrs(spec: Option<&Value>) -> Vec<String> {
    let list_ = spec
        .and_then(|s| s.get("podCIDRs"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|v| v.as_str().unwrap_or_default().to_string())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    if !list_.is_empty() {
        return list_;
    }
    spec.and_then(|s| s.get("podCIDR"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(|s| vec![s.to_string()])
        .unwrap_or_default()
}

fn node(o: &Object, old: Option<&Object>, c: &mut Vec<Cause>) {
    let spec = obj(o.get("spec"), "spec", c);
    if let Some(spec) = spec {
        string(spec.get("podCIDR"), "spec.podCIDR", c);
        list(spec.get("podCIDRs"), "spec.podCIDRs", c);
        let tp = "spec.taints";
        for (i, t) in list(spec.get("taints"), tp, c).iter().enumerate() {
            let p = idx(tp, i);
            let Some(t) = obj(Some(t), &p, c) else {
                continue;
            };
            if string(t.get("key"), &at(&p, "key"), c).is_empty() {
                c.push(Cause::required(at(&p, "key")));
            }
            one_of(
                t.get("effect"),
                &at(&p, "effect"),
                &["NoSchedule", "PreferNoSchedule", "NoExecute"],
                true,
                c,
            );
        }
    }
    let Some(old) = old else {
        return;
    };
    const DETAIL: &str = "node updates may not change podCIDR except from \"\" to valid";
    let (new_cidrs, old_cidrs) = (pod_cidrs(o.get("spec")), pod_cidrs(old.get("spec")));
    if !old_cidrs.is_empty() {
        if new_cidrs.len() != old_cidrs.len() {
            c.push(Cause::forbidden("spec.podCIDRs", DETAIL));
        } else {
            for (i, (n, o_)) in new_cidrs.iter().zip(&old_cidrs).enumerate() {
                if n != o_ {
                    c.push(Cause::forbidden(idx("spec.podCIDRs", i), DETAIL));
                }
            }
        }
    }
    let provider = |v: &Object| {
        v.get("spec")
            .and_then(|s| s.get("providerID"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let old_provider = provider(old);
    if !old_provider.is_empty() && old_provider != provider(o) {
        c.push(Cause::forbidden(
            "spec.providerID",
            "node updates may not change providerID except from \"\" to valid",
        ));
    }
}

fn storage_class(o: &Object, old: Option<&Object>, c: &mut Vec<Cause>) {
    let provisioner = string(o.get("provisioner"), "provisioner", c);
    if provisioner.is_empty() {
        c.push(Cause::required("provisioner"));
    } else if provisioner.len() > 63 {
        c.push(Cause::too_long("provisioner", 63));
    }
    let params = string_map(o.get("parameters"), "parameters", c);
    if params.len() > 512 {
        c.push(Cause::too_long("parameters", 512));
    }
    if params.iter().any(|(k, _)| k.is_empty()) {
        c.push(required("parameters", "parameter keys must be non-empty"));
    }
    one_of(
        o.get("reclaimPolicy"),
        "reclaimPolicy",
        &["Delete", "Retain"],
        false,
        c,
    );
    one_of(
        o.get("volumeBindingMode"),
        "volumeBindingMode",
        &["Immediate", "WaitForFirstConsumer"],
        false,
        c,
    );
    let Some(old) = old else {
        return;
    };
    if !same(o.get("parameters"), old.get("parameters")) {
        c.push(Cause::forbidden(
            "parameters",
            "updates to parameters are forbidden.",
        ));
    }
    if !same(o.get("provisioner"), old.get("provisioner")) {
        c.push(Cause::forbidden(
            "provisioner",
            "updates to provisioner are forbidden.",
        ));
    }
    if !same(o.get("reclaimPolicy"), old.get("reclaimPolicy")) {
        c.push(Cause::forbidden(
            "reclaimPolicy",
            "updates to reclaimPolicy are forbidden.",
        ));
    }
    if !same(o.get("volumeBindingMode"), old.get("volumeBindingMode")) {
        c.push(Cause::invalid(
            "volumeBindingMode",
            o.get("volumeBindingMode").unwrap_or(&Value::Null),
            IMMUTABLE,
        ));
    }
}

// ---------------------------------------------------------------------------------------------
// RBAC.

fn role(o: &Object, namespaced: bool, c: &mut Vec<Cause>) {
    // Aggregated ClusterRoles get their rules from the controller.
    if !namespaced && o.get("aggregationRule").is_some_and(|v| !v.is_null()) {
        return;
    }
    for (i, rule) in list(o.get("rules"), "rules", c).iter().enumerate() {
        let p = idx("rules", i);
        let Some(rule) = obj(Some(rule), &p, c) else {
            continue;
        };
        let len = |k: &str, c: &mut Vec<Cause>| list(rule.get(k), &at(&p, k), c).len();
        if len("verbs", c) == 0 {
            c.push(required(
                at(&p, "verbs"),
                "verbs must contain at least one value",
            ));
        }
        let urls = len("nonResourceURLs", c);
        let (groups, resources, names) = (
            len("apiGroups", c),
            len("resources", c),
            len("resourceNames", c),
        );
        if urls > 0 {
            let value = rule.get("nonResourceURLs").cloned().unwrap_or(Value::Null);
            if namespaced {
                c.push(Cause::invalid(
                    at(&p, "nonResourceURLs"),
                    &value,
                    "namespaced rules cannot apply to non-resource URLs",
                ));
            }
            if groups > 0 || resources > 0 || names > 0 {
                c.push(Cause::invalid(
                    at(&p, "nonResourceURLs"),
                    &value,
                    "rules cannot apply to both regular resources and non-resource URLs",
                ));
            }
            continue;
        }
        if groups == 0 {
            c.push(required(
                at(&p, "apiGroups"),
                "resource rules must supply at least one api group",
            ));
        }
        if resources == 0 {
            c.push(required(
                at(&p, "resources"),
                "resource rules must supply at least one resource",
            ));
        }
    }
}

fn role_binding(o: &Object, old: Option<&Object>, namespaced: bool, c: &mut Vec<Cause>) {
    const GROUP: &str = "rbac.authorization.k8s.io";
    let empty = Object::new();
    let rr = obj(o.get("roleRef"), "roleRef", c).unwrap_or(&empty);
    let group = string(rr.get("apiGroup"), "roleRef.apiGroup", c);
    if group != GROUP {
        c.push(Cause::unsupported(
            "roleRef.apiGroup",
            &json!(group),
            &[GROUP],
        ));
    }
    let kind = string(rr.get("kind"), "roleRef.kind", c);
    let kinds: &[&str] = if namespaced {
        &["Role", "ClusterRole"]
    } else {
        &["ClusterRole"]
    };
    if !kinds.contains(&kind) {
        c.push(Cause::unsupported("roleRef.kind", &json!(kind), kinds));
    }
    let name = string(rr.get("name"), "roleRef.name", c);
    if name.is_empty() {
        c.push(Cause::required("roleRef.name"));
    } else if let Some(e) = path_segment_error(name) {
        c.push(Cause::invalid("roleRef.name", &json!(name), e));
    }
    for (i, s) in list(o.get("subjects"), "subjects", c).iter().enumerate() {
        let p = idx("subjects", i);
        let Some(s) = obj(Some(s), &p, c) else {
            continue;
        };
        let name = string(s.get("name"), &at(&p, "name"), c);
        if name.is_empty() {
            c.push(Cause::required(at(&p, "name")));
        }
        let group = string(s.get("apiGroup"), &at(&p, "apiGroup"), c);
        match string(s.get("kind"), &at(&p, "kind"), c) {
            "ServiceAccount" => {
                if !group.is_empty() {
                    c.push(Cause::unsupported(at(&p, "apiGroup"), &json!(group), &[""]));
                }
                if !name.is_empty()
                    && let Some(e) = dns1123_subdomain(name)
                {
                    c.push(Cause::invalid(at(&p, "name"), &json!(name), &e));
                }
                let ns = string(s.get("namespace"), &at(&p, "namespace"), c);
                if !namespaced && ns.is_empty() {
                    c.push(Cause::required(at(&p, "namespace")));
                }
            }
            "User" | "Group" => {
                if group != GROUP {
                    c.push(Cause::unsupported(
                        at(&p, "apiGroup"),
                        &json!(group),
                        &[GROUP],
                    ));
                }
            }
            other => c.push(Cause::unsupported(
                at(&p, "kind"),
                &json!(other),
                &["ServiceAccount", "User", "Group"],
            )),
        }
    }
    if let Some(old) = old
        && !same(o.get("roleRef"), old.get("roleRef"))
    {
        let rendered = format!(
            "rbac.RoleRef{{APIGroup:{}, Kind:{}, Name:{}}}",
            go_quote(group),
            go_quote(kind),
            go_quote(name)
        );
        c.push(invalid_rendered(
            "roleRef",
            &rendered,
            "cannot change roleRef",
        ));
    }
}

fn path_segment_error(name: &str) -> Option<&'static str> {
    if name == "." {
        Some("may not be '.'")
    } else if name == ".." {
        Some("may not be '..'")
    } else if name.contains('/') {
        Some("may not contain '/'")
    } else if name.contains('%') {
        Some("may not contain '%'")
    } else {
        None
    }
}

// ---------------------------------------------------------------------------------------------
// Policy, autoscaling, networking, scheduling.

/// Events, checked on their core/v1 form (upstream's `ValidateEventCreate` and
/// `ValidateEventUpdate` check the internal type, whose field names are core's, whichever
/// version the request used). Writes through core/v1 get only the legacy checks; writes
/// through events.k8s.io/v1 (`strict`) also the new API's rules: `eventTime`, `Normal` or
/// `Warning`, the deprecated fields unset, a sane series, and immutability on update.
pub fn event(obj: &Value, old: Option<&Value>, strict: bool) -> Vec<Cause> {
    let mut c = Vec::new();
    let text = |v: &Value, k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let set = |v: &Value, k: &str| v.get(k).is_some_and(|x| !x.is_null());
    let ns = obj
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let involved_ns = obj
        .pointer("/involvedObject/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mismatch = |c: &mut Vec<Cause>| {
        c.push(Cause::invalid(
            "involvedObject.namespace",
            &json!(involved_ns),
            "does not match event.namespace",
        ))
    };
    let reporting_field = if strict {
        "reportingController"
    } else {
        "reportingComponent"
    };
    let too_long = |c: &mut Vec<Cause>, path: &str, value: &str, max: usize| {
        if value.len() > max {
            c.push(Cause::invalid(
                path,
                &json!(""),
                &format!("can have at most {max} characters"),
            ));
        }
    };
    if !set(obj, "eventTime") {
        // An old-style event: its namespace must agree with the involved object's (or be
        // `default`, for old clients).
        if involved_ns.is_empty() {
            if !ns.is_empty() && ns != "default" {
                mismatch(&mut c);
            }
        } else if ns != involved_ns {
            mismatch(&mut c);
        }
    } else {
        if involved_ns.is_empty() && ns != "default" && ns != "kube-system" {
            mismatch(&mut c);
        }
        let controller = text(obj, "reportingComponent");
        if controller.is_empty() {
            c.push(Cause::required(reporting_field));
        } else if let Some(e) = super::meta::qualified_name_error(&controller) {
            c.push(Cause::invalid(reporting_field, &json!(controller), &e));
        }
        for (key, max) in [("reportingInstance", 128), ("action", 128), ("reason", 128)] {
            let v = text(obj, key);
            if v.is_empty() {
                c.push(Cause::required(key));
            }
            too_long(&mut c, key, &v, max);
        }
        too_long(&mut c, "message", &text(obj, "message"), 1024);
    }
    if !strict {
        return c;
    }
    let series_changed = old.is_none_or(|o| o.get("series") != obj.get("series"));
    if series_changed && let Some(series) = obj.get("series").filter(|s| !s.is_null()) {
        if series.get("count").and_then(Value::as_i64).unwrap_or(0) < 2 {
            c.push(Cause::invalid(
                "series.count",
                &json!(""),
                "should be at least 2",
            ));
        }
        if !set(series, "lastObservedTime") {
            c.push(Cause::required("series.lastObservedTime"));
        }
    }
    match old {
        None => {
            if !set(obj, "eventTime") {
                c.push(Cause::required("eventTime"));
            }
            let kind = text(obj, "type");
            if kind != "Normal" && kind != "Warning" {
                c.push(Cause::invalid(
                    "type",
                    &json!(""),
                    &format!("has invalid value: {kind}"),
                ));
            }
            for key in ["firstTimestamp", "lastTimestamp"] {
                if set(obj, key) {
                    c.push(Cause::invalid(key, &json!(""), "needs to be unset"));
                }
            }
            if obj.get("count").and_then(Value::as_i64).unwrap_or(0) != 0 {
                c.push(Cause::invalid("count", &json!(""), "needs to be unset"));
            }
            let source = obj.get("source").cloned().unwrap_or(Value::Null);
            if !text(&source, "component").is_empty() || !text(&source, "host").is_empty() {
                c.push(Cause::invalid("source", &json!(""), "needs to be unset"));
            }
        }
        Some(old) => {
            // Upstream's list; `reportingController` is the internal name of core's
            // `reportingComponent`.
            for (key, path) in [
                ("involvedObject", "involvedObject"),
                ("reason", "reason"),
                ("message", "message"),
                ("source", "source"),
                ("firstTimestamp", "firstTimestamp"),
                ("lastTimestamp", "lastTimestamp"),
                ("count", "count"),
                ("type", "type"),
                ("eventTime", "eventTime"),
                ("action", "action"),
                ("related", "related"),
                ("reportingComponent", "reportingController"),
                ("reportingInstance", "reportingInstance"),
            ] {
                let new_value = obj.get(key).filter(|v| !v.is_null());
                if new_value != old.get(key).filter(|v| !v.is_null()) {
                    c.push(Cause::invalid(
                        path,
                        new_value.unwrap_or(&Value::Null),
                        "field is immutable",
                    ));
                }
            }
        }
    }
    c
}

fn pod_disruption_budget(o: &Object, c: &mut Vec<Cause>) {
    let spec = spec_of(o, c);
    let min = spec.get("minAvailable").filter(|v| !v.is_null());
    let max = spec.get("maxUnavailable").filter(|v| !v.is_null());
    if min.is_some() && max.is_some() {
        c.push(Cause::invalid(
            "spec",
            &Value::Object(spec.clone()),
            "minAvailable and maxUnavailable cannot be both set",
        ));
    }
    int_or_percent(min, "spec.minAvailable", true, c);
    int_or_percent(max, "spec.maxUnavailable", true, c);
    label_selector(spec.get("selector"), "spec.selector", c);
    one_of(
        spec.get("unhealthyPodEvictionPolicy"),
        "spec.unhealthyPodEvictionPolicy",
        &["AlwaysAllow", "IfHealthyBudget"],
        false,
        c,
    );
}

fn horizontal_pod_autoscaler(o: &Object, c: &mut Vec<Cause>) {
    let spec = spec_of(o, c);
    let min = int(spec.get("minReplicas"), "spec.minReplicas", c);
    if let Some(m) = min
        && m < 1
    {
        c.push(Cause::invalid(
            "spec.minReplicas",
            &json!(m),
            "must be greater than or equal to 1",
        ));
    }
    let max = int(spec.get("maxReplicas"), "spec.maxReplicas", c).unwrap_or(0);
    if max < 1 {
        c.push(Cause::invalid(
            "spec.maxReplicas",
            &json!(max),
            "must be greater than 0",
        ));
    }
    if let Some(m) = min
        && max < m
    {
        c.push(Cause::invalid(
            "spec.maxReplicas",
            &json!(max),
            "must be greater than or equal to `minReplicas`",
        ));
    }
    let empty = Object::new();
    let target = obj(spec.get("scaleTargetRef"), "spec.scaleTargetRef", c).unwrap_or(&empty);
    for key in ["kind", "name"] {
        let p = at("spec.scaleTargetRef", key);
        let s = string(target.get(key), &p, c);
        if s.is_empty() {
            c.push(Cause::required(p));
        } else if let Some(e) = path_segment_error(s) {
            c.push(Cause::invalid(p, &json!(s), e));
        }
    }
    let tp = "spec.targetCPUUtilizationPercentage";
    if let Some(n) = int(spec.get("targetCPUUtilizationPercentage"), tp, c)
        && n < 1
    {
        c.push(Cause::invalid(tp, &json!(n), "must be greater than 0"));
    }
}

fn ingress(o: &Object, c: &mut Vec<Cause>) {
    let spec = spec_of(o, c);
    let rules = list(spec.get("rules"), "spec.rules", c);
    let default_backend = spec.get("defaultBackend").filter(|v| !v.is_null());
    if rules.is_empty() && default_backend.is_none() {
        c.push(Cause::invalid(
            "spec.rules",
            &Value::Null,
            "either `defaultBackend` or `rules` must be specified",
        ));
    }
    if let Some(b) = default_backend {
        ingress_backend(b, "spec.defaultBackend", c);
    }
    let class = string(spec.get("ingressClassName"), "spec.ingressClassName", c);
    if !class.is_empty()
        && let Some(e) = dns1123_subdomain(class)
    {
        c.push(Cause::invalid("spec.ingressClassName", &json!(class), &e));
    }
    for (i, rule) in rules.iter().enumerate() {
        let p = idx("spec.rules", i);
        let Some(rule) = obj(Some(rule), &p, c) else {
            continue;
        };
        let host = string(rule.get("host"), &at(&p, "host"), c);
        if !host.is_empty() {
            if host.parse::<std::net::IpAddr>().is_ok() {
                c.push(Cause::invalid(
                    at(&p, "host"),
                    &json!(host),
                    "must be a DNS name, not an IP address",
                ));
            } else if let Some(e) = dns1123_subdomain(host.strip_prefix("*.").unwrap_or(host)) {
                c.push(Cause::invalid(at(&p, "host"), &json!(host), &e));
            }
        }
        let hp = at(&p, "http");
        let Some(http) = obj(rule.get("http"), &hp, c) else {
            continue;
        };
        let pp = at(&hp, "paths");
        let paths = list(http.get("paths"), &pp, c);
        if paths.is_empty() {
            c.push(Cause::required(&pp));
        }
        for (j, path) in paths.iter().enumerate() {
            let p = idx(&pp, j);
            let Some(path) = obj(Some(path), &p, c) else {
                continue;
            };
            ingress_path(path, &p, c);
        }
    }
}

fn ingress_path(path: &Object, p: &str, c: &mut Vec<Cause>) {
    let value = string(path.get("path"), &at(p, "path"), c);
    let ty = string(path.get("pathType"), &at(p, "pathType"), c);
    match ty {
        "" => {
            c.push(required(at(p, "pathType"), "pathType must be specified"));
            return;
        }
        "Exact" | "Prefix" => {
            if !value.starts_with('/') {
                c.push(Cause::invalid(
                    at(p, "path"),
                    &json!(value),
                    "must be an absolute path",
                ));
            }
            for seq in ["//", "/./", "/../", "%2f", "%2F"] {
                if value.contains(seq) {
                    c.push(Cause::invalid(
                        at(p, "path"),
                        &json!(value),
                        &format!("must not contain '{seq}'"),
                    ));
                }
            }
            for suffix in ["/..", "/."] {
                if value.ends_with(suffix) {
                    c.push(Cause::invalid(
                        at(p, "path"),
                        &json!(value),
                        &format!("cannot end with '{suffix}'"),
                    ));
                }
            }
        }
        "ImplementationSpecific" => {
            if !value.is_empty() && !value.starts_with('/') {
                c.push(Cause::invalid(
                    at(p, "path"),
                    &json!(value),
                    "must be an absolute path",
                ));
            }
        }
        other => c.push(Cause::unsupported(
            at(p, "pathType"),
            &json!(other),
            &["Exact", "ImplementationSpecific", "Prefix"],
        )),
    }
    match path.get("backend") {
        None | Some(Value::Null) => c.push(Cause::invalid(
            at(p, "backend"),
            &json!(""),
            "resource or service backend is required",
        )),
        Some(b) => ingress_backend(b, &at(p, "backend"), c),
    }
}

fn ingress_backend(b: &Value, p: &str, c: &mut Vec<Cause>) {
    let Some(b) = obj(Some(b), p, c) else {
        return;
    };
    let resource = b.get("resource").filter(|v| !v.is_null());
    let service = b.get("service").filter(|v| !v.is_null());
    match (resource, service) {
        (Some(_), Some(_)) => c.push(Cause::invalid(
            p,
            &json!(""),
            "cannot set both resource and service backends",
        )),
        (Some(r), None) => {
            let rp = at(p, "resource");
            if let Some(r) = obj(Some(r), &rp, c) {
                for key in ["kind", "name"] {
                    if string(r.get(key), &at(&rp, key), c).is_empty() {
                        c.push(Cause::required(at(&rp, key)));
                    }
                }
            }
        }
        (None, Some(s)) => {
            let sp = at(p, "service");
            let Some(s) = obj(Some(s), &sp, c) else {
                return;
            };
            let name = string(s.get("name"), &at(&sp, "name"), c);
            if name.is_empty() {
                c.push(Cause::required(at(&sp, "name")));
            } else if let Some(e) = dns1123_label(name) {
                c.push(Cause::invalid(at(&sp, "name"), &json!(name), &e));
            }
            let pp = at(&sp, "port");
            let empty = Object::new();
            let port = obj(s.get("port"), &pp, c).unwrap_or(&empty);
            let pname = string(port.get("name"), &at(&pp, "name"), c);
            let number = int(port.get("number"), &at(&pp, "number"), c).unwrap_or(0);
            match (pname.is_empty(), number == 0) {
                (false, false) => c.push(Cause::invalid(
                    p,
                    &json!(""),
                    "cannot set both port name & port number",
                )),
                (false, true) => {
                    for e in port_name_errors(pname) {
                        c.push(Cause::invalid(at(&pp, "name"), &json!(pname), e));
                    }
                }
                (true, false) => {
                    if !(1..=65535).contains(&number) {
                        c.push(Cause::invalid(
                            at(&pp, "number"),
                            &json!(number),
                            PORT_RANGE,
                        ));
                    }
                }
                (true, true) => c.push(required(p, "port name or number is required")),
            }
        }
        (None, None) => c.push(Cause::invalid(
            p,
            &json!(""),
            "resource or service backend is required",
        )),
    }
}

fn network_policy(o: &Object, c: &mut Vec<Cause>) {
    let spec = spec_of(o, c);
    label_selector(spec.get("podSelector"), "spec.podSelector", c);
    for (key, peers) in [("ingress", "from"), ("egress", "to")] {
        let rp = at("spec", key);
        for (i, rule) in list(spec.get(key), &rp, c).iter().enumerate() {
            let p = idx(&rp, i);
            let Some(rule) = obj(Some(rule), &p, c) else {
                continue;
            };
            let pp = at(&p, "ports");
            for (j, port) in list(rule.get("ports"), &pp, c).iter().enumerate() {
                let p = idx(&pp, j);
                let Some(port) = obj(Some(port), &p, c) else {
                    continue;
                };
                let protocol = string(port.get("protocol"), &at(&p, "protocol"), c);
                if !protocol.is_empty() && !PROTOCOLS.contains(&protocol) {
                    c.push(Cause::unsupported(
                        at(&p, "protocol"),
                        &json!(protocol),
                        &["TCP", "UDP", "SCTP"],
                    ));
                }
                port_number_or_name(port.get("port"), &at(&p, "port"), c);
                let end = int(port.get("endPort"), &at(&p, "endPort"), c);
                if let Some(end) = end {
                    match port.get("port").and_then(Value::as_i64) {
                        Some(start) if end < start => c.push(Cause::invalid(
                            at(&p, "endPort"),
                            &json!(end),
                            "must be greater than or equal to `port`",
                        )),
                        Some(_) => {}
                        None => c.push(required(
                            at(&p, "port"),
                            "must be specified when `endPort` is specified",
                        )),
                    }
                }
            }
            let peers_path = at(&p, peers);
            for (j, peer) in list(rule.get(peers), &peers_path, c).iter().enumerate() {
                let p = idx(&peers_path, j);
                let Some(peer) = obj(Some(peer), &p, c) else {
                    continue;
                };
                let n = ["podSelector", "namespaceSelector", "ipBlock"]
                    .iter()
                    .filter(|k| peer.get(**k).is_some_and(|v| !v.is_null()))
                    .count();
                if n == 0 {
                    c.push(required(&p, "must specify a peer"));
                } else if peer.get("ipBlock").is_some_and(|v| !v.is_null()) && n > 1 {
                    c.push(Cause::forbidden(
                        &p,
                        "may not specify both ipBlock and another peer",
                    ));
                }
                label_selector(peer.get("podSelector"), &at(&p, "podSelector"), c);
                label_selector(
                    peer.get("namespaceSelector"),
                    &at(&p, "namespaceSelector"),
                    c,
                );
            }
        }
    }
    let tp = "spec.policyTypes";
    let types = list(spec.get("policyTypes"), tp, c);
    for (i, t) in types.iter().enumerate() {
        match t.as_str() {
            Some("Ingress" | "Egress") => {}
            _ => c.push(Cause::unsupported(idx(tp, i), t, &["Ingress", "Egress"])),
        }
    }
    if types.len() > 2 {
        c.push(Cause::forbidden(
            tp,
            "may not specify more than two policyTypes",
        ));
    }
}

fn priority_class(o: &Object, old: Option<&Object>, c: &mut Vec<Cause>) {
    const HIGHEST_USER: i64 = 1_000_000_000;
    let value = int(o.get("value"), "value", c);
    let name = o
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("");
    if value.is_some_and(|v| v > HIGHEST_USER) && !name.starts_with("system-") {
        c.push(Cause::forbidden(
            "value",
            &format!("maximum allowed value of a user defined priority is {HIGHEST_USER}"),
        ));
    }
    one_of(
        o.get("preemptionPolicy"),
        "preemptionPolicy",
        &["Never", "PreemptLowerPriority"],
        false,
        c,
    );
    boolean(o.get("globalDefault"), "globalDefault", c);
    let Some(old) = old else {
        return;
    };
    if !same(o.get("value"), old.get("value")) {
        c.push(Cause::forbidden(
            "value",
            "may not be changed in an update.",
        ));
    }
    if !same(o.get("preemptionPolicy"), old.get("preemptionPolicy")) {
        c.push(Cause::invalid(
            "preemptionPolicy",
            o.get("preemptionPolicy").unwrap_or(&Value::Null),
            IMMUTABLE,
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A defaulted Indexed Job with `extra` merged into its spec.
    fn job_with(extra: Value) -> Value {
        let mut job = json!({
            "metadata": {"name": "j", "namespace": "default"},
            "spec": {
                "completions": 4,
                "parallelism": 2,
                "completionMode": "Indexed",
                "selector": {"matchLabels": {"a": "b"}},
                "template": {
                    "metadata": {"labels": {"a": "b"}},
                    "spec": {"restartPolicy": "Never", "dnsPolicy": "ClusterFirst",
                        "containers": [{"name": "main", "image": "busybox",
                            "imagePullPolicy": "Always",
                            "terminationMessagePolicy": "File"}]},
                },
            },
        });
        for (k, v) in extra.as_object().unwrap() {
            job["spec"][k] = v.clone();
        }
        job
    }

    fn texts(obj: &Value) -> Vec<String> {
        validate("batch", "jobs", obj, None)
            .iter()
            .map(Cause::text)
            .collect()
    }

    #[test]
    fn backoff_limit_per_index_fields_are_validated_as_upstream() {
        assert_eq!(
            texts(&job_with(
                json!({"backoffLimitPerIndex": 1, "maxFailedIndexes": 2})
            )),
            Vec::<String>::new()
        );
        assert_eq!(
            texts(&job_with(
                json!({"completionMode": "NonIndexed", "backoffLimitPerIndex": 1})
            )),
            ["spec.backoffLimitPerIndex: Invalid value: 1: requires indexed completion mode"]
        );
        assert_eq!(
            texts(&job_with(json!({"maxFailedIndexes": 5}))),
            [
                "spec.backoffLimitPerIndex: Required value: when maxFailedIndexes is specified",
                "spec.maxFailedIndexes: Invalid value: 5: must be less than or equal to completions",
            ]
        );
        let fail_index = json!({"podFailurePolicy": {"rules": [{"action": "FailIndex",
            "onExitCodes": {"operator": "In", "values": [3]}}]}});
        assert_eq!(
            texts(&job_with(fail_index)),
            [
                "spec.podFailurePolicy.rules[0].action: Invalid value: \"FailIndex\": requires the backoffLimitPerIndex to be set"
            ]
        );
    }

    /// A NonIndexed Job whose podFailurePolicy has `rules`.
    fn policy_job(rules: Value) -> Value {
        let mut job = job_with(json!({"podFailurePolicy": {"rules": rules}}));
        job["spec"]["completionMode"] = json!("NonIndexed");
        job["spec"]["template"]["spec"]["initContainers"] = json!([{"name": "setup",
            "image": "busybox", "imagePullPolicy": "Always", "terminationMessagePolicy": "File"}]);
        job
    }

    #[test]
    fn pod_failure_policy_exit_codes_are_validated_as_upstream() {
        let exit = |req: Value| policy_job(json!([{"action": "FailJob", "onExitCodes": req}]));
        assert_eq!(
            texts(&exit(json!({"operator": "In", "values": [1, 2, 42]}))),
            Vec::<String>::new()
        );
        assert_eq!(
            texts(&exit(
                json!({"containerName": "setup", "operator": "NotIn", "values": [0, 1]})
            )),
            Vec::<String>::new()
        );
        let p = "spec.podFailurePolicy.rules[0].onExitCodes";
        assert_eq!(
            texts(&exit(json!({"operator": "In", "values": [0, 3, 3, 1]}))),
            [
                format!("{p}.values[0]: Invalid value: 0: must not be 0 for the In operator"),
                format!("{p}.values[2]: Duplicate value: 3"),
                format!("{p}.values: Invalid value: []int32{{0, 3, 3, 1}}: must be ordered"),
            ]
        );
        assert_eq!(
            texts(&exit(json!({"containerName": "other", "values": []}))),
            [
                format!("{p}.operator: Required value: valid values: [\"In\" \"NotIn\"]"),
                format!(
                    "{p}.containerName: Invalid value: \"other\": must be one of the container \
                     or initContainer names in the pod template"
                ),
                format!("{p}.values: Invalid value: []int32{{}}: at least one value is required"),
            ]
        );
        let many: Vec<i64> = (1..=256).collect();
        assert_eq!(
            texts(&exit(json!({"operator": "Between", "values": many}))),
            [
                format!(
                    "{p}.operator: Unsupported value: \"Between\": supported values: \"In\", \"NotIn\""
                ),
                format!("{p}.values: Too many: 256: must have at most 255 items"),
            ]
        );
    }

    #[test]
    fn pod_failure_policy_rules_are_validated_as_upstream() {
        let conditions = json!([{"type": "DisruptionTarget", "status": "True"}]);
        assert_eq!(
            texts(&policy_job(
                json!([{"action": "Ignore", "onPodConditions": conditions}])
            )),
            Vec::<String>::new()
        );
        let r = "spec.podFailurePolicy.rules[0]";
        assert_eq!(
            texts(&policy_job(json!([{"action": "Count"}]))),
            [format!(
                "{r}: Invalid value: specifying one of OnExitCodes and OnPodConditions is required"
            )]
        );
        assert_eq!(
            texts(&policy_job(
                json!([{"action": "Retry", "onPodConditions": conditions,
                "onExitCodes": {"operator": "In", "values": [1]}}])
            )),
            [
                format!(
                    "{r}.action: Unsupported value: \"Retry\": supported values: \"Count\", \"FailIndex\", \"FailJob\", \"Ignore\""
                ),
                format!(
                    "{r}: Invalid value: specifying both OnExitCodes and OnPodConditions is not supported"
                ),
            ]
        );
        assert_eq!(
            texts(&policy_job(
                json!([{"action": "Ignore", "onPodConditions": [
                {"type": "bad type!", "status": "True"}, {"type": "Ready", "status": "Maybe"},
                {"type": "Ready", "status": ""}]}])
            )),
            [
                format!(
                    "{r}.onPodConditions[0].type: Invalid value: \"bad type!\": {}",
                    super::super::meta::qualified_name_error("bad type!").unwrap()
                ),
                format!(
                    "{r}.onPodConditions[1].status: Unsupported value: \"Maybe\": supported values: \"False\", \"True\", \"Unknown\""
                ),
                format!(
                    "{r}.onPodConditions[2].status: Required value: valid values: [\"False\" \"True\" \"Unknown\"]"
                ),
            ]
        );
        let pattern = json!({"type": "DisruptionTarget"});
        let many = json!([{"action": "Ignore", "onPodConditions": vec![pattern; 21]}]);
        assert!(texts(&policy_job(many)).contains(
            &"spec.podFailurePolicy.rules[0].onPodConditions: Too many: 21: must have at most 20 items"
                .to_string()
        ));
        let rule = json!({"action": "Ignore", "onPodConditions": conditions});
        assert_eq!(
            texts(&policy_job(Value::Array(vec![rule; 21]))),
            ["spec.podFailurePolicy.rules: Too many: 21: must have at most 20 items"]
        );
        // Restart policy and pod replacement policy narrow with a podFailurePolicy.
        let mut on_failure =
            policy_job(json!([{"action": "Ignore", "onPodConditions": conditions}]));
        on_failure["spec"]["template"]["spec"]["restartPolicy"] = json!("OnFailure");
        on_failure["spec"]["podReplacementPolicy"] = json!("TerminatingOrFailed");
        assert_eq!(
            texts(&on_failure),
            [
                "spec.podReplacementPolicy: Unsupported value: \"TerminatingOrFailed\": supported values: \"Failed\"",
                "spec.template.spec.restartPolicy: Invalid value: \"OnFailure\": only \"Never\" is supported when podFailurePolicy is specified",
            ]
        );
    }

    /// The status causes of moving `job`'s status from `old` to `new`.
    fn status_texts(job: &Value, old: Value, new: Value) -> Vec<String> {
        let (mut before, mut after) = (job.clone(), job.clone());
        before["status"] = old;
        after["status"] = new;
        status("batch", "jobs", &after, &before)
            .iter()
            .map(Cause::text)
            .collect()
    }

    #[test]
    fn job_status_counts_and_indexes_are_validated_as_upstream() {
        let per_index = job_with(json!({"backoffLimitPerIndex": 1}));
        assert_eq!(
            status_texts(
                &per_index,
                json!({}),
                json!({"active": 1, "ready": 1, "completedIndexes": "0,2", "failedIndexes": "1"})
            ),
            Vec::<String>::new()
        );
        assert_eq!(
            status_texts(
                &per_index,
                json!({}),
                json!({"active": -1, "succeeded": -2, "failed": -3, "ready": -4, "terminating": -5})
            ),
            [
                "status.active: Invalid value: -1: must be greater than or equal to 0",
                "status.succeeded: Invalid value: -2: must be greater than or equal to 0",
                "status.failed: Invalid value: -3: must be greater than or equal to 0",
                "status.ready: Invalid value: -4: must be greater than or equal to 0",
                "status.terminating: Invalid value: -5: must be greater than or equal to 0",
            ]
        );
        assert_eq!(
            status_texts(
                &per_index,
                json!({}),
                json!({"completedIndexes": "2,1", "failedIndexes": "0-4"})
            ),
            [
                "status.completedIndexes: Invalid value: \"2,1\": error parsing completedIndexes: non-increasing order, previous: 2, current: 1",
                "status.failedIndexes: Invalid value: \"0-4\": error parsing failedIndexes: too large index: \"4\"",
            ]
        );
        assert_eq!(
            status_texts(
                &per_index,
                json!({"completedIndexes": "0-1"}),
                json!({"completedIndexes": "0-1", "failedIndexes": "1-2"})
            ),
            [
                "status.failedIndexes: Invalid value: \"1-2\": failedIndexes and completedIndexes overlap at index: 1"
            ]
        );
        // Unchanged lists are not checked again (upstream's ratcheting).
        assert_eq!(
            status_texts(
                &per_index,
                json!({"completedIndexes": "x"}),
                json!({"completedIndexes": "x", "active": 1})
            ),
            Vec::<String>::new()
        );
        let mut non_indexed = job_with(json!({}));
        non_indexed["spec"]["completionMode"] = json!("NonIndexed");
        assert_eq!(
            status_texts(
                &non_indexed,
                json!({}),
                json!({"completedIndexes": "1", "failedIndexes": ""})
            ),
            [
                "status.completedIndexes: Invalid value: \"1\": cannot set non-empty completedIndexes when non-indexed completion mode",
                "status.failedIndexes: Invalid value: \"\": cannot set non-null failedIndexes when backoffLimitPerIndex is null",
            ]
        );
        assert_eq!(indexes_overlap("0,3-5", "1-2,6", 8), None);
        assert_eq!(indexes_overlap("0,3-5", "1-2,4", 8), Some(4));
        assert_eq!(indexes_overlap("bad,3", "3", 8), Some(3));
    }

    fn quota_texts(spec: Value) -> Vec<String> {
        let quota = json!({"metadata": {"name": "q", "namespace": "default"}, "spec": spec});
        validate("", "resourcequotas", &quota, None)
            .iter()
            .map(Cause::text)
            .collect()
    }

    #[test]
    fn quota_scopes_fit_their_resources_as_upstream() {
        let gold = json!({"matchExpressions": [
            {"scopeName": "VolumeAttributesClass", "operator": "In", "values": ["gold"]}]});
        assert_eq!(
            quota_texts(
                json!({"hard": {"persistentvolumeclaims": "2", "requests.storage": "5Gi",
                "count/persistentvolumeclaims": "2"}, "scopeSelector": gold})
            ),
            Vec::<String>::new()
        );
        assert_eq!(
            quota_texts(json!({"hard": {"pods": "2", "cpu": "1"}, "scopes": ["NotBestEffort"]})),
            Vec::<String>::new()
        );
        assert_eq!(
            quota_texts(json!({"hard": {"pods": "2", "requests.storage": "1Gi"},
                "scopeSelector": gold})),
            [
                "spec.scopeSelector.matchExpressions: Invalid value: core.ScopeSelector{MatchExpressions:[]core.ScopedResourceSelectorRequirement{core.ScopedResourceSelectorRequirement{ScopeName:\"VolumeAttributesClass\", Operator:\"In\", Values:[]string{\"gold\"}}}}: unsupported scope applied to resource"
            ]
        );
        assert_eq!(
            quota_texts(json!({"hard": {"persistentvolumeclaims": "2"},
                "scopes": ["VolumeAttributesClass", "BestEffort"]})),
            [
                "spec.scopes: Invalid value: []core.ResourceQuotaScope{\"VolumeAttributesClass\", \"BestEffort\"}: unsupported scope applied to resource"
            ]
        );
        assert_eq!(
            quota_texts(json!({"hard": {"pods": "1"},
                "scopes": ["BestEffort", "NotBestEffort", "Sometimes"]})),
            [
                "spec.scopes: Invalid value: []core.ResourceQuotaScope{\"BestEffort\", \"NotBestEffort\", \"Sometimes\"}: unsupported scope",
                "spec.scopes: Invalid value: []core.ResourceQuotaScope{\"BestEffort\", \"NotBestEffort\", \"Sometimes\"}: conflicting scopes",
            ]
        );
        let p = "spec.scopeSelector.matchExpressions";
        assert_eq!(
            quota_texts(json!({"hard": {"count/persistentvolumeclaims": "1"},
                "scopeSelector": {"matchExpressions": [
                    {"scopeName": "VolumeAttributesClass", "operator": "In"},
                    {"scopeName": "VolumeAttributesClass", "operator": "Exists", "values": ["x"]},
                    {"scopeName": "VolumeAttributesClass", "operator": "Like", "values": ["x"]},
                    {"scopeName": "Terminating", "operator": "DoesNotExist"}]}})),
            [
                format!(
                    "{p}.values: Required value: must be at least one value when `operator` is 'In' or 'NotIn' for scope selector"
                ),
                format!(
                    "{p}.values: Invalid value: []string{{\"x\"}}: must be no value when `operator` is 'Exist' or 'DoesNotExist' for scope selector"
                ),
                format!("{p}.operator: Invalid value: \"Like\": not a valid selector operator"),
                format!(
                    "{p}.operator: Invalid value: \"DoesNotExist\": must be 'Exist' when scope is any of ResourceQuotaScopeTerminating, ResourceQuotaScopeNotTerminating, ResourceQuotaScopeBestEffort, ResourceQuotaScopeNotBestEffort or ResourceQuotaScopeCrossNamespacePodAffinity"
                ),
            ]
        );
    }

    #[test]
    fn success_policies_are_validated_as_upstream() {
        let policy = |rules: Value| json!({"successPolicy": {"rules": rules}});
        assert_eq!(
            texts(&job_with(policy(
                json!([{"succeededIndexes": "0,2-3", "succeededCount": 2}])
            ))),
            Vec::<String>::new()
        );
        assert_eq!(
            texts(&job_with(policy(json!([])))),
            [
                "spec.successPolicy.rules: Required value: at least one rules must be specified when the successPolicy is specified"
            ]
        );
        assert_eq!(
            texts(&job_with(policy(json!([{}])))),
            [
                "spec.successPolicy.rules[0]: Required value: at least one of succeededCount or succeededIndexes must be specified"
            ]
        );
        assert_eq!(
            texts(&job_with(policy(json!([{"succeededIndexes": "3-1"}])))),
            [
                "spec.successPolicy.rules[0].succeededIndexes: Invalid value: \"3-1\": error parsing succeededIndexes: non-increasing order, previous: 3, current: 1"
            ]
        );
        assert_eq!(
            texts(&job_with(policy(json!([{"succeededIndexes": "0-9"}])))),
            [
                "spec.successPolicy.rules[0].succeededIndexes: Invalid value: \"0-9\": error parsing succeededIndexes: too large index: \"9\""
            ]
        );
        assert_eq!(
            texts(&job_with(policy(
                json!([{"succeededIndexes": "1", "succeededCount": 5}])
            ))),
            [
                "spec.successPolicy.rules[0].succeededCount: Invalid value: 5: must be less than or equal to 4 (the number of specified completions)",
                "spec.successPolicy.rules[0].succeededCount: Invalid value: 5: must be less than or equal to 1 (the number of indexes in the specified succeededIndexes field)",
            ]
        );
        let mut non_indexed = job_with(policy(json!([])));
        non_indexed["spec"]["completionMode"] = json!("NonIndexed");
        assert_eq!(
            texts(&non_indexed),
            [
                "spec.successPolicy: Invalid value: batch.SuccessPolicy{Rules:[]batch.SuccessPolicyRule{}}: requires indexed completion mode"
            ]
        );
        assert_eq!(indexes_format("0,2-4,7", 8), Ok(5));
        assert!(indexes_format("1,1", 8).is_err());
        assert!(indexes_format("1-2-3", 8).is_err());
    }
}
