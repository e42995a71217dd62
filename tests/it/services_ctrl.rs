//! The Service endpoint controllers (Endpoints and EndpointSlices), the serviceaccounts
//! controller and root-ca-cert-publisher, the resource quota controller and the disruption
//! controller, driven by kubectl 1.27 and 1.33 on simulated nodes (`support::simnodes`): the
//! kubelet stand-in makes pods Running and Ready with a podIP, so Services get endpoints.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::kubectl::Cluster;
use crate::support::simnodes::{self, Heartbeat, Kubelet, NodeSpec};

/// A cluster with simulated nodes in zone `zone-a`, their heartbeat and the kubelet stand-in.
struct Sim {
    c: Cluster,
    // Dropped before the runtime (fields drop in order): they abort their tasks.
    _heartbeat: Heartbeat,
    _kubelet: Kubelet,
    _rt: tokio::runtime::Runtime,
}

impl Sim {
    fn start(minor: u32, n: usize) -> Option<Sim> {
        let c = Cluster::start(minor)?;
        let rt = tokio::runtime::Runtime::new().unwrap();
        let spec = NodeSpec {
            labels: BTreeMap::from([(
                "topology.kubernetes.io/zone".to_string(),
                "zone-a".to_string(),
            )]),
            ..NodeSpec::default()
        };
        let (heartbeat, kubelet) = rt.block_on(async {
            let kc = kube::config::Kubeconfig::read_from(c.kubeconfig()).unwrap();
            let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .unwrap();
            let client = kube::Client::try_from(config).unwrap();
            let nodes = simnodes::create_nodes(&client, n, &spec).await.unwrap();
            (
                Heartbeat::start(client.clone(), &nodes, Duration::from_secs(10)),
                Kubelet::start(client, &nodes),
            )
        });
        Some(Sim {
            c,
            _heartbeat: heartbeat,
            _kubelet: kubelet,
            _rt: rt,
        })
    }
}

/// Polls until `check` holds, failing with the server's log after 60 s (a deadline against
/// hanging, not a timing assertion).
fn eventually(c: &Cluster, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; server log:\n{}",
            c.server_log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn items(v: &Value) -> Vec<Value> {
    v["items"].as_array().cloned().unwrap_or_default()
}

/// (ready IPs, not-ready IPs, ports) of an Endpoints object.
fn endpoint_addresses(e: &Value) -> (Vec<String>, Vec<String>, Vec<i64>) {
    let mut ready = Vec::new();
    let mut not_ready = Vec::new();
    let mut ports = Vec::new();
    for s in e["subsets"].as_array().into_iter().flatten() {
        for a in s["addresses"].as_array().into_iter().flatten() {
            ready.push(a["ip"].as_str().unwrap_or_default().to_string());
        }
        for a in s["notReadyAddresses"].as_array().into_iter().flatten() {
            not_ready.push(a["ip"].as_str().unwrap_or_default().to_string());
        }
        for p in s["ports"].as_array().into_iter().flatten() {
            ports.push(p["port"].as_i64().unwrap_or_default());
        }
    }
    (ready, not_ready, ports)
}

/// The endpoints of every slice of a Service.
fn slice_endpoints(c: &Cluster, service: &str) -> Vec<Value> {
    let label = format!("kubernetes.io/service-name={service}");
    let slices = c.json(&["get", "endpointslices", "-l", &label]);
    items(&slices)
        .iter()
        .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
        .collect()
}

fn ready_count(endpoints: &[Value]) -> usize {
    endpoints
        .iter()
        .filter(|e| e["conditions"]["ready"] == true)
        .count()
}

/// Endpoints and slices for `kubectl expose`, scaling, named target ports, the `kubernetes`
/// slice; then a quota's usage and a PodDisruptionBudget over the same Deployment.
fn services_quotas_and_budgets(minor: u32) {
    let Some(s) = Sim::start(minor, 2) else {
        return;
    };
    let c = &s.c;
    // The API server's `kubernetes` Endpoints get their slice.
    eventually(c, "the kubernetes EndpointSlice", || {
        c.run(&["get", "endpointslice", "kubernetes"], None)
            .status
            .success()
    });
    let k = c.json(&["get", "endpointslice", "kubernetes"]);
    assert_eq!(
        k["metadata"]["labels"]["kubernetes.io/service-name"],
        "kubernetes"
    );
    assert_eq!(k["endpoints"][0]["conditions"]["ready"], true, "{k}");
    assert_eq!(k["ports"][0]["name"], "https", "{k}");
    // ... and keep their Endpoints.
    let e = c.json(&["get", "endpoints", "kubernetes"]);
    assert_eq!(endpoint_addresses(&e).0.len(), 1, "{e}");

    c.ok(&[
        "create",
        "deployment",
        "web",
        "--image=busybox",
        "--replicas=3",
    ]);
    c.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    c.ok(&[
        "expose",
        "deployment",
        "web",
        "--port",
        "80",
        "--target-port",
        "8080",
    ]);
    eventually(c, "3 ready addresses in the Endpoints", || {
        let e = c.json(&["get", "endpoints", "web"]);
        endpoint_addresses(&e).0.len() == 3
    });
    let e = c.json(&["get", "endpoints", "web"]);
    let (ready, not_ready, ports) = endpoint_addresses(&e);
    assert!(not_ready.is_empty() && ports == [8080], "{e}");
    let pods = c.json(&["get", "pods", "-l", "app=web"]);
    let mut pod_ips: Vec<String> = items(&pods)
        .iter()
        .map(|p| p["status"]["podIP"].as_str().unwrap().to_string())
        .collect();
    pod_ips.sort();
    let mut ready = ready;
    ready.sort();
    assert_eq!(ready, pod_ips);
    let address = &e["subsets"][0]["addresses"][0];
    assert_eq!(address["targetRef"]["kind"], "Pod", "{e}");
    assert!(address["nodeName"].as_str().unwrap().starts_with("sim-"));
    assert!(
        e["metadata"]["annotations"]["endpoints.kubernetes.io/last-change-trigger-time"]
            .is_string(),
        "{e}"
    );
    let table = c.ok(&["get", "endpoints", "web"]);
    assert!(table.contains(":8080"), "{table}");

    eventually(c, "3 ready endpoints in the slices", || {
        ready_count(&slice_endpoints(c, "web")) == 3
    });
    let slices = c.json(&[
        "get",
        "endpointslices",
        "-l",
        "kubernetes.io/service-name=web",
    ]);
    let slice = &items(&slices)[0];
    assert_eq!(items(&slices).len(), 1, "{slices}");
    assert_eq!(slice["addressType"], "IPv4");
    assert_eq!(
        slice["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.k8s.io"
    );
    assert!(
        slice["metadata"]["name"]
            .as_str()
            .unwrap()
            .starts_with("web-")
    );
    assert_eq!(slice["metadata"]["ownerReferences"][0]["kind"], "Service");
    assert_eq!(slice["ports"][0]["port"], 8080);
    let ep = &slice["endpoints"][0];
    assert_eq!(ep["zone"], "zone-a", "{slice}");
    assert_eq!(ep["conditions"]["serving"], true);
    assert_eq!(ep["conditions"]["terminating"], false);
    assert_eq!(ep["targetRef"]["kind"], "Pod");
    let table = c.ok(&["get", "endpointslices"]);
    assert!(table.contains("IPv4"), "{table}");

    // A ResourceQuota sees the pods (before the scale-down, with requests set below).
    c.ok(&[
        "create",
        "quota",
        "q",
        "--hard=pods=10,requests.cpu=2,configmaps=5,services=4",
    ]);
    eventually(c, "the quota's usage", || {
        let q = c.json(&["get", "quota", "q"]);
        q["status"]["used"]["pods"] == "3"
    });
    let q = c.json(&["get", "quota", "q"]);
    assert_eq!(q["status"]["hard"]["pods"], "10", "{q}");
    // `web` and `kubernetes`; `kube-root-ca.crt`.
    assert_eq!(q["status"]["used"]["services"], "2", "{q}");
    assert_eq!(q["status"]["used"]["configmaps"], "1", "{q}");
    assert_eq!(q["status"]["used"]["requests.cpu"], "0", "{q}");

    // A PodDisruptionBudget over the deployment.
    c.ok(&[
        "create",
        "pdb",
        "web-min",
        "--selector=app=web",
        "--min-available=2",
    ]);
    c.ok(&[
        "create",
        "pdb",
        "web-max",
        "--selector=app=web",
        "--max-unavailable=50%",
    ]);
    eventually(c, "the budgets' status", || {
        let p = c.json(&["get", "pdb"]);
        items(&p)
            .iter()
            .all(|p| p["status"]["expectedPods"] == 3 && p["status"]["currentHealthy"] == 3)
    });
    let min = c.json(&["get", "pdb", "web-min"]);
    assert_eq!(min["status"]["disruptionsAllowed"], 1, "{min}");
    assert_eq!(min["status"]["desiredHealthy"], 2);
    let cond = &min["status"]["conditions"][0];
    assert_eq!(
        (&cond["type"], &cond["status"], &cond["reason"]),
        (
            &Value::from("DisruptionAllowed"),
            &Value::from("True"),
            &Value::from("SufficientPods")
        )
    );
    // 50% of 3 rounds up to 2 unavailable: 1 must stay, 2 may go.
    let max = c.json(&["get", "pdb", "web-max"]);
    assert_eq!(max["status"]["disruptionsAllowed"], 2, "{max}");
    let table = c.ok(&["get", "pdb"]);
    let row = |name: &str| -> Vec<String> {
        table
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{table}"))
            .split_whitespace()
            .map(String::from)
            .collect()
    };
    assert_eq!(row("web-min")[1..4], ["2", "N/A", "1"], "{table}");
    assert_eq!(row("web-max")[1..4], ["N/A", "50%", "2"], "{table}");

    // Scaling to 1 shrinks both, the quota, and the budget.
    c.ok(&["scale", "deployment", "web", "--replicas=1"]);
    eventually(c, "1 address in the Endpoints", || {
        let e = c.json(&["get", "endpoints", "web"]);
        let (r, n, _) = endpoint_addresses(&e);
        r.len() == 1 && n.is_empty()
    });
    eventually(c, "1 endpoint in the slices", || {
        let eps = slice_endpoints(c, "web");
        eps.len() == 1 && ready_count(&eps) == 1
    });
    eventually(c, "the quota to count 1 pod", || {
        c.json(&["get", "quota", "q"])["status"]["used"]["pods"] == "1"
    });
    eventually(c, "no disruption allowed", || {
        let p = c.json(&["get", "pdb", "web-min"]);
        p["status"]["disruptionsAllowed"] == 0
            && p["status"]["conditions"][0]["reason"] == "InsufficientPods"
    });

    // Requests are summed in Kubernetes' format.
    c.ok_in(
        &["apply", "-f", "-"],
        Some(
            r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: sized}
spec:
  replicas: 2
  selector: {matchLabels: {app: sized}}
  template:
    metadata: {labels: {app: sized}}
    spec:
      containers:
      - name: c
        image: busybox
        resources: {requests: {cpu: 250m, memory: 64Mi}}
"#,
        ),
    );
    eventually(c, "the quota to sum cpu requests", || {
        c.json(&["get", "quota", "q"])["status"]["used"]["requests.cpu"] == "500m"
    });
    let describe = c.ok(&["describe", "quota", "q"]);
    let line = |name: &str| -> Vec<String> {
        describe
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{describe}"))
            .split_whitespace()
            .map(String::from)
            .collect()
    };
    assert_eq!(line("pods"), ["pods", "3", "10"], "{describe}");
    assert_eq!(
        line("requests.cpu"),
        ["requests.cpu", "500m", "2"],
        "{describe}"
    );

    // A named target port resolves per pod: two Deployments name different container ports
    // `http`. (The quota above tracks requests.cpu, so quota admission wants every pod to set
    // it.)
    let named = |name: &str, port: u32| {
        format!(
            r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: named, variant: {name}}}}}
  template:
    metadata: {{labels: {{app: named, variant: {name}}}}}
    spec:
      containers:
      - name: c
        image: busybox
        ports: [{{name: http, containerPort: {port}}}]
        resources: {{requests: {{cpu: 100m}}}}
"#
        )
    };
    c.ok_in(&["apply", "-f", "-"], Some(&named("named-a", 8080)));
    c.ok_in(&["apply", "-f", "-"], Some(&named("named-b", 9090)));
    c.ok_in(
        &["apply", "-f", "-"],
        Some(
            r#"
apiVersion: v1
kind: Service
metadata: {name: named}
spec:
  selector: {app: named}
  ports: [{name: web, port: 80, targetPort: http}]
"#,
        ),
    );
    eventually(c, "both named ports in the Endpoints", || {
        let e = c.json(&["get", "endpoints", "named"]);
        let (r, _, mut ports) = endpoint_addresses(&e);
        ports.sort();
        r.len() == 2 && ports == [8080, 9090]
    });
    eventually(c, "two slices, one per port", || {
        let slices = c.json(&[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=named",
        ]);
        let mut ports: Vec<i64> = items(&slices)
            .iter()
            .filter(|s| s["endpoints"].as_array().is_some_and(|e| e.len() == 1))
            .map(|s| s["ports"][0]["port"].as_i64().unwrap_or_default())
            .collect();
        ports.sort();
        ports == [8080, 9090]
            && items(&slices)
                .iter()
                .all(|s| s["ports"][0]["name"] == "web")
    });

    // A deleted slice comes back; a deleted Service takes its Endpoints and slices along.
    let before = slice_endpoints(c, "web");
    let name = items(&c.json(&[
        "get",
        "endpointslices",
        "-l",
        "kubernetes.io/service-name=web",
    ]))[0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    c.ok(&["delete", "endpointslice", &name]);
    eventually(c, "the slice to be recreated", || {
        slice_endpoints(c, "web").len() == before.len()
    });
    c.ok(&["delete", "service", "web"]);
    eventually(c, "the Endpoints and slices to go", || {
        !c.run(&["get", "endpoints", "web"], None).status.success()
            && slice_endpoints(c, "web").is_empty()
            && items(&c.json(&[
                "get",
                "endpointslices",
                "-l",
                "kubernetes.io/service-name=web",
            ]))
            .is_empty()
    });
}

#[test]
fn services_quotas_and_budgets_kubectl_1_33() {
    services_quotas_and_budgets(33);
}

#[test]
fn services_quotas_and_budgets_kubectl_1_27() {
    services_quotas_and_budgets(27);
}

/// The base64 text of the kubeconfig's `certificate-authority-data`, decoded.
fn kubeconfig_ca(c: &Cluster) -> String {
    let text = std::fs::read_to_string(c.kubeconfig()).unwrap();
    let data = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("certificate-authority-data:"))
        .unwrap()
        .trim()
        .to_string();
    use base64::Engine;
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap(),
    )
    .unwrap()
}

/// Every namespace, a new one too, gets the `default` ServiceAccount and `kube-root-ca.crt`
/// with the server CA; both come back when deleted or edited.
fn service_accounts_and_root_ca(minor: u32) {
    let Some(c) = Cluster::start(minor) else {
        return;
    };
    let ca = kubeconfig_ca(&c);
    assert!(ca.contains("BEGIN CERTIFICATE"));
    c.ok(&["create", "namespace", "team"]);
    for ns in [
        "default",
        "kube-system",
        "kube-public",
        "kube-node-lease",
        "team",
    ] {
        eventually(&c, &format!("the default ServiceAccount in {ns}"), || {
            c.run(&["get", "serviceaccount", "default", "-n", ns], None)
                .status
                .success()
        });
        eventually(&c, &format!("kube-root-ca.crt in {ns}"), || {
            c.run(&["get", "configmap", "kube-root-ca.crt", "-n", ns], None)
                .status
                .success()
        });
        let cm = c.json(&["get", "configmap", "kube-root-ca.crt", "-n", ns]);
        assert_eq!(cm["data"]["ca.crt"].as_str(), Some(ca.as_str()), "{cm}");
        assert!(
            cm["metadata"]["annotations"]["kubernetes.io/description"]
                .as_str()
                .unwrap()
                .starts_with("Contains a CA bundle that can be used to verify the kube-apiserver")
        );
    }
    // The published CA verifies the API server: kubectl with only that CA file connects.
    let ca_file =
        std::env::temp_dir().join(format!("rk3s-root-ca-{}-{minor}.crt", std::process::id()));
    let cm = c.json(&["get", "configmap", "kube-root-ca.crt", "-n", "team"]);
    std::fs::write(&ca_file, cm["data"]["ca.crt"].as_str().unwrap()).unwrap();
    let out = c.ok(&[
        "get",
        "ns",
        "team",
        "-o",
        "name",
        "--certificate-authority",
        ca_file.to_str().unwrap(),
    ]);
    assert_eq!(out.trim(), "namespace/team");
    let _ = std::fs::remove_file(&ca_file);

    // Deleted: recreated.
    let uid = c.json(&["get", "sa", "default", "-n", "team"])["metadata"]["uid"].clone();
    c.ok(&["delete", "sa", "default", "-n", "team"]);
    eventually(&c, "the default ServiceAccount to come back", || {
        let out = c.run(&["get", "sa", "default", "-n", "team", "-o", "json"], None);
        out.status.success()
            && serde_json::from_slice::<Value>(&out.stdout).unwrap()["metadata"]["uid"] != uid
    });
    c.ok(&["delete", "configmap", "kube-root-ca.crt", "-n", "team"]);
    eventually(&c, "kube-root-ca.crt to come back", || {
        c.run(
            &["get", "configmap", "kube-root-ca.crt", "-n", "team"],
            None,
        )
        .status
        .success()
    });
    // Edited: restored.
    c.ok(&[
        "patch",
        "configmap",
        "kube-root-ca.crt",
        "-n",
        "team",
        "--type=merge",
        "-p",
        r#"{"data":{"ca.crt":"tampered","extra":"x"}}"#,
    ]);
    eventually(&c, "kube-root-ca.crt to be restored", || {
        let cm = c.json(&["get", "configmap", "kube-root-ca.crt", "-n", "team"]);
        cm["data"]["ca.crt"].as_str() == Some(ca.as_str()) && cm["data"]["extra"].is_null()
    });
}

#[test]
fn namespaces_get_the_default_service_account_and_root_ca_kubectl_1_33() {
    service_accounts_and_root_ca(33);
}

#[test]
fn namespaces_get_the_default_service_account_and_root_ca_kubectl_1_27() {
    service_accounts_and_root_ca(27);
}
