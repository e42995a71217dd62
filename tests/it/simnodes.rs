//! The simulated-node harness (`support::simnodes`) against `rk3s server`: simulated nodes are
//! Ready with renewed Leases as kubectl sees them, and the kubelet stand-in runs, finishes and
//! deletes the pods bound to them. Later tests of the scheduler and the workload controllers
//! build on these nodes, so here the harness itself is checked.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;

use crate::kubectl::kubectl_bin;
use crate::support::simnodes::{self, Heartbeat, Kubelet, NodeSpec};
use crate::support::{Process, have_etcdctl};

/// A server, a kube-rs client and kubectl 1.33 for it.
struct Sim {
    dir: tempfile::TempDir,
    server: Process,
    kubectl: PathBuf,
    rt: tokio::runtime::Runtime,
    client: kube::Client,
}

impl Sim {
    fn start() -> Option<Sim> {
        let kubectl = kubectl_bin(33)?;
        if !have_etcdctl() {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let server = Process::server(dir.path(), &[]);
        let rt = tokio::runtime::Runtime::new().unwrap();
        let client = rt.block_on(client(&dir.path().join("kubeconfig.yaml")));
        let sim = Sim {
            dir,
            server,
            kubectl,
            rt,
            client,
        };
        // The namespaces are created right after the API starts listening.
        sim.eventually("the default namespace", async || {
            let out = sim.kubectl(&["get", "ns", "default", "-o", "name"]);
            out.is_ok().then_some(())
        });
        Some(sim)
    }

    fn kubectl(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(&self.kubectl)
            .env("KUBECONFIG", self.dir.path().join("kubeconfig.yaml"))
            .env("HOME", self.dir.path())
            .args(args)
            .output()
            .expect("run kubectl");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Polls `check` until it gives a value, failing the test with the server's log after 30 s
    /// (a deadline against hanging, not a timing assertion).
    fn eventually<T>(&self, what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(30);
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
}

async fn client(kubeconfig: &Path) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).expect("read kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("kubeconfig to config");
    kube::Client::try_from(config).expect("client")
}

fn renew_time(lease: &Lease) -> String {
    serde_json::to_value(lease).unwrap()["spec"]["renewTime"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn simulated_nodes_are_ready_and_their_leases_renew_until_silenced() {
    let Some(sim) = Sim::start() else { return };
    let spec = NodeSpec {
        labels: [("pool".to_string(), "sim".to_string())].into(),
        ..NodeSpec::default()
    };
    let nodes = sim
        .rt
        .block_on(simnodes::create_nodes(&sim.client, 3, &spec))
        .unwrap();
    let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["sim-0001", "sim-0002", "sim-0003"]);

    // kubectl's table: every node Ready, with the kubelet version the status reports.
    let table = sim.kubectl(&["get", "nodes", "--no-headers"]).unwrap();
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 3, "{table}");
    for (row, name) in rows.iter().zip(&names) {
        assert_eq!((row[0], row[1]), (*name, "Ready"), "{table}");
        assert_eq!(row.last(), Some(&"v1.33.0"), "{table}");
    }
    let node: serde_json::Value = serde_json::from_str(
        &sim.kubectl(&["get", "node", "sim-0002", "-o", "json"])
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        node["metadata"]["labels"]["kubernetes.io/hostname"],
        "sim-0002"
    );
    assert_eq!(node["metadata"]["labels"]["kubernetes.io/os"], "linux");
    assert_eq!(node["metadata"]["labels"]["pool"], "sim");
    assert_eq!(node["status"]["allocatable"]["pods"], "110");
    assert_eq!(node["status"]["capacity"]["cpu"], "4");
    assert_eq!(
        node["status"]["addresses"][0],
        json!({"type": "InternalIP", "address": nodes[1].ip})
    );
    let ready = node["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap();
    assert_eq!(ready["status"], "True");
    assert!(ready["lastHeartbeatTime"].is_string(), "{ready}");

    // One Lease per node, held by the node and owned by it.
    let leases: Api<Lease> = Api::namespaced(sim.client.clone(), simnodes::LEASE_NAMESPACE);
    let first: Vec<Lease> = names
        .iter()
        .map(|n| sim.rt.block_on(leases.get(n)).unwrap())
        .collect();
    for (lease, name) in first.iter().zip(&names) {
        let spec = lease.spec.as_ref().unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some(*name));
        assert_eq!(spec.lease_duration_seconds, Some(40));
        let owner = &lease.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("Node", *name));
    }

    // The heartbeat renews every Lease but the silenced node's.
    let heartbeat = {
        let _guard = sim.rt.enter();
        Heartbeat::start(sim.client.clone(), &nodes, Duration::from_millis(200))
    };
    heartbeat.silence("sim-0003");
    sim.eventually("renewals of sim-0001 and sim-0002", async || {
        for i in 0..2 {
            let now = leases.get(names[i]).await.ok()?;
            if renew_time(&now) == renew_time(&first[i]) {
                return None;
            }
        }
        Some(())
    });
    // Several periods later the silenced node's Lease is still the one create_nodes wrote.
    let before = sim.rt.block_on(leases.get("sim-0001")).unwrap();
    sim.eventually("two more renewals of sim-0001", async || {
        let now = leases.get("sim-0001").await.ok()?;
        (renew_time(&now) != renew_time(&before)).then_some(())
    });
    let silent = sim.rt.block_on(leases.get("sim-0003")).unwrap();
    assert_eq!(renew_time(&silent), renew_time(&first[2]));
    heartbeat.resume("sim-0003");
    sim.eventually("sim-0003 renewing again", async || {
        let now = leases.get("sim-0003").await.ok()?;
        (renew_time(&now) != renew_time(&first[2])).then_some(())
    });
    heartbeat.stop();
}

fn pod(name: &str, node: &str, exit: Option<&str>, restart: &str) -> Pod {
    let mut labels = serde_json::Map::new();
    if let Some(code) = exit {
        labels.insert(simnodes::EXIT_LABEL.into(), json!(code));
    }
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "nodeName": node,
            "restartPolicy": restart,
            "initContainers": [{"name": "setup", "image": "busybox"}],
            "containers": [{"name": "main", "image": "nginx"}],
        },
    }))
    .unwrap()
}

fn condition(pod: &Pod, type_: &str) -> Option<String> {
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    let c = conditions.iter().find(|c| c.type_ == type_)?;
    Some(c.status.clone())
}

#[test]
fn the_kubelet_stand_in_runs_finishes_and_deletes_bound_pods() {
    let Some(sim) = Sim::start() else { return };
    let nodes = sim
        .rt
        .block_on(simnodes::create_nodes(&sim.client, 2, &NodeSpec::default()))
        .unwrap();
    let kubelet = {
        let _guard = sim.rt.enter();
        Kubelet::start(sim.client.clone(), &nodes)
    };
    let pods: Api<Pod> = Api::namespaced(sim.client.clone(), "default");
    let create = |p: Pod| {
        sim.rt
            .block_on(pods.create(&PostParams::default(), &p))
            .unwrap()
    };
    create(pod("web", "sim-0002", None, "Always"));
    create(pod("done", "sim-0001", Some("0"), "Never"));
    create(pod("broken", "sim-0001", Some("1"), "Never"));
    create(pod("crashing", "sim-0001", Some("1"), "OnFailure"));
    // A pod bound to some other node is not the stand-in's business.
    create(pod("elsewhere", "real-node", None, "Always"));

    // Running and Ready with a pod IP, the node's IP as host IP, and running containers.
    let web = sim.eventually("web Running", async || {
        let p = pods.get("web").await.ok()?;
        (p.status.as_ref()?.phase.as_deref() == Some("Running")).then_some(p)
    });
    let status = web.status.as_ref().unwrap();
    assert_eq!(status.host_ip.as_deref(), Some(nodes[1].ip.as_str()));
    let pod_ip = status.pod_ip.clone().unwrap();
    assert!(pod_ip.starts_with("10.42."), "{pod_ip}");
    assert!(status.start_time.is_some());
    for c in ["PodScheduled", "Initialized", "ContainersReady", "Ready"] {
        assert_eq!(condition(&web, c).as_deref(), Some("True"), "{c}");
    }
    let main = &status.container_statuses.as_ref().unwrap()[0];
    assert_eq!(main.name, "main");
    assert!(main.ready && main.started == Some(true));
    assert!(main.state.as_ref().unwrap().running.is_some());
    let setup = &status.init_container_statuses.as_ref().unwrap()[0];
    let done = setup.state.as_ref().unwrap().terminated.as_ref().unwrap();
    assert_eq!(done.exit_code, 0);
    let wide = sim
        .kubectl(&["get", "pod", "web", "-o", "wide", "--no-headers"])
        .unwrap();
    assert!(
        wide.contains("1/1") && wide.contains("Running") && wide.contains(&pod_ip),
        "{wide}"
    );

    // Labelled pods end as their exit code and restartPolicy say.
    let exited = |name: &'static str, phase: &'static str| {
        sim.eventually(&format!("{name} {phase}"), async || {
            let p = pods.get(name).await.ok()?;
            (p.status.as_ref()?.phase.as_deref() == Some(phase)).then_some(p)
        })
    };
    let exit_code = |p: &Pod| {
        let s = &p
            .status
            .as_ref()
            .unwrap()
            .container_statuses
            .as_ref()
            .unwrap()[0];
        s.state
            .as_ref()
            .unwrap()
            .terminated
            .as_ref()
            .unwrap()
            .exit_code
    };
    assert_eq!(exit_code(&exited("done", "Succeeded")), 0);
    assert_eq!(exit_code(&exited("broken", "Failed")), 1);
    let crashing = sim.eventually("crashing restarted", async || {
        let p = pods.get("crashing").await.ok()?;
        let s = p.status.as_ref()?.container_statuses.as_ref()?.first()?;
        (s.restart_count == 1).then_some(p)
    });
    assert_eq!(
        crashing.status.as_ref().unwrap().phase.as_deref(),
        Some("Running")
    );
    assert_eq!(condition(&crashing, "Ready").as_deref(), Some("False"));

    let elsewhere = sim.rt.block_on(pods.get("elsewhere")).unwrap();
    assert_eq!(
        elsewhere.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Pending")
    );

    // A graceful delete sets the deletionTimestamp; the stand-in finishes it.
    sim.rt
        .block_on(pods.delete("web", &DeleteParams::default()))
        .unwrap();
    sim.eventually("web deleted", async || {
        pods.get_opt("web")
            .await
            .ok()
            .and_then(|p| p.is_none().then_some(()))
    });
    // The pod can be gone before the stand-in's delete call has returned and been counted.
    sim.eventually("the stand-in counted its delete", async || {
        (kubelet.deleted() >= 1).then_some(())
    });
    assert_eq!(kubelet.started(), 4);
    assert!(kubelet.finished() >= 3 && kubelet.deleted() == 1);
    kubelet.stop();
}
