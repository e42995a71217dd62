//! The in-process controller-manager against kubectl 1.33: leader election on its Lease, and
//! the namespace controller emptying a deleted namespace (custom resources included) so that a
//! plain `kubectl delete namespace` completes.

use crate::kubectl::Cluster;

/// A namespaced CRD with a schemaless v1, shared with the garbage collector tests.
pub(crate) const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
"#;

const WIDGET: &str = r#"
apiVersion: example.com/v1
kind: Widget
metadata: {name: gear, namespace: doomed}
spec: {size: 3}
"#;

fn install_crd(c: &Cluster) {
    c.ok_in(&["apply", "-f", "-"], Some(CRD));
    c.ok(&[
        "wait",
        "--for=condition=Established",
        "crd/widgets.example.com",
        "--timeout=20s",
    ]);
}

#[test]
fn controller_manager_holds_its_lease() {
    let Some(c) = Cluster::start(33) else { return };
    let mut lease = serde_json::Value::Null;
    c.eventually("the controller-manager lease", || {
        let out = c.run(
            &[
                "get",
                "lease",
                "kube-controller-manager",
                "-n",
                "kube-system",
                "-o",
                "json",
            ],
            None,
        );
        if !out.status.success() {
            return false;
        }
        lease = serde_json::from_slice(&out.stdout).unwrap();
        true
    });
    let spec = &lease["spec"];
    assert!(
        spec["holderIdentity"]
            .as_str()
            .is_some_and(|h| !h.is_empty()),
        "{lease}"
    );
    assert_eq!(spec["leaseDurationSeconds"], 15, "{lease}");
    assert!(spec["renewTime"].is_string(), "{lease}");
    // The leader renews it: renewTime moves on within a few retry periods.
    let first = spec["renewTime"].clone();
    c.eventually("a lease renewal", || {
        let l = c.json(&[
            "get",
            "lease",
            "kube-controller-manager",
            "-n",
            "kube-system",
        ]);
        l["spec"]["renewTime"] != first
    });
}

#[test]
fn deleting_a_namespace_removes_its_content() {
    let Some(c) = Cluster::start(33) else { return };
    install_crd(&c);
    c.ok(&["create", "namespace", "doomed"]);
    for name in ["one", "two"] {
        c.ok(&[
            "create",
            "configmap",
            name,
            "--from-literal=a=1",
            "-n",
            "doomed",
        ]);
    }
    c.ok(&[
        "create",
        "secret",
        "generic",
        "token",
        "--from-literal=t=x",
        "-n",
        "doomed",
    ]);
    c.ok(&[
        "create",
        "deployment",
        "web",
        "--image=busybox:1.36",
        "-n",
        "doomed",
    ]);
    c.ok_in(&["apply", "-f", "-"], Some(WIDGET));

    // kubectl waits for the namespace to be gone.
    assert_eq!(
        c.ok(&["delete", "namespace", "doomed"]),
        "namespace \"doomed\" deleted\n"
    );
    let err = c.fails(&["get", "namespace", "doomed"], None);
    assert!(err.contains("namespaces \"doomed\" not found"), "{err}");
    for what in ["all", "configmaps", "secrets", "widgets"] {
        let out = c.run(&["get", what, "-n", "doomed"], None);
        assert!(out.status.success(), "{out:?}");
        assert!(out.stdout.is_empty(), "{out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            "No resources found in doomed namespace.\n"
        );
    }
    // Nothing is left behind across namespaces either.
    let all = c.json(&["get", "widgets", "-A"]);
    assert_eq!(all["items"], serde_json::json!([]), "{all}");
}

#[test]
fn finalizers_hold_a_namespace_until_they_go() {
    let Some(c) = Cluster::start(33) else { return };
    c.ok(&["create", "namespace", "held"]);
    let held = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: keep\n  namespace: held\n  finalizers: [example.com/hold]\n";
    c.ok_in(&["apply", "-f", "-"], Some(held));
    c.ok(&["create", "configmap", "other", "-n", "held"]);
    c.ok(&["delete", "namespace", "held", "--wait=false"]);

    // Upstream's condition messages say what is left and which finalizers hold it.
    let mut ns = serde_json::Value::Null;
    c.eventually("the NamespaceContentRemaining condition", || {
        ns = c.json(&["get", "namespace", "held"]);
        ns["status"]["conditions"]
            .as_array()
            .is_some_and(|cs| cs.iter().any(|c| c["type"] == "NamespaceContentRemaining"))
    });
    let conditions = ns["status"]["conditions"].as_array().unwrap();
    let find = |t: &str| conditions.iter().find(|c| c["type"] == t).unwrap();
    let remaining = find("NamespaceContentRemaining");
    assert_eq!(remaining["status"], "True", "{ns}");
    assert_eq!(remaining["reason"], "SomeResourcesRemain", "{ns}");
    assert_eq!(
        remaining["message"], "Some resources are remaining: configmaps has 1 resource instances",
        "{ns}"
    );
    let finalizers = find("NamespaceFinalizersRemaining");
    assert_eq!(
        finalizers["message"],
        "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances",
        "{ns}"
    );
    assert_eq!(ns["status"]["phase"], "Terminating");
    assert!(
        c.fails(&["get", "configmap", "other", "-n", "held"], None)
            .contains("not found")
    );
    let keep = c.json(&["get", "configmap", "keep", "-n", "held"]);
    assert!(keep["metadata"]["deletionTimestamp"].is_string(), "{keep}");

    // Once the finalizer goes, the object and then the namespace go.
    c.ok(&[
        "patch",
        "configmap",
        "keep",
        "-n",
        "held",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);
    c.eventually("the namespace to go", || {
        !c.run(&["get", "namespace", "held"], None).status.success()
    });
}
