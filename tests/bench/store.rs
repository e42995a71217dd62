//! Store benchmark: `rk3s datastore` and Debian's etcd 3.4 side by side, same workload, same
//! client (the etcd-client crate), on loopback. Prints a table and writes
//! `target/bench/store.json`. Besides throughput and latency it reports each server's CPU time
//! (user + system, from /proc) per operation: on a small machine the client and the server
//! share the cores, so CPU per operation is what throughput is made of, and it is steadier
//! between runs than throughput. Run it with `tests/bench/run.sh store`.
//!
//! Both servers run side by side and take turns: each short workload runs three rounds on each,
//! the first server alternating, and its throughput is the median round (latency percentiles
//! are over all rounds). The long run with compaction runs once on each.
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

    /// CPU time the server has used so far (user + system, all threads), in seconds.
    fn cpu_secs(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the command name (which is in parentheses and may hold spaces):
        // state is field 3, utime 14 and stime 15.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .unwrap_or(100) as f64;
        (ticks(11) + ticks(12)) as f64 / hz
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
    /// Operations counted.
    count: usize,
    /// Server CPU time (user + system) per counted operation, in microseconds.
    cpu_us_per_op: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

/// One timed run of a workload on one server: each counted operation's latency, the wall
/// time and the server's CPU time.
struct Run {
    lat: Vec<Duration>,
    elapsed: Duration,
    cpu_secs: f64,
}

/// The start of a timed run: wall clock and the server's CPU time so far.
struct Timing<'s> {
    server: &'s Server,
    start: Instant,
    cpu_secs: f64,
}

impl<'s> Timing<'s> {
    fn start(server: &'s Server) -> Timing<'s> {
        Timing {
            server,
            cpu_secs: server.cpu_secs(),
            start: Instant::now(),
        }
    }

    fn finish(self, lat: Vec<Duration>) -> Run {
        Run {
            lat,
            elapsed: self.start.elapsed(),
            cpu_secs: self.server.cpu_secs() - self.cpu_secs,
        }
    }
}

impl Run {
    fn ops(&self) -> f64 {
        self.lat.len() as f64 / self.elapsed.as_secs_f64()
    }
}

/// The figures of several runs of one workload on one server: throughput is the median run's
/// (a run that met a disk stall or a busy neighbour does not move it), latency percentiles are
/// over every operation of every run, CPU is the total over the total count.
fn merge(runs: Vec<Run>) -> Figures {
    let mut rates: Vec<f64> = runs.iter().map(Run::ops).collect();
    rates.sort_by(f64::total_cmp);
    let cpu: f64 = runs.iter().map(|r| r.cpu_secs).sum();
    let elapsed: Duration = runs.iter().map(|r| r.elapsed).sum();
    let lat: Vec<Duration> = runs.into_iter().flat_map(|r| r.lat).collect();
    let mut f = figures(lat, elapsed);
    if let Some(&median) = rates.get(rates.len() / 2) {
        f.ops = median;
    }
    if f.count > 0 {
        f.cpu_us_per_op = cpu * 1e6 / f.count as f64;
    }
    f
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
        count: lat.len(),
        cpu_us_per_op: 0.0,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        max_ms: lat.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
    }
}

/// `clients` connections each running `per_client` operations made by `op`.
async fn run_clients<F, Fut>(
    server: &Server,
    clients: usize,
    per_client: usize,
    op: F,
) -> Result<Run>
where
    F: Fn(Client, usize, usize) -> Fut + Send + Sync + 'static + Clone,
    Fut: std::future::Future<Output = Result<bool>> + Send,
{
    let mut conns = Vec::new();
    for _ in 0..clients {
        conns.push(connect(&server.endpoint).await?);
    }
    let timing = Timing::start(server);
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
    Ok(timing.finish(all))
}

async fn puts(server: &Server, clients: usize, per_client: usize, tag: &str) -> Result<Run> {
    let value = vec![b'v'; VALUE];
    let tag = tag.to_string();
    run_clients(server, clients, per_client, move |mut c, n, i| {
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
async fn cas(server: &Server, clients: usize, per_client: usize) -> Result<Run> {
    let mut c = connect(&server.endpoint).await?;
    for k in 0..100 {
        c.put(format!("/cas/{k}"), "0", None).await?;
    }
    run_clients(server, clients, per_client, |mut c, n, i| async move {
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

async fn ranges(server: &Server) -> Result<Run> {
    let mut c = connect(&server.endpoint).await?;
    let value = vec![b'r'; VALUE];
    for i in 0..1000 {
        c.put(format!("/range/{i:04}"), value.clone(), None).await?;
    }
    run_clients(server, 4, 50, |mut c, _, _| async move {
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
async fn watch_latency(server: &Server) -> Result<Run> {
    let mut c = connect(&server.endpoint).await?;
    let mut w = connect(&server.endpoint).await?;
    let mut stream = w
        .watch("/watch/", Some(WatchOptions::new().with_prefix()))
        .await?;
    let _created = stream.message().await?;
    let mut lat = Vec::new();
    let timing = Timing::start(server);
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
    Ok(timing.finish(lat))
}

/// Puts from 16 clients over 1000 keys for `secs`, compacting every 5 s to keep 1000
/// revisions: the slowest single write shows how long compaction can stall writers.
async fn long_run_latency(server: &Server, secs: u64) -> Result<(Run, u32)> {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut compactor = connect(&server.endpoint).await?;
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
        conns.push(connect(&server.endpoint).await?);
    }
    let timing = Timing::start(server);
    let deadline = timing.start + Duration::from_secs(secs);
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
    let run = timing.finish(all);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let compactions = comp.await?;
    Ok((run, compactions))
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

/// How many times each short workload runs on each server.
const ROUNDS: usize = 3;

/// Runs every selected workload on every server given. The servers take turns workload by
/// workload, and within a workload round by round with the first server alternating, so that a
/// change in the machine's speed during the benchmark (a busy neighbour, a slow disk phase)
/// reaches both sides of a ratio alike instead of only the side that ran second. The long run
/// with compaction runs once per server.
async fn suite(
    servers: &[&Server],
    long_secs: u64,
    sel: &Selection,
) -> Result<Vec<BTreeMap<&'static str, Figures>>> {
    let mut out = vec![BTreeMap::new(); servers.len()];
    for name in WORKLOADS {
        if name == "long" || !sel.runs(name) {
            continue;
        }
        let mut runs: Vec<Vec<Run>> = servers.iter().map(|_| Vec::new()).collect();
        for round in 0..ROUNDS {
            for k in 0..servers.len() {
                let i = if round % 2 == 0 {
                    k
                } else {
                    servers.len() - 1 - k
                };
                let s = servers[i];
                // Fresh keys every round: a put workload creates keys, it does not overwrite.
                let tag = format!("{name}-{round}");
                let run = match name {
                    "put_1" => puts(s, 1, 2000, &tag).await?,
                    "put_16" => puts(s, 16, 1000, &tag).await?,
                    "put_64" => puts(s, 64, 400, &tag).await?,
                    "cas_16" => cas(s, 16, 300).await?,
                    "range_1000" => ranges(s).await?,
                    "watch" => watch_latency(s).await?,
                    other => return Err(format!("no runner for workload {other}").into()),
                };
                runs[i].push(run);
            }
        }
        for (i, r) in runs.into_iter().enumerate() {
            out[i].insert(name, merge(r));
        }
    }
    if sel.runs("long") {
        for (i, s) in servers.iter().enumerate() {
            let (long, compactions) = long_run_latency(s, long_secs).await?;
            out[i].insert("long", merge(vec![long]));
            out[i].insert(
                "compactions",
                Figures {
                    ops: f64::from(compactions),
                    ..Figures::default()
                },
            );
        }
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

    // Both servers run for the whole benchmark (the idle one takes no measurable CPU), so
    // that they can take turns.
    let mut servers = Vec::new();
    if sel.rk3s {
        eprintln!("bench: starting rk3s datastore");
        let rk3s = start_rk3s()?;
        connect(&rk3s.endpoint).await?;
        servers.push(("rk3s", rk3s));
    }
    if sel.etcd {
        eprintln!("bench: starting etcd");
        let etcd = start_etcd()?;
        connect(&etcd.endpoint).await?;
        servers.push(("etcd", etcd));
    }
    let refs: Vec<&Server> = servers.iter().map(|(_, s)| s).collect();
    let mut results = suite(&refs, long_secs, &sel).await?.into_iter();
    let (mut r, mut rk3s_rss, mut rk3s_hwm) = (BTreeMap::new(), 0, 0);
    let (mut e, mut etcd_rss, mut etcd_hwm) = (BTreeMap::new(), 0, 0);
    for (name, server) in &servers {
        let figures = results.next().unwrap_or_default();
        let (rss, hwm) = server.rss_kb();
        if *name == "rk3s" {
            (r, rk3s_rss, rk3s_hwm) = (figures, rss, hwm);
        } else {
            (e, etcd_rss, etcd_hwm) = (figures, rss, hwm);
        }
    }
    drop(servers);

    println!(
        "{:<12} {:>10} {:>8} {:>8} {:>8} {:>10} {:>8} {:>8} {:>8} {:>7}",
        "workload",
        "rk3s op/s",
        "p50 ms",
        "p99 ms",
        "cpu µs",
        "etcd op/s",
        "p50 ms",
        "p99 ms",
        "cpu µs",
        "ratio"
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
            "{:<12} {:>10.0} {:>8.2} {:>8.2} {:>8.1} {:>10.0} {:>8.2} {:>8.2} {:>8.1} {:>7.2}",
            name,
            rf.ops,
            rf.p50_ms,
            rf.p99_ms,
            rf.cpu_us_per_op,
            ef.ops,
            ef.p50_ms,
            ef.p99_ms,
            ef.cpu_us_per_op,
            ratio
        );
        for (prefix, f) in [("", &rf), ("etcd_", &ef)] {
            json.insert(format!("{prefix}{name}_ops"), f.ops.round().into());
            json.insert(format!("{prefix}{name}_p50_ms"), round2(f.p50_ms).into());
            json.insert(format!("{prefix}{name}_p99_ms"), round2(f.p99_ms).into());
            json.insert(format!("{prefix}{name}_max_ms"), round2(f.max_ms).into());
            json.insert(
                format!("{prefix}{name}_cpu_us_per_op"),
                round2(f.cpu_us_per_op).into(),
            );
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
