//! Node benchmark: `rk3s server` (release) with its kubelet running real busybox containers,
//! and the container lifecycle under rk3s's shim against Debian's `runc` on the same bundle.
//! Prints a table and writes `target/bench/node.json`. Run it with `tests/bench/run.sh node`
//! (root: namespaces, cgroups, overlayfs, the pod bridge).
//!
//! The busybox image (built from Debian's `busybox-static`) is put in the server's airgap
//! directory, so every pod starts with its image present and no registry is involved.
//!
//! Figures:
//! - `start_to_ready_s`: from spawning `rk3s server` to its Node being Ready.
//! - `idle_rss_mb`: the server's RSS 5 s after Ready, no user pods.
//! - `pod_start_p50_ms`, `pod_start_p99_ms`: 50 pods created one after another, each from its
//!   create request to `phase: Running` seen on a watch (upstream's pod startup latency).
//! - `rss_30_pods_mb`: the server's RSS with 30 of those pods running; `shim_rss_kb`: the mean
//!   RSS of their shims (and `shim_pss_kb`, their proportional share, as the binary's pages
//!   are shared by every shim).
//! - `deploy_100_running_s`: a 100-replica Deployment from create to 100 pods Running.
//! - `lifecycle_rk3s_ms`, `lifecycle_runc_ms`, `ratio_lifecycle_vs_runc`: median time to
//!   create, start, wait for and delete a container running `/bin/true` from one bundle, through
//!   rk3s's runtime (a shim per container) and through `runc run` + `runc delete`.
//!
//! Budgets (the node issue): p50 ≤ 150 ms, p99 ≤ 500 ms, idle RSS ≤ 60 MB, shim ≤ 2 MB (2048
//! KB), start to Ready ≤ 2 s. Peers: k3s's idle server (~500 MB, research/anchors.md) and
//! upstream's pod startup SLO (p99 ≤ 5 s).
//!
//! Environment: RK3S_BIN (default target/release/rk3s), BENCH_OUT (default
//! target/bench/node.json), BENCH_TIMEOUT_SECS (180).

#[path = "../it/support/registry.rs"]
mod registry;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, bail};
use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::watcher::{self, Event};
use rk3s::kubelet::runtime::{self, ContainerConfig, Local, Runtime};
use serde_json::json;

const NODE: &str = "rk3s-bench";
const IMAGE: &str = "docker.io/library/busybox:bench";

struct Server {
    child: Child,
    dir: PathBuf,
    started: Instant,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        kill_shims_of(&self.dir);
    }
}

impl Server {
    fn start(bin: &str, dir: &Path) -> anyhow::Result<Server> {
        let images = dir.join("agent/images");
        std::fs::create_dir_all(&images)?;
        let archive = registry::docker_archive(&[IMAGE], &registry::TestImage::busybox(), false);
        std::fs::write(images.join("busybox.tar"), archive)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let config = dir.join("config.yaml");
        std::fs::write(&config, "")?;
        let started = Instant::now();
        let child = Command::new(bin)
            .args([
                &format!("--data-dir={}", dir.display()),
                "server",
                "--bind-address=127.0.0.1",
                &format!("--https-listen-port={port}"),
                &format!(
                    "--write-kubeconfig={}",
                    dir.join("kubeconfig.yaml").display()
                ),
                &format!("--node-name={NODE}"),
                // The figures must not depend on how full the host's disk is.
                "--kubelet-arg=eviction-hard=nodefs.available<1%,imagefs.available<1%",
            ])
            .env("RK3S_CONFIG_FILE", &config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("rk3s.log"))?)
            .spawn()
            .with_context(|| format!("start {bin}"))?;
        Ok(Server {
            child,
            dir: dir.to_path_buf(),
            started,
        })
    }

    fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig.yaml")
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("rk3s.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    fn rss_mb(&self) -> f64 {
        rss_kb(self.child.id()) / 1024.0
    }
}

/// A `kB` field of a /proc file of `pid` (0 when the process is gone).
fn proc_kb(pid: u32, file: &str, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/{file}"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// VmRSS of a process in KiB.
fn rss_kb(pid: u32) -> f64 {
    proc_kb(pid, "status", "VmRSS:")
}

/// Pss of a process in KiB: its share of the pages it maps (the shims share the binary's text).
fn pss_kb(pid: u32) -> f64 {
    proc_kb(pid, "smaps_rollup", "Pss:")
}

/// Processes whose command line mentions `needle` (the shims name their state directory).
fn pids_with(needle: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(needle) && pid != std::process::id() {
            pids.push(pid);
        }
    }
    pids
}

/// Leaves nothing running: the shims of this data dir and their containers.
fn kill_shims_of(dir: &Path) {
    let needle = format!("shim {}", dir.join("agent/containers").display());
    for pid in pids_with(&needle) {
        // The container processes are the shim's children: their cgroup goes with the pod,
        // and SIGKILL to the whole tree leaves nothing behind.
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        for c in children.split_whitespace() {
            let _ = Command::new("kill").args(["-9", c]).status();
        }
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    }
}

async fn connect(kubeconfig: &Path) -> anyhow::Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await?;
    Ok(kube::Client::try_from(cfg)?)
}

fn percentiles(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    let at = |q: f64| {
        let i = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1;
        v[i].as_secs_f64() * 1000.0
    };
    if v.is_empty() {
        (f64::NAN, f64::NAN)
    } else {
        (at(0.50), at(0.99))
    }
}

/// Records when each pod of the namespace is first seen Running.
fn watch_running(
    client: kube::Client,
) -> (
    Arc<Mutex<HashMap<String, Instant>>>,
    Arc<tokio::sync::Notify>,
) {
    let seen: Arc<Mutex<HashMap<String, Instant>>> = Default::default();
    let notify = Arc::new(tokio::sync::Notify::new());
    let (s, n) = (seen.clone(), notify.clone());
    tokio::spawn(async move {
        let pods: Api<Pod> = Api::namespaced(client, "default");
        let mut stream = watcher::watcher(pods, watcher::Config::default()).boxed();
        while let Some(ev) = stream.next().await {
            let list = match ev {
                Ok(Event::Apply(p)) | Ok(Event::InitApply(p)) => vec![p],
                _ => continue,
            };
            for p in list {
                let running = p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
                if running && let Some(name) = p.metadata.name {
                    s.lock().unwrap().entry(name).or_insert_with(Instant::now);
                    n.notify_waiters();
                }
            }
        }
    });
    (seen, notify)
}

fn pod(name: &str) -> anyhow::Result<Pod> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"bench": "pods"}},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "containers": [{
                "name": "c",
                "image": IMAGE,
                "imagePullPolicy": "Never",
                "command": ["sleep", "3600"],
            }],
        },
    }))?)
}

async fn wait_until(
    what: &str,
    deadline: Instant,
    notify: &tokio::sync::Notify,
    mut done: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    loop {
        let wake = notify.notified();
        if done() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        let _ = tokio::time::timeout(Duration::from_millis(200), wake).await;
    }
}

async fn cluster(
    server: &Server,
    out: &mut BTreeMap<String, f64>,
    timeout: Duration,
) -> anyhow::Result<()> {
    // Start to Ready.
    let deadline = Instant::now() + timeout;
    while !server.kubeconfig().exists() {
        if Instant::now() > deadline {
            bail!("no kubeconfig:\n{}", server.log_tail());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let client = connect(&server.kubeconfig()).await?;
    let nodes: Api<Node> = Api::all(client.clone());
    loop {
        let ready = nodes.get_opt(NODE).await.ok().flatten().is_some_and(|n| {
            n.status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        });
        if ready {
            break;
        }
        if Instant::now() > deadline {
            bail!("the node never got Ready:\n{}", server.log_tail());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    out.insert(
        "start_to_ready_s".into(),
        server.started.elapsed().as_secs_f64(),
    );
    println!(
        "node Ready after {:.2} s",
        server.started.elapsed().as_secs_f64()
    );
    // The default ServiceAccount must exist before pods are admitted.
    let sas: Api<k8s_openapi::api::core::v1::ServiceAccount> =
        Api::namespaced(client.clone(), "default");
    while sas.get_opt("default").await?.is_none() {
        if Instant::now() > deadline {
            bail!("no default ServiceAccount");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    out.insert("idle_rss_mb".into(), server.rss_mb());

    // Pod start latency, one pod at a time.
    let (seen, notify) = watch_running(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut latencies = Vec::new();
    for i in 0..50 {
        let name = format!("p{i}");
        let sent = Instant::now();
        pods.create(&PostParams::default(), &pod(&name)?).await?;
        let deadline = Instant::now() + timeout;
        wait_until(&format!("pod {name} Running"), deadline, &notify, || {
            seen.lock().unwrap().contains_key(&name)
        })
        .await
        .with_context(|| server.log_tail())?;
        let at = seen.lock().unwrap()[&name];
        latencies.push(at.duration_since(sent));
        if i == 29 {
            tokio::time::sleep(Duration::from_secs(2)).await;
            out.insert("rss_30_pods_mb".into(), server.rss_mb());
            let needle = format!("shim {}", server.dir.join("agent/containers").display());
            let pids = pids_with(&needle);
            if !pids.is_empty() {
                let n = pids.len() as f64;
                let rss: f64 = pids.iter().map(|p| rss_kb(*p)).sum();
                let pss: f64 = pids.iter().map(|p| pss_kb(*p)).sum();
                out.insert("shim_rss_kb".into(), rss / n);
                out.insert("shim_pss_kb".into(), pss / n);
            }
        }
    }
    let (p50, p99) = percentiles(latencies);
    out.insert("pod_start_p50_ms".into(), p50);
    out.insert("pod_start_p99_ms".into(), p99);
    println!("50 pods: p50 {p50:.0} ms, p99 {p99:.0} ms");
    pods.delete_collection(
        &DeleteParams::default().grace_period(0),
        &ListParams::default().labels("bench=pods"),
    )
    .await?;
    let deadline = Instant::now() + timeout;
    while !pods
        .list(&ListParams::default().labels("bench=pods"))
        .await?
        .items
        .is_empty()
    {
        if Instant::now() > deadline {
            bail!("the 50 pods were never deleted:\n{}", server.log_tail());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A 100-replica Deployment to all Running.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let d: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 100,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "terminationGracePeriodSeconds": 0,
                    "containers": [{
                        "name": "c",
                        "image": IMAGE,
                        "imagePullPolicy": "Never",
                        "command": ["sleep", "3600"],
                    }],
                },
            },
        },
    }))?;
    let begun = Instant::now();
    deployments.create(&PostParams::default(), &d).await?;
    let deadline = Instant::now() + timeout;
    wait_until("100 replicas Running", deadline, &notify, || {
        seen.lock()
            .unwrap()
            .keys()
            .filter(|k| k.starts_with("web-"))
            .count()
            >= 100
    })
    .await
    .with_context(|| server.log_tail())?;
    out.insert("deploy_100_running_s".into(), begun.elapsed().as_secs_f64());
    println!(
        "100 replicas Running after {:.2} s",
        begun.elapsed().as_secs_f64()
    );
    deployments.delete("web", &DeleteParams::default()).await?;
    let deadline = Instant::now() + timeout;
    while !pods
        .list(&ListParams::default().labels("app=web"))
        .await?
        .items
        .is_empty()
    {
        if Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}

/// Unpacks the busybox layer as a container root filesystem.
fn busybox_rootfs(dir: &Path) -> anyhow::Result<PathBuf> {
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(&rootfs)?;
    tar::Archive::new(registry::busybox_layer().as_slice()).unpack(&rootfs)?;
    Ok(rootfs)
}

fn container(id: &str, rootfs: &Path, dir: &Path) -> ContainerConfig {
    ContainerConfig {
        id: id.into(),
        labels: BTreeMap::new(),
        rootfs: rootfs.to_path_buf(),
        readonly_rootfs: false,
        args: vec!["/bin/true".into()],
        env: vec![],
        cwd: "/".into(),
        uid: 0,
        gid: 0,
        additional_gids: vec![],
        hostname: "bench".into(),
        netns: None,
        mounts: vec![],
        cgroup_path: format!("/rk3s-bench/{id}"),
        resources: runtime::Resources::default(),
        privileged: false,
        capabilities_add: vec![],
        capabilities_drop: vec![],
        no_new_privileges: false,
        log_path: dir.join(format!("{id}.log")),
        tty: false,
        stdin: false,
        stdin_once: false,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Create → start → wait → delete of `/bin/true`, 20 times each, rk3s's shim and runc.
async fn lifecycle(bin: &str, out: &mut BTreeMap<String, f64>) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let rootfs = busybox_rootfs(dir.path())?;
    let exe = std::fs::canonicalize(bin)?;
    let local = Local::new(dir.path().join("state"), dir.path().join("run"), exe)?;
    let mut rk3s = Vec::new();
    for i in 0..21 {
        let id = format!("bench-rk3s-{i}");
        let begun = Instant::now();
        local.start(container(&id, &rootfs, dir.path())).await?;
        let state = local.wait(&id).await?;
        local.remove(&id).await?;
        if let runtime::State::Exited {
            exit_code, message, ..
        } = &state
            && *exit_code != 0
        {
            bail!("rk3s container exited with {exit_code}: {message}");
        }
        // The first run warms the page cache; it is not counted.
        if i > 0 {
            rk3s.push(begun.elapsed().as_secs_f64() * 1000.0);
        }
    }
    let mut runc = Vec::new();
    let bundle = dir.path().join("bundle");
    std::fs::create_dir_all(&bundle)?;
    for i in 0..21 {
        let id = format!("bench-runc-{i}");
        let mut spec =
            serde_json::to_value(runtime::build_spec(&container(&id, &rootfs, dir.path()))?)?;
        spec["root"]["path"] = json!(rootfs);
        // runc (unlike libcontainer) fails when the spec's NOFILE limit is above what this
        // process may raise to; both get the same process otherwise.
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
        let hard = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .and_then(|l| l.split_whitespace().nth(4))
            .and_then(|v| v.parse::<u64>().ok());
        if let Some(hard) = hard {
            spec["process"]["rlimits"] =
                json!([{"type": "RLIMIT_NOFILE", "hard": hard, "soft": hard}]);
        }
        std::fs::write(bundle.join("config.json"), serde_json::to_vec(&spec)?)?;
        let begun = Instant::now();
        let run = Command::new("runc")
            .args(["run", "--bundle"])
            .arg(&bundle)
            .arg(&id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .output()
            .context("runc (apt-get install runc)")?;
        let del = Command::new("runc")
            .args(["delete", "--force", &id])
            .output()?;
        if !run.status.success() {
            bail!("runc run: {}", String::from_utf8_lossy(&run.stderr));
        }
        if !del.status.success() {
            bail!("runc delete: {}", String::from_utf8_lossy(&del.stderr));
        }
        if i > 0 {
            runc.push(begun.elapsed().as_secs_f64() * 1000.0);
        }
    }
    let (r, c) = (median(rk3s), median(runc));
    out.insert("lifecycle_rk3s_ms".into(), r);
    out.insert("lifecycle_runc_ms".into(), c);
    out.insert("ratio_lifecycle_vs_runc".into(), r / c);
    println!("lifecycle of /bin/true: rk3s {r:.1} ms, runc {c:.1} ms");
    Ok(())
}

fn main() -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("the node benchmark needs root (namespaces, cgroups, overlayfs, the pod bridge)");
    }
    let bin = std::env::var("RK3S_BIN").unwrap_or_else(|_| "target/release/rk3s".into());
    let timeout = Duration::from_secs(
        std::env::var("BENCH_TIMEOUT_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(180),
    );
    let rt = tokio::runtime::Runtime::new()?;
    let mut out = BTreeMap::new();
    let mut problems = Vec::new();
    if let Err(e) = rt.block_on(lifecycle(&bin, &mut out)) {
        problems.push(format!("lifecycle: {e:#}"));
    }
    let dir = tempfile::tempdir()?;
    {
        let server = Server::start(&bin, dir.path())?;
        if let Err(e) = rt.block_on(cluster(&server, &mut out, timeout)) {
            problems.push(format!("cluster: {e:#}"));
        }
    }
    let get = |k: &str| out.get(k).copied().unwrap_or(f64::NAN);
    println!();
    println!("{:<26} {:>10}   budget / peer", "figure", "value");
    let at_most = |k: &str, limit: f64, peer: &str| {
        let v = get(k);
        let verdict = if v.is_nan() {
            "not measured"
        } else if v <= limit {
            "ok"
        } else {
            "OVER"
        };
        println!("{k:<26} {v:>10.2}   ≤ {limit:<7} {verdict} {peer}");
    };
    at_most("pod_start_p50_ms", 150.0, "");
    at_most(
        "pod_start_p99_ms",
        500.0,
        &format!(
            "(upstream SLO 5000 ms: {:.2}×)",
            get("pod_start_p99_ms") / 5000.0
        ),
    );
    at_most("deploy_100_running_s", f64::INFINITY, "");
    at_most("ratio_lifecycle_vs_runc", f64::INFINITY, "(rk3s ÷ runc)");
    at_most(
        "idle_rss_mb",
        60.0,
        &format!("(k3s idle ~500 MB: {:.2}×)", get("idle_rss_mb") / 500.0),
    );
    at_most("rss_30_pods_mb", f64::INFINITY, "");
    at_most("shim_rss_kb", 2048.0, "");
    at_most("shim_pss_kb", 2048.0, "(shared text counted once)");
    at_most("start_to_ready_s", 2.0, "");
    let path = std::env::var("BENCH_OUT").unwrap_or_else(|_| "target/bench/node.json".into());
    if let Some(parent) = Path::new(&path).parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut json = serde_json::to_value(&out)?;
    json["peer_k3s_idle_rss_mb"] = json!(500.0);
    json["measured_at"] = json!(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    );
    std::fs::write(&path, serde_json::to_vec_pretty(&json)?)?;
    println!("wrote {path}");
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("problem: {p}");
        }
        std::process::exit(1);
    }
    Ok(())
}
