//! The `pods/eviction` subresource: `kubectl drain` (1.33 and 1.27) on simulated nodes
//! (`support::simnodes`) evicting a Deployment's pods, blocked by a PodDisruptionBudget until it
//! is relaxed, refusing a bare pod without `--force`; and the HTTP answers of the subresource
//! itself (the 429 Status with its `DisruptionBudget` cause, 404, 400, the 500 for two budgets).

use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

use crate::kubectl::Cluster;
use crate::support::simnodes::{self, Heartbeat, Kubelet, NodeSpec};

/// A cluster with two simulated nodes, their heartbeat and the kubelet stand-in.
struct Sim {
    c: Cluster,
    // Dropped before the runtime (fields drop in order): they abort their tasks.
    _heartbeat: Heartbeat,
    _kubelet: Kubelet,
    _rt: tokio::runtime::Runtime,
}

impl Sim {
    fn start(minor: u32) -> Option<Sim> {
        let c = Cluster::start(minor)?;
        let rt = tokio::runtime::Runtime::new().unwrap();
        let (heartbeat, kubelet) = rt.block_on(async {
            let client = client(&c).await;
            let nodes = simnodes::create_nodes(&client, 2, &NodeSpec::default())
                .await
                .unwrap();
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

    /// Polls until `check` holds, failing with the server's log after 60 s (a deadline against
    /// hanging, not a timing assertion).
    fn eventually(&self, what: &str, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !check() {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; server log:\n{}",
                self.c.server_log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The nodes of the pods labelled `app=<app>` that are not being deleted.
    fn nodes_of(&self, app: &str) -> Vec<String> {
        let pods = self.c.json(&["get", "pods", "-l", &format!("app={app}")]);
        pods["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .map(|p| {
                p["spec"]["nodeName"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect()
    }

    fn ready_replicas(&self, deployment: &str) -> i64 {
        self.c.json(&["get", "deployment", deployment])["status"]["readyReplicas"]
            .as_i64()
            .unwrap_or(0)
    }
}

async fn client(c: &Cluster) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(c.kubeconfig()).unwrap();
    let mut config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    // kube retries 429s itself by default; these tests look at them.
    config.default_retry = false;
    kube::Client::try_from(config).unwrap()
}

const SIM_A: &str = "sim-0001";
const SIM_B: &str = "sim-0002";

fn drain_flow(minor: u32) {
    let Some(s) = Sim::start(minor) else { return };
    let c = &s.c;
    // Both pods on sim-0001 first: sim-0002 is cordoned while they are scheduled.
    c.ok(&["cordon", SIM_B]);
    c.ok(&[
        "create",
        "deployment",
        "web",
        "--image=busybox:1.36",
        "--replicas=2",
    ]);
    s.eventually("2 ready replicas on sim-0001", || {
        s.ready_replicas("web") == 2 && s.nodes_of("web") == [SIM_A, SIM_A]
    });
    c.ok(&["uncordon", SIM_B]);

    // Drain evicts them (the eviction subresource, not plain deletes) and cordons the node;
    // the ReplicaSet brings them back on the other node.
    let out = c.run(
        &[
            "drain",
            SIM_A,
            "--ignore-daemonsets",
            "--delete-emptydir-data",
            "--timeout=60s",
        ],
        None,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "drain failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("evicted"), "{stdout}");
    assert!(
        stdout.contains(&format!("node/{SIM_A} drained")),
        "{stdout}"
    );
    let node = c.json(&["get", "node", SIM_A]);
    assert_eq!(node["spec"]["unschedulable"], true, "{node}");
    s.eventually("2 ready replicas on sim-0002", || {
        s.ready_replicas("web") == 2 && s.nodes_of("web") == [SIM_B, SIM_B]
    });

    // A budget that needs both pods blocks the drain of sim-0002: it times out, the pods stay.
    c.ok_in(
        &["apply", "-f", "-"],
        Some(
            "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: web}\n\
             spec: {minAvailable: 2, selector: {matchLabels: {app: web}}}\n",
        ),
    );
    s.eventually("the budget's status", || {
        let pdb = c.json(&["get", "pdb", "web"]);
        pdb["status"]["observedGeneration"] == 1 && pdb["status"]["currentHealthy"] == 2
    });
    assert_eq!(
        c.json(&["get", "pdb", "web"])["status"]["disruptionsAllowed"],
        0
    );
    c.ok(&["uncordon", SIM_A]);
    let out = c.run(
        &[
            "drain",
            SIM_B,
            "--ignore-daemonsets",
            "--delete-emptydir-data",
            "--timeout=8s",
        ],
        None,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "drain should time out: {stderr}");
    assert!(
        stderr.contains("Cannot evict pod as it would violate the pod's disruption budget."),
        "{stderr}"
    );
    assert_eq!(s.nodes_of("web"), [SIM_B, SIM_B]);

    // Relaxed to one: the drain evicts one pod, waits for its replacement on sim-0001 to be
    // ready (the budget allows one disruption again), then evicts the other.
    c.ok(&[
        "patch",
        "pdb",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"minAvailable":1}}"#,
    ]);
    c.ok(&["uncordon", SIM_A]);
    let out = c.run(
        &[
            "drain",
            SIM_B,
            "--ignore-daemonsets",
            "--delete-emptydir-data",
            "--timeout=90s",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "drain failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.eventually("2 ready replicas on sim-0001", || {
        s.ready_replicas("web") == 2 && s.nodes_of("web") == [SIM_A, SIM_A]
    });

    // A pod no controller recreates is only deleted with --force.
    c.ok(&["uncordon", SIM_B]);
    c.ok(&["cordon", SIM_A]);
    c.ok(&["run", "bare", "--image=busybox:1.36", "--labels=app=bare"]);
    s.eventually("the bare pod running on sim-0002", || {
        let p = c.json(&["get", "pod", "bare"]);
        p["status"]["phase"] == "Running" && p["spec"]["nodeName"] == SIM_B
    });
    let stderr = String::from_utf8_lossy(
        &c.run(
            &["drain", SIM_B, "--ignore-daemonsets", "--timeout=20s"],
            None,
        )
        .stderr,
    )
    .into_owned();
    assert!(
        stderr.contains("declare no controller") && stderr.contains("--force"),
        "{stderr}"
    );
    assert_eq!(s.nodes_of("bare"), [SIM_B]);
    let out = c.run(
        &[
            "drain",
            SIM_B,
            "--ignore-daemonsets",
            "--force",
            "--timeout=60s",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "drain --force failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.eventually("the bare pod to go", || s.nodes_of("bare").is_empty());
}

#[test]
fn drain_evicts_respecting_budgets_kubectl_1_33() {
    drain_flow(33);
}

#[test]
fn drain_evicts_respecting_budgets_kubectl_1_27() {
    drain_flow(27);
}

/// POSTs an Eviction for `pod` (named `body_name` in the body) and returns code and body.
async fn evict(client: &kube::Client, pod: &str, body_name: &str) -> (u16, Value) {
    let body = json!({
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": body_name, "namespace": "default"},
    });
    let req = http::Request::post(format!("/api/v1/namespaces/default/pods/{pod}/eviction"))
        .header("content-type", "application/json")
        .body(kube::client::Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap();
    let resp = client.send(req).await.unwrap();
    let code = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (code, serde_json::from_slice(&bytes).unwrap())
}

async fn set_budget_status(pdbs: &Api<PodDisruptionBudget>, name: &str, status: Value) {
    pdbs.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": status})),
    )
    .await
    .unwrap();
}

/// The subresource's answers, with budget statuses written by the test (no controllers): what
/// a blocked eviction returns, that an allowed one records the pod in `disruptedPods` before
/// the pod starts terminating, and the error cases.
#[test]
fn eviction_answers_like_upstream() {
    let Some(c) = Cluster::start_api_only(33) else {
        return;
    };
    c.ok_in(
        &["apply", "-f", "-"],
        Some(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: web, labels: {app: web}}\n\
             spec: {nodeName: n1, containers: [{name: c, image: busybox:1.36}]}\n\
             ---\n\
             apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: web}\n\
             spec: {minAvailable: 1, selector: {matchLabels: {app: web}}}\n",
        ),
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = client(&c).await;
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), "default");
        pods.patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Running", "conditions": [
                {"type": "Ready", "status": "True"}]}})),
        )
        .await
        .unwrap();

        // Not found.
        let (code, body) = evict(&client, "nope", "nope").await;
        assert_eq!(code, 404, "{body}");
        assert_eq!(body["reason"], "NotFound");
        assert_eq!(body["message"], "pods \"nope\" not found");

        // The body must name the pod.
        let (code, body) = evict(&client, "web", "other").await;
        assert_eq!(code, 400, "{body}");
        assert_eq!(
            body["message"],
            "name in URL does not match name in Eviction object"
        );

        // A budget the controller has not looked at yet.
        let (code, body) = evict(&client, "web", "web").await;
        assert_eq!(code, 429, "{body}");
        assert_eq!(body["reason"], "TooManyRequests");
        assert_eq!(
            body["details"]["causes"][0],
            json!({"reason": "DisruptionBudget",
                   "message": "The disruption budget web is still being processed by the server."})
        );
        assert_eq!(body["details"]["retryAfterSeconds"], 10);

        // No disruption allowed.
        set_budget_status(
            &pdbs,
            "web",
            json!({"observedGeneration": 1, "disruptionsAllowed": 0, "currentHealthy": 1,
                   "desiredHealthy": 1, "expectedPods": 1}),
        )
        .await;
        let (code, body) = evict(&client, "web", "web").await;
        assert_eq!(code, 429, "{body}");
        assert_eq!(body["kind"], "Status");
        assert_eq!(body["status"], "Failure");
        assert_eq!(body["code"], 429);
        assert_eq!(body["reason"], "TooManyRequests");
        assert_eq!(
            body["message"],
            "Cannot evict pod as it would violate the pod's disruption budget."
        );
        assert_eq!(
            body["details"]["causes"],
            json!([{"reason": "DisruptionBudget",
                    "message": "The disruption budget web needs 1 healthy pods and has 1 currently"}])
        );
        let pod = pods.get("web").await.unwrap();
        assert!(pod.metadata.deletion_timestamp.is_none());

        // A second budget selecting the pod: upstream refuses with a 500.
        c.ok_in(
            &["apply", "-f", "-"],
            Some(
                "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: web2}\n\
                 spec: {maxUnavailable: 1, selector: {matchLabels: {app: web}}}\n",
            ),
        );
        let (code, body) = evict(&client, "web", "web").await;
        assert_eq!(code, 500, "{body}");
        assert_eq!(
            body["message"],
            "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."
        );
        c.ok(&["delete", "pdb", "web2"]);

        // Allowed: the budget records the pod, the pod starts terminating with its condition.
        set_budget_status(
            &pdbs,
            "web",
            json!({"observedGeneration": 1, "disruptionsAllowed": 1, "currentHealthy": 2,
                   "desiredHealthy": 1, "expectedPods": 2}),
        )
        .await;
        let (code, body) = evict(&client, "web", "web").await;
        assert_eq!(code, 201, "{body}");
        assert_eq!(body["status"], "Success");
        let pdb = pdbs.get("web").await.unwrap();
        let status = pdb.status.unwrap();
        assert_eq!(status.disruptions_allowed, 0);
        assert!(status.disrupted_pods.unwrap().contains_key("web"));
        let pod = pods.get("web").await.unwrap();
        assert!(pod.metadata.deletion_timestamp.is_some());
        let conditions = pod.status.unwrap().conditions.unwrap();
        assert!(
            conditions
                .iter()
                .any(|c| c.type_ == "DisruptionTarget" && c.reason.as_deref() == Some("EvictionByEvictionAPI")),
            "{conditions:?}"
        );

        // A pod that is already terminating is deleted without a budget check.
        let (code, body) = evict(&client, "web", "web").await;
        assert_eq!(code, 201, "{body}");
    });
}

/// Discovery lists the subresource as upstream does, which is what `kubectl drain` looks for.
#[test]
fn discovery_lists_pods_eviction() {
    let Some(c) = Cluster::start_api_only(33) else {
        return;
    };
    let doc: Value = serde_json::from_str(&c.ok(&["get", "--raw", "/api/v1"])).unwrap();
    let entry = doc["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "pods/eviction")
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        entry,
        json!({"name": "pods/eviction", "singularName": "", "namespaced": true,
               "group": "policy", "version": "v1", "kind": "Eviction", "verbs": ["create"]})
    );
}
