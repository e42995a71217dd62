//! Tests of server-side apply and managedFields: field sets, merge, removal, conflicts, force.

use serde_json::{Value, json};

use super::managed::{self, ApplyError, Entry, Operation, Scope, Writer};
use super::manager_from_user_agent;
use super::set::{FieldSet, Step, display};
use super::typed::{self, Type};
use crate::apiserver::patch::Schemas;

fn deployment_type() -> Type<'static> {
    Type::named(Schemas::built_in(), "io.k8s.api.apps.v1.Deployment")
}

fn writer(manager: &str) -> Writer<'_> {
    Writer {
        manager,
        api_version: "apps/v1",
        subresource: "",
        now: "2025-01-02T03:04:05Z",
    }
}

fn web(replicas: i64, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{
                    "name": "web",
                    "image": image,
                    "ports": [{"containerPort": 80}],
                }]},
            },
        },
    })
}

fn entry<'a>(entries: &'a [Entry], manager: &str) -> &'a Entry {
    entries
        .iter()
        .find(|e| e.manager == manager)
        .unwrap_or_else(|| panic!("no entry for {manager}: {entries:?}"))
}

fn apply(
    live: Option<&Value>,
    config: &Value,
    entries: Vec<Entry>,
    manager: &str,
    force: bool,
) -> Result<managed::Applied, ApplyError> {
    managed::apply(
        live,
        config,
        entries,
        deployment_type(),
        Scope::NotStatus,
        &writer(manager),
        force,
    )
}

#[test]
fn fields_v1_round_trips_with_upstreams_encoding() {
    let text = json!({
        "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
        "f:spec": {
            "f:replicas": {},
            "f:template": {"f:spec": {"f:containers": {
                "k:{\"name\":\"web\"}": {".": {}, "f:image": {}},
            }}},
        },
        "f:finalizers": {"v:\"a\"": {}},
        "f:args": {"i:0": {}},
    });
    let set = FieldSet::from_fields_v1(&text).unwrap();
    assert!(set.has(&[Step::field("metadata"), Step::field("labels")]));
    assert!(!set.has(&[Step::field("metadata")]));
    assert!(set.has(&[Step::field("finalizers"), Step::value(&json!("a"))]));
    assert!(set.has(&[Step::field("args"), Step::Index(0)]));
    assert_eq!(set.to_fields_v1(), text);
    assert!(FieldSet::from_fields_v1(&json!({"x:bad": {}})).is_err());
}

#[test]
fn paths_print_like_upstream() {
    let key = serde_json::from_value(json!({"containerPort": 80, "protocol": "TCP"})).unwrap();
    let path = [
        Step::field("spec"),
        Step::field("ports"),
        Step::key(key),
        Step::field("name"),
    ];
    assert_eq!(
        display(&path),
        ".spec.ports[containerPort=80,protocol=\"TCP\"].name"
    );
    assert_eq!(
        display(&[Step::field("f"), Step::value(&json!("x")), Step::Index(2)]),
        ".f[=\"x\"][2]"
    );
}

#[test]
fn field_set_of_a_configuration_owns_leaves_map_keys_and_items() {
    let set = typed::field_set(&web(2, "nginx"), deployment_type(), true).unwrap();
    let mut fields = set.to_fields_v1();
    // Identity fields are in the set; managed::Scope strips them later.
    assert_eq!(fields["f:apiVersion"], json!({}));
    fields.as_object_mut().unwrap().remove("f:apiVersion");
    fields.as_object_mut().unwrap().remove("f:kind");
    assert_eq!(
        fields,
        json!({
            "f:metadata": {"f:name": {}, "f:labels": {"f:app": {}}},
            "f:spec": {
                "f:replicas": {},
                // LabelSelector is an atomic struct.
                "f:selector": {},
                "f:template": {
                    "f:metadata": {"f:labels": {"f:app": {}}},
                    "f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {
                        ".": {},
                        "f:name": {},
                        "f:image": {},
                        // The port's protocol key defaults to TCP.
                        "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {
                            ".": {},
                            "f:containerPort": {},
                        }},
                    }}},
                },
            },
        })
    );
}

#[test]
fn configurations_with_keyless_or_duplicate_items_are_invalid() {
    let mut config = web(1, "nginx");
    config["spec"]["template"]["spec"]["containers"][0]
        .as_object_mut()
        .unwrap()
        .remove("name");
    let err = typed::field_set(&config, deployment_type(), true).unwrap_err();
    assert_eq!(err.path, ".spec.template.spec.containers[0]");
    assert!(err.message.contains("omits key field \"name\""), "{err:?}");
    let mut twice = web(1, "nginx");
    let c = twice["spec"]["template"]["spec"]["containers"][0].clone();
    twice["spec"]["template"]["spec"]["containers"] = json!([c.clone(), c]);
    let err = typed::field_set(&twice, deployment_type(), true).unwrap_err();
    assert!(
        err.message
            .contains("duplicate entries for key [name=\"web\"]"),
        "{err:?}"
    );
}

#[test]
fn creating_owns_new_maps_and_items_but_not_implicit_structs() {
    let c = typed::compare(None, &web(2, "nginx"), deployment_type());
    let added = c.added.to_fields_v1();
    assert_eq!(
        added["f:metadata"]["f:labels"],
        json!({".": {}, "f:app": {}})
    );
    assert!(added["f:spec"].get(".").is_none(), "{added}");
    assert!(added["f:spec"]["f:template"].get(".").is_none(), "{added}");
    let containers = &added["f:spec"]["f:template"]["f:spec"]["f:containers"];
    assert!(containers.get(".").is_none(), "a required list is implicit");
    assert_eq!(containers["k:{\"name\":\"web\"}"]["."], json!({}));
    assert!(c.modified.is_empty() && c.removed.is_empty());
}

#[test]
fn comparing_finds_changed_and_removed_leaves() {
    let old = web(2, "nginx");
    let mut new = web(3, "nginx:2");
    new["metadata"]["labels"] = json!({"tier": "x"});
    let c = typed::compare(Some(&old), &new, deployment_type());
    assert!(
        c.modified
            .has(&[Step::field("spec"), Step::field("replicas")])
    );
    let labels = [Step::field("metadata"), Step::field("labels")];
    assert!(
        c.removed
            .has(&[labels[0].clone(), labels[1].clone(), Step::field("app")])
    );
    assert!(
        c.added
            .has(&[labels[0].clone(), labels[1].clone(), Step::field("tier")])
    );
    let image = c.modified.paths();
    assert!(
        image
            .iter()
            .any(|p| display(p) == ".spec.template.spec.containers[name=\"web\"].image"),
        "{image:?}"
    );
}

#[test]
fn merge_follows_list_types() {
    let mut live = web(2, "nginx");
    let spec = &mut live["spec"]["template"]["spec"];
    spec["containers"][0]["args"] = json!(["a", "b"]);
    spec["containers"][0]["env"] = json!([{"name": "A", "value": "1"}]);
    spec["containers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "sidecar", "image": "busybox"}));
    live["metadata"]["finalizers"] = json!(["x"]);
    let config = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "finalizers": ["y"]},
        "spec": {"template": {"spec": {"containers": [{
            "name": "web",
            "args": ["c"],
            "env": [{"name": "B", "value": "2"}],
        }]}}},
    });
    let merged = typed::merge(Some(&live), &config, deployment_type());
    let containers = &merged["spec"]["template"]["spec"]["containers"];
    assert_eq!(containers[0]["image"], "nginx", "fields merge by key");
    assert_eq!(
        containers[0]["args"],
        json!(["c"]),
        "atomic lists are replaced"
    );
    assert_eq!(
        containers[0]["env"],
        json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]),
        "map lists merge by key"
    );
    assert_eq!(containers[1]["name"], "sidecar", "live items stay");
    assert_eq!(
        merged["metadata"]["finalizers"],
        json!(["x", "y"]),
        "sets union"
    );
    assert_eq!(merged["spec"]["replicas"], 2);
}

#[test]
fn service_ports_merge_by_port_and_protocol() {
    let ty = Type::named(Schemas::built_in(), "io.k8s.api.core.v1.Service");
    let live = json!({"spec": {"ports": [{"port": 80, "protocol": "TCP", "targetPort": 8080}]}});
    let config =
        json!({"spec": {"ports": [{"port": 80, "name": "http"}, {"port": 80, "protocol": "UDP"}]}});
    let merged = typed::merge(Some(&live), &config, ty);
    assert_eq!(
        merged["spec"]["ports"],
        json!([
            {"port": 80, "protocol": "TCP", "targetPort": 8080, "name": "http"},
            {"port": 80, "protocol": "UDP"},
        ])
    );
}

#[test]
fn first_apply_creates_an_apply_entry_without_identity_fields() {
    let a = apply(None, &web(2, "nginx"), Vec::new(), "kubectl", false).unwrap();
    assert_eq!(a.entries.len(), 1);
    let e = &a.entries[0];
    assert_eq!(
        (e.manager.as_str(), e.operation),
        ("kubectl", Operation::Apply)
    );
    let fields = e.fields.to_fields_v1();
    assert!(fields.get("f:apiVersion").is_none(), "{fields}");
    assert!(fields["f:metadata"].get("f:name").is_none(), "{fields}");
    assert_eq!(fields["f:spec"]["f:replicas"], json!({}));
    assert_eq!(a.object["spec"]["replicas"], 2);
}

#[test]
fn fields_left_out_of_a_later_apply_are_removed() {
    let mut first = web(2, "nginx");
    first["metadata"]["labels"]["extra"] = json!("x");
    let a = apply(None, &first, Vec::new(), "kubectl", false).unwrap();
    let mut second = web(2, "nginx");
    second["spec"].as_object_mut().unwrap().remove("replicas");
    let b = apply(Some(&a.object), &second, a.entries, "kubectl", false).unwrap();
    assert!(b.object["spec"].get("replicas").is_none(), "{}", b.object);
    assert_eq!(b.object["metadata"]["labels"], json!({"app": "web"}));
    let fields = entry(&b.entries, "kubectl").fields.to_fields_v1();
    assert!(fields["f:spec"].get("f:replicas").is_none());
}

#[test]
fn removed_fields_stay_while_another_manager_owns_them() {
    let a = apply(None, &web(2, "nginx"), Vec::new(), "kubectl", false).unwrap();
    // "other" applies the same replicas: shared ownership, no conflict.
    let replicas_only = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"}, "spec": {"replicas": 2},
    });
    let b = apply(Some(&a.object), &replicas_only, a.entries, "other", false).unwrap();
    let mut without = web(2, "nginx");
    without["spec"].as_object_mut().unwrap().remove("replicas");
    let c = apply(Some(&b.object), &without, b.entries, "kubectl", false).unwrap();
    assert_eq!(c.object["spec"]["replicas"], 2, "other still owns it");
}

#[test]
fn changing_a_field_another_manager_owns_is_a_conflict() {
    let a = apply(None, &web(2, "nginx"), Vec::new(), "kubectl", false).unwrap();
    let replicas = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"}, "spec": {"replicas": 3},
    });
    let Err(ApplyError::Conflicts(conflicts)) = apply(
        Some(&a.object),
        &replicas,
        a.entries.clone(),
        "other",
        false,
    ) else {
        panic!("expected a conflict");
    };
    assert_eq!(
        managed::conflict_message(&conflicts),
        "Apply failed with 1 conflict: conflict with \"kubectl\": .spec.replicas"
    );
    // force takes the field over.
    let b = apply(Some(&a.object), &replicas, a.entries, "other", true).unwrap();
    assert_eq!(b.object["spec"]["replicas"], 3);
    let kubectl = entry(&b.entries, "kubectl").fields.to_fields_v1();
    assert!(kubectl["f:spec"].get("f:replicas").is_none(), "{kubectl}");
    let other = entry(&b.entries, "other").fields.to_fields_v1();
    assert_eq!(other["f:spec"]["f:replicas"], json!({}));
}

#[test]
fn conflicts_with_update_managers_name_the_api_version() {
    let live = web(2, "nginx");
    let mut entries = Vec::new();
    managed::update(
        &mut entries,
        None,
        &live,
        deployment_type(),
        Scope::NotStatus,
        &writer("kubectl-client-side-apply"),
    );
    let Err(ApplyError::Conflicts(conflicts)) =
        apply(Some(&live), &web(3, "nginx:2"), entries, "kubectl", false)
    else {
        panic!("expected conflicts");
    };
    assert_eq!(
        managed::conflict_message(&conflicts),
        "Apply failed with 2 conflicts: conflicts with \"kubectl-client-side-apply\" using apps/v1:\n- .spec.replicas\n- .spec.template.spec.containers[name=\"web\"].image"
    );
}

#[test]
fn objects_without_managed_fields_belong_to_before_first_apply() {
    let live = web(2, "nginx");
    let Err(ApplyError::Conflicts(conflicts)) =
        apply(Some(&live), &web(3, "nginx"), Vec::new(), "kubectl", false)
    else {
        panic!("expected a conflict");
    };
    assert_eq!(conflicts[0].manager, "\"before-first-apply\" using apps/v1");
}

#[test]
fn updates_take_changed_fields_from_other_managers() {
    let a = apply(None, &web(2, "nginx"), Vec::new(), "kubectl", false).unwrap();
    let mut entries = a.entries;
    let mut scaled = a.object.clone();
    scaled["spec"]["replicas"] = json!(5);
    scaled["metadata"]["labels"]
        .as_object_mut()
        .unwrap()
        .remove("app");
    managed::update(
        &mut entries,
        Some(&a.object),
        &scaled,
        deployment_type(),
        Scope::NotStatus,
        &writer("kubectl-scale"),
    );
    let scale = entry(&entries, "kubectl-scale");
    assert_eq!(scale.operation, Operation::Update);
    assert_eq!(
        scale.fields.to_fields_v1(),
        json!({"f:spec": {"f:replicas": {}}})
    );
    let kubectl = entry(&entries, "kubectl").fields.clone();
    assert!(!kubectl.has(&[Step::field("spec"), Step::field("replicas")]));
    assert!(!kubectl.has(&[
        Step::field("metadata"),
        Step::field("labels"),
        Step::field("app")
    ]));
    // The same manager again merges into its entry; an entry left empty goes.
    let mut again = scaled.clone();
    again["spec"]["replicas"] = json!(6);
    managed::update(
        &mut entries,
        Some(&scaled),
        &again,
        deployment_type(),
        Scope::NotStatus,
        &writer("kubectl-scale"),
    );
    assert_eq!(
        entries
            .iter()
            .filter(|e| e.manager == "kubectl-scale")
            .count(),
        1
    );
    let mut only = vec![entries[0].clone()];
    managed::update(
        &mut only,
        Some(&a.object),
        &json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}}),
        deployment_type(),
        Scope::NotStatus,
        &writer("deleter"),
    );
    assert!(only.iter().all(|e| e.manager != "kubectl"), "{only:?}");
}

#[test]
fn status_is_owned_only_through_the_status_subresource() {
    let mut live = web(2, "nginx");
    live["status"] = json!({"replicas": 1});
    let mut new = live.clone();
    new["status"]["replicas"] = json!(2);
    new["spec"]["replicas"] = json!(4);
    let mut main = Vec::new();
    managed::update(
        &mut main,
        Some(&live),
        &new,
        deployment_type(),
        Scope::NotStatus,
        &writer("m"),
    );
    let fields = main[0].fields.to_fields_v1();
    assert!(fields.get("f:status").is_none() && fields.get("f:spec").is_some());
    let mut status = Vec::new();
    managed::update(
        &mut status,
        Some(&live),
        &new,
        deployment_type(),
        Scope::OnlyStatus,
        &writer("m"),
    );
    assert_eq!(
        status[0].fields.to_fields_v1(),
        json!({"f:status": {"f:replicas": {}}})
    );
}

#[test]
fn entries_encode_sorted_and_decode_back() {
    let a = apply(None, &web(2, "nginx"), Vec::new(), "kubectl", false).unwrap();
    let mut entries = a.entries;
    let mut obj = a.object.clone();
    let mut scaled = obj.clone();
    scaled["spec"]["replicas"] = json!(5);
    managed::update(
        &mut entries,
        Some(&obj),
        &scaled,
        deployment_type(),
        Scope::NotStatus,
        &writer("a-updater"),
    );
    managed::encode(&mut obj, entries.clone());
    let list = obj["metadata"]["managedFields"].as_array().unwrap();
    assert_eq!(list[0]["operation"], "Apply", "Apply entries come first");
    assert_eq!(list[1]["manager"], "a-updater");
    assert_eq!(list[1]["fieldsType"], "FieldsV1");
    assert_eq!(list[1]["time"], "2025-01-02T03:04:05Z");
    assert!(list[1].get("subresource").is_none());
    let decoded = managed::decode(&obj).unwrap();
    assert_eq!(decoded.len(), 2);
    assert!(managed::is_reset(
        &json!({"metadata": {"managedFields": [{}]}})
    ));
    assert!(!managed::is_reset(
        &json!({"metadata": {"managedFields": []}})
    ));
    assert!(managed::decode(&json!({"metadata": {"managedFields": [{"operation": "Apply", "fieldsType": "FieldsV2"}]}})).is_err());
}

#[test]
fn client_side_applied_fields_may_be_taken_over_by_kubectl() {
    let mut live = web(2, "nginx");
    live["metadata"]["annotations"] = json!({
        "kubectl.kubernetes.io/last-applied-configuration": web(2, "nginx").to_string(),
    });
    let allowed = managed::allowed_by_last_applied(&live, deployment_type()).unwrap();
    assert!(allowed.has(&[Step::field("spec"), Step::field("replicas")]));
    // A field changed since the last client-side apply is not.
    let mut drifted = live.clone();
    drifted["spec"]["replicas"] = json!(7);
    let allowed = managed::allowed_by_last_applied(&drifted, deployment_type()).unwrap();
    assert!(!allowed.has(&[Step::field("spec"), Step::field("replicas")]));
}

#[test]
fn managers_come_from_the_user_agent_product() {
    assert_eq!(
        manager_from_user_agent("kubectl/v1.33.0 (linux/amd64) kubernetes/abc"),
        "kubectl"
    );
    assert_eq!(
        manager_from_user_agent("kube-controller-manager"),
        "kube-controller-manager"
    );
    assert_eq!(manager_from_user_agent(&"x".repeat(300)).len(), 128);
    assert_eq!(manager_from_user_agent(""), "");
}

#[test]
fn untyped_values_are_granular_maps_and_atomic_lists() {
    let schema = json!({"type": "object", "properties": {
        "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
    }});
    let ty = Type::custom(Schemas::built_in(), &schema);
    let set = typed::field_set(
        &json!({"metadata": {"name": "x"}, "spec": {"a": {"b": 1}, "l": [1, 2]}}),
        ty,
        true,
    )
    .unwrap();
    assert_eq!(
        set.to_fields_v1()["f:spec"],
        json!({"f:a": {".": {}, "f:b": {}}, "f:l": {}})
    );
}

#[test]
fn invalid_field_managers_are_422s_naming_the_options() {
    let too_long = super::manager_causes(&"m".repeat(129));
    let e = super::options_invalid("PatchOptions", too_long);
    assert_eq!(e.code, 422);
    assert_eq!(
        e.message,
        "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Too long: may not be more than 128 bytes"
    );
    let control = super::manager_causes("a\u{7}");
    assert_eq!(control.len(), 1);
    assert!(
        control[0].message.contains("U+0007 (at position 1)"),
        "{control:?}"
    );
    assert!(super::manager_causes("kubectl-edit").is_empty());
}

#[test]
fn old_update_entries_merge_into_ancient_changes_beyond_ten() {
    let mut live =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {}});
    let ty = Type::named(Schemas::built_in(), "io.k8s.api.core.v1.ConfigMap");
    let mut entries = Vec::new();
    for i in 0..12 {
        let mut next = live.clone();
        next["data"][format!("k{i}")] = json!("v");
        let manager = format!("m{i:02}");
        let now = format!("2025-01-01T00:00:{i:02}Z");
        let w = Writer {
            manager: &manager,
            api_version: "v1",
            subresource: "",
            now: &now,
        };
        managed::update(&mut entries, Some(&live), &next, ty, Scope::Everything, &w);
        live = next;
    }
    assert_eq!(entries.len(), 10, "{entries:?}");
    let ancient = entry(&entries, managed::ANCIENT_CHANGES);
    assert!(
        ancient
            .fields
            .has(&[Step::field("data"), Step::field("k0")])
    );
    assert!(
        ancient
            .fields
            .has(&[Step::field("data"), Step::field("k2")])
    );
    assert!(
        entries
            .iter()
            .all(|e| e.manager != "m00" && e.manager != "m02")
    );
}

#[test]
fn applying_the_same_configuration_again_changes_nothing() {
    let a = apply(None, &web(2, "nginx"), Vec::new(), "kubectl", false).unwrap();
    let later = Writer {
        now: "2030-01-01T00:00:00Z",
        ..writer("kubectl")
    };
    let b = managed::apply(
        Some(&a.object),
        &web(2, "nginx"),
        a.entries.clone(),
        deployment_type(),
        Scope::NotStatus,
        &later,
        false,
    )
    .unwrap();
    assert_eq!(b.object, a.object);
    assert_eq!(b.entries, a.entries, "not even the time moves");
}
