//! Object metadata on writes, as upstream's registry and `ValidateObjectMeta` treat it: names,
//! generateName, uid, creationTimestamp, generation, labels and annotations, and the fields a
//! client may not change.

use serde_json::{Map, Value, json};

use super::status::Cause;

/// Now as RFC 3339 with second precision and `Z`, the format of `metav1.Time`.
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    rfc3339(secs)
}

pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// Seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ` (days-from-civil, proleptic Gregorian).
pub fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}Z")
}

/// A random UUID v4 from the system's CSPRNG.
pub fn uuid() -> String {
    let mut b = random_bytes::<16>();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn random_bytes<const N: usize>() -> [u8; N] {
    use ring::rand::SecureRandom;
    let mut b = [0u8; N];
    // The system CSPRNG does not fail on Linux once booted; a zeroed buffer would still be a
    // well-formed (if unlucky) name or UID.
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    b
}

/// A random number from the system's CSPRNG.
pub fn random_u32() -> u32 {
    u32::from_le_bytes(random_bytes::<4>())
}

/// upstream's `generateName` suffix: 5 characters from an alphabet without vowels or
/// look-alikes.
pub fn name_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    random_bytes::<5>()
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

const DNS1123_LABEL_MAX: usize = 63;
const DNS1123_SUBDOMAIN_MAX: usize = 253;

fn is_label_char(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-'
}

/// RFC 1123 label: lower-case alphanumerics and '-', starting and ending alphanumeric.
pub fn dns1123_label(s: &str) -> Option<String> {
    let b = s.as_bytes();
    if b.len() > DNS1123_LABEL_MAX {
        return Some(format!(
            "must be no more than {DNS1123_LABEL_MAX} characters"
        ));
    }
    let ok = !b.is_empty()
        && b.iter().all(|c| is_label_char(*c))
        && b[0] != b'-'
        && b[b.len() - 1] != b'-';
    (!ok).then(|| {
        "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')".to_string()
    })
}

/// RFC 1123 subdomain: dot-separated labels, at most 253 characters.
pub fn dns1123_subdomain(s: &str) -> Option<String> {
    if s.len() > DNS1123_SUBDOMAIN_MAX {
        return Some(format!(
            "must be no more than {DNS1123_SUBDOMAIN_MAX} characters"
        ));
    }
    let ok = !s.is_empty()
        && s.split('.').all(|l| {
            let b = l.as_bytes();
            !b.is_empty()
                && b.iter().all(|c| is_label_char(*c))
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
        });
    (!ok).then(|| {
        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')".to_string()
    })
}

/// Path-segment names (RBAC, some others): anything but `.`, `..`, `/` and `%`.
fn path_segment(s: &str) -> Option<String> {
    if s == "." || s == ".." {
        return Some(format!("may not be '{s}'"));
    }
    for bad in ["/", "%"] {
        if s.contains(bad) {
            return Some(format!("may not contain '{bad}'"));
        }
    }
    None
}

/// Resources whose names must be DNS labels (they become DNS names or label values).
fn label_named(group: &str, resource: &str) -> bool {
    matches!(
        (group, resource),
        ("", "namespaces" | "services" | "replicationcontrollers")
            | ("apps", "deployments" | "statefulsets" | "daemonsets")
    )
}

/// The name rule of a resource, as its upstream validation applies it.
pub fn validate_name(resource: &str, group: &str, name: &str) -> Option<String> {
    if label_named(group, resource) {
        dns1123_label(name)
    } else if group == "rbac.authorization.k8s.io" {
        path_segment(name)
    } else {
        dns1123_subdomain(name)
    }
}

pub(super) fn qualified_name_error(key: &str) -> Option<String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        if p.is_empty() {
            return Some("prefix part must be non-empty".into());
        }
        if let Some(e) = dns1123_subdomain(p) {
            return Some(format!("prefix part {e}"));
        }
    }
    let b = name.as_bytes();
    if b.is_empty() {
        return Some("name part must be non-empty".into());
    }
    if b.len() > 63 {
        return Some("name part must be no more than 63 characters".into());
    }
    let ok = b
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric();
    (!ok).then(|| "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')".to_string())
}

fn label_value_error(v: &str) -> Option<String> {
    let b = v.as_bytes();
    if b.is_empty() {
        return None;
    }
    if b.len() > 63 {
        return Some("must be no more than 63 characters".into());
    }
    let ok = b
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric();
    (!ok).then(|| "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')".to_string())
}

/// The causes found in `metadata.labels` and `metadata.annotations`.
pub fn validate_labels_annotations(meta: &Map<String, Value>, causes: &mut Vec<Cause>) {
    if let Some(labels) = meta.get("labels").and_then(Value::as_object) {
        for (k, v) in labels {
            if let Some(e) = qualified_name_error(k) {
                causes.push(Cause::invalid("metadata.labels", &json!(k), &e));
            }
            match v.as_str() {
                Some(s) => {
                    if let Some(e) = label_value_error(s) {
                        causes.push(Cause::invalid("metadata.labels", &json!(s), &e));
                    }
                }
                None => causes.push(Cause::invalid(
                    format!("metadata.labels.{k}"),
                    v,
                    "must be a string",
                )),
            }
        }
    }
    if let Some(ann) = meta.get("annotations").and_then(Value::as_object) {
        let mut total = 0;
        for (k, v) in ann {
            if let Some(e) = qualified_name_error(&k.to_ascii_lowercase()) {
                causes.push(Cause::invalid("metadata.annotations", &json!(k), &e));
            }
            total += k.len() + v.as_str().map(str::len).unwrap_or_default();
        }
        if total > 256 * 1024 {
            causes.push(Cause::too_long("metadata.annotations", 256 * 1024));
        }
    }
}

/// Fills the metadata of a new object: name from generateName, uid, creationTimestamp,
/// generation 1; clears what clients may not set. Returns the validation causes.
pub fn prepare_create(obj: &mut Value, group: &str, resource: &str, causes: &mut Vec<Cause>) {
    let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        causes.push(Cause::required("metadata"));
        return;
    };
    let name = meta
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if name.is_empty() {
        match meta.get("generateName").and_then(Value::as_str) {
            Some(prefix) if !prefix.is_empty() => {
                // Upstream trims the prefix so prefix + suffix stays within the name limit.
                let max = if label_named(group, resource) {
                    DNS1123_LABEL_MAX
                } else {
                    DNS1123_SUBDOMAIN_MAX
                };
                let mut keep = prefix.len().min(max - 5);
                while !prefix.is_char_boundary(keep) {
                    keep -= 1;
                }
                let generated = format!("{}{}", &prefix[..keep], name_suffix());
                meta.insert("name".into(), json!(generated));
            }
            _ => {
                causes.push(Cause {
                    reason: "FieldValueRequired",
                    message: "Required value: name or generateName is required".into(),
                    field: "metadata.name".into(),
                });
                return;
            }
        }
    }
    if let Some(n) = meta.get("name").and_then(Value::as_str)
        && let Some(e) = validate_name(resource, group, n)
    {
        causes.push(Cause::invalid("metadata.name", &json!(n), &e));
    }
    meta.insert("uid".into(), json!(uuid()));
    meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
    meta.remove("resourceVersion");
    meta.remove("deletionTimestamp");
    meta.remove("deletionGracePeriodSeconds");
    meta.remove("selfLink");
    if tracks_generation(group, resource) {
        meta.insert("generation".into(), json!(1));
    } else {
        meta.remove("generation");
    }
    validate_labels_annotations(meta, causes);
}

/// Whether upstream keeps `metadata.generation` for a kind. Its registries set it only for
/// kinds with a desired state (workloads, CRDs and custom resources, …); plain data kinds
/// (ConfigMaps, Secrets, RBAC, Leases, Events, …) have none, so `kubectl diff` and `-o yaml`
/// show none either.
fn tracks_generation(group: &str, resource: &str) -> bool {
    !matches!(
        (group, resource),
        (
            "",
            "configmaps"
                | "secrets"
                | "serviceaccounts"
                | "events"
                | "endpoints"
                | "limitranges"
                | "podtemplates"
                | "services"
                | "namespaces"
                | "nodes"
                | "persistentvolumeclaims"
                | "persistentvolumes"
        ) | ("events.k8s.io", "events")
            | ("discovery.k8s.io", "endpointslices")
            | ("rbac.authorization.k8s.io", _)
            | ("coordination.k8s.io", "leases")
            | ("scheduling.k8s.io", "priorityclasses")
            | (
                "storage.k8s.io",
                "storageclasses" | "csidrivers" | "csinodes"
            )
            | ("node.k8s.io", "runtimeclasses")
            | ("apps", "controllerrevisions")
    )
}

/// Carries over what an update may not change (uid, creationTimestamp, deletion fields,
/// generation), and bumps generation when anything but metadata and status changed.
pub fn prepare_update(new: &mut Value, old: &Value, causes: &mut Vec<Cause>) {
    let old_meta = old.get("metadata").cloned().unwrap_or(json!({}));
    let spec_changed = {
        let strip = |v: &Value| {
            let mut v = v.clone();
            if let Some(o) = v.as_object_mut() {
                o.remove("metadata");
                o.remove("status");
            }
            v
        };
        strip(new) != strip(old)
    };
    let Some(meta) = new.get_mut("metadata").and_then(Value::as_object_mut) else {
        causes.push(Cause::required("metadata"));
        return;
    };
    for key in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
    ] {
        match old_meta.get(key) {
            Some(v) => {
                meta.insert(key.into(), v.clone());
            }
            None => {
                meta.remove(key);
            }
        }
    }
    // A kind without a generation (see `tracks_generation`) was created without one.
    match old_meta.get("generation").and_then(Value::as_i64) {
        Some(generation) => {
            meta.insert(
                "generation".into(),
                json!(if spec_changed {
                    generation + 1
                } else {
                    generation
                }),
            );
        }
        None => {
            meta.remove("generation");
        }
    }
    meta.remove("selfLink");
    validate_labels_annotations(meta, causes);
    // A deleting object may lose finalizers but not gain new ones (upstream ValidateObjectMetaUpdate).
    if old_meta.get("deletionTimestamp").is_some() {
        let old_f: Vec<&Value> = old_meta
            .get("finalizers")
            .and_then(Value::as_array)
            .map(|a| a.iter().collect())
            .unwrap_or_default();
        if let Some(new_f) = meta.get("finalizers").and_then(Value::as_array)
            && new_f.iter().any(|f| !old_f.contains(&f))
        {
            causes.push(Cause::forbidden(
                "metadata.finalizers",
                "no new finalizers can be added if the object is being deleted",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_formats_as_metav1() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_764_000_000), "2025-11-24T16:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn uuids_are_version_4() {
        let u = uuid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert_ne!(uuid(), u);
    }

    #[test]
    fn names_follow_each_resources_rule() {
        assert!(validate_name("configmaps", "", "a.b-c").is_none());
        assert!(validate_name("services", "", "a.b").is_some());
        assert!(validate_name("namespaces", "", "Upper").is_some());
        assert!(validate_name("roles", "rbac.authorization.k8s.io", "system:x").is_none());
        assert!(validate_name("pods", "", &"a".repeat(254)).is_some());
    }

    #[test]
    fn generate_name_and_server_fields_on_create() {
        let mut o = json!({"metadata": {"generateName": "web-", "resourceVersion": "7", "labels": {"app": "web"}}});
        let mut causes = vec![];
        prepare_create(&mut o, "", "pods", &mut causes);
        assert!(causes.is_empty(), "{causes:?}");
        let name = o["metadata"]["name"].as_str().unwrap();
        assert!(name.starts_with("web-") && name.len() == 9, "{name}");
        assert!(o["metadata"].get("resourceVersion").is_none());
        assert_eq!(o["metadata"]["generation"], 1);
    }

    #[test]
    fn bad_labels_are_causes() {
        let mut o = json!({"metadata": {"name": "x", "labels": {"bad key!": "v", "k": "-bad"}}});
        let mut causes = vec![];
        prepare_create(&mut o, "", "configmaps", &mut causes);
        assert_eq!(causes.len(), 2, "{causes:?}");
    }

    #[test]
    fn data_kinds_have_no_generation() {
        let mut o = json!({"metadata": {"name": "x", "generation": 7}, "data": {"a": "b"}});
        prepare_create(&mut o, "", "configmaps", &mut vec![]);
        assert!(o["metadata"].get("generation").is_none(), "{o}");
        let mut changed = json!({"metadata": {"name": "x", "generation": 2}, "data": {"a": "c"}});
        prepare_update(&mut changed, &o, &mut vec![]);
        assert!(changed["metadata"].get("generation").is_none(), "{changed}");
        let mut d = json!({"metadata": {"name": "d"}, "spec": {"replicas": 1}});
        prepare_create(&mut d, "apps", "deployments", &mut vec![]);
        assert_eq!(d["metadata"]["generation"], 1);
        let mut cr = json!({"metadata": {"name": "w"}, "spec": {"size": 1}});
        prepare_create(&mut cr, "example.com", "widgets", &mut vec![]);
        assert_eq!(cr["metadata"]["generation"], 1);
    }

    #[test]
    fn generation_moves_only_with_the_spec() {
        let old = json!({"metadata": {"name": "d", "uid": "u", "generation": 3}, "spec": {"replicas": 1}});
        let mut same =
            json!({"metadata": {"name": "d", "labels": {"a": "b"}}, "spec": {"replicas": 1}});
        prepare_update(&mut same, &old, &mut vec![]);
        assert_eq!(same["metadata"]["generation"], 3);
        assert_eq!(same["metadata"]["uid"], "u");
        let mut changed = json!({"metadata": {"name": "d"}, "spec": {"replicas": 2}});
        prepare_update(&mut changed, &old, &mut vec![]);
        assert_eq!(changed["metadata"]["generation"], 4);
    }
}
