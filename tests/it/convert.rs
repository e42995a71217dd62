//! Versions sharing one storage, with kubectl 1.27 and 1.33: an events.k8s.io/v1 Event is a
//! core/v1 Event (`kubectl get events`, field selectors on `involvedObject.*`, `kubectl
//! describe` of the object it is about) and the other way round; an autoscaling/v2
//! HorizontalPodAutoscaler reads as autoscaling/v1 (what v1 cannot say rides in upstream's
//! annotations) and the other way round; writes and deletes work through either version.

use serde_json::json;

use crate::kubectl::Cluster;

const NEW_EVENT: &str = r#"
apiVersion: events.k8s.io/v1
kind: Event
metadata:
  name: web.new
  namespace: default
eventTime: "2024-05-06T07:08:09.123456Z"
reportingController: example.com/tester
reportingInstance: tester-1
action: Testing
reason: Converted
type: Warning
note: written through events.k8s.io
regarding:
  apiVersion: v1
  kind: ConfigMap
  name: web
  namespace: default
  uid: UID
"#;

const OLD_EVENT: &str = r#"
apiVersion: v1
kind: Event
metadata:
  name: web.old
  namespace: default
involvedObject:
  apiVersion: v1
  kind: ConfigMap
  name: web
  namespace: default
  uid: UID
reason: Legacy
message: written through core v1
type: Normal
count: 4
source:
  component: old-recorder
firstTimestamp: "2024-05-06T07:00:00Z"
lastTimestamp: "2024-05-06T07:08:00Z"
"#;

fn events_flow(c: &Cluster) {
    c.ok(&["create", "configmap", "web", "--from-literal=a=b"]);
    let uid = c.json(&["get", "configmap", "web"])["metadata"]["uid"]
        .as_str()
        .expect("uid")
        .to_string();
    c.ok_in(
        &["create", "-f", "-"],
        Some(&NEW_EVENT.replace("UID", &uid)),
    );
    c.ok_in(
        &["create", "-f", "-"],
        Some(&OLD_EVENT.replace("UID", &uid)),
    );

    // The new event is a core event: the table's columns and its message.
    let table = c.ok(&["get", "events"]);
    let header = table.lines().next().unwrap_or_default();
    for col in ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"] {
        assert!(header.contains(col), "{col} missing: {table}");
    }
    let row = table
        .lines()
        .find(|l| l.contains("Converted"))
        .unwrap_or_else(|| panic!("no events.k8s.io event in {table}"));
    for cell in ["Warning", "configmap/web", "written through events.k8s.io"] {
        assert!(row.contains(cell), "{cell} missing: {row}");
    }
    let core = c.json(&["get", "event", "web.new"]);
    assert_eq!(core["apiVersion"], "v1");
    assert_eq!(core["involvedObject"]["uid"], uid.as_str());
    assert_eq!(core["message"], "written through events.k8s.io");
    assert_eq!(core["reportingComponent"], "example.com/tester");
    assert_eq!(core["reportingInstance"], "tester-1");
    assert_eq!(core["eventTime"], "2024-05-06T07:08:09.123456Z");
    assert!(core.get("regarding").is_none() && core.get("note").is_none());

    // Field selectors of core/v1 find it; of events.k8s.io/v1 too.
    let found = c.json(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=web,involvedObject.kind=ConfigMap,reason=Converted",
    ]);
    let names: Vec<&str> = found["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["metadata"]["name"].as_str())
        .collect();
    assert_eq!(names, ["web.new"]);
    assert_eq!(found["items"][0]["involvedObject"]["name"], "web");
    let found = c.json(&[
        "get",
        "events",
        "--field-selector",
        &format!("involvedObject.uid={uid},reportingComponent=example.com/tester"),
    ]);
    assert_eq!(found["items"].as_array().unwrap().len(), 1, "{found}");
    let none = c.json(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=other",
    ]);
    assert_eq!(none["items"], json!([]));
    let v1 = c.json(&[
        "get",
        "events.v1.events.k8s.io",
        "--field-selector",
        "regarding.name=web,reportingController=example.com/tester",
    ]);
    assert_eq!(v1["items"].as_array().unwrap().len(), 1, "{v1}");
    assert_eq!(v1["items"][0]["note"], "written through events.k8s.io");

    // Watches convert too, their initial ADDED events and their field selectors included.
    let watched = |path: &str| -> Vec<serde_json::Value> {
        c.ok(&["get", "--raw", path])
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    };
    let core_watch = watched(
        "/api/v1/namespaces/default/events?watch=1&timeoutSeconds=1&fieldSelector=involvedObject.name%3Dweb%2Creason%3DConverted",
    );
    assert_eq!(core_watch.len(), 1, "{core_watch:?}");
    assert_eq!(core_watch[0]["type"], "ADDED");
    assert_eq!(core_watch[0]["object"]["apiVersion"], "v1");
    assert_eq!(
        core_watch[0]["object"]["message"],
        "written through events.k8s.io"
    );
    let v1_watch = watched(
        "/apis/events.k8s.io/v1/namespaces/default/events?watch=1&timeoutSeconds=1&fieldSelector=regarding.name%3Dweb%2Creason%3DLegacy",
    );
    assert_eq!(v1_watch.len(), 1, "{v1_watch:?}");
    assert_eq!(v1_watch[0]["object"]["apiVersion"], "events.k8s.io/v1");
    assert_eq!(v1_watch[0]["object"]["note"], "written through core v1");

    // `kubectl describe` lists both events of the object, whichever API wrote them.
    let described = c.ok(&["describe", "configmap", "web"]);
    for text in [
        "Converted",
        "written through events.k8s.io",
        "Legacy",
        "written through core v1",
    ] {
        assert!(described.contains(text), "{text} missing: {described}");
    }

    // The old event reads through events.k8s.io/v1 with its deprecated fields.
    let old = c.json(&["get", "events.v1.events.k8s.io", "web.old"]);
    assert_eq!(old["apiVersion"], "events.k8s.io/v1");
    assert_eq!(old["regarding"]["uid"], uid.as_str());
    assert_eq!(old["note"], "written through core v1");
    assert_eq!(old["deprecatedCount"], 4);
    assert_eq!(old["deprecatedSource"]["component"], "old-recorder");
    assert_eq!(old["deprecatedFirstTimestamp"], "2024-05-06T07:00:00Z");
    assert!(old.get("involvedObject").is_none() && old.get("message").is_none());
    let table = c.ok(&["get", "events.v1.events.k8s.io"]);
    assert!(
        table.contains("Legacy") && table.contains("Converted"),
        "{table}"
    );

    // A patch applies to the request's version and lands in the shared object.
    c.ok(&[
        "patch",
        "events.v1.events.k8s.io",
        "web.new",
        "--type=merge",
        "-p",
        r#"{"series":{"count":2,"lastObservedTime":"2024-05-06T07:09:00.000000Z"}}"#,
    ]);
    let core = c.json(&["get", "event", "web.new"]);
    assert_eq!(core["series"]["count"], 2);
    // A strategic merge patch through core changes what events.k8s.io shows.
    c.ok(&[
        "patch",
        "event",
        "web.old",
        "-p",
        r#"{"message":"patched through core"}"#,
    ]);
    let old = c.json(&["get", "events.v1.events.k8s.io", "web.old"]);
    assert_eq!(old["note"], "patched through core");
    // Dry run answers in the request's version and stores nothing.
    let dry = c.json(&[
        "patch",
        "events.v1.events.k8s.io",
        "web.old",
        "--type=merge",
        "-p",
        r#"{"series":{"count":5,"lastObservedTime":"2024-05-06T07:09:00.000000Z"}}"#,
        "--dry-run=server",
    ]);
    assert_eq!(dry["series"]["count"], 5);
    assert_eq!(dry["note"], "patched through core");
    assert_eq!(dry["apiVersion"], "events.k8s.io/v1");
    assert!(c.json(&["get", "event", "web.old"]).get("series").is_none());

    // Validation follows the request's version: events.k8s.io/v1 is strict, core is lax.
    let err = c.fails(
        &["create", "-f", "-"],
        Some(
            "apiVersion: events.k8s.io/v1\nkind: Event\nmetadata: {name: bad}\nreason: X\ntype: Odd\n",
        ),
    );
    for text in ["eventTime: Required value", "type: Invalid value"] {
        assert!(err.contains(text), "{text} missing: {err}");
    }
    c.ok_in(
        &["create", "-f", "-"],
        Some("apiVersion: v1\nkind: Event\nmetadata: {name: lax}\ninvolvedObject: {kind: Pod, name: p}\n"),
    );
    // The new API's events are immutable but for their series.
    let err = c.fails(
        &[
            "patch",
            "events.v1.events.k8s.io",
            "web.new",
            "--type=merge",
            "-p",
            r#"{"note":"changed"}"#,
        ],
        None,
    );
    assert!(
        err.contains("note") || err.contains("message: Invalid value"),
        "{err}"
    );

    // Deletes work from either version.
    c.ok(&["delete", "event", "web.new"]);
    let err = c.fails(&["get", "events.v1.events.k8s.io", "web.new"], None);
    assert!(
        err.contains("NotFound") || err.contains("not found"),
        "{err}"
    );
    c.ok(&["delete", "events.v1.events.k8s.io", "--all"]);
    assert_eq!(c.ok(&["get", "events", "-o", "name"]).trim(), "");
}

const HPA_V2: &str = r#"
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: web
  namespace: default
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: web
  minReplicas: 2
  maxReplicas: 10
  metrics:
  - type: Resource
    resource:
      name: cpu
      target:
        type: Utilization
        averageUtilization: 60
  - type: Resource
    resource:
      name: memory
      target:
        type: AverageValue
        averageValue: 500Mi
  behavior:
    scaleDown:
      stabilizationWindowSeconds: 120
"#;

const HPA_V1: &str = r#"
apiVersion: autoscaling/v1
kind: HorizontalPodAutoscaler
metadata:
  name: api
  namespace: default
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: api
  maxReplicas: 4
  targetCPUUtilizationPercentage: 70
"#;

/// Full names: kubectl 1.33 expands the short name `hpa` to its preferred version and drops
/// the `.v1` of `hpa.v1.autoscaling` (1.27 keeps it).
const V1: &str = "horizontalpodautoscalers.v1.autoscaling";
const V2: &str = "horizontalpodautoscalers.v2.autoscaling";

fn hpa_flow(c: &Cluster) {
    c.ok_in(&["create", "-f", "-"], Some(HPA_V2));
    let v1 = c.json(&["get", V1, "web"]);
    assert_eq!(v1["apiVersion"], "autoscaling/v1");
    assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 60);
    assert_eq!(v1["spec"]["minReplicas"], 2);
    assert_eq!(v1["spec"]["maxReplicas"], 10);
    assert!(v1["spec"].get("metrics").is_none());
    let annotations = &v1["metadata"]["annotations"];
    let metrics: serde_json::Value = serde_json::from_str(
        annotations["autoscaling.alpha.kubernetes.io/metrics"]
            .as_str()
            .expect("metrics annotation"),
    )
    .unwrap();
    assert_eq!(
        metrics,
        json!([{"type": "Resource", "resource": {"name": "memory", "targetAverageValue": "500Mi"}}])
    );
    let behavior = annotations["autoscaling.alpha.kubernetes.io/behavior"]
        .as_str()
        .expect("behavior annotation");
    assert!(
        behavior.contains("\"StabilizationWindowSeconds\":120"),
        "{behavior}"
    );
    let yaml = c.ok(&["get", V1, "web", "-o", "yaml"]);
    assert!(
        yaml.contains("apiVersion: autoscaling/v1")
            && yaml.contains("targetCPUUtilizationPercentage: 60"),
        "{yaml}"
    );
    // The v2 object is intact; the annotations never show there.
    let v2 = c.json(&["get", V2, "web"]);
    assert_eq!(v2["spec"]["metrics"].as_array().unwrap().len(), 2);
    assert_eq!(
        v2["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"],
        120
    );
    assert!(v2["metadata"].get("annotations").is_none(), "{v2}");

    // An update through v1 keeps what only v2 can say.
    c.ok(&[
        "patch",
        V1,
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"targetCPUUtilizationPercentage":75,"maxReplicas":12}}"#,
    ]);
    let v2 = c.json(&["get", V2, "web"]);
    assert_eq!(v2["spec"]["maxReplicas"], 12);
    let metrics = v2["spec"]["metrics"].as_array().unwrap();
    assert_eq!(metrics.len(), 2, "{v2}");
    assert!(
        metrics.iter().any(|m| m["resource"]["name"] == "memory"
            && m["resource"]["target"]["averageValue"] == "500Mi")
    );
    assert!(
        metrics.iter().any(|m| m["resource"]["name"] == "cpu"
            && m["resource"]["target"]["averageUtilization"] == 75)
    );
    assert_eq!(
        v2["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"],
        120
    );

    // Created as v1, read as v2.
    c.ok_in(&["create", "-f", "-"], Some(HPA_V1));
    let v2 = c.json(&["get", V2, "api"]);
    assert_eq!(v2["apiVersion"], "autoscaling/v2");
    assert_eq!(
        v2["spec"]["metrics"],
        json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}])
    );
    assert_eq!(v2["spec"]["minReplicas"], 1);
    let table = c.ok(&["get", "hpa"]);
    assert!(table.contains("web") && table.contains("api"), "{table}");
    let listed = c.json(&["get", V1]);
    assert_eq!(listed["items"].as_array().unwrap().len(), 2, "{listed}");

    // Deletes from either version.
    c.ok(&["delete", V1, "web"]);
    let err = c.fails(&["get", V2, "web"], None);
    assert!(err.contains("not found"), "{err}");
    c.ok(&["delete", V2, "api"]);
    assert_eq!(c.ok(&["get", V1, "-o", "name"]).trim(), "");
}

#[test]
fn shared_storage_kubectl_1_27() {
    if let Some(c) = Cluster::start(27) {
        events_flow(&c);
        hpa_flow(&c);
    }
}

#[test]
fn shared_storage_kubectl_1_33() {
    if let Some(c) = Cluster::start(33) {
        events_flow(&c);
        hpa_flow(&c);
    }
}
