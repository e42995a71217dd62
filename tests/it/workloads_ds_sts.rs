//! The DaemonSet and StatefulSet controllers against `rk3s server` with simulated nodes
//! (`support::simnodes`): the scheduler binds the pods, the kubelet stand-in runs them, and
//! kubectl 1.33 and 1.27 drive the workloads (`apply`, `set image`, `scale`, `rollout
//! status|history|undo`). Ordering is checked from the order of watch events, never from
//! wall-clock durations.

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, StatefulSet};
use k8s_openapi::api::core::v1::{Event, Node, PersistentVolumeClaim, Pod, Taint};
use kube::api::{Api, DeleteParams, ListParams};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use crate::kubectl::kubectl_bin;
use crate::support::simnodes::{self, Heartbeat, Kubelet, NodeSpec, SimNode};
use crate::support::{Process, have_etcdctl};

/// A server, a kube-rs client and one kubectl for it.
struct Sim {
    dir: tempfile::TempDir,
    server: Process,
    kubectl: PathBuf,
    rt: tokio::runtime::Runtime,
    client: Client,
}

impl Sim {
    fn start(minor: u32) -> Option<Sim> {
        let kubectl = kubectl_bin(minor)?;
        if !have_etcdctl() {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let server = Process::server(dir.path(), &[]);
        let rt = tokio::runtime::Runtime::new().unwrap();
        let kubeconfig = dir.path().join("kubeconfig.yaml");
        let client = rt.block_on(async {
            let kc = kube::config::Kubeconfig::read_from(&kubeconfig).expect("read kubeconfig");
            let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .expect("kubeconfig to config");
            Client::try_from(config).expect("client")
        });
        let sim = Sim {
            dir,
            server,
            kubectl,
            rt,
            client,
        };
        sim.eventually("the default namespace", async || {
            sim.kubectl(&["get", "ns", "default", "-o", "name"])
                .ok()
                .map(|_| ())
        });
        Some(sim)
    }

    fn kubectl(&self, args: &[&str]) -> Result<String, String> {
        self.kubectl_stdin(args, None)
    }

    fn kubectl_stdin(&self, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
        use std::io::Write;
        let mut child = Command::new(&self.kubectl)
            .env("KUBECONFIG", self.dir.path().join("kubeconfig.yaml"))
            .env("HOME", self.dir.path())
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run kubectl");
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        drop(child.stdin.take());
        let out = child.wait_with_output().expect("kubectl output");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    fn ok(&self, args: &[&str]) -> String {
        self.kubectl(args)
            .unwrap_or_else(|e| panic!("kubectl {args:?}: {e}\nserver log:\n{}", self.server.log()))
    }

    fn apply(&self, yaml: &str) {
        self.kubectl_stdin(&["apply", "-f", "-"], Some(yaml))
            .unwrap_or_else(|e| panic!("kubectl apply: {e}"));
    }

    /// Polls `check` until it gives a value; the deadline only guards against hanging.
    fn eventually<T>(&self, what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(90);
        self.rt.block_on(async {
            loop {
                if let Some(v) = check().await {
                    return v;
                }
                assert!(
                    Instant::now() < deadline,
                    "timed out waiting for {what}; server log:\n{}",
                    self.server.log()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    }

    /// Registers the nodes one by one. A registration can race the node controllers' first
    /// write to the new Node and get a 409 on its status patch (the API server treats the
    /// resourceVersion a patch inherits from the current object as a precondition); such a
    /// node is removed and registered again.
    fn nodes(&self, n: usize, spec: &NodeSpec) -> Vec<SimNode> {
        let node_api: Api<Node> = Api::all(self.client.clone());
        let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
            Api::namespaced(self.client.clone(), simnodes::LEASE_NAMESPACE);
        (0..n)
            .map(|k| {
                let one = NodeSpec {
                    first: spec.first + k,
                    ..spec.clone()
                };
                let name = simnodes::node_name(&one.prefix, one.first);
                for _ in 0..20 {
                    match self
                        .rt
                        .block_on(simnodes::create_nodes(&self.client, 1, &one))
                    {
                        Ok(mut nodes) => return nodes.remove(0),
                        Err(e) => {
                            eprintln!("registering {name}: {e:#}; retrying");
                            let params = DeleteParams {
                                grace_period_seconds: Some(0),
                                ..DeleteParams::default()
                            };
                            let _ = self.rt.block_on(node_api.delete(&name, &params));
                            let _ = self.rt.block_on(leases.delete(&name, &params));
                            std::thread::sleep(Duration::from_millis(300));
                        }
                    }
                }
                panic!("could not register node {name}");
            })
            .collect()
    }

    fn kubelet(&self, nodes: &[SimNode]) -> (Kubelet, Heartbeat) {
        let _guard = self.rt.enter();
        (
            Kubelet::start(self.client.clone(), nodes),
            Heartbeat::start(self.client.clone(), nodes, Duration::from_secs(5)),
        )
    }

    async fn pods(&self, selector: &str) -> Vec<Pod> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), "default");
        let mut pods = api
            .list(&ListParams::default().labels(selector))
            .await
            .map(|l| l.items)
            .unwrap_or_default();
        pods.sort_by_key(|p| p.name_any());
        pods
    }

    /// Records the pod watch events of the namespace as `ADDED name`, `READY name` (first time
    /// seen Ready) and `DELETED name`, in watch order.
    fn record_pod_events(&self) -> Arc<Mutex<Vec<String>>> {
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), "default");
        let out = log.clone();
        self.rt.spawn(async move {
            let mut seen: std::collections::HashMap<String, bool> = Default::default();
            let mut events = watcher(api, watcher::Config::default()).boxed();
            while let Some(e) = events.next().await {
                let mut log = out.lock().unwrap();
                match e {
                    Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => {
                        let uid = p.metadata.uid.clone().unwrap_or_default();
                        let ready = is_ready(&p);
                        match seen.get(&uid) {
                            None => {
                                log.push(format!("ADDED {}", p.name_any()));
                                if ready {
                                    log.push(format!("READY {}", p.name_any()));
                                }
                            }
                            Some(false) if ready => log.push(format!("READY {}", p.name_any())),
                            _ => {}
                        }
                        seen.insert(uid, ready);
                    }
                    Ok(watcher::Event::Delete(p)) => log.push(format!("DELETED {}", p.name_any())),
                    Ok(_) => {}
                    // Once the server is gone every poll fails at once: pause, so the task
                    // yields and the runtime can shut down.
                    Err(_) => {
                        drop(log);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
        // The watch is established before anything is created.
        std::thread::sleep(Duration::from_millis(500));
        log
    }
}

fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn running(p: &Pod) -> bool {
    p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") && is_ready(p)
}

fn node_of(p: &Pod) -> String {
    p.spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .unwrap_or_default()
}

fn image_of(p: &Pod) -> String {
    p.spec.as_ref().unwrap().containers[0]
        .image
        .clone()
        .unwrap_or_default()
}

fn position(log: &[String], entry: &str) -> usize {
    log.iter()
        .position(|e| e == entry)
        .unwrap_or_else(|| panic!("{entry} not in {log:#?}"))
}

const DAEMON_SET: &str = r#"
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: agent
  annotations:
    kubernetes.io/change-cause: first
spec:
  selector:
    matchLabels: {app: agent}
  updateStrategy:
    rollingUpdate: {maxUnavailable: "50%"}
  template:
    metadata:
      labels: {app: agent}
    spec:
      containers:
      - name: agent
        image: nginx:1.25
"#;

fn daemon_set_scenario(minor: u32) {
    let Some(sim) = Sim::start(minor) else { return };
    let mut nodes = sim.nodes(3, &NodeSpec::default());
    let tainted = sim.nodes(
        1,
        &NodeSpec {
            prefix: "tainted".into(),
            taints: vec![Taint {
                key: "dedicated".into(),
                value: Some("infra".into()),
                effect: "NoSchedule".into(),
                ..Taint::default()
            }],
            ..NodeSpec::default()
        },
    );
    nodes.extend(tainted);
    let _kubelet = sim.kubelet(&nodes);
    sim.apply(DAEMON_SET);

    // One Running pod on each untainted node, none on the tainted one.
    let pods = sim.eventually("3 daemon pods running", async || {
        let pods = sim.pods("app=agent").await;
        (pods.len() == 3 && pods.iter().all(running)).then_some(pods)
    });
    let mut placed: Vec<String> = pods.iter().map(node_of).collect();
    placed.sort();
    assert_eq!(placed, ["sim-0001", "sim-0002", "sim-0003"]);
    for p in &pods {
        let spec = p.spec.as_ref().unwrap();
        let term = &spec
            .affinity
            .as_ref()
            .unwrap()
            .node_affinity
            .as_ref()
            .unwrap()
            .required_during_scheduling_ignored_during_execution
            .as_ref()
            .unwrap()
            .node_selector_terms[0];
        let field = &term.match_fields.as_ref().unwrap()[0];
        assert_eq!(
            (
                field.key.as_str(),
                field.values.as_ref().unwrap()[0].as_str()
            ),
            ("metadata.name", node_of(p).as_str())
        );
        let tolerations: Vec<String> = spec
            .tolerations
            .iter()
            .flatten()
            .filter_map(|t| t.key.clone())
            .collect();
        assert!(
            tolerations.contains(&"node.kubernetes.io/unreachable".to_string()),
            "{tolerations:?}"
        );
    }
    sim.ok(&["rollout", "status", "ds/agent", "--timeout=90s"]);

    // The revision `agent-<hash>` and the hash label on the pods.
    let revisions: Api<ControllerRevision> = Api::namespaced(sim.client.clone(), "default");
    let revs = sim
        .rt
        .block_on(revisions.list(&ListParams::default().labels("app=agent")))
        .unwrap()
        .items;
    assert_eq!(revs.len(), 1);
    let hash = revs[0].labels()["controller-revision-hash"].clone();
    assert_eq!(revs[0].name_any(), format!("agent-{hash}"));
    assert_eq!(revs[0].revision, 1);
    assert!(
        pods.iter()
            .all(|p| p.labels()["controller-revision-hash"] == hash)
    );

    // A node added later gets its pod.
    let late = sim.nodes(
        1,
        &NodeSpec {
            first: 4,
            ..NodeSpec::default()
        },
    );
    let _late_kubelet = sim.kubelet(&late);
    sim.eventually("a pod on sim-0004", async || {
        let pods = sim.pods("app=agent").await;
        pods.iter()
            .any(|p| node_of(p) == "sim-0004" && running(p))
            .then_some(())
    });
    let ds_api: Api<DaemonSet> = Api::namespaced(sim.client.clone(), "default");
    let status = sim.eventually("status for 4 nodes", async || {
        let ds = ds_api.get("agent").await.ok()?;
        let s = ds.status?;
        (s.desired_number_scheduled == 4 && s.number_ready == 4).then_some(s)
    });
    assert_eq!(
        (status.current_number_scheduled, status.number_misscheduled),
        (4, 0)
    );

    // An image change rolls out; kubectl's rollout status follows it to the end.
    sim.ok(&["set", "image", "ds/agent", "agent=nginx:1.26"]);
    sim.ok(&[
        "annotate",
        "ds/agent",
        "--overwrite",
        "kubernetes.io/change-cause=second",
    ]);
    let out = sim.ok(&["rollout", "status", "ds/agent", "--timeout=90s"]);
    assert!(
        out.contains("daemon set \"agent\" successfully rolled out"),
        "{out}"
    );
    let pods = sim.eventually("4 updated pods", async || {
        let pods = sim.pods("app=agent").await;
        (pods.len() == 4
            && pods
                .iter()
                .all(|p| running(p) && image_of(p) == "nginx:1.26"))
        .then_some(pods)
    });
    assert!(
        pods.iter()
            .all(|p| p.labels()["controller-revision-hash"] != hash)
    );
    let history = sim.ok(&["rollout", "history", "ds/agent"]);
    let rows: Vec<Vec<&str>> = history
        .lines()
        .skip_while(|l| !l.starts_with("REVISION"))
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 2, "{history}");
    assert_eq!(rows[0][0], "1", "{history}");
    assert_eq!(rows[1][0], "2", "{history}");
    let detail = sim.ok(&["rollout", "history", "ds/agent", "--revision=1"]);
    assert!(detail.contains("nginx:1.25"), "{detail}");

    // Undo goes back to the first template.
    sim.ok(&["rollout", "undo", "ds/agent"]);
    sim.ok(&["rollout", "status", "ds/agent", "--timeout=90s"]);
    sim.eventually("pods back on nginx:1.25", async || {
        let pods = sim.pods("app=agent").await;
        (pods.len() == 4
            && pods
                .iter()
                .all(|p| running(p) && image_of(p) == "nginx:1.25"))
        .then_some(())
    });

    // Events from the controller.
    let events: Api<Event> = Api::namespaced(sim.client.clone(), "default");
    sim.eventually("SuccessfulCreate and SuccessfulDelete events", async || {
        let list = events.list(&ListParams::default()).await.ok()?.items;
        let reasons: Vec<&str> = list
            .iter()
            .filter(|e| e.involved_object.name.as_deref() == Some("agent"))
            .filter_map(|e| e.reason.as_deref())
            .collect();
        (reasons.contains(&"SuccessfulCreate") && reasons.contains(&"SuccessfulDelete"))
            .then_some(())
    });
}

#[test]
fn daemon_set_places_one_pod_per_eligible_node_and_rolls_out_kubectl_1_33() {
    daemon_set_scenario(33);
}

#[test]
fn daemon_set_places_one_pod_per_eligible_node_and_rolls_out_kubectl_1_27() {
    daemon_set_scenario(27);
}

#[test]
fn daemon_pod_of_a_deleted_node_goes_away() {
    let Some(sim) = Sim::start(33) else { return };
    let nodes = sim.nodes(2, &NodeSpec::default());
    let _kubelet = sim.kubelet(&nodes);
    sim.apply(DAEMON_SET);
    sim.eventually("2 daemon pods running", async || {
        let pods = sim.pods("app=agent").await;
        (pods.len() == 2 && pods.iter().all(running)).then_some(())
    });
    let node_api: Api<Node> = Api::all(sim.client.clone());
    sim.rt
        .block_on(node_api.delete("sim-0002", &DeleteParams::default()))
        .unwrap();
    // The pod GC removes pods bound to a deleted node (upstream's division of labour); the
    // DaemonSet then counts one desired node.
    sim.eventually("the pod of sim-0002 gone", async || {
        let pods = sim.pods("app=agent").await;
        (pods.len() == 1 && node_of(&pods[0]) == "sim-0001").then_some(())
    });
    let ds_api: Api<DaemonSet> = Api::namespaced(sim.client.clone(), "default");
    sim.eventually("desired 1", async || {
        let s = ds_api.get("agent").await.ok()?.status?;
        (s.desired_number_scheduled == 1 && s.current_number_scheduled == 1).then_some(())
    });
}

const STATEFUL_SET: &str = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
spec:
  serviceName: web
  replicas: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: nginx
        image: nginx:1.25
  volumeClaimTemplates:
  - metadata:
      name: data
    spec:
      accessModes: [ReadWriteOnce]
      resources:
        requests: {storage: 1Gi}
"#;

fn stateful_set_scenario(minor: u32) {
    let Some(sim) = Sim::start(minor) else { return };
    let nodes = sim.nodes(2, &NodeSpec::default());
    let _kubelet = sim.kubelet(&nodes);
    let log = sim.record_pod_events();
    sim.apply(STATEFUL_SET);

    let pods = sim.eventually("web-0..2 running", async || {
        let pods = sim.pods("app=web").await;
        (pods.len() == 3 && pods.iter().all(running)).then_some(pods)
    });
    // OrderedReady: each pod appears only after the one before it is Ready.
    {
        let log = log.lock().unwrap();
        assert!(
            position(&log, "READY web-0") < position(&log, "ADDED web-1"),
            "{log:#?}"
        );
        assert!(
            position(&log, "READY web-1") < position(&log, "ADDED web-2"),
            "{log:#?}"
        );
    }
    for (i, p) in pods.iter().enumerate() {
        let name = format!("web-{i}");
        assert_eq!(p.name_any(), name);
        let spec = p.spec.as_ref().unwrap();
        assert_eq!(spec.hostname.as_deref(), Some(name.as_str()));
        assert_eq!(spec.subdomain.as_deref(), Some("web"));
        assert_eq!(p.labels()["statefulset.kubernetes.io/pod-name"], name);
        assert_eq!(p.labels()["apps.kubernetes.io/pod-index"], i.to_string());
        let claim = spec
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == "data")
            .and_then(|v| v.persistent_volume_claim.as_ref())
            .map(|c| c.claim_name.clone());
        assert_eq!(claim, Some(format!("data-web-{i}")));
    }
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(sim.client.clone(), "default");
    let mut names: Vec<String> = sim
        .rt
        .block_on(claims.list(&ListParams::default()))
        .unwrap()
        .items
        .iter()
        .map(|c| c.name_any())
        .collect();
    names.sort();
    assert_eq!(names, ["data-web-0", "data-web-1", "data-web-2"]);
    sim.ok(&["rollout", "status", "sts/web", "--timeout=90s"]);

    // Events in upstream's wording.
    let events: Api<Event> = Api::namespaced(sim.client.clone(), "default");
    sim.eventually("the SuccessfulCreate event of web-0", async || {
        let list = events.list(&ListParams::default()).await.ok()?.items;
        list.iter()
            .any(|e| {
                e.reason.as_deref() == Some("SuccessfulCreate")
                    && e.message.as_deref()
                        == Some("create Pod web-0 in StatefulSet web successful")
            })
            .then_some(())
    });

    // An image change: pods are replaced from web-2 down; rollout status waits for it.
    let sts_api: Api<StatefulSet> = Api::namespaced(sim.client.clone(), "default");
    let first = sim.rt.block_on(sts_api.get("web")).unwrap().status.unwrap();
    let first_revision = first.current_revision.clone().unwrap();
    assert_eq!(
        first.update_revision.as_deref(),
        Some(first_revision.as_str())
    );
    assert!(first_revision.starts_with("web-"), "{first_revision}");
    sim.ok(&["set", "image", "sts/web", "nginx=nginx:1.26"]);
    let out = sim.ok(&["rollout", "status", "sts/web", "--timeout=90s"]);
    assert!(
        out.contains("roll out complete") || out.contains("rolling update complete"),
        "{out}"
    );
    let status = sim.eventually("the update revision current", async || {
        let s = sts_api.get("web").await.ok()?.status?;
        (s.current_revision == s.update_revision
            && s.current_revision.as_deref() != Some(first_revision.as_str()))
        .then_some(s)
    });
    assert_eq!(
        (
            status.replicas,
            status.updated_replicas,
            status.ready_replicas
        ),
        (3, Some(3), Some(3))
    );
    let pods = sim.rt.block_on(sim.pods("app=web"));
    assert!(pods.iter().all(|p| image_of(p) == "nginx:1.26"));
    assert!(
        pods.iter()
            .all(|p| p.labels().get("controller-revision-hash") == status.update_revision.as_ref())
    );
    {
        let log = log.lock().unwrap();
        assert!(
            position(&log, "DELETED web-2") < position(&log, "DELETED web-1"),
            "{log:#?}"
        );
        assert!(
            position(&log, "DELETED web-1") < position(&log, "DELETED web-0"),
            "{log:#?}"
        );
    }
    log.lock().unwrap().clear();

    // Scale down removes the highest ordinal first; the claims stay (Retain).
    sim.ok(&["scale", "sts/web", "--replicas=1"]);
    sim.eventually("only web-0 left", async || {
        let pods = sim.pods("app=web").await;
        (pods.len() == 1 && pods[0].name_any() == "web-0").then_some(())
    });
    {
        let log = log.lock().unwrap();
        assert!(
            position(&log, "DELETED web-2") < position(&log, "DELETED web-1"),
            "{log:#?}"
        );
    }
    let left = sim
        .rt
        .block_on(claims.list(&ListParams::default()))
        .unwrap()
        .items
        .len();
    assert_eq!(left, 3);
}

#[test]
fn stateful_set_orders_pods_claims_and_rollouts_kubectl_1_33() {
    stateful_set_scenario(33);
}

#[test]
fn stateful_set_orders_pods_claims_and_rollouts_kubectl_1_27() {
    stateful_set_scenario(27);
}

/// Writes the Failed phase a kubelet writes for a pod it rejected or whose containers ended.
fn fail_pod(sim: &Sim, name: &str) {
    let api: Api<Pod> = Api::namespaced(sim.client.clone(), "default");
    let status = serde_json::json!({"status": {"phase": "Failed", "reason": "NodeAffinity",
        "message": "Pod was rejected: Predicate NodeAffinity failed"}});
    sim.rt
        .block_on(api.patch_status(
            name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&status),
        ))
        .unwrap_or_else(|e| panic!("fail pod {name}: {e}"));
}

/// Upstream's failed daemon pod handling: a Failed pod is deleted (with the FailedDaemonPod
/// warning) and replaced; the per-node back-off between such deletions is covered by the
/// controller's unit tests, as tests never assert on wall-clock time.
#[test]
fn failed_daemon_pods_are_deleted_and_replaced() {
    let Some(sim) = Sim::start(33) else { return };
    let nodes = sim.nodes(1, &NodeSpec::default());
    let _kubelet = sim.kubelet(&nodes);
    sim.apply(DAEMON_SET);
    let mut seen = Vec::new();
    for round in 1..=2 {
        let pod = sim.eventually("a running daemon pod", async || {
            let pods = sim.pods("app=agent").await;
            let live: Vec<&Pod> = pods
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none() && running(p))
                .collect();
            (live.len() == 1 && !seen.contains(&live[0].name_any())).then(|| live[0].name_any())
        });
        seen.push(pod.clone());
        fail_pod(&sim, &pod);
        let message =
            format!("Found failed daemon pod default/{pod} on node sim-0001, will try to kill it");
        let events: Api<Event> = Api::namespaced(sim.client.clone(), "default");
        sim.eventually(&format!("FailedDaemonPod event {round}"), async || {
            let list = events.list(&ListParams::default()).await.ok()?;
            list.items
                .iter()
                .any(|e| {
                    e.reason.as_deref() == Some("FailedDaemonPod")
                        && e.type_.as_deref() == Some("Warning")
                        && e.message.as_deref() == Some(message.as_str())
                        && e.involved_object.name.as_deref() == Some("agent")
                })
                .then_some(())
        });
        sim.eventually("the failed pod gone", async || {
            let pods = sim.pods("app=agent").await;
            (!pods.iter().any(|p| p.name_any() == pod)).then_some(())
        });
    }
    sim.eventually("a third daemon pod running", async || {
        let pods = sim.pods("app=agent").await;
        (pods.len() == 1 && running(&pods[0]) && !seen.contains(&pods[0].name_any())).then_some(())
    });
}
