//! The garbage collector and the pod garbage collector against kubectl 1.33 and 1.27: owners
//! and dependents (ConfigMaps, Secrets, a custom resource) linked by `ownerReferences`, deleted
//! with `--cascade=background|foreground|orphan`, and a terminating unscheduled pod.

use std::time::Duration;

use serde_json::Value;

use crate::controllers::CRD;
use crate::kubectl::Cluster;

fn uid(c: &Cluster, kind: &str, name: &str) -> String {
    c.ok(&["get", kind, name, "-o", "jsonpath={.metadata.uid}"])
}

/// Whether `kind/name` is gone (NotFound).
fn gone(c: &Cluster, kind: &str, name: &str) -> bool {
    let out = c.run(&["get", kind, name], None);
    !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("NotFound")
}

/// An owner reference to a ConfigMap.
struct Ref<'a> {
    name: &'a str,
    uid: &'a str,
    block: bool,
}

/// A ConfigMap, Secret or Widget in `default` with the given owners and finalizers.
fn object(kind: &str, name: &str, owners: &[Ref<'_>], finalizers: &[&str]) -> String {
    let api_version = if kind == "Widget" {
        "example.com/v1"
    } else {
        "v1"
    };
    let refs: Vec<Value> = owners
        .iter()
        .map(|r| {
            serde_json::json!({
                "apiVersion": "v1", "kind": "ConfigMap", "name": r.name, "uid": r.uid,
                "blockOwnerDeletion": r.block,
            })
        })
        .collect();
    serde_json::json!({
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": "default",
            "ownerReferences": refs,
            "finalizers": finalizers,
        },
    })
    .to_string()
}

fn create(c: &Cluster, manifest: &str) {
    c.ok_in(&["create", "-f", "-"], Some(manifest));
}

fn owner_uids(c: &Cluster, kind: &str, name: &str) -> Vec<String> {
    let o = c.json(&["get", kind, name]);
    o["metadata"]["ownerReferences"]
        .as_array()
        .map(|refs| {
            refs.iter()
                .map(|r| r["uid"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn release(c: &Cluster, kind: &str, name: &str) {
    c.ok(&[
        "patch",
        kind,
        name,
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);
}

/// Background cascade: dependents whose owners are all gone go (a custom resource included);
/// one with a second, living owner only loses the reference; an owner recreated under the same
/// name (another uid) does not keep the old one's dependents.
fn background(minor: u32) {
    let Some(c) = Cluster::start(minor) else {
        return;
    };
    c.ok_in(&["apply", "-f", "-"], Some(CRD));
    c.ok(&[
        "wait",
        "--for=condition=Established",
        "crd/widgets.example.com",
        "--timeout=20s",
    ]);
    c.ok(&["create", "configmap", "owner"]);
    c.ok(&["create", "configmap", "other"]);
    let (owner, other) = (uid(&c, "configmap", "owner"), uid(&c, "configmap", "other"));
    let to_owner = || Ref {
        name: "owner",
        uid: &owner,
        block: false,
    };
    create(&c, &object("ConfigMap", "dep-cm", &[to_owner()], &[]));
    create(&c, &object("Secret", "dep-secret", &[to_owner()], &[]));
    create(&c, &object("Widget", "dep-widget", &[to_owner()], &[]));
    let both = [
        to_owner(),
        Ref {
            name: "other",
            uid: &other,
            block: false,
        },
    ];
    create(&c, &object("ConfigMap", "dep-both", &both, &[]));
    // A reference whose uid is not the current `other`'s: that owner is gone.
    let stale = Ref {
        name: "other",
        uid: "00000000-0000-0000-0000-000000000000",
        block: false,
    };
    create(&c, &object("ConfigMap", "dep-stale", &[stale], &[]));

    c.ok(&["delete", "configmap", "owner", "--cascade=background"]);
    c.eventually("the dependents to be collected", || {
        gone(&c, "configmap", "dep-cm")
            && gone(&c, "secret", "dep-secret")
            && gone(&c, "widget", "dep-widget")
            && gone(&c, "configmap", "dep-stale")
    });
    c.eventually("the dangling reference to be removed", || {
        owner_uids(&c, "configmap", "dep-both") == [other.clone()]
    });
    // The living owner and the object it owns stay.
    assert!(!gone(&c, "configmap", "other"));
    assert!(!gone(&c, "configmap", "dep-both"));
}

#[test]
fn background_cascade_collects_dependents_kubectl_1_33() {
    background(33);
}

#[test]
fn background_cascade_collects_dependents_kubectl_1_27() {
    background(27);
}

/// Foreground cascade: the owner stays, with its deletionTimestamp, until no dependent with
/// `blockOwnerDeletion` is left; a non-blocking dependent does not hold it. The API server adds
/// the `foregroundDeletion` finalizer for `propagationPolicy: Foreground`.
fn foreground(minor: u32) {
    let Some(c) = Cluster::start(minor) else {
        return;
    };
    create(&c, &object("ConfigMap", "owner", &[], &[]));
    let owner = uid(&c, "configmap", "owner");
    let to_owner = |block| Ref {
        name: "owner",
        uid: &owner,
        block,
    };
    let hold = ["example.com/hold"];
    create(&c, &object("ConfigMap", "free", &[to_owner(true)], &[]));
    create(&c, &object("Secret", "held", &[to_owner(true)], &hold));
    create(&c, &object("ConfigMap", "loose", &[to_owner(false)], &hold));

    c.ok(&[
        "delete",
        "configmap",
        "owner",
        "--cascade=foreground",
        "--wait=false",
    ]);
    c.eventually("the dependents to be deleted", || {
        gone(&c, "configmap", "free")
            && c.json(&["get", "secret", "held"])["metadata"]["deletionTimestamp"].is_string()
            && c.json(&["get", "configmap", "loose"])["metadata"]["deletionTimestamp"].is_string()
    });
    // The blocking dependent is still there: the owner waits.
    std::thread::sleep(Duration::from_secs(2));
    let o = c.json(&["get", "configmap", "owner"]);
    assert!(o["metadata"]["deletionTimestamp"].is_string(), "{o}");
    assert_eq!(
        o["metadata"]["finalizers"],
        serde_json::json!(["foregroundDeletion"])
    );

    release(&c, "secret", "held");
    c.eventually("the owner to go once its blocking dependent went", || {
        gone(&c, "secret", "held") && gone(&c, "configmap", "owner")
    });
    // The non-blocking dependent did not hold the owner back.
    assert!(!gone(&c, "configmap", "loose"));
    release(&c, "configmap", "loose");
    c.eventually("the loose dependent to go", || {
        gone(&c, "configmap", "loose")
    });
}

#[test]
fn foreground_cascade_waits_for_blocking_dependents_kubectl_1_33() {
    foreground(33);
}

#[test]
fn foreground_cascade_waits_for_blocking_dependents_kubectl_1_27() {
    foreground(27);
}

/// Orphan cascade: the dependents stay and lose their references to the owner, then the owner
/// goes. The API server adds the `orphan` finalizer for `propagationPolicy: Orphan`.
fn orphan(minor: u32) {
    let Some(c) = Cluster::start(minor) else {
        return;
    };
    create(&c, &object("ConfigMap", "owner", &[], &[]));
    c.ok(&["create", "configmap", "other"]);
    let (owner, other) = (uid(&c, "configmap", "owner"), uid(&c, "configmap", "other"));
    let to_owner = || Ref {
        name: "owner",
        uid: &owner,
        block: true,
    };
    create(&c, &object("ConfigMap", "dep-cm", &[to_owner()], &[]));
    create(&c, &object("Secret", "dep-secret", &[to_owner()], &[]));
    let both = [
        to_owner(),
        Ref {
            name: "other",
            uid: &other,
            block: false,
        },
    ];
    create(&c, &object("ConfigMap", "dep-both", &both, &[]));

    c.ok(&[
        "delete",
        "configmap",
        "owner",
        "--cascade=orphan",
        "--wait=false",
    ]);
    c.eventually("the orphaned owner to go", || {
        gone(&c, "configmap", "owner")
    });
    assert!(owner_uids(&c, "configmap", "dep-cm").is_empty());
    assert!(owner_uids(&c, "secret", "dep-secret").is_empty());
    assert_eq!(owner_uids(&c, "configmap", "dep-both"), [other]);
    // Nothing collects the orphans later.
    std::thread::sleep(Duration::from_secs(2));
    for (kind, name) in [
        ("configmap", "dep-cm"),
        ("secret", "dep-secret"),
        ("configmap", "dep-both"),
    ] {
        assert!(!gone(&c, kind, name), "{kind}/{name} was collected");
    }
}

#[test]
fn orphan_cascade_keeps_dependents_kubectl_1_33() {
    orphan(33);
}

#[test]
fn orphan_cascade_keeps_dependents_kubectl_1_27() {
    orphan(27);
}

/// `kubectl delete --cascade=foreground|orphan` on an owner without finalizers: the API server
/// adds `foregroundDeletion`/`orphan` (upstream's `deletionFinalizersForGarbageCollection`).
#[test]
fn cascade_flags_ask_the_garbage_collector() {
    let Some(c) = Cluster::start(33) else { return };
    c.ok(&["create", "configmap", "fg"]);
    let fg = uid(&c, "configmap", "fg");
    let held = Ref {
        name: "fg",
        uid: &fg,
        block: true,
    };
    create(
        &c,
        &object("ConfigMap", "held", &[held], &["example.com/hold"]),
    );
    c.ok(&[
        "delete",
        "configmap",
        "fg",
        "--cascade=foreground",
        "--wait=false",
    ]);
    let o = c.json(&["get", "configmap", "fg"]);
    assert!(o["metadata"]["deletionTimestamp"].is_string(), "{o}");
    release(&c, "configmap", "held");
    c.eventually("the foreground owner to go", || gone(&c, "configmap", "fg"));

    c.ok(&["create", "configmap", "or"]);
    let or = uid(&c, "configmap", "or");
    let kept = Ref {
        name: "or",
        uid: &or,
        block: false,
    };
    create(&c, &object("ConfigMap", "kept", &[kept], &[]));
    c.ok(&["delete", "configmap", "or", "--cascade=orphan"]);
    c.eventually("the orphaned owner to go", || gone(&c, "configmap", "or"));
    std::thread::sleep(Duration::from_secs(2));
    assert!(!gone(&c, "configmap", "kept"));
    assert!(owner_uids(&c, "configmap", "kept").is_empty());
}

/// Pod GC: an unscheduled pod that is terminating (held here by a finalizer) is marked Failed
/// by the `PodGC` field manager and force-deleted at once, without waiting for a kubelet.
#[test]
fn unscheduled_terminating_pods_are_failed_and_force_deleted() {
    let Some(c) = Cluster::start(33) else { return };
    let pod = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"stuck","namespace":"default",
        "finalizers":["example.com/hold"]},
        "spec":{"schedulerName":"nobody","containers":[{"name":"c","image":"busybox:1.36"}]}}"#;
    create(&c, pod);
    c.ok(&["delete", "pod", "stuck", "--wait=false"]);
    c.eventually("the pod to be marked Failed", || {
        c.json(&["get", "pod", "stuck"])["status"]["phase"] == "Failed"
    });
    let p = c.json(&["get", "pod", "stuck", "--show-managed-fields"]);
    let managers: Vec<&str> = p["metadata"]["managedFields"]
        .as_array()
        .map(|m| m.iter().filter_map(|e| e["manager"].as_str()).collect())
        .unwrap_or_default();
    assert!(managers.contains(&"PodGC"), "{p}");
    release(&c, "pod", "stuck");
    c.eventually("the pod to go", || gone(&c, "pod", "stuck"));
}
