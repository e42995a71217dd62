//! Upstream defaulting of the built-in kinds: the `SetDefaults_*` functions of
//! k8s.io/kubernetes/pkg/apis/*/v1, plus the values the registry strategies and the default
//! admission plugins (ServiceAccount, Priority, DefaultTolerationSeconds) fill in on create.
//!
//! Objects are `serde_json::Value`s in their v1 JSON form. Defaulting only fills what is
//! missing (absent, `null`, or an empty string where upstream's Go zero value means "unset") and
//! never overwrites. A field of the wrong JSON type is left alone: validation reports it.

use serde_json::{Map, Value, json};

type Object = Map<String, Value>;

/// Fills upstream's defaults into `obj` (a `group`/`resource` object in its v1 JSON form).
pub fn apply(group: &str, resource: &str, obj: &mut Value) {
    let Some(o) = obj.as_object_mut() else {
        return;
    };
    match (group, resource) {
        ("", "pods") => pod(o),
        ("", "podtemplates") => {
            if let Some(t) = child(o, "template") {
                pod_template(t);
            }
        }
        ("", "replicationcontrollers") => replication_controller(o),
        ("", "services") => service(o),
        ("", "namespaces") => namespace(o),
        ("", "secrets") => secret(o),
        ("", "persistentvolumeclaims") => persistent_volume_claim(o),
        ("", "persistentvolumes") => persistent_volume(o),
        ("", "endpoints") => {
            for subset in children(o, "subsets") {
                for port in children(subset, "ports") {
                    default_str(port, "protocol", "TCP");
                }
            }
        }
        ("", "nodes") => node(o),
        ("apps", "deployments") => deployment(o),
        ("apps", "replicasets") => {
            if let Some(spec) = child(o, "spec") {
                default_val(spec, "replicas", json!(1));
                spec_template(spec);
            }
        }
        ("apps", "statefulsets") => stateful_set(o),
        ("apps", "daemonsets") => daemon_set(o),
        ("batch", "jobs") => job(o),
        ("batch", "cronjobs") => cron_job(o),
        ("discovery.k8s.io", "endpointslices") => {
            for port in children(o, "ports") {
                default_val(port, "name", json!(""));
                default_str(port, "protocol", "TCP");
            }
        }
        ("networking.k8s.io", "networkpolicies") => network_policy(o),
        ("autoscaling", "horizontalpodautoscalers") => horizontal_pod_autoscaler(o),
        ("storage.k8s.io", "storageclasses") => {
            default_str(o, "reclaimPolicy", "Delete");
            default_str(o, "volumeBindingMode", "Immediate");
        }
        ("scheduling.k8s.io", "priorityclasses") => {
            default_str(o, "preemptionPolicy", "PreemptLowerPriority");
        }
        ("apiextensions.k8s.io", "customresourcedefinitions") => custom_resource_definition(o),
        ("admissionregistration.k8s.io", "validatingwebhookconfigurations") => {
            for hook in children(o, "webhooks") {
                webhook(hook, false);
            }
        }
        ("admissionregistration.k8s.io", "mutatingwebhookconfigurations") => {
            for hook in children(o, "webhooks") {
                webhook(hook, true);
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// Small JSON helpers. Each one tolerates a wrong type by doing nothing.

/// Whether `key` is unset in Go's sense for a pointer/struct field: absent or `null`.
fn unset(o: &Object, key: &str) -> bool {
    o.get(key).is_none_or(Value::is_null)
}

/// Sets `key` to `v` when it is absent or `null`.
fn default_val(o: &mut Object, key: &str, v: Value) {
    if unset(o, key) {
        o.insert(key.to_string(), v);
    }
}

/// Sets a string field whose Go zero value `""` means unset.
fn default_str(o: &mut Object, key: &str, v: &str) {
    if unset(o, key) || o.get(key).and_then(Value::as_str) == Some("") {
        o.insert(key.to_string(), json!(v));
    }
}

/// The object under `key`, if it is one.
fn child<'a>(o: &'a mut Object, key: &str) -> Option<&'a mut Object> {
    o.get_mut(key)?.as_object_mut()
}

/// The object under `key`, created empty when absent or `null`; `None` for a wrong type.
fn ensure<'a>(o: &'a mut Object, key: &str) -> Option<&'a mut Object> {
    default_val(o, key, json!({}));
    o.get_mut(key)?.as_object_mut()
}

/// The object elements of the array under `key`.
fn children<'a>(o: &'a mut Object, key: &str) -> impl Iterator<Item = &'a mut Object> {
    o.get_mut(key)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
}

/// Whether a map-valued field is unset or empty (Go's `len(m) == 0`).
fn empty_map(o: &Object, key: &str) -> bool {
    match o.get(key) {
        None | Some(Value::Null) => true,
        Some(Value::Object(m)) => m.is_empty(),
        Some(_) => false,
    }
}

// ---------------------------------------------------------------------------------------------
// Pods and pod templates.

/// A whole pod: the spec defaults every template gets, plus what `SetDefaults_Pod`, the pod
/// strategy's PrepareForCreate and the default admission plugins add for a real pod.
fn pod(o: &mut Object) {
    let Some(spec) = child(o, "spec") else {
        return;
    };
    // SetDefaults_Pod: a container's requests default to its limits, one resource at a time.
    for key in ["containers", "initContainers"] {
        for c in children(spec, key) {
            requests_from_limits(c);
        }
    }
    default_val(spec, "enableServiceLinks", json!(true));
    pod_spec(spec);
    // ServiceAccount admission; the deprecated `serviceAccount` mirrors the name.
    default_str(spec, "serviceAccountName", "default");
    if let Some(name) = spec.get("serviceAccountName").cloned() {
        default_str_value(spec, "serviceAccount", name);
    }
    // Priority admission (no PriorityClass named, no global default class).
    if spec
        .get("priorityClassName")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        default_val(spec, "priority", json!(0));
    }
    default_str(spec, "preemptionPolicy", "PreemptLowerPriority");
    default_tolerations(spec);
    let qos = qos_class(spec);
    if let Some(status) = ensure(o, "status") {
        default_str(status, "phase", "Pending");
        default_str(status, "qosClass", qos);
    }
}

fn default_str_value(o: &mut Object, key: &str, v: Value) {
    if unset(o, key) || o.get(key).and_then(Value::as_str) == Some("") {
        o.insert(key.to_string(), v);
    }
}

/// Same rule as upstream's SetDefaults_Pod: for each resource with a limit and no request, the
/// request equals the limit.
fn requests_from_limits(c: &mut Object) {
    let Some(res) = child(c, "resources") else {
        return;
    };
    let Some(limits) = res.get("limits").and_then(Value::as_object).cloned() else {
        return;
    };
    if limits.is_empty() {
        return;
    }
    let Some(requests) = ensure(res, "requests") else {
        return;
    };
    for (k, v) in limits {
        requests.entry(k).or_insert(v);
    }
}

/// The DefaultTolerationSeconds admission plugin: tolerate not-ready and unreachable nodes for
/// 300 s unless the pod already tolerates that taint (same key, or no key with `Exists`).
fn default_tolerations(spec: &mut Object) {
    const KEYS: [&str; 2] = [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ];
    let mut missing = Vec::new();
    {
        let existing = match spec.get("tolerations") {
            None | Some(Value::Null) => &[][..],
            Some(Value::Array(a)) => a.as_slice(),
            Some(_) => return,
        };
        for key in KEYS {
            let tolerated = existing.iter().any(|t| {
                let effect = t.get("effect").and_then(Value::as_str).unwrap_or("");
                let effect_ok = effect.is_empty() || effect == "NoExecute";
                let t_key = t.get("key").and_then(Value::as_str).unwrap_or("");
                let op = t.get("operator").and_then(Value::as_str).unwrap_or("");
                effect_ok && (t_key == key || (t_key.is_empty() && op == "Exists"))
            });
            if !tolerated {
                missing.push(key);
            }
        }
    }
    if missing.is_empty() {
        return;
    }
    default_val(spec, "tolerations", json!([]));
    if let Some(list) = spec.get_mut("tolerations").and_then(Value::as_array_mut) {
        for key in missing {
            list.push(json!({
                "key": key,
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": 300,
            }));
        }
    }
}

/// Defaults of a pod template (`template` of workload kinds and PodTemplates).
fn pod_template(t: &mut Object) {
    if let Some(spec) = child(t, "spec") {
        pod_spec(spec);
        // v1 conversion mirrors the service account into the deprecated field.
        if let Some(name) = spec
            .get("serviceAccountName")
            .filter(|v| v.as_str().is_some_and(|s| !s.is_empty()))
            .cloned()
        {
            default_str_value(spec, "serviceAccount", name);
        }
    }
}

/// `spec.template` of a workload spec.
fn spec_template(spec: &mut Object) {
    if let Some(t) = child(spec, "template") {
        pod_template(t);
    }
}

/// SetDefaults_PodSpec and the defaults of everything inside a pod spec.
fn pod_spec(spec: &mut Object) {
    default_str(spec, "dnsPolicy", "ClusterFirst");
    default_str(spec, "restartPolicy", "Always");
    default_val(spec, "terminationGracePeriodSeconds", json!(30));
    default_val(spec, "securityContext", json!({}));
    default_str(spec, "schedulerName", "default-scheduler");
    // The deprecated `serviceAccount` fills the name when only it is given (v1 conversion).
    if spec
        .get("serviceAccountName")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
        && let Some(old) = spec
            .get("serviceAccount")
            .filter(|v| v.as_str().is_some_and(|s| !s.is_empty()))
            .cloned()
    {
        spec.insert("serviceAccountName".into(), old);
    }
    let host_network = spec.get("hostNetwork").and_then(Value::as_bool) == Some(true);
    for key in ["containers", "initContainers", "ephemeralContainers"] {
        for c in children(spec, key) {
            container(c, host_network);
        }
    }
    for v in children(spec, "volumes") {
        volume(v);
    }
}

fn container(c: &mut Object, host_network: bool) {
    default_str(c, "terminationMessagePath", "/dev/termination-log");
    default_str(c, "terminationMessagePolicy", "File");
    if let Some(image) = c.get("image").and_then(Value::as_str) {
        let policy = image_pull_policy(image);
        default_str(c, "imagePullPolicy", policy);
    } else if unset(c, "image") {
        default_str(c, "imagePullPolicy", "IfNotPresent");
    }
    default_val(c, "resources", json!({}));
    for p in children(c, "ports") {
        default_str(p, "protocol", "TCP");
        // SetDefaults_PodSpec: with the host's network, the host port is the container port.
        if host_network
            && p.get("hostPort").is_none_or(|v| v.is_null() || v == 0)
            && let Some(port) = p.get("containerPort").cloned()
        {
            p.insert("hostPort".into(), port);
        }
    }
    for key in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(probe) = child(c, key) {
            default_val(probe, "timeoutSeconds", json!(1));
            default_val(probe, "periodSeconds", json!(10));
            default_val(probe, "successThreshold", json!(1));
            default_val(probe, "failureThreshold", json!(3));
            handler(probe);
        }
    }
    if let Some(lifecycle) = child(c, "lifecycle") {
        for key in ["postStart", "preStop"] {
            if let Some(h) = child(lifecycle, key) {
                handler(h);
            }
        }
    }
    for e in children(c, "env") {
        if let Some(from) = child(e, "valueFrom") {
            env_source(from);
        }
    }
}

/// SetDefaults_HTTPGetAction for probes and lifecycle handlers.
fn handler(h: &mut Object) {
    if let Some(get) = child(h, "httpGet") {
        default_str(get, "path", "/");
        default_str(get, "scheme", "HTTP");
    }
}

/// Field and resource selectors inside `valueFrom` and downward API items.
fn env_source(from: &mut Object) {
    if let Some(f) = child(from, "fieldRef") {
        default_str(f, "apiVersion", "v1");
    }
    if let Some(r) = child(from, "resourceFieldRef") {
        // The divisor is a non-pointer Quantity upstream, so it always serializes.
        default_val(r, "divisor", json!("0"));
    }
}

/// Upstream's rule: `Always` for `:latest` or an untagged image without a digest.
fn image_pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    // The tag follows the last ':' after the last '/' (a ':' before it is a registry port).
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.rsplit_once(':') {
        Some((_, tag)) if tag != "latest" => "IfNotPresent",
        _ => "Always",
    }
}

/// SetDefaults_Volume and the defaults of the volume sources.
fn volume(v: &mut Object) {
    const MODE: i64 = 0o644;
    if super::validation::VOLUME_SOURCES
        .iter()
        .all(|k| unset(v, k))
    {
        v.insert("emptyDir".into(), json!({}));
    }
    for key in ["secret", "configMap", "downwardAPI", "projected"] {
        if let Some(src) = child(v, key) {
            default_val(src, "defaultMode", json!(MODE));
        }
    }
    if let Some(d) = child(v, "downwardAPI") {
        downward_items(d);
    }
    if let Some(p) = child(v, "projected") {
        for s in children(p, "sources") {
            if let Some(d) = child(s, "downwardAPI") {
                downward_items(d);
            }
            if let Some(t) = child(s, "serviceAccountToken") {
                default_val(t, "expirationSeconds", json!(3600));
            }
        }
    }
    if let Some(h) = child(v, "hostPath") {
        default_val(h, "type", json!(""));
    }
    if let Some(spec) = child(v, "ephemeral")
        .and_then(|e| child(e, "volumeClaimTemplate"))
        .and_then(|t| child(t, "spec"))
    {
        default_str(spec, "volumeMode", "Filesystem");
    }
}

fn downward_items(d: &mut Object) {
    for item in children(d, "items") {
        env_source(item);
    }
}

// ---------------------------------------------------------------------------------------------
// Pod QoS class and quantities.

/// The pod's QoS class, same rules as upstream's `GetPodQOS`: sums of the cpu and memory
/// requests and limits over all containers.
fn qos_class(spec: &Object) -> &'static str {
    use std::collections::BTreeMap;
    let mut requests: BTreeMap<&str, i128> = BTreeMap::new();
    let mut limits: BTreeMap<&str, i128> = BTreeMap::new();
    let mut guaranteed = true;
    let containers = ["containers", "initContainers"]
        .into_iter()
        .filter_map(|k| spec.get(k).and_then(Value::as_array))
        .flatten();
    for c in containers {
        let res = c.get("resources");
        let mut found = Vec::new();
        for (which, sums) in [("requests", &mut requests), ("limits", &mut limits)] {
            let Some(list) = res.and_then(|r| r.get(which)).and_then(Value::as_object) else {
                continue;
            };
            for name in ["cpu", "memory"] {
                let q = list.get(name).and_then(quantity_value);
                if let Some(q) = q.filter(|q| *q > 0) {
                    let sum = sums.entry(name).or_insert(0);
                    *sum = sum.saturating_add(q);
                    if which == "limits" {
                        found.push(name);
                    }
                }
            }
        }
        if !(found.contains(&"cpu") && found.contains(&"memory")) {
            guaranteed = false;
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return "BestEffort";
    }
    if guaranteed
        && requests.iter().all(|(k, r)| limits.get(k) == Some(r))
        && requests.len() == limits.len()
    {
        return "Guaranteed";
    }
    "Burstable"
}

/// A quantity given as a JSON string or number.
pub(crate) fn quantity_value(v: &Value) -> Option<i128> {
    match v {
        Value::String(s) => parse_quantity(s),
        Value::Number(n) => parse_quantity(&n.to_string()),
        _ => None,
    }
}

/// Parses a Kubernetes resource quantity (`100m`, `0.5`, `1Gi`, `129e6`) into billionths of a
/// unit, rounding a finer fraction up as upstream does. `None` when it is not a quantity.
/// Huge values saturate rather than overflow.
pub(crate) fn parse_quantity(s: &str) -> Option<i128> {
    let (sign, rest) = match s.as_bytes().first() {
        Some(b'-') => (-1, &s[1..]),
        Some(b'+') => (1, &s[1..]),
        _ => (1, s),
    };
    let num_end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(num_end);
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    if frac_part.contains('.') {
        return None;
    }
    // (base, exponent): the multiplier is base^exponent.
    let (base, exp): (i128, i32) = match suffix {
        "" => (10, 0),
        "n" => (10, -9),
        "u" => (10, -6),
        "m" => (10, -3),
        "k" => (10, 3),
        "M" => (10, 6),
        "G" => (10, 9),
        "T" => (10, 12),
        "P" => (10, 15),
        "E" => (10, 18),
        "Ki" => (2, 10),
        "Mi" => (2, 20),
        "Gi" => (2, 30),
        "Ti" => (2, 40),
        "Pi" => (2, 50),
        "Ei" => (2, 60),
        _ => {
            let e = suffix.strip_prefix(['e', 'E'])?;
            let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            (10, e.parse::<i32>().ok()?)
        }
    };
    // Mantissa as an integer with `frac_part.len()` decimals; then scale to nano units.
    let digits: String = format!("{int_part}{frac_part}");
    let digits = digits.trim_start_matches('0');
    if digits.len() > 36 {
        return Some(sign * i128::MAX);
    }
    let mantissa: i128 = if digits.is_empty() {
        0
    } else {
        digits.parse().ok()?
    };
    // value = mantissa * 10^(-frac_len) * base^exp * 10^9 (nano units).
    let mut dec_exp: i64 = 9 - frac_part.len() as i64;
    let mut value = mantissa;
    if base == 2 {
        value = value.saturating_mul(1i128 << exp);
    } else {
        dec_exp += i64::from(exp);
    }
    if dec_exp >= 0 {
        for _ in 0..dec_exp.min(40) {
            value = value.saturating_mul(10);
        }
    } else {
        let mut rem = false;
        for _ in 0..(-dec_exp).min(40) {
            rem |= value % 10 != 0;
            value /= 10;
        }
        if -dec_exp > 40 {
            rem |= value != 0;
            value = 0;
        }
        if rem {
            value += 1;
        }
    }
    Some(sign * value)
}

// ---------------------------------------------------------------------------------------------
// Workloads.

fn replication_controller(o: &mut Object) {
    let template_labels = o
        .get("spec")
        .and_then(|s| s.get("template"))
        .and_then(|t| t.get("metadata"))
        .and_then(|m| m.get("labels"))
        .filter(|l| l.as_object().is_some_and(|l| !l.is_empty()))
        .cloned();
    if let Some(labels) = template_labels {
        if let Some(spec) = child(o, "spec")
            && empty_map(spec, "selector")
        {
            spec.insert("selector".into(), labels.clone());
        }
        if let Some(meta) = child(o, "metadata")
            && empty_map(meta, "labels")
        {
            meta.insert("labels".into(), labels);
        }
    }
    if let Some(spec) = child(o, "spec") {
        default_val(spec, "replicas", json!(1));
        spec_template(spec);
    }
}

fn deployment(o: &mut Object) {
    let Some(spec) = child(o, "spec") else {
        return;
    };
    default_val(spec, "replicas", json!(1));
    if let Some(strategy) = ensure(spec, "strategy") {
        default_str(strategy, "type", "RollingUpdate");
        if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate")
            && let Some(ru) = ensure(strategy, "rollingUpdate")
        {
            default_val(ru, "maxUnavailable", json!("25%"));
            default_val(ru, "maxSurge", json!("25%"));
        }
    }
    default_val(spec, "revisionHistoryLimit", json!(10));
    default_val(spec, "progressDeadlineSeconds", json!(600));
    spec_template(spec);
}

fn stateful_set(o: &mut Object) {
    let Some(spec) = child(o, "spec") else {
        return;
    };
    default_str(spec, "podManagementPolicy", "OrderedReady");
    if let Some(strategy) = ensure(spec, "updateStrategy") {
        default_str(strategy, "type", "RollingUpdate");
        if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate")
            && let Some(ru) = ensure(strategy, "rollingUpdate")
        {
            default_val(ru, "partition", json!(0));
        }
    }
    if let Some(policy) = ensure(spec, "persistentVolumeClaimRetentionPolicy") {
        default_str(policy, "whenDeleted", "Retain");
        default_str(policy, "whenScaled", "Retain");
    }
    default_val(spec, "replicas", json!(1));
    default_val(spec, "revisionHistoryLimit", json!(10));
    for claim in children(spec, "volumeClaimTemplates") {
        persistent_volume_claim(claim);
    }
    spec_template(spec);
}

fn daemon_set(o: &mut Object) {
    let Some(spec) = child(o, "spec") else {
        return;
    };
    if let Some(strategy) = ensure(spec, "updateStrategy") {
        default_str(strategy, "type", "RollingUpdate");
        if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate")
            && let Some(ru) = ensure(strategy, "rollingUpdate")
        {
            default_val(ru, "maxUnavailable", json!(1));
            default_val(ru, "maxSurge", json!(0));
        }
    }
    default_val(spec, "revisionHistoryLimit", json!(10));
    spec_template(spec);
}

fn job(o: &mut Object) {
    let uid = o
        .get("metadata")
        .and_then(|m| m.get("uid"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let name = o
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let Some(spec) = child(o, "spec") else {
        return;
    };
    if unset(spec, "completions") && unset(spec, "parallelism") {
        spec.insert("completions".into(), json!(1));
        spec.insert("parallelism".into(), json!(1));
    }
    default_val(spec, "parallelism", json!(1));
    if unset(spec, "backoffLimit") {
        let limit = if unset(spec, "backoffLimitPerIndex") {
            6
        } else {
            i64::from(i32::MAX)
        };
        spec.insert("backoffLimit".into(), json!(limit));
    }
    default_val(spec, "completionMode", json!("NonIndexed"));
    default_val(spec, "suspend", json!(false));
    let replacement = if unset(spec, "podFailurePolicy") {
        "TerminatingOrFailed"
    } else {
        "Failed"
    };
    default_val(spec, "podReplacementPolicy", json!(replacement));
    if let Some(policy) = child(spec, "podFailurePolicy") {
        for rule in children(policy, "rules") {
            for cond in children(rule, "onPodConditions") {
                default_str(cond, "status", "True");
            }
        }
    }
    // The job strategy's generated selector (unless the user asked for a manual one).
    let manual = spec.get("manualSelector").and_then(Value::as_bool) == Some(true);
    if !manual && let Some(uid) = uid {
        let labels = [
            ("batch.kubernetes.io/controller-uid", &uid),
            ("batch.kubernetes.io/job-name", &name),
            ("controller-uid", &uid),
            ("job-name", &name),
        ];
        if let Some(tl) = ensure(spec, "template")
            .and_then(|t| ensure(t, "metadata"))
            .and_then(|m| ensure(m, "labels"))
        {
            for (k, v) in labels {
                tl.entry(k).or_insert_with(|| json!(v));
            }
        }
        if let Some(ml) = ensure(spec, "selector").and_then(|s| ensure(s, "matchLabels")) {
            ml.entry("batch.kubernetes.io/controller-uid")
                .or_insert_with(|| json!(uid));
        }
    }
    spec_template(spec);
    // SetDefaults_Job: the job's labels default to its template's.
    let template_labels = spec
        .get("template")
        .and_then(|t| t.get("metadata"))
        .and_then(|m| m.get("labels"))
        .filter(|l| l.as_object().is_some_and(|l| !l.is_empty()))
        .cloned();
    if let Some(labels) = template_labels
        && let Some(meta) = child(o, "metadata")
        && empty_map(meta, "labels")
    {
        meta.insert("labels".into(), labels);
    }
}

fn cron_job(o: &mut Object) {
    let Some(spec) = child(o, "spec") else {
        return;
    };
    default_str(spec, "concurrencyPolicy", "Allow");
    default_val(spec, "suspend", json!(false));
    default_val(spec, "successfulJobsHistoryLimit", json!(3));
    default_val(spec, "failedJobsHistoryLimit", json!(1));
    if let Some(job_spec) = child(spec, "jobTemplate").and_then(|t| child(t, "spec")) {
        spec_template(job_spec);
    }
}

// ---------------------------------------------------------------------------------------------
// Core kinds.

fn service(o: &mut Object) {
    let Some(spec) = child(o, "spec") else {
        return;
    };
    default_str(spec, "sessionAffinity", "None");
    if spec.get("sessionAffinity").and_then(Value::as_str) == Some("ClientIP")
        && let Some(client_ip) =
            ensure(spec, "sessionAffinityConfig").and_then(|c| ensure(c, "clientIP"))
    {
        default_val(client_ip, "timeoutSeconds", json!(10800));
    }
    default_str(spec, "type", "ClusterIP");
    for p in children(spec, "ports") {
        default_str(p, "protocol", "TCP");
        let target_unset = match p.get("targetPort") {
            None | Some(Value::Null) => true,
            Some(Value::String(s)) => s.is_empty(),
            Some(Value::Number(n)) => n.as_i64() == Some(0),
            Some(_) => false,
        };
        if target_unset && let Some(port) = p.get("port").filter(|v| v.is_number()).cloned() {
            p.insert("targetPort".into(), port);
        }
    }
    let ty = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if ty == "NodePort" || ty == "LoadBalancer" {
        default_str(spec, "externalTrafficPolicy", "Cluster");
    }
    if ty != "ExternalName" {
        default_str(spec, "internalTrafficPolicy", "Cluster");
        default_str(spec, "ipFamilyPolicy", "SingleStack");
    }
    if ty == "LoadBalancer" {
        default_val(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
}

fn namespace(o: &mut Object) {
    let name = o
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .map(str::to_string);
    if let Some(name) = name
        && let Some(labels) = child(o, "metadata").and_then(|m| ensure(m, "labels"))
    {
        labels.insert("kubernetes.io/metadata.name".into(), json!(name));
    }
    if let Some(spec) = ensure(o, "spec") {
        default_val(spec, "finalizers", json!(["kubernetes"]));
    }
    if let Some(status) = ensure(o, "status") {
        default_str(status, "phase", "Active");
    }
}

/// `stringData` is write-only: v1 conversion merges it into `data` (base64, its keys winning)
/// and drops it. Then `type` defaults to Opaque.
fn secret(o: &mut Object) {
    use base64::Engine as _;
    if let Some(Value::Object(string_data)) = o.get("stringData").cloned()
        && string_data.values().all(Value::is_string)
        && let Some(data) = ensure(o, "data")
    {
        for (k, v) in string_data {
            let text = v.as_str().unwrap_or_default();
            let encoded = base64::engine::general_purpose::STANDARD.encode(text);
            data.insert(k, json!(encoded));
        }
        o.remove("stringData");
    }
    default_str(o, "type", "Opaque");
}

fn persistent_volume_claim(o: &mut Object) {
    if let Some(spec) = child(o, "spec") {
        default_str(spec, "volumeMode", "Filesystem");
    }
    if let Some(status) = ensure(o, "status") {
        default_str(status, "phase", "Pending");
    }
}

fn persistent_volume(o: &mut Object) {
    if let Some(spec) = child(o, "spec") {
        default_str(spec, "persistentVolumeReclaimPolicy", "Retain");
        default_str(spec, "volumeMode", "Filesystem");
        if let Some(h) = child(spec, "hostPath") {
            default_val(h, "type", json!(""));
        }
    }
    if let Some(status) = ensure(o, "status") {
        default_str(status, "phase", "Pending");
    }
}

/// SetDefaults_NodeStatus: allocatable defaults to capacity.
fn node(o: &mut Object) {
    if let Some(status) = child(o, "status")
        && unset(status, "allocatable")
        && let Some(capacity) = status.get("capacity").filter(|c| c.is_object()).cloned()
    {
        status.insert("allocatable".into(), capacity);
    }
}

// ---------------------------------------------------------------------------------------------
// Other groups.

fn network_policy(o: &mut Object) {
    let Some(spec) = child(o, "spec") else {
        return;
    };
    for key in ["ingress", "egress"] {
        for rule in children(spec, key) {
            for p in children(rule, "ports") {
                default_str(p, "protocol", "TCP");
            }
        }
    }
    let types_empty = match spec.get("policyTypes") {
        None | Some(Value::Null) => true,
        Some(Value::Array(a)) => a.is_empty(),
        Some(_) => false,
    };
    if types_empty {
        let egress = spec
            .get("egress")
            .and_then(Value::as_array)
            .is_some_and(|e| !e.is_empty());
        let types = if egress {
            json!(["Ingress", "Egress"])
        } else {
            json!(["Ingress"])
        };
        spec.insert("policyTypes".into(), types);
    }
}

/// autoscaling v1 and v2: `minReplicas` 1; v2's `behavior`, when given, gets upstream's default
/// scaling rules for whatever it leaves out.
fn horizontal_pod_autoscaler(o: &mut Object) {
    let Some(spec) = child(o, "spec") else {
        return;
    };
    default_val(spec, "minReplicas", json!(1));
    let Some(behavior) = child(spec, "behavior") else {
        return;
    };
    if let Some(up) = ensure(behavior, "scaleUp") {
        default_val(up, "stabilizationWindowSeconds", json!(0));
        default_str(up, "selectPolicy", "Max");
        default_val(
            up,
            "policies",
            json!([
                {"type": "Pods", "value": 4, "periodSeconds": 15},
                {"type": "Percent", "value": 100, "periodSeconds": 15},
            ]),
        );
    }
    if let Some(down) = ensure(behavior, "scaleDown") {
        default_val(down, "stabilizationWindowSeconds", json!(300));
        default_str(down, "selectPolicy", "Max");
        default_val(
            down,
            "policies",
            json!([{"type": "Percent", "value": 100, "periodSeconds": 15}]),
        );
    }
}

fn custom_resource_definition(o: &mut Object) {
    let Some(spec) = child(o, "spec") else {
        return;
    };
    if let Some(conversion) = ensure(spec, "conversion") {
        default_str(conversion, "strategy", "None");
        if let Some(service) = child(conversion, "webhook")
            .and_then(|w| child(w, "clientConfig"))
            .and_then(|c| child(c, "service"))
        {
            default_val(service, "port", json!(443));
        }
    }
    if let Some(names) = child(spec, "names")
        && let Some(kind) = names
            .get("kind")
            .and_then(Value::as_str)
            .filter(|k| !k.is_empty())
            .map(str::to_string)
    {
        default_str(names, "singular", &kind.to_lowercase());
        default_str(names, "listKind", &format!("{kind}List"));
    }
}

/// admissionregistration/v1 webhook defaults.
fn webhook(hook: &mut Object, mutating: bool) {
    default_str(hook, "failurePolicy", "Fail");
    default_str(hook, "matchPolicy", "Equivalent");
    default_val(hook, "namespaceSelector", json!({}));
    default_val(hook, "objectSelector", json!({}));
    default_val(hook, "timeoutSeconds", json!(10));
    if mutating {
        default_str(hook, "reinvocationPolicy", "Never");
    }
    for rule in children(hook, "rules") {
        default_str(rule, "scope", "*");
    }
    if let Some(service) = child(hook, "clientConfig").and_then(|c| child(c, "service")) {
        default_val(service, "port", json!(443));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaulted(group: &str, resource: &str, mut obj: Value) -> Value {
        apply(group, resource, &mut obj);
        obj
    }

    #[test]
    fn quantities_parse_to_nano_units() {
        let cases = [
            ("100m", Some(100_000_000)),
            ("0.5", Some(500_000_000)),
            ("1", Some(1_000_000_000)),
            ("1Gi", Some((1i128 << 30) * 1_000_000_000)),
            ("128974848", Some(128_974_848 * 1_000_000_000)),
            ("129e6", Some(129_000_000 * 1_000_000_000)),
            ("123Mi", Some(123 * (1i128 << 20) * 1_000_000_000)),
            ("1.5k", Some(1_500_000_000_000)),
            ("1n", Some(1)),
            ("0.1n", Some(1)),
            ("-1", Some(-1_000_000_000)),
            (".5", Some(500_000_000)),
            ("1E3", Some(1_000_000_000_000)),
            ("", None),
            ("abc", None),
            ("1Gb", None),
            ("1.2.3", None),
            ("1e", None),
            ("1e-", None),
        ];
        for (s, want) in cases {
            assert_eq!(parse_quantity(s), want, "{s}");
        }
        assert_eq!(parse_quantity("1e999999"), Some(i128::MAX));
        assert_eq!(parse_quantity("1e-999999"), Some(1));
        assert_eq!(parse_quantity("1Ei").map(|v| v > 0), Some(true));
    }

    #[test]
    fn image_pull_policy_follows_the_tag() {
        let cases = [
            ("nginx", "Always"),
            ("nginx:latest", "Always"),
            ("nginx:1.25", "IfNotPresent"),
            ("localhost:5000/nginx", "Always"),
            ("localhost:5000/nginx:1", "IfNotPresent"),
            ("nginx@sha256:abcd", "IfNotPresent"),
        ];
        for (image, want) in cases {
            assert_eq!(image_pull_policy(image), want, "{image}");
        }
    }

    #[test]
    fn pod_gets_spec_container_and_admission_defaults() {
        let pod = defaulted(
            "",
            "pods",
            json!({
                "metadata": {"name": "web"},
                "spec": {
                    "containers": [{
                        "name": "c",
                        "image": "nginx",
                        "ports": [{"containerPort": 80}],
                        "livenessProbe": {"httpGet": {"port": 80}},
                        "env": [{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                    }],
                    "volumes": [
                        {"name": "cm", "configMap": {"name": "x"}},
                        {"name": "s", "secret": {"secretName": "x"}},
                        {"name": "e", "emptyDir": {}},
                        {"name": "bare"},
                    ],
                },
            }),
        );
        let want = json!({
            "metadata": {"name": "web"},
            "spec": {
                "containers": [{
                    "name": "c",
                    "image": "nginx",
                    "imagePullPolicy": "Always",
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File",
                    "resources": {},
                    "ports": [{"containerPort": 80, "protocol": "TCP"}],
                    "livenessProbe": {
                        "httpGet": {"port": 80, "path": "/", "scheme": "HTTP"},
                        "timeoutSeconds": 1, "periodSeconds": 10,
                        "successThreshold": 1, "failureThreshold": 3,
                    },
                    "env": [{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name", "apiVersion": "v1"}}}],
                }],
                "volumes": [
                    {"name": "cm", "configMap": {"name": "x", "defaultMode": 420}},
                    {"name": "s", "secret": {"secretName": "x", "defaultMode": 420}},
                    {"name": "e", "emptyDir": {}},
                    {"name": "bare", "emptyDir": {}},
                ],
                "restartPolicy": "Always",
                "dnsPolicy": "ClusterFirst",
                "terminationGracePeriodSeconds": 30,
                "schedulerName": "default-scheduler",
                "securityContext": {},
                "enableServiceLinks": true,
                "serviceAccountName": "default",
                "serviceAccount": "default",
                "priority": 0,
                "preemptionPolicy": "PreemptLowerPriority",
                "tolerations": [
                    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                ],
            },
            "status": {"phase": "Pending", "qosClass": "BestEffort"},
        });
        assert_eq!(pod, want);
    }

    #[test]
    fn pod_defaults_never_overwrite() {
        let given = json!({
            "spec": {
                "containers": [{"name": "c", "image": "nginx:1", "imagePullPolicy": "Never"}],
                "restartPolicy": "Never",
                "dnsPolicy": "Default",
                "terminationGracePeriodSeconds": 5,
                "serviceAccountName": "robot",
                "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 10}],
            },
        });
        let pod = defaulted("", "pods", given);
        let spec = &pod["spec"];
        assert_eq!(spec["containers"][0]["imagePullPolicy"], "Never");
        assert_eq!(spec["restartPolicy"], "Never");
        assert_eq!(spec["dnsPolicy"], "Default");
        assert_eq!(spec["terminationGracePeriodSeconds"], 5);
        assert_eq!(spec["serviceAccountName"], "robot");
        assert_eq!(spec["serviceAccount"], "robot");
        let tolerations = spec["tolerations"].as_array().map(Vec::len);
        assert_eq!(tolerations, Some(2));
        assert_eq!(spec["tolerations"][0]["tolerationSeconds"], 10);
        assert_eq!(
            spec["tolerations"][1]["key"],
            "node.kubernetes.io/unreachable"
        );
    }

    #[test]
    fn qos_class_follows_requests_and_limits() {
        let pod_with = |resources: Vec<Value>| {
            let containers: Vec<Value> = resources
                .into_iter()
                .enumerate()
                .map(|(i, r)| json!({"name": format!("c{i}"), "image": "x", "resources": r}))
                .collect();
            let pod = defaulted("", "pods", json!({"spec": {"containers": containers}}));
            pod["status"]["qosClass"].clone()
        };
        let cases = [
            (vec![json!({})], "BestEffort"),
            (
                vec![json!({"limits": {"cpu": "500m", "memory": "128974848"}})],
                "Guaranteed",
            ),
            (
                vec![
                    json!({"limits": {"cpu": "0.5", "memory": "129e6"}, "requests": {"cpu": "500m", "memory": "129M"}}),
                ],
                "Guaranteed",
            ),
            (
                vec![json!({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}})],
                "Burstable",
            ),
            (vec![json!({"requests": {"cpu": "100m"}})], "Burstable"),
            (
                vec![json!({"limits": {"cpu": "1", "memory": "1Gi"}}), json!({})],
                "Burstable",
            ),
            (
                vec![
                    json!({"limits": {"cpu": "1", "memory": "123Mi"}}),
                    json!({"limits": {"cpu": "2", "memory": "1Gi"}}),
                ],
                "Guaranteed",
            ),
            (
                vec![json!({"requests": {"ephemeral-storage": "1Gi"}})],
                "BestEffort",
            ),
        ];
        for (resources, want) in cases {
            assert_eq!(pod_with(resources.clone()), want, "{resources:?}");
        }
    }

    #[test]
    fn pod_requests_default_to_limits() {
        let pod = defaulted(
            "",
            "pods",
            json!({"spec": {"containers": [{"name": "c", "image": "x",
                "resources": {"limits": {"cpu": "1"}, "requests": {"memory": "1Gi"}}}]}}),
        );
        assert_eq!(
            pod["spec"]["containers"][0]["resources"]["requests"],
            json!({"cpu": "1", "memory": "1Gi"})
        );
    }

    fn template() -> Value {
        json!({
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "nginx:1"}]},
        })
    }

    fn template_spec_defaults(spec: &Value) {
        assert_eq!(spec["restartPolicy"], "Always");
        assert_eq!(spec["dnsPolicy"], "ClusterFirst");
        assert_eq!(spec["schedulerName"], "default-scheduler");
        assert_eq!(spec["terminationGracePeriodSeconds"], 30);
        assert_eq!(spec["securityContext"], json!({}));
        assert_eq!(spec["containers"][0]["imagePullPolicy"], "IfNotPresent");
        // Template-only: no admission defaults.
        assert!(spec.get("serviceAccountName").is_none());
        assert!(spec.get("tolerations").is_none());
        assert!(spec.get("priority").is_none());
    }

    #[test]
    fn deployment_defaults() {
        let d = defaulted(
            "apps",
            "deployments",
            json!({"spec": {"selector": {"matchLabels": {"app": "web"}}, "template": template()}}),
        );
        let spec = &d["spec"];
        assert_eq!(spec["replicas"], 1);
        assert_eq!(
            spec["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}})
        );
        assert_eq!(spec["revisionHistoryLimit"], 10);
        assert_eq!(spec["progressDeadlineSeconds"], 600);
        template_spec_defaults(&spec["template"]["spec"]);

        let partial = defaulted(
            "apps",
            "deployments",
            json!({"spec": {"strategy": {"rollingUpdate": {"maxSurge": 2}}}}),
        );
        assert_eq!(
            partial["spec"]["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 2, "maxUnavailable": "25%"}})
        );
        let recreate = defaulted(
            "apps",
            "deployments",
            json!({"spec": {"strategy": {"type": "Recreate"}}}),
        );
        assert_eq!(recreate["spec"]["strategy"], json!({"type": "Recreate"}));
    }

    #[test]
    fn replica_set_and_replication_controller_defaults() {
        let rs = defaulted(
            "apps",
            "replicasets",
            json!({"spec": {"template": template()}}),
        );
        assert_eq!(rs["spec"]["replicas"], 1);
        template_spec_defaults(&rs["spec"]["template"]["spec"]);

        let rc = defaulted(
            "",
            "replicationcontrollers",
            json!({"metadata": {"name": "rc"}, "spec": {"template": template()}}),
        );
        assert_eq!(rc["spec"]["replicas"], 1);
        assert_eq!(rc["spec"]["selector"], json!({"app": "web"}));
        assert_eq!(rc["metadata"]["labels"], json!({"app": "web"}));
        template_spec_defaults(&rc["spec"]["template"]["spec"]);
    }

    #[test]
    fn stateful_set_defaults() {
        let s = defaulted(
            "apps",
            "statefulsets",
            json!({"spec": {"template": template(), "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"]}}]}}),
        );
        let spec = &s["spec"];
        assert_eq!(spec["replicas"], 1);
        assert_eq!(spec["podManagementPolicy"], "OrderedReady");
        assert_eq!(
            spec["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
        );
        assert_eq!(spec["revisionHistoryLimit"], 10);
        assert_eq!(
            spec["persistentVolumeClaimRetentionPolicy"],
            json!({"whenDeleted": "Retain", "whenScaled": "Retain"})
        );
        assert_eq!(
            spec["volumeClaimTemplates"][0]["spec"]["volumeMode"],
            "Filesystem"
        );
        template_spec_defaults(&spec["template"]["spec"]);
    }

    #[test]
    fn daemon_set_defaults() {
        let d = defaulted(
            "apps",
            "daemonsets",
            json!({"spec": {"template": template()}}),
        );
        assert_eq!(
            d["spec"]["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
        );
        assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
        template_spec_defaults(&d["spec"]["template"]["spec"]);
    }

    #[test]
    fn job_defaults_and_generated_selector() {
        let mut t = template();
        t["spec"]["restartPolicy"] = json!("Never");
        let j = defaulted(
            "batch",
            "jobs",
            json!({"metadata": {"name": "pi", "uid": "u-1"}, "spec": {"template": t}}),
        );
        let spec = &j["spec"];
        assert_eq!(spec["parallelism"], 1);
        assert_eq!(spec["completions"], 1);
        assert_eq!(spec["backoffLimit"], 6);
        assert_eq!(spec["completionMode"], "NonIndexed");
        assert_eq!(spec["suspend"], false);
        assert_eq!(spec["podReplacementPolicy"], "TerminatingOrFailed");
        assert_eq!(
            spec["selector"],
            json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "u-1"}})
        );
        let labels = json!({
            "app": "web",
            "batch.kubernetes.io/controller-uid": "u-1",
            "batch.kubernetes.io/job-name": "pi",
            "controller-uid": "u-1",
            "job-name": "pi",
        });
        assert_eq!(spec["template"]["metadata"]["labels"], labels);
        assert_eq!(j["metadata"]["labels"], labels);
        assert_eq!(spec["template"]["spec"]["restartPolicy"], "Never");

        let parallel = defaulted("batch", "jobs", json!({"spec": {"parallelism": 3}}));
        assert_eq!(parallel["spec"]["parallelism"], 3);
        assert!(parallel["spec"].get("completions").is_none());
        let completions = defaulted("batch", "jobs", json!({"spec": {"completions": 3}}));
        assert_eq!(completions["spec"]["parallelism"], 1);

        let manual = defaulted(
            "batch",
            "jobs",
            json!({"metadata": {"uid": "u"}, "spec": {"manualSelector": true, "template": template()}}),
        );
        assert!(manual["spec"].get("selector").is_none());
        assert_eq!(
            manual["spec"]["template"]["metadata"]["labels"],
            json!({"app": "web"})
        );
    }

    #[test]
    fn cron_job_defaults() {
        let c = defaulted(
            "batch",
            "cronjobs",
            json!({"spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": template()}}}}),
        );
        let spec = &c["spec"];
        assert_eq!(spec["concurrencyPolicy"], "Allow");
        assert_eq!(spec["suspend"], false);
        assert_eq!(spec["successfulJobsHistoryLimit"], 3);
        assert_eq!(spec["failedJobsHistoryLimit"], 1);
        template_spec_defaults(&spec["jobTemplate"]["spec"]["template"]["spec"]);
    }

    #[test]
    fn pod_template_defaults() {
        let t = defaulted("", "podtemplates", json!({"template": template()}));
        template_spec_defaults(&t["template"]["spec"]);
    }

    #[test]
    fn service_defaults() {
        let s = defaulted(
            "",
            "services",
            json!({"spec": {"selector": {"app": "web"}, "ports": [{"port": 80}, {"port": 443, "targetPort": "https", "protocol": "UDP"}]}}),
        );
        assert_eq!(
            s["spec"],
            json!({
                "selector": {"app": "web"},
                "ports": [
                    {"port": 80, "protocol": "TCP", "targetPort": 80},
                    {"port": 443, "targetPort": "https", "protocol": "UDP"},
                ],
                "type": "ClusterIP",
                "sessionAffinity": "None",
                "internalTrafficPolicy": "Cluster",
                "ipFamilyPolicy": "SingleStack",
            })
        );
        let lb = defaulted(
            "",
            "services",
            json!({"spec": {"type": "LoadBalancer", "sessionAffinity": "ClientIP", "ports": [{"port": 80}]}}),
        );
        assert_eq!(lb["spec"]["externalTrafficPolicy"], "Cluster");
        assert_eq!(lb["spec"]["allocateLoadBalancerNodePorts"], true);
        assert_eq!(
            lb["spec"]["sessionAffinityConfig"],
            json!({"clientIP": {"timeoutSeconds": 10800}})
        );
        let ext = defaulted(
            "",
            "services",
            json!({"spec": {"type": "ExternalName", "externalName": "example.com"}}),
        );
        assert!(ext["spec"].get("internalTrafficPolicy").is_none());
        assert!(ext["spec"].get("ipFamilyPolicy").is_none());
        assert!(ext["spec"].get("clusterIP").is_none());
    }

    #[test]
    fn core_kind_defaults() {
        let ns = defaulted("", "namespaces", json!({"metadata": {"name": "dev"}}));
        assert_eq!(
            ns,
            json!({
                "metadata": {"name": "dev", "labels": {"kubernetes.io/metadata.name": "dev"}},
                "spec": {"finalizers": ["kubernetes"]},
                "status": {"phase": "Active"},
            })
        );
        let ns = defaulted(
            "",
            "namespaces",
            json!({"metadata": {"name": "dev", "labels": {"kubernetes.io/metadata.name": "x"}}}),
        );
        assert_eq!(
            ns["metadata"]["labels"]["kubernetes.io/metadata.name"],
            "dev"
        );

        let secret = defaulted("", "secrets", json!({"data": {}}));
        assert_eq!(secret["type"], "Opaque");
        let merged = defaulted(
            "",
            "secrets",
            json!({"data": {"a": "eA==", "b": "eQ=="}, "stringData": {"b": "hi"}}),
        );
        assert_eq!(
            merged,
            json!({"data": {"a": "eA==", "b": "aGk="}, "type": "Opaque"})
        );
        let tls = defaulted("", "secrets", json!({"type": "kubernetes.io/tls"}));
        assert_eq!(tls["type"], "kubernetes.io/tls");

        let pvc = defaulted(
            "",
            "persistentvolumeclaims",
            json!({"spec": {"accessModes": ["ReadWriteOnce"]}}),
        );
        assert_eq!(pvc["spec"]["volumeMode"], "Filesystem");
        assert_eq!(pvc["status"]["phase"], "Pending");

        let pv = defaulted(
            "",
            "persistentvolumes",
            json!({"spec": {"hostPath": {"path": "/x"}}}),
        );
        assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Retain");
        assert_eq!(pv["spec"]["volumeMode"], "Filesystem");
        assert_eq!(pv["spec"]["hostPath"]["type"], "");
        assert_eq!(pv["status"]["phase"], "Pending");

        let ep = defaulted(
            "",
            "endpoints",
            json!({"subsets": [{"ports": [{"port": 80}]}]}),
        );
        assert_eq!(ep["subsets"][0]["ports"][0]["protocol"], "TCP");
        let cm = defaulted("", "configmaps", json!({"data": {"a": "b"}}));
        assert_eq!(cm, json!({"data": {"a": "b"}}));
    }

    #[test]
    fn other_group_defaults() {
        let slice = defaulted(
            "discovery.k8s.io",
            "endpointslices",
            json!({"ports": [{"port": 80}]}),
        );
        assert_eq!(
            slice["ports"][0],
            json!({"port": 80, "protocol": "TCP", "name": ""})
        );

        let np = defaulted(
            "networking.k8s.io",
            "networkpolicies",
            json!({"spec": {"podSelector": {}, "ingress": [{"ports": [{"port": 80}]}]}}),
        );
        assert_eq!(np["spec"]["policyTypes"], json!(["Ingress"]));
        assert_eq!(np["spec"]["ingress"][0]["ports"][0]["protocol"], "TCP");
        let np = defaulted(
            "networking.k8s.io",
            "networkpolicies",
            json!({"spec": {"podSelector": {}, "egress": [{}]}}),
        );
        assert_eq!(np["spec"]["policyTypes"], json!(["Ingress", "Egress"]));

        let hpa = defaulted(
            "autoscaling",
            "horizontalpodautoscalers",
            json!({"spec": {"maxReplicas": 3}}),
        );
        assert_eq!(hpa["spec"]["minReplicas"], 1);

        let sc = defaulted(
            "storage.k8s.io",
            "storageclasses",
            json!({"provisioner": "x"}),
        );
        assert_eq!(sc["reclaimPolicy"], "Delete");
        assert_eq!(sc["volumeBindingMode"], "Immediate");

        let pc = defaulted("scheduling.k8s.io", "priorityclasses", json!({"value": 5}));
        assert_eq!(pc["preemptionPolicy"], "PreemptLowerPriority");

        let crd = defaulted(
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            json!({"spec": {"names": {"kind": "Widget", "plural": "widgets"}}}),
        );
        assert_eq!(crd["spec"]["conversion"], json!({"strategy": "None"}));
        assert_eq!(crd["spec"]["names"]["singular"], "widget");
        assert_eq!(crd["spec"]["names"]["listKind"], "WidgetList");
    }

    #[test]
    fn wrong_types_are_left_alone() {
        let cases = [
            (
                "",
                "pods",
                json!({"spec": {"containers": "x", "restartPolicy": 3, "tolerations": 1}}),
            ),
            ("", "pods", json!({"spec": 7})),
            ("", "pods", json!([1, 2])),
            ("apps", "deployments", json!({"spec": {"strategy": "x"}})),
            (
                "",
                "services",
                json!({"spec": {"ports": [1, {"port": "x"}]}}),
            ),
            (
                "batch",
                "jobs",
                json!({"metadata": {"uid": 5}, "spec": {"template": 1}}),
            ),
        ];
        for (group, resource, obj) in cases {
            let out = defaulted(group, resource, obj);
            assert!(!out.is_null());
        }
        let d = defaulted("apps", "deployments", json!({"spec": {"strategy": "x"}}));
        assert_eq!(d["spec"]["strategy"], "x");
    }
}
