//! ResourceQuota admission against kubectl 1.33 and 1.27: a full quota refuses the next pod
//! with upstream's message, a quota on compute resources refuses pods that do not set them,
//! and a Deployment scaled over its quota reports the refusals as FailedCreate events of its
//! ReplicaSet. No nodes are needed: Pending pods count against a quota.

use serde_json::Value;

use crate::kubectl::Cluster;

fn used(c: &Cluster, ns: &str, quota: &str, resource: &str) -> Option<String> {
    let q = c.json(&["get", "quota", quota, "-n", ns]);
    q["status"]["used"][resource].as_str().map(str::to_string)
}

fn items(v: &Value) -> Vec<Value> {
    v["items"].as_array().cloned().unwrap_or_default()
}

fn quota_flow(c: &Cluster) {
    // pods=2: the third pod is refused.
    c.ok(&["create", "namespace", "counted"]);
    c.ok(&["create", "quota", "q", "--hard=pods=2", "-n", "counted"]);
    c.eventually("the quota's status", || {
        used(c, "counted", "q", "pods").as_deref() == Some("0")
    });
    for name in ["a", "b"] {
        c.ok(&["run", name, "--image=busybox:1.36", "-n", "counted"]);
    }
    c.eventually("2 pods used", || {
        used(c, "counted", "q", "pods").as_deref() == Some("2")
    });
    let stderr = c.fails(&["run", "c", "--image=busybox:1.36", "-n", "counted"], None);
    assert!(
        stderr.contains(
            "pods \"c\" is forbidden: exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("(Forbidden)"), "{stderr}");
    // Deleting a pod gives its slot back (the controller recomputes the usage).
    // (Unscheduled, so it goes at once.)
    c.ok(&["delete", "pod", "a", "-n", "counted"]);
    c.eventually("1 pod used", || {
        used(c, "counted", "q", "pods").as_deref() == Some("1")
    });
    c.ok(&["run", "c", "--image=busybox:1.36", "-n", "counted"]);

    // requests.cpu: pods must set it, and the sum stays within the quota.
    c.ok(&["create", "namespace", "compute"]);
    c.ok(&[
        "create",
        "quota",
        "cpu",
        "--hard=requests.cpu=1,pods=10",
        "-n",
        "compute",
    ]);
    c.eventually("the compute quota's status", || {
        used(c, "compute", "cpu", "requests.cpu").is_some()
    });
    let stderr = c.fails(
        &["run", "nores", "--image=busybox:1.36", "-n", "compute"],
        None,
    );
    assert!(
        stderr.contains(
            "pods \"nores\" is forbidden: failed quota: cpu: must specify requests.cpu for: nores"
        ),
        "{stderr}"
    );
    let pod = |name: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: compute}}\n\
             spec: {{containers: [{{name: c, image: busybox:1.36, \
             resources: {{requests: {{cpu: 600m}}}}}}]}}\n"
        )
    };
    c.ok_in(&["apply", "-f", "-"], Some(&pod("first")));
    assert_eq!(
        used(c, "compute", "cpu", "requests.cpu").as_deref(),
        Some("600m")
    );
    let stderr = c.fails(&["apply", "-f", "-"], Some(&pod("second")));
    assert!(
        stderr.contains(
            "pods \"second\" is forbidden: exceeded quota: cpu, requested: requests.cpu=600m, used: requests.cpu=600m, limited: requests.cpu=1"
        ),
        "{stderr}"
    );

    // A Deployment scaled over its quota: the ReplicaSet's refused creates are events.
    c.ok(&["create", "namespace", "dep"]);
    c.ok(&["create", "quota", "q", "--hard=pods=2", "-n", "dep"]);
    c.eventually("the dep quota's status", || {
        used(c, "dep", "q", "pods").as_deref() == Some("0")
    });
    c.ok(&[
        "create",
        "deployment",
        "web",
        "--image=busybox:1.36",
        "--replicas=3",
        "-n",
        "dep",
    ]);
    c.eventually("a FailedCreate event with the quota message", || {
        let events = c.json(&[
            "get",
            "events",
            "-n",
            "dep",
            "--field-selector",
            "reason=FailedCreate",
        ]);
        items(&events).iter().any(|e| {
            e["involvedObject"]["kind"] == "ReplicaSet"
                && e["type"] == "Warning"
                && e["message"].as_str().is_some_and(|m| {
                    m.starts_with("Error creating: pods \"web-")
                        && m.contains(
                            "is forbidden: exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2",
                        )
                })
        })
    });
    // Never more pods than the quota allows, however the creates raced.
    assert_eq!(items(&c.json(&["get", "pods", "-n", "dep"])).len(), 2);
    assert_eq!(used(c, "dep", "q", "pods").as_deref(), Some("2"));
}

crate::kubectl::both_versions!(quota_flow);

/// The VolumeAttributesClass scope: a quota on the claims of one class counts and refuses only
/// those, and validation refuses the scope on anything but claim counts and storage.
fn volume_attributes_class_quota_flow(c: &Cluster) {
    c.ok(&["create", "namespace", "vac"]);
    let quota = |name: &str, hard: &str| {
        format!(
            "apiVersion: v1\nkind: ResourceQuota\nmetadata: {{name: {name}, namespace: vac}}\n\
             spec:\n  hard: {{{hard}}}\n  scopeSelector:\n    matchExpressions:\n    \
             - {{scopeName: VolumeAttributesClass, operator: In, values: [gold]}}\n"
        )
    };
    let stderr = c.fails(
        &["apply", "-f", "-"],
        Some(&quota("bad", "pods: \"1\", persistentvolumeclaims: \"1\"")),
    );
    assert!(
        stderr.contains("spec.scopeSelector.matchExpressions: Invalid value: ")
            && stderr.contains("unsupported scope applied to resource"),
        "{stderr}"
    );
    c.ok_in(
        &["apply", "-f", "-"],
        Some(&quota(
            "gold",
            "persistentvolumeclaims: \"1\", requests.storage: 5Gi",
        )),
    );
    c.eventually("the gold quota's status", || {
        used(c, "vac", "gold", "persistentvolumeclaims").as_deref() == Some("0")
    });
    let claim = |name: &str, class: Option<&str>| {
        let class = class
            .map(|c| format!("  volumeAttributesClassName: {c}\n"))
            .unwrap_or_default();
        format!(
            "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: {name}, namespace: vac}}\n\
             spec:\n  accessModes: [ReadWriteOnce]\n{class}  resources: {{requests: {{storage: 1Gi}}}}\n"
        )
    };
    c.ok_in(&["apply", "-f", "-"], Some(&claim("first", Some("gold"))));
    assert_eq!(
        used(c, "vac", "gold", "requests.storage").as_deref(),
        Some("1Gi")
    );
    let stderr = c.fails(&["apply", "-f", "-"], Some(&claim("second", Some("gold"))));
    assert!(
        stderr.contains(
            "persistentvolumeclaims \"second\" is forbidden: exceeded quota: gold, requested: \
             persistentvolumeclaims=1, used: persistentvolumeclaims=1, limited: \
             persistentvolumeclaims=1"
        ),
        "{stderr}"
    );
    // Claims of no class, or of another one, are not the gold quota's business.
    c.ok_in(&["apply", "-f", "-"], Some(&claim("plain", None)));
    c.ok_in(
        &["apply", "-f", "-"],
        Some(&claim("silver", Some("silver"))),
    );
    // The controller's recount agrees with what admission charged.
    c.ok(&["delete", "pvc", "first", "-n", "vac"]);
    c.eventually("no gold claim used", || {
        used(c, "vac", "gold", "persistentvolumeclaims").as_deref() == Some("0")
    });
    c.ok_in(&["apply", "-f", "-"], Some(&claim("second", Some("gold"))));
}

crate::kubectl::both_versions!(volume_attributes_class_quota_flow);
