//! Control-plane benchmark: `rk3s server` (release) with 1,000 simulated nodes (Node objects
//! with capacity and renewed Leases, no container runtime; `tests/it/support/simnodes.rs`),
//! measuring what the scheduler and the workload controllers do with them. Prints a table and
//! writes `target/bench/control.json`. Run it with `tests/bench/run.sh control`.
//!
//! Workloads:
//! - scheduling: 10,000 plain pods (small cpu/memory requests, no nodeName) created by 64
//!   concurrent clients; a watch records when each gets `spec.nodeName`. Reports
//!   `sched_pods_per_s` (pods / time from the first create to the last binding) and the p50/p99
//!   of each pod's create → bound latency (the clock starts when its create is sent).
//! - deployment: one Deployment of 1,000 replicas; `deploy_1000_bound_s` is the time from its
//!   create until 1,000 of its pods are bound (`deploy_1000_created_s` until they exist).
//! - `rss_mb` of the server afterwards.
//!
//! Budgets (the control-plane issue): ≥ 1,000 pods/s scheduled, 1,000 replicas bound in ≤ 5 s.
//! A phase that does not finish within BENCH_TIMEOUT_SECS reports what it got, says so, and
//! the benchmark exits with status 1 after writing the JSON.
//!
//! Environment: RK3S_BIN (default target/release/rk3s), BENCH_NODES (1000), BENCH_PODS
//! (10000), BENCH_REPLICAS (1000), BENCH_CONCURRENCY (64), BENCH_TIMEOUT_SECS (120; the
//! deployment phase gets half), BENCH_KUBELET=1 to also run the kubelet stand-in (pods
//! marked Running, as kubemark's hollow kubelets do; off by default, as in upstream's
//! scheduler_perf), BENCH_OUT (default target/bench/control.json).

#[path = "../it/support/simnodes.rs"]
mod simnodes;

use std::collections::{BTreeMap, HashMap};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use serde_json::json;
use tokio::sync::oneshot;

struct Server {
    child: Child,
    dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// `rk3s server` in a temporary data dir, with `--disable-agent` when this build has it (no
    /// node of its own: the simulated nodes are the cluster). Its log goes to `rk3s.log` there.
    fn start(bin: &str) -> anyhow::Result<Server> {
        let help = Command::new(bin)
            .args(["server", "--help"])
            .output()
            .with_context(|| format!("run {bin} server --help"))?;
        let dir = tempfile::tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let config = dir.path().join("config.yaml");
        std::fs::write(&config, "")?;
        let mut args = vec![
            format!("--data-dir={}", dir.path().display()),
            "server".into(),
            "--bind-address=127.0.0.1".into(),
            format!("--https-listen-port={port}"),
            format!(
                "--write-kubeconfig={}",
                dir.path().join("kubeconfig.yaml").display()
            ),
        ];
        if String::from_utf8_lossy(&help.stdout).contains("--disable-agent") {
            args.push("--disable-agent".into());
        }
        let child = Command::new(bin)
            .args(&args)
            .env("RK3S_CONFIG_FILE", &config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("rk3s.log"))?)
            .spawn()
            .with_context(|| format!("start {bin}"))?;
        let s = Server { child, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !s.kubeconfig().exists() {
            if Instant::now() > deadline {
                bail!(
                    "rk3s server did not write its kubeconfig:\n{}",
                    s.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(s)
    }

    fn kubeconfig(&self) -> std::path::PathBuf {
        self.dir.path().join("kubeconfig.yaml")
    }

    /// The last lines of the server's log, for failure messages.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("rk3s.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// CPU seconds the server has used so far.
    fn cpu_s(&self) -> f64 {
        cpu_s(&self.child.id().to_string())
    }

    fn rss_mb(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    }
}

/// User + system CPU seconds of process `pid` ("self" for this one), from /proc/PID/stat.
/// Clock ticks are taken as 100 per second, Linux's USER_HZ on every architecture rk3s ships.
fn cpu_s(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name start at field 3 (state); utime and stime
    // are fields 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<f64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse().ok())
        .collect();
    fields.iter().sum::<f64>() / 100.0
}

async fn connect(kubeconfig: &std::path::Path) -> anyhow::Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    Ok(kube::Client::try_from(config)?)
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The pod template of both workloads: one pause container with small requests.
fn pod_spec() -> serde_json::Value {
    json!({
        "containers": [{
            "name": "pause",
            "image": "registry.k8s.io/pause:3.10",
            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
        }],
    })
}

/// p50 and p99 in milliseconds.
fn percentiles(mut v: Vec<Duration>) -> (f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    v.sort();
    let at = |p: f64| v[((v.len() as f64 * p) as usize).min(v.len() - 1)].as_secs_f64() * 1000.0;
    (at(0.50), at(0.99))
}

/// Watches the pods of `namespace` (with `labels`, if any) and records when each is first seen
/// bound, until `want` are bound or `deadline`. Also records when each is first seen at all.
/// `ready` fires once the watch has listed, so nothing created afterwards is missed.
struct Bindings {
    bound: HashMap<String, Instant>,
    seen: HashMap<String, Instant>,
}

async fn watch_bindings(
    client: kube::Client,
    namespace: &str,
    labels: Option<&str>,
    want: usize,
    deadline: Instant,
    ready: oneshot::Sender<()>,
) -> Bindings {
    let pods: Api<Pod> = Api::namespaced(client, namespace);
    let mut config = watcher::Config::default();
    if let Some(l) = labels {
        config = config.labels(l);
    }
    let mut events = watcher::watcher(pods, config).default_backoff().boxed();
    let mut out = Bindings {
        bound: HashMap::with_capacity(want),
        seen: HashMap::with_capacity(want),
    };
    let mut ready = Some(ready);
    while out.bound.len() < want {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = match tokio::time::timeout(left, events.next()).await {
            Err(_) | Ok(None) => break,
            Ok(Some(e)) => e,
        };
        let now = Instant::now();
        let pod = match event {
            Ok(Event::Apply(p) | Event::InitApply(p)) => p,
            Ok(Event::InitDone) => {
                if let Some(r) = ready.take() {
                    let _ = r.send(());
                }
                continue;
            }
            Ok(_) => continue,
            Err(e) => {
                eprintln!("pod watch: {e}");
                continue;
            }
        };
        let Some(name) = pod.metadata.name else {
            continue;
        };
        if pod.spec.and_then(|s| s.node_name).is_some() {
            out.bound.entry(name.clone()).or_insert(now);
        }
        out.seen.entry(name).or_insert(now);
    }
    out
}

/// Creates `n` pods named `pod-00000`… in `namespace` from `concurrency` tasks; returns when each
/// create was sent.
async fn create_pods(
    client: &kube::Client,
    namespace: &str,
    n: usize,
    concurrency: usize,
) -> anyhow::Result<HashMap<String, Instant>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let sent: Vec<anyhow::Result<(String, Instant)>> = futures_util::stream::iter(0..n)
        .map(|i| {
            let pods = pods.clone();
            async move {
                let name = format!("pod-{i:05}");
                let pod: Pod = serde_json::from_value(json!({
                    "metadata": {"name": name, "labels": {"app": "sched"}},
                    "spec": pod_spec(),
                }))?;
                let at = Instant::now();
                pods.create(&PostParams::default(), &pod)
                    .await
                    .with_context(|| format!("create pod {namespace}/{name}"))?;
                Ok((name, at))
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    sent.into_iter().collect()
}

async fn bench(server: &Server, out: &mut BTreeMap<String, f64>) -> anyhow::Result<Vec<String>> {
    let n_nodes: usize = env_or("BENCH_NODES", 1000);
    let n_pods: usize = env_or("BENCH_PODS", 10_000);
    let replicas: usize = env_or("BENCH_REPLICAS", 1000);
    let concurrency: usize = env_or("BENCH_CONCURRENCY", 64);
    let timeout = Duration::from_secs(env_or("BENCH_TIMEOUT_SECS", 120));
    let mut problems = Vec::new();

    let client = connect(&server.kubeconfig()).await?;
    // The API answers once the kubeconfig is written; the namespaces follow right after.
    let deadline = Instant::now() + Duration::from_secs(20);
    while simnodes::ensure_namespace(&client, "bench").await.is_err() {
        if Instant::now() > deadline {
            bail!("the API never accepted a namespace:\n{}", server.log_tail());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    simnodes::ensure_namespace(&client, "deploy").await?;

    let started = Instant::now();
    let nodes = simnodes::create_nodes(&client, n_nodes, &simnodes::NodeSpec::default()).await?;
    let nodes_s = started.elapsed().as_secs_f64();
    println!("{n_nodes} simulated nodes with leases created in {nodes_s:.2} s");
    out.insert("nodes".into(), n_nodes as f64);
    out.insert("nodes_create_s".into(), nodes_s);
    let _heartbeat = simnodes::Heartbeat::start(client.clone(), &nodes, Duration::from_secs(10));
    let kubelet = (std::env::var("BENCH_KUBELET").as_deref() == Ok("1"))
        .then(|| simnodes::Kubelet::start(client.clone(), &nodes));
    out.insert("kubelet_stand_in".into(), kubelet.is_some() as u8 as f64);

    // Scheduling.
    let (ready_tx, ready_rx) = oneshot::channel();
    let watch = tokio::spawn(watch_bindings(
        client.clone(),
        "bench",
        None,
        n_pods,
        Instant::now() + timeout,
        ready_tx,
    ));
    ready_rx
        .await
        .context("the pod watch ended before it listed")?;
    let (server_cpu, bench_cpu) = (server.cpu_s(), cpu_s("self"));
    let first = Instant::now();
    let sent = create_pods(&client, "bench", n_pods, concurrency).await?;
    let create_s = first.elapsed().as_secs_f64();
    println!(
        "{n_pods} pods created in {create_s:.2} s ({:.0}/s, {concurrency} clients)",
        n_pods as f64 / create_s
    );
    out.insert("pods_create_per_s".into(), n_pods as f64 / create_s);
    let bindings = watch.await?;
    let bound = bindings.bound.len();
    let last = bindings.bound.values().max().copied();
    let latencies: Vec<Duration> = bindings
        .bound
        .iter()
        .filter_map(|(name, at)| Some(at.saturating_duration_since(*sent.get(name)?)))
        .collect();
    let (p50, p99) = percentiles(latencies);
    let span = last.map_or(f64::NAN, |l| l.duration_since(first).as_secs_f64());
    out.insert("sched_pods".into(), n_pods as f64);
    out.insert("sched_pods_bound".into(), bound as f64);
    out.insert("sched_pods_per_s".into(), bound as f64 / span);
    out.insert("sched_p50_ms".into(), p50);
    out.insert("sched_p99_ms".into(), p99);
    // When scheduling keeps pace with creation this ratio is ~1 and the throughput above is the
    // rate the benchmark could create pods at, not the scheduler's limit.
    out.insert(
        "sched_vs_create".into(),
        (bound as f64 / span) / (n_pods as f64 / create_s),
    );
    // Both processes share the machine: CPU seconds per wall second show who was busy.
    let wall = first.elapsed().as_secs_f64();
    out.insert(
        "sched_server_cpu_per_s".into(),
        (server.cpu_s() - server_cpu) / wall,
    );
    out.insert(
        "sched_bench_cpu_per_s".into(),
        (cpu_s("self") - bench_cpu) / wall,
    );
    if bound < n_pods {
        problems.push(format!(
            "scheduling: only {bound} of {n_pods} pods were bound within {} s{}",
            timeout.as_secs(),
            if bound == 0 {
                " (none at all: does this build run the scheduler?)"
            } else {
                ""
            }
        ));
    }

    // Deployment.
    let (ready_tx, ready_rx) = oneshot::channel();
    let deploy_timeout = timeout / 2;
    let watch = tokio::spawn(watch_bindings(
        client.clone(),
        "deploy",
        Some("app=web"),
        replicas,
        Instant::now() + deploy_timeout,
        ready_tx,
    ));
    ready_rx
        .await
        .context("the pod watch ended before it listed")?;
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": pod_spec()},
        },
    }))?;
    let created = Instant::now();
    Api::<Deployment>::namespaced(client.clone(), "deploy")
        .create(&PostParams::default(), &deployment)
        .await
        .context("create deployment deploy/web")?;
    let bindings = watch.await?;
    let at = |times: &HashMap<String, Instant>| {
        if times.len() < replicas {
            return f64::NAN;
        }
        times.values().max().map_or(f64::NAN, |t| {
            t.saturating_duration_since(created).as_secs_f64()
        })
    };
    out.insert("deploy_replicas".into(), replicas as f64);
    out.insert("deploy_pods_created".into(), bindings.seen.len() as f64);
    out.insert("deploy_pods_bound".into(), bindings.bound.len() as f64);
    out.insert("deploy_1000_created_s".into(), at(&bindings.seen));
    out.insert("deploy_1000_bound_s".into(), at(&bindings.bound));
    if bindings.bound.len() < replicas {
        problems.push(format!(
            "deployment: {} of {replicas} pods created and {} bound within {} s{}",
            bindings.seen.len(),
            bindings.bound.len(),
            deploy_timeout.as_secs(),
            if bindings.seen.is_empty() {
                " (no pods at all: does this build run the Deployment and ReplicaSet controllers?)"
            } else {
                ""
            }
        ));
    }
    if let Some(k) = &kubelet {
        out.insert("kubelet_pods_running".into(), k.started() as f64);
    }
    out.insert("rss_mb".into(), server.rss_mb());
    Ok(problems)
}

fn main() -> anyhow::Result<()> {
    let bin = std::env::var("RK3S_BIN").unwrap_or_else(|_| "target/release/rk3s".into());
    let server = Server::start(&bin)?;
    let rt = tokio::runtime::Runtime::new()?;
    let mut out = BTreeMap::new();
    let problems = rt.block_on(bench(&server, &mut out))?;
    let get = |k: &str| out.get(k).copied().unwrap_or(f64::NAN);
    println!();
    println!("{:<24} {:>10}   budget", "figure", "value");
    let at_least = |k: &str, limit: f64| {
        let v = get(k);
        println!(
            "{k:<24} {v:>10.2}   ≥ {limit:<7} {}",
            if v.is_nan() {
                "not measured"
            } else if v >= limit {
                "ok"
            } else {
                "UNDER"
            }
        );
    };
    let at_most = |k: &str, limit: f64| {
        let v = get(k);
        println!(
            "{k:<24} {v:>10.2}   ≤ {limit:<7} {}",
            if v.is_nan() {
                "not measured"
            } else if v <= limit {
                "ok"
            } else {
                "OVER"
            }
        );
    };
    at_least("sched_pods_per_s", 1000.0);
    at_most("deploy_1000_bound_s", 5.0);
    for k in [
        "sched_p50_ms",
        "sched_p99_ms",
        "sched_pods_bound",
        "sched_vs_create",
        "sched_server_cpu_per_s",
        "sched_bench_cpu_per_s",
        "pods_create_per_s",
        "deploy_1000_created_s",
        "nodes_create_s",
        "rss_mb",
    ] {
        println!("{k:<24} {:>10.2}", get(k));
    }
    let path = std::env::var("BENCH_OUT").unwrap_or_else(|_| "target/bench/control.json".into());
    if let Some(dir) = std::path::Path::new(&path).parent() {
        std::fs::create_dir_all(dir)?;
    }
    // Figures a phase could not measure are NaN, which serde_json writes as null.
    std::fs::write(&path, serde_json::to_string_pretty(&out)?)?;
    println!("wrote {path}");
    if problems.is_empty() {
        return Ok(());
    }
    for p in &problems {
        eprintln!("INCOMPLETE: {p}");
    }
    eprintln!("last lines of the server log:\n{}", server.log_tail());
    // `exit` skips destructors: stop the server first.
    drop(rt);
    drop(server);
    std::process::exit(1);
}
