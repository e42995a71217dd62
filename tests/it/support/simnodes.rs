//! Simulated nodes, so tests and benchmarks of the control plane need no container runtime:
//! Node objects with capacity and a Lease each (written the way a kubelet writes them), a
//! heartbeat that renews the Leases, and a kubelet stand-in that marks the pods bound to those
//! nodes Running and Ready through `pods/status`, finishes them when a label asks it to, and
//! completes their graceful deletion.
//!
//! Everything goes through a `kube::Client`, and the module uses only crates that both the
//! integration tests and the benchmark examples can see (kube, k8s-openapi, tokio, futures-util,
//! serde_json, anyhow), so `tests/bench/control.rs` includes it with `#[path]`.
//!
//! Node `i` is named `sim-{i:04}` (the prefix is configurable) and has the InternalIP
//! `10.0.{i / 250}.{i % 250 + 1}`; pods get podIPs from `10.42.0.1` upwards, one per pod the
//! stand-in starts. One stand-in per cluster keeps those addresses unique.

// Shared by the test binary and the control benchmark, and each uses only part of it.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use futures_util::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

/// The namespace of node Leases (upstream's `kube-node-lease`).
pub const LEASE_NAMESPACE: &str = "kube-node-lease";

/// A pod label asking the stand-in to end the pod's containers after they start: `"0"` exits
/// successfully, anything else is that exit code (non-numbers count as 1).
pub const EXIT_LABEL: &str = "sim.rk3s.io/exit";

/// A pod annotation: how long (milliseconds) the containers of a pod with [`EXIT_LABEL`] run
/// before they exit. Without it they exit right after the Running status is written.
pub const RUN_MS_ANNOTATION: &str = "sim.rk3s.io/run-ms";

/// How many node writes `create_nodes` and the heartbeat keep in flight.
const NODE_WRITES: usize = 48;

/// The upstream kubelet's default `nodeLeaseDurationSeconds`.
const LEASE_DURATION_SECONDS: i32 = 40;

/// What every simulated node of one `create_nodes` call looks like.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    /// Node names are `{prefix}-{index:04}`.
    pub prefix: String,
    /// The index of the first node, so two calls can make two disjoint groups.
    pub first: usize,
    pub cpu: String,
    pub memory: String,
    pub pods: u32,
    pub ephemeral_storage: String,
    /// `kubernetes.io/arch` and `status.nodeInfo.architecture`.
    pub arch: String,
    /// Labels beyond the well-known hostname/os/arch ones.
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
}

impl Default for NodeSpec {
    fn default() -> Self {
        NodeSpec {
            prefix: "sim".into(),
            first: 1,
            cpu: "4".into(),
            memory: "16Gi".into(),
            pods: 110,
            ephemeral_storage: "100Gi".into(),
            arch: "amd64".into(),
            labels: BTreeMap::new(),
            taints: Vec::new(),
        }
    }
}

/// A simulated node that exists in the API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimNode {
    pub name: String,
    /// Its InternalIP, the hostIP of its pods.
    pub ip: String,
}

/// The name of node `index` with `prefix`.
pub fn node_name(prefix: &str, index: usize) -> String {
    format!("{prefix}-{index:04}")
}

/// The InternalIP of node `index` (unique up to 64,000 nodes).
pub fn node_ip(index: usize) -> String {
    format!("10.0.{}.{}", index / 250, index % 250 + 1)
}

fn now_time() -> Value {
    json!(Time(Timestamp::now()))
}

fn now_micro() -> Value {
    json!(MicroTime(Timestamp::now()))
}

/// Creates the namespace `name` unless it exists.
pub async fn ensure_namespace(client: &kube::Client, name: &str) -> anyhow::Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    if api.get_opt(name).await?.is_some() {
        return Ok(());
    }
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))?;
    match api.create(&PostParams::default(), &ns).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e).with_context(|| format!("create namespace {name}")),
    }
}

/// Creates `n` simulated nodes as a kubelet registers itself: the Node, then its status through
/// `nodes/status` (capacity, allocatable, Ready=True, addresses, nodeInfo), then its Lease in
/// `kube-node-lease` owned by the Node. Up to 48 nodes are written at once. Returns the nodes
/// in index order.
pub async fn create_nodes(
    client: &kube::Client,
    n: usize,
    spec: &NodeSpec,
) -> anyhow::Result<Vec<SimNode>> {
    ensure_namespace(client, LEASE_NAMESPACE).await?;
    let results: Vec<anyhow::Result<(usize, SimNode)>> =
        futures_util::stream::iter(spec.first..spec.first + n)
            .map(|index| async move {
                let node = create_node(client, index, spec).await?;
                Ok((index, node))
            })
            .buffer_unordered(NODE_WRITES)
            .collect()
            .await;
    let mut nodes = results.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    nodes.sort_by_key(|(index, _)| *index);
    Ok(nodes.into_iter().map(|(_, node)| node).collect())
}

async fn create_node(
    client: &kube::Client,
    index: usize,
    spec: &NodeSpec,
) -> anyhow::Result<SimNode> {
    let name = node_name(&spec.prefix, index);
    let ip = node_ip(index);
    let nodes: Api<Node> = Api::all(client.clone());
    let created = nodes
        .create(&PostParams::default(), &node_object(&name, spec)?)
        .await
        .with_context(|| format!("create node {name}"))?;
    nodes
        .patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(node_status(&name, &ip, index, spec)),
        )
        .await
        .with_context(|| format!("write the status of node {name}"))?;
    let leases: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let uid = created.metadata.uid.unwrap_or_default();
    let lease: Lease = serde_json::from_value(json!({
        "metadata": {
            "name": name,
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": name, "uid": uid}],
        },
        "spec": {
            "holderIdentity": name,
            "leaseDurationSeconds": LEASE_DURATION_SECONDS,
            "renewTime": now_micro(),
        },
    }))?;
    leases
        .create(&PostParams::default(), &lease)
        .await
        .with_context(|| format!("create the lease of node {name}"))?;
    Ok(SimNode { name, ip })
}

/// The Node as a kubelet registers it (status comes separately).
fn node_object(name: &str, spec: &NodeSpec) -> anyhow::Result<Node> {
    let mut labels = BTreeMap::from([
        ("kubernetes.io/hostname".to_string(), name.to_string()),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
        ("kubernetes.io/arch".to_string(), spec.arch.clone()),
    ]);
    labels.extend(spec.labels.clone());
    let mut node = json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "spec": {},
    });
    if !spec.taints.is_empty() {
        node["spec"]["taints"] = serde_json::to_value(&spec.taints)?;
    }
    Ok(serde_json::from_value(node)?)
}

/// The `status` merge patch a kubelet writes after registering.
fn node_status(name: &str, ip: &str, index: usize, spec: &NodeSpec) -> Value {
    let resources = json!({
        "cpu": spec.cpu,
        "memory": spec.memory,
        "pods": spec.pods.to_string(),
        "ephemeral-storage": spec.ephemeral_storage,
    });
    let now = now_time();
    let condition = |type_: &str, status: &str, reason: &str, message: &str| {
        json!({
            "type": type_, "status": status, "reason": reason, "message": message,
            "lastHeartbeatTime": now, "lastTransitionTime": now,
        })
    };
    let machine = format!("{index:032x}");
    json!({"status": {
        "capacity": resources,
        "allocatable": resources,
        "conditions": [
            condition("MemoryPressure", "False", "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available"),
            condition("DiskPressure", "False", "KubeletHasNoDiskPressure",
                "kubelet has no disk pressure"),
            condition("PIDPressure", "False", "KubeletHasSufficientPID",
                "kubelet has sufficient PID available"),
            condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
        ],
        "addresses": [
            {"type": "InternalIP", "address": ip},
            {"type": "Hostname", "address": name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {
            "machineID": machine,
            "systemUUID": machine,
            "bootID": machine,
            "kernelVersion": "6.1.0-sim",
            "osImage": "rk3s simulated node",
            "containerRuntimeVersion": "sim://0.1.0",
            "kubeletVersion": "v1.33.0",
            "kubeProxyVersion": "v1.33.0",
            "operatingSystem": "linux",
            "architecture": spec.arch,
        },
    }})
}

/// Renews the Lease of `node` now.
pub async fn renew_lease(client: &kube::Client, node: &str) -> anyhow::Result<()> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    leases
        .patch(
            node,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"holderIdentity": node, "renewTime": now_micro()}})),
        )
        .await
        .with_context(|| format!("renew the lease of node {node}"))?;
    Ok(())
}

/// Renews the Leases of a set of nodes every period (upstream kubelets renew every 10 s, a
/// quarter of the 40 s duration) until stopped or dropped. Single nodes can be silenced, as a
/// node that lost power would be.
pub struct Heartbeat {
    silenced: Arc<Mutex<HashSet<String>>>,
    task: JoinHandle<()>,
}

impl Heartbeat {
    /// Starts renewing the Leases of `nodes` every `period`, the first renewal one period from
    /// now (`create_nodes` has just written them). Failed renewals are printed and retried at
    /// the next period. Call it inside a Tokio runtime (it spawns a task).
    pub fn start(client: kube::Client, nodes: &[SimNode], period: Duration) -> Heartbeat {
        let silenced: Arc<Mutex<HashSet<String>>> = Arc::default();
        let names: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
        let quiet = silenced.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let due: Vec<&String> = {
                    let quiet = quiet.lock().unwrap_or_else(|e| e.into_inner());
                    names.iter().filter(|n| !quiet.contains(*n)).collect()
                };
                futures_util::stream::iter(due)
                    .for_each_concurrent(NODE_WRITES, |name| {
                        let client = &client;
                        async move {
                            if let Err(e) = renew_lease(client, name).await {
                                eprintln!("simnodes heartbeat: {e:#}");
                            }
                        }
                    })
                    .await;
            }
        });
        Heartbeat { silenced, task }
    }

    /// Stops renewing the Lease of `node`.
    pub fn silence(&self, node: &str) {
        self.silenced
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(node.to_string());
    }

    /// Renews the Lease of `node` again from the next period on.
    pub fn resume(&self, node: &str) {
        self.silenced
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(node);
    }

    /// Stops every renewal.
    pub fn stop(self) {}
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A test-only stand-in for the kubelets of the simulated nodes: it watches pods bound to them
/// and, for each new one, writes through `pods/status` what a kubelet writes once the
/// containers run (phase Running, the five pod conditions True, ready and started container
/// statuses, podIP, hostIP, startTime). Pods labelled [`EXIT_LABEL`] then end as their
/// restartPolicy says; pods with a deletionTimestamp are deleted with grace period 0 (and their
/// uid as precondition), as a kubelet does once their containers are gone.
pub struct Kubelet {
    counters: Arc<Counters>,
    task: JoinHandle<()>,
}

#[derive(Default)]
struct Counters {
    started: AtomicU64,
    finished: AtomicU64,
    deleted: AtomicU64,
    next_ip: AtomicU32,
}

/// What the stand-in has done (or is doing) to a pod, by uid.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Handled {
    Started,
    Deleting,
}

impl Kubelet {
    /// Starts the stand-in for `nodes` with up to 32 status writes and deletions in flight.
    /// Call it inside a Tokio runtime (it spawns a task).
    pub fn start(client: kube::Client, nodes: &[SimNode]) -> Kubelet {
        Kubelet::with_concurrency(client, nodes, 32)
    }

    /// Starts the stand-in with up to `writes` status writes and deletions in flight.
    pub fn with_concurrency(client: kube::Client, nodes: &[SimNode], writes: usize) -> Kubelet {
        let hosts: Arc<HashMap<String, String>> = Arc::new(
            nodes
                .iter()
                .map(|n| (n.name.clone(), n.ip.clone()))
                .collect(),
        );
        let counters = Arc::new(Counters::default());
        let task = tokio::spawn(run_kubelet(
            client,
            hosts,
            Arc::new(Semaphore::new(writes.max(1))),
            counters.clone(),
        ));
        Kubelet { counters, task }
    }

    /// How many pods it has marked Running so far.
    pub fn started(&self) -> u64 {
        self.counters.started.load(Ordering::Relaxed)
    }

    /// How many pods it has ended (Succeeded, Failed or restarted per [`EXIT_LABEL`]).
    pub fn finished(&self) -> u64 {
        self.counters.finished.load(Ordering::Relaxed)
    }

    /// How many terminating pods it has deleted.
    pub fn deleted(&self) -> u64 {
        self.counters.deleted.load(Ordering::Relaxed)
    }

    /// Stops watching and writing.
    pub fn stop(self) {}
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run_kubelet(
    client: kube::Client,
    hosts: Arc<HashMap<String, String>>,
    writes: Arc<Semaphore>,
    counters: Arc<Counters>,
) {
    let pods: Api<Pod> = Api::all(client.clone());
    // Only bound pods; the stand-in still checks the node is one of its own.
    let config = watcher::Config::default().fields("spec.nodeName!=");
    let mut events = watcher::watcher(pods.clone(), config)
        .default_backoff()
        .boxed();
    let handled: Arc<Mutex<HashMap<String, Handled>>> = Arc::default();
    while let Some(event) = events.next().await {
        let pod = match event {
            Ok(Event::Apply(pod) | Event::InitApply(pod)) => pod,
            Ok(Event::Delete(pod)) => {
                if let Some(uid) = pod.metadata.uid {
                    handled
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&uid);
                }
                continue;
            }
            Ok(Event::Init | Event::InitDone) => continue,
            Err(e) => {
                eprintln!("simnodes kubelet: watch: {e}");
                continue;
            }
        };
        let Some(host_ip) = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_ref())
            .and_then(|n| hosts.get(n))
            .cloned()
        else {
            continue;
        };
        let (Some(uid), Some(namespace), Some(name)) = (
            pod.metadata.uid.clone(),
            pod.metadata.namespace.clone(),
            pod.metadata.name.clone(),
        ) else {
            continue;
        };
        let terminating = pod.metadata.deletion_timestamp.is_some();
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        let next = {
            let mut handled = handled.lock().unwrap_or_else(|e| e.into_inner());
            let previous = handled.get(&uid).copied();
            if terminating && previous != Some(Handled::Deleting) {
                handled.insert(uid.clone(), Handled::Deleting);
                Some(Handled::Deleting)
            } else if !terminating && previous.is_none() && matches!(phase, None | Some("Pending"))
            {
                handled.insert(uid.clone(), Handled::Started);
                Some(Handled::Started)
            } else {
                None
            }
        };
        let Some(next) = next else { continue };
        let api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
        let (writes, counters, handled) = (writes.clone(), counters.clone(), handled.clone());
        tokio::spawn(async move {
            let result = match next {
                Handled::Deleting => delete_pod(&api, &name, &uid, &writes, &counters).await,
                Handled::Started => run_pod(&api, pod, &host_ip, &writes, &counters).await,
            };
            if let Err(e) = result {
                eprintln!("simnodes kubelet: pod {namespace}/{name}: {e:#}");
                // Forget it, so the pod's next event (or the watch's next re-list) retries.
                handled
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&uid);
            }
        });
    }
}

/// Whether an error only says the pod is gone or changed under us (it is being deleted, or was
/// replaced): nothing a kubelet would report.
fn gone(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404 || s.code == 409)
}

async fn delete_pod(
    api: &Api<Pod>,
    name: &str,
    uid: &str,
    writes: &Semaphore,
    counters: &Counters,
) -> anyhow::Result<()> {
    let _permit = writes.acquire().await?;
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: Some(uid.to_string()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => {
            counters.deleted.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
        Err(e) if gone(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

async fn run_pod(
    api: &Api<Pod>,
    pod: Pod,
    host_ip: &str,
    writes: &Semaphore,
    counters: &Counters,
) -> anyhow::Result<()> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let n = counters.next_ip.fetch_add(1, Ordering::Relaxed) + 1;
    let pod_ip = format!("10.{}.{}.{}", 42 + (n >> 16), (n >> 8) & 255, n & 255);
    {
        let _permit = writes.acquire().await?;
        match api
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(running_status(&pod, &pod_ip, host_ip)),
            )
            .await
        {
            Ok(_) => {}
            Err(e) if gone(&e) => return Ok(()),
            Err(e) => return Err(e).context("write the Running status"),
        }
    }
    counters.started.fetch_add(1, Ordering::Relaxed);
    let Some(code) = exit_code(&pod) else {
        return Ok(());
    };
    let run_ms = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(RUN_MS_ANNOTATION))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    if run_ms > 0 {
        tokio::time::sleep(Duration::from_millis(run_ms)).await;
    }
    let _permit = writes.acquire().await?;
    match api
        .patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(exited_status(&pod, code)),
        )
        .await
    {
        Ok(_) => {
            counters.finished.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
        Err(e) if gone(&e) => Ok(()),
        Err(e) => Err(e).context("write the exited status"),
    }
}

/// The exit code [`EXIT_LABEL`] asks for.
fn exit_code(pod: &Pod) -> Option<i32> {
    let v = pod.metadata.labels.as_ref()?.get(EXIT_LABEL)?;
    Some(v.parse().unwrap_or(1))
}

fn container_names(pod: &Pod, init: bool) -> Vec<(String, String)> {
    let spec = pod.spec.as_ref();
    let containers = if init {
        spec.and_then(|s| s.init_containers.as_ref())
    } else {
        spec.map(|s| &s.containers)
    };
    containers
        .into_iter()
        .flatten()
        .map(|c| (c.name.clone(), c.image.clone().unwrap_or_default()))
        .collect()
}

fn container_status(pod: &Pod, name: &str, image: &str, state: Value, ready: bool) -> Value {
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    json!({
        "name": name,
        "image": image,
        "imageID": format!("sim://{image}"),
        "containerID": format!("sim://{uid}/{name}"),
        "ready": ready,
        "started": ready,
        "restartCount": 0,
        "state": state,
    })
}

fn condition(type_: &str, status: &str, now: &Value) -> Value {
    json!({"type": type_, "status": status, "lastProbeTime": null, "lastTransitionTime": now})
}

/// The status a kubelet writes once every container of `pod` runs (init containers, if any,
/// have completed).
fn running_status(pod: &Pod, pod_ip: &str, host_ip: &str) -> Value {
    let now = now_time();
    let running = json!({"running": {"startedAt": now}});
    let completed = json!({"terminated": {
        "exitCode": 0, "reason": "Completed", "startedAt": now, "finishedAt": now,
    }});
    let containers: Vec<Value> = container_names(pod, false)
        .iter()
        .map(|(name, image)| container_status(pod, name, image, running.clone(), true))
        .collect();
    let init: Vec<Value> = container_names(pod, true)
        .iter()
        .map(|(name, image)| {
            let mut state = completed.clone();
            state["terminated"]["containerID"] = json!(format!(
                "sim://{}/{name}",
                pod.metadata.uid.as_deref().unwrap_or("")
            ));
            let mut s = container_status(pod, name, image, state, false);
            s["started"] = json!(false);
            s
        })
        .collect();
    let conditions: Vec<Value> = [
        "PodReadyToStartContainers",
        "Initialized",
        "Ready",
        "ContainersReady",
        "PodScheduled",
    ]
    .iter()
    .map(|t| condition(t, "True", &now))
    .collect();
    let mut status = json!({
        "phase": "Running",
        "conditions": conditions,
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "podIP": pod_ip,
        "podIPs": [{"ip": pod_ip}],
        "startTime": now,
        "containerStatuses": containers,
    });
    if !init.is_empty() {
        status["initContainerStatuses"] = json!(init);
    }
    json!({"status": status})
}

/// The status after every container exited with `code`, following the pod's restartPolicy as
/// the kubelet does: `Never` (and `OnFailure` with code 0) ends the pod Succeeded or Failed;
/// otherwise the containers restart once and wait in CrashLoopBackOff, so the pod stays
/// Running but not Ready.
fn exited_status(pod: &Pod, code: i32) -> Value {
    let now = now_time();
    let policy = pod
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always");
    let reason = if code == 0 { "Completed" } else { "Error" };
    let terminated = json!({"terminated": {
        "exitCode": code, "reason": reason, "startedAt": now, "finishedAt": now,
    }});
    let terminal = policy == "Never" || (policy == "OnFailure" && code == 0);
    let containers: Vec<Value> = container_names(pod, false)
        .iter()
        .map(|(name, image)| {
            if terminal {
                container_status(pod, name, image, terminated.clone(), false)
            } else {
                let waiting = json!({"waiting": {"reason": "CrashLoopBackOff",
                    "message": format!("back-off 10s restarting failed container={name}")}});
                let mut s = container_status(pod, name, image, waiting, false);
                s["restartCount"] = json!(1);
                s["lastState"] = terminated.clone();
                s
            }
        })
        .collect();
    let phase = match (terminal, code) {
        (false, _) => "Running",
        (true, 0) => "Succeeded",
        (true, _) => "Failed",
    };
    let mut conditions = vec![
        condition(
            "PodReadyToStartContainers",
            if terminal { "False" } else { "True" },
            &now,
        ),
        condition("Initialized", "True", &now),
        condition("Ready", "False", &now),
        condition("ContainersReady", "False", &now),
        condition("PodScheduled", "True", &now),
    ];
    let not_ready = if terminal {
        "PodCompleted"
    } else {
        "ContainersNotReady"
    };
    for c in &mut conditions[2..4] {
        c["reason"] = json!(not_ready);
    }
    json!({"status": {
        "phase": phase,
        "conditions": conditions,
        "containerStatuses": containers,
    }})
}
