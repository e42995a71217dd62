//! JSON patch, merge patch, content types and error codes; property tests for all three patch
//! types.

use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;

#[test]
fn content_types_name_patch_types_with_or_without_parameters() {
    let cases = [
        ("application/json-patch+json", Some(PatchType::Json)),
        ("application/merge-patch+json", Some(PatchType::Merge)),
        (
            "application/strategic-merge-patch+json",
            Some(PatchType::StrategicMerge),
        ),
        ("application/apply-patch+yaml", Some(PatchType::Apply)),
        (
            "application/merge-patch+json; charset=utf-8",
            Some(PatchType::Merge),
        ),
        (
            " Application/JSON-Patch+JSON ;charset=UTF-8",
            Some(PatchType::Json),
        ),
        ("application/json", None),
        ("", None),
        (";", None),
    ];
    for (content_type, want) in cases {
        assert_eq!(
            PatchType::from_content_type(content_type),
            want,
            "{content_type}"
        );
    }
    for patch_type in [
        PatchType::Json,
        PatchType::Merge,
        PatchType::StrategicMerge,
        PatchType::Apply,
    ] {
        assert_eq!(
            PatchType::from_content_type(patch_type.content_type()),
            Some(patch_type)
        );
    }
}

fn pod() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "p",
            "resourceVersion": "42",
            "labels": {"app": "web"},
            "managedFields": [{"manager": "kubectl", "operation": "Apply"}],
        },
        "spec": {"containers": [{"name": "a", "image": "a:1"}]},
    })
}

#[test]
fn json_patch_applies_every_operation_in_order() {
    let patch = br#"[
        {"op": "test", "path": "/metadata/resourceVersion", "value": "42"},
        {"op": "add", "path": "/metadata/labels/tier", "value": "front"},
        {"op": "replace", "path": "/spec/containers/0/image", "value": "a:2"},
        {"op": "copy", "from": "/spec/containers/0", "path": "/spec/containers/-"},
        {"op": "replace", "path": "/spec/containers/1/name", "value": "b"},
        {"op": "move", "from": "/metadata/labels/app", "path": "/metadata/labels/name"},
        {"op": "remove", "path": "/metadata/managedFields"}
    ]"#;
    let got = json_patch(&pod(), patch).expect("patch applies");
    assert_eq!(
        got,
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "p",
                "resourceVersion": "42",
                "labels": {"name": "web", "tier": "front"},
            },
            "spec": {"containers": [{"name": "a", "image": "a:2"}, {"name": "b", "image": "a:2"}]},
        })
    );
}

#[test]
fn json_patch_can_rewrite_managed_fields() {
    // kubectl's client-side-apply to server-side-apply migration (csaupgrade).
    let patch = br#"[
        {"op": "test", "path": "/metadata/resourceVersion", "value": "42"},
        {"op": "replace", "path": "/metadata/managedFields", "value": [{"manager": "kubectl"}]}
    ]"#;
    let got = json_patch(&pod(), patch).expect("patch applies");
    assert_eq!(
        got["metadata"]["managedFields"],
        json!([{"manager": "kubectl"}])
    );
}

#[test]
fn json_patch_failures_name_the_operation_and_path() {
    let cases: [(&[u8], u16, &str); 9] = [
        (
            br#"[{"op": "test", "path": "/metadata/resourceVersion", "value": "41"}]"#,
            422,
            "testing value /metadata/resourceVersion failed: test failed",
        ),
        (
            br#"[{"op": "test", "path": "/metadata/missing", "value": null}]"#,
            422,
            "testing value /metadata/missing failed: test failed",
        ),
        (
            br#"[{"op": "add", "path": "/spec/missing/x", "value": 1}]"#,
            422,
            "add operation does not apply: doc is missing path: \"/spec/missing/x\"",
        ),
        (
            br#"[{"op": "remove", "path": "/spec/containers/3"}]"#,
            422,
            "remove operation does not apply: doc is missing path: \"/spec/containers/3\"",
        ),
        (
            br#"[{"op": "replace", "path": "/spec/nope", "value": 1}]"#,
            422,
            "replace operation does not apply: doc is missing key: /spec/nope",
        ),
        (
            br#"[{"op": "move", "from": "/spec/nope", "path": "/spec/x"}]"#,
            422,
            "move operation does not apply: doc is missing from path: \"/spec/nope\"",
        ),
        (
            br#"[{"op": "move", "from": "/spec", "path": "/spec/x"}]"#,
            422,
            "move operation does not apply: cannot move \"/spec\" into its own child \"/spec/x\"",
        ),
        (br#"{"op": "add"}"#, 400, ""),
        (br#"[{"op": "frobnicate", "path": "/a"}]"#, 400, ""),
    ];
    for (patch, code, message) in cases {
        let error = json_patch(&pod(), patch).expect_err("patch fails");
        assert_eq!(error.http_code(), code, "{error}");
        if !message.is_empty() {
            assert_eq!(error.to_string(), message);
        }
    }
}

#[test]
fn json_patch_stops_at_the_first_failing_operation() {
    let patch = br#"[
        {"op": "add", "path": "/metadata/labels/x", "value": "1"},
        {"op": "test", "path": "/metadata/name", "value": "q"}
    ]"#;
    match json_patch(&pod(), patch) {
        Err(Error::Operation { index, .. }) => assert_eq!(index, 1),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn json_patch_with_too_many_operations_is_too_large() {
    let operation = json!({"op": "test", "path": "/kind", "value": "Pod"});
    let patch = Value::Array(vec![operation; MAX_JSON_PATCH_OPERATIONS + 1]);
    let error = json_patch(&pod(), patch.to_string().as_bytes()).expect_err("too many");
    assert_eq!(error.http_code(), 413);
    assert_eq!(
        error.to_string(),
        "The allowed maximum operations in a JSON patch is 10000, got 10001"
    );
}

#[test]
fn json_patch_copy_bomb_is_refused() {
    // Each copy doubles the object; 64 of them would need 2^64 values.
    let mut operations = vec![json!({"op": "add", "path": "/a", "value": [1, 2, 3, 4]})];
    for _ in 0..64 {
        operations.push(json!({"op": "copy", "from": "/a", "path": "/a/-"}));
    }
    let patch = Value::Array(operations).to_string();
    let error = json_patch(&json!({}), patch.as_bytes()).expect_err("bomb refused");
    assert_eq!(error.http_code(), 422);
    assert!(
        error.to_string().contains("copy operation does not apply"),
        "{error}"
    );
}

#[test]
fn json_patch_nesting_bomb_is_refused() {
    // Copying a value into itself nests it one level deeper each time.
    let mut operations = vec![json!({"op": "add", "path": "/a", "value": {}})];
    for _ in 0..2000 {
        operations.push(json!({"op": "copy", "from": "/a", "path": "/a/a"}));
    }
    let patch = Value::Array(operations).to_string();
    let error = json_patch(&json!({}), patch.as_bytes()).expect_err("bomb refused");
    assert_eq!(error.http_code(), 422);
    assert!(
        error.to_string().contains("deeper than 512 levels"),
        "{error}"
    );
}

#[test]
fn deeply_nested_bodies_are_refused() {
    let deep = |depth: usize| format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
    let json = format!(
        "[{{\"op\": \"add\", \"path\": \"/a\", \"value\": {}}}]",
        deep(101)
    );
    let error = json_patch(&json!({}), json.as_bytes()).expect_err("too deep");
    assert_eq!(error.http_code(), 400);
    assert_eq!(error.to_string(), "JSON patch nests deeper than 100 levels");

    let merge = format!("{{\"a\": {}}}", deep(100));
    let error = merge_patch(&json!({}), merge.as_bytes()).expect_err("too deep");
    assert_eq!(error.http_code(), 400);

    // Past serde_json's own limit the decoder refuses first.
    let error = merge_patch(&json!({}), deep(10_000).as_bytes()).expect_err("too deep");
    assert_eq!(error.http_code(), 400);
}

#[test]
fn merge_patch_adds_and_removes_labels_and_replaces_lists() {
    let patch = br#"{"metadata": {"labels": {"app": null, "tier": "front"}},
                     "spec": {"containers": [{"name": "b"}]}}"#;
    let got = merge_patch(&pod(), patch).expect("patch applies");
    assert_eq!(got["metadata"]["labels"], json!({"tier": "front"}));
    assert_eq!(got["spec"]["containers"], json!([{"name": "b"}]));
    assert_eq!(got["metadata"]["name"], json!("p"));
}

#[test]
fn merge_patch_refuses_bodies_that_are_not_objects() {
    for (body, message) in [
        (
            &b"[1]"[..],
            "JSON merge patch must be a JSON object, got array",
        ),
        (b"7", "JSON merge patch must be a JSON object, got number"),
        (b"null", "JSON merge patch must be a JSON object, got null"),
    ] {
        let error = merge_patch(&pod(), body).expect_err("refused");
        assert_eq!(error.http_code(), 400);
        assert_eq!(error.to_string(), message);
    }
    let error = merge_patch(&pod(), b"{\"a\":").expect_err("refused");
    assert_eq!(error.http_code(), 400);
    assert!(
        error
            .to_string()
            .starts_with("error decoding JSON merge patch: "),
        "{error}"
    );
}

/// Any JSON value, kept small.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        // Quarters print and parse back exactly, unlike arbitrary floats.
        (-4000i32..4000).prop_map(|n| Value::from(f64::from(n) / 4.0)),
        "[a-z]{0,4}".prop_map(Value::from),
    ];
    leaf.prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,3}", inner, 0..6)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// A JSON object, as stored objects are.
fn any_object() -> impl Strategy<Value = Value> {
    prop::collection::btree_map("[a-z]{1,3}", any_json(), 0..6)
        .prop_map(|map| Value::Object(map.into_iter().collect()))
}

/// Keys that exercise strategic merge patch: fields of real types, and every directive.
fn smp_key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "$patch",
            "$retainKeys",
            "$setElementOrder/containers",
            "$setElementOrder/finalizers",
            "$setElementOrder/env",
            "$deleteFromPrimitiveList/finalizers",
            "metadata",
            "spec",
            "template",
            "containers",
            "initContainers",
            "volumes",
            "env",
            "ports",
            "finalizers",
            "ownerReferences",
            "labels",
            "name",
            "uid",
            "containerPort",
            "emptyDir",
            "strategy",
            "selector",
            "tolerations",
        ])
        .prop_map(str::to_owned),
        "[a-z]{1,2}",
    ]
}

/// Values that exercise strategic merge patch: directive values, merge keys, nesting.
fn smp_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        prop::sample::select(vec!["delete", "replace", "merge", "a", "b", "name"])
            .prop_map(Value::from),
        (0i64..3).prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
    ];
    leaf.prop_recursive(6, 64, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(smp_key(), inner, 0..5)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

fn smp_object() -> impl Strategy<Value = Value> {
    prop::collection::btree_map(smp_key(), smp_value(), 0..5)
        .prop_map(|map| Value::Object(map.into_iter().collect()))
}

fn type_name() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "io.k8s.api.apps.v1.Deployment",
        "io.k8s.api.core.v1.Pod",
        "io.k8s.api.core.v1.PodSpec",
        "io.k8s.api.core.v1.Container",
        "io.k8s.api.core.v1.Service",
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "io.example.v1.Unknown",
    ])
}

/// Whether a patch uses no strategic merge patch directive anywhere.
fn has_no_directives(value: &Value) -> bool {
    match value {
        Value::Object(fields) => fields
            .iter()
            .all(|(key, value)| !key.starts_with('$') && has_no_directives(value)),
        Value::Array(items) => items.iter().all(has_no_directives),
        _ => true,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn empty_merge_patch_is_identity(doc in any_object()) {
        prop_assert_eq!(merge_patch(&doc, b"{}").ok(), Some(doc));
    }

    #[test]
    fn empty_strategic_merge_patch_is_identity(doc in smp_object(), type_name in type_name()) {
        let got = strategic_merge(&doc, &json!({}), Schemas::built_in(), type_name);
        prop_assert_eq!(got.ok(), Some(doc));
    }

    #[test]
    fn json_patch_add_then_remove_restores(
        doc in any_object(),
        key in "[A-Z]{1,4}",
        value in any_json(),
    ) {
        let patch = json!([
            {"op": "add", "path": format!("/{key}"), "value": value},
            {"op": "remove", "path": format!("/{key}")},
        ]);
        prop_assert_eq!(json_patch(&doc, patch.to_string().as_bytes()).ok(), Some(doc));
    }

    #[test]
    fn strategic_merge_without_directives_on_unknown_types_is_a_merge_patch(
        doc in any_object(),
        patch in any_object(),
    ) {
        prop_assume!(has_no_directives(&patch));
        let strategic = strategic_merge(&doc, &patch, Schemas::built_in(), "io.example.v1.Unknown");
        let merge = merge_patch(&doc, patch.to_string().as_bytes());
        prop_assert_eq!(strategic.ok(), merge.ok());
    }

    #[test]
    fn no_patch_panics(doc in any_json(), patch in any_json(), bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let body = patch.to_string();
        let _ = json_patch(&doc, body.as_bytes());
        let _ = merge_patch(&doc, body.as_bytes());
        let _ = json_patch(&doc, &bytes);
        let _ = merge_patch(&doc, &bytes);
        let _ = strategic_merge(&doc, &patch, Schemas::built_in(), "io.k8s.api.core.v1.Pod");
    }

    #[test]
    fn no_strategic_merge_patch_panics(doc in smp_object(), patch in smp_object(), type_name in type_name()) {
        if let Err(error) = strategic_merge(&doc, &patch, Schemas::built_in(), type_name) {
            prop_assert!([400, 422].contains(&error.http_code()), "{}", error);
        }
    }

    #[test]
    fn json_patch_operations_on_real_paths_do_not_panic(
        doc in smp_object(),
        operations in prop::collection::vec(
            (
                prop::sample::select(vec!["add", "remove", "replace", "move", "copy", "test"]),
                prop::collection::vec(prop_oneof![smp_key(), "[0-3-]".prop_map(String::from)], 0..4),
                prop::collection::vec(prop_oneof![smp_key(), "[0-3-]".prop_map(String::from)], 0..4),
                smp_value(),
            ),
            0..8,
        ),
    ) {
        let patch: Vec<Value> = operations
            .into_iter()
            .map(|(op, path, from, value)| json!({
                "op": op,
                "path": path.iter().map(|token| format!("/{token}")).collect::<String>(),
                "from": from.iter().map(|token| format!("/{token}")).collect::<String>(),
                "value": value,
            }))
            .collect();
        if let Err(error) = json_patch(&doc, Value::Array(patch).to_string().as_bytes()) {
            prop_assert!([400, 422].contains(&error.http_code()), "{}", error);
        }
    }
}
