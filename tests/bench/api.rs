//! API server benchmark over real HTTPS: `rk3s server` (release) driven by kube-rs clients
//! with the admin kubeconfig rk3s writes. Prints a table and writes `target/bench/api.json`.
//! Run it with `tests/bench/run.sh api`.
//!
//! Workloads (ConfigMaps of ~100 bytes): create, get and update at 1, 16 and 64 concurrent
//! clients; a list of 10,000 ConfigMaps; watch fan-out to 100 watchers (update → event
//! latency); server RSS with 10,000 small objects stored. The budgets (DESIGN.md §7 and the
//! API server issue) are printed next to the figures: create p99 ≤ 20 ms at 16 clients, list
//! of 10k ≤ 300 ms, RSS ≤ 80 MB.
//!
//! Environment: RK3S_BIN (default target/release/rk3s), BENCH_SECS per phase (default 5),
//! BENCH_OUT (default target/bench/api.json).

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

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
    fn start() -> Result<Server> {
        let bin = std::env::var("RK3S_BIN").unwrap_or_else(|_| "target/release/rk3s".into());
        let dir = tempfile::tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let config = dir.path().join("config.yaml");
        std::fs::write(&config, "")?;
        let child = Command::new(bin)
            .args([
                format!("--data-dir={}", dir.path().display()),
                "server".into(),
                "--bind-address=127.0.0.1".into(),
                format!("--https-listen-port={port}"),
                format!(
                    "--write-kubeconfig={}",
                    dir.path().join("kubeconfig.yaml").display()
                ),
                "--disable-agent".into(),
            ])
            .env("RK3S_CONFIG_FILE", &config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let s = Server { child, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !s.kubeconfig().exists() {
            if Instant::now() > deadline {
                return Err("rk3s server did not write its kubeconfig".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(s)
    }

    fn kubeconfig(&self) -> std::path::PathBuf {
        self.dir.path().join("kubeconfig.yaml")
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

async fn connect(kubeconfig: &std::path::Path) -> Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    Ok(kube::Client::try_from(config)?)
}

fn configmap(name: &str, v: u64) -> ConfigMap {
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some(name.to_string());
    cm.data = Some(
        [
            ("value".to_string(), format!("{v:0>90}")),
            ("kind".to_string(), "bench".to_string()),
        ]
        .into(),
    );
    cm
}

/// p50 and p99 in milliseconds.
fn percentiles(mut v: Vec<Duration>) -> (f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0);
    }
    v.sort();
    let at = |p: f64| v[((v.len() as f64 * p) as usize).min(v.len() - 1)].as_secs_f64() * 1000.0;
    (at(0.50), at(0.99))
}

#[derive(Clone, Copy)]
enum Op {
    Create,
    Get,
    Update,
}

/// Runs `op` from `clients` concurrent tasks for `secs`; returns ops/s, p50, p99.
async fn run_op(
    api: &Api<ConfigMap>,
    op: Op,
    clients: usize,
    secs: u64,
    round: &str,
) -> Result<(f64, f64, f64)> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let counter = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for c in 0..clients {
        let api = api.clone();
        let counter = counter.clone();
        let round = round.to_string();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = 0u64;
            while Instant::now() < deadline {
                let started = Instant::now();
                match op {
                    Op::Create => {
                        let name = format!("{round}-{c}-{i}");
                        api.create(&PostParams::default(), &configmap(&name, i))
                            .await?;
                    }
                    Op::Get => {
                        api.get(&format!("seed-{}", (c as u64 + i) % 100)).await?;
                    }
                    Op::Update => {
                        // Each client updates its own object: no conflicts, pure write path.
                        let name = format!("seed-{c}");
                        let mut cm = api.get(&name).await?;
                        cm.data = configmap(&name, i).data;
                        api.replace(&name, &PostParams::default(), &cm).await?;
                    }
                }
                lat.push(started.elapsed());
                counter.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
            Ok::<_, kube::Error>(lat)
        }));
    }
    let started = Instant::now();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let ops = counter.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    let (p50, p99) = percentiles(all);
    Ok((ops, p50, p99))
}

async fn bench() -> Result<BTreeMap<String, f64>> {
    let secs: u64 = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let mut out = BTreeMap::new();
    let server = Server::start()?;
    let client = connect(&server.kubeconfig()).await?;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    out.insert("rss_idle_mb".into(), server.rss_mb());
    for i in 0..100 {
        api.create(&PostParams::default(), &configmap(&format!("seed-{i}"), 0))
            .await?;
    }
    println!(
        "{:<10} {:>8} {:>10} {:>8} {:>8}",
        "op", "clients", "ops/s", "p50 ms", "p99 ms"
    );
    for clients in [1usize, 16, 64] {
        for (name, op) in [
            ("create", Op::Create),
            ("get", Op::Get),
            ("update", Op::Update),
        ] {
            let (ops, p50, p99) = run_op(&api, op, clients, secs, &format!("r{clients}")).await?;
            println!("{name:<10} {clients:>8} {ops:>10.0} {p50:>8.2} {p99:>8.2}");
            out.insert(format!("{name}_{clients}_ops"), ops);
            out.insert(format!("{name}_{clients}_p50_ms"), p50);
            out.insert(format!("{name}_{clients}_p99_ms"), p99);
        }
    }

    // The load above stored tens of thousands of objects over 64 connections: report that RSS
    // too, then measure the 10k figures on a fresh server holding just 10,000 ConfigMaps.
    out.insert("rss_after_load_mb".into(), server.rss_mb());
    drop(api);
    drop(client);
    drop(server);
    let server = Server::start()?;
    let client = connect(&server.kubeconfig()).await?;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), &configmap("seed-0", 0))
        .await?;

    // 10,000 ConfigMaps in their own namespace, then list them whole.
    let ns: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let mut bulk_ns = k8s_openapi::api::core::v1::Namespace::default();
    bulk_ns.metadata.name = Some("bulk".into());
    ns.create(&PostParams::default(), &bulk_ns).await?;
    let bulk: Api<ConfigMap> = Api::namespaced(client.clone(), "bulk");
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (bulk, next) = (bulk.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= 10_000 {
                    return Ok::<_, kube::Error>(());
                }
                bulk.create(&PostParams::default(), &configmap(&format!("cm-{i:05}"), i))
                    .await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    let mut lists = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let l = bulk.list(&ListParams::default()).await?;
        lists.push(started.elapsed());
        assert_eq!(l.items.len(), 10_000);
    }
    let (list_p50, _) = percentiles(lists);
    out.insert("list_10k_ms".into(), list_p50);
    out.insert("rss_10k_mb".into(), server.rss_mb());

    // Watch fan-out: 100 watchers; each update's event latency at every watcher.
    let target: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let sent: Arc<std::sync::Mutex<BTreeMap<String, Instant>>> = Default::default();
    let latencies: Arc<std::sync::Mutex<Vec<Duration>>> = Default::default();
    let rv = target
        .get("seed-0")
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let updates = 100usize;
    let mut watchers = Vec::new();
    for _ in 0..100 {
        let c = client.clone();
        let (sent, latencies, rv) = (sent.clone(), latencies.clone(), rv.clone());
        watchers.push(tokio::spawn(async move {
            let api: Api<ConfigMap> = Api::namespaced(c, "default");
            let wp = WatchParams::default().fields("metadata.name=seed-0");
            let mut stream = api.watch(&wp, &rv).await?.boxed();
            let mut seen = 0;
            while seen < updates {
                match stream.next().await {
                    Some(Ok(WatchEvent::Modified(cm))) => {
                        let v = cm
                            .data
                            .and_then(|d| d.get("value").cloned())
                            .unwrap_or_default();
                        if let Some(t) = sent.lock().map(|s| s.get(&v).copied()).ok().flatten() {
                            latencies.lock().map(|mut l| l.push(t.elapsed())).ok();
                        }
                        seen += 1;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(e),
                    None => break,
                }
            }
            Ok::<_, kube::Error>(())
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 1..=updates as u64 {
        let mut cm = target.get("seed-0").await?;
        let next = configmap("seed-0", 1_000_000 + i);
        let v = next
            .data
            .as_ref()
            .and_then(|d| d.get("value").cloned())
            .unwrap_or_default();
        cm.data = next.data;
        sent.lock().map(|mut s| s.insert(v, Instant::now())).ok();
        target
            .replace("seed-0", &PostParams::default(), &cm)
            .await?;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for w in watchers {
        tokio::time::timeout(Duration::from_secs(30), w).await???;
    }
    let lat = latencies.lock().map(|l| l.clone()).unwrap_or_default();
    let (w50, w99) = percentiles(lat);
    out.insert("watch_fanout_p50_ms".into(), w50);
    out.insert("watch_fanout_p99_ms".into(), w99);
    Ok(out)
}

fn main() -> Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    let out = rt.block_on(bench())?;
    let budget = |k: &str, limit: f64| {
        let v = out.get(k).copied().unwrap_or(f64::NAN);
        println!(
            "{k:<24} {v:>10.2}   budget ≤ {limit:<6} {}",
            if v <= limit { "ok" } else { "OVER" }
        );
    };
    println!();
    budget("create_16_p99_ms", 20.0);
    budget("list_10k_ms", 300.0);
    budget("rss_10k_mb", 80.0);
    println!(
        "{:<24} {:>10.2}   (100 watchers)",
        "watch_fanout_p99_ms",
        out.get("watch_fanout_p99_ms").copied().unwrap_or(f64::NAN)
    );
    for k in ["rss_idle_mb", "rss_after_load_mb"] {
        println!("{k:<24} {:>10.2}", out.get(k).copied().unwrap_or(f64::NAN));
    }
    let path = std::env::var("BENCH_OUT").unwrap_or_else(|_| "target/bench/api.json".into());
    if let Some(dir) = std::path::Path::new(&path).parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&path, serde_json::to_string_pretty(&out)?)?;
    println!("wrote {path}");
    Ok(())
}
