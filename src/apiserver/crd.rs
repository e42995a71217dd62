//! CustomResourceDefinitions: turning a CRD into served resources (one per served version,
//! all sharing one storage prefix, `None` conversion), checking the CRD itself, its status
//! (NamesAccepted/Established), and validating, defaulting and pruning custom resources against
//! their structural `openAPIV3Schema`.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::resources::{ALL_VERBS, Resource, SCALE, STATUS};
use super::status::Cause;

/// What a custom resource needs beyond the common resource fields.
#[derive(Debug, Clone)]
pub struct CrdInfo {
    /// The version's `openAPIV3Schema`.
    pub schema: Value,
    pub printer_columns: Vec<Value>,
    /// JSON paths of the scale subresource: spec replicas, status replicas, label selector.
    pub scale: Option<(String, String, Option<String>)>,
}

fn s<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn strings(v: &Value, pointer: &str) -> Vec<String> {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The resources a stored CRD serves (none while it is being deleted).
pub fn resources(crd: &Value) -> Vec<Resource> {
    if crd.pointer("/metadata/deletionTimestamp").is_some() {
        return Vec::new();
    }
    let group = s(crd, "/spec/group");
    let plural = s(crd, "/spec/names/plural");
    let kind = s(crd, "/spec/names/kind");
    if group.is_empty() || plural.is_empty() || kind.is_empty() {
        return Vec::new();
    }
    let singular = match s(crd, "/spec/names/singular") {
        "" => kind.to_lowercase(),
        x => x.to_string(),
    };
    let namespaced = s(crd, "/spec/scope") != "Cluster";
    let mut out = Vec::new();
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for v in versions
        .iter()
        .filter(|v| v.get("served").and_then(Value::as_bool).unwrap_or(false))
    {
        let version = s(v, "/name");
        if version.is_empty() {
            continue;
        }
        let mut subresources = Vec::new();
        if v.pointer("/subresources/status").is_some() {
            subresources.push(STATUS);
        }
        let scale = v.pointer("/subresources/scale").map(|sc| {
            subresources.push(SCALE);
            (
                s(sc, "/specReplicasPath").to_string(),
                s(sc, "/statusReplicasPath").to_string(),
                sc.get("labelSelectorPath")
                    .and_then(Value::as_str)
                    .map(str::to_string),
            )
        });
        let has_status = v.pointer("/subresources/status").is_some();
        out.push(Resource {
            group: group.to_string(),
            version: version.to_string(),
            kind: kind.to_string(),
            plural: plural.to_string(),
            singular: singular.clone(),
            namespaced,
            short_names: strings(crd, "/spec/names/shortNames"),
            categories: strings(crd, "/spec/names/categories"),
            verbs: ALL_VERBS.to_vec(),
            subresources,
            schema_name: format!("{}.{version}.{kind}", reversed(group)),
            check: None,
            storage: format!("{group}/{plural}"),
            has_status,
            virtual_only: false,
            conversion: None,
            crd: Some(Arc::new(CrdInfo {
                schema: v.pointer("/schema/openAPIV3Schema").cloned().unwrap_or(
                    json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
                ),
                printer_columns: v
                    .get("additionalPrinterColumns")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
                scale,
            })),
        });
    }
    out
}

/// `com.example.stable` for `stable.example.com`, as OpenAPI names CR definitions.
fn reversed(group: &str) -> String {
    group.split('.').rev().collect::<Vec<_>>().join(".")
}

/// Upstream's checks on a CRD that users meet (names, group, versions, schema presence).
pub fn validate(crd: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let group = s(crd, "/spec/group");
    let plural = s(crd, "/spec/names/plural");
    let name = s(crd, "/metadata/name");
    if group.is_empty() {
        causes.push(Cause::required("spec.group"));
    } else if !group.contains('.') || super::meta::dns1123_subdomain(group).is_some() {
        causes.push(Cause::invalid(
            "spec.group",
            &json!(group),
            "should be a domain with at least one dot",
        ));
    }
    if plural.is_empty() {
        causes.push(Cause::required("spec.names.plural"));
    } else if super::meta::dns1123_label(plural).is_some() {
        causes.push(Cause::invalid(
            "spec.names.plural",
            &json!(plural),
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-'",
        ));
    }
    if s(crd, "/spec/names/kind").is_empty() {
        causes.push(Cause::required("spec.names.kind"));
    }
    if !group.is_empty() && !plural.is_empty() && name != format!("{plural}.{group}") {
        causes.push(Cause::invalid(
            "metadata.name",
            &json!(name),
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    match s(crd, "/spec/scope") {
        "Namespaced" | "Cluster" => {}
        other => causes.push(Cause::unsupported(
            "spec.scope",
            &json!(other),
            &["Cluster", "Namespaced"],
        )),
    }
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if versions.is_empty() {
        causes.push(Cause::required("spec.versions"));
    }
    let storage = versions
        .iter()
        .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .count();
    if !versions.is_empty() && storage != 1 {
        causes.push(Cause::invalid(
            "spec.versions",
            &Value::Array(versions.clone()),
            "must have exactly one version marked as storage version",
        ));
    }
    for (i, v) in versions.iter().enumerate() {
        let vname = s(v, "/name");
        if vname.is_empty() || super::meta::dns1123_label(vname).is_some() {
            causes.push(Cause::invalid(
                format!("spec.versions[{i}].name"),
                &json!(vname),
                "a DNS-1035 label must consist of lower case alphanumeric characters or '-'",
            ));
        }
        match v.pointer("/schema/openAPIV3Schema") {
            None => causes.push(Cause::required(format!(
                "spec.versions[{i}].schema.openAPIV3Schema"
            ))),
            Some(schema) => structural(
                schema,
                &format!("spec.versions[{i}].schema.openAPIV3Schema"),
                &mut causes,
                0,
            ),
        }
    }
    causes
}

/// A structural schema has a type at every level (unless it preserves unknown fields or is
/// int-or-string).
fn structural(schema: &Value, path: &str, causes: &mut Vec<Cause>, depth: usize) {
    if depth > 64 {
        return;
    }
    let free = schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true))
        || schema.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    if schema.get("type").is_none() && !free {
        causes.push(Cause::required(format!("{path}.type")));
    }
    if let Some(pattern) = schema.get("pattern").and_then(Value::as_str)
        && let Some(err) = pattern_error(pattern)
    {
        causes.push(Cause::invalid(
            format!("{path}.pattern"),
            &Value::String(pattern.to_string()),
            &format!("must be a valid regular expression, but isn't: {err}"),
        ));
    }
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (k, v) in props {
            structural(v, &format!("{path}.properties[{k}]"), causes, depth + 1);
        }
    }
    if let Some(items) = schema.get("items") {
        structural(items, &format!("{path}.items"), causes, depth + 1);
    }
    if let Some(extra) = schema.get("additionalProperties")
        && extra.is_object()
    {
        structural(
            extra,
            &format!("{path}.additionalProperties"),
            causes,
            depth + 1,
        );
    }
}

/// The status the API server gives an accepted CRD: names accepted, established, stored
/// versions (what upstream's CRD controllers write).
pub fn status(crd: &Value, now: &str) -> Value {
    let storage: Vec<String> = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .map(|vs| {
            vs.iter()
                .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
                .filter_map(|v| v.get("name").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let mut stored: Vec<String> = strings(crd, "/status/storedVersions");
    for v in storage {
        if !stored.contains(&v) {
            stored.push(v);
        }
    }
    let mut names = crd.pointer("/spec/names").cloned().unwrap_or(json!({}));
    if names.get("singular").is_none() {
        names["singular"] = json!(s(crd, "/spec/names/kind").to_lowercase());
    }
    if names.get("listKind").is_none() {
        names["listKind"] = json!(format!("{}List", s(crd, "/spec/names/kind")));
    }
    let condition = |t: &str, reason: &str, message: &str| json!({"type": t, "status": "True", "lastTransitionTime": now, "reason": reason, "message": message});
    json!({
        "acceptedNames": names,
        "conditions": [
            condition("NamesAccepted", "NoConflicts", "no conflicts found"),
            condition("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        ],
        "storedVersions": stored,
    })
}

/// Validates a custom resource against its schema, filling `default`s and pruning fields the
/// schema does not declare (returned as unknown field paths, as for built-ins).
pub fn check_object(obj: &mut Value, schema: &Value) -> (Vec<Cause>, Vec<String>) {
    let mut causes = Vec::new();
    let mut unknown = Vec::new();
    let Some(map) = obj.as_object_mut() else {
        return (causes, unknown);
    };
    // apiVersion, kind and metadata are the server's; the schema describes the rest.
    let mut rest = Map::new();
    let keys: Vec<String> = map.keys().cloned().collect();
    for k in keys {
        if !matches!(k.as_str(), "apiVersion" | "kind" | "metadata")
            && let Some(v) = map.remove(&k)
        {
            rest.insert(k, v);
        }
    }
    let mut rest = Value::Object(rest);
    let mut top = schema.clone();
    if let Some(props) = top.get_mut("properties").and_then(Value::as_object_mut) {
        for k in ["apiVersion", "kind", "metadata"] {
            props.remove(k);
        }
    }
    walk(&mut rest, &top, "", &mut causes, &mut unknown, 0);
    if let Value::Object(rest) = rest {
        map.extend(rest);
    }
    (causes, unknown)
}

fn join(path: &str, k: &str) -> String {
    if path.is_empty() {
        k.to_string()
    } else {
        format!("{path}.{k}")
    }
}

fn type_ok(t: &str, v: &Value) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        _ => true,
    }
}

fn walk(
    value: &mut Value,
    schema: &Value,
    path: &str,
    causes: &mut Vec<Cause>,
    unknown: &mut Vec<String>,
    depth: usize,
) {
    if depth > 64 {
        return;
    }
    let field = if path.is_empty() { "<root>" } else { path };
    if value.is_null() {
        if schema.get("nullable") != Some(&Value::Bool(true)) && !path.is_empty() {
            causes.push(Cause::invalid(field, value, "must not be null"));
        }
        return;
    }
    if schema.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
        if !(value.is_i64() || value.is_u64() || value.is_string()) {
            causes.push(Cause {
                reason: "FieldValueTypeInvalid",
                message: format!(
                    "Invalid value: \"{}\": {field} in body must be of type int-or-string",
                    kind_name(value)
                ),
                field: field.to_string(),
            });
        }
        return;
    }
    if let Some(t) = schema.get("type").and_then(Value::as_str)
        && !type_ok(t, value)
    {
        causes.push(Cause {
            reason: "FieldValueTypeInvalid",
            message: format!(
                "Invalid value: \"{}\": {field} in body must be of type {t}: \"{}\"",
                kind_name(value),
                kind_name(value)
            ),
            field: field.to_string(),
        });
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        let names: Vec<String> = allowed.iter().map(|a| a.to_string()).collect();
        causes.push(Cause {
            reason: "FieldValueNotSupported",
            message: format!(
                "Unsupported value: {value}: supported values: {}",
                names.join(", ")
            ),
            field: field.to_string(),
        });
    }
    bounds(value, schema, field, causes);
    let preserve = schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    match value {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let extra = schema.get("additionalProperties").filter(|e| e.is_object());
            if let Some(props) = props {
                // Defaults first, so they are validated like given values.
                for (k, sub) in props {
                    if !map.contains_key(k)
                        && let Some(d) = sub.get("default")
                    {
                        map.insert(k.clone(), d.clone());
                    }
                }
                let keys: Vec<String> = map.keys().cloned().collect();
                for k in keys {
                    match props.get(&k) {
                        Some(sub) => {
                            if let Some(v) = map.get_mut(&k) {
                                walk(v, sub, &join(path, &k), causes, unknown, depth + 1);
                            }
                        }
                        None if preserve => {}
                        None => {
                            unknown.push(join(path, &k));
                            map.remove(&k);
                        }
                    }
                }
            } else if let Some(extra) = extra {
                for (k, v) in map.iter_mut() {
                    walk(v, extra, &join(path, k), causes, unknown, depth + 1);
                }
            } else if !preserve && schema.get("type").and_then(Value::as_str) == Some("object") {
                // A structural object without properties keeps nothing (upstream pruning).
                for k in map.keys() {
                    unknown.push(join(path, k));
                }
                map.clear();
            }
            if let Some(required) = schema.get("required").and_then(Value::as_array) {
                for r in required.iter().filter_map(Value::as_str) {
                    if !map.contains_key(r) {
                        causes.push(Cause::required(join(path, r)));
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, v) in items.iter_mut().enumerate() {
                    walk(
                        v,
                        item_schema,
                        &format!("{path}[{i}]"),
                        causes,
                        unknown,
                        depth + 1,
                    );
                }
            }
        }
        _ => {}
    }
}

fn kind_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A compiled `pattern`, cached: schemas are checked on every write.
fn pattern_regex(pattern: &str) -> Option<regex::Regex> {
    static CACHE: std::sync::Mutex<Option<std::collections::HashMap<String, regex::Regex>>> =
        std::sync::Mutex::new(None);
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    let map = cache.get_or_insert_with(Default::default);
    if let Some(r) = map.get(pattern) {
        return Some(r.clone());
    }
    let r = regex::Regex::new(pattern).ok()?;
    if map.len() > 1024 {
        map.clear();
    }
    map.insert(pattern.to_string(), r.clone());
    Some(r)
}

/// Why `pattern` is not a regular expression upstream accepts, if it is not.
pub fn pattern_error(pattern: &str) -> Option<String> {
    regex::Regex::new(pattern).err().map(|e| {
        e.to_string()
            .lines()
            .last()
            .unwrap_or_default()
            .trim()
            .to_string()
    })
}

/// minimum/maximum (and their exclusive forms), multipleOf, minLength/maxLength, pattern,
/// minItems/maxItems, minProperties/maxProperties.
fn bounds(value: &Value, schema: &Value, field: &str, causes: &mut Vec<Cause>) {
    let num = |k: &str| schema.get(k).and_then(Value::as_f64);
    let flag = |k: &str| schema.get(k).and_then(Value::as_bool).unwrap_or(false);
    if let Some(x) = value.as_f64() {
        if let Some(min) = num("minimum") {
            let (bad, how) = if flag("exclusiveMinimum") {
                (x <= min, "greater than")
            } else {
                (x < min, "greater than or equal to")
            };
            if bad {
                causes.push(Cause::invalid(
                    field,
                    value,
                    &format!("{field} in body should be {how} {min}"),
                ));
            }
        }
        if let Some(max) = num("maximum") {
            let (bad, how) = if flag("exclusiveMaximum") {
                (x >= max, "less than")
            } else {
                (x > max, "less than or equal to")
            };
            if bad {
                causes.push(Cause::invalid(
                    field,
                    value,
                    &format!("{field} in body should be {how} {max}"),
                ));
            }
        }
        if let Some(m) = num("multipleOf")
            && m > 0.0
            && (x / m).fract().abs() > 1e-9
        {
            causes.push(Cause::invalid(
                field,
                value,
                &format!("{field} in body should be a multiple of {m}"),
            ));
        }
    }
    if let (Some(text), Some(pattern)) = (
        value.as_str(),
        schema.get("pattern").and_then(Value::as_str),
    ) && let Some(re) = pattern_regex(pattern)
        && !re.is_match(text)
    {
        causes.push(Cause::invalid(
            field,
            value,
            &format!("{field} in body should match '{pattern}'"),
        ));
    }
    let len = match value {
        Value::String(s) => Some((
            "at least",
            "at most",
            s.chars().count(),
            "chars long",
            "minLength",
            "maxLength",
        )),
        Value::Array(a) => Some((
            "at least",
            "at most",
            a.len(),
            "items",
            "minItems",
            "maxItems",
        )),
        Value::Object(o) => Some((
            "at least",
            "at most",
            o.len(),
            "properties",
            "minProperties",
            "maxProperties",
        )),
        _ => None,
    };
    if let Some((least, most, n, unit, min_key, max_key)) = len {
        if let Some(min) = num(min_key)
            && (n as f64) < min
        {
            causes.push(Cause::invalid(
                field,
                value,
                &format!("{field} in body should have {least} {min} {unit}"),
            ));
        }
        if let Some(max) = num(max_key)
            && (n as f64) > max
        {
            causes.push(Cause::too_long(field, max as usize));
            let _ = most;
        }
    }
}

/// A `.spec.replicas`-style JSON path as a JSON pointer (`/spec/replicas`); only plain dotted
/// paths, as CRD scale paths are.
pub fn json_path_pointer(path: &str) -> Option<String> {
    let p = path.strip_prefix('.')?;
    if p.is_empty() || p.contains(['[', ']', '*']) {
        return None;
    }
    Some(format!("/{}", p.replace('.', "/")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd() -> Value {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {
                "group": "example.com", "scope": "Namespaced",
                "names": {"plural": "widgets", "kind": "Widget", "shortNames": ["wd"]},
                "versions": [
                    {"name": "v1", "served": true, "storage": true,
                     "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"}},
                     "additionalPrinterColumns": [{"name": "Size", "type": "integer", "jsonPath": ".spec.size"}],
                     "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                        "spec": {"type": "object", "required": ["size"], "properties": {
                            "size": {"type": "integer", "minimum": 1},
                            "color": {"type": "string", "enum": ["red", "blue"], "default": "red"},
                            "replicas": {"type": "integer"},
                            "name": {"type": "string", "pattern": "^[a-z0-9-]+$"},
                            "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}},
                        "status": {"type": "object", "properties": {"replicas": {"type": "integer"}}}}}}},
                    {"name": "v1beta1", "served": true, "storage": false,
                     "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}},
                    {"name": "v1alpha1", "served": false, "storage": false,
                     "schema": {"openAPIV3Schema": {"type": "object"}}}
                ]
            }
        })
    }

    #[test]
    fn a_crd_serves_each_served_version_from_one_storage() {
        let rs = resources(&crd());
        assert_eq!(rs.len(), 2);
        assert_eq!(rs[0].version, "v1");
        assert_eq!(rs[0].storage, "example.com/widgets");
        assert_eq!(rs[1].storage, rs[0].storage);
        assert_eq!(rs[0].schema_name, "com.example.v1.Widget");
        assert!(rs[0].subresource("scale").is_some());
        assert!(rs[1].subresource("status").is_none());
        assert!(validate(&crd()).is_empty(), "{:?}", validate(&crd()));
        let st = status(&crd(), "2026-01-01T00:00:00Z");
        assert_eq!(st["conditions"][1]["type"], "Established");
        assert_eq!(st["storedVersions"], json!(["v1"]));
        assert_eq!(st["acceptedNames"]["listKind"], "WidgetList");
    }

    #[test]
    fn bad_crds_are_explained() {
        let mut c = crd();
        c["metadata"]["name"] = json!("wrong");
        c["spec"]["versions"][1]["storage"] = json!(true);
        c["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
            ["name"]["pattern"] = json!("([a-z");
        let causes = validate(&c);
        let fields: Vec<&str> = causes.iter().map(|c| c.field.as_str()).collect();
        assert!(fields.contains(&"metadata.name"), "{causes:?}");
        assert!(fields.contains(&"spec.versions"), "{causes:?}");
        assert!(
            fields.contains(
                &"spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[name].pattern"
            ),
            "{causes:?}"
        );
    }

    #[test]
    fn custom_resources_are_validated_defaulted_and_pruned() {
        let schema = resources(&crd())[0].crd.as_ref().unwrap().schema.clone();
        let mut ok = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
            "spec": {"size": 3, "junk": 1, "extra": {"any": {"thing": true}}}});
        let (causes, unknown) = check_object(&mut ok, &schema);
        assert!(causes.is_empty(), "{causes:?}");
        let mut named = json!({"spec": {"size": 3, "name": "x-1"}});
        assert!(check_object(&mut named, &schema).0.is_empty());
        let mut misnamed = json!({"spec": {"size": 3, "name": "X_1"}});
        let (causes, _) = check_object(&mut misnamed, &schema);
        assert_eq!(
            causes[0].message,
            "Invalid value: \"X_1\": spec.name in body should match '^[a-z0-9-]+$'"
        );
        assert_eq!(unknown, ["spec.junk"]);
        assert_eq!(ok["spec"]["color"], "red");
        assert_eq!(ok["spec"]["extra"]["any"]["thing"], true);
        assert_eq!(ok["metadata"]["name"], "w");
        let mut bad = json!({"spec": {"size": 0, "color": "green"}});
        let (causes, _) = check_object(&mut bad, &schema);
        let fields: Vec<&str> = causes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, ["spec.color", "spec.size"], "{causes:?}");
        let mut missing = json!({"spec": {"size": "big"}});
        let (causes, _) = check_object(&mut missing, &schema);
        assert_eq!(causes[0].reason, "FieldValueTypeInvalid", "{causes:?}");
        assert_eq!(
            json_path_pointer(".spec.replicas").as_deref(),
            Some("/spec/replicas")
        );
    }
}
