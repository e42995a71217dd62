//! Strategic merge patch against upstream's documented behaviour (the SMP design documents and
//! apimachinery's `strategicpatch` test cases), on real built-in types.

use serde_json::{Value, json};

use super::super::{Error, Schemas, strategic_merge};

const DEPLOYMENT: &str = "io.k8s.api.apps.v1.Deployment";
const POD: &str = "io.k8s.api.core.v1.Pod";
const SERVICE: &str = "io.k8s.api.core.v1.Service";
const NODE: &str = "io.k8s.api.core.v1.Node";
const PDB: &str = "io.k8s.api.policy.v1.PodDisruptionBudget";

fn apply(type_name: &str, doc: Value, patch: Value) -> Result<Value, Error> {
    strategic_merge(&doc, &patch, Schemas::built_in(), type_name)
}

fn pod_spec(spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec})
}

fn deployment(pod_spec: Value) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": pod_spec},
        },
    })
}

struct Case {
    name: &'static str,
    type_name: &'static str,
    doc: Value,
    patch: Value,
    want: Value,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "containers_merge_by_name_and_keep_unpatched_ones",
            type_name: DEPLOYMENT,
            doc: deployment(json!({"containers": [
                {"name": "nginx", "image": "nginx:1.0", "ports": [{"containerPort": 80}]},
                {"name": "sidecar", "image": "busybox"},
            ]})),
            patch: json!({"spec": {"template": {"spec": {"containers": [
                {"name": "nginx", "image": "nginx:1.27"},
            ]}}}}),
            want: deployment(json!({"containers": [
                {"name": "nginx", "image": "nginx:1.27", "ports": [{"containerPort": 80}]},
                {"name": "sidecar", "image": "busybox"},
            ]})),
        },
        Case {
            // Upstream puts an element whose place the object's order cannot tell first.
            name: "new_container_without_order_goes_first",
            type_name: DEPLOYMENT,
            doc: deployment(json!({"containers": [{"name": "nginx", "image": "nginx"}]})),
            patch: json!({"spec": {"template": {"spec": {"containers": [
                {"name": "log-tailer", "image": "log-tailer:1.0"},
            ]}}}}),
            want: deployment(json!({"containers": [
                {"name": "log-tailer", "image": "log-tailer:1.0"},
                {"name": "nginx", "image": "nginx"},
            ]})),
        },
        Case {
            name: "set_element_order_places_new_container_last",
            type_name: DEPLOYMENT,
            doc: deployment(json!({"containers": [{"name": "nginx", "image": "nginx"}]})),
            patch: json!({"spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "nginx"}, {"name": "log-tailer"}],
                "containers": [{"name": "log-tailer", "image": "log-tailer:1.0"}],
            }}}}),
            want: deployment(json!({"containers": [
                {"name": "nginx", "image": "nginx"},
                {"name": "log-tailer", "image": "log-tailer:1.0"},
            ]})),
        },
        Case {
            name: "set_element_order_reorders_without_changing_elements",
            type_name: POD,
            doc: pod_spec(json!({"containers": [
                {"name": "a", "image": "a"}, {"name": "b", "image": "b"}, {"name": "c", "image": "c"},
            ]})),
            patch: json!({"spec": {
                "$setElementOrder/containers": [{"name": "c"}, {"name": "a"}, {"name": "b"}],
            }}),
            want: pod_spec(json!({"containers": [
                {"name": "c", "image": "c"}, {"name": "a", "image": "a"}, {"name": "b", "image": "b"},
            ]})),
        },
        Case {
            name: "env_entries_merge_by_name",
            type_name: DEPLOYMENT,
            doc: deployment(json!({"containers": [{"name": "app", "env": [
                {"name": "A", "value": "1"}, {"name": "B", "value": "2"},
            ]}]})),
            patch: json!({"spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "app"}],
                "containers": [{
                    "name": "app",
                    "$setElementOrder/env": [{"name": "A"}, {"name": "B"}, {"name": "C"}],
                    "env": [{"name": "B", "value": "20"}, {"name": "C", "value": "3"}],
                }],
            }}}}),
            want: deployment(json!({"containers": [{"name": "app", "env": [
                {"name": "A", "value": "1"}, {"name": "B", "value": "20"}, {"name": "C", "value": "3"},
            ]}]})),
        },
        Case {
            name: "env_entry_value_from_replaces_value_via_null",
            type_name: POD,
            doc: pod_spec(
                json!({"containers": [{"name": "app", "env": [{"name": "A", "value": "1"}]}]}),
            ),
            patch: json!({"spec": {"containers": [{"name": "app", "env": [
                {"name": "A", "value": null, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            ]}]}}),
            want: pod_spec(json!({"containers": [{"name": "app", "env": [
                {"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            ]}]})),
        },
        Case {
            name: "patch_delete_removes_a_container",
            type_name: POD,
            doc: pod_spec(json!({"containers": [{"name": "a"}, {"name": "b"}]})),
            patch: json!({"spec": {"containers": [{"name": "a", "$patch": "delete"}]}}),
            want: pod_spec(json!({"containers": [{"name": "b"}]})),
        },
        Case {
            name: "patch_replace_in_a_list_replaces_the_whole_list",
            type_name: POD,
            doc: pod_spec(json!({"containers": [{"name": "a", "image": "a"}, {"name": "b"}]})),
            patch: json!({"spec": {"containers": [{"name": "c", "image": "c"}, {"$patch": "replace"}]}}),
            want: pod_spec(json!({"containers": [{"name": "c", "image": "c"}]})),
        },
        Case {
            name: "patch_replace_in_a_map_replaces_the_map",
            type_name: POD,
            doc: json!({"metadata": {"name": "p", "labels": {"a": "1", "b": "2"}}}),
            patch: json!({"metadata": {"labels": {"c": "3", "$patch": "replace"}}}),
            want: json!({"metadata": {"name": "p", "labels": {"c": "3"}}}),
        },
        Case {
            name: "patch_delete_in_a_map_empties_it",
            type_name: POD,
            doc: json!({"metadata": {"name": "p", "labels": {"a": "1"}}}),
            patch: json!({"metadata": {"labels": {"$patch": "delete"}}}),
            want: json!({"metadata": {"name": "p", "labels": {}}}),
        },
        Case {
            name: "retain_keys_switches_a_volume_source",
            type_name: POD,
            doc: pod_spec(json!({"volumes": [
                {"name": "data", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "c"}},
            ]})),
            patch: json!({"spec": {"volumes": [
                {"name": "data", "hostPath": {"path": "/srv"}, "$retainKeys": ["hostPath", "name"]},
            ]}}),
            want: pod_spec(json!({"volumes": [
                {"name": "data", "hostPath": {"path": "/srv"}}, {"name": "cfg", "configMap": {"name": "c"}},
            ]})),
        },
        Case {
            name: "retain_keys_switches_deployment_strategy_to_recreate",
            type_name: DEPLOYMENT,
            doc: json!({"spec": {"strategy": {
                "type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            }}}),
            patch: json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
            want: json!({"spec": {"strategy": {"type": "Recreate"}}}),
        },
        Case {
            name: "delete_from_primitive_list_removes_a_finalizer",
            type_name: POD,
            doc: json!({"metadata": {"name": "p", "finalizers": ["a", "b", "c"]}}),
            patch: json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b"]}}),
            want: json!({"metadata": {"name": "p", "finalizers": ["a", "c"]}}),
        },
        Case {
            name: "finalizers_are_a_set_union",
            type_name: POD,
            doc: json!({"metadata": {"finalizers": ["a", "b"]}}),
            patch: json!({"metadata": {"finalizers": ["b", "c"]}}),
            want: json!({"metadata": {"finalizers": ["a", "b", "c"]}}),
        },
        Case {
            name: "finalizer_with_set_element_order_is_appended",
            type_name: POD,
            doc: json!({"metadata": {"finalizers": ["a"]}}),
            patch: json!({"metadata": {
                "$setElementOrder/finalizers": ["a", "z"], "finalizers": ["z"],
            }}),
            want: json!({"metadata": {"finalizers": ["a", "z"]}}),
        },
        Case {
            name: "null_removes_a_label",
            type_name: DEPLOYMENT,
            doc: json!({"metadata": {"name": "web", "labels": {"app": "web", "old": "x"}}}),
            patch: json!({"metadata": {"labels": {"old": null, "tier": "front"}}}),
            want: json!({"metadata": {"name": "web", "labels": {"app": "web", "tier": "front"}}}),
        },
        Case {
            name: "tolerations_are_atomic",
            type_name: POD,
            doc: pod_spec(json!({"tolerations": [{"key": "a", "operator": "Exists"}]})),
            patch: json!({"spec": {"tolerations": [{"key": "b", "operator": "Exists"}]}}),
            want: pod_spec(json!({"tolerations": [{"key": "b", "operator": "Exists"}]})),
        },
        Case {
            name: "node_taints_are_replaced",
            type_name: NODE,
            doc: json!({"spec": {"taints": [{"key": "a", "effect": "NoSchedule"}]}}),
            patch: json!({"spec": {"taints": [{"key": "b", "effect": "NoExecute"}]}}),
            want: json!({"spec": {"taints": [{"key": "b", "effect": "NoExecute"}]}}),
        },
        Case {
            name: "container_ports_merge_by_container_port",
            type_name: POD,
            doc: pod_spec(json!({"containers": [{"name": "app", "ports": [
                {"containerPort": 80, "name": "http"}, {"containerPort": 443},
            ]}]})),
            patch: json!({"spec": {"containers": [{"name": "app", "ports": [
                {"containerPort": 80, "name": "web"},
            ]}]}}),
            want: pod_spec(json!({"containers": [{"name": "app", "ports": [
                {"containerPort": 80, "name": "web"}, {"containerPort": 443},
            ]}]})),
        },
        Case {
            name: "service_ports_merge_by_port",
            type_name: SERVICE,
            doc: json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}], "selector": {"app": "a"}}}),
            patch: json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}]}}),
            want: json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}], "selector": {"app": "a"}}}),
        },
        Case {
            name: "owner_references_merge_by_uid",
            type_name: POD,
            doc: json!({"metadata": {"ownerReferences": [{"uid": "1", "name": "rs"}]}}),
            patch: json!({"metadata": {
                "$setElementOrder/ownerReferences": [{"uid": "1"}, {"uid": "2"}],
                "ownerReferences": [{"uid": "2", "name": "other"}],
            }}),
            want: json!({"metadata": {"ownerReferences": [
                {"uid": "1", "name": "rs"}, {"uid": "2", "name": "other"},
            ]}}),
        },
        Case {
            name: "node_conditions_merge_by_type",
            type_name: NODE,
            doc: json!({"status": {"conditions": [
                {"type": "Ready", "status": "False"}, {"type": "DiskPressure", "status": "False"},
            ]}}),
            patch: json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
            want: json!({"status": {"conditions": [
                {"type": "Ready", "status": "True"}, {"type": "DiskPressure", "status": "False"},
            ]}}),
        },
        Case {
            // SMP ignores x-kubernetes-map-type: an atomic map still merges key by key.
            name: "node_selector_merges_keys",
            type_name: POD,
            doc: pod_spec(json!({"nodeSelector": {"a": "1"}})),
            patch: json!({"spec": {"nodeSelector": {"b": "2"}}}),
            want: pod_spec(json!({"nodeSelector": {"a": "1", "b": "2"}})),
        },
        Case {
            name: "pdb_selector_has_replace_strategy",
            type_name: PDB,
            doc: json!({"spec": {"selector": {"matchLabels": {"a": "1"}}, "minAvailable": 1}}),
            patch: json!({"spec": {"selector": {"matchLabels": {"b": "2"}}}}),
            want: json!({"spec": {"selector": {"matchLabels": {"b": "2"}}, "minAvailable": 1}}),
        },
        Case {
            name: "rollout_restart_annotation_is_added",
            type_name: DEPLOYMENT,
            doc: deployment(json!({"containers": [{"name": "app"}]})),
            patch: json!({"spec": {"template": {"metadata": {"annotations": {
                "kubectl.kubernetes.io/restartedAt": "2025-01-02T03:04:05Z",
            }}}}}),
            want: {
                let mut want = deployment(json!({"containers": [{"name": "app"}]}));
                want["spec"]["template"]["metadata"]["annotations"] =
                    json!({"kubectl.kubernetes.io/restartedAt": "2025-01-02T03:04:05Z"});
                want
            },
        },
        Case {
            name: "new_subtree_loses_nulls_and_directives",
            type_name: POD,
            doc: json!({"metadata": {"name": "p"}}),
            patch: json!({"spec": {"containers": [
                {"name": "a", "image": null, "env": [{"name": "X", "$patch": "delete"}, {"name": "Y"}]},
                {"name": "gone", "$patch": "delete"},
            ]}}),
            want: json!({"metadata": {"name": "p"}, "spec": {"containers": [
                {"name": "a", "env": [{"name": "Y"}]},
            ]}}),
        },
        Case {
            name: "fields_outside_the_schema_merge_like_a_merge_patch",
            type_name: POD,
            doc: json!({"spec": {"custom": {"list": [1, 2], "keep": true}}}),
            patch: json!({"spec": {"custom": {"list": [3], "new": {"a": null, "b": 1}}}}),
            want: json!({"spec": {"custom": {"list": [3], "keep": true, "new": {"b": 1}}}}),
        },
        Case {
            name: "unknown_types_merge_like_a_merge_patch",
            type_name: "io.example.v1.Widget",
            doc: json!({"spec": {"items": [{"name": "a"}], "size": 1}}),
            patch: json!({"spec": {"items": [{"name": "b"}], "size": null}}),
            want: json!({"spec": {"items": [{"name": "b"}]}}),
        },
        Case {
            name: "empty_patch_list_leaves_a_merged_list_alone",
            type_name: POD,
            doc: pod_spec(json!({"containers": [{"name": "a"}]})),
            patch: json!({"spec": {"containers": []}}),
            want: pod_spec(json!({"containers": [{"name": "a"}]})),
        },
        Case {
            name: "scalar_replaces_map_of_another_type",
            type_name: POD,
            doc: json!({"metadata": {"labels": "oops"}}),
            patch: json!({"metadata": {"labels": {"a": "1", "b": null}}}),
            want: json!({"metadata": {"labels": {"a": "1"}}}),
        },
    ]
}

#[test]
fn upstream_examples_produce_upstream_results() {
    let mut failures = Vec::new();
    for case in cases() {
        match apply(case.type_name, case.doc, case.patch) {
            Ok(got) if got == case.want => {}
            Ok(got) => failures.push(format!("{}: got {got}, want {}", case.name, case.want)),
            Err(error) => failures.push(format!("{}: error {error}", case.name)),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

struct Refusal {
    name: &'static str,
    patch: Value,
    code: u16,
    message: &'static str,
}

#[test]
fn malformed_patches_are_refused_with_a_clear_error() {
    let doc = pod_spec(json!({"containers": [{"name": "a"}], "volumes": [{"name": "v"}]}));
    let refusals = [
        Refusal {
            name: "unknown_map_directive",
            patch: json!({"spec": {"$patch": "explode"}}),
            code: 400,
            message: "unknown patch type: \"explode\" in map (at spec)",
        },
        Refusal {
            name: "merge_directive_in_list",
            patch: json!({"spec": {"containers": [{"$patch": "merge"}]}}),
            code: 400,
            message: "merging lists cannot yet be specified in the patch (at spec.containers[0])",
        },
        Refusal {
            name: "element_without_merge_key",
            patch: json!({"spec": {"containers": [{"image": "x"}]}}),
            code: 400,
            message: "map does not contain declared merge key: name (at spec.containers[0])",
        },
        Refusal {
            name: "retain_keys_not_a_list",
            patch: json!({"spec": {"volumes": [{"name": "v", "$retainKeys": "name"}]}}),
            code: 400,
            message: "invalid patch format of retainKeys (at spec.volumes[0])",
        },
        Refusal {
            name: "retain_keys_missing_a_patched_key",
            patch: json!({"spec": {"volumes": [
                {"name": "v", "emptyDir": {}, "$retainKeys": ["name"]},
            ]}}),
            code: 400,
            message: "invalid patch format of retainKeys (at spec.volumes[0])",
        },
        Refusal {
            name: "set_element_order_not_a_list",
            patch: json!({"spec": {"$setElementOrder/containers": {"name": "a"}}}),
            code: 400,
            message: "invalid patch format of setElementOrder list (at spec.containers)",
        },
        Refusal {
            name: "set_element_order_disagrees_with_patch",
            patch: json!({"spec": {
                "$setElementOrder/containers": [{"name": "a"}],
                "containers": [{"name": "b"}],
            }}),
            code: 400,
            message: "the order in the patch list doesn't match the $setElementOrder list (at spec.containers)",
        },
        Refusal {
            name: "list_of_lists",
            patch: json!({"metadata": {"finalizers": [["a"]]}}),
            code: 422,
            message: "lists of lists are not supported (at metadata.finalizers)",
        },
        Refusal {
            name: "mixed_element_types",
            patch: json!({"spec": {"containers": ["a"]}}),
            code: 422,
            message: "list element types are not identical (at spec.containers)",
        },
        Refusal {
            name: "not_an_object",
            patch: json!(["a"]),
            code: 400,
            message: "strategic merge patch must be a JSON object, got array",
        },
    ];
    let doc_with_finalizers = {
        let mut doc = doc.clone();
        doc["metadata"]["finalizers"] = json!(["x"]);
        doc
    };
    for refusal in refusals {
        let error = apply(POD, doc_with_finalizers.clone(), refusal.patch).expect_err(refusal.name);
        assert_eq!(error.http_code(), refusal.code, "{}: {error}", refusal.name);
        assert_eq!(error.to_string(), refusal.message, "{}", refusal.name);
    }
}

#[test]
fn deeply_nested_patch_is_refused_not_overflowed() {
    // Built by hand: `json!` would serialize (recursively) the value it wraps.
    let mut patch = Value::from("leaf");
    for _ in 0..10_000 {
        let mut wrapper = serde_json::Map::new();
        wrapper.insert("a".to_owned(), patch);
        patch = Value::Object(wrapper);
    }
    let error =
        strategic_merge(&json!({}), &patch, Schemas::built_in(), POD).expect_err("too deep");
    assert_eq!(error.http_code(), 400);
    assert_eq!(
        error.to_string(),
        "strategic merge patch nests deeper than 100 levels"
    );
    // Dropping such a value recurses too; hand it off iteratively.
    let mut stack = vec![patch];
    while let Some(mut value) = stack.pop() {
        if let Some(map) = value.as_object_mut() {
            stack.extend(std::mem::take(map).into_iter().map(|(_, v)| v));
        }
    }
}

#[test]
fn empty_patch_is_identity_on_a_real_deployment() {
    let doc = deployment(json!({
        "containers": [{"name": "a", "env": [{"name": "X", "value": "1"}]}],
        "volumes": [{"name": "v", "emptyDir": {}}],
    }));
    let got = apply(DEPLOYMENT, doc.clone(), json!({})).expect("empty patch applies");
    assert_eq!(got, doc);
}

#[test]
fn doc_that_is_not_an_object_is_patched_as_empty() {
    let got = apply(POD, json!(7), json!({"metadata": {"name": "p"}})).expect("applies");
    assert_eq!(got, json!({"metadata": {"name": "p"}}));
}
