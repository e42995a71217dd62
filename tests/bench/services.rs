//! Service proxy benchmark: render and apply `table inet rk3s` for 1,000 and 10,000 Services
//! with 3 endpoints each, then one endpoint change, in a network namespace of its own (the
//! host's ruleset is never touched). Run it with `tests/bench/run.sh services` (root).
//!
//! Figures:
//! - `sync_1k_s`, `sync_10k_s`: a full sync from an empty table: render, list the table (stale
//!   objects), one `nft -f -` transaction.
//! - `nft_peak_rss_10k_mb`: the peak RSS (`VmHWM`) of `nft` applying the 10k full sync.
//! - `incremental_ms`: median of 20 single-endpoint changes on the 10k table: bring the cached
//!   rendering up to the changed table (re-rendering the changed Service), diff, apply (what
//!   the proxy does on an EndpointSlice event).
//!
//! Budgets (issue 6): 10k full sync ≤ 1 s, incremental ≤ 50 ms. Results are merged into
//! target/bench/services.json (BENCH_OUT), keeping keys other benchmarks wrote there.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use rk3s::proxy::{self, render};
use serde_json::json;

fn table(n: usize) -> render::ServiceTable {
    let services = (0..n)
        .map(|i| {
            let i = i as u32;
            let endpoints = (0..3)
                .map(|k| render::Endpoint {
                    // 10.42.0.0/16 holds 65k pod addresses: 3 per Service, up to ~21k Services.
                    ip: Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 42, 0, 2)) + i * 3 + k),
                    port: 8080,
                    ready: true,
                    serving: true,
                    terminating: false,
                    node_name: Some("bench".into()),
                })
                .collect();
            render::Service {
                namespace: "bench".into(),
                name: format!("svc-{i}"),
                cluster_ip: Some(Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 43, 0, 100)) + i)),
                external_ips: vec![],
                load_balancer_ips: vec![],
                source_ranges: vec![],
                ports: vec![render::ServicePort {
                    name: "http".into(),
                    protocol: render::Protocol::Tcp,
                    port: 80,
                    // The NodePort range holds 2,768 ports: the first 2,000 Services get one.
                    node_port: (i < 2000).then(|| 30000 + i as u16),
                    endpoints,
                }],
                affinity_timeout: None,
                external_local: false,
                internal_local: false,
            }
        })
        .collect();
    render::ServiceTable {
        node_name: "bench".into(),
        node_ips: vec![Ipv4Addr::new(192, 0, 2, 1)],
        cluster_cidr: "10.42.0.0/16".parse().expect("literal CIDR"),
        skip_cluster_ip: None,
        services,
    }
}

fn clear() -> anyhow::Result<()> {
    rk3s::network::nat::apply(
        render::TABLE,
        &format!(
            "add table {f} {t}\ndelete table {f} {t}\n",
            f = render::FAMILY,
            t = render::TABLE
        ),
    )?;
    Ok(())
}

/// `nft list map` of the ClusterIP endpoint map (its elements: key . k : address . port).
fn endpoint_map() -> anyhow::Result<String> {
    let out = std::process::Command::new("nft")
        .args([
            "list",
            "map",
            render::FAMILY,
            render::TABLE,
            "cluster-endpoints-tcp",
        ])
        .output()
        .context("running nft list map")?;
    if !out.status.success() {
        bail!(
            "nft list map: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn full_sync(n: usize) -> anyhow::Result<(Duration, render::ServiceTable, render::Rendered)> {
    clear()?;
    let t = table(n);
    let start = Instant::now();
    let mut rendered = render::Rendered::new();
    rendered.update(&t);
    proxy::full_sync(&mut rendered).with_context(|| format!("full sync of {n} services"))?;
    let took = start.elapsed();
    // Each ClusterIP and each NodePort picks one of its 3 endpoints from the endpoint map.
    let targets = endpoint_map()?.matches(" : 10.42.").count();
    let want = 3 * (n + n.min(2000));
    if targets != want {
        bail!("expected {want} DNAT targets in the endpoint map, it has {targets}");
    }
    Ok((took, t, rendered))
}

/// The peak RSS of `nft -f -` applying `script` to an empty table, from the child's own
/// `VmHWM` (its high-water mark), read until it exits. The child's rusage from wait4 would be
/// wrong here: Linux starts a child's max RSS at its parent's when it execs.
fn nft_peak_rss_mb(script: &str) -> anyhow::Result<f64> {
    use std::io::Write as _;
    clear()?;
    let mut child = std::process::Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .context("running nft")?;
    let status_path = format!("/proc/{}/status", child.id());
    let mut stdin = child.stdin.take().context("nft stdin")?;
    let script = script.to_string();
    let writer = std::thread::spawn(move || stdin.write_all(script.as_bytes()));
    let mut peak_kb = 0u64;
    loop {
        if let Ok(text) = std::fs::read_to_string(&status_path) {
            let hwm = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok());
            if let Some(kb) = hwm {
                peak_kb = peak_kb.max(kb);
            }
        }
        if child.try_wait()?.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("writer thread"))??;
    Ok(peak_kb as f64 / 1024.0)
}

fn main() -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("the services benchmark needs root (a network namespace and nftables)");
    }
    // Before any thread exists: the whole process, and every nft it runs, lives in a fresh
    // network namespace.
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
        .context("creating the benchmark's network namespace")?;

    let (sync_1k, _, _) = full_sync(1_000)?;
    let (sync_10k, mut t, mut rendered) = full_sync(10_000)?;
    let rss = nft_peak_rss_mb(&rendered.full_script(&render::Existing::default()))?;
    // Back to the table the incremental rounds start from: the fresh table of the RSS
    // measurement is not the one `rendered` knows (a full sync lists it).
    rendered.forget_applied();
    proxy::full_sync(&mut rendered)?;

    let start = Instant::now();
    let fresh = render::render(&t);
    let render_10k = start.elapsed();
    let start = Instant::now();
    rendered.update(&t);
    let unchanged_10k = start.elapsed();
    drop(fresh);
    println!(
        "render of 10k services: {:.1} ms, update with nothing changed: {:.1} ms",
        render_10k.as_secs_f64() * 1000.0,
        unchanged_10k.as_secs_f64() * 1000.0
    );

    let mut samples = Vec::new();
    let mut update_samples = Vec::new();
    for round in 0..20u32 {
        let which = (round as usize * 37) % t.services.len();
        let ep = &mut t.services[which].ports[0].endpoints[0];
        ep.ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 42, 200, 0)) + round);
        let start = Instant::now();
        rendered.update(&t);
        let updated = start.elapsed();
        let changed = proxy::incremental_sync(&mut rendered)?;
        samples.push(start.elapsed());
        update_samples.push(updated);
        if !changed {
            bail!("an endpoint change produced no update");
        }
    }
    update_samples.sort();
    println!(
        "incremental: median {:.1} ms to bring the rendering up to the change (the rest is \
         the diff and nft)",
        update_samples[update_samples.len() / 2].as_secs_f64() * 1000.0
    );
    samples.sort();
    let incremental = samples[samples.len() / 2];
    if !endpoint_map()?.contains(" : 10.42.200.19 . 8080") {
        bail!("the last incremental change is not in the table");
    }
    clear()?;

    let figures = [
        ("sync_1k_s", sync_1k.as_secs_f64(), None),
        ("sync_10k_s", sync_10k.as_secs_f64(), Some(1.0)),
        ("nft_peak_rss_10k_mb", rss, None),
        (
            "incremental_ms",
            incremental.as_secs_f64() * 1000.0,
            Some(50.0),
        ),
    ];
    println!("{:<22} {:>10} {:>8}", "figure", "value", "budget");
    for (name, value, budget) in &figures {
        let budget = budget.map(|b| format!("≤ {b}")).unwrap_or_default();
        println!("{name:<22} {value:>10.3} {budget:>8}");
    }

    let path = std::env::var("BENCH_OUT").unwrap_or_else(|_| "target/bench/services.json".into());
    if let Some(dir) = std::path::Path::new(&path).parent() {
        std::fs::create_dir_all(dir)?;
    }
    // Other benchmarks (DNS) write their keys to the same file: merge, never overwrite.
    let mut out: serde_json::Value = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .filter(serde_json::Value::is_object)
        .unwrap_or_else(|| json!({}));
    for (name, value, _) in figures {
        out[name] = json!((value * 1000.0).round() / 1000.0);
    }
    std::fs::write(&path, serde_json::to_vec_pretty(&out)?)?;
    println!("wrote {path}");
    Ok(())
}
