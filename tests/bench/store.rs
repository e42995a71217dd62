//! Store benchmark: `rk3s datastore` and Debian's etcd 3.4 side by side, same workload, same
//! client (the etcd-client crate), on loopback. Prints a table and writes
//! `target/bench/store.json`. Run it with `tests/bench/run.sh store`.
//!
//! Environment: RK3S_BIN (default target/release/rk3s), ETCD_BIN (/usr/bin/etcd),
//! BENCH_LONG_SECS (default 30), BENCH_OUT (default target/bench/store.json).
//! For profiling one part: BENCH_WORKLOADS (comma-separated workload names, e.g.
//! `put_1,put_64`; default all) and BENCH_SYSTEMS (`rk3s`, `etcd`; default both). A run that
//! leaves something out prints its figures but writes no JSON, so the file always holds a
//! full run.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Client, Compare, CompareOp, GetOptions, Txn, TxnOp, WatchOptions};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

const VALUE: usize = 1024;

struct Server {
    child: Child,
    endpoint: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn rss_kb(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn start_rk3s() -> Result<Server> {
    let bin = std::env::var("RK3S_BIN").unwrap_or_else(|_| "target/release/rk3s".into());
    let dir = tempfile::tempdir()?;
    let port = free_port();
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, "")?;
    let child = Command::new(bin)
        .args([
            "datastore".to_string(),
            format!("--endpoint=sqlite://{}/state.db", dir.path().display()),
            format!("--listen=http://127.0.0.1:{port}"),
            // Compaction is driven through the API for both systems, the same way.
            "--datastore-compact-interval=0".to_string(),
        ])
        .env("RK3S_CONFIG_FILE", &config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    Ok(Server {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    })
}

fn start_etcd() -> Result<Server> {
    let bin = std::env::var("ETCD_BIN").unwrap_or_else(|_| "/usr/bin/etcd".into());
    let dir = tempfile::tempdir()?;
    let (client, peer) = (free_port(), free_port());
    let child = Command::new(bin)
        .args([
            "--name=bench".to_string(),
            format!("--data-dir={}/etcd", dir.path().display()),
            format!("--listen-client-urls=http://127.0.0.1:{client}"),
            format!("--advertise-client-urls=http://127.0.0.1:{client}"),
            format!("--listen-peer-urls=http://127.0.0.1:{peer}"),
            format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer}"),
            format!("--initial-cluster=bench=http://127.0.0.1:{peer}"),
        ])
        .env("ETCD_UNSUPPORTED_ARCH", std::env::consts::ARCH)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    Ok(Server {
        child,
        endpoint: format!("http://127.0.0.1:{client}"),
        _dir: dir,
    })
}

async fn connect(endpoint: &str) -> Result<Client> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut c) = Client::connect([endpoint], None).await
            && c.get("probe", None).await.is_ok()
        {
            return Ok(c);
        }
        if Instant::now() > deadline {
            return Err(format!("{endpoint} did not come up").into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Throughput and latency percentiles of one workload.
#[derive(Default, Clone, Copy)]
struct Figures {
    ops: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

fn figures(mut lat: Vec<Duration>, elapsed: Duration) -> Figures {
    lat.sort();
    let pct = |p: f64| {
        if lat.is_empty() {
            return 0.0;
        }
        let i = ((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1;
        lat[i].as_secs_f64() * 1000.0
    };
    Figures {
        ops: lat.len() as f64 / elapsed.as_secs_f64(),
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        max_ms: lat.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
    }
}

/// `clients` connections each running `per_client` operations made by `op`.
async fn run_clients<F, Fut>(
    endpoint: &str,
    clients: usize,
    per_client: usize,
    op: F,
) -> Result<Figures>
where
    F: Fn(Client, usize, usize) -> Fut + Send + Sync + 'static + Clone,
    Fut: std::future::Future<Output = Result<bool>> + Send,
{
    let mut conns = Vec::new();
    for _ in 0..clients {
        conns.push(connect(endpoint).await?);
    }
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (c, conn) in conns.into_iter().enumerate() {
        let op = op.clone();
        tasks.spawn(async move {
            let mut lat = Vec::with_capacity(per_client);
            for i in 0..per_client {
                let t = Instant::now();
                if op(conn.clone(), c, i).await? {
                    lat.push(t.elapsed());
                }
            }
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(lat)
        });
    }
    let mut all = Vec::new();
    while let Some(r) = tasks.join_next().await {
        all.extend(r??);
    }
    Ok(figures(all, start.elapsed()))
}

async fn puts(endpoint: &str, clients: usize, per_client: usize, tag: &str) -> Result<Figures> {
    let value = vec![b'v'; VALUE];
    let tag = tag.to_string();
    run_clients(endpoint, clients, per_client, move |mut c, n, i| {
        let value = value.clone();
        let key = format!("/put/{tag}/{n}/{i}");
        async move {
            c.put(key, value, None).await?;
            Ok(true)
        }
    })
    .await
}

/// Compare-and-swap on 100 hot keys: read the key, then put only if its mod revision is still
/// the one read. Counts successful swaps.
async fn cas(endpoint: &str, clients: usize, per_client: usize) -> Result<Figures> {
    let mut c = connect(endpoint).await?;
    for k in 0..100 {
        c.put(format!("/cas/{k}"), "0", None).await?;
    }
    run_clients(endpoint, clients, per_client, |mut c, n, i| async move {
        let key = format!("/cas/{}", (n * 7919 + i * 104_729) % 100);
        let got = c.get(key.as_str(), None).await?;
        let rev = got.kvs().first().map_or(0, |kv| kv.mod_revision());
        let txn = Txn::new()
            .when([Compare::mod_revision(key.as_str(), CompareOp::Equal, rev)])
            .and_then([TxnOp::put(key.as_str(), vec![b'c'; VALUE], None)]);
        Ok(c.txn(txn).await?.succeeded())
    })
    .await
}

async fn ranges(endpoint: &str) -> Result<Figures> {
    let mut c = connect(endpoint).await?;
    let value = vec![b'r'; VALUE];
    for i in 0..1000 {
        c.put(format!("/range/{i:04}"), value.clone(), None).await?;
    }
    run_clients(endpoint, 4, 50, |mut c, _, _| async move {
        let r = c
            .get("/range/", Some(GetOptions::new().with_prefix()))
            .await?;
        if r.kvs().len() != 1000 {
            return Err(format!("range returned {} keys", r.kvs().len()).into());
        }
        Ok(true)
    })
    .await
}

/// Put → watch event latency, one put at a time.
async fn watch_latency(endpoint: &str) -> Result<Figures> {
    let mut c = connect(endpoint).await?;
    let mut w = connect(endpoint).await?;
    let mut stream = w
        .watch("/watch/", Some(WatchOptions::new().with_prefix()))
        .await?;
    let _created = stream.message().await?;
    let mut lat = Vec::new();
    let start = Instant::now();
    for i in 0..500 {
        let t = Instant::now();
        c.put(format!("/watch/{i}"), vec![b'w'; VALUE], None)
            .await?;
        loop {
            let msg = stream.message().await?.ok_or("watch ended")?;
            if !msg.events().is_empty() {
                break;
            }
        }
        lat.push(t.elapsed());
    }
    Ok(figures(lat, start.elapsed()))
}

/// Puts from 16 clients over 1000 keys for `secs`, compacting every 5 s to keep 1000
/// revisions: the slowest single write shows how long compaction can stall writers.
async fn long_run_latency(endpoint: &str, secs: u64) -> Result<(Figures, u32)> {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut compactor = connect(endpoint).await?;
    let stop2 = Arc::clone(&stop);
    let comp = tokio::spawn(async move {
        let mut n = 0u32;
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_secs(5)).await;
            if let Ok(r) = compactor.get("probe", None).await {
                let rev = r.header().map_or(0, |h| h.revision()) - 1000;
                if rev > 0 && compactor.compact(rev, None).await.is_ok() {
                    n += 1;
                }
            }
        }
        n
    });
    let mut conns = Vec::new();
    for _ in 0..16 {
        conns.push(connect(endpoint).await?);
    }
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    let mut tasks = tokio::task::JoinSet::new();
    for (n, mut c) in conns.into_iter().enumerate() {
        tasks.spawn(async move {
            let value = vec![b'l'; VALUE];
            let mut lat = Vec::new();
            let mut i = 0usize;
            while Instant::now() < deadline {
                let t = Instant::now();
                c.put(
                    format!("/long/{}", (n * 1000 + i) % 1000),
                    value.clone(),
                    None,
                )
                .await?;
                lat.push(t.elapsed());
                i += 1;
            }
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(lat)
        });
    }
    let mut all = Vec::new();
    while let Some(r) = tasks.join_next().await {
        all.extend(r??);
    }
    let elapsed = start.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let compactions = comp.await?;
    Ok((figures(all, elapsed), compactions))
}

/// Which part of the benchmark runs (see the module comment).
struct Selection {
    workloads: Option<Vec<String>>,
    rk3s: bool,
    etcd: bool,
}

impl Selection {
    fn from_env() -> Result<Selection> {
        let workloads = std::env::var("BENCH_WORKLOADS")
            .ok()
            .filter(|v| !v.is_empty())
            .map(|v| {
                v.split(',')
                    .map(|w| w.trim().to_string())
                    .collect::<Vec<_>>()
            });
        if let Some(names) = &workloads
            && let Some(bad) = names.iter().find(|n| !WORKLOADS.contains(&n.as_str()))
        {
            return Err(format!(
                "BENCH_WORKLOADS: unknown workload {bad:?} (known: {})",
                WORKLOADS.join(", ")
            )
            .into());
        }
        let systems = std::env::var("BENCH_SYSTEMS").unwrap_or_default();
        let (rk3s, etcd) = match systems.as_str() {
            "" => (true, true),
            "rk3s" => (true, false),
            "etcd" => (false, true),
            other => {
                return Err(format!("BENCH_SYSTEMS: expected rk3s or etcd, got {other:?}").into());
            }
        };
        Ok(Selection {
            workloads,
            rk3s,
            etcd,
        })
    }

    fn runs(&self, workload: &str) -> bool {
        self.workloads
            .as_ref()
            .is_none_or(|w| w.iter().any(|n| n == workload))
    }

    fn full(&self) -> bool {
        self.workloads.is_none() && self.rk3s && self.etcd
    }
}

const WORKLOADS: [&str; 7] = [
    "put_1",
    "put_16",
    "put_64",
    "cas_16",
    "range_1000",
    "watch",
    "long",
];

async fn suite(
    server: &Server,
    long_secs: u64,
    sel: &Selection,
) -> Result<BTreeMap<&'static str, Figures>> {
    let e = server.endpoint.as_str();
    let mut out = BTreeMap::new();
    if sel.runs("put_1") {
        out.insert("put_1", puts(e, 1, 2000, "1").await?);
    }
    if sel.runs("put_16") {
        out.insert("put_16", puts(e, 16, 1000, "16").await?);
    }
    if sel.runs("put_64") {
        out.insert("put_64", puts(e, 64, 400, "64").await?);
    }
    if sel.runs("cas_16") {
        out.insert("cas_16", cas(e, 16, 300).await?);
    }
    if sel.runs("range_1000") {
        out.insert("range_1000", ranges(e).await?);
    }
    if sel.runs("watch") {
        out.insert("watch", watch_latency(e).await?);
    }
    if sel.runs("long") {
        let (long, compactions) = long_run_latency(e, long_secs).await?;
        out.insert("long", long);
        out.insert(
            "compactions",
            Figures {
                ops: f64::from(compactions),
                ..Figures::default()
            },
        );
    }
    Ok(out)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    let long_secs: u64 = std::env::var("BENCH_LONG_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let out_path = std::env::var("BENCH_OUT").unwrap_or_else(|_| "target/bench/store.json".into());
    let sel = Selection::from_env()?;

    let (mut r, mut rk3s_rss, mut rk3s_hwm) = (BTreeMap::new(), 0, 0);
    if sel.rk3s {
        eprintln!("bench: rk3s datastore");
        let rk3s = start_rk3s()?;
        connect(&rk3s.endpoint).await?;
        r = suite(&rk3s, long_secs, &sel).await?;
        (rk3s_rss, rk3s_hwm) = rk3s.rss_kb();
    }

    let (mut e, mut etcd_rss, mut etcd_hwm) = (BTreeMap::new(), 0, 0);
    if sel.etcd {
        eprintln!("bench: etcd");
        let etcd = start_etcd()?;
        connect(&etcd.endpoint).await?;
        e = suite(&etcd, long_secs, &sel).await?;
        (etcd_rss, etcd_hwm) = etcd.rss_kb();
    }

    println!(
        "{:<12} {:>10} {:>8} {:>8} {:>10} {:>8} {:>8} {:>7}",
        "workload", "rk3s op/s", "p50 ms", "p99 ms", "etcd op/s", "p50 ms", "p99 ms", "ratio"
    );
    let mut json = serde_json::Map::new();
    let names: std::collections::BTreeSet<&str> = r.keys().chain(e.keys()).copied().collect();
    for name in names {
        if name == "compactions" {
            continue;
        }
        let rf = r.get(name).copied().unwrap_or_default();
        let ef = e.get(name).copied().unwrap_or_default();
        let ratio = if ef.ops > 0.0 { rf.ops / ef.ops } else { 0.0 };
        println!(
            "{:<12} {:>10.0} {:>8.2} {:>8.2} {:>10.0} {:>8.2} {:>8.2} {:>7.2}",
            name, rf.ops, rf.p50_ms, rf.p99_ms, ef.ops, ef.p50_ms, ef.p99_ms, ratio
        );
        for (prefix, f) in [("", &rf), ("etcd_", &ef)] {
            json.insert(format!("{prefix}{name}_ops"), f.ops.round().into());
            json.insert(format!("{prefix}{name}_p50_ms"), round2(f.p50_ms).into());
            json.insert(format!("{prefix}{name}_p99_ms"), round2(f.p99_ms).into());
            json.insert(format!("{prefix}{name}_max_ms"), round2(f.max_ms).into());
        }
        json.insert(format!("ratio_{name}"), round2(ratio).into());
    }
    let get = |m: &BTreeMap<&str, Figures>, name: &str| m.get(name).copied().unwrap_or_default();
    let stall = get(&r, "long").max_ms;
    let etcd_stall = get(&e, "long").max_ms;
    println!(
        "max write latency during compaction: rk3s {stall:.1} ms ({} compactions), etcd {etcd_stall:.1} ms ({} compactions)",
        get(&r, "compactions").ops,
        get(&e, "compactions").ops
    );
    println!(
        "RSS after the run: rk3s {:.1} MB (peak {:.1}), etcd {:.1} MB (peak {:.1})",
        rk3s_rss as f64 / 1024.0,
        rk3s_hwm as f64 / 1024.0,
        etcd_rss as f64 / 1024.0,
        etcd_hwm as f64 / 1024.0
    );
    json.insert(
        "max_write_stall_during_compaction_ms".into(),
        round2(stall).into(),
    );
    json.insert(
        "etcd_max_write_stall_during_compaction_ms".into(),
        round2(etcd_stall).into(),
    );
    json.insert("compactions".into(), get(&r, "compactions").ops.into());
    json.insert("rss_mb".into(), round2(rk3s_rss as f64 / 1024.0).into());
    json.insert(
        "rss_peak_mb".into(),
        round2(rk3s_hwm as f64 / 1024.0).into(),
    );
    json.insert(
        "etcd_rss_mb".into(),
        round2(etcd_rss as f64 / 1024.0).into(),
    );
    json.insert(
        "etcd_rss_peak_mb".into(),
        round2(etcd_hwm as f64 / 1024.0).into(),
    );
    json.insert("long_run_secs".into(), long_secs.into());
    if !sel.full() {
        println!("partial run (BENCH_WORKLOADS/BENCH_SYSTEMS): {out_path} not written");
        return Ok(());
    }
    if let Some(dir) = std::path::Path::new(&out_path).parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&out_path, serde_json::to_string_pretty(&json)? + "\n")?;
    println!("wrote {out_path}");
    Ok(())
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}
