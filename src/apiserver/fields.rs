//! Unknown fields: finding and pruning the parts of an object its schema does not declare, for
//! `fieldValidation=Strict|Warn|Ignore` with upstream's messages (`unknown field "spec.foo"`).
//! Upstream decodes into Go structs, which drops unknown fields; we prune them the same way, so
//! stored objects only ever hold declared fields.

use serde_json::Value;

use super::patch::Schemas;

/// How deep the walk goes before giving up on a (hostile) object.
const MAX_DEPTH: usize = 128;

/// Removes every field `schemas` does not declare for `type_name` from `obj`, returning the
/// removed fields' paths (`spec.foo`, `spec.containers[0].bogus`) in document order.
pub fn prune(obj: &mut Value, schemas: &Schemas, type_name: &str) -> Vec<String> {
    let mut unknown = Vec::new();
    if let Some(schema) = schemas.get(type_name) {
        walk(obj, schema, schemas, "", &mut unknown, 0);
    }
    unknown
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

fn walk(
    value: &mut Value,
    schema: &Value,
    schemas: &Schemas,
    path: &str,
    unknown: &mut Vec<String>,
    depth: usize,
) {
    if depth > MAX_DEPTH {
        return;
    }
    let (_, resolved) = schemas.resolve(schema);
    let Some(schema) = resolved else { return };
    // Free-form parts: RawExtension, JSON, int-or-string and preserve-unknown-fields.
    if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true))
        || schema.get("x-kubernetes-int-or-string").is_some()
    {
        return;
    }
    match value {
        Value::Object(map) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                let keys: Vec<String> = map.keys().cloned().collect();
                for k in keys {
                    match props.get(&k) {
                        Some(sub) => {
                            if let Some(v) = map.get_mut(&k) {
                                walk(v, sub, schemas, &join(path, &k), unknown, depth + 1);
                            }
                        }
                        None => {
                            unknown.push(join(path, &k));
                            map.remove(&k);
                        }
                    }
                }
            } else if let Some(extra) = schema.get("additionalProperties")
                && extra.is_object()
            {
                for (k, v) in map.iter_mut() {
                    walk(v, extra, schemas, &join(path, k), unknown, depth + 1);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, v) in items.iter_mut().enumerate() {
                    walk(
                        v,
                        item_schema,
                        schemas,
                        &format!("{path}[{i}]"),
                        unknown,
                        depth + 1,
                    );
                }
            }
        }
        _ => {}
    }
}

/// Upstream's Strict error text: `strict decoding error: unknown field "a", unknown field "b"`.
pub fn strict_message(unknown: &[String]) -> String {
    let parts: Vec<String> = unknown
        .iter()
        .map(|f| format!("unknown field \"{f}\""))
        .collect();
    format!("strict decoding error: {}", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_fields_are_found_and_pruned_everywhere() {
        let mut d = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"any": "label"}, "bogus": 1},
            "spec": {
                "replicas": 1, "replica": 2,
                "template": {"spec": {"containers": [{"name": "c", "image": "i", "imagePullPolcy": "x",
                    "ports": [{"containerPort": 80}]}]}},
                "strategy": {"rollingUpdate": {"maxSurge": "25%"}}
            },
        });
        let unknown = prune(&mut d, Schemas::built_in(), "io.k8s.api.apps.v1.Deployment");
        assert_eq!(
            unknown,
            [
                "metadata.bogus",
                "spec.replica",
                "spec.template.spec.containers[0].imagePullPolcy"
            ]
        );
        assert!(d["spec"].get("replica").is_none());
        assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
        assert_eq!(d["metadata"]["labels"]["any"], "label");
        assert_eq!(
            strict_message(&unknown[..1]),
            "strict decoding error: unknown field \"metadata.bogus\""
        );
    }

    #[test]
    fn free_form_fields_are_kept() {
        let mut crd_like = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "x", "managedFields": [{"fieldsV1": {"f:data": {"f:a": {}}}}]},
            "data": {"a": "b"},
        });
        let unknown = prune(
            &mut crd_like,
            Schemas::built_in(),
            "io.k8s.api.core.v1.ConfigMap",
        );
        assert!(unknown.is_empty(), "{unknown:?}");
    }
}
