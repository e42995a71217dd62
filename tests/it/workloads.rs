//! The scheduler and the Deployment/ReplicaSet controllers against kubectl, on simulated nodes
//! (`support::simnodes`): pods get bound by the scheduler, marked Running and Ready by the
//! kubelet stand-in, and `kubectl rollout` behaves as upstream. Also the scheduler's exact
//! FailedScheduling messages and a preemption by PriorityClass.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::kubectl::Cluster;
use crate::support::simnodes::{self, Heartbeat, Kubelet, NodeSpec};

/// A cluster with `n` simulated nodes, their heartbeat and the kubelet stand-in.
struct Sim {
    c: Cluster,
    // Dropped before the runtime (fields drop in order): they abort their tasks.
    heartbeat: Heartbeat,
    _kubelet: Kubelet,
    _rt: tokio::runtime::Runtime,
}

impl Sim {
    fn start(minor: u32, n: usize, spec: NodeSpec) -> Option<Sim> {
        Sim::start_full(minor, n, spec, Duration::from_secs(10))
    }

    fn start_with_heartbeat(minor: u32, n: usize, period: Duration) -> Option<Sim> {
        Sim::start_full(minor, n, NodeSpec::default(), period)
    }

    fn heartbeat(&self) -> &Heartbeat {
        &self.heartbeat
    }

    fn start_full(minor: u32, n: usize, spec: NodeSpec, period: Duration) -> Option<Sim> {
        let c = Cluster::start(minor)?;
        let rt = tokio::runtime::Runtime::new().unwrap();
        let (heartbeat, kubelet) = rt.block_on(async {
            let kc = kube::config::Kubeconfig::read_from(c.kubeconfig()).unwrap();
            let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .unwrap();
            let client = kube::Client::try_from(config).unwrap();
            let nodes = simnodes::create_nodes(&client, n, &spec).await.unwrap();
            (
                Heartbeat::start(client.clone(), &nodes, period),
                Kubelet::start(client, &nodes),
            )
        });
        Some(Sim {
            c,
            heartbeat,
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

    fn rollout_status(&self, what: &str) -> String {
        self.c.ok(&["rollout", "status", what, "--timeout=60s"])
    }
}

fn items(v: &Value) -> Vec<Value> {
    v["items"].as_array().cloned().unwrap_or_default()
}

fn deployment_lifecycle(minor: u32) {
    let Some(s) = Sim::start(minor, 3, NodeSpec::default()) else {
        return;
    };
    let c = &s.c;
    c.ok(&[
        "create",
        "deployment",
        "web",
        "--image=busybox:1.36",
        "--replicas=3",
    ]);
    let out = s.rollout_status("deployment/web");
    assert!(out.contains("successfully rolled out"), "{out}");
    // Every pod was bound by the scheduler to a simulated node.
    let pods = c.json(&["get", "pods", "-l", "app=web"]);
    assert_eq!(items(&pods).len(), 3);
    for p in items(&pods) {
        let node = p["spec"]["nodeName"].as_str().unwrap_or_default();
        assert!(node.starts_with("sim-"), "{p}");
        assert_eq!(p["status"]["phase"], "Running");
    }
    let d = c.json(&["get", "deployment", "web"]);
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "1"
    );
    assert_eq!(d["status"]["availableReplicas"], 3);
    let conditions: Vec<(String, String)> = d["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["type"].as_str().unwrap().to_string(),
                c["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(conditions.contains(&("Available".into(), "MinimumReplicasAvailable".into())));
    assert!(conditions.contains(&("Progressing".into(), "NewReplicaSetAvailable".into())));

    // Scale.
    c.ok(&["scale", "deployment", "web", "--replicas=5"]);
    s.rollout_status("deployment/web");
    s.eventually("5 ready replicas", || {
        c.json(&["get", "deployment", "web"])["status"]["readyReplicas"] == 5
    });

    // A new image rolls out through a second ReplicaSet.
    c.ok(&["set", "image", "deployment/web", "busybox=busybox:1.37"]);
    let out = s.rollout_status("deployment/web");
    assert!(out.contains("successfully rolled out"), "{out}");
    let rs = c.json(&["get", "rs", "-l", "app=web"]);
    assert_eq!(items(&rs).len(), 2, "{rs}");
    let history = c.ok(&["rollout", "history", "deployment/web"]);
    assert!(
        history.contains("1 ") && history.contains("2 "),
        "{history}"
    );
    let rev2 = c.ok(&["rollout", "history", "deployment/web", "--revision=2"]);
    assert!(rev2.contains("busybox:1.37"), "{rev2}");

    // Undo brings the first template back as revision 3.
    c.ok(&["rollout", "undo", "deployment/web"]);
    s.rollout_status("deployment/web");
    let d = c.json(&["get", "deployment", "web"]);
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "busybox:1.36"
    );
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "3"
    );
    let history = c.ok(&["rollout", "history", "deployment/web"]);
    assert!(
        history.contains("2 ") && history.contains("3 ") && !history.contains("\n1 "),
        "{history}"
    );
    // Undo to an explicit revision.
    c.ok(&["rollout", "undo", "deployment/web", "--to-revision=2"]);
    s.rollout_status("deployment/web");
    let d = c.json(&["get", "deployment", "web"]);
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "busybox:1.37"
    );

    // Restart makes a new ReplicaSet with the restartedAt annotation.
    c.ok(&["rollout", "restart", "deployment/web"]);
    s.rollout_status("deployment/web");
    assert_eq!(items(&c.json(&["get", "rs", "-l", "app=web"])).len(), 3);

    // Paused: template changes make no ReplicaSet until resumed.
    c.ok(&["rollout", "pause", "deployment/web"]);
    c.ok(&["set", "image", "deployment/web", "busybox=busybox:1.38"]);
    s.eventually("the Progressing condition to say paused", || {
        c.json(&["get", "deployment", "web"])["status"]["conditions"]
            .as_array()
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Progressing" && c["reason"] == "DeploymentPaused")
            })
    });
    assert_eq!(items(&c.json(&["get", "rs", "-l", "app=web"])).len(), 3);
    c.ok(&["rollout", "resume", "deployment/web"]);
    let out = s.rollout_status("deployment/web");
    assert!(out.contains("successfully rolled out"), "{out}");
    assert_eq!(items(&c.json(&["get", "rs", "-l", "app=web"])).len(), 4);
    let events = c.ok(&[
        "get",
        "events",
        "--field-selector",
        "reason=ScalingReplicaSet",
    ]);
    assert!(events.contains("Scaled up replica set web-"), "{events}");
    assert!(events.contains("Scaled down replica set web-"), "{events}");

    // Deleting the Deployment takes its ReplicaSets and pods with it (garbage collector).
    c.ok(&["delete", "deployment", "web"]);
    s.eventually("the ReplicaSets and pods to go", || {
        items(&c.json(&["get", "rs,pods", "-l", "app=web"])).is_empty()
    });
}

#[test]
fn deployment_create_scale_rollout_undo_restart_pause_kubectl_1_33() {
    deployment_lifecycle(33);
}

#[test]
fn deployment_create_scale_rollout_undo_restart_pause_kubectl_1_27() {
    deployment_lifecycle(27);
}

#[test]
fn recreate_strategy_replaces_all_pods_at_once() {
    let Some(s) = Sim::start(33, 2, NodeSpec::default()) else {
        return;
    };
    let c = &s.c;
    let manifest = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: batch}
spec:
  replicas: 2
  strategy: {type: Recreate}
  selector: {matchLabels: {app: batch}}
  template:
    metadata: {labels: {app: batch}}
    spec: {containers: [{name: c, image: "busybox:1.36"}]}
"#;
    c.ok_in(&["apply", "-f", "-"], Some(manifest));
    s.rollout_status("deployment/batch");
    c.ok(&["set", "image", "deployment/batch", "c=busybox:1.37"]);
    s.rollout_status("deployment/batch");
    let pods = c.json(&["get", "pods", "-l", "app=batch"]);
    let live: Vec<Value> = items(&pods)
        .into_iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .collect();
    assert_eq!(live.len(), 2, "{pods}");
    assert!(
        live.iter()
            .all(|p| p["spec"]["containers"][0]["image"] == "busybox:1.37"),
        "{pods}"
    );
    // Recreate never scales the new ReplicaSet up while old pods run: the old one went to 0
    // before the new one was created.
    let events = c.ok(&[
        "get",
        "events",
        "--field-selector",
        "reason=ScalingReplicaSet",
        "-o",
        "json",
    ]);
    let events: Value = serde_json::from_str(&events).unwrap();
    let messages: Vec<String> = items(&events)
        .iter()
        .map(|e| e["message"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        messages.iter().any(|m| m.contains("from 2 to 0")),
        "{messages:?}"
    );
}

#[test]
fn replica_set_adopts_orphans_and_replaces_deleted_pods() {
    let Some(s) = Sim::start(33, 2, NodeSpec::default()) else {
        return;
    };
    let c = &s.c;
    // An orphan pod with matching labels is adopted instead of a new one being created.
    c.ok(&["run", "stray", "--image=busybox", "--labels=app=rs"]);
    let manifest = r#"
apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: rs}
spec:
  replicas: 2
  selector: {matchLabels: {app: rs}}
  template:
    metadata: {labels: {app: rs}}
    spec: {containers: [{name: c, image: busybox}]}
"#;
    c.ok_in(&["apply", "-f", "-"], Some(manifest));
    s.eventually("two ready replicas", || {
        c.json(&["get", "rs", "rs"])["status"]["readyReplicas"] == 2
    });
    let stray = c.json(&["get", "pod", "stray"]);
    assert_eq!(stray["metadata"]["ownerReferences"][0]["name"], "rs");
    assert_eq!(items(&c.json(&["get", "pods", "-l", "app=rs"])).len(), 2);
    // A deleted pod is replaced.
    c.ok(&["delete", "pod", "stray", "--wait=false"]);
    s.eventually("a replacement", || {
        let pods = c.json(&["get", "pods", "-l", "app=rs"]);
        items(&pods)
            .iter()
            .filter(|p| p["metadata"]["name"] != "stray" && p["status"]["phase"] == "Running")
            .count()
            == 2
    });
    let events = c.ok(&["describe", "rs", "rs"]);
    assert!(events.contains("SuccessfulCreate"), "{events}");
}

/// The exact FailedScheduling messages (golden) and the PodScheduled condition.
#[test]
fn unschedulable_pods_report_upstream_messages() {
    let spec = NodeSpec {
        cpu: "2".into(),
        ..NodeSpec::default()
    };
    let Some(s) = Sim::start(33, 3, spec) else {
        return;
    };
    let c = &s.c;
    c.ok(&[
        "run",
        "picky",
        "--image=busybox",
        "--overrides",
        r#"{"spec":{"nodeSelector":{"disk":"ssd"}}}"#,
    ]);
    let big = r#"{"spec":{"containers":[{"name":"big","image":"busybox","resources":{"requests":{"cpu":"3"}}}]}}"#;
    c.ok(&["run", "big", "--image=busybox", "--overrides", big]);
    let cases = [
        (
            "picky",
            "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling..",
        ),
        (
            "big",
            // More than any node has: evicting pods cannot help (upstream since 1.28).
            "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling..",
        ),
    ];
    for (pod, message) in cases {
        s.eventually(&format!("{pod} to be reported unschedulable"), || {
            let p = c.json(&["get", "pod", pod]);
            p["status"]["conditions"].as_array().is_some_and(|cs| {
                cs.iter().any(|c| {
                    c["type"] == "PodScheduled"
                        && c["status"] == "False"
                        && c["reason"] == "Unschedulable"
                        && c["message"] == message
                })
            })
        });
        let events = c.json(&[
            "get",
            "events",
            "--field-selector",
            &format!("involvedObject.name={pod},reason=FailedScheduling"),
        ]);
        let e = &items(&events)[0];
        assert_eq!(e["message"], message);
        assert_eq!(e["type"], "Warning");
    }
    // A matching node appears: the pod is scheduled there (requeued by the node event).
    c.ok(&["label", "node", "sim-0002", "disk=ssd"]);
    s.eventually("picky to be bound to sim-0002", || {
        c.json(&["get", "pod", "picky"])["spec"]["nodeName"] == "sim-0002"
    });
    let scheduled = c.json(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=picky,reason=Scheduled",
    ]);
    assert_eq!(
        items(&scheduled)[0]["message"],
        "Successfully assigned default/picky to sim-0002"
    );
    // The scheduler holds its own Lease.
    let lease = c.json(&["get", "lease", "kube-scheduler", "-n", "kube-system"]);
    assert!(lease["spec"]["holderIdentity"].is_string(), "{lease}");
}

#[test]
fn higher_priority_pods_preempt_lower_priority_ones() {
    let spec = NodeSpec {
        cpu: "2".into(),
        ..NodeSpec::default()
    };
    let Some(s) = Sim::start(33, 1, spec) else {
        return;
    };
    let c = &s.c;
    // The system classes exist from the start.
    let classes = c.ok(&["get", "priorityclass", "-o", "name"]);
    assert!(
        classes.contains("system-node-critical") && classes.contains("system-cluster-critical")
    );
    let manifests = r#"
apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata: {name: high}
value: 1000
---
apiVersion: v1
kind: Pod
metadata: {name: low}
spec:
  containers: [{name: c, image: busybox, resources: {requests: {cpu: 1500m}}}]
"#;
    c.ok_in(&["apply", "-f", "-"], Some(manifests));
    s.eventually("the low-priority pod to run", || {
        c.json(&["get", "pod", "low"])["status"]["phase"] == "Running"
    });
    let high = r#"
apiVersion: v1
kind: Pod
metadata: {name: urgent}
spec:
  priorityClassName: high
  containers: [{name: c, image: busybox, resources: {requests: {cpu: "1"}}}]
"#;
    c.ok_in(&["apply", "-f", "-"], Some(high));
    let urgent = c.json(&["get", "pod", "urgent"]);
    assert_eq!(urgent["spec"]["priority"], 1000);
    s.eventually("the urgent pod to be bound", || {
        c.json(&["get", "pod", "urgent"])["spec"]["nodeName"] == "sim-0001"
    });
    s.eventually("the victim to be gone", || {
        !c.run(&["get", "pod", "low"], None).status.success()
    });
    let preempted = c.json(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=low,reason=Preempted",
    ]);
    let message = items(&preempted)[0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        message.starts_with("Preempted by pod ") && message.ends_with(" on node sim-0001"),
        "{message}"
    );
    // A pod naming a class that does not exist is refused by priority admission.
    let err = c.fails(
        &[
            "run",
            "ghost",
            "--image=busybox",
            "--overrides",
            r#"{"spec":{"priorityClassName":"nope"}}"#,
        ],
        None,
    );
    assert!(
        err.contains("no PriorityClass with name nope was found"),
        "{err}"
    );
}

/// Node lifecycle: every node gets a pod CIDR; a node whose Lease stops being renewed turns
/// Unknown after the 40 s grace period, gets the unreachable taints, and its pods are evicted
/// when their toleration runs out.
#[test]
fn a_silent_node_is_tainted_and_its_pods_evicted() {
    let Some(s) = Sim::start_with_heartbeat(33, 2, Duration::from_secs(2)) else {
        return;
    };
    let c = &s.c;
    s.eventually("pod CIDRs on both nodes", || {
        let nodes = c.json(&["get", "nodes"]);
        let cidrs: Vec<String> = items(&nodes)
            .iter()
            .filter_map(|n| n["spec"]["podCIDR"].as_str().map(str::to_string))
            .collect();
        cidrs.len() == 2 && cidrs[0] != cidrs[1] && cidrs.iter().all(|c| c.starts_with("10.42."))
    });
    let pod = r#"
apiVersion: v1
kind: Pod
metadata: {name: brief}
spec:
  nodeName: sim-0001
  containers: [{name: c, image: busybox}]
  tolerations:
  - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 3}
"#;
    c.ok_in(&["apply", "-f", "-"], Some(pod));
    s.eventually("the pod to run", || {
        c.json(&["get", "pod", "brief"])["status"]["phase"] == "Running"
    });
    s.heartbeat().silence("sim-0001");
    let deadline = Instant::now() + Duration::from_secs(120);
    let tainted = loop {
        let n = c.json(&["get", "node", "sim-0001"]);
        let taints = n["spec"]["taints"].as_array().cloned().unwrap_or_default();
        if taints
            .iter()
            .any(|t| t["key"] == "node.kubernetes.io/unreachable" && t["effect"] == "NoExecute")
        {
            break n;
        }
        assert!(Instant::now() < deadline, "the node was never tainted: {n}");
        std::thread::sleep(Duration::from_millis(500));
    };
    let ready = tainted["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .cloned()
        .unwrap();
    assert_eq!(ready["status"], "Unknown");
    assert_eq!(ready["reason"], "NodeStatusUnknown");
    assert_eq!(ready["message"], "Kubelet stopped posting node status.");
    s.eventually("the pod to be evicted", || {
        !c.run(&["get", "pod", "brief"], None).status.success()
    });
    let events = c.ok(&[
        "get",
        "events",
        "--field-selector",
        "reason=TaintManagerEviction",
    ]);
    assert!(
        events.contains("Marking for deletion Pod default/brief"),
        "{events}"
    );
    // The other node is untouched.
    let other = c.json(&["get", "node", "sim-0002"]);
    assert!(other["spec"]["taints"].is_null(), "{other}");
}

/// Zone-aware eviction (upstream's disruption mode): when every node of every zone goes silent
/// the control plane is more likely cut off than the nodes down, so the nodes turn Unknown and
/// get the unreachable NoSchedule taint but no NoExecute one, and nothing is evicted.
#[test]
fn a_cluster_whose_nodes_all_go_silent_gets_no_noexecute_taints() {
    let Some(s) = Sim::start_with_heartbeat(33, 2, Duration::from_secs(2)) else {
        return;
    };
    let c = &s.c;
    s.eventually("both nodes ready", || {
        items(&c.json(&["get", "nodes"])).len() == 2
    });
    s.heartbeat().silence("sim-0001");
    s.heartbeat().silence("sim-0002");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let nodes = c.json(&["get", "nodes"]);
        let nodes = items(&nodes);
        let settled = nodes.len() == 2
            && nodes.iter().all(|n| {
                let unknown = n["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Ready" && c["status"] == "Unknown");
                let taints = n["spec"]["taints"].as_array().cloned().unwrap_or_default();
                let unreachable = |effect: &str| {
                    taints.iter().any(|t| {
                        t["key"] == "node.kubernetes.io/unreachable" && t["effect"] == effect
                    })
                };
                unknown && unreachable("NoSchedule") && !unreachable("NoExecute")
            });
        if settled {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the nodes never settled unknown without NoExecute taints: {nodes:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}
