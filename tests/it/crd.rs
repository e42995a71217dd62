//! The CustomResourceDefinition flow with kubectl 1.27 and 1.33: create a CRD, wait until it
//! is Established, create and list custom resources with their printer columns, defaults,
//! validation, the status and scale subresources, a second served version, and deleting the
//! CRD deleting its resources.

use crate::kubectl::Cluster;

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: crontabs.stable.example.com
spec:
  group: stable.example.com
  scope: Namespaced
  names:
    plural: crontabs
    singular: crontab
    kind: CronTab
    shortNames: [ct]
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            description: What the job runs and when.
            properties:
              cronSpec:
                type: string
                description: When to run, in cron format.
                pattern: '^(\d+|\*)(/\d+)?(\s+(\d+|\*)(/\d+)?){4}$'
              image:
                type: string
              replicas:
                type: integer
                minimum: 1
                maximum: 10
                default: 1
            required: [cronSpec]
          status:
            type: object
            properties:
              replicas:
                type: integer
              selector:
                type: string
    subresources:
      status: {}
      scale:
        specReplicasPath: .spec.replicas
        statusReplicasPath: .status.replicas
        labelSelectorPath: .status.selector
    additionalPrinterColumns:
    - name: Spec
      type: string
      jsonPath: .spec.cronSpec
    - name: Replicas
      type: integer
      jsonPath: .spec.replicas
    - name: Age
      type: date
      jsonPath: .metadata.creationTimestamp
  - name: v1beta1
    served: true
    storage: false
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
"#;

const CRONTAB: &str = r#"
apiVersion: stable.example.com/v1
kind: CronTab
metadata:
  name: nightly
  labels: {team: ops}
spec:
  cronSpec: "0 3 * * *"
  image: backup:1.0
"#;

fn crd_flow(c: &Cluster) {
    c.ok_in(&["apply", "-f", "-"], Some(CRD));
    c.ok(&[
        "wait",
        "--for=condition=Established",
        "crd/crontabs.stable.example.com",
        "--timeout=20s",
    ]);
    let crd = c.json(&["get", "crd", "crontabs.stable.example.com"]);
    let conditions = crd["status"]["conditions"].as_array().expect("conditions");
    for t in ["NamesAccepted", "Established"] {
        assert!(
            conditions
                .iter()
                .any(|x| x["type"] == t && x["status"] == "True"),
            "{t} missing: {conditions:?}"
        );
    }
    assert_eq!(crd["status"]["acceptedNames"]["kind"], "CronTab");
    assert_eq!(crd["status"]["storedVersions"], serde_json::json!(["v1"]));

    // Discovery knows the new resource, its short name and subresources.
    let resources = c.ok(&["api-resources", "--api-group=stable.example.com"]);
    assert!(
        resources.contains("crontabs") && resources.contains("ct") && resources.contains("CronTab"),
        "{resources}"
    );

    explain(c, "When to run, in cron format.");

    // Create one; the default fills spec.replicas; the table has the printer columns.
    c.ok_in(&["apply", "-f", "-"], Some(CRONTAB));
    let obj = c.json(&["get", "ct", "nightly"]);
    assert_eq!(obj["spec"]["replicas"], 1, "{obj}");
    assert_eq!(obj["apiVersion"], "stable.example.com/v1");
    let table = c.ok(&["get", "crontabs"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "SPEC", "REPLICAS", "AGE"], "{table}");
    let row = table.lines().nth(1).expect("a row");
    assert!(
        row.starts_with("nightly") && row.contains("0 3 * * *"),
        "{table}"
    );
    // Server-side apply of a custom resource.
    let weekly = CRONTAB
        .replace("name: nightly", "name: weekly")
        .replace("0 3 * * *", "0 4 * * 0");
    c.ok_in(&["apply", "--server-side", "-f", "-"], Some(&weekly));
    c.ok_in(
        &["apply", "--server-side", "-f", "-"],
        Some(&weekly.replace("backup:1.0", "backup:1.1")),
    );
    assert_eq!(
        c.ok(&["get", "ct", "weekly", "-o", "jsonpath={.spec.image}"]),
        "backup:1.1"
    );
    c.ok(&["delete", "ct", "weekly"]);
    assert_eq!(
        c.ok(&["get", "ct", "-l", "team=ops", "-o", "name"]).trim(),
        "crontab.stable.example.com/nightly"
    );

    // The same object through the second served version.
    let beta = c.json(&["get", "crontabs.v1beta1.stable.example.com", "nightly"]);
    assert_eq!(beta["apiVersion"], "stable.example.com/v1beta1");
    assert_eq!(beta["spec"]["cronSpec"], "0 3 * * *");

    // Invalid objects are rejected with the field named, and nothing is stored.
    let bad = CRONTAB
        .replace("name: nightly", "name: bad")
        .replace("image: backup:1.0", "image: backup:1.0\n  replicas: 20");
    let err = c.fails(&["apply", "-f", "-"], Some(&bad));
    assert!(
        err.contains("spec.replicas") && err.contains("less than or equal to 10"),
        "{err}"
    );
    let missing = CRONTAB
        .replace("name: nightly", "name: bad")
        .replace("  cronSpec: \"0 3 * * *\"\n", "");
    let err = c.fails(&["apply", "-f", "-"], Some(&missing));
    assert!(
        err.contains("spec.cronSpec") && err.contains("Required value"),
        "{err}"
    );
    let pattern = CRONTAB
        .replace("name: nightly", "name: bad")
        .replace("0 3 * * *", "every night");
    let err = c.fails(&["apply", "-f", "-"], Some(&pattern));
    assert!(err.contains("spec.cronSpec"), "{err}");
    let unknown = CRONTAB
        .replace("name: nightly", "name: bad")
        .replace("image: backup:1.0", "image: backup:1.0\n  bogus: 1");
    let err = c.fails(&["apply", "-f", "-"], Some(&unknown));
    assert!(
        err.contains("unknown field") && err.contains("bogus"),
        "{err}"
    );
    assert!(
        c.ok(&["get", "ct", "-o", "name"]).trim() == "crontab.stable.example.com/nightly",
        "an invalid object was stored"
    );

    // The scale subresource follows the CRD's paths.
    c.ok(&["scale", "crontab", "nightly", "--replicas=3"]);
    assert_eq!(
        c.ok(&["get", "ct", "nightly", "-o", "jsonpath={.spec.replicas}"]),
        "3"
    );

    // The status subresource: status moves only through it, spec only through the object.
    c.ok(&[
        "patch",
        "crontab",
        "nightly",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"replicas":3,"selector":"team=ops"},"spec":{"image":"ignored"}}"#,
    ]);
    let obj = c.json(&["get", "ct", "nightly"]);
    assert_eq!(obj["status"]["replicas"], 3, "{obj}");
    assert_eq!(obj["spec"]["image"], "backup:1.0", "{obj}");
    c.ok(&[
        "patch",
        "crontab",
        "nightly",
        "--type=merge",
        "-p",
        r#"{"status":{"replicas":7},"spec":{"image":"backup:2.0"}}"#,
    ]);
    let obj = c.json(&["get", "ct", "nightly"]);
    assert_eq!(obj["status"]["replicas"], 3, "{obj}");
    assert_eq!(obj["spec"]["image"], "backup:2.0", "{obj}");
    let scale = c.ok(&[
        "get",
        "--raw",
        "/apis/stable.example.com/v1/namespaces/default/crontabs/nightly/scale",
    ]);
    let scale: serde_json::Value = serde_json::from_str(&scale).unwrap();
    assert_eq!(scale["status"]["selector"], "team=ops", "{scale}");
    assert_eq!(scale["status"]["replicas"], 3, "{scale}");

    // Deleting the CRD deletes its objects: a new CRD of the same name starts empty.
    c.ok(&["delete", "crd", "crontabs.stable.example.com"]);
    c.ok(&[
        "wait",
        "--for=delete",
        "crd/crontabs.stable.example.com",
        "--timeout=20s",
    ]);
    c.fails(&["explain", "crontab"], None);
    // Re-created with a changed schema: the documents change, and kubectl (whose cache is
    // keyed by the documents' hashes) shows the new one.
    let changed = CRD.replace("When to run, in cron format.", "The schedule.");
    c.ok_in(&["apply", "-f", "-"], Some(&changed));
    c.ok(&[
        "wait",
        "--for=condition=Established",
        "crd/crontabs.stable.example.com",
        "--timeout=20s",
    ]);
    assert_eq!(c.ok(&["get", "crontabs", "-o", "name"]).trim(), "");
    explain(c, "The schedule.");
    c.ok_in(&["apply", "-f", "-"], Some(CRONTAB));
}

/// `kubectl explain` finds the CronTab schema in the OpenAPI documents.
fn explain(c: &Cluster, cron_spec_description: &str) {
    let kind = c.ok(&["explain", "crontab"]);
    assert!(
        kind.contains("CronTab") && kind.contains("stable.example.com"),
        "{kind}"
    );
    for field in ["apiVersion", "kind", "metadata", "spec", "status"] {
        assert!(kind.contains(field), "{field} missing: {kind}");
    }
    assert!(kind.contains("ObjectMeta"), "{kind}");
    let spec = c.ok(&["explain", "crontab.spec"]);
    assert!(spec.contains("What the job runs and when."), "{spec}");
    assert!(
        spec.contains("cronSpec") && spec.contains("<string>"),
        "{spec}"
    );
    assert!(
        spec.contains("replicas") && spec.contains("<integer>"),
        "{spec}"
    );
    assert!(spec.contains(cron_spec_description), "{spec}");
    let recursive = c.ok(&["explain", "crontab.spec", "--recursive"]);
    for field in ["cronSpec", "image", "replicas"] {
        assert!(recursive.contains(field), "{field} missing: {recursive}");
    }
    let field = c.ok(&["explain", "crontab.spec.cronSpec"]);
    assert!(field.contains(cron_spec_description), "{field}");
}

#[test]
fn crd_flow_kubectl_1_27() {
    if let Some(c) = Cluster::start(27) {
        crd_flow(&c);
    }
}

#[test]
fn crd_flow_kubectl_1_33() {
    if let Some(c) = Cluster::start(33) {
        crd_flow(&c);
    }
}
